"""pipeline/front_door.py on small fixtures: nbgrader's autograde stages each submission through intake (links,
special files and unreadable notebooks never reach nbgrader), nbgrader may sanitize nothing else, and collect takes
only what intake takes and checks the exchange's time against the inbox's last change."""
import os
import shutil
from datetime import datetime, timedelta, timezone

import nbformat
import pytest
from nbgrader.converters.base import NbGraderException
from nbgrader.coursedir import CourseDirectory

from grading.assignment import ASSIGNMENT, NOTEBOOK, PYFILE
from grading.authoring.course import write_config
from grading.nbgrader_support import course_config
from grading.pipeline.front_door import SECRET, CheckedAutograde, CheckedCollect, ReadThroughIntake, exchange_time
from grading.records.late import TIMES_FILE, record_text
from grading.settings import NBGRADER_TIME_FORMAT, Settings

SOURCE = b"def batchnorm_forward(x, gamma, beta, bn_param):\n    pass\n"
STUDENT_NOTEBOOK = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("my own answer")])
RELEASED = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("released")])
UNUSUAL = "o.brien-2@uni"  # an id such as SSSD's user@domain names are


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def course(tmp_path):
    """A course whose submitted/ holds an honest student, one whose files link to the instructor's, one whose
    folder is a link, one named as the honest one with a newline after, one with an unusual id, and the grader's
    record of one time; and what CheckedAutograde staged of each."""
    root = tmp_path / "course"
    write(root / "release" / ASSIGNMENT / NOTEBOOK, nbformat.writes(RELEASED).encode())
    instructor = tmp_path / "instructor"
    write(instructor / PYFILE, b"# the solution\n")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("solution")]),
                   instructor / NOTEBOOK)
    submitted = root / "submitted"
    write(submitted / "honest" / ASSIGNMENT / PYFILE, SOURCE)
    nbformat.write(STUDENT_NOTEBOOK, submitted / "honest" / ASSIGNMENT / NOTEBOOK)
    write(submitted / "honest" / ASSIGNMENT / "timestamp.txt", b"2026-11-01 00:00:00.000000 UTC")
    write(submitted / "honest" / ASSIGNMENT / SECRET, b"0123abcd")
    (submitted / "linked" / ASSIGNMENT).mkdir(parents=True)
    for name in (PYFILE, NOTEBOOK):
        os.symlink(instructor / name, submitted / "linked" / ASSIGNMENT / name)
    os.mkfifo(submitted / "linked" / ASSIGNMENT / "runs")
    os.symlink(instructor / PYFILE, submitted / "linked" / ASSIGNMENT / SECRET)
    os.symlink(submitted / "honest", submitted / "alias")
    shutil.copytree(submitted / "honest", submitted / "honest\n")  # put there by hand, or by an older collect
    shutil.copytree(submitted / "honest", submitted / UNUSUAL)
    (submitted / TIMES_FILE).write_text(record_text({"linked": ("2026-12-02 10:00:00.000000 UTC", "the exchange")}))
    converter = CheckedAutograde(coursedir=CourseDirectory(root=str(root), assignment_id=ASSIGNMENT))
    converter._staging, converter._times = str(tmp_path / "staging"), converter._trusted_times()
    (tmp_path / "staging").mkdir()
    converter.init_notebooks()
    staged = {}
    for folder in converter.assignments:
        student = os.path.basename(os.path.dirname(folder))
        converter.init_destination(ASSIGNMENT, student)
        staged[student] = {p.name: p.read_bytes() for p in (tmp_path / "staging" / student / ASSIGNMENT).iterdir()}
    return staged


def test_nbgrader_reads_an_honest_submission_as_submitted_and_never_its_own_time(course):
    honest = course["honest"]
    assert honest[PYFILE] == SOURCE and nbformat.reads(honest[NOTEBOOK], 4).cells == STUDENT_NOTEBOOK.cells
    assert honest[SECRET] == b"0123abcd"  # for release_feedback
    assert "timestamp.txt" not in honest  # the student wrote it; the record does not list them


