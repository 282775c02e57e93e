"""StudentModule's side of a child that its DiskWatch stops from another thread: no child process is started here."""
from pathlib import Path

import pytest

from grading.failures import Ending, StudentFailure
from grading.isolation.sandbox import Limits, Sandbox
from grading.isolation.student_module import StudentModule

REASON = "wrote more than 1 MiB (in its folder, /tmp and /dev/shm together)"


def test_a_child_stopped_for_its_writes_right_after_it_started_is_the_students_ending(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = StudentModule(Sandbox(tmp_path, Limits(1, 1, 1, 1, 1, 1)), tmp_path / "batchnormalization.py", 1.0)

    def started_then_stopped_by_the_watch() -> None:
        """What the DiskWatch's thread can do between start() and the request: stop the child, clearing process."""
        module.watch.reason = REASON
        module.process = None

    monkeypatch.setattr(module, "start", started_then_stopped_by_the_watch)
    with pytest.raises(StudentFailure) as raised:
        module.call("forward")
    assert raised.value.ending is Ending.ENDED and REASON in str(raised.value)
