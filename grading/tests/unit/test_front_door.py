"""pipeline/front_door.py on small fixtures: nbgrader's autograde stages each submission through intake (links,
special files and unreadable notebooks never reach nbgrader), nbgrader may sanitize nothing else, and collect takes
only what intake takes and checks the exchange's time against the inbox's last change."""
import logging
import os
import pwd
import shutil
from datetime import datetime, timedelta, timezone
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbgrader.api import Gradebook
from nbgrader.converters.base import NbGraderException
from nbgrader.coursedir import CourseDirectory
from unix_users import new_tag, unix_users

from grading.assignment import ASSIGNMENT, COURSE_ID, NOTEBOOK, PYFILE
from grading.authoring.course import db_url, write_config
from grading.handoff import Intake, SubmissionContext
from grading.nbgrader_support import course_config
from grading.pipeline import front_door
from grading.pipeline.canary import CanaryFailed
from grading.pipeline.chains import ReadThroughIntake
from grading.pipeline.front_door import SECRET, CheckedAutograde, CheckedCollect, exchange_time
from grading.records.late import TIMES_FILE, read_record, record_text
from grading.settings import NBGRADER_TIME_FORMAT, Settings

SOURCE = b"def batchnorm_forward(x, gamma, beta, bn_param):\n    pass\n"
STUDENT_NOTEBOOK = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("my own answer")])
RELEASED = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("released")])
UNUSUAL = "o.brien-2@uni"  # an id such as SSSD's user@domain names are


# What the course fixture staged of each student: {student: {file name: bytes, "context": SubmissionContext}}
Staged = dict[str, dict[str, Any]]
# (the exchange's folder, a course to copy, {user name: pwd entry} of its users)
Exchange = tuple[Path, Path, dict[str, pwd.struct_passwd]]


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def course(tmp_path: Path) -> Staged:
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
    converter = staging_converter(root, tmp_path / "staging")
    converter.init_notebooks()
    staged = {}
    for folder in converter.assignments:
        student = os.path.basename(os.path.dirname(folder))
        converter.init_destination(ASSIGNMENT, student)
        staged[student] = {p.name: p.read_bytes() for p in (tmp_path / "staging" / student / ASSIGNMENT).iterdir()}
        context = converter.init_single_notebook_resources(folder + os.sep + NOTEBOOK)["normlab"]
        staged[student]["context"] = context
    return staged


def staging_converter(root: Path, staging: Path) -> CheckedAutograde:
    """A CheckedAutograde of the course at root, as its start() leaves it, staging into the folder staging."""
    converter = CheckedAutograde(coursedir=CourseDirectory(root=str(root), assignment_id=ASSIGNMENT))
    converter._staging, converter._times = str(staging), converter._trusted_times()
    converter._canary_failure, converter._staged, converter._zygotes = None, None, None
    staging.mkdir()
    return converter


def test_nbgrader_reads_an_honest_submission_as_submitted_and_never_its_own_time(course: Staged) -> None:
    honest = course["honest"]
    assert honest[PYFILE] == SOURCE and nbformat.reads(honest[NOTEBOOK], 4).cells == STUDENT_NOTEBOOK.cells
    assert honest[SECRET] == b"0123abcd"  # for release_feedback
    assert "timestamp.txt" not in honest  # the student wrote it; the record does not list them


def test_links_and_special_files_never_reach_nbgrader(course: Staged) -> None:
    linked = course["linked"]
    assert set(linked) == {NOTEBOOK, "timestamp.txt", "context"}  # no .py, no FIFO, no secret that is a link
    assert nbformat.reads(linked[NOTEBOOK], 4).cells == RELEASED.cells  # graded as the released notebook
    assert linked["timestamp.txt"] == b"2026-12-02 10:00:00.000000 UTC"  # the record's
    assert "alias" not in course  # a student folder that is a link is not graded, as autograde rejects it


