"""Every setting of the grader, declared once with its help text: the options of `python -m grading` (which the
course's nbgrader_config.py, Gradescope's autograder and the Slurm script hand on), the fixed limits and caps the
code reads, and the paths and formats it shares."""
import argparse
import os
from collections.abc import Callable, Collection
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from grading.assignment import NOTEBOOK, PYFILE, QUESTION_IDS

REPO = Path(__file__).resolve().parent.parent
GRADING = REPO / "grading"
HIDDEN = GRADING / "hidden"  # the hidden suites, check_<grade cell>.py; never released
SANDBOXED = GRADING / "sandboxed"  # code that runs inside the sandbox, sent there as source text
EXAMPLES = GRADING / "examples"  # the demo's sample students
NORMLAB = REPO / "normlab"  # the provided package, mounted read-only into every sandbox
SECRETS = (REPO / PYFILE, REPO / NOTEBOOK, HIDDEN)  # what no student code may read: solutions, hidden suites
SCRATCH_PREFIX = "nl-"  # /tmp/nl-<grader PID>-...: scratch folders, short because socket paths are limited
NBGRADER_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f UTC"  # submission times, as nbgrader writes timestamp.txt
# Where bubblewrap is (a name on PATH or a path); pointing it at nothing simulates a machine without it.
BWRAP = os.environ.get("GRADING_BWRAP", "bwrap")


# Exit statuses a script can trust: 0, every student has a verdict; EXIT_GRADER_ERRORS, some students could not be
# graded because the grading machine failed (listed at the end; a plain rerun grades them); EXIT_MISCONFIGURED, the
# grader cannot run as asked and graded no one.
EXIT_MISCONFIGURED = 2
EXIT_GRADER_ERRORS = 3


class ConfigurationError(Exception):
    """The grader itself cannot run as asked (as opposed to a submission that cannot be graded): it grades no one."""


def option(default: Any, help: str) -> Any:
    """A setting with a command-line option of its own."""
    return field(default=default, metadata={"help": help, "option": True})


def option_computed(default: Callable[[], Any], help: str) -> Any:
    """A setting with a command-line option of its own, whose default default() computes when a run starts (it
    depends on the machine or the environment, which may not be the one this module was imported on)."""
    return field(default_factory=default, metadata={"help": help, "option": True})


def default_of(setting: "Field[Any]") -> Any:
    """The default of setting, computed now where it is computed."""
    factory: Any = setting.default_factory  # dataclasses' MISSING where the setting has a plain default
    return factory() if setting.default is MISSING else setting.default


def default_jobs() -> int:
    """The number of cores."""
    return os.cpu_count() or 1


def default_cifar_root() -> Path:
    """$NORMLAB_DATA, else the repository's data/."""
    return Path(os.environ.get("NORMLAB_DATA") or REPO / "data")


def fixed(default: Any, help: str) -> Any:
    """A limit or cap the grader keeps fixed: declared here, read by the code, not an option."""
    return field(default=default, init=False, metadata={"help": help, "option": False})


