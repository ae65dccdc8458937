"""genome.py without a model: identity, canonical form, the baseline, and pymoo's variables.

No torch here (test_genome.py builds the heads), so the mutation run can use these.
"""

import itertools
import json
from dataclasses import fields, replace
from typing import Any

import numpy as np
import pytest

from moohead.genome import (
    ACTIVATIONS,
    DROPOUTS,
    LAYER_COUNTS,
    LAYER_MODES,
    LEARNING_RATES,
    MAX_MLP_LAYERS,
    MIXERS,
    PAIR_MODES,
    POOLS,
    WEIGHT_DECAYS,
    WIDTHS,
    Genome,
    baseline,
    canonical,
    decode,
    encode,
    is_baseline_arch,
    search_space,
    space_revision,
)

RICH = Genome(
    depth=3,
    layers="concat",
    k=2,
    pair="siamese",
    pool="mean",
    mixer="conv3",
    mlp_layers=2,
    width=0.5,
    activation="gelu",
    norm=True,
    residual=True,
    dropout=0.2,
    lr=3e-4,
    weight_decay=0.1,
)


# --- identity -----------------------------------------------------------------------------


def test_to_dict_has_every_gene_and_from_dict_inverts_it() -> None:
    d = RICH.to_dict()
    assert list(d) == [f.name for f in fields(Genome)]
    assert d["layers"] == "concat" and d["width"] == 0.5 and d["norm"] is True
    assert Genome.from_dict(d) == RICH
    assert Genome.from_dict(json.loads(json.dumps(d))) == RICH


def test_from_dict_fills_defaults_and_refuses_unknown_genes() -> None:
    assert Genome.from_dict({"depth": 2}) == Genome(depth=2)
    with pytest.raises(ValueError, match=r"unknown genome genes: \['bogus', 'zeta'\]"):
        Genome.from_dict({"depth": 2, "zeta": 1, "bogus": 0})


def test_key_is_sorted_canonical_json() -> None:
    key = RICH.key()
    assert json.loads(key) == RICH.to_dict()
    assert list(json.loads(key)) == sorted(RICH.to_dict())
    assert key == json.dumps(RICH.to_dict(), sort_keys=True)
    assert replace(RICH, lr=1e-3).key() != key
    assert Genome.from_dict(RICH.to_dict()).key() == key


def test_arch_key_leaves_out_exactly_the_training_genes() -> None:
    arch = json.loads(RICH.arch_key())
    assert set(arch) == {f.name for f in fields(Genome)} - {"lr", "weight_decay", "dropout"}
    assert list(arch) == sorted(arch)
    assert {k: RICH.to_dict()[k] for k in arch} == arch
    same_head = replace(RICH, lr=1e-3, weight_decay=0.0, dropout=0.0)
    assert same_head.arch_key() == RICH.arch_key() and same_head.key() != RICH.key()
    changes: list[dict[str, Any]] = [
        {"depth": 2},
        {"pool": "max"},
        {"mixer": "none"},
        {"norm": False},
    ]
    for change in changes:
        assert replace(RICH, **change).arch_key() != RICH.arch_key(), change


@pytest.mark.parametrize(
    ("genome", "text"),
    [
        (baseline(6), "d6 last cls mlp1x1tanh lr0.001"),
        (Genome(depth=1), "d1 last cls lr0.001"),
        (RICH, "siam d3 concat2 mean conv3 mlp2x0.5gelu+ln+res lr0.0003"),
        (replace(RICH, norm=False), "siam d3 concat2 mean conv3 mlp2x0.5gelu+res lr0.0003"),
        (replace(RICH, residual=False), "siam d3 concat2 mean conv3 mlp2x0.5gelu+ln lr0.0003"),
        (Genome(depth=2, layers="mix", k=3, pool="attention", lr=3e-3), "d2 mix3 attention lr0.003"),
        (Genome(depth=4, pair="joint", mixer="attention", mlp_layers=3, width=2.0), "d4 last cls attention mlp3x2tanh lr0.001"),
    ],
)  # fmt: skip
def test_describe(genome: Genome, text: str) -> None:
    assert genome.describe() == text


# --- canonical ----------------------------------------------------------------------------


def test_depth_is_clamped_to_the_encoder() -> None:
    assert canonical(Genome(depth=0), 6, False).depth == 1
    assert canonical(Genome(depth=9), 6, False).depth == 6
    assert canonical(Genome(depth=6), 6, False).depth == 6
    assert canonical(Genome(depth=1), 6, False).depth == 1


