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
    assert conv.bias is not None
    inputs = (x, conv.weight, conv.bias)
    assert torch.autograd.gradcheck(_DepthwiseConv1d.apply, inputs)
    out = depthwise_conv1d(x, conv)
    grad = torch.randn_like(out)
    fast = torch.autograd.grad(out, inputs, grad)
    reference = torch.autograd.grad(conv(x), inputs, grad)
    for a, b in zip(fast, reference, strict=True):
        torch.testing.assert_close(a, b)


def test_depthwise_conv_inference_is_the_module() -> None:
    conv = nn.Conv1d(4, 4, 3, padding=1, groups=4)
    x = torch.randn(2, 4, 5)
    with torch.no_grad():
        assert torch.equal(depthwise_conv1d(x, conv), conv(x))


# Parameters whose gradient is zero in exact arithmetic (rounding leaves it at 0 or ~1e-9):
# attention pooling's score bias is added to every token's score, and a softmax does not
# change when all its inputs move together. The bias is dead weight, not a broken block.
SHIFT_INVARIANT = {"pool.query.bias"}


@settings(max_examples=40, deadline=None)
@given(genomes(num_layers=3, is_pair=True))
def test_every_genome_trains_under_mixed_precision(g: Genome) -> None:
    """Fine-tuning on a GPU runs heads under bf16 autocast: every block must accept it, and
    every parameter must learn: a finite, non-zero gradient on each, but for SHIFT_INVARIANT."""
    torch.manual_seed(0)
    head = build_head(g, hidden_size=32, num_labels=2)
    states, mask = torch.randn(g.k, 3, 6, 32), torch.ones(3, 6, dtype=torch.bool)
    pair = (states.flip(2), mask) if g.two_sided else ()
    if head.adapter is not None:
        # The adapter's output layer starts at zero, which holds back the gradient of its
        # hidden layers for the first step only (test_a_cosine_adapter_starts_at_the_cosine).
        nn.init.normal_(head.adapter.mlp.classifier.weight, std=0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(states, mask, *pair)
    out.float().sum().backward()
    for name, p in head.named_parameters():
        assert p.grad is not None, f"{name} gets no gradient ({g.describe()})"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient ({g.describe()})"
        if name not in SHIFT_INVARIANT:
            assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient ({g.describe()})"


def test_a_cosine_adapter_starts_at_the_cosine_and_learns() -> None:
    """A cosine head with an adapter computes the plain cosine head at initialisation (its
    output layer is zero), and training moves it: after one step every adapter parameter
    has a gradient, and the two heads differ."""
    torch.manual_seed(0)
    plain = build_head(Genome(depth=1, pair="cosine", pool="mean"), hidden_size=8, num_labels=1)
    g = Genome(depth=1, pair="cosine", pool="mean", mlp_layers=2, width=0.5, activation="gelu")
    adapted = build_head(g, hidden_size=8, num_labels=1)
    assert plain.adapter is None and adapted.adapter is not None
    adapted.mlp.load_state_dict(plain.mlp.state_dict())
    states, mask = torch.randn(1, 4, 5, 8), torch.ones(4, 5, dtype=torch.bool)
    other = torch.randn(1, 4, 5, 8)
    adapted.eval(), plain.eval()
    assert torch.equal(adapted(states, mask, other, mask), plain(states, mask, other, mask))
    optimizer = torch.optim.SGD(adapted.parameters(), lr=0.5)
    for _ in range(2):
        optimizer.zero_grad()
        adapted(states, mask, other, mask).sub(1.0).pow(2).sum().backward()
        optimizer.step()
    for name, p in adapted.adapter.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert not torch.allclose(adapted(states, mask, other, mask), plain(states, mask, other, mask))


def test_attention_pool_score_bias_gets_no_gradient() -> None:
    """Why SHIFT_INVARIANT holds: the pooled vector does not depend on the score bias."""
    torch.manual_seed(0)
    head = build_head(Genome(depth=1, pool="attention"), hidden_size=8, num_labels=2)
    head = head.double().eval()
    states, mask = torch.randn(1, 3, 5, 8, dtype=torch.double), torch.ones(3, 5)
    head(states, mask).sum().backward()
    query = head.pool.query
    assert isinstance(query, nn.Linear)
    bias = query.bias
    assert bias.grad is not None and bias.grad.abs().max() < 1e-12
    with torch.no_grad():
        before = head(states, mask)
        bias.add_(5.0)
        torch.testing.assert_close(head(states, mask), before)
