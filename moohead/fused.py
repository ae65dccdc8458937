"""The deployable model: the encoder cut to the genome's depth, followed by its head."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from moohead import batching
from moohead.encoder import EncoderInfo, truncate
from moohead.genome import Genome
from moohead.heads import Head, build_head


class FusedModel(nn.Module):
    """``encoder[:depth]`` + head, taking token ids and returning logits (or scores).

    Inputs (positional, in ``input_names`` order): ``input_ids``, ``attention_mask`` and
    ``token_type_ids`` where the encoder uses them; a siamese head takes the same again
    for the second sentence, suffixed ``_b``.
    """

    def __init__(self, encoder: Any, head: Head, uses_token_type_ids: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.k = head.genome.k
        self.siamese = head.siamese
        self.uses_token_type_ids = uses_token_type_ids

    @property
    def side_names(self) -> list[str]:
        names = ["input_ids", "attention_mask"]
        return [*names, "token_type_ids"] if self.uses_token_type_ids else names

    @property
    def input_names(self) -> list[str]:
        return batching.input_names(self.side_names, self.siamese)

    def _states(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        kwargs = dict(zip(self.side_names, inputs, strict=True))
        hidden = self.encoder(**kwargs, output_hidden_states=True).hidden_states
        return torch.stack(hidden[-self.k :]), kwargs["attention_mask"]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        n = len(self.side_names)
        states, mask = self._states(inputs[:n])
        if self.siamese:
            states_b, mask_b = self._states(inputs[n:])
            return self.head(states, mask, states_b, mask_b)
        return self.head(states, mask)


def trained_state(head: Head, encoder: Any = None) -> dict[str, Any]:
    """What a trained genome saves, on the CPU: the head alone (frozen fidelity), or the
    whole fused model's state (``encoder.*`` then ``head.*``) when its encoder was trained."""
    parts = {"": head} if encoder is None else {"encoder.": encoder, "head.": head}
    return {
        prefix + k: v.detach().cpu()
        for prefix, module in parts.items()
        for k, v in module.state_dict().items()
    }


def holds_encoder(state: dict[str, Any]) -> bool:
    """Saved weights are the whole fused model (fine-tune fidelity) or the head alone."""
    return any(k.startswith("encoder.") for k in state)


def head_state(state: dict[str, Any]) -> dict[str, Any]:
    """The head's part of saved weights, in either form."""
    if not holds_encoder(state):
        return state
    return {k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")}


def load_trained_state(model: FusedModel, state: dict[str, Any]) -> None:
    """Load saved weights (either form) into ``model``: its encoder too where they hold one."""
    if holds_encoder(state):
        model.load_state_dict(state)
    else:
        model.head.load_state_dict(state)


def reference_inputs(
    model: FusedModel, batch: int, length: int, device: str = "cpu"
) -> tuple[torch.Tensor, ...]:
    """A fixed, padding-free input for FLOPs and latency (``batching.dummy_inputs``, seed 0):
    the input ``moohead bench`` times, too."""
    vocab = int(getattr(model.encoder.config, "vocab_size", 1000))
    feeds = batching.dummy_inputs(model.input_names, batch, length, vocab)
    return tuple(torch.from_numpy(feeds[name]).to(device) for name in model.input_names)


class ModelFactory:
    """Fused models of genomes on one encoder: cut encoders are built once per depth and
    shared (they are frozen), heads are built or given."""

    def __init__(self, encoder: Any, info: EncoderInfo, num_labels: int, device: str) -> None:
        self.encoder, self.info, self.num_labels, self.device = encoder, info, num_labels, device
        self._cut: dict[int, Any] = {}

    def encoder_at(self, depth: int) -> Any:
        if depth not in self._cut:
            self._cut[depth] = truncate(self.encoder, depth).eval()
        return self._cut[depth]

    def fused(self, genome: Genome, head: Head | None = None) -> FusedModel:
        """The deployable model of a genome (an untrained head when none is given)."""
        if head is None:
            head = build_head(genome, self.info.hidden_size, self.num_labels)
        return FusedModel(
            self.encoder_at(genome.depth),
            head.to(self.device).eval(),
            self.info.uses_token_type_ids,
        )

    def trained(self, genome: Genome, state: dict[str, Any]) -> FusedModel:
        """The model saved weights describe (a fine-tuned encoder included)."""
        model = self.fused(genome)
        if holds_encoder(state):  # not into the cut encoder the factory shares
            model = FusedModel(copy.deepcopy(model.encoder), model.head, model.uses_token_type_ids)
        load_trained_state(model, state)
        return model.to(self.device).eval()

    def reference(self, model: FusedModel, length: int) -> tuple[torch.Tensor, ...]:
        """The batch-1 reference input FLOPs and latency are measured at."""
        return reference_inputs(model, 1, length, self.device)
