"""Test helpers for the model tests: a reference CTranslate2 writer, espeak-ng speech, and a tiny OWSM
packed as the published OWSM v4.

`write_ct2_whisper` serialises an openai-whisper checkpoint with ctranslate2's own WhisperSpec writer
(not our code), so reading its output back tests our reader against the reference implementation, and
error cases can be made by corrupting a small file. `write_owsm_v4_snapshot` lays a random tiny OWSM out
as `espnet/owsm_v4_small_370M` sits in a hub cache, so that espnet_model_zoo's own loader reads it.
"""
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import yaml

from espnet_ext.models import owsm
from espnet_ext.models.ctranslate2_convert import whisper_base_package_files
from espnet_ext.models.espnet_import import s2t_task, task_args

# The files of espnet/owsm_v4_small_370M, relative to its snapshot, as ESPnet's owsm_v3.1/v4 s2t1 recipe
# packs them (E-Branchformer 768 wide, 9 + 9 layers, BPE 50000; meta.yaml names the first two).
OWSM_V4_SMALL = "espnet/owsm_v4_small_370M"
_EXP = "exp/s2t_train_s2t_ebf_conv2d_size768_e9_d9_piecewise_lr5e-4_warmup60k_flashattn_raw_bpe50000"
OWSM_V4_FILES = {
    "config": f"{_EXP}/config.yaml",
    "model": f"{_EXP}/valid.total_count.ave_5best.till45epoch.pth",
    "bpemodel": "data/token_list/bpe_unigram50000/bpe.model",
    "tokens": "data/token_list/bpe_unigram50000/tokens.txt",
    "stats": "exp/s2t_stats_raw_bpe50000/train/feats_stats.npz",
}


def _fill_attention(spec, state, prefix, fused_self):
    """Set a CT2 attention spec from openai-whisper weights (a zero key bias, as CT2 stores it)."""
    q_w, k_w, v_w = (state[f"{prefix}.{p}.weight"] for p in ("query", "key", "value"))
    q_b, v_b = state[f"{prefix}.query.bias"], state[f"{prefix}.value.bias"]
    zero = torch.zeros_like(q_b)
    if fused_self:
        spec.linear[0].weight = torch.cat([q_w, k_w, v_w]).numpy()
        spec.linear[0].bias = torch.cat([q_b, zero, v_b]).numpy()
        out = spec.linear[1]
    else:
        spec.linear[0].weight, spec.linear[0].bias = q_w.numpy(), q_b.numpy()
        spec.linear[1].weight = torch.cat([k_w, v_w]).numpy()
        spec.linear[1].bias = torch.cat([zero, v_b]).numpy()
        out = spec.linear[2]
    out.weight, out.bias = state[f"{prefix}.out.weight"].numpy(), state[f"{prefix}.out.bias"].numpy()


def _fill_norm(spec, state, prefix):
    spec.gamma, spec.beta = state[f"{prefix}.weight"].numpy(), state[f"{prefix}.bias"].numpy()


def _fill_layer(layer, state, prefix, decoder):
    _fill_norm(layer.self_attention.layer_norm, state, f"{prefix}.attn_ln")
    _fill_attention(layer.self_attention, state, f"{prefix}.attn", fused_self=True)
    if decoder:
        _fill_norm(layer.attention.layer_norm, state, f"{prefix}.cross_attn_ln")
        _fill_attention(layer.attention, state, f"{prefix}.cross_attn", fused_self=False)
    _fill_norm(layer.ffn.layer_norm, state, f"{prefix}.mlp_ln")
    for ct2_linear, torch_index in ((layer.ffn.linear_0, 0), (layer.ffn.linear_1, 2)):
        ct2_linear.weight = state[f"{prefix}.mlp.{torch_index}.weight"].numpy()
        ct2_linear.bias = state[f"{prefix}.mlp.{torch_index}.bias"].numpy()


