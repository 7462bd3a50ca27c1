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


@torch.no_grad()
def test_prompt_is_sos_lang_task_notimestamps(tiny):
    backend = make_backend(tiny, pad_to_30s=True)
    tokens = [tiny.asr_model.token_list[i] for i in backend.prompt("te")]
    assert tokens == ["<sos>", "<tel>", "<asr>", "<notimestamps>"]


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
