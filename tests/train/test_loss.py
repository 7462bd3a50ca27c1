"""TokenLabelSmoothingLoss: ESPnet's label-smoothing loss value and gradient, padding rows skipped."""
import pytest
import torch

from espnet_ext.models.espnet_import import import_espnet_module
from espnet_ext.train.loss import TokenLabelSmoothingLoss

EspnetLoss = import_espnet_module("espnet.nets.pytorch_backend.transformer.label_smoothing_loss").LabelSmoothingLoss


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("normalize_length", [False, True])
def test_value_and_gradient_equal_espnet(smoothing, normalize_length):
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 50, dtype=torch.float64) * 3
    target = torch.randint(0, 50, (3, 6))
    target[1, 4:] = -1
    target[2, 1:] = -1
    reference = EspnetLoss(50, -1, smoothing, normalize_length)
    ours = TokenLabelSmoothingLoss.like(reference)
    x_ref, x_ours = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    expected, got = reference(x_ref, target), ours(x_ours, target)
    torch.testing.assert_close(got.to(expected.dtype), expected, rtol=1e-6, atol=1e-6)
    expected.backward()
    got.backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad.to(x_ours.grad.dtype), rtol=1e-6, atol=1e-6)
    assert not x_ours.grad[2, 1:].any()  # padding rows take no part


def test_refuses_a_wrong_vocabulary_or_smoothing():
    with pytest.raises(ValueError, match="classes"):
        TokenLabelSmoothingLoss(50, -1, 0.1)(torch.zeros(1, 2, 40), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="smoothing"):
        TokenLabelSmoothingLoss(50, -1, 1.0)
