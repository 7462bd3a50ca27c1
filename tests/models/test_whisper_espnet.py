"""LocalWhisperEncoder/Decoder: ESPnet's Whisper classes from a local checkpoint, built via ASRTask."""
import pytest
import torch
import whisper
import yaml

from espnet_ext.models import whisper as local
from espnet_ext.models.espnet_import import asr_task, import_espnet_module, s2t_task

ESPNET_ENCODER = import_espnet_module("espnet2.asr.encoder.whisper_encoder").OpenAIWhisperEncoder
ESPNET_DECODER = import_espnet_module("espnet2.asr.decoder.whisper_decoder").OpenAIWhisperDecoder


@pytest.fixture(scope="module")
def token_list():
    return local.whisper_token_list()


def test_only_constructors_and_forwards_differ_from_espnet():
    assert issubclass(local.LocalWhisperEncoder, ESPNET_ENCODER)
    assert issubclass(local.LocalWhisperDecoder, ESPNET_DECODER)
    inherited = {"whisper_encode", "log_mel_spectrogram", "pad_or_trim", "output_size"}
    assert not set(local.LocalWhisperEncoder.__dict__) & inherited
    assert not set(local.LocalWhisperDecoder.__dict__) & {"forward_one_step", "score", "batch_score"}
    assert "forward" in local.LocalWhisperEncoder.__dict__ and "forward" in local.LocalWhisperDecoder.__dict__


@torch.no_grad()
def test_decoder_forward_projects_target_rows_only(tiny_whisper_checkpoint, token_list):
    """Same logits as ESPnet's forward where there are targets; zeros (not computed) on padding."""
    path, _ = tiny_whisper_checkpoint
    model = local.build_whisper_asr_model(path, token_list).eval()
    memory = torch.randn(3, 20, 64)
    tokens = torch.randint(0, 50000, (3, 7))
    lengths = torch.tensor([7, 4, 1])
    ours, out_lengths = model.decoder(memory, torch.tensor([20, 20, 20]), tokens, lengths)
    espnet, _ = ESPNET_DECODER.forward(model.decoder, memory, torch.tensor([20, 20, 20]), tokens, lengths)
    assert out_lengths.tolist() == [7, 4, 1] and ours.shape == espnet.shape == (3, 7, len(token_list))
    for row, length in enumerate(lengths.tolist()):
        torch.testing.assert_close(ours[row, :length], espnet[row, :length], rtol=1e-5, atol=1e-5)
        assert not ours[row, length:].any()


@pytest.mark.parametrize("task", [asr_task, s2t_task], ids=["asr", "s2t"])
def test_registered_as_espnet_choices(task):
    choices = {c.name: c for c in task().class_choices_list}
    assert choices["encoder"].get_class(local.CHOICE_NAME) is local.LocalWhisperEncoder
    assert choices["decoder"].get_class(local.CHOICE_NAME) is local.LocalWhisperDecoder


def test_token_list_follows_whisper_tokenizer(token_list):
    tokenizer = whisper.tokenizer.get_tokenizer(True)
    assert len(token_list) == 51865 == len(set(token_list))
    assert token_list[tokenizer.sot] == "<|startoftranscript|>"
    assert token_list[tokenizer.eot] == "<|endoftext|>"
    assert token_list[tokenizer.no_timestamps] == "<|notimestamps|>"
    for code in ("hi", "pa", "te", "it"):
        assert token_list[tokenizer.encode(f"<|{code}|>", allowed_special="all")[0]] == f"<|{code}|>"
    (the,) = tokenizer.encode(" the")
    assert token_list[the] == " the"
    assert token_list[-1] == "<|30.00|>"


