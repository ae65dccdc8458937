"""Tokenised splits for fine-tune fidelity: packed ids per view, padded per batch on demand.

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
from moohead.token_ids import TokenIds


@dataclass
class TokenView:
    """One view of a split: token ids (and segment ids) of every example, packed."""

    tokens: TokenIds
    pad_id: int

    @property
    def lengths(self) -> np.ndarray:
        return self.tokens.lengths.astype(np.int64)

    def arrays(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """``input_ids``, ``attention_mask`` (and ``token_type_ids``) of ``indices``,
        int64, padded to the longest of them."""
        ids, types = self.tokens.take(indices)
        return pad(ids, types, self.pad_id)

    def batch(self, indices: np.ndarray, device: str) -> list[torch.Tensor]:
        """``[input_ids, attention_mask(, token_type_ids)]`` padded to the batch's longest."""
        return [torch.from_numpy(a).to(device) for a in self.arrays(indices).values()]


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
    pad_id = tokenizer.pad_token_id or 0
    views = {
        view: TokenView(
            TokenIds.of(tokenizer, [data.texts[c] for c in columns], max_length, use_token_types),
            pad_id,
        )
        for view, columns in views_for(task).items()
    }
    return TokenSplit(views, data.labels)
