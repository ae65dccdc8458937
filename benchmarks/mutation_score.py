"""Mutation score per module, from the last ``mutmut run`` (``make mutation`` runs both).

Reads mutmut's verdicts (``mutmut results --all true``), counts them per module named in
``[tool.mutmut] only_mutate`` and writes ``benchmarks/results/mutation.json``: the counts,
the score (killed / all mutants) and every surviving mutant with its diff, so that a
reviewer can judge each survivor (see ``benchmarks/results/mutation.md``).

Run from the repository root after ``mutmut run``:

    .venv/bin/python benchmarks/mutation_score.py
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
import tomllib
from collections import Counter
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "mutation.json"
MUTMUT = Path(sys.executable).parent / "mutmut"
LINE = re.compile(r"^\s*(?P<name>[\w.ǁ]+__mutmut_\d+): (?P<status>.+)$")


def config() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]


def module_of(mutant: str) -> str:
    """``moohead.front.x_nondominated__mutmut_3`` -> ``moohead/front.py``."""
    dotted = mutant.split(".x", 1)[0]
    return dotted.replace(".", "/") + ".py"


def function_of(mutant: str) -> str:
    """``moohead.data.xǁSplitǁfingerprint__mutmut_8`` -> ``Split.fingerprint``."""
    name = mutant.split(".x", 1)[1].rsplit("__mutmut_", 1)[0]
    return name[1:] if name.startswith("_") else name.strip("ǁ").replace("ǁ", ".")


def diff(mutant: str) -> list[str]:
    out = subprocess.run(
        [str(MUTMUT), "show", mutant], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [
        line
        for line in out.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def main() -> None:
    cfg = config()
    proc = subprocess.run(
        [str(MUTMUT), "results", "--all", "true"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    verdicts = [m.groupdict() for m in map(LINE.match, proc.stdout.splitlines()) if m]
    if not verdicts:
        raise SystemExit("no mutmut results: run `make mutation` (or `mutmut run`) first")
    modules: dict[str, Counter[str]] = {path: Counter() for path in cfg["only_mutate"]}
    functions: dict[str, dict[str, Counter[str]]] = {path: {} for path in cfg["only_mutate"]}
    survivors: dict[str, list[dict[str, object]]] = {path: [] for path in cfg["only_mutate"]}
    for v in verdicts:
        path = module_of(v["name"])
        modules.setdefault(path, Counter())[v["status"]] += 1
        per_function = functions.setdefault(path, {})
        per_function.setdefault(function_of(v["name"]), Counter())[v["status"]] += 1
        if v["status"] != "killed":
            survivors.setdefault(path, []).append(
                {"mutant": v["name"], "status": v["status"], "diff": diff(v["name"])}
            )
    rows: dict[str, dict[str, Any]] = {}
    for path, counts in modules.items():
        mutants = sum(counts.values())
        per_function = functions.get(path, {})
        rows[path] = {
            "mutants": mutants,
            "killed": counts["killed"],
            "score": round(counts["killed"] / mutants, 4) if mutants else None,
            "counts": dict(sorted(counts.items())),
            "functions": {
                name: f"{c['killed']}/{sum(c.values())} killed" for name, c in per_function.items()
            },
        }
    total = Counter[str]()
    for counts in modules.values():
        total.update(counts)
    n = sum(total.values())
    doc = {
        "tool": f"mutmut {version('mutmut')}",
        "python": platform.python_version(),
        "command": "make mutation",
        "tests": cfg["pytest_add_cli_args_test_selection"],
        "pytest_args": cfg.get("pytest_add_cli_args", []),
        "excluded": cfg.get("do_not_mutate_patterns", []),
        "score": round(total["killed"] / n, 4),
        "mutants": n,
        "killed": total["killed"],
        "modules": rows,
        "survivors": survivors,
    }
    OUT.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    width = max(map(len, rows))
    print(f"{'module':<{width}}  mutants  killed  score  other verdicts")
    for path, r in rows.items():
        other = {k: v for k, v in r["counts"].items() if k != "killed"}
        score = "  n/a" if r["score"] is None else f"{100 * r['score']:4.1f}%"
        print(f"{path:<{width}}  {r['mutants']:7d}  {r['killed']:6d}  {score}  {other or ''}")
    print(f"{'all':<{width}}  {n:7d}  {total['killed']:6d}  {100 * doc['score']:4.1f}%")
    print(f"written to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
