"""files.py's atomic writes and archive.py's append-only log, on real files in tmp_path."""

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from moohead.archive import Archive
from moohead.files import atomic_write, atomic_write_json, atomic_write_text


@pytest.fixture()
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def leftovers(folder: Path) -> list[str]:
    """Anything but the final files: the temporary siblings atomic_write creates."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --- atomic_write -------------------------------------------------------------------------


def test_atomic_write_creates_the_file_and_its_folders(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "front.json"
    atomic_write_text(path, "hello\n")
    assert path.read_text() == "hello\n"
    assert leftovers(path.parent) == []


def test_atomic_write_replaces_old_content(tmp_path: Path) -> None:
    path = tmp_path / "front.json"
    path.write_text("old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["front.json"]


def test_a_reader_of_the_old_file_keeps_the_old_content(tmp_path: Path) -> None:
    """The new file is renamed over the old one, never written into it."""
    path = tmp_path / "front.json"
    path.write_text("old content")
    with open(path) as reader:
        atomic_write_text(path, "new content")
        assert reader.read() == "old content"
    assert path.read_text() == "new content"


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_write_keeps_the_old_content_and_leaves_no_temp_file(
    tmp_path: Path, error: BaseException
) -> None:
    path = tmp_path / "front.json"
    path.write_text("old content")

    def write_half_then_fail(tmp: Path) -> None:
        assert tmp.parent == path.parent and tmp != path  # a sibling, not the target
        tmp.write_text("half of the new")
        raise error

    with pytest.raises(type(error)):
        atomic_write(path, write_half_then_fail)
    assert path.read_text() == "old content"
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["front.json"]


def test_failed_first_write_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "pick.json"

    def fail(tmp: Path) -> None:
        raise ValueError("not serialisable")

    with pytest.raises(ValueError, match="not serialisable"):
        atomic_write(path, fail)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_the_write_callback_gets_a_hidden_temporary_name(tmp_path: Path) -> None:
    seen: list[Path] = []

    def write(tmp: Path) -> None:
        seen.append(tmp)
        assert tmp.exists()  # created (empty) before the callback
        tmp.write_text("x")

    atomic_write(tmp_path / "config.json", write)
    assert len(seen) == 1
    assert seen[0].name.startswith(".config.json.") and seen[0].name.endswith(".tmp")
    assert not seen[0].exists()


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_final_file_gets_the_usual_mode_not_mkstemps_0600(
    tmp_path: Path, umask: int, mode: int
) -> None:
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "f.json", "{}")
        # The umask is restored after reading it.
        assert os.umask(old) == umask
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.json").stat().st_mode) == mode


def test_atomic_write_json_round_trip(tmp_path: Path, umask_022: None) -> None:
    data = {
        "z_first": 1,
        "front": [{"id": 3, "score": 0.875, "genome": {"pool": "cls", "norm": False}}],
        "text": "naïve café — ✓",
        "none": None,
        "big": 2877950208,
        "small": 1e-12,
    }
    path = tmp_path / "front.json"
    atomic_write_json(path, data)
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == data
    assert list(json.loads(text)) == list(data)  # key order kept, not sorted
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert text == json.dumps(data, indent=2) + "\n"  # readable: indented
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_atomic_write_json_refuses_what_json_cannot_hold_and_keeps_the_old(
    tmp_path: Path,
) -> None:
    path = tmp_path / "front.json"
    atomic_write_json(path, {"ok": True})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": True}
    assert leftovers(tmp_path) == []


# --- Archive.append -----------------------------------------------------------------------


def test_archive_append_writes_one_json_line_per_record(tmp_path: Path) -> None:
    path = tmp_path / "archive.jsonl"
    archive = Archive(path)
    records = [
        {"id": 0, "status": "ok", "score": 0.8, "genome": {"depth": 2, "pool": "cls"}},
        {"id": 1, "status": "failed", "score": None, "reason": "diverged: loss is nan"},
        {"id": 2, "status": "ok", "summary": "d1 last mean — ✓", "flops": 1.5e9},
    ]
    for i, r in enumerate(records, start=1):
        archive.append(r)
        lines = path.read_text(encoding="utf-8").splitlines()
        assert len(lines) == i  # one line per record, nothing rewritten
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and text.count("\n") == len(records)
    assert [json.loads(line) for line in text.splitlines()] == records


def test_archive_lines_have_sorted_keys(tmp_path: Path) -> None:
    """Sorted keys: an evaluation's line is the same whatever order its dict was built in."""
    path = tmp_path / "archive.jsonl"
    Archive(path).append({"b": 1, "a": {"y": 2, "x": 1}})
    Archive(path).append({"a": {"x": 1, "y": 2}, "b": 1})
    first, second = path.read_text().splitlines()
    assert first == second == '{"a": {"x": 1, "y": 2}, "b": 1}'


def test_archive_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "archive.jsonl"
    path.write_text('{"id": 0}\n')
    Archive(path).append({"id": 1})  # a new Archive on a resumed run
    assert path.read_text() == '{"id": 0}\n{"id": 1}\n'


def test_archive_append_needs_no_existing_file_and_no_read(tmp_path: Path) -> None:
    path = tmp_path / "archive.jsonl"
    archive = Archive(path)
    assert not path.exists()  # constructing it writes nothing
    archive.append({"id": 0})
    assert path.read_text() == '{"id": 0}\n'
    assert archive.path == path


def test_archive_record_with_a_newline_in_a_string_stays_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "archive.jsonl"
    record = {"id": 0, "reason": "RuntimeError: first line\nsecond line"}
    Archive(path).append(record)
    lines = path.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == record
