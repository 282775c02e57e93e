"""grading/stages.py, the per-process record of time per stage, and how `bench --profile` lays it out."""
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from grading import stages
from grading.commands.bench import table, tree
from grading.stages import Stage


@pytest.fixture(autouse=True)
def empty_record() -> Iterator[None]:
    stages.reset()
    yield
    stages.reset()


def test_a_stage_entered_in_another_is_recorded_under_it_and_counts_each_run() -> None:
    with stages.stage("judge", rest="the rest"):
        for _ in range(3):
            with stages.stage("probe"):
                time.sleep(0.01)
    record = stages.record()
    assert set(record) == {"judge", "judge/probe"}
    assert record["judge/probe"].count == 3 and record["judge"].count == 1
    assert 0.03 <= record["judge/probe"].wall <= record["judge"].wall
    assert record["judge"].rest == "the rest"


def test_a_stage_used_as_a_decorator_times_each_call_and_lets_exceptions_through() -> None:
    @stages.stage("call")
    def fails() -> None:
        raise ValueError("the caller's")

    for _ in range(2):
        with pytest.raises(ValueError):
            fails()
    assert stages.record()["call"].count == 2
    with stages.stage("after"):
        pass
    assert "after" in stages.record()  # a stage that raised is left: the next one is not nested under it


def test_a_child_record_saved_then_absorbed_lands_under_the_name_given(tmp_path: Path) -> None:
    with stages.stage("grade"):
        pass
    stages.save(tmp_path / stages.STAGES)
    stages.reset()
    assert stages.record() == {}
    stages.absorb(tmp_path / stages.STAGES, "child")
    stages.absorb(tmp_path / stages.STAGES, "child")
    assert stages.record()["child/grade"].count == 2


def test_a_missing_or_unreadable_record_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"grade": {"count": "x", "bogus": 1}}')
    (tmp_path / "list.json").write_text("[1, 2]")
    for name in ("absent.json", "bad.json", "list.json"):
        stages.absorb(tmp_path / name, "child")
    assert stages.record() == {}


def test_the_profile_tree_puts_children_under_parents_and_names_a_parents_own_time() -> None:
    record = {"child/grade/judge/probe": Stage(26, 0.5, 0.1), "child/grade/judge": Stage(1, 2.0, 0.5, rest="other"),
              "child/grade": Stage(1, 2.5, 0.6), "child/files": Stage(1, 0.1, 0.1), "main: finish": Stage(1, 0.4, 0.2)}
    rows = tree(record)
    assert list(rows) == ["child", "child/grade", "child/grade/judge", "child/grade/judge/probe",
                          "child/grade/judge/other", "child/files", "main: finish"]
    assert rows["child/grade/judge/other"].wall == pytest.approx(1.5)
    assert rows["child"].wall == pytest.approx(2.6)  # a group without time of its own sums its children
    lines = table(rows, 2, 1.5).splitlines()
    probe = next(line for line in lines if line.strip().startswith("probe"))
    assert probe.startswith("      probe") and "13.0" in probe and "0.250" in probe
