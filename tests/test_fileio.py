"""espnet_ext.fileio.atomic_directory: a directory is replaced whole or not at all."""
import pytest

from espnet_ext.fileio import atomic_directory


def test_a_complete_directory_replaces_the_previous_one(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale").write_text("old")
    with atomic_directory(target) as staging:
        (staging / "new").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and [p.name for p in target.iterdir()] == ["new"]


def test_a_failed_write_leaves_the_previous_directory(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "kept").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(target) as staging:
        (staging / "half").write_text("half")
        raise RuntimeError("killed")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and [p.name for p in target.iterdir()] == ["kept"]
