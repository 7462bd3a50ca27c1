"""LoRABankLinear on its own: every computation path equals the formula y = Wx + sum_k w_k s B_k A_k x."""
import pytest
import torch
import whisper.model
from torch import nn

from espnet_ext.lora.bank import LoRABankLinear, RoutingPlan, plan_routing, single_adapter_plan

NAMES = ("hi", "pa", "te", "it")


def make_bank(linear_cls=nn.Linear, rank=3, alpha=6.0, seed=0) -> LoRABankLinear:
    torch.manual_seed(seed)
    bank = LoRABankLinear(linear_cls(10, 7), NAMES, rank=rank, alpha=alpha)
    with torch.no_grad():
        bank.lora_B.normal_(0, 0.5)
    return bank.eval()


def reference(bank: LoRABankLinear, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The bank formula written out sample by sample, adapter by adapter."""
    out = []
    for b in range(x.size(0)):
        y = x[b] @ bank.base.weight.T + bank.base.bias
        for k in range(len(NAMES)):
            y = y + weights[b, k] * bank.scaling * (x[b] @ bank.lora_A[k].T @ bank.lora_B[k].T)
        out.append(y)
    return torch.stack(out)


def run(bank: LoRABankLinear, x: torch.Tensor, plan) -> torch.Tensor:
    bank.routing = plan
    with torch.no_grad():
        return bank(x)


def test_plan_kinds():
    assert plan_routing(torch.tensor([[0.0, 1, 0, 0], [0, 1, 0, 0]]), 4).kind == "single"
    assert plan_routing(torch.tensor([[0.0, 1, 0, 0], [0, 0, 1, 0]]), 4).kind == "per_row"
    assert plan_routing(torch.tensor([[0.0, 0.5, 0, 0], [0, 0.5, 0, 0]]), 4).kind == "per_row"
    assert plan_routing(torch.tensor([[0.0, 0, 0, 0], [0, 0, 0, 0]]), 4).kind == "none"
    mixed = plan_routing(torch.tensor([[0.3, 0.7, 0, 0], [0, 1, 0, 0]]), 4)
    assert mixed.kind == "mixed" and mixed.columns.tolist() == [0, 1]  # zero columns skipped
    with pytest.raises(ValueError, match=r"\[batch, 4\]"):
        plan_routing(torch.ones(2, 3), 4)


def test_zero_initialised_b_is_the_base_layer():
    torch.manual_seed(0)
    base = nn.Linear(10, 7)
    bank = LoRABankLinear(base, NAMES, rank=4, alpha=8).eval()
    x = torch.randn(2, 5, 10)
    assert bank.lora_A.abs().sum() > 0  # A is random, so only B = 0 makes the delta vanish
    expected = base(x)
    assert torch.equal(run(bank, x, plan_routing(torch.tensor([[0.2, 0.3, 0.5, 0], [0, 0, 0, 1.0]]), 4)), expected)


@pytest.mark.parametrize("shape", [(3, 5, 10), (3, 10)])
def test_one_hot_mixed_batch_equals_each_sample_alone(shape):
    bank = make_bank()
    x = torch.randn(*shape)
    choice = [2, 0, 3]
    weights = torch.nn.functional.one_hot(torch.tensor(choice), 4).float()
    mixed = run(bank, x, plan_routing(weights, 4))
    assert bank.routing.kind == "per_row"
    for b, k in enumerate(choice):
        alone = run(bank, x[b : b + 1], single_adapter_plan(k))
        torch.testing.assert_close(mixed[b : b + 1], alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed, reference(bank, x, weights), atol=1e-5, rtol=0)


def test_soft_weights_are_the_weighted_sum_of_single_adapter_deltas():
    bank = make_bank()
    x = torch.randn(2, 4, 10)
    weights = torch.tensor([[0.1, 0.6, 0.0, 0.3], [0.25, 0.25, 0.25, 0.25]])
    base = run(bank, x, None)
    deltas = torch.stack([run(bank, x, single_adapter_plan(k)) - base for k in range(4)], dim=1)
    expected = base + (weights[:, :, None, None] * deltas).sum(1)
    torch.testing.assert_close(run(bank, x, plan_routing(weights, 4)), expected, atol=1e-5, rtol=0)


def test_fast_paths_equal_the_general_path():
    bank = make_bank()
    x = torch.randn(3, 5, 10)
    everything = torch.arange(4)
    same = torch.tensor([[0.0, 0, 1, 0]] * 3)
    general = run(bank, x, RoutingPlan("mixed", same, columns=everything))
    torch.testing.assert_close(run(bank, x, plan_routing(same, 4)), general, atol=1e-6, rtol=0)
    torch.testing.assert_close(run(bank, x, single_adapter_plan(2)), general, atol=1e-6, rtol=0)
    rows = torch.tensor([[0.0, 0.4, 0, 0], [1.0, 0, 0, 0], [0, 0, 0, 0]])
    general = run(bank, x, RoutingPlan("mixed", rows, columns=everything))
    torch.testing.assert_close(run(bank, x, plan_routing(rows, 4)), general, atol=1e-6, rtol=0)
    sparse = torch.tensor([[0.0, 0.4, 0, 0.6], [0.5, 0, 0, 0.5], [0, 1.0, 0, 0]])
    general = run(bank, x, RoutingPlan("mixed", sparse, columns=everything))
    torch.testing.assert_close(run(bank, x, plan_routing(sparse, 4)), general, atol=1e-6, rtol=0)


def test_per_frame_weights_constant_over_time_equal_per_sample_weights():
    bank = make_bank()
    x = torch.randn(3, 6, 10)
    weights = torch.tensor([[0.0, 1, 0, 0], [0.3, 0, 0.7, 0], [0, 0, 0, 0]])
    frames = plan_routing(weights[:, None, :].expand(3, 6, 4).contiguous(), 4)
    assert frames.kind == "frames"
    torch.testing.assert_close(run(bank, x, frames), run(bank, x, plan_routing(weights, 4)), atol=1e-6, rtol=0)


def test_per_frame_weights_route_each_frame_through_its_adapter():
    bank = make_bank()
    x = torch.randn(2, 5, 10)
    langs = torch.tensor([[0, 0, 3, 3, 1], [2, 2, 2, 0, 0]])  # a switch inside each sample
    weights = torch.nn.functional.one_hot(langs, 4).float()
    weights[1, 4] = 0.0  # a frame of no adapter (the base model, as for LID-only English)
    routed = run(bank, x, plan_routing(weights, 4))
    base = run(bank, x, None)
    for b in range(2):
        for t in range(5):
            k = int(langs[b, t])
            alone = run(bank, x[b : b + 1, t : t + 1], single_adapter_plan(k))[0, 0] if weights[b, t].any() else base[b, t]
            torch.testing.assert_close(routed[b, t], alone, atol=1e-5, rtol=0)
    with pytest.raises(RuntimeError, match="modules"):  # e.g. the decoder's tokens are not those frames
        run(bank, torch.randn(2, 4, 10), plan_routing(weights, 4))


def test_merged_equals_unmerged_and_round_trip_restores_weight():
    bank = make_bank(whisper.model.Linear)
    original = bank.base.weight.detach().clone()
    x = torch.randn(2, 6, 10)
    routed = run(bank, x, single_adapter_plan(bank.index("te")))
    bank.merge("te")
    assert not torch.equal(bank.base.weight, original)
    torch.testing.assert_close(run(bank, x, None), routed, atol=1e-5, rtol=0)
    torch.testing.assert_close(run(bank, x, single_adapter_plan(0)), routed, atol=1e-5, rtol=0)  # bank skipped
    with pytest.raises(RuntimeError, match="already merged"):
        bank.merge("hi")
    bank.unmerge()
    assert torch.equal(bank.base.weight, original)
    assert bank.merged is None and bank.original_weight is None


def test_whisper_linear_in_bfloat16_casts_adapters_to_the_input():
    bank = make_bank(whisper.model.Linear)
    x = torch.randn(2, 3, 10)
    weights = torch.tensor([[0.5, 0.5, 0, 0], [0, 0, 0, 1.0]])
    full = run(bank, x, plan_routing(weights, 4))
    half = run(bank, x.bfloat16(), plan_routing(weights, 4))
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), full, atol=0.1, rtol=0.02)


def test_batch_size_mismatch_names_the_fix():
    bank = make_bank()
    bank.routing = plan_routing(torch.eye(4)[:2], 4)
    with pytest.raises(RuntimeError, match="reorder_routing_weights"):
        bank(torch.randn(3, 10))


def test_base_checkpoint_keys_load_into_the_wrapped_layer():
    plain = nn.Linear(10, 7)
    bank = make_bank()
    bank.load_state_dict({**plain.state_dict(), "lora_A": bank.lora_A, "lora_B": bank.lora_B})
    assert torch.equal(bank.base.weight, plain.weight) and torch.equal(bank.base.bias, plain.bias)
    assert set(bank.state_dict()) == {"base.weight", "base.bias", "lora_A", "lora_B"}


def test_dropout_only_touches_the_adapter_path():
    torch.manual_seed(0)
    bank = LoRABankLinear(nn.Linear(10, 7), NAMES, rank=3, alpha=6, dropout=0.9).train()
    x = torch.randn(4, 10)
    bank.routing = single_adapter_plan(0)
    assert torch.equal(bank(x), bank.base(x))  # B = 0: whatever dropout does, no change
    with torch.no_grad():
        bank.lora_B.normal_()
    assert not torch.allclose(bank(x), bank(x))  # the adapter path is stochastic in training
