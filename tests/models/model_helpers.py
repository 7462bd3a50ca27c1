"""Test helpers for the model tests: a reference CTranslate2 writer and espeak-ng speech.

`write_ct2_whisper` serialises an openai-whisper checkpoint with ctranslate2's own WhisperSpec writer
(not our code), so reading its output back tests our reader against the reference implementation, and
error cases can be made by corrupting a small file.
"""
import json
import subprocess
from pathlib import Path

import numpy as np
import torch

from espnet_ext.models.ctranslate2_convert import whisper_base_package_files


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