def test_links_and_special_files_never_reach_nbgrader(course):
    linked = course["linked"]
    assert set(linked) == {NOTEBOOK, "timestamp.txt"}  # no .py, no FIFO, no secret that is a link
    assert nbformat.reads(linked[NOTEBOOK], 4).cells == RELEASED.cells  # graded as the released notebook
    assert linked["timestamp.txt"] == b"2026-12-02 10:00:00.000000 UTC"  # the record's
    assert "alias" not in course  # a student folder that is a link is not graded, as autograde rejects it


def test_nbgrader_grades_an_unusual_id_and_not_one_with_a_final_newline(course, caplog):
    assert course[UNUSUAL][PYFILE] == SOURCE
    assert "honest\n" not in course
    logged = "\n".join(record.getMessage() for record in caplog.get_records("setup"))
    assert "Not grading 'honest\\n'" in logged and "'honest\\n' is not a usable student id" in logged


def test_nbgrader_may_sanitize_only_what_was_staged(tmp_path):
    check = ReadThroughIntake()
    with pytest.raises(NbGraderException, match="was not read through the grader's intake"):
        check.preprocess(STUDENT_NOTEBOOK, {"metadata": {"path": str(tmp_path / "submitted" / "x" / ASSIGNMENT)}})
    assert check.preprocess(STUDENT_NOTEBOOK, {"normlab": object(), "metadata": {"path": str(tmp_path)}})


def test_collect_takes_what_intake_takes_and_records_the_time(tmp_path):
    (tmp_path / "solution.py").write_bytes(b"# the solution\n")
    claimed = datetime.now(timezone.utc).replace(tzinfo=None)
    inbox = tmp_path / "inbound" / f"alice+{ASSIGNMENT}+{claimed.strftime(NBGRADER_TIME_FORMAT)}+xyz"
    write(inbox / NOTEBOOK, nbformat.writes(STUDENT_NOTEBOOK).encode())
    os.symlink(tmp_path / "solution.py", inbox / PYFILE)
    write(inbox / "timestamp.txt", b"2020-01-01 00:00:00.000000 UTC")
    write(inbox / SECRET, b"0123abcd")
    collect = CheckedCollect(coursedir=CourseDirectory(root=str(tmp_path / "course"), assignment_id=ASSIGNMENT))
    collect.collected = {}
    dest = tmp_path / "course" / "submitted" / "alice" / ASSIGNMENT
    collect.do_copy(str(inbox), str(dest))
    assert {p.name for p in dest.iterdir()} == {NOTEBOOK, "timestamp.txt", SECRET}  # the link is not followed
    assert collect.collected["alice"] == (claimed.strftime(NBGRADER_TIME_FORMAT), "nbgrader's exchange")
    assert (dest / "timestamp.txt").read_text() == claimed.strftime(NBGRADER_TIME_FORMAT)


def test_an_exchange_time_set_back_gives_way_to_the_inboxs_last_change(tmp_path):
    inbox = tmp_path / "inbox"
    write(inbox / NOTEBOOK, b"{}")
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    honest, source = exchange_time(now, inbox)
    assert honest == now.strftime(NBGRADER_TIME_FORMAT) and source == "nbgrader's exchange"
    forged, source = exchange_time(now - timedelta(seconds=Settings.exchange_clock_slack + 3600), inbox)
    forged_at = datetime.strptime(forged, NBGRADER_TIME_FORMAT)
    assert abs((forged_at - now).total_seconds()) < 60 and "it claimed" in source


def test_the_courses_configuration_puts_the_checked_converter_where_nbgrader_looks(tmp_path, monkeypatch):
    """nbgrader's autograde command and the formgrader's button create their converter by these names."""
    from nbgrader.apps import api, autogradeapp
    from nbgrader.converters import Autograde

    for module in (api, autogradeapp):
        monkeypatch.setattr(module, "Autograde", Autograde)  # as nbgrader has it, whatever ran before in this process
    write_config(tmp_path)
    config = course_config(tmp_path)
    assert autogradeapp.Autograde is CheckedAutograde and api.Autograde is CheckedAutograde
    assert config.ExchangeFactory.collect == "grading.pipeline.front_door.CheckedCollect"
    assert config.Autograde.sanitize_preprocessors[0] is ReadThroughIntake
