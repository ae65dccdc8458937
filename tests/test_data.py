import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import require_shared_glue

from moohead.data import Split, load_split, resolve_task
from moohead.errors import MooheadError
from moohead.tasks import GLUE_TASKS, Task


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


# --- tasks --------------------------------------------------------------------------------


def test_task_properties() -> None:
    mrpc, stsb, cola, mnli = (GLUE_TASKS[n] for n in ("mrpc", "stsb", "cola", "mnli"))
    assert mrpc.is_pair and not mrpc.is_regression and not cola.is_pair
    assert stsb.is_regression and stsb.is_pair
    assert mrpc.metric_name == "f1/accuracy" and cola.metric_name == "mcc"
    assert stsb.metric_name == "pearson/spearman"
    assert mrpc.columns == ("sentence1", "sentence2", "label")
    assert cola.columns == ("sentence", "label")
    assert mnli.labels == ["entailment", "neutral", "contradiction"]
    assert stsb.labels == []  # regression: no classes
    assert mnli.validation_splits == ("validation_matched", "validation_mismatched")
    assert cola.validation_splits == ("validation",)


def test_task_labels_default_to_class_ids() -> None:
    custom = Task("spam", ("sentence",), 3, ("accuracy",))
    assert custom.labels == ["0", "1", "2"]
    assert Task("x", ("text",), 2, ("accuracy",), label_column="y").columns == ("text", "y")
    assert Task("r", ("a", "b"), 1, ("pearson",), label_names=("ignored",)).labels == []


# --- Split --------------------------------------------------------------------------------


def test_split_subset_keeps_the_requested_order() -> None:
    split = Split((["a", "b", "c", "d"], ["w", "x", "y", "z"]), np.array([0, 1, 0, 1]))
    sub = split.subset(np.array([3, 0]))
    assert sub.texts == (["d", "a"], ["z", "w"]) and sub.labels.tolist() == [1, 0]
    assert len(split) == 4 and len(sub) == 2


def test_fingerprint_is_stable_and_follows_the_texts() -> None:
    split = Split((["a fine film", "dull"],), np.array([1, 0]))
    # Caches on disk are keyed by this value: it must not change between versions. It is
    # sha1("a fine film" NUL "dull" NUL 0x01)[:16]: texts NUL-ended, columns 0x01-ended.
    assert split.fingerprint() == "6bb2e8ff47aacde8"
    assert Split((["a fine film", "dull"],), np.array([0, 0])).fingerprint() == split.fingerprint()
    assert Split((["a fine film", "dull."],), np.array([1, 0])).fingerprint() != split.fingerprint()
    # Text and column boundaries count: ("ab", "c") is not ("a", "bc"), nor one column two.
    ab_c = Split((["ab", "c"],), np.array([0, 0])).fingerprint()
    assert ab_c != Split((["a", "bc"],), np.array([0, 0])).fingerprint()
    assert (
        Split((["a"], ["b"]), np.array([0])).fingerprint()
        != Split((["a", "b"],), np.array([0, 0])).fingerprint()
    )
    # Lone surrogates (possible in scraped text) hash instead of raising.
    assert len(Split((["bad \ud800 text"],), np.array([0])).fingerprint()) == 16


# --- reading files ------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["tsv", "csv", "jsonl"])
def test_numeric_looking_text_stays_text(tmp_path: Path, ext: str) -> None:
    """'007' and '1e3' are sentences, not numbers: no type inference on the text."""
    folder = tmp_path / "sst2"
    folder.mkdir()
    rows = [("007", 1), ("1e3", 0), ("12", 1)]  # every row numeric-looking: no object column
    if ext == "jsonl":
        text = "\n".join(json.dumps({"sentence": s, "label": y}) for s, y in rows)
    else:
        sep = "\t" if ext == "tsv" else ","
        text = f"sentence{sep}label\n" + "".join(f"{s}{sep}{y}\n" for s, y in rows)
    (folder / f"train.{ext}").write_text(text)
    split = load_split(GLUE_TASKS["sst2"], "train", tmp_path)
    assert split.texts[0] == ["007", "1e3", "12"]
    assert split.labels.tolist() == [1, 0, 1]


def test_empty_and_unreadable_files_name_the_file(tmp_path: Path) -> None:
    _write(tmp_path, "sst2", "")
    path = tmp_path / "sst2" / "train.tsv"
    with pytest.raises(MooheadError, match=r"train.tsv is empty; it needs a header row"):
        load_split(GLUE_TASKS["sst2"], "train", tmp_path)
    path.unlink()
    (tmp_path / "sst2" / "train.parquet").write_bytes(b"not a parquet file")
    with pytest.raises(MooheadError, match=r"^cannot read .*train\.parquet: ") as exc:
        load_split(GLUE_TASKS["sst2"], "train", tmp_path)
    assert "\n" not in str(exc.value)


