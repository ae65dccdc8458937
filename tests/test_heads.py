import pytest
import torch
from torch import nn

from moohead.heads import _DepthwiseConv1d, depthwise_conv1d


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("tokens", [1, 2, 7])
def test_depthwise_conv_fast_backward_matches_autograd(kernel: int, tokens: int) -> None:
    """The hand-written backward gives PyTorch's own gradients (the forward is F.conv1d)."""
    torch.manual_seed(0)
    conv = nn.Conv1d(6, 6, kernel, padding=kernel // 2, groups=6).double()
    x = torch.randn(3, 6, tokens, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(_DepthwiseConv1d.apply, (x, conv.weight, conv.bias))
    out = depthwise_conv1d(x, conv)
    grad = torch.randn_like(out)
    fast = torch.autograd.grad(out, (x, conv.weight, conv.bias), grad)
    reference = torch.autograd.grad(conv(x), (x, conv.weight, conv.bias), grad)
    for a, b in zip(fast, reference, strict=True):
        torch.testing.assert_close(a, b)


def test_depthwise_conv_inference_is_the_module() -> None:
    conv = nn.Conv1d(4, 4, 3, padding=1, groups=4)
    x = torch.randn(2, 4, 5)
    with torch.no_grad():
        assert torch.equal(depthwise_conv1d(x, conv), conv(x))
