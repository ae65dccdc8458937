"""``front.png``: score against FLOPs and against latency, with the baseline and the
references marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moohead.files import atomic_write


def plot_front(doc: dict[str, Any], evaluations: list[dict[str, Any]], path: Path) -> None:
    """Two panels (score vs GFLOPs, score vs latency): every evaluation, the front, the
    baseline and the references (named).

    Scores are on search-val (what the search selected on); the front's official
    validation scores are drawn as hollow markers beside them.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    front, base = doc["front"], doc["baseline"]
    for ax, key, scale, label in (
        (axes[0], "flops", 1e-9, "GFLOPs (reference input)"),
        (axes[1], "latency_ms", 1.0, "latency, ms (reference input)"),
    ):
        done = [e for e in evaluations if e.get("status") == "ok" and e.get(key) is not None]
        ax.scatter(
            [e[key] * scale for e in done],
            [e["score"] for e in done],
            s=12,
            c="0.75",
            label="evaluated",
        )
        pts = sorted(front, key=lambda e: e[key])
        ax.scatter(
            [e[key] * scale for e in pts],
            [e["score"] for e in pts],
            c="C0",
            label="front (search-val)",
        )
        # The staircase of the points that are also Pareto-optimal in this panel's two objectives.
        stair, best = [], -float("inf")
        for e in pts:
            if e["score"] > best:
                stair.append(e)
                best = e["score"]
        ax.step(
            [e[key] * scale for e in stair],
            [e["score"] for e in stair],
            where="post",
            c="C0",
            alpha=0.6,
        )
        ax.scatter(
            [e[key] * scale for e in pts],
            [e["validation"] for e in pts],
            facecolors="none",
            edgecolors="C2",
            label="front (validation)",
        )
        ax.scatter(
            [base[key] * scale],
            [base["score"]],
            marker="*",
            s=200,
            c="C3",
            label="baseline (search-val)",
        )
        ax.scatter(
            [base[key] * scale],
            [base["validation"]],
            marker="*",
            s=200,
            facecolors="none",
            edgecolors="C3",
            label="baseline (validation)",
        )
        refs = [e for e in doc.get("references", []) if e.get(key) is not None]
        ax.scatter(
            [e[key] * scale for e in refs],
            [e["score"] for e in refs],
            marker="D",
            s=36,
            c="C1",
            label="references (search-val)",
        )
        for e in refs:
            ax.annotate(e["name"], (e[key] * scale, e["score"]), fontsize=7, alpha=0.8,
                        xytext=(4, -8), textcoords="offset points")  # fmt: skip
        ax.set_xlabel(label)
        ax.set_ylabel(doc["metric"])
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"moohead front: {doc['task']} on {doc.get('encoder', '')}")
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