def test_file_format_preference_is_tsv_first(tmp_path: Path) -> None:
    _write(tmp_path, "sst2", "sentence\tlabel\nfrom tsv\t1\nalso tsv\t0\n")
    (tmp_path / "sst2" / "train.csv").write_text("sentence,label\nfrom csv,0\nalso csv,1\n")
    assert load_split(GLUE_TASKS["sst2"], "train", tmp_path).texts[0] == ["from tsv", "also tsv"]


@pytest.mark.parametrize(
    ("task", "text", "message"),
    [
        ("sst2", "sentence\tlabel\nfine\t2\nok\t1\n", r"train.tsv: label 2 in row 1 is outside 0..1$"),
        ("sst2", "sentence\tlabel\nfine\t1\nok\t-1\n", r"train.tsv: label -1 in row 2 is outside 0..1$"),
        ("mnli", "premise\thypothesis\tlabel\na\tb\t1\nc\td\t3\n", r"label 3 in row 2 is outside 0..2$"),
        ("sst2", "sentence\tlabel\nfine\t1\nok\t0.5\n", r"train.tsv: class labels must be integers, found 0.5$"),
        ("sst2", "sentence\tlabel\nfine\t1\nok\tinf\n", r"train.tsv: label in row 2 is not a finite number$"),
        ("sst2", "sentence\tlabel\nfine\tpositive\n", r"train.tsv: unparsable label .*; labels must be numbers$"),
        ("sst2", "text\tlabel\nfine\t1\n", r"train.tsv is missing column\(s\) sentence; expected sentence, label \(the hub's column names\)$"),
        ("mrpc", "sentence1\tlabel\na\t1\n", r"is missing column\(s\) sentence2; expected sentence1, sentence2, label"),
        ("mrpc", "x\ty\n", r"is missing column\(s\) sentence1, sentence2, label;"),
    ],
)  # fmt: skip
def test_label_and_column_errors_say_where(
    tmp_path: Path, task: str, text: str, message: str
) -> None:
    with pytest.raises(MooheadError, match=message):
        load_split(GLUE_TASKS[task], "train", _write(tmp_path, task, text))


def test_labels_have_the_right_type(tmp_path: Path) -> None:
    cls = load_split(
        GLUE_TASKS["sst2"], "train", _write(tmp_path, "sst2", "sentence\tlabel\na\t1.0\nb\t 0 \n")
    )
    assert cls.labels.dtype == np.int64 and cls.labels.tolist() == [1, 0]
    reg = load_split(
        GLUE_TASKS["stsb"],
        "train",
        _write(tmp_path, "stsb", "sentence1\tsentence2\tlabel\na\tb\t2.5\nc\td\t4\n"),
    )
    assert reg.labels.dtype == np.float32 and reg.labels.tolist() == [2.5, 4.0]
    assert reg.texts == (["a", "c"], ["b", "d"])


# --- custom tasks -------------------------------------------------------------------------


def test_custom_task_kinds_and_names(tmp_path: Path) -> None:
    _write(tmp_path, "topics", "sentence\tlabel\na\t0\nb\t4\nc\t2\n")
    _write(tmp_path, "para", "sentence1\tsentence2\tlabel\na\tb\t1\nc\td\t0\n")
    _write(tmp_path, "score", "sentence\tlabel\na\t0.5\nb\t1\n")
    topics, para, score = (resolve_task(n, tmp_path) for n in ("topics", "para", "score"))
    assert topics == Task("topics", ("sentence",), 5, ("accuracy",))
    assert para == Task("para", ("sentence1", "sentence2"), 2, ("accuracy",))
    assert score == Task("score", ("sentence",), 1, ("pearson",))
    assert resolve_task("sst2", tmp_path) is GLUE_TASKS["sst2"]  # GLUE names win


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("text\tlabel\na\t1\n", r"train.tsv has columns \['text', 'label'\]; a custom task needs sentence,label or sentence1,sentence2,label$"),
        ("sentence\tlabel\na\tyes\n", r"train.tsv: labels must be numbers \("),
        ("sentence\tlabel\n", r"train.tsv has no rows$"),
        ("sentence\tlabel\na\t1\nb\t-2\n", r"train.tsv: class labels must be 0..K-1, found -2$"),
    ],
)  # fmt: skip
def test_bad_custom_tasks_say_why(tmp_path: Path, text: str, message: str) -> None:
    _write(tmp_path, "mine", text)
    with pytest.raises(MooheadError, match=message):
        resolve_task("mine", tmp_path)


