"""espnet_ext.fileio: a directory is replaced whole or not at all; a device or pipe output is written, not replaced."""
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


def test_an_output_that_is_a_device_is_written_not_replaced(tmp_path):
    """`--output /dev/null`: renaming a finished file onto it would turn the device into a regular file."""
    import os
    import stat

    from espnet_ext.fileio import atomic_write_text

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        atomic_write_text(fifo, "through the pipe\n")
        assert os.read(reader, 100) == b"through the pipe\n"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    atomic_write_text(os.devnull, "discarded")
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
