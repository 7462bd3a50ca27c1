"""Atomic checkpoint saving, the repair of an epoch file lost between ESPnet's two saves, and the epoch's
throughput line."""
import pytest
import torch

from espnet_ext.train.trainer import Throughput, atomic_torch_save, restore_last_epoch_file


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


def test_throughput_counts_the_batches_handed_to_the_trainer_and_their_audio():
    batches = [(["a", "b"], {"speech_lengths": torch.tensor([16000, 8000])}),
               (["c"], {"speech_lengths": torch.tensor([32000])})]
    tally = Throughput()
    assert list(tally.counted(batches)) == batches
    assert (tally.batches, tally.utterances, tally.audio_seconds) == (2, 3, 3.5)
    line = tally.message(epoch=4, seconds=2.0)
    assert line.startswith("epoch 4 throughput: 2 batches, 3 utterances, 4 s of audio in 2.0 s: 1.00 batches/s, "
                           "1.5 utterances/s, 2 s of audio/s")
    assert "GPU" not in line  # no GPU memory on the CPU


def test_the_throughput_line_reads_back_from_a_log():
    tally = Throughput(batches=80, utterances=800, audio_seconds=2422.0)
    log = "\n".join(["2026-12-06 root INFO 1epoch:train:1-10batch: loss=1.0",
                     "2026-12-06 root INFO " + tally.message(epoch=2, seconds=20.0),
                     "2026-12-06 root INFO " + tally.message(epoch=3, seconds=40.0)])
    first, second = Throughput.read_log(log)
    assert (first["epoch"], first["batches"], first["utterances"], first["utt_s"], first["audio_s"]) == (2, 80, 800, 40.0, 121)
    assert second["utt_s"] == 20.0 and second["memory_gib"] != second["memory_gib"]  # nan: no GPU on the CPU
