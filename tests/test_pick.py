import json
from pathlib import Path
from typing import Any

import pytest

from moohead.cli.main import main
from moohead.errors import MooheadError
from moohead.pick import PickConfig, choose, knee_point


def _entry(i: int, score: float, gflops: float, ms: float) -> dict[str, Any]:
    return {"id": i, "summary": f"h{i}", "score": score, "validation": score - 0.02, "flops": gflops * 1e9,
            "latency_ms": ms, "params": 1e7, "genome": {}}  # fmt: skip


DOC: dict[str, Any] = {
    "task": "sst2",
    "metric": "accuracy",
    "baseline": _entry(0, 0.80, 3.0, 30.0),
    "front": [
        _entry(1, 0.78, 0.5, 6.0),
        _entry(2, 0.86, 0.6, 7.0),
        _entry(3, 0.87, 1.0, 12.0),
        _entry(4, 0.875, 2.9, 29.0),
    ],
}


def test_knee_is_the_big_jump_in_score_for_little_cost() -> None:
    assert knee_point(DOC["front"])["id"] == 2


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        (PickConfig(id=3), 3),
        (PickConfig(id=0), 0),  # the baseline can be picked for reference
        (PickConfig(max_latency_ms=12.0), 3),  # best score within the budget
        (PickConfig(max_flops=0.55e9), 1),
        (PickConfig(min_score=0.85), 2),  # cheapest above the score
        (PickConfig(min_score=0.85, max_latency_ms=20), 3),  # best within budget and above score
    ],
)
def test_rules(cfg: PickConfig, expected: int) -> None:
    assert choose(DOC, cfg)["id"] == expected


@pytest.mark.parametrize(
    ("cfg", "needle"),
    [
        (PickConfig(), "choose exactly one"),
        (PickConfig(knee=True, id=2), "choose exactly one"),
        (PickConfig(id=9), "id 9 is not on the front; front ids: 1, 2, 3, 4"),
        (PickConfig(max_latency_ms=1.0), "no front head has latency_ms <= 1; the closest is id 1"),
        (PickConfig(min_score=0.99), "no front head has score >= 0.99; the closest is id 4"),
    ],
)
def test_no_match_names_the_closest_point(cfg: PickConfig, needle: str) -> None:
    with pytest.raises(MooheadError, match=needle):
        choose(DOC, cfg)


def test_cli_records_the_pick_and_refuses_bad_picks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "front.json").write_text(json.dumps(DOC))
    main(["pick", str(tmp_path), "--knee"])
    record = json.loads((tmp_path / "pick.json").read_text())
    assert record["id"] == 2 and record["rule"] == "knee" and record["baseline"]["id"] == 0
    assert "picked by knee" in capsys.readouterr().out
    before = (tmp_path / "pick.json").read_text()
    with pytest.raises(SystemExit) as exc:
        main(["pick", str(tmp_path), "--id", "42"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "not on the front" in err[0]
    assert (tmp_path / "pick.json").read_text() == before  # a failed pick changes nothing
