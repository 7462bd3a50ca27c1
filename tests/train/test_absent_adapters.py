"""An optimizer step leaves the adapters of languages absent from its batch exactly as they were."""
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from espnet_ext.lora.bank import LoRABankLinear, plan_routing
from espnet_ext.train.absent_adapters import absent_adapters, hold_absent_adapters
from espnet_ext.train.task import LoRAASRTask


def bank_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(LoRABankLinear(nn.Linear(6, 5), ["hi", "te"], rank=2, alpha=4))


def backward_on(model: nn.Sequential, adapters: list) -> None:
    """Loss of a batch whose sample i goes through adapter adapters[i]; gradients accumulate."""
    bank = model[0]
    bank.routing = plan_routing(torch.nn.functional.one_hot(torch.tensor(adapters), 2).float(), 2)
    model(torch.randn(len(adapters), 3, 6)).pow(2).sum().backward()
    bank.routing = None


def train(hold: bool, batches: list) -> tuple:
    """AdamW steps over `batches` (each a list of micro-batches); the te rows of A, B and exp_avg after."""
    model = bank_model()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1, weight_decay=0.1)
    if hold:
        hold_absent_adapters(optimizer, model)
    snapshots = []
    for micro_batches in batches:
        optimizer.zero_grad()
        for adapters in micro_batches:
            backward_on(model, adapters)
        optimizer.step()
        bank = model[0]
        snapshots.append([t.detach().clone() for t in (bank.lora_A, bank.lora_B, optimizer.state[bank.lora_B]["exp_avg"])])
    return snapshots


def test_absent_adapter_keeps_its_weights_and_adam_state():
    both, hi_only = [[0, 1, 0]], [[0, 0]]
    held = train(hold=True, batches=[both, hi_only, hi_only])
    drifted = train(hold=False, batches=[both, hi_only, hi_only])
    for after_both, after_hi in zip(held[0], held[2]):
        assert torch.equal(after_hi[1], after_both[1])  # te: weights and momentum as after the last te batch
        assert not torch.equal(after_hi[0], after_both[0])  # hi went on training
    # without the hooks AdamW's momentum and weight decay move te on batches without te
    assert not torch.equal(drifted[2][0][1], drifted[0][0][1])
    assert not torch.equal(drifted[2][1][1], drifted[0][1][1])


def test_an_adapter_used_by_any_accumulated_micro_batch_trains():
    held = train(hold=True, batches=[[[0, 1]], [[0], [1]]])  # step 2: hi and te in separate micro-batches
    for after_first, after_second in zip(held[0], held[1]):
        assert not torch.equal(after_second[1], after_first[1])


def test_first_step_counts_an_adapter_present_by_its_b_gradient():
    model = bank_model()
    backward_on(model, [1, 1])  # te only; B is still zero, so A's gradient is zero for every adapter
    assert not model[0].lora_A.grad.any()
    assert absent_adapters(model[0]).tolist() == [0]


@pytest.mark.parametrize("hold", [True, False])
def test_the_task_option_hooks_espnets_optimizer(hold):
    model = bank_model()
    args = SimpleNamespace(optim="adamw", optim_conf={"lr": 0.1, "weight_decay": 0.1}, sharded_ddp=False,
                           exclude_weight_decay=False, hold_absent_adapters=hold)
    (optimizer,) = LoRAASRTask.build_optimizers(args, model)
    te_rows = []
    for adapters in ([0, 1], [0, 0]):  # hi and te, then hi only
        optimizer.zero_grad()
        backward_on(model, adapters)
        optimizer.step()
        te_rows.append(model[0].lora_B[1].detach().clone())
    assert te_rows[0].any()
    assert torch.equal(te_rows[1], te_rows[0]) == hold
