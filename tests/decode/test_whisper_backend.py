"""Cached, batched Whisper decoding equals ESPnet's own full-prefix decoder, one utterance at a time."""
import numpy as np
import pytest
import torch

from espnet_ext.decode.search import SearchConfig, beam_search
from espnet_ext.decode.transcribe import make_backend, transcribe_batch
from decode_helpers import random_audio

from espnet_ext.models.registry import load_model


@pytest.fixture(scope="module")
def tiny():
    model = load_model("whisper_tiny_random")
    model.asr_model.eval()
    return model


class FullPrefixState:
    """Reference: ESPnet's OpenAIWhisperDecoder.forward over the whole prefix at every step."""

    def __init__(self, espnet_decoder, features):
        self.decoder, self.features, self.prefix = espnet_decoder, features, None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def step(self, tokens):
        self.prefix = tokens if self.prefix is None else torch.cat([self.prefix, tokens], dim=1)
        n = self.prefix.size(0)
        logits, _ = self.decoder(self.features, torch.full((n,), self.features.size(1)), self.prefix,
                                 torch.full((n,), self.prefix.size(1)))
        return torch.log_softmax(logits[:, -1].float(), dim=-1)

    def reorder(self, index):
        self.prefix = self.prefix.index_select(0, index)
        self.features = self.features.index_select(0, index)



@pytest.mark.parametrize("beam", [1, 3])
@torch.no_grad()
def test_cached_batch_equals_full_prefix_single(tiny, beam):
    backend = make_backend(tiny, pad_to_30s=True)
    audios = [random_audio(s, i) for i, s in enumerate([1.0, 2.5, 0.7])]
    speech = torch.from_numpy(np.stack([np.pad(a, (0, 40000 - len(a))) for a in audios]))
    encoded = backend.encode(speech, torch.tensor([len(a) for a in audios]))
    features = encoded.features
    config = SearchConfig(beam_size=beam, max_tokens=12)
    prompts = [backend.prompt(lang) for lang in ("hi", "te", "it")]
    with backend.state(encoded.repeat(beam)) as state:
        cached = beam_search(state, prompts, backend.eot, backend.suppress, [12] * 3, config)
    reference = []
    for i, prompt in enumerate(prompts):
        with FullPrefixState(tiny.asr_model.decoder, features[i : i + 1].repeat_interleave(beam, 0)) as state:
            reference += beam_search(state, [prompt], backend.eot, backend.suppress, [12], config)
    assert cached == reference
    assert all(len(t) > 0 for t in cached)


@torch.no_grad()
def test_batch_of_30s_windows_equals_one_by_one(tiny):
    backend = make_backend(tiny, pad_to_30s=True)
    audios = [random_audio(s, 10 + i) for i, s in enumerate([1.2, 3.0, 0.5, 2.0])]
    langs = ["hi", "pa", "te", "it"]
    config = SearchConfig(max_tokens=10)
    batched = transcribe_batch(backend, audios, langs, config)
    alone = [transcribe_batch(backend, [a], [l], config)[0] for a, l in zip(audios, langs)]
    assert [h.text for h in batched] == [h.text for h in alone]
    assert [h.lang for h in batched] == langs


@torch.no_grad()
def test_detected_language_is_whispers_language_token_and_the_transcript_follows_it(tiny):
    """The posteriors are the decoder's first step after <|startoftranscript|>, restricted to the LID's
    languages' tokens (computed here from the tokenizer and the raw decoder), and the transcript is the
    one decoded with the winner's token."""
    from espnet_ext.data.audio import pad_batch
    from espnet_ext.languages import LID_LANGUAGES

    backend = make_backend(tiny, pad_to_30s=True)
    audio = random_audio(1.0, 3)
    hyp = transcribe_batch(backend, [audio], [None], SearchConfig(max_tokens=4))[0]
    tokenizer = tiny.tokenizer
    ids = [tokenizer.encode(f"<|{lang}|>", allowed_special="all")[0] for lang in LID_LANGUAGES]
    encoded = backend.encode(*pad_batch([audio]))
    decoder = tiny.asr_model.decoder.decoders
    logits = decoder(torch.tensor([[tokenizer.sot]]), encoded.features)[0, -1]
    expected = torch.softmax(logits[ids].float(), dim=-1)
    got = torch.tensor([hyp.lang_posteriors[lang] for lang in LID_LANGUAGES])
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert hyp.lang == LID_LANGUAGES[int(expected.argmax())]
    forced = transcribe_batch(backend, [audio], [hyp.lang], SearchConfig(max_tokens=4))[0]
    assert hyp.text == forced.text
