"""ESPnet's Whisper encoder/decoder, loaded from a local openai-whisper checkpoint instead of a hub name.

ESPnet's `OpenAIWhisperEncoder` / `OpenAIWhisperDecoder` accept only names from
`whisper.available_models()` and download the weights when they are not cached. This project must run
offline from checkpoints it converted itself (see ctranslate2_convert.py), so `LocalWhisperEncoder` /
`LocalWhisperDecoder` take `whisper_checkpoint` (a path) and otherwise are ESPnet's classes: same
attributes (`.encoders` is whisper's AudioEncoder, `.decoders` its TextDecoder), same forward, same
`do_pad_trim`, same handling of a changed vocabulary size. Besides the constructors, the forwards
differ: both run the masked forward of whisper_forward.py (padded frames excluded, fused attention),
and the decoder's computes the vocabulary projection at target positions only (padding rows get zero
logits, which ESPnet's loss and accuracy ignore), the same logits there for less work.

`register_whisper_choices(task)` (run by `espnet_import.asr_task()` / `s2t_task()`) adds both classes to
the encoder and decoder ClassChoices of ESPnet's ASRTask and S2TTask under the name `espnet_ext_whisper`,
so a config with `encoder: espnet_ext_whisper` builds through `ASRTask.build_model(args)` like any ESPnet
model. `build_whisper_asr_model` builds the same model without importing ASRTask (a test checks they
agree): that import pulls in every ESPnet encoder, frontend and G2P, about 15 s of each job's start.
"""
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch
from typeguard import typechecked

from espnet_ext.errors import UserError
from espnet_ext.models import whisper_forward
from espnet_ext.models.espnet_import import import_espnet_module

CHOICE_NAME = "espnet_ext_whisper"
# openai-whisper 20230918 ships only the 80-bin mel filterbank and the 99-language tokenizer; large-v3
# and large-v3-turbo need 128 bins and a 100th language token (vocabulary 51866).
SUPPORTED_N_MELS = 80
LARGE_V3_VOCAB = 51866

_abs_encoder = import_espnet_module("espnet2.asr.encoder.abs_encoder").AbsEncoder
_abs_decoder = import_espnet_module("espnet2.asr.decoder.abs_decoder").AbsDecoder
_espnet_encoder = import_espnet_module("espnet2.asr.encoder.whisper_encoder")
_espnet_decoder = import_espnet_module("espnet2.asr.decoder.whisper_decoder")


# Where ESPnet's wrappers hold openai-whisper's modules: (ESPnet prefix, openai-whisper prefix).
_OPENAI_PARTS = (("encoder.encoders.", "encoder."), ("decoder.decoders.", "decoder."))


class UnsupportedWhisper(UserError, ValueError):
    """A Whisper variant that the pinned openai-whisper (and so ESPnet) cannot run."""


# ---------------------------------------------------------------------------------------------------
# Checkpoint loading


def check_supported(dims: dict, source: Union[str, Path]) -> None:
    """Refuse large-v3 / large-v3-turbo: the pinned openai-whisper cannot compute their 128-bin log-mels,
    and ESPnet would silently re-initialise their token embedding to fit its 51865-token list."""
    if dims["n_mels"] != SUPPORTED_N_MELS or dims["n_vocab"] == LARGE_V3_VOCAB:
        raise UnsupportedWhisper(
            f"{source}: a Whisper with {dims['n_mels']} mel bins and {dims['n_vocab']} tokens (large-v3 or "
            "large-v3-turbo) needs the 128-bin mel filterbank and the 100-language tokenizer, which "
            "openai-whisper 20230918 (pinned by ESPnet 202511) lacks; use large-v2 instead (whisper_large, "
            "model_path=<its openai .pt, CTranslate2 or transformers directory>)"
        )