def test_layer_count_follows_the_read_mode_and_depth() -> None:
    assert canonical(Genome(depth=4, layers="last", k=3), 6, False).k == 1
    g = canonical(Genome(depth=4, layers="concat", k=3), 6, False)
    assert (g.layers, g.k) == ("concat", 3)
    g = canonical(Genome(depth=2, layers="mix", k=4), 6, False)
    assert (g.layers, g.k) == ("mix", 2)  # capped by depth
    g = canonical(Genome(depth=1, layers="concat", k=2), 6, False)
    assert (g.layers, g.k) == ("last", 1)  # one layer: just the last
    g = canonical(Genome(depth=9, layers="mix", k=4), 3, False)
    assert (g.depth, g.layers, g.k) == (3, "mix", 3)  # capped by the clamped depth


def test_pair_mode_only_on_pair_tasks() -> None:
    assert canonical(Genome(depth=2, pair="siamese"), 6, False).pair == "joint"
    assert canonical(Genome(depth=2, pair="siamese"), 6, True).pair == "siamese"
    assert canonical(Genome(depth=2, pair="joint"), 6, True).pair == "joint"
    assert canonical(Genome(depth=2, pair="cosine"), 6, False).pair == "joint"


def test_cosine_pairs_without_an_adapter_are_a_linear_map_of_one_number() -> None:
    """cos(u, v) is scale-invariant and one-dimensional: with no adapter before it, no
    dropout and no L2 norm."""
    g = canonical(Genome(depth=2, pair="cosine", normalize=True, dropout=0.3, lr=3e-4), 6, True)
    assert g == Genome(depth=2, pair="cosine", mlp_layers=0, dropout=0.0, lr=3e-4)
    assert g.two_sided and canonical(Genome(depth=2, pair="siamese"), 6, True).two_sided
    assert not Genome(depth=2).two_sided
    assert g.describe() == "cos d2 last cls lr0.0003"
    assert Genome(depth=2, pool="mean", normalize=True).describe() == "d2 last mean+l2 lr0.001"


def test_a_cosine_adapter_keeps_its_genes() -> None:
    """With an adapter, u + MLP(u) on each side, normalising first and dropout matter."""
    a = Genome(depth=2, pair="cosine", normalize=True, mlp_layers=2, dropout=0.3, lr=3e-4)
    assert canonical(a, 6, True) == a
    assert a.describe() == "cos d2 last cls+l2 adapter2x1tanh lr0.0003"
    assert space_revision(True) == 2 and space_revision(False) == 1


def test_linear_classifier_has_no_mlp_genes() -> None:
    g = canonical(
        Genome(depth=2, mlp_layers=0, width=2.0, activation="gelu", norm=True, residual=True), 6, False
    )  # fmt: skip
    assert (g.width, g.activation, g.norm, g.residual) == (1.0, "tanh", False, False)


def test_one_hidden_layer_has_no_residual_but_keeps_the_rest() -> None:
    g = canonical(
        Genome(depth=2, mlp_layers=1, width=2.0, activation="gelu", norm=True, residual=True), 6, False
    )  # fmt: skip
    assert (g.width, g.activation, g.norm, g.residual) == (2.0, "gelu", True, False)
    g = canonical(replace(g, mlp_layers=2, residual=True), 6, False)
    assert (g.width, g.activation, g.norm, g.residual) == (2.0, "gelu", True, True)


def test_canonical_leaves_the_other_genes_alone_and_is_idempotent() -> None:
    g = canonical(RICH, 6, True)
    assert g == RICH  # already canonical
    odd = Genome(depth=7, layers="mix", k=4, pool="max", mixer="conv5", dropout=0.3, lr=3e-3,
                 weight_decay=0.0)  # fmt: skip
    c = canonical(odd, 4, False)
    assert (c.pool, c.mixer, c.dropout, c.lr, c.weight_decay) == ("max", "conv5", 0.3, 3e-3, 0.0)
    assert canonical(c, 4, False) == c


# --- baseline -----------------------------------------------------------------------------


def test_baseline_is_bert_for_sequence_classification_head() -> None:
    b = baseline(12)
    assert b.to_dict() == {
        "depth": 12, "layers": "last", "k": 1, "pair": "joint", "pool": "cls", "normalize": False,
        "mixer": "none",
        "mlp_layers": 1, "width": 1.0, "activation": "tanh", "norm": False, "residual": False,
        "dropout": 0.1, "lr": 1e-3, "weight_decay": 0.01,
    }  # fmt: skip
    assert baseline(6, lr=3e-4).lr == 3e-4 and baseline(6, lr=3e-4).depth == 6
    assert canonical(b, 12, True) == b


