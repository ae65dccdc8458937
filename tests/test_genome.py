import json
from dataclasses import replace

import pytest
import torch
from conftest import tiny_config
from hypothesis import given, settings
from hypothesis import strategies as st

from moohead.genome import (
    LAYER_COUNTS,
    Genome,
    baseline,
    canonical,
    decode,
    encode,
    is_baseline_arch,
    search_space,
)
from moohead.heads import build_head


def genomes(num_layers: int = 4, is_pair: bool = True) -> st.SearchStrategy[Genome]:
    """Random variable dicts from the pymoo search space, decoded as the search does."""
    space = search_space(num_layers, is_pair)

    def sample(seed: int) -> Genome:
        import numpy as np

        rng = np.random.default_rng(seed)
        x = {name: var.sample(1, random_state=rng)[0] for name, var in space.items()}
        return decode(x, num_layers, is_pair)

    return st.integers(0, 2**32 - 1).map(sample)


@given(genomes())
def test_decode_encode_round_trip_and_json(g: Genome) -> None:
    assert decode(encode(g, True), 4, True) == g
    assert Genome.from_dict(json.loads(json.dumps(g.to_dict()))) == g
    assert canonical(g, 4, True) == g


def test_canonical_merges_genomes_that_compute_the_same_head() -> None:
    a = Genome(depth=3, layers="last", k=4, mlp_layers=0, width=2.0, activation="gelu")
    b = Genome(depth=3, layers="last", k=2, mlp_layers=0, width=0.5, activation="relu")
    assert canonical(a, 6, False) == canonical(b, 6, False)
    # k is capped by depth, and a mix of one layer is just the last layer
    assert canonical(Genome(depth=1, layers="mix", k=3), 6, False).layers == "last"
    assert canonical(Genome(depth=2, layers="concat", k=4), 6, False).k == 2
    # single-sentence tasks have no siamese mode
    assert canonical(Genome(depth=2, pair="siamese"), 6, False).pair == "joint"
    assert LAYER_COUNTS[0] == encode(canonical(a, 6, False), False)["k"]


def test_arch_key_ignores_training_genes() -> None:
    g = baseline(6)
    assert replace(g, lr=3e-3, dropout=0.3, weight_decay=0.1).arch_key() == g.arch_key()
    assert replace(g, pool="mean").arch_key() != g.arch_key()
    assert is_baseline_arch(replace(g, lr=1e-4), 6)


def test_baseline_is_the_hugging_face_head() -> None:
    """The baseline head computes exactly BertForSequenceClassification's head."""
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    hf = BertForSequenceClassification(tiny_config()).eval()
    head = build_head(baseline(2), 32, 2).eval()
    mlp = head.mlp
    mlp.blocks[0][0].load_state_dict(hf.bert.pooler.dense.state_dict())  # type: ignore[index]
    mlp.classifier.load_state_dict(hf.classifier.state_dict())
    ids = torch.randint(5, 99, (3, 7))
    with torch.no_grad():
        out = hf.bert(ids, output_hidden_states=True)
        expected = hf(ids).logits
        got = head(torch.stack(out.hidden_states[-1:]), torch.ones(3, 7))
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("num_layers", [1, 6, 12])
def test_search_space_bounds(num_layers: int) -> None:
    space = search_space(num_layers, is_pair=False)
    assert space["depth"].bounds == (1, num_layers)
    assert "pair" not in space and "pair" in search_space(num_layers, is_pair=True)


@settings(max_examples=60, deadline=None)
@given(genomes(num_layers=3, is_pair=True), st.integers(1, 4), st.integers(1, 9))
def test_every_genome_builds_and_runs(g: Genome, batch: int, tokens: int) -> None:
    """Property: every genome in the space builds, runs forward and backward, and ignores padding."""
    torch.manual_seed(0)
    head = build_head(g, hidden_size=32, num_labels=3).eval()
    states = torch.randn(g.k, batch, tokens, 32)
    mask = torch.ones(batch, tokens, dtype=torch.bool)
    pair = (states.flip(2), mask) if g.two_sided else ()
    out = head(states, mask, *pair)
    assert out.shape == (batch, 3) and torch.isfinite(out).all()
    # Padding: two extra garbage tokens, masked out, must not change the output.
    padded = torch.cat([states, 100 * torch.randn(g.k, batch, 2, 32)], dim=2)
    pmask = torch.cat([mask, torch.zeros(batch, 2, dtype=torch.bool)], dim=1)
    ppair: tuple[torch.Tensor, ...] = ()
    if g.two_sided:
        ppair = (torch.cat([states.flip(2), torch.zeros(g.k, batch, 2, 32)], dim=2), pmask)
    torch.testing.assert_close(head(padded, pmask, *ppair), out, atol=1e-4, rtol=1e-4)
    head.train()
    head(states, mask, *pair).sum().backward()