def read_whisper_checkpoint(path: Union[str, Path]) -> dict:
    """Load an openai-whisper checkpoint {"dims", "model_state_dict"[, "alignment_heads"]} safely.

    mmap keeps large models from being held twice in memory while a part is built from them.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Whisper checkpoint {path} does not exist; create one with "
            "`python -m espnet_ext.bin.convert_ctranslate2` or load it via espnet_ext.models.registry"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # torch raises several types for a non-checkpoint file
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({err})") from None
    if not isinstance(checkpoint, dict) or not {"dims", "model_state_dict"} <= set(checkpoint):
        raise ValueError(
            f"{path}: not an openai-whisper checkpoint (needs 'dims' and 'model_state_dict'); "
            "ESPnet .pth files and Hugging Face models must be converted first"
        )
    return checkpoint


def _model_dimensions(checkpoint: dict, path: Union[str, Path]):
    from whisper.model import ModelDimensions

    try:
        return ModelDimensions(**checkpoint["dims"])
    except TypeError as err:
        raise ValueError(f"{path}: malformed 'dims' {checkpoint['dims']!r} ({err})") from None


def _load_part(module: torch.nn.Module, checkpoint: dict, prefix: str, path: Union[str, Path]) -> None:
    """Load the `prefix.` entries of the checkpoint into `module`, strictly."""
    state = {
        name[len(prefix) + 1:]: tensor
        for name, tensor in checkpoint["model_state_dict"].items()
        if name.startswith(prefix + ".")
    }
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path}: {prefix} weights do not match the dims: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )


def openai_whisper_name(espnet_name: str) -> str:
    """openai-whisper's name of an ESPnet Whisper model's weight or module (`encoder.encoders.blocks.0.attn.query`
    -> `encoder.blocks.0.attn.query`): the wrappers add one level, the names below it are whisper's own."""
    for espnet, openai in _OPENAI_PARTS:
        if espnet_name.startswith(espnet):
            return openai + espnet_name[len(espnet):]
    raise KeyError(f"{espnet_name!r} is not inside an ESPnet Whisper's encoder.encoders or decoder.decoders")


def load_whisper_encoder(path: Union[str, Path]):
    """whisper's AudioEncoder with the checkpoint's weights (float32, CPU)."""
    from whisper.model import AudioEncoder

    checkpoint = read_whisper_checkpoint(path)
    dims = _model_dimensions(checkpoint, path)
    check_supported(checkpoint["dims"], path)
    encoder = AudioEncoder(dims.n_mels, dims.n_audio_ctx, dims.n_audio_state, dims.n_audio_head, dims.n_audio_layer)
    _load_part(encoder, checkpoint, "encoder", path)
    return encoder


def load_whisper_decoder(path: Union[str, Path]):
    """whisper's TextDecoder with the checkpoint's weights (float32, CPU)."""
    from whisper.model import TextDecoder

    checkpoint = read_whisper_checkpoint(path)
    dims = _model_dimensions(checkpoint, path)
    decoder = TextDecoder(dims.n_vocab, dims.n_text_ctx, dims.n_text_state, dims.n_text_head, dims.n_text_layer)
    _load_part(decoder, checkpoint, "decoder", path)
    return decoder


def alignment_heads_mask(pairs: List[List[int]], n_layers: int, n_heads: int) -> torch.Tensor:
    """Sparse boolean (layer, head) mask as whisper's `Whisper.alignment_heads` buffer holds it."""
    mask = torch.zeros(n_layers, n_heads, dtype=torch.bool)
    for layer, head in pairs:
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise ValueError(f"alignment head {[layer, head]} outside a {n_layers}x{n_heads} decoder")
        mask[layer, head] = True
    return mask.to_sparse()


def load_openai_whisper(path: Union[str, Path], device: str = "cpu"):
    """A plain `whisper.model.Whisper` (for whisper.decode/transcribe) with its alignment heads set."""
    from whisper.model import Whisper

    checkpoint = read_whisper_checkpoint(path)
    dims = _model_dimensions(checkpoint, path)
    model = Whisper(dims)
    model.load_state_dict(checkpoint["model_state_dict"])
    if checkpoint.get("alignment_heads"):
        mask = alignment_heads_mask(checkpoint["alignment_heads"], dims.n_text_layer, dims.n_text_head)
        model.register_buffer("alignment_heads", mask, persistent=False)
    return model.to(device)


def _require_checkpoint(whisper_checkpoint: Optional[str], side: str) -> str:
    if not whisper_checkpoint:
        raise ValueError(
            f"{side}_conf.whisper_checkpoint is required for {side}: {CHOICE_NAME} (a local openai-whisper "
            ".pt; espnet_ext.models.registry.load_model prepares one)"
        )
    return whisper_checkpoint


# ---------------------------------------------------------------------------------------------------
# ESPnet classes


