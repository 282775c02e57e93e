"""Every setting of the grader, declared once with its help text. The command line is built from these."""
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ASSIGNMENT = "norm"
COURSE_ID = "normlab"
QUESTIONS = ("q1", "q2", "q3", "q4", "q5", "bonus")
PYFILE = "batchnormalization.py"
NOTEBOOK = "norm.ipynb"
NOTEBOOK_ID = NOTEBOOK.removesuffix(".ipynb")  # what nbgrader's gradebook calls it
PYFILE_QUESTIONS = ("q1", "q2")
BONUS_FILES = {"cifar10": "bonus_cifar10.pt2", "cifar100": "bonus_cifar100.pt2"}
# Bonus points per dataset: none below the floor, all at or above the target, linear in between.
BONUS_THRESHOLDS = {"cifar10": (0.90, 0.95, 5.0), "cifar100": (0.70, 0.77, 5.0)}
CODE_STUB = ("# 请在此段内填写代码(开始) / YOUR CODE BEGINS\n"
             "raise NotImplementedError(\"not implemented yet / 尚未实现\")\n"
             "# 请在此段内填写代码(结束) / YOUR CODE ENDS")
TEXT_STUB = "请在此作答 / YOUR ANSWER HERE"


def question_of(grade_id):
    """The question a notebook or report cell belongs to, by its id: "q3_shortcut" -> "q3", "bonus" -> "bonus"."""
    return grade_id.split("_")[0] if grade_id else ""


def _setting(default, help, **extra):
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class Settings:
    """Settings of `python -m grading autograde` (and of release's self-check, which grades too)."""

    jobs: int = _setting(os.cpu_count() or 1, "submissions graded at the same time (default: the number of cores, "
                                              "%(default)s here)")
    questions: str = _setting(",".join(QUESTIONS), "comma-separated questions to (re)grade; the others keep their "
                                                   "earlier scores")
    timeout: float = _setting(600.0, "wall-clock seconds for grading one submission, all its parts together")
    cell_timeout: float = _setting(60.0, "seconds one notebook cell may run before it is interrupted")
    call_timeout: float = _setting(10.0, "seconds one call into a student's batchnormalization.py may run "
                                               "(correct code needs milliseconds)")
    memory_mb: int = _setting(6144, "address-space limit of every sandboxed process, in MiB (torch alone maps "
                                    "about 3.3 GiB)")
    cpu_seconds: int = _setting(900, "CPU-time limit of every sandboxed process, in seconds")
    processes: int = _setting(64, "most processes a submission may run at once")
    file_size_mb: int = _setting(256, "largest file a sandboxed process may write, in MiB")
    open_files: int = _setting(1024, "most files a sandboxed process may hold open")
    output_kb: int = _setting(256, "captured output kept per notebook cell and per process, in KiB")
    force: bool = _setting(False, "regrade students whose submission was already graded")
    require_sandbox: bool = _setting(False, "stop with an error, instead of a warning, when bubblewrap (bwrap) "
                                            "is missing")
    cifar_root: Path = _setting(Path(os.environ.get("NORMLAB_DATA") or REPO / "data"),
                                "folder with the CIFAR test sets for the bonus (default: %(default)s)")

    @property
    def question_list(self):
        chosen = [q.strip() for q in self.questions.split(",") if q.strip()]
        unknown = sorted(set(chosen) - set(QUESTIONS))
        if unknown or not chosen:
            raise ValueError(f"--questions takes a comma-separated subset of {','.join(QUESTIONS)}, "
                             f"not {self.questions!r}")
        return tuple(q for q in QUESTIONS if q in chosen)


def add_arguments(parser, only=None):
    """Add one command-line option per setting (or per setting named in only)."""
    for setting in fields(Settings):
        if only is not None and setting.name not in only:
            continue
        flag = "--" + setting.name.replace("_", "-")
        help = setting.metadata["help"]
        if setting.type is bool:
            parser.add_argument(flag, action="store_true", help=help)
        else:
            parser.add_argument(flag, type=setting.type, default=setting.default,
                                help=help if "%(default)s" in help else help + " (default: %(default)s)")


def from_arguments(args):
    return Settings(**{f.name: getattr(args, f.name) for f in fields(Settings) if hasattr(args, f.name)})
