"""Head building blocks, registered by name, and the one ``build_head``.

A head reads the last ``k`` hidden states of the (truncated) encoder, stacked as
``[k, batch, tokens, hidden]``, with an attention mask ``[batch, tokens]`` (1 = token).
Blocks register in small registries (timm's ``@register_model`` pattern) and are composed;
there is no class hierarchy of heads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from moohead.conv import depthwise_conv1d
from moohead.genome import Genome

NEG_INF = -1e4  # masks padding in max/attention pooling; fp16-safe


class Registry:
    """Name -> block factory, filled with the ``register`` decorator."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., nn.Module]] = {}

    def register(self, name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
        def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
            self._factories[name] = factory
            return factory

        return wrap

    def build(self, name: str, *args: Any) -> nn.Module:
        if name not in self._factories:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {sorted(self._factories)}")
        return self._factories[name](*args)

    def names(self) -> list[str]:
        return sorted(self._factories)


READERS = Registry("layer reader")
MIXERS = Registry("mixer")
POOLS = Registry("pool")
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


# ---- layer readers: [k, B, T, H] -> [B, T, D] -------------------------------------------


class LastLayer(nn.Module):
    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return states[-1]


class ConcatLayers(nn.Module):
    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return torch.cat(list(states.unbind(0)), dim=-1)


class ScalarMix(nn.Module):
    """ELMo's scalar mix: softmax-normalised layer weights and a global scale."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(k))
        self.gamma = nn.Parameter(torch.ones(()))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.weights, dim=0).to(states.dtype)
        return self.gamma * torch.einsum("k,kbth->bth", w, states)


READERS.register("last")(lambda k, hidden: LastLayer())
READERS.register("concat")(lambda k, hidden: ConcatLayers())
READERS.register("mix")(lambda k, hidden: ScalarMix(k))


def reader_width(mode: str, k: int, hidden: int) -> int:
    return hidden * k if mode == "concat" else hidden


# ---- token mixers: ([B, T, D], mask) -> [B, T, D] ---------------------------------------


class NoMixer(nn.Module):
    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x


class ConvMixer(nn.Module):
    """Residual depthwise 1-D convolution over tokens (ConvNeXt-style token mixing).

    Depthwise, so it mixes tokens, not channels (the MLP does that), at ``kernel`` multiply-
    adds per channel and token; padding is zeroed so it does not leak into real tokens.
    """

    def __init__(self, dim: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(x.dtype)
        # Contiguous channels-first input: 3x faster depthwise conv (and backward) on CPU.
        y = depthwise_conv1d((x * m).transpose(1, 2).contiguous(), self.conv).transpose(1, 2)
        return (x + self.act(self.norm(y))) * m


class AttentionMixer(nn.Module):
    """One small pre-norm self-attention block.

    Queries and keys are projected to ``ATTN_DIM`` (2 heads) and the values are the normed
    tokens themselves, so the block costs O(T * D * ATTN_DIM) rather than O(T * D^2).
    """

    ATTN_DIM = 64
    HEADS = 2

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.qk = nn.Linear(dim, 2 * self.ATTN_DIM)
        self.gate = nn.Parameter(torch.full((dim,), 0.1))  # LayerScale-style: starts near identity

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.norm(x)
        q, k = self.qk(h).reshape(b, t, 2, self.HEADS, -1).permute(2, 0, 3, 1, 4).unbind(0)
        v = (
            h.reshape(b, t, self.HEADS, d // self.HEADS).transpose(1, 2)
            if d % self.HEADS == 0
            else None
        )
        if v is None:  # odd width: one head over all channels
            q, k, v = q.reshape(b, 1, t, -1), k.reshape(b, 1, t, -1), h.unsqueeze(1)
        attend = mask.bool()[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
        return x + self.gate * y.transpose(1, 2).reshape(b, t, d)


MIXERS.register("none")(lambda dim: NoMixer())
MIXERS.register("conv3")(lambda dim: ConvMixer(dim, 3))
MIXERS.register("conv5")(lambda dim: ConvMixer(dim, 5))
MIXERS.register("attention")(AttentionMixer)


# ---- pools: ([B, T, D], mask) -> [B, P] ------------------------------------------------


class ClsPool(nn.Module):
    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x[:, 0]


class MeanPool(nn.Module):
    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(x.dtype)
        return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


class MaxPool(nn.Module):
    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x.masked_fill(~mask.bool().unsqueeze(-1), NEG_INF).amax(1)


class ClsMeanPool(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mean = MeanPool()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, 0], self.mean(x, mask)], dim=-1)


class AttentionPool(nn.Module):
    """Weighted sum of tokens with weights from a learned query."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.query(x).squeeze(-1).masked_fill(~mask.bool(), NEG_INF)
        return torch.einsum("bt,btd->bd", torch.softmax(scores, dim=-1), x)


POOLS.register("cls")(lambda dim: ClsPool())
POOLS.register("mean")(lambda dim: MeanPool())
POOLS.register("max")(lambda dim: MaxPool())
POOLS.register("cls+mean")(lambda dim: ClsMeanPool())
POOLS.register("attention")(AttentionPool)


def pool_width(pool: str, dim: int) -> int:
    return 2 * dim if pool == "cls+mean" else dim


# ---- classifier ------------------------------------------------------------------------


class MLP(nn.Module):
    """Hidden blocks (linear, activation, optional LayerNorm, dropout), then a linear layer."""

    def __init__(self, genome: Genome, in_dim: int, hidden: int, num_labels: int) -> None:
        super().__init__()
        width = max(1, round(hidden * genome.width))
        self.blocks = nn.ModuleList()
        self.residual = genome.residual
        dim = in_dim
        for _ in range(genome.mlp_layers):
            block = nn.Sequential(nn.Linear(dim, width), ACTIVATIONS[genome.activation]())
            if genome.norm:
                block.append(nn.LayerNorm(width))
            block.append(nn.Dropout(genome.dropout))
            self.blocks.append(block)
            dim = width
        # With no hidden layer, dropout goes on the pooled features.
        self.dropout = nn.Dropout(genome.dropout) if genome.mlp_layers == 0 else nn.Identity()
        self.classifier = nn.Linear(dim, num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            y = block(x)
            x = x + y if self.residual and i > 0 else y
        return self.classifier(self.dropout(x))


class Adapter(nn.Module):
    """A residual map of a sentence embedding, ``x + MLP(x)``, for cosine heads.

    The MLP's last layer starts at zero, so training starts from the embedding itself
    (the zero-shot cosine) and moves it only as far as the training data asks: the frozen
    counterpart of fine-tuning a sentence encoder on cosine similarity, as SBERT does.
    """

    def __init__(self, genome: Genome, dim: int, hidden: int) -> None:
        super().__init__()
        self.mlp = MLP(genome, dim, hidden, dim)
        nn.init.zeros_(self.mlp.classifier.weight)
        nn.init.zeros_(self.mlp.classifier.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(x)


def pair_width(pair: str, pooled: int) -> int:
    """Width of what the MLP reads for a pair mode, from the pooled width."""
    return {"joint": pooled, "siamese": 4 * pooled, "cosine": 1}[pair]


class Standardize(nn.Module):
    """A cosine standardised by its running mean and variance over training batches
    (BatchNorm without an affine map; a batch of one uses the running ones).

    Cosines of sentence embeddings sit in a narrow band far from zero (about 0.6 +- 0.2 on
    STS-B for MiniLM): a scale and bias on the raw cosine need a large scale and a bias
    that cancels its mean, more than a small learning rate travels in a few epochs, and
    the first gradient on the scale follows the bias's error, not the labels. Standardised,
    the map starts well conditioned.
    """

    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(1))
        self.register_buffer("running_var", torch.ones(1))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # Heads saved before cosines were standardised (runs before 2026-12-01) hold no
        # statistics: mean 0 and variance 1 are what they computed, the raw cosine.
        state_dict.setdefault(prefix + "running_mean", torch.zeros(1))
        state_dict.setdefault(prefix + "running_var", torch.ones(1))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            training=self.training and x.shape[0] > 1,
            momentum=0.1,
            eps=1e-5,
        )


class Head(nn.Module):
    """Reader -> mixer -> pool -> (L2 norm) -> (siamese or cosine combination) -> MLP.

    For ``cosine`` the genome's MLP is an ``Adapter`` of each side's embedding, applied
    before the cosine (none when ``mlp_layers`` is 0), and the output is a linear map of
    the cosine.
    """

    def __init__(self, genome: Genome, hidden: int, num_labels: int) -> None:
        super().__init__()
        self.genome = genome
        self.siamese = genome.two_sided  # both sentences come in on their own
        dim = reader_width(genome.layers, genome.k, hidden)
        self.reader = READERS.build(genome.layers, genome.k, hidden)
        self.mixer = MIXERS.build(genome.mixer, dim)
        self.pool = POOLS.build(genome.pool, dim)
        pooled = pool_width(genome.pool, dim)
        reads = pair_width(genome.pair, pooled)
        self.adapter: Adapter | None = None
        if genome.pair == "cosine":
            if genome.mlp_layers:
                self.adapter = Adapter(genome, pooled, hidden)
            self.standardize: Standardize | None = Standardize()
            self.mlp = MLP(replace(genome, mlp_layers=0, dropout=0.0), reads, hidden, num_labels)
            # The map of the standardised cosine starts at zero too: its first steps learn
            # which way the cosine points for the labels, before the adapter moves. A random
            # start (uniform in [-1, 1] for one input) is negative half the time, and the
            # adapter then learns to turn the cosine around.
            nn.init.zeros_(self.mlp.classifier.weight)
        else:
            self.standardize = None
            self.mlp = MLP(genome, reads, hidden, num_labels)

    def embed(self, states: torch.Tensor, mask: torch.Tensor, pooled: bool = False) -> torch.Tensor:
        x = self.reader(states)
        # Pre-pooled input (frozen fidelity, no mixer): [k, B, pieces, H], each piece a part
        # of the pool (cls+mean: cls, mean) computed per layer; the reader works per piece,
        # so the pool is their concatenation.
        out = x.flatten(1) if pooled else self.pool(self.mixer(x, mask), mask)
        return F.normalize(out, dim=-1) if self.genome.normalize else out

    def forward(
        self,
        states: torch.Tensor,
        mask: torch.Tensor,
        states_b: torch.Tensor | None = None,
        mask_b: torch.Tensor | None = None,
        pooled: bool = False,
    ) -> torch.Tensor:
        """Outputs for ``[k, B, T, H]`` states and ``[B, T]`` masks (``pooled``: for
        ``[k, B, pieces, H]`` pre-pooled vectors, see ``embed``)."""
        u = self.embed(states, mask, pooled)
        if self.siamese:
            if states_b is None or mask_b is None:
                raise ValueError("a siamese head needs the states of both sentences")
            v = self.embed(states_b, mask_b, pooled)
            if self.adapter is not None:
                u, v = self.adapter(u), self.adapter(v)
            if self.standardize is not None:
                u = self.standardize(F.cosine_similarity(u, v, dim=-1).unsqueeze(-1))
            else:
                u = torch.cat([u, v, (u - v).abs(), u * v], dim=-1)
        return self.mlp(u)


def build_head(genome: Genome, hidden_size: int, num_labels: int) -> Head:
    """The head a genome describes, for an encoder of width ``hidden_size``."""
    return Head(genome, hidden_size, num_labels)
