"""isolation/protocol.py: what the grader accepts back from a student's process, and what it refuses."""
import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from grading.failures import BadReply, StudentFailure
from grading.isolation.protocol import CallBudget, parse_reply, read_regular_file
from grading.sandboxed.wire import encode
from grading.settings import Settings


def test_a_wire_archive_of_float64_arrays_is_read_back_exactly() -> None:
    x = np.random.default_rng(0).standard_normal((3, 4))
    meta, arrays = parse_reply(encode({"ok": True, "shape": [3, 4]}, {"out": x}))
    assert meta["shape"] == [3, 4] and np.array_equal(arrays["out"], x) and arrays["out"].dtype == np.float64


@pytest.mark.parametrize("raw,words", [
    (pickle.dumps({"ok": True}), "not in the grader's format"),
    (b"PK\x03\x04 not really a zip", "not in the grader's format"),
    (b"", "not in the grader's format"),
])
def test_anything_but_a_wire_archive_is_refused(raw: bytes, words: str) -> None:
    with pytest.raises(BadReply, match=words):
        parse_reply(raw)


def test_an_array_that_is_not_float64_is_refused() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.frombuffer(b'{"ok": true}', dtype=np.uint8), out=np.ones(3, dtype=np.float32))
    with pytest.raises(BadReply, match="float32, not float64"):
        parse_reply(buffer.getvalue())


def test_a_pickled_array_is_never_unpickled() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.frombuffer(b'{"ok": true}', dtype=np.uint8), out=np.array([object()], dtype=object))
    with pytest.raises(BadReply):
        parse_reply(buffer.getvalue())


def test_a_compressed_reply_is_refused_before_it_is_inflated() -> None:
    """A deflated entry of zeros can be a thousand times its size in memory: 144 MiB from a small reply."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, meta=np.frombuffer(b'{"ok": true}', dtype=np.uint8), out=np.zeros(1 << 20))
    assert len(buffer.getvalue()) < 100 << 10
    with pytest.raises(BadReply, match="compressed"):
        parse_reply(buffer.getvalue())


def test_the_replies_of_one_submission_are_capped_in_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Settings, "replies_bytes", 3 * 8 * 1000)
    budget = CallBudget()
    for _ in range(4):
        budget.check()
        budget.received(({}, {"out": np.zeros(1000)}))
    with pytest.raises(StudentFailure, match="added up to more than"):
        budget.check()


def test_a_reply_over_the_cap_is_refused_before_it_is_read() -> None:
    with pytest.raises(BadReply, match="too large"):
        parse_reply(b"x" * 101, max_bytes=100)


def test_what_the_students_code_raised_is_their_failure_with_its_name_and_a_capped_message() -> None:
    with pytest.raises(StudentFailure) as failure:
        parse_reply(encode({"ok": False, "error": "ValueError", "message": "m" * 5000}, {}))
    assert failure.value.error == "ValueError" and not isinstance(failure.value, BadReply)
    assert str(failure.value).startswith("your code raised ValueError: mmm")
    assert len(str(failure.value)) <= len("your code raised ValueError: ") + Settings.message_chars


def test_a_reply_without_ok_is_a_failure_even_with_arrays() -> None:
    with pytest.raises(StudentFailure, match="your code raised Error"):
        parse_reply(encode({}, {"out": np.zeros(2)}))


def test_only_a_regular_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "reply").write_bytes(b"data")
    assert read_regular_file(tmp_path / "reply") == b"data"
    os.symlink(tmp_path / "reply", tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(BadReply, match="no reply was written"):
        read_regular_file(tmp_path / "link")
    with pytest.raises(BadReply, match="not a regular file"):
        read_regular_file(tmp_path / "fifo")
    with pytest.raises(BadReply, match="no reply was written"):
        read_regular_file(tmp_path / "missing")
    (tmp_path / "big").write_bytes(b"x" * (2 << 20))
    with pytest.raises(BadReply, match="larger than 1 MiB"):
        read_regular_file(tmp_path / "big", max_bytes=1 << 20)


def test_a_grade_cell_stops_calling_after_its_timeouts_and_the_next_cell_starts_afresh() -> None:
    budget = CallBudget()
    budget.cell = "q1_forward"
    for _ in range(Settings.timeouts_per_cell):
        budget.check()
        budget.spend()
    with pytest.raises(StudentFailure, match="earlier calls of this check timed out or ended the process"):
        budget.check()
    budget.cell = "q2_backward"
    budget.check()
