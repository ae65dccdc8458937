import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import require_shared_glue

from moohead.data import load_split, resolve_task, search_splits
from moohead.errors import MooheadError
from moohead.tasks import GLUE_TASKS


def test_glue_tasks_are_complete() -> None:
    assert set(GLUE_TASKS) == {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}
    assert GLUE_TASKS["stsb"].is_regression and GLUE_TASKS["stsb"].metrics == (
        "pearson",
        "spearman",
    )
    assert GLUE_TASKS["cola"].metrics == ("mcc",)
    assert GLUE_TASKS["mnli"].num_labels == 3 and len(GLUE_TASKS["mnli"].validation_splits) == 2


@pytest.mark.parametrize("ext", ["tsv", "csv", "parquet", "jsonl"])
def test_reads_every_file_format(tmp_path: Path, ext: str) -> None:
    frame = pd.DataFrame({"sentence": ["null", "a fine film", "NA"], "label": [0, 1, 1]})
    folder = tmp_path / "sst2"
    folder.mkdir()
    path = folder / f"train.{ext}"
    if ext == "tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif ext == "csv":
        frame.to_csv(path, index=False)
    elif ext == "parquet":
        frame.to_parquet(path)
    else:
        path.write_text("\n".join(json.dumps(r) for r in frame.to_dict("records")))
    split = load_split(GLUE_TASKS["sst2"], "train", tmp_path)
    assert split.texts[0] == ["null", "a fine film", "NA"]  # 'null' and 'NA' stay text
    assert split.labels.tolist() == [0, 1, 1]


def _write(tmp_path: Path, task: str, text: str, split: str = "train") -> Path:
    (tmp_path / task).mkdir(exist_ok=True)
    (tmp_path / task / f"{split}.tsv").write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("sentence\n", "missing column(s) label"),
        ("sentence\tlabel\nfine\tpositive\n", "unparsable label"),
        ("sentence\tlabel\nfine\t2\n", "outside 0..1"),
        ("sentence\tlabel\n", "no rows"),
    ],
)
def test_bad_split_files_name_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(MooheadError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        load_split(GLUE_TASKS["sst2"], "train", _write(tmp_path, "sst2", text))


def test_nan_regression_label_is_rejected(tmp_path: Path) -> None:
    text = "sentence1\tsentence2\tlabel\na\tb\t2.5\nc\td\tnan\n"
    with pytest.raises(MooheadError, match="row 2 is not a finite number"):
        load_split(GLUE_TASKS["stsb"], "train", _write(tmp_path, "stsb", text))


def test_missing_folder_and_split(tmp_path: Path) -> None:
    with pytest.raises(MooheadError, match="does not exist"):
        load_split(GLUE_TASKS["rte"], "train", tmp_path)
    _write(tmp_path, "rte", "sentence1\tsentence2\tlabel\na\tb\t0\n")
    with pytest.raises(MooheadError, match="no validation split"):
        load_split(GLUE_TASKS["rte"], "validation", tmp_path)


def test_custom_tasks_infer_kind_from_labels(tmp_path: Path) -> None:
    _write(tmp_path, "spam", "sentence\tlabel\nbuy now\t2\nhello\t0\nhi\t1\n")
    _write(tmp_path, "sim", "sentence1\tsentence2\tlabel\na\tb\t0.5\nc\td\t4\n")
    spam, sim = resolve_task("spam", tmp_path), resolve_task("sim", tmp_path)
    assert (spam.num_labels, spam.metrics, spam.is_pair) == (3, ("accuracy",), False)
    assert (sim.num_labels, sim.metrics, sim.is_pair) == (1, ("pearson",), True)
    with pytest.raises(MooheadError, match="unknown task 'nope'"):
        resolve_task("nope", None)


def test_search_splits_are_disjoint_and_deterministic(tmp_path: Path) -> None:
    rows = "".join(f"s{i}\t{i % 2}\n" for i in range(100))
    split = load_split(
        GLUE_TASKS["sst2"], "train", _write(tmp_path, "sst2", "sentence\tlabel\n" + rows)
    )
    tr, va = search_splits(split, 80, 0.25, seed=3)
    tr2, va2 = search_splits(split, 80, 0.25, seed=3)
    assert (len(tr), len(va)) == (60, 20)
    assert tr.texts == tr2.texts and va.texts == va2.texts
    assert not set(tr.texts[0]) & set(va.texts[0])
    assert search_splits(split, 80, 0.25, seed=4)[1].texts != va.texts


@pytest.mark.integration
@pytest.mark.parametrize("task", ["sst2", "cola", "mrpc", "rte", "stsb"])
def test_reads_real_glue(task: str) -> None:
    root = require_shared_glue()
    t = GLUE_TASKS[task]
    val = load_split(t, "validation", root)
    assert len(val) > 200
    if t.is_regression:
        assert val.labels.dtype == np.float32 and val.labels.min() >= 0 and val.labels.max() <= 5
    else:
        assert set(np.unique(val.labels)) == set(range(t.num_labels))


def test_hub_failure_says_how_to_use_local_data(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without network (offline mode here), the hub path fails with the --data-dir fix."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(
        MooheadError, match=r"could not load nyu-mll/glue/rte \[train\].*--data-dir"
    ):
        load_split(GLUE_TASKS["rte"], "train", None)
