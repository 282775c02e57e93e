"""pipeline/parallel.py with the grading itself stood in for: every job ends in finish exactly once, with the
child's result, or with a result that says why there is none; the parent holds the files it took."""
import os
import shutil
import time

import pytest

from grading.assignment import PYFILE
from grading.handoff import GradingRun, Submission
from grading.pipeline import parallel
from grading.handoff import Job
from grading.failures import GraderError
from grading.isolation.sandbox import Isolation
from grading.pipeline.parallel import grade_in_children
from grading.records.results import QuestionScore, StudentResult
from grading.settings import Settings

RUN = GradingRun(settings=Settings(jobs=2, questions="q1,q2", timeout=1.0), fingerprint="f", snapshot=None,
                 released=None, config=None, isolation=Isolation.BUBBLEWRAP, grader_pid=os.getpid())


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
        """Grade one student per instruction; the one named canary, if any, as the canary."""
        jobs = []
        for student, instruction in instructions.items():
            folder = tmp_path / "subs" / student
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            (folder / PYFILE).write_text(instruction)
            jobs.append(Job(Submission(student, folder, "folder"), extra=instruction))
        canary = next((job for job in jobs if job.submission.student_id == "canary"), None)
        finished = {}

        def finish(job, result, judged):
            finished[job.submission.student_id] = (result, judged, sorted(p.name for p in job.intake.folder.iterdir()))

        def check(result):
            finished["canary"] = (result, None, [])
            if result.error:
                raise RuntimeError("the canary failed")
        grade_in_children([job for job in jobs if job is not canary], RUN, tmp_path / "work", finish, canary, check)
        return finished
    return run


def test_every_job_ends_once_with_its_result_and_its_files(graded, tmp_path):
    finished = graded(alice="ok", bob="ok", carol="ok")
    assert sorted(finished) == ["alice", "bob", "carol"]
    assert all(result.questions["q1"].score == 20 and files == [PYFILE] for result, _, files in finished.values())
    assert not any((tmp_path / "work").iterdir())  # each child's folder goes once it is finished


def test_a_child_that_crashes_hangs_or_exits_is_a_grader_error_with_no_points(graded):
    finished = graded(crash="raise", hang="hang", exits="exit", fine="ok")
    errors = {student: result.error for student, (result, _, _) in finished.items()}
    assert errors["crash"] == "the grader failed: RuntimeError: the grader broke"
    assert errors["hang"].startswith("grading took longer than 2 s, past the submission's own time budget")
    assert errors["exits"] == "the grading process ended without a result (was it killed?)"
    for student in ("crash", "hang", "exits"):
        result = finished[student][0]
        assert result.status == f"ERROR: {result.error}" and set(result.questions) == {"q1", "q2"}
        assert result.raw_total == 0 and not any(q.graded for q in result.questions.values())
    assert finished["fine"][0].raw_total == 20 and not finished["fine"][0].error


def test_a_grader_error_met_while_grading_says_what_failed(graded, monkeypatch):
    def broken_kernel(submission, intake, run, slot):
        raise GraderError("the notebook's kernel could not be started, twice: RuntimeError: no")
    monkeypatch.setattr(parallel, "grade", broken_kernel)
    result = graded(alice="ok")["alice"][0]
    assert result.error == "the grader failed: the notebook's kernel could not be started, twice: RuntimeError: no"


def test_nothing_ends_before_the_canary_passes_and_nothing_at_all_when_it_fails(graded):
    order = graded(canary="ok", alice="ok", bob="ok")
    assert list(order)[0] == "canary"
    with pytest.raises(RuntimeError, match="the canary failed"):
        graded(canary="raise", alice="ok", bob="ok")


def test_children_share_as_many_worker_slots_as_jobs_allows(graded):
    finished = graded(**{f"s{i}": "ok" for i in range(5)})
    assert len(finished) == 5 and {result.notes[0] for result, _, _ in finished.values()} == {"slot 0", "slot 1"}
