"""nbgrader's front doors, through autograde's intake. Whatever reaches the course's submitted/ folder (by the
exchange's collect, or by hand: unzip, tar, rsync -a) nbgrader reads only as `python -m grading autograde` reads it
(pipeline/intake.py: no link followed, no special file, every file capped, only the files that are graded), so both
front doors grade a symlinked or oversized submission alike.

- CheckedAutograde is nbgrader's autograde converter (the `nbgrader autograde` command and the formgrader's button)
  and the front door of its run: before its first student is executed it grades the canary (canary.py), once; it
  has each student's submission taken through intake, once, when that student's turn comes, into a copy that its
  sanitize step reads instead of submitted/<student>/norm/: the files intake takes, the notebook autograde would
  grade (pipeline/notebook.py: the released one in place of one that cannot be graded, with its problem in the
  context, which JudgedExecute reports as autograde does), and a timestamp.txt only from a source records/late.py
  trusts. The staged submission goes to both steps in resources["normlab"] (a SubmissionContext), as under
  `python -m grading autograde`. nbgrader creates its converter by name, so `install()`, run by the course's
  nbgrader_config.py in every nbgrader process before anything is converted, puts CheckedAutograde where nbgrader
  looks it up; ReadThroughIntake (chains.py), first in the SANITIZE chain, refuses a notebook that was not read
  through it, so a future nbgrader that converted submissions some other way would grade no one rather than read
  submitted/ unchecked.
- CheckedCollect is the exchange's collect (ExchangeFactory.collect): it takes an inbox only as the submission of
  the user who owns it, copies from it only what intake takes, and records the submission's time beside the student
  folders (records/late.TIMES_FILE). An inbox it cannot take costs only itself, with a line for the TA.

What they trust: the course's own folders (release/, the gradebook), the TA's settings and, of submitted/, only the
record of times beside the student folders, which students cannot write. Of nbgrader's exchange, collect trusts who
owns an inbox folder (only root can change it: any user can make a folder in inbound/ under any student's name) and
the time in the inbox folder's name, which the student's own `nbgrader submit` wrote (so a student who edits their inbox
can change it), only as far as the last change to that folder allows: the file system keeps that time, and no
student process can set it back. A claim earlier than that change by more than Settings.exchange_clock_slack is
replaced by the change's time, with its source saying so.
"""
import fnmatch
import glob
import os
import pwd
import re
import shutil
import stat
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nbformat
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.converters.base import NbGraderException
from nbgrader.exchange import ExchangeError
from nbgrader.exchange.default.collect import ExchangeCollect
from nbgrader.utils import check_mode, parse_utc

from grading.assignment import ASSIGNMENT, NOTEBOOK, NOTEBOOK_ID
from grading.compat import SourceFolderAutograde, use_autograde_converter
from grading.handoff import Submission, SubmissionContext
from grading.isolation import scratch
from grading.isolation.zygote import Zygotes
from grading.pipeline.canary import CanaryFailed, grade_canary_here
from grading.pipeline.intake import (FOLDER_DEPTH, SKIPPED_FOLDERS, open_folder, open_member, student_id_refusal,
                                     unpack)
from grading.pipeline.judged_execute import JudgedExecute
from grading.pipeline.notebook import submitted_notebook
from grading.records.late import TIMES_FILE, lateness, parse_due, read_record, read_submission_times, record_text
from grading.records.results import write_atomic
from grading.settings import NBGRADER_TIME_FORMAT, Settings

SECRET = "submission_secret.txt"  # nbgrader's exchange releases feedback under its hash (release_feedback)
# An inbox of nbgrader's exchange as its collect describes one: {"username", "filename", "timestamp"}
InboxRecord = dict[str, Any]


def install() -> None:
    """Make nbgrader's autograde, the command's and the formgrader's, CheckedAutograde in this process."""
    use_autograde_converter(CheckedAutograde)