def test_yaml_config_builds_espnet_asr_model_through_the_parser(tmp_path, tiny_whisper_checkpoint, token_list):
    """The training path: `asr_train.py --config conf.yaml` parses, then ASRTask.build_model."""
    path, _ = tiny_whisper_checkpoint
    config_file = tmp_path / "train.yaml"
    config_file.write_text(yaml.safe_dump(local.whisper_asr_config(path, token_list), allow_unicode=True))
    task = asr_task()
    args = task.get_parser().parse_args(["--config", str(config_file)])
    model = task.build_model(args)
    assert type(model).__name__ == "ESPnetASRModel"
    assert isinstance(model.encoder, local.LocalWhisperEncoder)
    assert isinstance(model.decoder, local.LocalWhisperDecoder)
    assert model.token_list == token_list
    assert (model.sos, model.eos, model.ctc) == (50258, 50257, None)
    assert model.is_encoder_whisper and model.frontend is None
    direct = local.build_whisper_asr_model(path, token_list)  # built without ASRTask: the same model
    assert type(direct) is type(model) and direct.token_list == model.token_list
    for name in ("sos", "eos", "ignore_id", "ctc_weight", "is_encoder_whisper", "frontend", "specaug", "normalize",
                 "preencoder", "postencoder", "ctc", "use_transducer_decoder"):
        assert getattr(direct, name) == getattr(model, name), name
    assert type(direct.criterion_att) is type(model.criterion_att) and vars(direct.criterion_att).keys() == vars(model.criterion_att).keys()
    assert direct.criterion_att.smoothing == model.criterion_att.smoothing
    mine, theirs = direct.state_dict(), model.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_loading_a_whisper_model_leaves_espnets_tasks_unimported():
    """ASRTask's import (every ESPnet encoder, frontend and G2P) is ~15 s of a job's start; loading a model
    for decoding or stage 4 does without it."""
    import subprocess
    import sys

    code = ("import logging, sys; logging.basicConfig(level=logging.INFO); from espnet_ext.models.registry import "
            "load_model; load_model('whisper_tiny_random'); print(sorted(m for m in sys.modules if m.startswith('espnet2.tasks')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
    # the line tests/bin/test_user_errors.py reads to tell that a command loaded a model
    assert "base model whisper_tiny_random loaded: " in done.stderr


@torch.no_grad()
def test_espnet_model_computes_what_openai_whisper_computes(tiny_whisper_checkpoint, token_list):
    path, _ = tiny_whisper_checkpoint
    model = local.build_whisper_asr_model(path, token_list).eval()
    reference = local.load_openai_whisper(path).eval()
    model.encoder.do_pad_trim = True
    audio = torch.randn(1, 24000) * 0.1
    features, lengths, _ = model.encoder(audio, torch.tensor([24000]))
    expected = reference.embed_audio(whisper.log_mel_spectrogram(whisper.pad_or_trim(audio[0]))[None])
    assert features.shape == (1, 1500, 64) and lengths.tolist() == [1500]  # the whole window is input
    torch.testing.assert_close(features, expected, rtol=1e-5, atol=1e-5)
    tokens = torch.tensor([[50258, 50276, 50359, 50363, 440, 1002]])
    logits, _ = model.decoder(features, lengths, tokens, torch.tensor([6]))
    torch.testing.assert_close(logits, reference.logits(tokens, expected), rtol=1e-5, atol=1e-4)


def test_vocab_resize_behaves_like_espnet(tiny_whisper_checkpoint):
    path, checkpoint = tiny_whisper_checkpoint
    original = checkpoint["model_state_dict"]["decoder.token_embedding.weight"]
    expanded = local.LocalWhisperDecoder(51867, 64, whisper_checkpoint=str(path), load_origin_token_embedding=True)
    assert expanded.decoders.token_embedding.num_embeddings == 51867
    assert torch.equal(expanded.decoders.token_embedding.weight[:51865], original)
    fresh = local.LocalWhisperDecoder(100, 64, whisper_checkpoint=str(path))
    assert fresh.decoders.token_embedding.weight.shape == (100, 64)
    with pytest.raises(ValueError, match="vocab_size > 51865"):
        local.LocalWhisperDecoder(100, 64, whisper_checkpoint=str(path), load_origin_token_embedding=True)


def test_bad_checkpoints_are_named(tmp_path):
    with pytest.raises(ValueError, match="encoder_conf.whisper_checkpoint is required"):
        local.LocalWhisperEncoder()
    missing = tmp_path / "missing.pt"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        local.LocalWhisperDecoder(51865, 64, whisper_checkpoint=str(missing))
    not_whisper = tmp_path / "espnet.pth"
    torch.save({"encoder.weight": torch.zeros(1)}, not_whisper)
    with pytest.raises(ValueError, match=rf"{not_whisper}: not an openai-whisper checkpoint"):
        local.LocalWhisperEncoder(whisper_checkpoint=str(not_whisper))


def test_128_mel_models_are_refused(tmp_path):
    from whisper.model import ModelDimensions, Whisper

    dims = ModelDimensions(128, 1500, 64, 4, 1, 51866, 448, 64, 4, 1)
    path = tmp_path / "v3_like.pt"
    torch.save({"dims": dims.__dict__, "model_state_dict": Whisper(dims).state_dict()}, path)
    with pytest.raises(ValueError, match="128 mel bins.*large-v2"):
        local.LocalWhisperEncoder(whisper_checkpoint=str(path))