def test_unknown_task_lists_the_glue_tasks(tmp_path: Path) -> None:
    known = "cola, mnli, mrpc, qnli, qqp, rte, sst2, stsb, wnli"
    with pytest.raises(MooheadError) as exc:
        resolve_task("nope", None)
    assert str(exc.value) == (
        f"unknown task 'nope': use a GLUE task ({known}) or pass --data-dir DIR "
        "with DIR/nope/train.tsv for a custom task"
    )
    with pytest.raises(MooheadError) as exc:
        resolve_task("nope", tmp_path)
    assert str(exc.value) == (
        f"unknown task 'nope': not a GLUE task ({known}) and no custom task folder "
        f"{tmp_path / 'nope'} with train.tsv and validation.tsv"
    )


# --- the hub ------------------------------------------------------------------------------


def test_hub_split_is_read_by_name_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls = []

    class FakeDataset:
        def __init__(self, frame: pd.DataFrame) -> None:
            self.frame = frame

        def to_pandas(self) -> pd.DataFrame:
            return self.frame

    def fake_load(path: str, name: str, split: str) -> FakeDataset:
        calls.append((path, name, split))
        labels = [0, 1] if split == "train" else [0, 7]
        return FakeDataset(
            pd.DataFrame({"sentence1": ["a", "c"], "sentence2": ["b", "d"], "label": labels})
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    split = load_split(GLUE_TASKS["rte"], "train", None)
    assert calls == [("nyu-mll/glue", "rte", "train")]
    assert split.texts == (["a", "c"], ["b", "d"]) and split.labels.tolist() == [0, 1]
    with pytest.raises(MooheadError, match=r"^nyu-mll/glue/rte/validation: label 7 in row 2"):
        load_split(GLUE_TASKS["rte"], "validation", None)


def test_hub_error_names_the_exception_type(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def fail(*args: object, **kwargs: object) -> None:
        raise ConnectionError("no route to host")

    monkeypatch.setattr(datasets, "load_dataset", fail)
    with pytest.raises(MooheadError) as exc:
        load_split(GLUE_TASKS["cola"], "validation", None)
    assert str(exc.value) == (
        "could not load nyu-mll/glue/cola [validation] from the hub (ConnectionError); "
        "pass --data-dir DIR with DIR/cola/validation.tsv"
    )


@pytest.mark.parametrize("ext", ["tsv", "csv", "jsonl"])
def test_byte_order_mark_and_crlf_read_as_plain_text(tmp_path: Path, ext: str) -> None:
    """A file saved by a Windows editor: UTF-8 with a byte-order mark and CRLF line ends."""
    rows = [("a fine film", 1), ("dull, and long", 0)]
    if ext == "jsonl":
        lines = [json.dumps({"sentence": s, "label": y}) for s, y in rows]
    else:
        sep = "\t" if ext == "tsv" else ","
        lines = [f"sentence{sep}label", *(f'"{s}"{sep}{y}' for s, y in rows)]
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / f"train.{ext}").write_bytes(
        b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n"
    )
    split = load_split(GLUE_TASKS["sst2"], "train", tmp_path)
    assert split.texts[0] == ["a fine film", "dull, and long"]
    assert split.labels.tolist() == [1, 0]


@pytest.mark.parametrize(
    ("task", "text", "message"),
    [
        ("sst2", "sentence\tlabel\na\t1\nb\t1\n", r"train.tsv: every label is 1; a classification task needs at least two classes"),
        ("mine", "sentence\tlabel\na\t0\nb\t0\n", r"train.tsv: every label is 0; a classification task needs at least two classes"),
        ("mine", "sentence\tlabel\na\t0\nb\t2\nc\t3\n", r"train.tsv: class label\(s\) 1 of 0..3 have no training example \(labels found: 0, 2, 3\); renumber the classes 0..K-1 without gaps$"),
        ("mnli", "premise\thypothesis\tlabel\na\tb\t0\nc\td\t2\n", r"class label\(s\) 1 of 0..2 have no training example"),
    ],
)  # fmt: skip
def test_training_labels_a_classifier_cannot_learn_from_are_refused(
    tmp_path: Path, task: str, text: str, message: str
) -> None:
    _write(tmp_path, task, text)
    with pytest.raises(MooheadError, match=message):
        load_split(resolve_task(task, tmp_path), "train", tmp_path)


def test_a_validation_split_may_lack_a_class(tmp_path: Path) -> None:
    """Only training labels must cover every class: a small validation split may not."""
    _write(tmp_path, "sst2", "sentence\tlabel\na\t1\n", split="validation")
    assert load_split(GLUE_TASKS["sst2"], "validation", tmp_path).labels.tolist() == [1]


def test_run_config_stores_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Paths a run records work from any working directory (export, refine, front)."""
    from moohead.config import SearchConfig

    monkeypatch.chdir(tmp_path)
    d = SearchConfig(data_dir=Path("glue"), out=Path("runs/r"), cache_dir=Path("cache")).to_dict()
    assert d["data_dir"] == str(tmp_path.resolve() / "glue")
    assert d["out"] == str(tmp_path.resolve() / "runs" / "r")
    assert d["cache_dir"] == str(tmp_path.resolve() / "cache")
