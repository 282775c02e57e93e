"""nbgrader's front doors, through autograde's intake. Whatever reaches the course's submitted/ folder (by the
exchange's collect, or by hand: unzip, tar, rsync -a) nbgrader reads only as `python -m grading autograde` reads it
(pipeline/intake.py: no link followed, no special file, every file capped, only the files that are graded), so both
front doors grade a symlinked or oversized submission alike.

- CheckedAutograde is nbgrader's autograde converter (the `nbgrader autograde` command and the formgrader's button)
  with a sanitize step that reads, instead of submitted/<student>/norm/, a copy that intake took from it when that
  student's turn comes: the files intake takes, the notebook autograde would grade (the released one in place of
  one that cannot be read), and a timestamp.txt only from a source records/late.py trusts. nbgrader creates its
  converter by name, so `install()`, run by the course's nbgrader_config.py in every nbgrader process before
  anything is converted, puts CheckedAutograde where nbgrader looks it up; ReadThroughIntake, first in the SANITIZE
  chain, refuses a notebook that was not read through it, so a future nbgrader that converted submissions some
  other way would grade no one rather than read submitted/ unchecked.
- CheckedCollect is the exchange's collect (ExchangeFactory.collect): it copies from each inbox only what intake
  takes, and records the submission's time beside the student folders (records/late.TIMES_FILE).

What they trust: the course's own folders (release/, the gradebook), the TA's settings and, of submitted/, only the
record of times beside the student folders, which students cannot write. Of nbgrader's exchange, collect trusts the
time in the inbox folder's name, which the student's own `nbgrader submit` wrote (so a student who edits their inbox
can change it), only as far as the last change to that folder allows: the file system keeps that time, and no
student process can set it back. A claim earlier than that change by more than Settings.exchange_clock_slack is
replaced by the change's time, with its source saying so.
"""
import fnmatch
import os
import re
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import nbformat
from nbgrader.apps import api, autogradeapp
from nbgrader.converters import Autograde
from nbgrader.converters.base import NbGraderException
from nbgrader.exchange.default.collect import ExchangeCollect
from nbgrader.preprocessors import NbGraderPreprocessor

from grading.assignment import ASSIGNMENT, NOTEBOOK, NOTEBOOK_ID
from grading.handoff import Submission
from grading.pipeline.intake import open_member, student_id_refusal, unpack
from grading.pipeline.notebook import submitted_notebook
from grading.records.late import TIMES_FILE, lateness, parse_due, read_record, read_submission_times, record_text
from grading.records.results import write_atomic
from grading.settings import NBGRADER_TIME_FORMAT, SCRATCH_PREFIX, Settings

STAGED = set()  # the folders CheckedAutograde staged in this process: the only ones nbgrader may sanitize from
SECRET = "submission_secret.txt"  # nbgrader's exchange releases feedback under its hash (release_feedback)


def install():
    """Make nbgrader's autograde, the command's and the formgrader's, CheckedAutograde in this process."""
    autogradeapp.Autograde = api.Autograde = CheckedAutograde


class CheckedAutograde(Autograde):
    """nbgrader's Autograde, whose sanitize step reads each student's submission as intake took it."""

    def start(self):
        self._times = self._trusted_times()  # before anything is read: a CSV that cannot be used grades no one
        self._staging = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-front-door-", dir="/tmp")
        try:
            super().start()
        finally:
            shutil.rmtree(self._staging, ignore_errors=True)

    def _format_source(self, assignment_id, student_id, escape=False):
        if not self._sanitizing:
            return super()._format_source(assignment_id, student_id, escape)
        if escape:  # a pattern, as nbgrader's: the ids are groups
            return re.escape(self._staging + os.sep) + student_id + re.escape(os.sep) + assignment_id
        return os.path.join(self._staging, student_id, assignment_id)

    def init_notebooks(self):
        """The submissions nbgrader would find, from a listing of submitted/ that follows no link; each is staged
        only when its turn comes (init_destination), so a class's bonus models are never all copied at once."""
        self.assignments, self.notebooks = {}, []
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
                staged = self._format_source(ASSIGNMENT, entry.name)
                self.assignments[staged] = [os.path.join(staged, NOTEBOOK)]
        if not self.assignments:
            message = f"No submissions of {self.coursedir.assignment_id!r} matched in {submitted}"
            self.log.error(message)
            raise NbGraderException(message)

    def init_destination(self, assignment_id, student_id):
        self._stage(student_id)
        return super().init_destination(assignment_id, student_id)

    def _stage(self, student_id):
        """Take submitted/<student>/norm/ through intake into the staging folder, replacing the last student's."""
        for earlier in Path(self._staging).iterdir():
            shutil.rmtree(earlier)
        folder = Path(self._format_source(ASSIGNMENT, student_id))
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
        STAGED.add(os.path.normpath(folder))

    def _trusted_times(self):
        """{student_id: time in nbgrader's format} from the sources autograde trusts: the TA's --submission-times
        (the course's settings) over the record beside submitted/."""
        settings = Settings.from_json(self.config.get("JudgedExecute", {}).get("settings", {}))
        try:
            due = parse_due(settings.due) if settings.due else None
            recorded = {student: when for student, (when, _) in read_record(
                Path(self.coursedir.root, self.coursedir.submitted_directory)).items()}
            declared = read_submission_times(settings.submission_times) if settings.submission_times else {}
        except ValueError as error:
            self.log.error(str(error))
            raise NbGraderException(str(error)) from None
        return {student: lateness(text, due).timestamp for student, text in {**recorded, **declared}.items()}