def test_is_baseline_arch_ignores_training_genes_only() -> None:
    b = baseline(6)
    assert is_baseline_arch(b, 6)
    assert is_baseline_arch(replace(b, lr=3e-3, dropout=0.3, weight_decay=0.0), 6)
    assert not is_baseline_arch(b, 4)  # the baseline reads every layer
    assert not is_baseline_arch(replace(b, depth=5), 6)
    assert not is_baseline_arch(replace(b, pool="mean"), 6)
    assert not is_baseline_arch(replace(b, mlp_layers=0), 6)


# --- pymoo variables ----------------------------------------------------------------------


@pytest.mark.parametrize("num_layers", [1, 6, 12])
def test_search_space_spans_every_gene(num_layers: int) -> None:
    from pymoo.core.variable import Binary, Choice, Integer

    single = search_space(num_layers, is_pair=False)
    pair = search_space(num_layers, is_pair=True)
    genes = {f.name for f in fields(Genome)}
    assert set(single) == genes - {"pair"} and set(pair) == genes
    assert isinstance(single["depth"], Integer) and single["depth"].bounds == (1, num_layers)
    assert isinstance(single["mlp_layers"], Integer)
    assert single["mlp_layers"].bounds == (0, MAX_MLP_LAYERS) == (0, 3)
    assert isinstance(single["norm"], Binary) and isinstance(single["residual"], Binary)
    options = {
        "layers": LAYER_MODES, "k": LAYER_COUNTS, "pool": POOLS, "mixer": MIXERS,
        "width": WIDTHS, "activation": ACTIVATIONS, "dropout": DROPOUTS, "lr": LEARNING_RATES,
        "weight_decay": WEIGHT_DECAYS,
    }  # fmt: skip
    for name, values in options.items():
        assert isinstance(single[name], Choice), name
        assert list(single[name].options) == list(values), name
    assert list(pair["pair"].options) == list(PAIR_MODES) == ["joint", "siamese", "cosine"]


def test_decode_turns_numpy_values_into_a_canonical_genome() -> None:
    x = {
        "depth": np.int64(3), "layers": np.str_("concat"), "k": np.int64(4),
        "pool": np.str_("max"), "mixer": np.str_("conv5"), "mlp_layers": np.int64(2),
        "width": np.float64(0.25), "activation": np.str_("silu"), "norm": np.bool_(True),
        "residual": np.bool_(False), "dropout": np.float64(0.3), "lr": np.float64(3e-3),
        "weight_decay": np.float64(0.1), "pair": np.str_("siamese"), "normalize": np.bool_(True),
    }  # fmt: skip
    g = decode(x, 6, True)
    assert g == Genome(depth=3, layers="concat", k=3, pair="siamese", pool="max", normalize=True,
                       mixer="conv5",
                       mlp_layers=2, width=0.25, activation="silu", norm=True, residual=False,
                       dropout=0.3, lr=3e-3, weight_decay=0.1)  # fmt: skip
    types = {name: type(value) for name, value in g.to_dict().items()}
    assert types == {f.name: type(getattr(RICH, f.name)) for f in fields(Genome)}
    # json.dumps refuses numpy scalars: a decoded genome must serialise
    assert json.loads(g.key())["depth"] == 3
    # single-sentence tasks have no pair variable
    del x["pair"]
    assert decode(x, 6, False).pair == "joint"
    assert decode(x, 2, False).k == 2


def test_encode_fills_the_ignored_k_and_drops_pair_for_single_sentence() -> None:
    x = encode(baseline(6), is_pair=False)
    assert "pair" not in x and x["k"] == LAYER_COUNTS[0] == 2
    assert {k: v for k, v in x.items() if k != "k"} == {
        k: v for k, v in baseline(6).to_dict().items() if k not in ("k", "pair")
    }
    y = encode(RICH, is_pair=True)
    assert y == RICH.to_dict()  # k=2 is a real option: unchanged


def test_decode_encode_round_trip_over_a_grid() -> None:
    grid = itertools.product(
        (1, 2, 4), LAYER_MODES, LAYER_COUNTS, PAIR_MODES, ("cls", "attention"), (0, 1, 2),
        (False, True),
    )  # fmt: skip
    for depth, layers, k, pair, pool, mlp, flag in grid:
        g = canonical(
            Genome(depth=depth, layers=layers, k=k, pair=pair, pool=pool, mlp_layers=mlp,
                   norm=flag, residual=flag, width=2.0, activation="relu"),
            4, True,
        )  # fmt: skip
        assert decode(encode(g, True), 4, True) == g
        single = canonical(g, 4, False)
        assert decode(encode(single, False), 4, False) == single
