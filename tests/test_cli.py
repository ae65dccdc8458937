"""The CLI: help, a real evolve, and bad input (one line, exit 2, no traceback, nothing lost)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli


def test_help_does_not_import_torch() -> None:
    code = "import sys; from moohead.cli.main import cli; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    out = subprocess.run(
        [sys.executable, "-m", "moohead.cli.main", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "evolve" in out.stdout and "front" in out.stdout


def _bad_inputs(tiny: Path, glue: Path, tmp: Path) -> list[tuple[list[str], str]]:
    base = [
        "evolve",
        "--model",
        str(tiny),
        "--data-dir",
        str(glue),
        "--out",
        str(tmp / "r"),
        "--cache-dir",
        str(tmp / "c"),
    ]
    (tmp / "notamodel").mkdir()
    (tmp / "nolabels" / "sst2").mkdir(parents=True)
    (tmp / "nolabels" / "sst2" / "train.tsv").write_text("sentence\nfine\n")
    (tmp / "nolabels" / "sst2" / "validation.tsv").write_text("sentence\tlabel\nfine\t1\n")
    (tmp / "brokenrun").mkdir()
    (tmp / "brokenrun" / "front.json").write_text("{not json")
    bad_labels = {
        "range": ("sst2", "fine\t5"),
        "text": ("sst2", "fine\tpos"),
        "nan": ("stsb", "a\tb\tnan"),
        "oneclass": ("sst2", "fine\t1\nok\t1"),
        "gaps": ("mine", "fine\t0\nok\t2"),
    }
    for name, (task, row) in bad_labels.items():
        folder = tmp / f"labels-{name}" / task
        folder.mkdir(parents=True)
        header = "sentence1\tsentence2\tlabel" if task == "stsb" else "sentence\tlabel"
        for split in ("train", "validation"):
            (folder / f"{split}.tsv").write_text(f"{header}\n{row}\n")
    (tmp / "empty" / "sst2").mkdir(parents=True)
    (tmp / "empty" / "sst2" / "train.tsv").write_text("")
    (tmp / "empty" / "sst2" / "validation.tsv").write_text("sentence\tlabel\nfine\t1\n")
    (tmp / "oldrun").mkdir()
    # A sentence-transformers folder whose pooling config does not parse.
    import shutil

    broken = tmp / "brokenpool"
    shutil.copytree(tiny, broken)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]  # fmt: skip
    (broken / "modules.json").write_text(json.dumps(modules))
    (broken / "1_Pooling").mkdir()
    (broken / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": tru')
    (tmp / "oldrun" / "archive.jsonl").write_text('{"id": 0, "genome": {}}\n')

    def data(name: str, task: str = "sst2") -> list[str]:
        return [
            *base[:3],
            "--data-dir",
            str(tmp / f"labels-{name}"),
            "--out",
            str(tmp / f"r-{name}"),
            "--task",
            task,
        ]

    return [
        (data("range"), "label 5 in row 1 is outside 0..1"),
        ([*base[:3], "--data-dir", str(tmp / "empty"), "--out", str(tmp / "r-empty")], "empty"),
        (data("text"), "unparsable label"),
        (data("nan", "stsb"), "label in row 1 is not a finite number"),
        (data("oneclass"), "every label is 1; a classification task needs at least two classes"),
        (data("gaps", "mine"), "class label(s) 1 of 0..2 have no training example"),
        (
            [*base, "--max-length", "1000"],
            "--max-length 1000 is above the encoder's position limit of 512",
        ),
        ([*base[:5], "--out", str(tmp / "oldrun")], "cannot be resumed safely"),
        ([*base, "--task", "nosuchtask"], "unknown task 'nosuchtask'"),
        ([*base, "--population", "2"], "--population must be at least 4"),
        ([*base, "--generations", "0"], "--generations must be at least 1"),
        ([*base, "--offspring", "0"], "--offspring must be at least 1"),
        ([*base, "--initial-random", "-1"], "--initial-random must be at least 0"),
        ([*base, "--initial-random", "lots"], "one of population, fill, got lots"),
        ([*base, "--max-length", "4"], "--max-length must be at least 8"),
        ([*base, "--objectives", "flops,latency"], "give score plus"),
        ([*base, "--budgets", "1/3,1/9,1"], "not increasing"),
        ([*base, "--budgets", "0,1"], "each must be in (0, 1]"),
        ([*base, "--budgets", "1/3,3/2"], "each must be in (0, 1]"),
        ([*base, "--budgets", "1/9,1/3"], "the last must be 1"),
        ([*base, "--budgets", "a third,1"], "--budgets takes increasing fractions"),
        ([*base, "--budgets", "1/0,1"], "--budgets takes increasing fractions"),
        ([*base, "--device", "tpu"], "'tpu' is not one of"),
        ([*base, "--cache-budget", "5Q"], "--cache-budget '5Q' is not a size"),
        ([*base, "--population", "many"], "'many' is not a valid integer"),
        ([*base, "--task", "mrpc"], "data folder"),
        (
            [*base[:-4], "--data-dir", str(tmp / "nolabels"), "--out", str(tmp / "r2")],
            "missing column(s) label",
        ),
        (
            [*base[:1], "--model", str(tmp / "notamodel"), *base[3:]],
            "not a Hugging Face model folder",
        ),
        ([*base[:3], "--data-dir", str(tmp / "nowhere"), *base[5:]], "is not a folder"),
        (
            [*base[:1], "--model", str(broken), *base[3:5], "--out", str(tmp / "r-pool")],
            f"cannot read {broken / '1_Pooling' / 'config.json'}",
        ),
        (["front", str(tmp / "missing-run")], "does not exist"),
        (["front", str(tmp / "brokenrun")], "corrupted"),
        (["front", str(tmp / "notamodel")], "has no front.json"),
    ]


def test_bad_input_is_one_line_and_exit_2(
    tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for args, needle in _bad_inputs(tiny_encoder_dir, glue_dir, tmp_path):
        code, out, err = run_cli(args, capsys)
        assert code == 2, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, err)
        assert needle in lines[0], (args, lines[0])
        assert "Traceback" not in out + err
    assert not (tmp_path / "r" / "archive.jsonl").exists()
    assert not (tmp_path / "r-pool" / "archive.jsonl").exists()
    assert not list(tmp_path.glob("r*/archive.jsonl"))  # no refused run wrote an archive
    assert not list(tmp_path.glob("r-*"))  # nor left a folder it created
    assert not [p for p in (tmp_path / "c").rglob("*") if p.is_file()]  # nor a feature cache
    assert (tmp_path / "brokenrun" / "front.json").read_text() == "{not json"
    assert (tmp_path / "oldrun" / "archive.jsonl").read_text() == '{"id": 0, "genome": {}}\n'
    assert sorted(p.name for p in (tmp_path / "oldrun").iterdir()) == [".lock", "archive.jsonl"]


def test_cuda_without_gpu_is_an_input_error(
    tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    args = [
        "evolve",
        "--model",
        str(tiny_encoder_dir),
        "--data-dir",
        str(glue_dir),
        "--out",
        str(tmp_path / "r"),
        "--device",
        "cuda",
    ]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "no CUDA GPU" in err


@pytest.mark.slow
def test_evolve_then_front(tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path) -> None:
    """A real ``moohead evolve`` process, then ``moohead front`` as a table and as JSON."""
    out = tmp_path / "run"
    args = [
        "evolve", "--task", "sst2", "--model", str(tiny_encoder_dir), "--data-dir", str(glue_dir),
        "--out", str(out), "--population", "4", "--generations", "2", "--max-train", "0",
        "--max-length", "16", "--objectives", "score,flops,latency", "--cache-dir", str(tmp_path / "cache"),
        "--max-epochs", "2", "--seed", "3",
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "moohead.cli.main", *args], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "generation 2/2" in proc.stdout
        and "baseline" in proc.stdout
        and "hypervolume" in proc.stdout
    )
    table = subprocess.run(
        [sys.executable, "-m", "moohead.cli.main", "front", str(out)],
        capture_output=True,
        text=True,
    )
    assert table.returncode == 0 and "baseline" in table.stdout
    js = subprocess.run(
        [sys.executable, "-m", "moohead.cli.main", "front", str(out), "--json"],
        capture_output=True,
        text=True,
    )
    doc = json.loads(js.stdout)
    assert {"task", "metric", "baseline", "front"} <= set(doc)
    # A second evolve on the finished run resumes it: nothing is trained again.
    before = (out / "archive.jsonl").read_text()
    front_before = (out / "front.json").read_text()
    again = subprocess.run(
        [sys.executable, "-m", "moohead.cli.main", *args], capture_output=True, text=True
    )
    assert again.returncode == 0 and "resuming" in again.stdout, again.stderr
    assert (out / "archive.jsonl").read_text() == before
    # ... and the front it wrote stands: not re-timed, so noise cannot swap near-tied heads
    assert (out / "front.json").read_text() == front_before
    # A different search on it refuses, naming the difference, and changes nothing.
    other = [*args[:-1], "4"]  # --seed 4
    proc = subprocess.run(
        [sys.executable, "-m", "moohead.cli.main", *other], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "seed differs (run: 3, now: 4)" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert (out / "archive.jsonl").read_text() == before
    _resume_on_another_machine(args, out)


def _resume_on_another_machine(args: list[str], out: Path) -> None:
    """The run's latencies were measured on another CPU (simulated by editing the machine
    config.json records, and the archive's latencies): a resume refuses, naming the
    difference, until --retime re-times every archived architecture here."""
    from moohead.machine import cpu_model

    config = json.loads((out / "config.json").read_text())
    threads = config["timing"]["threads"]  # torch's default in that process
    assert config["timing"] == {
        "device": "cpu", "cpu": cpu_model(), "gpu": None, "threads": threads,
        "runtime": "ort",  # the default: latency of the exported graph in ONNX Runtime
    }  # fmt: skip
    config["timing"]["cpu"] = "Another CPU 9000"
    (out / "config.json").write_text(json.dumps(config))
    records = [json.loads(line) for line in (out / "archive.jsonl").read_text().splitlines()]
    timed = [r for r in records if r["latency_ms"] is not None]
    assert timed
    (out / "archive.jsonl").write_text(
        "".join(
            json.dumps(r | ({"latency_ms": 12345.0} if r in timed else {})) + "\n" for r in records
        )
    )
    snapshot = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"}

    def evolve(*extra: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "moohead.cli.main", *args, *extra]
        return subprocess.run(cmd, capture_output=True, text=True)

    refused = evolve()
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip() == (
        f"error: cannot resume {out}: its latencies were measured with cpu 'Another CPU 9000', "
        f"this machine has {cpu_model()!r}; pass --retime to re-time every archived "
        "architecture here, or --force-new to start over (the old run is kept beside it)"
    )
    assert {
        p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"
    } == snapshot
    retimed_run = evolve("--threads", str(threads + 1), "--retime")
    assert retimed_run.returncode == 0, retimed_run.stderr
    assert "re-timed the archived architectures" in retimed_run.stdout
    retimed = [json.loads(line) for line in (out / "archive.jsonl").read_text().splitlines()]
    # The archived evaluations stay (new latencies may steer NSGA-II to train new ones).
    assert [(r["id"], r["genome"], r["score"]) for r in retimed[: len(records)]] == [
        (r["id"], r["genome"], r["score"]) for r in records
    ]
    timed_ids = {r["id"] for r in timed}
    assert all(0 < r["latency_ms"] != 12345.0 for r in retimed if r["id"] in timed_ids)
    config = json.loads((out / "config.json").read_text())
    assert config["timing"]["cpu"] == cpu_model()
    assert config["timing"]["threads"] == threads + 1
    front = json.loads((out / "front.json").read_text())
    assert all(e["latency_ms"] != 12345.0 for e in front["front"])
    # The same machine with another thread count is another timing context too.
    other = evolve("--threads", str(threads))
    assert other.returncode == 2 and "measured with threads" in other.stderr
    eager = evolve("--threads", str(threads + 1), "--latency-runtime", "torch")
    assert eager.returncode == 2 and "measured with runtime 'ort'" in eager.stderr
