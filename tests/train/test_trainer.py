"""Atomic checkpoint saving and the repair of an epoch file lost between ESPnet's two saves."""
import pytest
import torch

from espnet_ext.train.trainer import atomic_torch_save, restore_last_epoch_file


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("boom while saving")


def test_a_save_that_fails_midway_leaves_the_previous_file_intact(tmp_path):
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 1}, path)
    original = torch.save
    with atomic_torch_save():
        assert torch.save is not original
        with pytest.raises(RuntimeError, match="boom"):
            torch.save({"epoch": 2, "bad": Unpicklable()}, path)
        torch.save({"epoch": 3}, tmp_path / "new.pth")
    assert torch.save is original
    assert torch.load(path) == {"epoch": 1}
    assert torch.load(tmp_path / "new.pth") == {"epoch": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth", "new.pth"]  # no temp left


def test_missing_epoch_file_is_rewritten_from_the_checkpoint(tmp_path):
    model = {"model.x.lora_A": torch.arange(4.0)}
    torch.save({"model": model, "reporter": {"epoch": 3, "stats": {}}}, tmp_path / "checkpoint.pth")
    (tmp_path / "2epoch.pth").write_bytes(b"older epoch, untouched")
    restore_last_epoch_file(tmp_path)
    assert torch.equal(torch.load(tmp_path / "3epoch.pth")["model.x.lora_A"], model["model.x.lora_A"])
    assert (tmp_path / "2epoch.pth").read_bytes() == b"older epoch, untouched"


def test_nothing_to_restore_without_a_checkpoint(tmp_path):
    restore_last_epoch_file(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_truncated_checkpoint_is_named_with_the_fix_and_kept(tmp_path):
    from espnet_ext.errors import UserError

    torch.save({"model": {}, "reporter": {"epoch": 2}}, tmp_path / "checkpoint.pth")
    whole = (tmp_path / "checkpoint.pth").read_bytes()
    (tmp_path / "checkpoint.pth").write_bytes(whole[: len(whole) // 2])  # a partial copy
    with pytest.raises(UserError, match=r"checkpoint.pth cannot be loaded, it is truncated or corrupt .*restore it "
                                        r"from a copy, or start the training over in a new --exp_dir"):
        restore_last_epoch_file(tmp_path)
    assert (tmp_path / "checkpoint.pth").read_bytes() == whole[: len(whole) // 2]  # nothing deleted