class LocalWhisperEncoder(_espnet_encoder.OpenAIWhisperEncoder):
    """ESPnet's OpenAIWhisperEncoder built from a local checkpoint.

    The parent constructor is skipped on purpose (it asserts a hub name and may download); this one sets
    the same attributes, so every inherited method behaves as in ESPnet. The class name keeps "Whisper"
    because ESPnetASRModel detects Whisper encoders by that substring.
    """

    @typechecked
    def __init__(
        self,
        input_size: int = 1,
        whisper_checkpoint: Optional[str] = None,
        dropout_rate: float = 0.0,
        use_specaug: bool = False,
        specaug_conf: Optional[dict] = None,
        do_pad_trim: bool = False,
    ):
        from whisper.audio import HOP_LENGTH, N_FFT, N_SAMPLES, mel_filters

        _abs_encoder.__init__(self)
        encoders = load_whisper_encoder(_require_checkpoint(whisper_checkpoint, "encoder"))
        self.n_fft = N_FFT
        self.win_length = N_FFT
        self.hop_length = HOP_LENGTH
        self.n_mels = encoders.conv1.in_channels
        self.mel_filters = mel_filters
        self.dropout = torch.nn.Dropout(dropout_rate)
        self.encoders = encoders
        self.encoders.train()
        whisper_forward.use_masked_blocks(encoders.blocks)
        self.specaug = self._build_specaug(use_specaug, specaug_conf)
        self.do_pad_trim = do_pad_trim
        self.pad_samples = N_SAMPLES

    def forward(self, xs_pad: torch.Tensor, ilens: torch.Tensor,
                prev_states: torch.Tensor = None) -> Tuple[torch.Tensor, torch.Tensor, None]:
        """ESPnet's (features, lengths, None), through the masked forward (whisper_forward.encode)."""
        if self.do_pad_trim:
            xs_pad = self.pad_or_trim(xs_pad, self.pad_samples)
            ilens = torch.full_like(ilens, self.pad_samples)
        out = whisper_forward.encode(self, xs_pad, ilens)
        return out.features, out.lengths, None

    @staticmethod
    def _build_specaug(use_specaug: bool, specaug_conf: Optional[dict]):
        if not use_specaug:
            return None
        spec_aug = import_espnet_module("espnet2.asr.specaug.specaug").SpecAug
        return spec_aug(**(specaug_conf or {}))