def write_ct2_whisper(checkpoint: dict, out_dir: Path, alignment_heads, quantization=None) -> Path:
    """Serialise an openai-whisper checkpoint with ctranslate2's WhisperSpec (the reference writer)."""
    from ctranslate2.specs import whisper_spec

    # clone: ctranslate2 quantizes the arrays it is given in place
    dims = checkpoint["dims"]
    state = {k: v.float().clone() for k, v in checkpoint["model_state_dict"].items()}
    spec = whisper_spec.WhisperSpec(
        dims["n_audio_layer"], dims["n_audio_head"], dims["n_text_layer"], dims["n_text_head"]
    )
    enc, dec = spec.encoder, spec.decoder
    for conv in ("conv1", "conv2"):
        getattr(enc, conv).weight = state[f"encoder.{conv}.weight"].numpy()
        getattr(enc, conv).bias = state[f"encoder.{conv}.bias"].numpy()
    enc.position_encodings.encodings = state["encoder.positional_embedding"].numpy()
    _fill_norm(enc.layer_norm, state, "encoder.ln_post")
    for i, layer in enumerate(enc.layer):
        _fill_layer(layer, state, f"encoder.blocks.{i}", decoder=False)
    dec.embeddings.weight = state["decoder.token_embedding.weight"].numpy()
    dec.projection.weight = state["decoder.token_embedding.weight"].numpy()
    dec.position_encodings.encodings = state["decoder.positional_embedding"].numpy()
    _fill_norm(dec.layer_norm, state, "decoder.ln")
    for i, layer in enumerate(dec.layer):
        _fill_layer(layer, state, f"decoder.blocks.{i}", decoder=True)
    _, base_config = whisper_base_package_files()
    base = json.loads(base_config.read_text())
    spec.config.suppress_ids = base["suppress_ids"]
    spec.config.suppress_ids_begin = base["suppress_ids_begin"]
    spec.config.lang_ids = base["lang_ids"]
    spec.config.alignment_heads = alignment_heads
    vocabulary = base_config.with_name("vocabulary.txt").read_text(encoding="utf-8").splitlines()
    vocabulary += [f"<|extra_{i}|>" for i in range(len(vocabulary), dims["n_vocab"])]  # large-v3's 51866
    spec.register_vocabulary(vocabulary)
    spec.validate()
    if quantization:
        spec.optimize(quantization=quantization)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec.save(str(out_dir))
    return out_dir


def synthesize(text: str, voice: str, path: Path, speed: int = 150) -> np.ndarray:
    """16 kHz mono float32 speech of `text` from espeak-ng (resampled by sox)."""
    import soundfile

    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(path)], check=True)
    audio, rate = soundfile.read(path, dtype="float32")
    assert rate == 16000
    return audio


def _train_bpe(prefix: Path, sentences: Sequence[str]) -> list:
    """A sentencepiece unigram model at `prefix`.model, as s2t.sh trains OWSM's; its text pieces."""
    import sentencepiece as spm

    prefix.parent.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_prefix=str(prefix), vocab_size=80,
                                   model_type="unigram", character_coverage=1.0, hard_vocab_limit=False,
                                   minloglevel=2)
    prefix.with_suffix(".vocab").unlink()  # a training by-product the published repos leave out
    processor = spm.SentencePieceProcessor(model_file=f"{prefix}.model")
    return [processor.id_to_piece(i) for i in range(processor.get_piece_size())
            if not (processor.is_control(i) or processor.is_unknown(i))]


def _write_stats(path: Path, n_mels: int = 80) -> None:
    """feats_stats.npz as ESPnet's collect_stats writes it (count, sum, sum_square), for global MVN."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mean, var, count = np.linspace(-8, -2, n_mels), np.linspace(2, 6, n_mels), 1000.0
    np.savez(path, count=count, sum=mean * count, sum_square=(var + mean ** 2) * count)


def write_owsm_v4_snapshot(cache: Path, sentences: Sequence[str]) -> Path:
    """The tiny random OWSM, with a BPE vocabulary trained on `sentences` and global MVN as OWSM v4 has,
    as a snapshot of espnet/owsm_v4_small_370M in the hub-layout cache `cache` (refs/main names it, so
    an offline snapshot_download finds it). config.yaml is ESPnet's full dump of the training arguments,
    its paths relative to the snapshot, as published. Returns the snapshot directory."""
    repo = cache / f"models--{OWSM_V4_SMALL.replace('/', '--')}"
    commit = hashlib.sha1(b"tiny random owsm_v4_small").hexdigest()
    root = repo / "snapshots" / commit
    pieces = _train_bpe(root / Path(OWSM_V4_FILES["bpemodel"]).with_suffix(""), sentences)
    _write_stats(root / OWSM_V4_FILES["stats"])
    token_list = owsm.owsm_token_list(pieces)
    (root / OWSM_V4_FILES["tokens"]).write_text("\n".join(token_list) + "\n", encoding="utf-8")
    config = {**owsm.tiny_config(), "token_type": "bpe", "bpemodel": str(root / OWSM_V4_FILES["bpemodel"]),
              "token_list": token_list, "normalize": "global_mvn",
              "normalize_conf": {"stats_file": str(root / OWSM_V4_FILES["stats"])}}
    model, _, _ = owsm.build_tiny(config)
    published = {**vars(task_args(s2t_task(), config)), "bpemodel": OWSM_V4_FILES["bpemodel"],
                 "normalize_conf": {"stats_file": OWSM_V4_FILES["stats"]}, "output_dir": _EXP}
    (root / _EXP).mkdir(parents=True)
    (root / OWSM_V4_FILES["config"]).write_text(yaml.safe_dump(published, allow_unicode=True), encoding="utf-8")
    torch.save(model.state_dict(), root / OWSM_V4_FILES["model"])
    meta = {"espnet": "202412", "files": {"s2t_model_file": OWSM_V4_FILES["model"]},
            "yaml_files": {"s2t_train_config": OWSM_V4_FILES["config"]}}
    (root / "meta.yaml").write_text(yaml.safe_dump(meta), encoding="utf-8")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return root