def test_nbgrader_grades_an_unusual_id_and_not_one_with_a_final_newline(course: Staged,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    assert course[UNUSUAL][PYFILE] == SOURCE
    assert "honest\n" not in course
    logged = "\n".join(record.getMessage() for record in caplog.get_records("setup"))
    assert "Not grading 'honest\\n'" in logged and "'honest\\n' is not a usable student id" in logged


def test_each_staged_submission_goes_to_nbgrader_with_its_intake_and_its_notebooks_problem(course: Staged,
                                                                                           tmp_path: Path) -> None:
    honest, linked = course["honest"]["context"], course["linked"]["context"]
    assert honest.intake.folder == tmp_path / "staging" / "honest" / ASSIGNMENT and honest.notebook_problem == ""
    assert honest.intake.pyfile == honest.intake.folder / PYFILE and honest.slot == 0  # the file staged there
    assert linked.intake.pyfile is None and linked.notebook_problem  # graded as the released notebook, and why


def test_a_student_folder_cannot_be_sanitized_from_anywhere_but_where_intake_took_it(tmp_path: Path) -> None:
    check = ReadThroughIntake()
    elsewhere = SubmissionContext(intake=Intake(folder=tmp_path / "staging" / "x" / ASSIGNMENT))
    submitted = {"path": str(tmp_path / "submitted" / "x" / ASSIGNMENT)}
    for resources in ({"metadata": submitted}, {"normlab": object(), "metadata": submitted},
                      {"normlab": elsewhere, "metadata": submitted}, {"normlab": SubmissionContext(), "metadata": {}}):
        with pytest.raises(NbGraderException, match="was not read through the grader's intake"):
            check.preprocess(STUDENT_NOTEBOOK, resources)


def test_a_folder_named_another_way_is_still_the_one_intake_took(tmp_path: Path) -> None:
    staged = SubmissionContext(intake=Intake(folder=tmp_path / "staging" / "x" / ASSIGNMENT))
    named = {"path": f"{tmp_path}/staging/./x//{ASSIGNMENT}/"}
    assert ReadThroughIntake().preprocess(STUDENT_NOTEBOOK, {"normlab": staged, "metadata": named})


@pytest.mark.parametrize("passes", [True, False])
def test_the_canary_is_graded_once_per_run_before_the_first_student_is_executed(tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch,
                                                                                passes: bool) -> None:
    graded = []

    def canary(settings: Settings, config: Any, gradebook: Path, slot: int, zygotes: Any) -> None:
        graded.append((gradebook, slot))
        if not passes:
            raise CanaryFailed("the canary failed, so no student was graded: a test\nTo fix it: a test.", None)
    monkeypatch.setattr(front_door, "grade_canary_here", canary)
    converter = staging_converter(tmp_path / "course", tmp_path / "staging")
    for _ in range(3):
        if passes:
            converter._check_canary(SubmissionContext())
        else:
            with pytest.raises(RuntimeError, match="^the canary failed, so no student was graded: a test\nTo fix"):
                converter._check_canary(SubmissionContext())
    assert graded == [(tmp_path / "course" / "gradebook.db", 0)]
    assert staging_converter(tmp_path / "again", tmp_path / "staging2")._canary_failure is None  # per run


def test_collect_takes_what_intake_takes_and_records_the_time(tmp_path: Path) -> None:
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


def test_an_exchange_time_set_back_gives_way_to_the_inboxs_last_change(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    write(inbox / NOTEBOOK, b"{}")
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    honest, source = exchange_time(now, inbox)
    assert honest == now.strftime(NBGRADER_TIME_FORMAT) and source == "nbgrader's exchange"
    forged, source = exchange_time(now - timedelta(seconds=Settings.exchange_clock_slack + 3600), inbox)
    forged_at = datetime.strptime(forged, NBGRADER_TIME_FORMAT)
    assert abs((forged_at - now).total_seconds()) < 60 and "it claimed" in source


def stamp(offset: timedelta) -> str:
    """The time offset (a timedelta) from now as nbgrader submit writes it into an inbox's name."""
    return (datetime.now(timezone.utc) + offset).strftime(NBGRADER_TIME_FORMAT)


def make_inbox(inbound: Path, name: str, owner: pwd.struct_passwd, source: bytes) -> Path:
    """An inbox in inbound called name, owned by owner (a pwd entry), holding source as its .py and a notebook."""
    write(inbound / name / PYFILE, source)
    write(inbound / name / NOTEBOOK, nbformat.writes(STUDENT_NOTEBOOK).encode())
    for path in (inbound / name, inbound / name / PYFILE, inbound / name / NOTEBOOK):
        os.lchown(path, owner.pw_uid, owner.pw_gid)
    return inbound / name


class Lines(logging.Handler):
    """A logging handler that keeps each message."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def run_collect(exchange: Exchange, course: Path, **options: Any) -> str:
    """nbgrader's collect of the exchange (the fixture) into course, in this process (as root), and what it logged."""
    folder, template, _ = exchange
    shutil.copytree(template, course)
    log, lines = logging.Logger("collect"), Lines()
    log.addHandler(lines)
    coursedir = CourseDirectory(root=str(course), assignment_id=ASSIGNMENT, course_id=COURSE_ID)
    CheckedCollect(coursedir=coursedir, root=str(folder), log=log, **options).start()
    return "\n".join(lines.lines)


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    """An exchange whose inbound holds alice's own inbox and, later than hers, inboxes in her name that are not hers
    (another user's, root's, a link to a folder of hers, a FIFO, one whose time cannot be read), one named as hers
    with a newline after, and the two submissions of a student with an unusual id: (the exchange, a course to copy,
    its users)."""
    root = tmp_path_factory.mktemp("exchange")
    tag = new_tag()
    (root / "course").mkdir()
    Gradebook(db_url(root / "course"), COURSE_ID).close()  # a new one costs nbgrader a second: made once, copied
    with unix_users([f"alice-{tag}", f"mallory-{tag}", f"o.brien-{tag}@uni"], root / "home") as users:
        alice, mallory, obrien = users.values()
        inbound = root / "exchange" / COURSE_ID / "inbound"
        inbound.mkdir(parents=True)
        make_inbox(inbound, f"{alice.pw_name}+{ASSIGNMENT}+{stamp(timedelta(minutes=-1))}+own", alice,
                   b"# alice's own\n")
        make_inbox(inbound, f"{alice.pw_name}+{ASSIGNMENT}+{stamp(timedelta(days=1))}+x", mallory, b"x = 0\n")
        make_inbox(inbound, f"{alice.pw_name}+{ASSIGNMENT}+{stamp(timedelta(hours=2))}+r", pwd.getpwuid(0), b"x = 0\n")
        write(Path(alice.pw_dir) / PYFILE, b"# alice's draft, in her home\n")
        os.symlink(alice.pw_dir, inbound / f"{alice.pw_name}+{ASSIGNMENT}+{stamp(timedelta(hours=3))}+l")
        fifo = inbound / f"{alice.pw_name}+{ASSIGNMENT}+{stamp(timedelta(hours=4))}+f"
        os.mkfifo(fifo)
        os.lchown(fifo, alice.pw_uid, alice.pw_gid)
        make_inbox(inbound, f"{alice.pw_name}+{ASSIGNMENT}+notatime+t", alice, b"x = 0\n")
        make_inbox(inbound, f"{alice.pw_name}\n+{ASSIGNMENT}+{stamp(timedelta(hours=5))}+n", alice, b"x = 0\n")
        make_inbox(inbound, f"{obrien.pw_name}+{ASSIGNMENT}+{stamp(timedelta(minutes=-2))}+a", obrien, b"# first\n")
        make_inbox(inbound, f"{obrien.pw_name}+{ASSIGNMENT}+{stamp(timedelta(minutes=-1))}+b", obrien, b"# second\n")
        yield root / "exchange", root / "course", users


def submitted(course: Path) -> dict[str, bytes]:
    return {p.name: (p / ASSIGNMENT / PYFILE).read_bytes() for p in (course / "submitted").iterdir()
            if not p.name.startswith(".")}


def test_collect_refuses_every_inbox_in_a_students_name_that_is_not_hers_and_takes_hers(exchange: Exchange,
                                                                                        tmp_path: Path) -> None:
    """As root too: root's own inbox in alice's name is not alice's submission (nbgrader's collect warned of
    another user's, then took it as alice's latest: she scored 0, a day late)."""
    alice, mallory, obrien = exchange[2]
    log = run_collect(exchange, tmp_path / "course")
    assert submitted(tmp_path / "course") == {alice: b"# alice's own\n", obrien: b"# second\n"}
    time, source = read_record(tmp_path / "course" / "submitted")[alice]
    assert source == "nbgrader's exchange" and time < stamp(timedelta(0))  # hers, not the one claiming tomorrow
    for refusal in (f"+x': owned by {mallory}, not by {alice}", f"+r': owned by root, not by {alice}",
                    "+l': a symbolic link, not the folder", "+f': a FIFO, not the folder",
                    "'notatime' is not a time", f"'{alice}\\n' is not a usable student id"):
        assert refusal in log, (refusal, log)
    assert log.count("Not collecting") == 6


def test_collect_takes_the_latest_inbox_of_a_student_with_an_unusual_id(exchange: Exchange, tmp_path: Path) -> None:
    obrien = next(name for name in exchange[2] if name.startswith("o.brien"))
    log = run_collect(exchange, tmp_path / "course")
    assert submitted(tmp_path / "course")[obrien] == b"# second\n" and f"Not collecting '{obrien}" not in log


def test_with_check_owner_off_collect_takes_an_inbox_by_its_name_and_still_refuses_the_rest(exchange: Exchange,
                                                                                            tmp_path: Path) -> None:
    """nbgrader's switch for an exchange every student writes as one user, where ownership says nothing."""
    alice = next(iter(exchange[2]))
    log = run_collect(exchange, tmp_path / "course", check_owner=False)
    assert submitted(tmp_path / "course")[alice] == b"x = 0\n"  # the latest in her name, made by whoever
    assert "check_owner is off" in log and log.count("Not collecting") == 4


def test_the_inboxs_last_change_is_found_without_following_links_and_within_bounds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Settings, "exchange_inbox_entries", 50)
    inbox = tmp_path / "inbox"
    write(inbox / NOTEBOOK, b"{}")
    os.symlink("/", inbox / "everything")  # followed, it would hold more than 50 entries
    os.mkfifo(inbox / "fifo")
    (inbox / "locked").mkdir(mode=0)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    assert exchange_time(now, inbox) == (now.strftime(NBGRADER_TIME_FORMAT), "nbgrader's exchange")
    for index in range(50):
        write(inbox / "runs" / f"{index}.json", b"{}")
    when, source = exchange_time(now - timedelta(days=7), inbox)
    assert "the time of collect" in source and abs((datetime.strptime(when, NBGRADER_TIME_FORMAT) - now)
                                                   .total_seconds()) < 60


def test_the_courses_configuration_puts_the_checked_converter_where_nbgrader_looks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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
