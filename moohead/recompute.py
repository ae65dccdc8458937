"""Token states recomputed by the cut encoder, batch by batch, instead of read from disk.

When a split's token states do not fit the cache budget (``cache_plan.py``), a run can
cache pooled vectors only and have the encoder recompute the token states each batch
asks for (``--token-states recompute``; the default on a GPU when they do not fit). The
encoder runs cut to the deepest state the batch's heads read, so a group of shallow heads
pays for its layers only. The states are the encoder's own fp32 numbers (the cache keeps
fp16 or int8 copies of them): those a fused model computes when deployed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from moohead.batching import pad
from moohead.encoder import cut_to
from moohead.errors import MooheadError
from moohead.feature_store import FeatureStore
from moohead.token_ids import TokenIds


class LiveEncoder:
    """The frozen encoder that recomputes token states: one forward pass per batch, cut to
    the deepest hidden state asked for."""

    def __init__(self, encoder: Any, pad_id: int, device: str, path: str) -> None:
        self.encoder, self.pad_id, self.device, self.path = encoder, pad_id, device, path

    def states(
        self, ids: list[np.ndarray], types: list[np.ndarray] | None, states: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``([len(states), B, T, hidden] float32, [B, T] bool mask)`` on the encoder's
        device, padding zeroed: what ``FeatureStore.gather`` returns from disk."""
        arrays = pad(ids, types, self.pad_id)
        inputs = {k: torch.from_numpy(v).to(self.device) for k, v in arrays.items()}
        # no_grad, not inference_mode: heads train on these and autograd saves them
        with torch.no_grad(), cut_to(self.encoder, max(states)) as encoder:
            hidden = encoder(**inputs, output_hidden_states=True).hidden_states
            out = torch.stack([hidden[s] for s in states]).float()
        mask = inputs["attention_mask"].bool()
        return out.masked_fill_(~mask.unsqueeze(-1), 0.0), mask


_LIVE: dict[tuple[str, str], LiveEncoder] = {}  # per worker process: loaded once


def live_encoder(path: str, device: str) -> LiveEncoder:
    """The encoder at ``path`` as a LiveEncoder, loaded once per process (Ray workers)."""
    if (path, device) not in _LIVE:
        from moohead.encoder import load_encoder

        encoder, tokenizer, _ = load_encoder(path)
        _LIVE[path, device] = LiveEncoder(
            encoder.to(device), tokenizer.pad_token_id or 0, device, path
        )
    return _LIVE[path, device]


class EncodedStore(FeatureStore):
    """A view whose pooled vectors come from the cache and whose token states are
    recomputed by a LiveEncoder; every example has token states."""

    def __init__(self, base: FeatureStore, tokens: TokenIds, live: LiveEncoder) -> None:
        super().__init__(base.root, base.view, base.chunks, base.rows, base._where)
        if not np.array_equal(base.lengths, tokens.lengths):
            raise MooheadError(
                f"feature cache {base.root} was built with other token lengths than this "
                f"run's tokenizer gives for {base.view!r}; delete the folder to rebuild it"
            )
        self.tokens, self.live = tokens, live

    def subset(self, positions: np.ndarray) -> EncodedStore:
        return EncodedStore(super().subset(positions), self.tokens.subset(positions), self.live)

    def has_tokens(self) -> np.ndarray:
        return np.ones(len(self), dtype=bool)

    def gather(self, indices: np.ndarray, states: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, types = self.tokens.take(indices)
        return self.live.states(ids, types, states)

    def spec(self) -> dict[str, Any]:
        return super().spec() | {
            "tokens": self.tokens,
            "encoder": self.live.path,
            "device": self.live.device,
        }


def open_store(spec: dict[str, Any]) -> FeatureStore:
    """A worker's store from ``spec``: an EncodedStore where it carries token ids (given
    as TokenIds), else the cached FeatureStore."""
    base = FeatureStore.from_spec(spec)
    if "tokens" not in spec:
        return base
    return EncodedStore(base, spec["tokens"], live_encoder(spec["encoder"], spec["device"]))