class LocalWhisperDecoder(_espnet_decoder.OpenAIWhisperDecoder):
    """ESPnet's OpenAIWhisperDecoder built from a local checkpoint (parent constructor skipped, see
    LocalWhisperEncoder). A `vocab_size` different from the checkpoint's re-creates the token embedding
    exactly as ESPnet does: expanded (original rows kept) with `load_origin_token_embedding`, otherwise
    re-initialised from the original embedding's mean and std.
    """

    @typechecked
    def __init__(
        self,
        vocab_size: int,
        encoder_output_size: int,
        whisper_checkpoint: Optional[str] = None,
        dropout_rate: float = 0.0,
        load_origin_token_embedding: bool = False,
    ):
        _abs_decoder.__init__(self)
        self.decoders = load_whisper_decoder(_require_checkpoint(whisper_checkpoint, "decoder"))
        self.dropout = torch.nn.Dropout(dropout_rate)
        self.load_origin_token_embedding = load_origin_token_embedding
        if vocab_size != self.decoders.token_embedding.num_embeddings:
            self.decoders.token_embedding = self._resized_embedding(vocab_size)
        self.decoders.train()
        whisper_forward.use_masked_blocks(self.decoders.blocks)

    def forward(self, hs_pad: torch.Tensor, hlens: torch.Tensor, ys_in_pad: torch.Tensor,
                ys_in_lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """ESPnet's forward (logits `(batch, length, vocab)`, lengths), projecting only `ys_in_lens` rows.

        The projection onto the 51,865-token vocabulary is the largest matmul of a training step, and a
        mixed-language batch is mostly padding (Italian ~17 tokens, Telugu ~80): the padding rows are
        left at zero instead of being computed and then ignored by the loss. Cross-attention sees the
        `hlens` valid frames of each utterance only.
        """
        decoders = self.decoders
        x = whisper_forward.decoder_states(decoders, hs_pad, hlens, ys_in_pad, self.dropout)
        positions = torch.arange(x.size(1), device=x.device)
        targets = positions[None, :] < ys_in_lens.to(x.device)[:, None]
        weight = decoders.token_embedding.weight
        logits = x.new_zeros(x.size(0), x.size(1), weight.size(0), dtype=torch.float32)
        logits[targets] = (x[targets] @ weight.to(x.dtype).t()).float()
        return logits, ys_in_lens

    def _resized_embedding(self, vocab_size: int) -> torch.nn.Module:
        original = self.decoders.token_embedding
        if self.load_origin_token_embedding:
            if vocab_size <= original.num_embeddings:
                raise ValueError(
                    f"load_origin_token_embedding needs vocab_size > {original.num_embeddings}, got {vocab_size}"
                )
            return _espnet_decoder.ExpandedTokenEmbedding(original, vocab_size - original.num_embeddings)
        std, mean = torch.std_mean(original.weight)
        fresh = torch.nn.Embedding(vocab_size, original.embedding_dim)
        torch.nn.init.normal_(fresh.weight, mean.item(), std.item())
        return fresh


# ---------------------------------------------------------------------------------------------------
# Registration and the ESPnet model config


def register_whisper_choices(task) -> None:
    """Add the local classes to `task`'s (ASRTask's, S2TTask's) encoder/decoder choices (idempotent)."""
    classes = {"encoder": LocalWhisperEncoder, "decoder": LocalWhisperDecoder}
    for choices in task.class_choices_list:
        if choices.name in classes:
            choices.classes[CHOICE_NAME] = classes[choices.name]


def _bytes_to_printable() -> Dict[int, str]:
    """GPT-2's byte-level alphabet: each byte as one printable character.

    ESPnet's whisper token lists spell byte-level BPE tokens this way (bytes that are printable stand
    for themselves, the others are shifted above U+0100), with "Ġ" (a shifted space) written as " ".
    """
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    mapping = {byte: chr(byte) for byte in printable}
    shifted = 0
    for byte in range(256):
        if byte not in mapping:
            mapping[byte] = chr(256 + shifted)
            shifted += 1
    return mapping


def whisper_token_list() -> List[str]:
    """The whisper_multilingual token list (51865 entries), generated from whisper's own tokenizer.

    Same order and spelling as ESPnet's `whisper_export_vocabulary`: id i is line i, BPE tokens in
    GPT-2's byte alphabet with "Ġ" written as a space, special and timestamp tokens by name.
    """
    import whisper.tokenizer

    encoding = whisper.tokenizer.get_tokenizer(multilingual=True).encoding
    alphabet = _bytes_to_printable()
    specials = {encoding.encode_single_token(token): token for token in encoding.special_tokens_set}
    tokens = []
    for token_id in range(encoding.n_vocab):
        if token_id in specials:
            tokens.append(specials[token_id])
        else:
            raw = encoding.decode_single_token_bytes(token_id)
            tokens.append("".join(alphabet[b] for b in raw).replace("Ġ", " "))
    return tokens


def whisper_asr_config(whisper_checkpoint: Union[str, Path], token_list: Optional[List[str]] = None) -> dict:
    """ESPnet ASR config (the YAML's content) for full Whisper fine-tuning from a local checkpoint.

    As in ESPnet's whisper recipes: raw waveform input (no frontend, no normalisation: Whisper computes
    its own log-mel), token_type whisper_multilingual, no CTC (ctc_weight 0), and <|startoftranscript|> /
    <|endoftext|> as the sos/eos symbols, which ESPnetASRModel would otherwise take as the last token.
    """
    checkpoint = str(whisper_checkpoint)
    return {
        "token_list": token_list if token_list is not None else whisper_token_list(),
        "token_type": "whisper_multilingual",
        "bpemodel": "whisper_multilingual",
        "cleaner": None,
        "input_size": 1,
        "frontend": None,
        "frontend_conf": {},
        "specaug": None,
        "specaug_conf": {},
        "normalize": None,
        "normalize_conf": {},
        "encoder": CHOICE_NAME,
        "encoder_conf": {"whisper_checkpoint": checkpoint, "dropout_rate": 0.0, "do_pad_trim": False},
        "decoder": CHOICE_NAME,
        "decoder_conf": {"whisper_checkpoint": checkpoint, "dropout_rate": 0.0},
        "model": "espnet",
        "model_conf": {
            "ctc_weight": 0.0,
            "lsm_weight": 0.1,
            "length_normalized_loss": False,
            "sym_sos": "<|startoftranscript|>",
            "sym_eos": "<|endoftext|>",
        },
    }


def build_whisper_asr_model(whisper_checkpoint: Union[str, Path], token_list: Optional[List[str]] = None):
    """ESPnetASRModel with LocalWhisperEncoder/Decoder: what `ASRTask.build_model` builds from
    `whisper_asr_config` (no frontend, SpecAugment, normalisation or pre/post-encoder; a CTC module that
    ctc_weight 0 leaves unused), built here without importing ASRTask (module docstring)."""
    config = whisper_asr_config(whisper_checkpoint, token_list)
    vocab_size = len(config["token_list"])
    encoder = LocalWhisperEncoder(input_size=config["input_size"], **config["encoder_conf"])
    decoder = LocalWhisperDecoder(vocab_size=vocab_size, encoder_output_size=encoder.output_size(),
                                  **config["decoder_conf"])
    ctc = import_espnet_module("espnet2.asr.ctc").CTC(odim=vocab_size, encoder_output_size=encoder.output_size())
    model = import_espnet_module("espnet2.asr.espnet_model").ESPnetASRModel(
        vocab_size=vocab_size, token_list=config["token_list"], frontend=None, specaug=None, normalize=None,
        preencoder=None, encoder=encoder, postencoder=None, decoder=decoder, ctc=ctc, joint_network=None,
        **config["model_conf"])
    return model
