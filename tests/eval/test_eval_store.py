"""The JSONL results store: atomic appends, recovery from a partial last line, one writer at a time."""

import json

import pytest

from diffcomm import DiffcommError
from diffcomm.eval import ResultsWriter, load_records, sidecar_dir, strip_timing


def test_append_and_load_round_trip(tmp_path):
    path = tmp_path / "r.jsonl"
    assert load_records(path) == []
    with ResultsWriter(path) as w:
        w.append({"key": "a", "x": 1})
        w.append({"key": "b", "x": 2})
    assert [r["key"] for r in load_records(path)] == ["a", "b"]
    assert path.read_text().count("\n") == 2
    assert sidecar_dir(path) == tmp_path / "r.jsonl.d"


def test_partial_last_line_is_dropped_and_truncated(tmp_path):
    path = tmp_path / "r.jsonl"
    good = json.dumps({"key": "a"}) + "\n"
    path.write_text(good + '{"key": "b", "metr')
    assert [r["key"] for r in load_records(path, repair=False)] == ["a"]
    assert path.read_text() != good  # repair=False leaves the file alone
    assert [r["key"] for r in load_records(path)] == ["a"]
    assert path.read_text() == good
    # Appending after the repair gives a valid file.
    with ResultsWriter(path) as w:
        w.append({"key": "c"})
    assert [r["key"] for r in load_records(path)] == ["a", "c"]


def test_writer_repairs_before_appending(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"key": "a"}) + "\n" + '{"key": "b"')  # complete JSON but no newline yet
    with ResultsWriter(path) as w:
        w.append({"key": "c"})
    assert [r["key"] for r in load_records(path)] == ["a", "c"]


@pytest.mark.parametrize("text, message", [
    ('{"key": "a"}\nnot json\n{"key": "b"}\n', "line 2 is not a JSON record"),
    ('[1, 2]\n', "not a diffcomm results record"),
    ('{"no_key": 1}\n', "not a diffcomm results record"),
])
def test_malformed_files_are_errors(tmp_path, text, message):
    path = tmp_path / "r.jsonl"
    path.write_text(text)
    with pytest.raises(DiffcommError, match=message):
        load_records(path)
    assert path.read_text() == text  # never truncates real data


def test_one_writer_at_a_time(tmp_path):
    path = tmp_path / "r.jsonl"
    with ResultsWriter(path):
        with pytest.raises(DiffcommError, match="another run is writing"):
            with ResultsWriter(path):
                pass
    with ResultsWriter(path) as w:  # released afterwards
        w.append({"key": "a"})


def test_strip_timing():
    record = {"key": "a", "metrics": {}, "seconds": {"total": 1.0}, "timestamp": "t", "machine": {}}
    assert strip_timing(record) == {"key": "a", "metrics": {}}