class CheckedAutograde(SourceFolderAutograde):
    """nbgrader's Autograde as the front door of its run: the canary once, before the first student is executed;
    each student's submission through intake once, staged, and handed to both steps as resources["normlab"]."""

    def start(self) -> None:
        self._times = self._trusted_times()  # before anything is read: a CSV that cannot be used grades no one
        self._staging = str(scratch.make("front-door-"))
        self._canary_failure: str | None = None  # "" once the canary passed, why it failed, or None before it ran
        self._staged: SubmissionContext | None = None  # the submission whose turn it is
        try:
            with Zygotes() as self._zygotes:  # this run's, started by its first kernel, ended with it
                super().start()
        finally:
            scratch.remove(self._staging)

    def source_folder(self, assignment_id: str, student_id: str, escape: bool = False) -> str:
        if not self.sanitizing:
            return super().source_folder(assignment_id, student_id, escape)
        if escape:  # a pattern, as nbgrader's: the ids are groups
            return re.escape(self._staging + os.sep) + student_id + re.escape(os.sep) + assignment_id
        return os.path.join(self._staging, student_id, assignment_id)

    def init_single_notebook_resources(self, notebook_filename: str) -> dict[str, Any]:
        """nbgrader's resources, with the staged submission in resources["normlab"]; before the autograde step,
        the canary is checked (RuntimeError, for each student, when it failed) and the time budget starts."""
        resources = super().init_single_notebook_resources(notebook_filename)
        context = self._staged
        if context is None or context.intake is None:
            raise NbGraderException(f"{notebook_filename} was not staged through the grader's intake")
        if not self.sanitizing:
            self._check_canary(context)
            context.deadline = time.monotonic() + context.settings.timeout
        resources["normlab"] = context
        return resources

    def _check_canary(self, context: SubmissionContext) -> None:
        if self._canary_failure is None:
            try:
                grade_canary_here(context.settings, self.config, Path(self.coursedir.db_url.removeprefix("sqlite:///")),
                                  context.slot, context.zygotes)
                self._canary_failure = ""
            except CanaryFailed as failure:
                self._canary_failure = str(failure)
        if self._canary_failure:
            raise RuntimeError(self._canary_failure)

    def _executor(self) -> JudgedExecute:
        """The course's JudgedExecute, as nbgrader's autograde step configures it: its settings and slot."""
        return JudgedExecute(config=self.config)

    def init_notebooks(self) -> None:
        """The submissions nbgrader would find, from a listing of submitted/ that follows no link; each is staged
        only when its turn comes (init_destination), so a class's bonus models are never all copied at once."""
        self.assignments: dict[str, list[str]] = {}
        self.notebooks: list[str] = []
        submitted = Path(self.coursedir.root, self.coursedir.submitted_directory)
        wanted = fnmatch.fnmatchcase(ASSIGNMENT, self.coursedir.assignment_id) and \
            fnmatch.fnmatchcase(NOTEBOOK_ID, self.coursedir.notebook_id)
        for entry in sorted(submitted.iterdir()) if wanted and submitted.is_dir() else []:
            if entry.name.startswith(".") or not fnmatch.fnmatchcase(entry.name, self.coursedir.student_id):
                continue
            refusal = "a symbolic link; submissions must be folders" if entry.is_symlink() else \
                student_id_refusal(entry.name)
            if refusal:
                self.log.error("Not grading %r in %s: %s", entry.name, submitted, refusal)
            elif entry.is_dir() and os.path.lexists(entry / ASSIGNMENT):
                staged = self.source_folder(ASSIGNMENT, entry.name)
                self.assignments[staged] = [os.path.join(staged, NOTEBOOK)]
        if not self.assignments:
            message = f"No submissions of {self.coursedir.assignment_id!r} matched in {submitted}"
            self.log.error(message)
            raise NbGraderException(message)

    def init_destination(self, assignment_id: str, student_id: str) -> bool:
        self._stage(student_id)
        return bool(super().init_destination(assignment_id, student_id))

    def _stage(self, student_id: str) -> None:
        """Take submitted/<student>/norm/ through intake into the staging folder, replacing the last student's."""
        self._staged = None
        for earlier in Path(self._staging).iterdir():
            shutil.rmtree(earlier)
        folder = Path(self.source_folder(ASSIGNMENT, student_id))
        folder.mkdir(parents=True)
        source = Path(self.coursedir.root, self.coursedir.submitted_directory, student_id, ASSIGNMENT)
        intake = unpack(Submission(student_id, source, "nbgrader"), folder)
        released = nbformat.read(Path(self.coursedir.root, self.coursedir.release_directory, ASSIGNMENT, NOTEBOOK),
                                 as_version=4)
        nb, problem, notes = submitted_notebook(intake, released)
        nbformat.write(nb, folder / NOTEBOOK)  # the notebook autograde grades, as autograde read it
        for note in [*intake.notes, *notes, *([f"{problem}; graded as the released notebook"] if problem else [])]:
            self.log.warning("%s: %s", student_id, note)
        when = self._times.get(student_id)
        if when:
            (folder / "timestamp.txt").write_text(when)
        carry_secret(source, folder)
        executor = self._executor()
        self._staged = SubmissionContext(settings=course_settings(executor), intake=intake, slot=executor.slot,
                                         notebook_problem=problem, zygotes=self._zygotes)

    def _trusted_times(self) -> dict[str, str | None]:
        """{student_id: time in nbgrader's format} from the sources autograde trusts: the TA's --submission-times
        (the course's settings) over the record beside submitted/."""
        settings = course_settings(self._executor())
        try:
            due = parse_due(settings.due) if settings.due else None
            recorded = {student: when for student, (when, _) in read_record(
                Path(self.coursedir.root, self.coursedir.submitted_directory)).items()}
            declared = read_submission_times(settings.submission_times) if settings.submission_times else {}
        except ValueError as error:
            self.log.error(str(error))
            raise NbGraderException(str(error)) from None
        return {student: lateness(text, due).timestamp for student, text in {**recorded, **declared}.items()}


