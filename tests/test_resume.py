"""Crash safety: SIGKILL at any point, resume, same archive and front; one writer per run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from moohead.archive import Archive
from moohead.errors import MooheadError
from moohead.rundir import RunDir

TIMING = ("train_seconds", "measure_seconds")


def evolve_args(encoder: Path, glue: Path, out: Path, cache: Path) -> list[str]:
    return [
        sys.executable, "-m", "moohead.cli.main", "evolve", "--task", "sst2",
        "--model", str(encoder), "--data-dir", str(glue), "--out", str(out),
        "--cache-dir", str(cache), "--population", "6", "--generations", "3", "--max-train", "0",
        "--max-length", "16", "--objectives", "score,flops", "--max-epochs", "3", "--seed", "1",
    ]  # fmt: skip


def lines(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


def wait_for_lines(proc: subprocess.Popen, path: Path, n: int, deadline_s: float = 600) -> None:
    """Poll until ``path`` holds ``n`` finished lines, with the process still running.

    Fails (and kills the process) if it exits first or nothing happens for ``deadline_s``:
    a hung or crashed run is a failure with a reason, never a silent kill at a random point.
    The deadline is a hang guard, not a speed assertion.
    """
    deadline = time.monotonic() + deadline_s
    while lines(path) < n:
        if proc.poll() is not None:
            raise AssertionError(
                f"the run exited (code {proc.returncode}) with {lines(path)} of {n} lines"
            )
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError(f"no {n} lines in {path} after {deadline_s:.0f} s")
        time.sleep(0.02)


def comparable(out: Path) -> tuple[list[dict], list[tuple]]:
    records = [json.loads(x) for x in (out / "archive.jsonl").read_text().splitlines()]
    for r in records:
        for key in TIMING:
            r.pop(key)
    front = json.loads((out / "front.json").read_text())
    entries = [(e["id"], e["score"], e["flops"], e["validation"]) for e in front["front"]]
    return records, entries


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_uninterrupted_run(
    tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cache = tmp_path / "cache"
    ref = tmp_path / "reference"
    subprocess.run(
        evolve_args(tiny_encoder_dir, glue_dir, ref, cache),
        env=env,
        check=True,
        capture_output=True,
    )
    ref_records, ref_front = comparable(ref)
    assert len(ref_records) > 9
    for n in (1, 4, 9):
        out = tmp_path / f"killed-{n}"
        proc = subprocess.Popen(
            evolve_args(tiny_encoder_dir, glue_dir, out, cache), env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_lines(proc, out / "archive.jsonl", n)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = lines(out / "archive.jsonl")
        assert n <= done < len(ref_records), "killed too late to test a resume"
        assert not (out / "front.json").exists()
        resumed = subprocess.run(
            evolve_args(tiny_encoder_dir, glue_dir, out, cache),
            env=env,
            capture_output=True,
            text=True,
        )
        assert resumed.returncode == 0, resumed.stderr
        # rich wraps lines at 80 columns, wherever the (tmp) path length puts the break
        assert f"{done} finished evaluations restored" in " ".join(resumed.stdout.split())
        records, front = comparable(out)
        assert records == ref_records  # nothing lost, nothing trained twice, same results
        assert front == ref_front


def test_torn_final_line_is_dropped_and_a_damaged_line_refused(tmp_path: Path) -> None:
    path = tmp_path / "archive.jsonl"
    good = [json.dumps({"id": i, "genome": {}}, sort_keys=True) for i in range(2)]
    path.write_text("\n".join(good) + '\n{"id": 2, "geno')  # killed mid-write
    records, torn = Archive(path).read()
    assert torn and [r["id"] for r in records] == [0, 1]
    assert path.read_text() == "\n".join(good) + "\n"  # repaired
    path.write_text(good[0] + "\n{broken\n" + good[1] + "\n")
    before = path.read_text()
    with pytest.raises(MooheadError, match="line 2 is corrupted"):
        Archive(path).read()
    assert path.read_text() == before


def test_one_writer_per_run_and_a_dead_writer_leaves_no_lock(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    with run.lock():
        assert run.is_locked()
        with (
            pytest.raises(
                MooheadError, match=f"in use by a running moohead evolve \\(pid {os.getpid()}\\)"
            ),
            run.lock(),
        ):
            pass
    assert not run.is_locked()
    # A writer killed with SIGKILL: the kernel drops its lock.
    code = f"from moohead.rundir import RunDir; import os, pathlib\nwith RunDir(pathlib.Path({str(run.path)!r})).lock(): os.kill(os.getpid(), 9)"
    subprocess.run([sys.executable, "-c", code], check=False)
    with run.lock():
        pass


def test_force_new_keeps_the_old_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "archive.jsonl").write_text("{}\n")
    old = RunDir(out).move_aside()
    assert not out.exists() and (old / "archive.jsonl").read_text() == "{}\n"
    assert old.name.startswith("run.old-")


@pytest.mark.slow
def test_ctrl_c_saves_and_says_how_to_resume(
    tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = evolve_args(tiny_encoder_dir, glue_dir, out, tmp_path / "cache")
    # A shell's background jobs start with SIGINT ignored, and Python keeps it so: give the
    # child the default disposition, as a terminal's foreground process has.
    proc = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    wait_for_lines(proc, out / "archive.jsonl", 2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    err = " ".join(err.split())  # rich wraps lines at 80 columns
    assert "interrupted" in err and "run the same command again to resume" in err
    assert "Traceback" not in err
    saved = lines(out / "archive.jsonl")
    assert saved >= 2 and Archive(out / "archive.jsonl").read()[0][-1]["id"] == saved - 1
    assert not RunDir(out).is_locked()


def test_a_run_recorded_before_a_setting_existed_resumes_at_that_settings_old_default(
    tmp_path: Path,
) -> None:
    """Runs written before the cache's storage was recorded stored no ``cache_storage``:
    they were fp16, and a resume with int8 is refused, naming it. Likewise ``offspring``
    (earlier runs asked for a population's worth a generation) and ``initial_random``
    (they filled the first population: ``fill``, which runs of one day stored as null)."""
    from moohead.resume import check_identity

    old = {"task": "sst2", "budgets": [1.0]}  # no cache_storage: fp16 at the time
    check_identity(tmp_path, old, old | {"cache_storage": "fp16"})
    with pytest.raises(MooheadError, match=r"cache_storage differs \(run: fp16, now: int8\)"):
        check_identity(tmp_path, old, old | {"cache_storage": "int8"})
    check_identity(tmp_path, old, old | {"offspring": None})
    with pytest.raises(MooheadError, match=r"offspring differs \(run: null, now: 30\)"):
        check_identity(tmp_path, old, old | {"offspring": 30})
    check_identity(tmp_path, old, old | {"initial_random": "fill"})
    check_identity(tmp_path, old | {"initial_random": None}, old | {"initial_random": "fill"})
    for now in (10, "population"):
        with pytest.raises(
            MooheadError, match=rf"initial_random differs \(run: fill, now: {now}\)"
        ):
            check_identity(tmp_path, old, old | {"initial_random": now})
    # Pair runs from before cosine heads read their MLP genes as an adapter decode the same
    # genes to other heads: refused, and no option brings the old meaning back.
    check_identity(tmp_path, old, old | {"space_revision": 1})
    with pytest.raises(MooheadError, match=r"space_revision differs \(run: 1, now: 2\); its genes"):
        check_identity(tmp_path, old, old | {"space_revision": 2})
    # a setting neither side records (a fine-tune run's storage) is the default on both
    check_identity(tmp_path, {"task": "sst2"}, {"task": "sst2"})
