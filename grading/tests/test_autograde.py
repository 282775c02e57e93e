"""`python -m grading autograde` end to end: outputs, the gradebook, resuming, --questions, --force, exit status,
the bonus, and a timeout that costs only its own question."""
import json
import os
import re
import shutil
import subprocess
import sys

import jsonschema
import pytest
from nbgrader.api import Gradebook

from bonus_models import export_lookup_table, trained_network
from conftest import GRADESCOPE_SCHEMA, REFERENCE, REPO, STUB, autograde, grades, results, submit
from grading.authoring.regions import BEGIN_HIDDEN, END_HIDDEN, region_code
from grading.authoring.samples import Answers
from grading.__main__ import main as grading_cli
from grading.pipeline.bonus import points_for
from grading.records.late import TIMES_FILE, record_text
from grading.settings import Settings
from grading.authoring.course import db_url
from grading.assignment import COURSE_ID, PYFILE, QUESTIONS
from normlab import data

LOOPING_BACKWARD = Answers(base="reference", regions={"backward": "while True:\n    pass"})


@pytest.fixture(scope="module")
def graded(bundle, release_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("autograde")
    submissions = submit(bundle, root / "submissions", {"ada": REFERENCE, "bob": STUB, "cy": LOOPING_BACKWARD})
    out = root / "out"
    completed = autograde(submissions, out, release_dir, "--jobs", "2", "--call-timeout", "2")
    assert completed.returncode == 0, completed.stderr[-3000:]
    return submissions, out, completed


def test_grades_csv_has_the_promised_columns_and_scores(graded):
    _, out, completed = graded
    header = (out / "grades.csv").read_text().splitlines()[0].split(",")
    assert header == ["student_id", "q1", "q2", "q3", "q4", "q5", "bonus", "late_minutes", "late_penalty", "total",
                      "status", "manual_pending", "notes"]
    rows = grades(out)
    assert rows["ada"]["total"] == "80.00" and rows["ada"]["manual_pending"] == "q4 (10), q5 (10)"
    assert rows["bob"]["total"] == "0.00"
    assert "ada" in completed.stdout and "total" in completed.stdout  # the final table


def test_results_json_follows_gradescopes_schema(graded):
    _, out, _ = graded
    for student in ("ada", "bob", "cy"):
        document = json.loads((out / student / "results.json").read_text())
        jsonschema.validate(document, GRADESCOPE_SCHEMA)
        assert document["score"] == pytest.approx(sum(t["score"] for t in document["tests"]))


def test_feedback_shows_scores_but_no_hidden_test_source(graded):
    _, out, _ = graded
    notebook = json.loads((REPO / "norm.ipynb").read_text())
    hidden = {line.strip() for cell in notebook["cells"] for code in region_code("".join(cell["source"]),
                                                                                  BEGIN_HIDDEN, END_HIDDEN)
              for line in code.splitlines() if len(line.strip()) > 15}
    hidden |= {line.strip() for path in (REPO / "grading" / "hidden").glob("*.py")
               for line in path.read_text().splitlines() if len(line.strip()) > 30}
    for student in ("ada", "bob", "cy"):
        feedback = (out / student / "feedback.html").read_text()
        assert "Q1 batchnorm_forward" in feedback and "Q5 ResNet for CIFAR" in feedback
        assert not [line for line in hidden if line in feedback]


def test_the_gradebook_holds_all_five_questions_for_formgrader_and_export(graded):
    _, out, _ = graded
    course = out / "course"
    with Gradebook(db_url(course), COURSE_ID) as gb:
        assignment = gb.find_assignment("norm")
        assert [notebook.name for notebook in assignment.notebooks] == ["norm"]
        cells = {cell.name: cell.max_score for cell in assignment.notebooks[0].grade_cells}
        assert cells == {cell: points for q in QUESTIONS for cell, points in {**q.autograded, **q.written}.items()}
        assert gb.find_submission("norm", "ada").score == 80
        assert gb.find_grade("q2_backward", "norm", "norm", "cy").score == 0
        assert gb.find_grade("q1_forward", "norm", "norm", "cy").score == 20
    for student in ("ada", "bob", "cy"):
        assert {p.name for p in (course / "submitted" / student / "norm").iterdir()} == {"norm.ipynb", PYFILE}
        assert {p.name for p in (course / "autograded" / student / "norm").iterdir()} == {"norm.ipynb", PYFILE}
    exported = subprocess.run([sys.executable, "-m", "nbgrader", "export", "--to", str(out / "export.csv")],
                              cwd=course, capture_output=True, text=True)
    assert exported.returncode == 0, exported.stderr
    rows = {line.split(",")[3]: line.split(",") for line in (out / "export.csv").read_text().splitlines()[1:]}
    assert rows["ada"][-2:] == ["80.0", "100.0"] and rows["bob"][-2] == "0.0"


def test_a_timeout_in_q2_leaves_q1_and_the_notebook_graded(graded):
    _, out, _ = graded
    result = results(out)["cy"]
    assert result.questions["q2"].score == 0 and "timed out" in result.questions["q2"].tests[0].message
    assert {q: result.questions[q].score for q in ("q1", "q3", "q4", "q5")} == {"q1": 20, "q3": 20, "q4": 10, "q5": 10}
    assert result.seconds < 60


def test_a_second_run_skips_finished_students_and_questions_regrades_only_those(graded, release_dir):
    submissions, out, _ = graded
    before = {s: (out / s / "grade.json").read_text() for s in ("ada", "bob", "cy")}
    again = autograde(submissions, out, release_dir)
    assert again.returncode == 0 and "3 of 3 submissions already graded" in again.stderr
    assert {s: (out / s / "grade.json").read_text() for s in before} == before
    (submissions / "ada" / "norm.ipynb").write_text("not a notebook any more")
    forced = autograde(submissions, out, release_dir, "--force", "--questions", "q1,q2", "--call-timeout", "2")
    assert forced.returncode == 0 and "already graded" not in forced.stderr
    result = results(out)["ada"]
    assert result.questions["q3"].score == 20 and result.questions["q2"].score == 20
    assert any("they keep their earlier scores until regraded" in note for note in result.notes)
    assert grades(out)["ada"]["q3"] == "20.00"


def test_an_nbgrader_submitted_tree_is_accepted_with_the_times_collect_recorded(bundle, release_dir, tmp_path):
    submitted = tmp_path / "submitted"
    for student, answers in (("eve", REFERENCE), ("fay", STUB)):
        folder = submit(bundle, tmp_path / "built", {student: answers}) / student
        shutil.copytree(folder, submitted / student / "norm")
        (submitted / student / "norm" / "timestamp.txt").write_text("2026-11-20 10:00:00.000000 UTC")
    (submitted / TIMES_FILE).write_text(record_text({"eve": ("2026-11-20 10:00:00.000000 UTC", "nbgrader's exchange")}))
    out = tmp_path / "out"
    assert autograde(submitted, out, release_dir, "--questions", "q1,q2").returncode == 0
    assert grades(out)["eve"]["total"] == "40.00"
    with Gradebook(db_url(out / "course"), COURSE_ID) as gb:
        assert gb.find_submission("norm", "eve").timestamp.year == 2026
    assert results(out)["fay"].timestamp is None  # her timestamp.txt is her own: the record does not list her


@pytest.mark.parametrize("arguments,message", [
    (["/nonexistent/submissions"], "is not a folder of submissions"),
    (["{submissions}", "--questions", "q9"], "--questions takes"),
])
def test_a_misconfigured_grader_exits_with_status_2(tmp_path, arguments, message, capsys):
    (tmp_path / "submissions").mkdir()
    arguments = [a.format(submissions=tmp_path / "submissions") for a in arguments]
    assert grading_cli(["autograde", *arguments, "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err


def test_without_bwrap_it_grades_only_where_student_code_reaches_nothing_or_when_told_to(tmp_path, release_dir,
                                                                                         monkeypatch):
    """--require-sandbox refuses; as root, student code would run as a user of its own, which here can read the
    repository (world-readable in a clone) or cannot run this Python (kept under /root): refused, with what to do
    (unit/test_users.py and test_gradescope.py grade that way where it can); as another user, refused unless
    --unsandboxed, which warns and grades."""
    (tmp_path / "submissions").mkdir()
    monkeypatch.setenv("GRADING_BWRAP", "/nonexistent/bwrap")
    completed = autograde(tmp_path / "submissions", tmp_path / "out", release_dir, "--require-sandbox")
    assert completed.returncode == 2 and "--require-sandbox" in completed.stderr
    refused = autograde(tmp_path / "submissions", tmp_path / "out", release_dir)
    assert refused.returncode == 2, refused.stderr[-2000:]
    if os.geteuid() == 0:
        assert f"student code runs as the user {Settings.separate_user_uid_base}, which can" in refused.stderr
        assert "chmod o-rwx" in refused.stderr or "not under /root" in refused.stderr
    else:
        assert "pass --unsandboxed for submissions you trust" in refused.stderr
    warned = autograde(tmp_path / "submissions", tmp_path / "out", release_dir, "--unsandboxed")
    assert warned.returncode == 0 and "WARNING: bubblewrap (bwrap) is missing" in warned.stderr


def test_the_bonus_is_scored_on_the_test_set_it_finds_and_withheld_from_a_lookup_table(bundle, release_dir,
                                                                                       tmp_path):
    cifar_root = tmp_path / "cifar"
    data.write_synthetic("cifar10", cifar_root, train_size=1000, test_size=300)
    model_file = trained_network(data.load("cifar10", cifar_root), tmp_path / "bonus_cifar10.pt2")
    table_file = export_lookup_table(data.load("cifar10", cifar_root), tmp_path / "table.pt2")
    files = {"bonus_cifar10.pt2": model_file.read_bytes(), "bonus_cifar100.pt2": model_file.read_bytes()}
    submissions = submit(bundle, tmp_path / "submissions", {
        "gus": Answers(files=files), "hal": Answers(files={"bonus_cifar10.pt2": table_file.read_bytes()})})
    out = tmp_path / "out"
    assert autograde(submissions, out, release_dir, "--questions", "bonus", "--cifar-root",
                     str(cifar_root)).returncode == 0
    result = results(out)["gus"]
    bonus = result.questions["bonus"]
    accuracy, perturbed = map(float, re.search(r"cifar10: test accuracy ([\d.]+)% on a SYNTHETIC test set, "
                                               r"([\d.]+)% on perturbed copies", bonus.status).groups())
    assert accuracy > 90 and bonus.score == pytest.approx(points_for("cifar10", accuracy / 100), abs=0.01)
    assert perturbed > 90 and not bonus.review and "REVIEW" not in result.status  # a trained network keeps it
    assert [points_for("cifar10", a) for a in (0.95, 0.925, 0.9)] == pytest.approx([5, 2.5, 0])
    assert not bonus.graded and "cifar100: NOT GRADED" in bonus.status and "NOT GRADED" in result.status
    feedback = (out / "gus" / "feedback.html").read_text()
    assert "the rest not graded yet" in feedback and "0.00 / 10" not in feedback and str(cifar_root) not in feedback
    assert "ignored" not in " ".join(result.notes)  # both bonus files were taken, neither for the other

    table = results(out)["hal"]
    assert table.questions["bonus"].score == 0 and "REVIEW: bonus cifar10 withheld" in table.status
    assert "cifar10: test accuracy 100.00%" in table.questions["bonus"].status
    assert "WITHHELD until a TA has reviewed the model" in (out / "hal" / "feedback.html").read_text()
    with Gradebook(db_url(out / "course"), COURSE_ID) as gb:
        assert gb.find_grade("bonus", "norm", "norm", "hal").needs_manual_grade
        notebook = gb.find_submission_notebook("norm", "norm", "hal")
        assert notebook.flagged and any("bonus cifar10 withheld" in (c.comment or "") for c in notebook.comments)
        assert not gb.find_submission_notebook("norm", "norm", "gus").flagged