def course_settings(executor: JudgedExecute) -> Settings:
    """The course's grading settings, as its nbgrader_config.py gives them to JudgedExecute (default: Settings())."""
    return Settings.from_json(executor.settings) if executor.settings else Settings()


class CheckedCollect(ExchangeCollect):
    """nbgrader's collect, taking an inbox only as the submission of the user who owns it, copying from it only what
    intake takes, and recording each submission's time. An inbox that cannot be collected (named in another
    student's name, not named as nbgrader names them, a link, unreadable) is left with a line for the TA and costs
    no one else anything."""

    def init_src(self) -> None:
        """nbgrader's, but every inbox is vetted on its own before the latest of each student is chosen: nbgrader's
        stops the whole collect at a name it cannot parse, and only warns of an inbox that another user made in a
        student's name, which, as that student's latest, then replaced her own submission."""
        if self.coursedir.course_id == "":
            self.fail("No course id specified. Re-run with --course flag.")
        self.course_path = os.path.join(self.root, self.coursedir.course_id)
        self.inbound_path = os.path.join(self.course_path, "inbound")
        if not os.path.isdir(self.inbound_path):
            self.fail(f"Course not found: {self.inbound_path}")
        if not check_mode(self.inbound_path, read=True, execute=True):
            self.fail(f"You don't have read permissions for the directory: {self.inbound_path}")
        if not self.check_owner:
            self.log.warning("ExchangeCollect.check_owner is off: each inbox is taken as the submission of the "
                             "student its name says, whoever made it")
        self.collected: dict[str, tuple[str, str]] = {}
        self._uids: dict[str, int | None] = {}
        pattern = f"{self.coursedir.student_id or '*'}+{self.coursedir.assignment_id}+*"
        by_student: dict[str, list[InboxRecord]] = {}
        inboxes = self._vetted(sorted(glob.glob(os.path.join(self.inbound_path, pattern))))
        for record in sorted(inboxes, key=lambda inbox: inbox["timestamp"], reverse=True):
            by_student.setdefault(record["username"], []).append(record)  # newest first
        with Gradebook(self.coursedir.db_url, self.coursedir.course_id) as gb:
            try:
                self.duedate = gb.find_assignment(self.coursedir.assignment_id).duedate
            except MissingEntry:
                self.duedate = None
        before_due = self.before_duedate and self.duedate is not None
        self.src_records = [next((r for r in records if r["timestamp"] <= self.duedate), records[0]) if before_due
                            else records[0] for records in by_student.values()]

    def _vetted(self, paths: Iterable[str]) -> Iterator[InboxRecord]:
        """The records of the inboxes at paths that can be collected as their students'; a line for each other."""
        for path in paths:
            try:
                record = self.inbox_record(path)
                refusal = self._refusal(record)
            except (OSError, ValueError) as error:
                refusal = str(error)
            if refusal:
                self.log.error("Not collecting %r: %s", os.path.basename(path), refusal)
            else:
                yield record

    def inbox_record(self, path: str) -> InboxRecord:
        """nbgrader's record of the inbox at path; ValueError, saying what is wrong, where its name is not
        <student>+<assignment>+<time>[+<random>] (nbgrader's own stops collect for everyone)."""
        name = os.path.basename(path)
        parts = name.rsplit("+", 3)
        if len(parts) < 3:
            raise ValueError("not named as nbgrader submit names an inbox, <student>+<assignment>+<time>+<random>; "
                             "the student can submit again")
        try:
            timestamp = parse_utc(parts[2])
        except (ValueError, OverflowError):
            raise ValueError(f"{parts[2]!r} is not a time (nbgrader submit names an inbox "
                             "<student>+<assignment>+<time>+<random>); the student can submit again") from None
        return {"username": parts[0], "filename": name, "timestamp": timestamp}

    def _refusal(self, record: InboxRecord) -> str:
        """Why the inbox of record cannot be collected as its student's submission; "" when it can."""
        student = record["username"]
        submitted = f"{self.coursedir.submitted_directory}/{{id}}/{self.coursedir.assignment_id}/"
        refusal = student_id_refusal(student)
        if refusal:
            return f"{refusal}; if a student submitted it, copy it by hand into {submitted.format(id='<their id>')}"
        path = os.path.join(self.inbound_path, record["filename"])
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode):
            kind = "symbolic link" if stat.S_ISLNK(info.st_mode) else "FIFO" if stat.S_ISFIFO(info.st_mode) else "file"
            return f"a {kind}, not the folder that nbgrader submit makes"
        if self.check_owner and info.st_uid != self._uid(student):
            owner = user_name(info.st_uid)
            if self._uid(student) is None:
                return (f"{student} is not a user of this machine, so this inbox, owned by {owner}, is not theirs "
                        "(where every student writes the exchange as one user, as with JupyterHub's DockerSpawner, "
                        "ownership says nothing: set c.ExchangeCollect.check_owner = False)")
            return (f"owned by {owner}, not by {student}: nbgrader submit writes a student's inbox as that student, "
                    f"so {student} did not submit it (a submission added by hand goes into "
                    f"{submitted.format(id=student)}, with its time given to autograde by --submission-times)")
        if not os.access(path, os.R_OK | os.X_OK):
            return (f"{user_name(os.getuid())} cannot read it (mode {info.st_mode & 0o777:03o}): its owner "
                    "made it so, and can submit again")
        return ""

    def _uid(self, student: str) -> int | None:
        if student not in self._uids:
            try:
                self._uids[student] = pwd.getpwnam(student).pw_uid
            except KeyError:
                self._uids[student] = None
        return self._uids[student]

    def copy_files(self) -> None:
        """nbgrader's, each submission on its own: one whose inbox changed under collect so that it can no longer be
        vetted or read costs only itself."""
        if not self.src_records:
            self.log.warning("No submissions of '%s' for course '%s' to collect", self.coursedir.assignment_id,
                             self.coursedir.course_id)
        for record in self.src_records:
            try:
                self._collect(record)
            except (OSError, ValueError, ExchangeError) as error:
                self.log.error("Not collecting %r: %s", record["filename"], error)
        if self.collected:
            submitted = Path(self.coursedir.root, self.coursedir.submitted_directory)
            write_atomic(submitted / TIMES_FILE, record_text({**read_record(submitted), **self.collected}))

    def _collect(self, record: InboxRecord) -> None:
        """Copy the inbox of record into submitted/, as nbgrader's copy_files would (--update, --before-duedate)."""
        student, assignment = record["username"], self.coursedir.assignment_id
        dest = self.coursedir.format_path(self.coursedir.submitted_directory, student, assignment)
        exists = os.path.isdir(dest)
        if exists:
            earlier = self.coursedir.get_existing_timestamp(dest)
            if not (self.update and (earlier is None or record["timestamp"] > earlier)
                    or self.before_duedate and earlier != record["timestamp"]):
                self.log.info("No newer submission to collect: %s %s" if self.update else
                              "Submission already exists, use --update to update: %s %s", student, assignment)
                return
        refusal = self._refusal(record)  # again, just before its student's earlier submission is replaced
        if refusal:
            raise ValueError(refusal)
        if exists:
            self.log.info("Updating submission: %s %s", student, assignment)
            shutil.rmtree(dest)
        else:
            self.log.info("Collecting submission: %s %s", student, assignment)
        try:
            self.do_copy(os.path.join(self.inbound_path, record["filename"]), dest)
        except OSError:
            shutil.rmtree(dest, ignore_errors=True)
            raise

    def do_copy(self, src: str, dest: str) -> None:
        record = self.inbox_record(src)
        Path(dest).mkdir(parents=True)
        intake = unpack(Submission(record["username"], Path(src), "folder"), dest)
        for note in intake.notes:
            self.log.warning("%s: %s", record["username"], note)
        when, source = exchange_time(record["timestamp"], Path(src))  # after reading: a later change shows in it
        Path(dest, "timestamp.txt").write_text(when)  # what nbgrader's collect --update compares the next one with
        carry_secret(Path(src), dest)
        self.collected[record["username"]] = (when, source)


