"""OWSM decoding: cached batched search equals ESPnet's own uncached decoder, prompts follow OWSM."""
import numpy as np
import pytest
import torch

from espnet_ext.decode.owsm_backend import OwsmCachedState
from espnet_ext.decode.search import SearchConfig, beam_search
from espnet_ext.decode.transcribe import make_backend, transcribe_batch
from espnet_ext.languages import LID_LANGUAGES
from espnet_ext.models.registry import load_model


@pytest.fixture(scope="module")
def tiny():
    model = load_model("owsm_tiny_random")
    model.asr_model.eval()
    return model


class UncachedState(OwsmCachedState):
    """Reference: ESPnet's decoder re-run over the whole prefix without its cache."""

    def step(self, tokens):
        self.cache = None
        return super().step(tokens)

    def reorder(self, index):
        self.prefix = self.prefix.index_select(0, index)
        self.memory = self.memory.index_select(0, index)


# OWSM v3.1/v4's own spelling of the prompt tokens (ISO 639-3 languages), written out here rather than
# read from espnet_ext/languages.py, so that a wrong `owsm_token` in the table fails the test below.
OWSM_LANGUAGE_TOKENS = {"hi": "<hin>", "pa": "<pan>", "te": "<tel>", "it": "<ita>", "en": "<eng>"}


def test_every_lid_language_has_a_literal_owsm_token():
    """A new LID class must get its OWSM token written out above, or its prompt goes untested."""
    assert sorted(OWSM_LANGUAGE_TOKENS) == sorted(LID_LANGUAGES)


@pytest.mark.parametrize("lang, lang_token", OWSM_LANGUAGE_TOKENS.items())
def test_prompt_is_sos_lang_task_notimestamps(tiny, lang, lang_token):
    """The prompt's ids are those of the literal OWSM tokens, looked up by string in the model's list."""
    token_list = tiny.asr_model.token_list
    expected = ["<sos>", lang_token, "<asr>", "<notimestamps>"]
    missing = [token for token in expected if token not in token_list]
    assert not missing, f"the tiny OWSM token list lacks {missing}"
    assert make_backend(tiny, pad_to_30s=True).prompt(lang) == [token_list.index(t) for t in expected]


@pytest.mark.parametrize("beam", [1, 2])
@torch.no_grad()
def test_cached_equals_uncached(tiny, beam):
    backend = make_backend(tiny, pad_to_30s=True)
    rng = np.random.default_rng(0)
    speech = torch.from_numpy(rng.normal(0, 0.1, (2, 16000)).astype(np.float32))
    encoded = backend.encode(speech, torch.tensor([16000, 12000])).repeat(beam)
    prompts = [backend.prompt("hi"), backend.prompt("it")]
    config = SearchConfig(beam_size=beam, max_tokens=10)
    with backend.state(encoded) as state:
        cached = beam_search(state, prompts, backend.eot, backend.suppress, [10, 10], config)
    uncached = beam_search(UncachedState(tiny.asr_model.decoder, encoded), prompts, backend.eot,
                           backend.suppress, [10, 10], config)
    assert cached == uncached


@torch.no_grad()
def test_space_token_is_not_suppressed_and_control_tokens_are(tiny):
    backend = make_backend(tiny, pad_to_30s=True)
    tokens = tiny.asr_model.token_list
    assert not backend.suppress[tokens.index("<space>")]
    assert backend.suppress[tokens.index("<hin>")] and backend.suppress[tokens.index("<sos>")]
    hyp = transcribe_batch(backend, [np.zeros(8000, np.float32)], [None], SearchConfig(max_tokens=5))[0]
    assert hyp.lang in LID_LANGUAGES  # the model's own token, restricted to the LID's classes
