"""The one masked Whisper forward: equal to ESPnet's on unpadded input, batch-independent on padded input,
and its tap hands the right states to a callback in the same pass."""
import copy

import numpy as np
import pytest
import torch
from whisper.model import ResidualAttentionBlock

from espnet_ext.data.audio import pad_batch
from espnet_ext.decode.search import SearchConfig
from espnet_ext.decode.transcribe import make_backend, transcribe_batch
from espnet_ext.models.espnet_import import import_espnet_module
from espnet_ext.models.family import OWSM, WHISPER
from espnet_ext.models.registry import load_model
from espnet_ext.models.whisper_forward import MaskedBlock, Tap

ESPNET_ENCODER = import_espnet_module("espnet2.asr.encoder.whisper_encoder").OpenAIWhisperEncoder
ESPNET_DECODER = import_espnet_module("espnet2.asr.decoder.whisper_decoder").OpenAIWhisperDecoder


@pytest.fixture(scope="module")
def tiny():
    model = load_model("whisper_tiny_random")
    model.asr_model.eval()
    return model


def espnet_reference(asr_model: torch.nn.Module) -> torch.nn.Module:
    """A copy that runs ESPnet's own Whisper classes and whisper's own blocks (no masks, no SDPA)."""
    reference = copy.deepcopy(asr_model)
    reference.encoder.__class__ = ESPNET_ENCODER
    reference.decoder.__class__ = ESPNET_DECODER
    for block in [*reference.encoder.encoders.blocks, *reference.decoder.decoders.blocks]:
        assert type(block) is MaskedBlock
        block.__class__ = ResidualAttentionBlock
    return reference


def audio(seconds: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.1, int(16000 * seconds)).astype(np.float32)


@pytest.mark.parametrize("pad_to_30s", [False, True])
@torch.no_grad()
def test_shared_forward_equals_espnet_on_unpadded_input(tiny, pad_to_30s):
    """Equal lengths (nothing to mask): encoder outputs and decoder logits within 1e-4 of ESPnet's."""
    reference = espnet_reference(tiny.asr_model)
    speech, lengths = pad_batch([audio(1.3, 1), audio(1.3, 2)])
    reference.encoder.do_pad_trim = pad_to_30s
    expected, expected_lengths, _ = reference.encoder(speech, lengths)
    got = WHISPER.encode(tiny.asr_model, speech, lengths, pad_to_30s)
    assert got.features.shape == expected.shape == (2, 1500 if pad_to_30s else 65, 64)
    torch.testing.assert_close(got.features, expected, atol=1e-4, rtol=1e-4)
    tokens = torch.randint(0, 50000, (2, 6), generator=torch.Generator().manual_seed(0))
    token_lengths = torch.tensor([6, 6])
    ours, _ = tiny.asr_model.decoder(got.features, got.lengths, tokens, token_lengths)
    theirs, _ = reference.decoder(expected, expected_lengths, tokens, token_lengths)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_training_loss_equals_espnet_on_unpadded_input(tiny):
    """ESPnetASRModel.forward (the training loss and its gradient path) through both forwards, to 1e-5."""
    reference = espnet_reference(tiny.asr_model)
    speech, lengths = pad_batch([audio(1.0, 3), audio(1.0, 4)])
    text = torch.randint(0, 50000, (2, 5), generator=torch.Generator().manual_seed(1))
    text_lengths = torch.tensor([5, 3])
    text[1, 3:] = -1  # ESPnet pads targets with ignore_id
    ours, _, _ = tiny.asr_model(speech, lengths, text, text_lengths)
    theirs, _, _ = reference(speech, lengths, text, text_lengths)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_batched_equals_alone_with_three_times_longer_neighbours(tiny):
    """An utterance padded to 3x its length in a batch: encoder outputs within 1e-4 on its frames, the
    same greedy tokens, as decoded alone (the unmasked forward fails both: see the control)."""
    short, long_a, long_b = audio(0.8, 5), audio(2.4, 6), audio(2.4, 7)
    speech, lengths = pad_batch([long_a, short, long_b])
    batched = WHISPER.encode(tiny.asr_model, speech, lengths, False)
    alone = WHISPER.encode(tiny.asr_model, *pad_batch([short]), False)
    n = int(alone.lengths[0])
    assert int(batched.lengths[1]) == n == 40
    torch.testing.assert_close(batched.features[1, :n], alone.features[0], atol=1e-4, rtol=1e-4)
    unmasked = espnet_reference(tiny.asr_model).encoder(speech, lengths)[0]
    assert (unmasked[1, :n] - alone.features[0]).abs().max() > 1e-2  # control: padding leaks without masks

    backend = make_backend(tiny, pad_to_30s=False)
    config = SearchConfig(max_tokens=12)
    in_batch = transcribe_batch(backend, [long_a, short, long_b], ["hi", "te", "it"], config)
    by_itself = transcribe_batch(backend, [short], ["te"], config)
    assert in_batch[1].text == by_itself[0].text


@torch.no_grad()
def test_tap_hands_the_states_after_block_k_and_changes_nothing_by_itself(tiny):
    speech, lengths = pad_batch([audio(1.0, 8), audio(0.6, 9)])
    plain = WHISPER.encode(tiny.asr_model, speech, lengths, False, all_hidden=True)
    seen = []
    tapped = WHISPER.encode(tiny.asr_model, speech, lengths, False, tap=Tap(1, lambda h, n: seen.append((h, n))))
    torch.testing.assert_close(tapped.features, plain.features, atol=0, rtol=0)
    assert len(seen) == 1 and seen[0][1].tolist() == plain.lengths.tolist()
    torch.testing.assert_close(seen[0][0], plain.hidden[1], atol=0, rtol=0)
    stopped = WHISPER.encode(tiny.asr_model, speech, lengths, False, tap=Tap(1, stop=True))
    torch.testing.assert_close(stopped.features, plain.hidden[1], atol=0, rtol=0)
    assert len(plain.hidden) == len(WHISPER.encoder_blocks(tiny.asr_model)) + 1
    with pytest.raises(ValueError, match="tap layer 3 is outside 0..2"):
        WHISPER.encode(tiny.asr_model, speech, lengths, False, tap=Tap(3))


@torch.no_grad()
def test_owsm_tap_matches_its_plain_forward():
    owsm = load_model("owsm_tiny_random")
    owsm.asr_model.eval()
    speech, lengths = pad_batch([audio(1.0, 10), audio(0.5, 11)])
    plain = OWSM.encode(owsm.asr_model, speech, lengths, True, all_hidden=True)
    seen = []
    tapped = OWSM.encode(owsm.asr_model, speech, lengths, True, tap=Tap(1, lambda h, n: seen.append(h)))
    torch.testing.assert_close(tapped.features, plain.features, atol=0, rtol=0)
    torch.testing.assert_close(seen[0], plain.hidden[1], atol=0, rtol=0)
    stopped = OWSM.encode(owsm.asr_model, speech, lengths, True, tap=Tap(2, stop=True))
    torch.testing.assert_close(stopped.features, plain.hidden[2], atol=0, rtol=0)
