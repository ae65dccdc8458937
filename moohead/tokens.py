"""Tokenised splits for fine-tune fidelity: ids per view, padded per batch on demand.

The views are those of the feature cache (``text``, or ``joint``/``a``/``b`` for pairs),
tokenised exactly as the cache and the exported runtime tokenise them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from moohead.batching import pad
from moohead.data import Split
from moohead.features import views_for
from moohead.tasks import Task


@dataclass
class TokenView:
    """One view of a split: token ids (and segment ids) of every example, unpadded."""

    ids: list[list[int]]
    types: list[list[int]] | None
    pad_id: int

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(x) for x in self.ids], dtype=np.int64)

    def batch(self, indices: np.ndarray, device: str) -> list[torch.Tensor]:
        """``[input_ids, attention_mask(, token_type_ids)]`` padded to the batch's longest."""
        types = None if self.types is None else [self.types[i] for i in indices]
        arrays = pad([self.ids[i] for i in indices], types, self.pad_id)
        return [torch.from_numpy(a).to(device) for a in arrays.values()]


@dataclass
class TokenSplit:
    """The tokenised views of one split plus its labels."""

    views: dict[str, TokenView]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def tokenize_split(
    tokenizer: Any, task: Task, data: Split, max_length: int, use_token_types: bool
) -> TokenSplit:
    views = {}
    for view, columns in views_for(task).items():
        enc = tokenizer(*[data.texts[c] for c in columns], truncation=True, max_length=max_length)
        types = enc.get("token_type_ids") if use_token_types else None
        views[view] = TokenView(list(enc["input_ids"]), types, tokenizer.pad_token_id or 0)
    return TokenSplit(views, data.labels)
