"""Token ids of a split's view, packed flat: what the cache pass, recomputed token
states and fine-tuning read, at 4 bytes a token where the tokenizer's lists take about 40.

numpy only (the tokenizer comes in as an argument), so every module that tokenises can
share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

SLICE = 8192  # examples tokenised at a time


@dataclass(frozen=True)
class TokenIds:
    """Token ids of one view of a split (as the cache's encoder pass makes them), flat:
    4 bytes a token, where the tokenizer's lists take about 40.

    Attributes:
        ids: int32 ``[tokens]``: every example's ids, one after the other.
        types: int8 ``[tokens]`` segment ids, or None for encoders without them.
        offsets: int64 ``[n]``: where each example starts in ``ids``.
        lengths: int32 ``[n]``: its tokens.
    """

    ids: np.ndarray
    types: np.ndarray | None
    offsets: np.ndarray
    lengths: np.ndarray

    @classmethod
    def of(
        cls, tokenizer: Any, texts: list[list[str]], max_length: int, with_types: bool
    ) -> TokenIds:
        """Tokenise ``texts`` (one list per column of the view) a slice at a time: the
        tokenizer's Python lists of one slice are packed into arrays before the next (a
        400k-pair split's lists would take a few GB)."""
        ids, types, lengths = [], [], []
        for start in range(0, len(texts[0]), SLICE):
            part = [column[start : start + SLICE] for column in texts]
            enc = tokenizer(
                *part,
                truncation=True,
                max_length=max_length,
                return_attention_mask=False,
                return_token_type_ids=with_types,
            )
            lengths.append(np.fromiter(map(len, enc["input_ids"]), np.int32))
            ids.append(np.fromiter(chain.from_iterable(enc["input_ids"]), np.int32))
            if with_types:
                types.append(np.fromiter(chain.from_iterable(enc["token_type_ids"]), np.int8))
        n = np.concatenate([np.zeros(0, np.int32), *lengths])
        offsets = np.concatenate([[0], np.cumsum(n, dtype=np.int64)[:-1]]).astype(np.int64)
        flat = np.concatenate([np.zeros(0, np.int32), *ids])
        seg = np.concatenate([np.zeros(0, np.int8), *types]) if with_types else None
        return cls(flat, seg, offsets, n)

    def __len__(self) -> int:
        return len(self.lengths)

    def subset(self, positions: np.ndarray) -> TokenIds:
        """The examples at ``positions`` (the flat arrays are shared, not copied)."""
        return TokenIds(self.ids, self.types, self.offsets[positions], self.lengths[positions])

    def take(self, indices: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """Each example's ids (and segment ids) at ``indices``."""
        spans = [(int(self.offsets[i]), int(self.lengths[i])) for i in indices]
        ids = [self.ids[o : o + n] for o, n in spans]
        types = None if self.types is None else [self.types[o : o + n] for o, n in spans]
        return ids, types
