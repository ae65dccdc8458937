import pytest
import torch
from hypothesis import given, settings
from test_genome import genomes
from torch import nn

from moohead.conv import _DepthwiseConv1d, depthwise_conv1d
from moohead.genome import Genome
from moohead.heads import build_head


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


@settings(max_examples=40, deadline=None)
@given(genomes(num_layers=3, is_pair=True))
def test_every_genome_trains_under_mixed_precision(g: Genome) -> None:
    """Fine-tuning on a GPU runs heads under bf16 autocast: every block must accept it."""
    torch.manual_seed(0)
    head = build_head(g, hidden_size=32, num_labels=2)
    states, mask = torch.randn(g.k, 3, 6, 32), torch.ones(3, 6, dtype=torch.bool)
    pair = (states.flip(2), mask) if g.pair == "siamese" else ()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(states, mask, *pair)
    out.float().sum().backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in head.parameters())