@dataclass
class Settings:
    """Settings of `python -m grading autograde`, of nbgrader's autograde in a course built here, and of
    release's self-check, which grades too. Fixed settings are read from the class (Settings.message_chars)."""

    # What to grade, and how much at once
    jobs: int = option_computed(default_jobs, "submissions graded at the same time (default: the number of "
                                              "cores, %(default)s here)")
    questions: str = option(",".join(QUESTION_IDS), "comma-separated questions to (re)grade; the others keep "
                                                    "their earlier scores")
    force: bool = option(False, "regrade students whose submission was already graded")
    # Time
    timeout: float = option(600.0, "wall-clock seconds for grading one submission, all its parts together")
    cell_timeout: float = option(60.0, "seconds one notebook cell may run before it is interrupted")
    probe_timeout: float = option(20.0, "seconds one hidden check may wait for the notebook's kernel (correct code "
                                        "answers within 2 s)")
    call_timeout: float = option(10.0, "seconds one call into a student's batchnormalization.py may run "
                                       "(correct code needs milliseconds)")
    # The sandbox
    require_sandbox: bool = option(False, "stop with an error where bubblewrap (bwrap) cannot run, instead of "
                                          "grading as root with student code as a user of its own")
    unsandboxed: bool = option(False, "where bubblewrap cannot run, grade anyway with student code running as this "
                                      "grader's own user, which lets it read and write all you can: only for "
                                      "submissions you trust (without this, a grader that is not root refuses)")
    memory_mb: int = option(6144, "address-space limit of every sandboxed process, in MiB (torch alone maps "
                                  "about 3.3 GiB)")
    cpu_seconds: int = option(900, "CPU-time limit of every sandboxed process, in seconds")
    processes: int = option(64, "most processes a submission may run at once")
    file_size_mb: int = option(256, "largest file a sandboxed process may write, in MiB")
    open_files: int = option(1024, "most files a sandboxed process may hold open")
    output_kb: int = option(256, "captured output kept per notebook cell and per process, in KiB")
    # Late work
    due: str = option("", "due date and time with its time zone, ISO 8601 (for example 2026-12-01T23:59:00+08:00); "
                          "empty: no due date")
    late_policy: str = option("none", "late penalty: none (record lateness only), zero (a late submission scores "
                                      "0) or per-day:P[:MAX] (P points off per started day late, at most MAX)")
    submission_times: str = option("", "CSV of when each student submitted, as an LMS exports it (Canvas, Moodle, "
                                       "Gradescope) or as a TA writes it: a student id column (student_id, id, "
                                       "sid, login, username, email) and a time column (submitted_at, submission "
                                       "time, submitted, last modified (submission)); with nbgrader's exchange, "
                                       "the only source of submission times (a submission's own files are never "
                                       "read for one); empty: none")
    # The bonus
    cifar_root: Path = option_computed(default_cifar_root, "folder with the CIFAR test sets for the bonus "
                                                           "($NORMLAB_DATA, else the repository's data/; here "
                                                           "%(default)s)")

    # Fixed: time
    watchdog_grace: float = fixed(120.0, "seconds past --timeout after which a submission's grading process is "
                                         "killed")
    timeouts_per_cell: int = fixed(2, "calls into student code that may time out or end its process in one grade "
                                      "cell; its other checks then fail at once")
    kernel_restarts: int = fixed(2, "dead kernels restarted per submission; each restart replays the notebook")
    child_start_timeout: float = fixed(60.0, "seconds the sandboxed Python of batchnormalization.py may take to "
                                             "say it is ready")
    kernel_start_timeout: float = fixed(120.0, "seconds a cold kernel may take to start (torch's first import in "
                                               "a busy sandbox)")
    interrupt_grace: float = fixed(5.0, "seconds an interrupted kernel has to answer again before it is killed")
    exchange_clock_slack: float = fixed(300.0, "seconds by which the time an nbgrader exchange submission claims may "
                                                "precede the last change to its inbox folder (kept by the file "
                                                "system, which students cannot set back) before collect records "
                                                "that change's time instead")
    # Fixed: what a student reads
    message_chars: int = fixed(400, "characters of a message shown to a student: a failed check's, or what their "
                                    "own code raised")
    error_name_chars: int = fixed(80, "characters of the name of an exception raised by student code")
    verdict_chars: int = fixed(300, "characters of a failed check's one-line verdict in results.json")
    kernel_output_chars: int = fixed(600, "characters of what a test cell printed in the kernel, shown under the "
                                          "grader's verdict")
    line_width: int = fixed(110, "width of the verdict lines written into the graded notebook")
    # Fixed: what the grader takes from a submission and from student code
    reply_bytes: int = fixed(64 << 20, "largest reply a student's process may hand to the grader, in bytes")
    replies_bytes: int = fixed(256 << 20, "bytes of all the replies one submission hands over (the hidden suites keep "
                                          "them); past this, no more calls are made")
    pyfile_bytes: int = fixed(1 << 20, "largest batchnormalization.py taken from a submission, in bytes")
    notebook_bytes: int = fixed(50 << 20, "largest norm.ipynb taken from a submission, in bytes")
    history_bytes: int = fixed(1 << 20, "largest training history (runs/grid/*/history.json) taken, in bytes")
    bonus_bytes: int = fixed(500 << 20, "largest bonus model taken from a submission, in bytes")
    histories: int = fixed(100, "most training histories taken from one submission")
    zip_entries: int = fixed(10_000, "most entries in a submitted zip")
    zip_bytes: int = fixed(2 << 30, "most bytes a submitted zip may unpack to")
    exchange_inbox_entries: int = fixed(10_000, "files and folders of an nbgrader exchange inbox that collect checks "
                                                "for the inbox's last change; an inbox holding more gets the time of "
                                                "collect, since a later change could hide past them")
    exchange_secret_bytes: int = fixed(1024, "largest submission_secret.txt carried from nbgrader's exchange (its "
                                             "feedback is released under the secret's hash; nbgrader writes 128 "
                                             "characters)")
    # Fixed: what student code may take of the grading machine besides its rlimits
    disk_bytes: int = fixed(512 << 20, "bytes a submission's processes may write in all the places they can write, "
                                       "together: their folder (the host's disk), the sandbox's /tmp and /dev/shm "
                                       "(host memory); past this they are stopped. /tmp and /dev/shm are each also "
                                       "sized to it, so no burst between two checks goes past it in one of them")
    disk_entries: int = fixed(20_000, "files and folders a submission's processes may make in those places, together")
    folder_depth: int = fixed(64, "levels of nested folders a submission's processes may make in their folder")
    notebook_output_bytes: int = fixed(4 << 20, "output kept of a whole notebook's cells, beside each cell's cap")
    notebook_cells: int = fixed(1000, "code cells of a notebook that are run; the rest are not")
    # Fixed: the zygotes and the sandbox's users
    zygote_ready_timeout: float = fixed(180.0, "seconds a zygote may take to import torch on a busy machine")
    zygote_reply_timeout: float = fixed(10.0, "seconds a ready zygote may take to fork a kernel or clean up")
    zygote_start_grace: float = fixed(10.0, "seconds bubblewrap may take to start a zygote's process")
    sandbox_end_timeout: float = fixed(10.0, "seconds a killed sandbox's processes may take to end, before its "
                                             "folder is emptied")
    sandbox_uid_base: int = fixed(61000, "as root, sandboxed code of worker slot i runs as this uid + i")
    separate_user_uid_base: int = fixed(62000, "as root without bubblewrap, student code of worker slot i runs as "
                                               "this uid + i; every process of such a uid is killed after each "
                                               "submission, so no other program may use them")

    @property
    def question_list(self) -> tuple[str, ...]:
        chosen = [q.strip() for q in self.questions.split(",") if q.strip()]
        unknown = sorted(set(chosen) - set(QUESTION_IDS))
        if unknown or not chosen:
            raise ValueError(f"--questions takes a comma-separated subset of {','.join(QUESTION_IDS)}, "
                             f"not {self.questions!r}")
        return tuple(q for q in QUESTION_IDS if q in chosen)

    @property
    def kernel_output_bytes(self) -> int:
        return self.output_kb << 10

    def to_json(self) -> dict[str, Any]:
        return {f.name: str(v) if isinstance(v := getattr(self, f.name), Path) else v for f in options()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Settings":
        types: dict[str, Any] = {f.name: f.type for f in options()}
        return cls(**{k: types[k](v) for k, v in data.items() if k in types})


def options() -> list["Field[Any]"]:
    """The settings that are command-line options."""
    return [f for f in fields(Settings) if f.metadata["option"]]


def add_arguments(parser: argparse.ArgumentParser, only: Collection[str] | None = None) -> None:
    """Add one command-line option per option setting (or per setting named in only)."""
    for setting in options():
        if only is not None and setting.name not in only:
            continue
        flag = "--" + setting.name.replace("_", "-")
        help = setting.metadata["help"]
        if setting.type is bool:
            parser.add_argument(flag, action="store_true", help=help)
        else:
            parser.add_argument(flag, type=setting.type, default=default_of(setting),
                                help=help if "%(default)s" in help else help + " (default: %(default)s)")


def from_arguments(args: argparse.Namespace) -> Settings:
    """The Settings of parsed arguments; options they lack keep their defaults."""
    return Settings(**{f.name: getattr(args, f.name) for f in options() if hasattr(args, f.name)})
