import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from test_genome import genomes
from torch import nn

from moohead.conv import _DepthwiseConv1d, depthwise_conv1d
from moohead.genome import Genome
from moohead.heads import Standardize, build_head


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
    # A cosine head standardises the cosine over the batch: its two sides must differ
    # (a flip is the same set of tokens, so pooled sides would be equal), and the loss
    # must weight its outputs (their plain sum does not depend on the cosines). Its map
    # of the cosine, and its adapter's output layer, start at zero, which holds back the
    # gradient behind them for the first steps only
    # (test_a_cosine_adapter_starts_at_the_cosine_and_learns).
    cosine = g.pair == "cosine"
    other = torch.randn_like(states) if cosine else states.flip(2)
    pair = (other, mask) if g.two_sided else ()
    if cosine:
        nn.init.ones_(head.mlp.classifier.weight)
    if head.adapter is not None:
        nn.init.normal_(head.adapter.mlp.classifier.weight, std=0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(states, mask, *pair)
    weights = torch.randn(out.shape) if cosine else torch.ones(out.shape)
    out.float().mul(weights).sum().backward()
    for name, p in head.named_parameters():
        assert p.grad is not None, f"{name} gets no gradient ({g.describe()})"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient ({g.describe()})"
        if name not in SHIFT_INVARIANT:
            assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient ({g.describe()})"


def test_a_cosine_adapter_starts_at_the_cosine_and_learns() -> None:
    """A cosine head with an adapter computes the plain cosine head at initialisation (its
    output layer is zero), and training moves it: after a few steps every adapter
    parameter has a gradient, and the two heads differ. The map of the cosine starts at
    zero, so its sign comes from the labels, not from the draw."""
    torch.manual_seed(0)
    plain = build_head(Genome(depth=1, pair="cosine", pool="mean"), hidden_size=8, num_labels=1)
    g = Genome(depth=1, pair="cosine", pool="mean", mlp_layers=2, width=0.5, activation="gelu")
    adapted = build_head(g, hidden_size=8, num_labels=1)
    assert plain.adapter is None and adapted.adapter is not None
    assert not plain.mlp.classifier.weight.any() and not adapted.mlp.classifier.weight.any()
    nn.init.constant_(plain.mlp.classifier.weight, 2.0)
    adapted.mlp.load_state_dict(plain.mlp.state_dict())
    states, mask = torch.randn(1, 4, 5, 8), torch.ones(4, 5, dtype=torch.bool)
    other = torch.randn(1, 4, 5, 8)
    adapted.eval(), plain.eval()
    assert torch.equal(adapted(states, mask, other, mask), plain(states, mask, other, mask))
    optimizer = torch.optim.SGD(adapted.parameters(), lr=0.5)
    for _ in range(3):
        optimizer.zero_grad()
        adapted(states, mask, other, mask).sub(1.0).pow(2).sum().backward()
        optimizer.step()
    for name, p in adapted.adapter.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert not torch.allclose(adapted(states, mask, other, mask), plain(states, mask, other, mask))


def _narrow_band_pairs(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pre-pooled pairs whose cosines sit in a narrow band far from zero, as sentence
    embeddings' do, and standardised targets that rise with the cosine."""
    g = torch.Generator().manual_seed(0)
    common = torch.randn(1, 1, 1, 16, generator=g).expand(1, n, 1, 16)
    u = common + 0.6 * torch.randn(1, n, 1, 16, generator=g)
    v = common + 0.6 * torch.randn(1, n, 1, 16, generator=g)
    cos = F.cosine_similarity(u[0, :, 0], v[0, :, 0])
    return u, v, (cos - cos.mean()) / cos.std()


@pytest.mark.parametrize("standardize", [True, False])
def test_a_cosine_head_learns_which_way_the_cosine_points(standardize: bool) -> None:
    """Trained at a small learning rate on targets (standardised, as training sees them)
    that rise with a cosine sitting around 0.7, the cosine head's outputs rise with the
    targets. Without standardising the cosine, the first steps on the scale follow the
    bias's error (every cosine is positive) and the head learns the wrong sign."""
    u, v, y = _narrow_band_pairs(256)
    torch.manual_seed(0)
    head = build_head(Genome(depth=1, pair="cosine", lr=3e-4), hidden_size=16, num_labels=1)
    nn.init.constant_(head.mlp.classifier.bias, 0.5)  # a start off the targets' mean
    if not standardize:
        head.standardize = nn.Identity()  # type: ignore[assignment]
    mask = torch.ones(256, 1)
    optimizer = torch.optim.AdamW(head.parameters(), lr=3e-4)
    for step in range(200):
        batch = slice(step % 4 * 64, step % 4 * 64 + 64)
        optimizer.zero_grad()
        out = head(u[:, batch], mask[batch], v[:, batch], mask[batch], pooled=True)
        F.mse_loss(out.squeeze(-1), y[batch]).backward()
        optimizer.step()
    head.eval()
    out = head(u, mask, v, mask, pooled=True).squeeze(-1).detach()
    agree = float(torch.corrcoef(torch.stack([out, y]))[0, 1])
    assert (agree > 0.99) == standardize, agree


def test_a_cosine_head_standardises_by_batch_in_training_and_running_stats_after() -> None:
    head = build_head(Genome(depth=1, pair="cosine"), hidden_size=16, num_labels=1)
    standardize = head.standardize
    assert isinstance(standardize, Standardize)
    u, v, _ = _narrow_band_pairs(64)
    mask = torch.ones(64, 1)
    head(u, mask, v, mask, pooled=True)
    mean = float(standardize.running_mean)
    assert 0.05 < mean < 0.1  # one step of momentum 0.1 from 0 towards about 0.7
    head(u[:, :1], mask[:1], v[:, :1], mask[:1], pooled=True)  # a batch of one: no error
    assert float(standardize.running_mean) == mean


def test_a_cosine_head_saved_before_standardising_loads_as_it_computed() -> None:
    """Runs before 2026-12-01 saved cosine heads with no statistics: they load (export and
    predict of an old run keep working) and compute the raw cosine's map, as they did."""
    u, v, _ = _narrow_band_pairs(8)
    mask = torch.ones(8, 1)
    head = build_head(Genome(depth=1, pair="cosine"), hidden_size=16, num_labels=1).eval()
    nn.init.constant_(head.mlp.classifier.weight, 3.0)
    old = {k: t for k, t in head.state_dict().items() if not k.startswith("standardize.")}
    assert len(old) < len(head.state_dict())
    loaded = build_head(Genome(depth=1, pair="cosine"), hidden_size=16, num_labels=1).eval()
    loaded.load_state_dict(old)
    cos = F.cosine_similarity(u[0, :, 0], v[0, :, 0]).unsqueeze(-1)
    expected = 3.0 * cos + head.mlp.classifier.bias
    assert torch.allclose(loaded(u, mask, v, mask, pooled=True), expected, atol=1e-5)


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
