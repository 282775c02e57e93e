"""pipeline/parallel.py with the grading itself stood in for: every job ends in finish exactly once, with the
child's result, or with a result that says why there is none; the parent holds the files it took."""
import os
import time

import pytest

from grading.assignment import PYFILE
from grading.handoff import GradingRun, Submission
from grading.pipeline import parallel
from grading.pipeline.parallel import Job, grade_in_children
from grading.records.results import QuestionScore, StudentResult
from grading.settings import Settings

RUN = GradingRun(settings=Settings(jobs=2, questions="q1,q2", timeout=1.0), fingerprint="f", snapshot=None,
                 released=None, config=None, use_bwrap=True, grader_pid=os.getpid())


def stand_in(submission, intake, run, slot):
    """What a child does in place of grading: follows the instruction in the submission's file."""
    instruction = intake.pyfile.read_text()
    if instruction == "raise":
        raise RuntimeError("the grader broke")
    if instruction == "hang":
        time.sleep(60)
    if instruction == "exit":
        os._exit(1)
    return StudentResult(submission.student_id, questions={"q1": QuestionScore(20.0, 20.0)},
                         notes=[f"slot {slot}"]), None


@pytest.fixture
def graded(tmp_path, monkeypatch):
    """Grade one student per instruction with the stand-in: {student: (result, judged, files the parent kept)}."""
    monkeypatch.setattr(parallel, "grade", stand_in)
    monkeypatch.setattr(parallel, "warm_up", lambda: None)
    monkeypatch.setattr(parallel.Settings, "watchdog_grace", 1.0)

    def run(**instructions):
        jobs = []
        for student, instruction in instructions.items():
            (tmp_path / "subs" / student).mkdir(parents=True)
            (tmp_path / "subs" / student / PYFILE).write_text(instruction)
            jobs.append(Job(Submission(student, tmp_path / "subs" / student, "folder"), extra=instruction))
        finished = {}

        def finish(job, result, judged):
            finished[job.submission.student_id] = (result, judged, sorted(p.name for p in job.intake.folder.iterdir()))
        grade_in_children(jobs, RUN, tmp_path / "work", finish)
        return finished
    return run


def test_every_job_ends_once_with_its_result_and_its_files(graded, tmp_path):
    finished = graded(alice="ok", bob="ok", carol="ok")
    assert sorted(finished) == ["alice", "bob", "carol"]
    assert all(result.questions["q1"].score == 20 and files == [PYFILE] for result, _, files in finished.values())
    assert not any((tmp_path / "work").iterdir())  # each child's folder goes once it is finished


def test_a_child_that_crashes_hangs_or_exits_leaves_a_reason_and_no_points(graded):
    finished = graded(crash="raise", hang="hang", exits="exit", fine="ok")
    reasons = {student: result.status for student, (result, _, _) in finished.items()}
    assert reasons["crash"] == "the grader failed on this submission: RuntimeError: the grader broke"
    assert reasons["hang"] == "grading took longer than 2 s and was stopped"
    assert reasons["exits"] == "the grading process ended without a result"
    for student in ("crash", "hang", "exits"):
        result = finished[student][0]
        assert set(result.questions) == {"q1", "q2"} and result.raw_total == 0
        assert not any(q.graded for q in result.questions.values())
    assert finished["fine"][0].raw_total == 20


def test_children_share_as_many_worker_slots_as_jobs_allows(graded):
    finished = graded(**{f"s{i}": "ok" for i in range(5)})
    assert len(finished) == 5 and {result.notes[0] for result, _, _ in finished.values()} == {"slot 0", "slot 1"}