class ReadThroughIntake(NbGraderPreprocessor):
    """First in SANITIZE: nbgrader's own autograde may sanitize only a notebook CheckedAutograde staged (under
    `python -m grading autograde`, resources["normlab"] says intake already took the files)."""

    def preprocess(self, nb, resources):
        folder = os.path.normpath(resources.get("metadata", {}).get("path") or ".")
        if "normlab" not in resources and folder not in STAGED:
            raise NbGraderException(f"{folder} was not read through the grader's intake: the course's "
                                    "nbgrader_config.py must be the one grading/authoring/course.py writes, whose "
                                    "front_door.install() makes nbgrader's autograde read submissions safely")
        return nb, resources


class CheckedCollect(ExchangeCollect):
    """nbgrader's collect, copying from each inbox only what intake takes, and recording each submission's time."""

    def init_src(self):
        super().init_src()
        self.collected = {}
        for record in [r for r in self.src_records if student_id_refusal(r["username"])]:
            self.log.error("Not collecting %r: %s", record["filename"], student_id_refusal(record["username"]))
            self.src_records.remove(record)

    def do_copy(self, src, dest):
        record = self._path_to_record(src)
        Path(dest).mkdir(parents=True)
        intake = unpack(Submission(record["username"], Path(src), "folder"), dest)
        for note in intake.notes:
            self.log.warning("%s: %s", record["username"], note)
        when, source = exchange_time(record["timestamp"], src)
        Path(dest, "timestamp.txt").write_text(when)  # what nbgrader's collect --update compares the next one with
        carry_secret(src, dest)
        self.collected[record["username"]] = (when, source)

    def copy_files(self):
        super().copy_files()
        if self.collected:
            submitted = Path(self.coursedir.root, self.coursedir.submitted_directory)
            write_atomic(submitted / TIMES_FILE, record_text({**read_record(submitted), **self.collected}))


def carry_secret(source, dest):
    """Copy the submission's SECRET from folder source into dest, where it is a small regular file: the student's
    submit wrote it, and it decides only which feedback they can fetch."""
    try:
        with open_member(source, SECRET) as stream:
            data = stream.read(Settings.exchange_secret_bytes + 1)
    except OSError:
        return
    if len(data) <= Settings.exchange_secret_bytes:
        Path(dest, SECRET).write_bytes(data)


def exchange_time(claimed, inbox):
    """(time in nbgrader's format, its source) of the submission in the exchange's inbox folder, which claims to be
    made at claimed (naive UTC, as nbgrader parses it): the claim, unless the folder or anything in it changed more
    than Settings.exchange_clock_slack later; then the time of that change."""
    changed = max(os.lstat(os.path.join(folder, name)).st_ctime
                  for folder, folders, files in os.walk(inbox) for name in (".", *folders, *files))
    claim = claimed.replace(tzinfo=timezone.utc)
    if claim.timestamp() >= changed - Settings.exchange_clock_slack:
        return claim.strftime(NBGRADER_TIME_FORMAT), "nbgrader's exchange"
    when = datetime.fromtimestamp(changed, timezone.utc).strftime(NBGRADER_TIME_FORMAT)
    return when, f"the inbox's last change: it claimed {claim.strftime(NBGRADER_TIME_FORMAT)}"
