"""The head genome: a frozen dataclass, its search space, and the one decode from pymoo.

Genes that cannot matter for a genome (the width of an MLP with no hidden layer, the
pair mode of a single-sentence task, ...) are set to canonical values, so that two
genomes that compute the same head compare equal and are never trained twice.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

LAYER_MODES = ("last", "concat", "mix")
LAYER_COUNTS = (2, 3, 4)
PAIR_MODES = ("joint", "siamese", "cosine")
POOLS = ("cls", "mean", "max", "cls+mean", "attention")
MIXERS = ("none", "conv3", "conv5", "attention")
ACTIVATIONS = ("tanh", "relu", "gelu", "silu")
WIDTHS = (0.25, 0.5, 1.0, 2.0)  # hidden width as a multiple of the encoder's hidden size
DROPOUTS = (0.0, 0.1, 0.2, 0.3)
LEARNING_RATES = (3e-4, 1e-3, 3e-3)
WEIGHT_DECAYS = (0.0, 0.01, 0.1)
MAX_MLP_LAYERS = 3

# Genes that change what is computed; the rest only change how the head is trained.
TRAINING_GENES = ("lr", "weight_decay", "dropout")


@dataclass(frozen=True)
class Genome:
    """One classification head on an encoder cut to ``depth`` layers.

    Attributes:
        depth: Encoder layers kept (1..L).
        layers: Hidden states read: ``last``, ``concat`` or scalar ``mix`` of the last ``k``.
        k: How many of the last layers ``concat``/``mix`` read.
        pair: ``joint`` (one encoding of both sentences), ``siamese`` (each sentence on its
            own, then the MLP reads u, v, |u-v|, u*v) or ``cosine`` (each on its own, then
            a scale and bias, or for classes a threshold, on cos(u, v); the MLP genes
            then describe a residual adapter, u + MLP(u), applied to each side first).
        pool: Token pooling.
        normalize: L2-normalise the pooled embedding (sentence-transformers' Normalize).
        mixer: Token mixer before pooling.
        mlp_layers: Hidden layers of the MLP (0 = linear classifier; for ``cosine``, 0 =
            no adapter).
        width: Hidden width as a multiple of the encoder's hidden size.
        activation: MLP activation.
        norm: LayerNorm after each hidden layer.
        residual: Residual connections between equally wide hidden layers.
        dropout: Dropout before every linear layer of the MLP.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
    """

    depth: int
    layers: str = "last"
    k: int = 1
    pair: str = "joint"
    pool: str = "cls"
    normalize: bool = False
    mixer: str = "none"
    mlp_layers: int = 0
    width: float = 1.0
    activation: str = "tanh"
    norm: bool = False
    residual: bool = False
    dropout: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 0.01

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Genome:
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown genome genes: {sorted(unknown)}")
        return cls(**data)

    def key(self) -> str:
        """Canonical JSON, the identity of a genome in caches and the archive."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def arch_key(self) -> str:
        """Identity of the computation: equal for genomes that differ only in training genes."""
        arch = {k: v for k, v in self.to_dict().items() if k not in TRAINING_GENES}
        return json.dumps(arch, sort_keys=True)

    @property
    def two_sided(self) -> bool:
        """Whether each sentence of a pair is encoded on its own (siamese or cosine)."""
        return self.pair in ("siamese", "cosine")

    def describe(self) -> str:
        """A short human-readable summary for tables."""
        read = "last" if self.layers == "last" else f"{self.layers}{self.k}"
        parts = [f"d{self.depth}", read, self.pool + ("+l2" if self.normalize else "")]
        if self.pair == "siamese":
            parts.insert(0, "siam")
        elif self.pair == "cosine":
            parts.insert(0, "cos")
        if self.mixer != "none":
            parts.append(self.mixer)
        if self.mlp_layers:
            kind = "adapter" if self.pair == "cosine" else "mlp"
            mlp = f"{kind}{self.mlp_layers}x{self.width:g}{self.activation}"
            mlp += "+ln" if self.norm else ""
            mlp += "+res" if self.residual else ""
            parts.append(mlp)
        parts.append(f"lr{self.lr:g}")
        return " ".join(parts)


def space_revision(is_pair: bool) -> int:
    """Bumped when the same genes come to describe another head, so that a resume refuses
    a run searched under the old meaning. 2 (2026-12-01): a cosine head standardises the
    cosine and reads its MLP genes as an adapter before it; they were dropped before. Only
    pair tasks have cosine heads, so single-sentence spaces stay at 1."""
    return 2 if is_pair else 1


def canonical(genome: Genome, num_layers: int, is_pair: bool) -> Genome:
    """Set genes that cannot affect this genome to fixed values (see module docstring)."""
    g = genome
    depth = min(max(g.depth, 1), num_layers)
    g = replace(g, depth=depth)
    if g.layers == "last":
        g = replace(g, k=1)
    else:
        k = min(g.k, depth)
        g = replace(g, k=k) if k > 1 else replace(g, layers="last", k=1)
    if not is_pair:
        g = replace(g, pair="joint")
    if g.pair == "cosine" and g.mlp_layers == 0:
        # cos(u, v) is one number, and scale-invariant: a linear map of it (scale and
        # bias, or a threshold), no dropout, and normalising first changes nothing. With
        # an adapter before the cosine (mlp_layers > 0) both matter.
        g = replace(g, dropout=0.0, normalize=False)
    if g.mlp_layers == 0:
        g = replace(g, width=1.0, activation="tanh", norm=False, residual=False)
    elif g.mlp_layers == 1:
        g = replace(g, residual=False)
    return g


def baseline(num_layers: int, lr: float = 1e-3) -> Genome:
    """The Hugging Face ``BertForSequenceClassification`` head.

    Last layer, CLS token, dense+tanh pooler of hidden size, dropout 0.1, linear.
    """
    return Genome(
        depth=num_layers,
        layers="last",
        k=1,
        pair="joint",
        pool="cls",
        mixer="none",
        mlp_layers=1,
        width=1.0,
        activation="tanh",
        norm=False,
        residual=False,
        dropout=0.1,
        lr=lr,
        weight_decay=0.01,
    )


def is_baseline_arch(genome: Genome, num_layers: int) -> bool:
    return genome.arch_key() == baseline(num_layers).arch_key()


def search_space(num_layers: int, is_pair: bool) -> dict[str, Any]:
    """pymoo variables for the genome (mixed integer / choice / binary)."""
    from pymoo.core.variable import Binary, Choice, Integer

    space: dict[str, Any] = {
        "depth": Integer(bounds=(1, num_layers)),
        "layers": Choice(options=list(LAYER_MODES)),
        "k": Choice(options=list(LAYER_COUNTS)),
        "pool": Choice(options=list(POOLS)),
        "normalize": Binary(),
        "mixer": Choice(options=list(MIXERS)),
        "mlp_layers": Integer(bounds=(0, MAX_MLP_LAYERS)),
        "width": Choice(options=list(WIDTHS)),
        "activation": Choice(options=list(ACTIVATIONS)),
        "norm": Binary(),
        "residual": Binary(),
        "dropout": Choice(options=list(DROPOUTS)),
        "lr": Choice(options=list(LEARNING_RATES)),
        "weight_decay": Choice(options=list(WEIGHT_DECAYS)),
    }
    if is_pair:
        space["pair"] = Choice(options=list(PAIR_MODES))
    return space


def decode(x: dict[str, Any], num_layers: int, is_pair: bool) -> Genome:
    """pymoo's variable dict -> canonical Genome (numpy scalars become Python values)."""
    g = Genome(
        depth=int(x["depth"]),
        layers=str(x["layers"]),
        k=int(x["k"]),
        pair=str(x.get("pair", "joint")),
        pool=str(x["pool"]),
        normalize=bool(x["normalize"]),
        mixer=str(x["mixer"]),
        mlp_layers=int(x["mlp_layers"]),
        width=float(x["width"]),
        activation=str(x["activation"]),
        norm=bool(x["norm"]),
        residual=bool(x["residual"]),
        dropout=float(x["dropout"]),
        lr=float(x["lr"]),
        weight_decay=float(x["weight_decay"]),
    )
    return canonical(g, num_layers, is_pair)


def encode(genome: Genome, is_pair: bool) -> dict[str, Any]:
    """Genome -> pymoo variable dict (inverse of ``decode`` for canonical genomes)."""
    x = genome.to_dict()
    if genome.k == 1:
        x["k"] = LAYER_COUNTS[0]  # k is ignored for "last"; any valid option will do
    if not is_pair:
        del x["pair"]
    return x
