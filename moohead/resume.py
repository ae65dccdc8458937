"""Resuming a run: the search's identity, and the check that a resume continues it.

Every finished evaluation is in the run's archive (fsync'd as it finishes). A resume
replays the search from the start with the same seed: NSGA-II asks for the same genomes,
the evaluator answers the archived ones from the archive and trains only the rest, so the
resumed run ends with the front of an uninterrupted one, and nothing is trained twice.

A resume must be the same search: its *identity* (task, data, encoder, search space and
every setting that changes results) is stored in the run's config and compared.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from moohead.errors import MooheadError

# Settings that change which genomes are evaluated or how they score. ``generations`` is
# not among them: a resume may run longer (or shorter) than the interrupted run.
IDENTITY_SETTINGS = (
    "task", "max_train", "val_fraction", "max_length", "seed", "objectives", "population",
    "batch_size", "max_epochs", "patience", "reference_length", "fidelity", "lr_encoder",
    "budgets", "offspring", "initial_random",
)  # fmt: skip
# What a run written before a setting existed did, as config.json stores it.
IDENTITY_DEFAULTS: dict[str, Any] = {
    "budgets": [1.0], "cache_storage": "fp16", "offspring": None, "initial_random": "fill",
    "space_revision": 1,
}  # fmt: skip
# Values an earlier version stored for what is now named otherwise: runs of 2026-11-30
# stored ``initial_random: null`` for what is now ``fill``.
RENAMED_VALUES: dict[str, tuple[Any, Any]] = {"initial_random": (None, "fill")}


# Identity entries no option sets, and what to do when they differ.
NOT_SETTINGS = {
    "space_revision": "its genes meant other heads (see genome.space_revision); resume it "
    "with the moohead version that started it",
}


def identity(settings: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The search's identity: the result-changing settings plus data, encoder and space."""
    ident = {k: settings[k] for k in IDENTITY_SETTINGS} | extra
    return dict(json.loads(json.dumps(ident)))  # as config.json stores it: lists, not tuples


def check_identity(out: Path, stored: dict[str, Any] | None, current: dict[str, Any]) -> None:
    """Refuse a resume that would not continue the same search, naming the difference."""
    if stored is None:
        raise MooheadError(
            f"{out} holds an archive but no search identity in its config, so it cannot be "
            "resumed safely; pass --force-new to start over (the old run is kept beside it)"
        )
    # Settings first: a different seed also cuts different data, and the seed is the cause.
    others = sorted((set(stored) | set(current)) - set(IDENTITY_SETTINGS))
    for key in [*IDENTITY_SETTINGS, *others]:
        before = _named(key, stored.get(key, IDENTITY_DEFAULTS.get(key)))
        after = _named(key, current.get(key, IDENTITY_DEFAULTS.get(key)))
        if before != after:
            was, now = _show(before), _show(after)
            remedy = NOT_SETTINGS.get(key, "use the run's settings")
            raise MooheadError(
                f"cannot resume {out}: {key} differs (run: {was}, now: {now}); {remedy}, "
                "or pass --force-new to start over (the old run is kept beside it)"
            )


def _named(key: str, value: Any) -> Any:
    old, new = RENAMED_VALUES.get(key, (object(), None))
    return new if value == old else value


def _show(value: Any) -> str:
    if isinstance(value, list) and value and all(isinstance(v, float) for v in value):
        from moohead.config import show_budgets

        return show_budgets(value)
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."