def user_name(uid: int) -> str:
    """The name of the user uid, or "uid <uid>" where it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def carry_secret(source: Path, dest: str | Path) -> None:
    """Copy the submission's SECRET from folder source into dest, where it is a small regular file: the student's
    submit wrote it, and it decides only which feedback they can fetch."""
    try:
        with open_member(source, SECRET) as stream:
            data = stream.read(Settings.exchange_secret_bytes + 1)
    except OSError:
        return
    if len(data) <= Settings.exchange_secret_bytes:
        Path(dest, SECRET).write_bytes(data)


def exchange_time(claimed: datetime, inbox: Path) -> tuple[str, str]:
    """(time in nbgrader's format, its source) of the submission in the exchange's inbox folder, which claims to be
    made at claimed (naive UTC, as nbgrader parses it): the claim, unless the folder or anything in it changed more
    than Settings.exchange_clock_slack later; then the time of that change. An inbox too full to check gets the time
    of collect."""
    changed, complete = last_change(inbox)
    claim = claimed.replace(tzinfo=timezone.utc).strftime(NBGRADER_TIME_FORMAT)
    if not complete:
        return (datetime.now(timezone.utc).strftime(NBGRADER_TIME_FORMAT),
                f"the time of collect: the inbox holds more than {Settings.exchange_inbox_entries} files and folders, "
                f"too many to check the time it claimed, {claim}")
    if claimed.replace(tzinfo=timezone.utc).timestamp() >= changed - Settings.exchange_clock_slack:
        return claim, "nbgrader's exchange"
    return (datetime.fromtimestamp(changed, timezone.utc).strftime(NBGRADER_TIME_FORMAT),
            f"the inbox's last change: it claimed {claim}")


def last_change(inbox: Path) -> tuple[float, bool]:
    """(the latest inode change time of the folder inbox and of everything in it, whether everything was seen). The
    inbox is its student's to fill while collect reads it, so the walk is iterative, follows no link, goes only as
    deep as intake takes files from, skips the folders intake skips, and gives up past
    Settings.exchange_inbox_entries entries. A folder it cannot open is skipped: intake cannot take what it holds
    either, and its own change, seen from its parent, counts."""
    latest, seen = os.lstat(inbox).st_ctime, 0
    pending: list[list[str]] = [[]]
    while pending:
        parts = pending.pop()
        try:
            fd = open_folder(inbox, parts)
        except OSError:
            continue
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    seen += 1
                    if seen > Settings.exchange_inbox_entries:
                        return latest, False
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    latest = max(latest, info.st_ctime)
                    if stat.S_ISDIR(info.st_mode) and len(parts) < FOLDER_DEPTH and entry.name not in SKIPPED_FOLDERS:
                        pending.append([*parts, entry.name])
        finally:
            os.close(fd)
    return latest, True
