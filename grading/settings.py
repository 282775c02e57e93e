"""Every setting of the grader, declared once with its help text, and the table of questions that everything
else (the gradebook, the hidden suites, grades.csv, feedback, release checks) derives from."""
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from normlab import BONUS_FILES  # noqa: F401 (part of the settings; students need it too)

REPO = Path(__file__).resolve().parent.parent
ASSIGNMENT = "norm"
COURSE_ID = "normlab"
PYFILE = "batchnormalization.py"
NOTEBOOK = "norm.ipynb"
NOTEBOOK_ID = NOTEBOOK.removesuffix(".ipynb")  # what nbgrader's gradebook calls it
# Bonus points per dataset: none below the floor, all at or above the target, linear in between.
BONUS_THRESHOLDS = {"cifar10": (0.90, 0.95, 5.0), "cifar100": (0.70, 0.77, 5.0)}
CODE_STUB = ("# 请在此段内填写代码(开始) / YOUR CODE BEGINS\n"
             "raise NotImplementedError(\"not implemented yet / 尚未实现\")\n"
             "# 请在此段内填写代码(结束) / YOUR CODE ENDS")
TEXT_STUB = "请在此作答 / YOUR ANSWER HERE"


@dataclass(frozen=True)
class Question:
    """One question of the assignment.

    autograded: {grade cell id of norm.ipynb: points}; the hidden suite grading/hidden/check_<cell>.py (or a
        `cell` marker there) scores each cell, and its tests' points must add up to these.
    written: {grade cell id: points} of answers graded by hand.
    extra: extra credit on top of the 100 points (the bonus).
    """

    id: str
    title: str
    answered_in: str
    autograded: dict
    written: dict = field(default_factory=dict)
    extra: float = 0.0

    @property
    def points(self):
        return sum(self.autograded.values())

    @property
    def written_points(self):
        return sum(self.written.values())


QUESTIONS = (
    Question("q1", "Q1 batchnorm_forward", PYFILE, {"q1_forward": 20.0}),
    Question("q2", "Q2 batchnorm_backward", PYFILE, {"q2_backward": 20.0}),
    Question("q3", "Q3 normalization layers and shortcut", NOTEBOOK,
             {"q3_layer_norm": 5.0, "q3_instance_norm": 5.0, "q3_group_norm": 5.0, "q3_shortcut": 5.0}),
    Question("q4", "Q4 no normalization", NOTEBOOK, {"q4_no_norm": 6.0, "q4_trains": 4.0}, {"q4_analysis": 10.0}),
    Question("q5", "Q5 ResNet for CIFAR", NOTEBOOK, {"q5_cifar_stem": 10.0}, {"q5_literature": 10.0}),
    Question("bonus", "Bonus: exported models", " and ".join(BONUS_FILES.values()), {"bonus": 0.0},
             extra=sum(points for _, _, points in BONUS_THRESHOLDS.values())),
)
QUESTION_IDS = tuple(q.id for q in QUESTIONS)
BY_ID = {q.id: q for q in QUESTIONS}
# {grade cell id: the Question it belongs to}, for autograded and written cells alike
CELLS = {cell: q for q in QUESTIONS for cell in (*q.autograded, *q.written)}
# Questions whose hidden checks need the notebook's kernel, and those that need batchnormalization.py
KERNEL_QUESTIONS = tuple(q.id for q in QUESTIONS if q.answered_in == NOTEBOOK)
PYFILE_QUESTIONS = tuple(q.id for q in QUESTIONS if q.answered_in == PYFILE)


def question_of(grade_id):
    """The id of the question a grade cell belongs to ("" for cells outside the table)."""
    question = CELLS.get(grade_id)
    return question.id if question else ""


def _setting(default, help, **extra):
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class Settings:
    """Settings of `python -m grading autograde`, of nbgrader's autograde in a course built here, and of
    release's self-check, which grades too."""

    jobs: int = _setting(os.cpu_count() or 1, "submissions graded at the same time (default: the number of cores, "
                                              "%(default)s here)")
    questions: str = _setting(",".join(QUESTION_IDS), "comma-separated questions to (re)grade; the others keep "
                                                      "their earlier scores")
    timeout: float = _setting(600.0, "wall-clock seconds for grading one submission, all its parts together")
    cell_timeout: float = _setting(60.0, "seconds one notebook cell may run before it is interrupted")
    probe_timeout: float = _setting(20.0, "seconds one hidden check may wait for the notebook's kernel (correct code "
                                          "answers within 2 s)")
    call_timeout: float = _setting(10.0, "seconds one call into a student's batchnormalization.py may run "
                                         "(correct code needs milliseconds)")
    memory_mb: int = _setting(6144, "address-space limit of every sandboxed process, in MiB (torch alone maps "
                                    "about 3.3 GiB)")
    cpu_seconds: int = _setting(900, "CPU-time limit of every sandboxed process, in seconds")
    processes: int = _setting(64, "most processes a submission may run at once")
    file_size_mb: int = _setting(256, "largest file a sandboxed process may write, in MiB")
    open_files: int = _setting(1024, "most files a sandboxed process may hold open")
    output_kb: int = _setting(256, "captured output kept per notebook cell and per process, in KiB")
    due: str = _setting("", "due date and time with its time zone, ISO 8601 (for example 2026-12-01T23:59:00+08:00); "
                            "empty: no due date")
    late_policy: str = _setting("none", "late penalty: none (record lateness only), zero (a late submission scores "
                                        "0) or per-day:P[:MAX] (P points off per started day late, at most MAX)")
    force: bool = _setting(False, "regrade students whose submission was already graded")
    require_sandbox: bool = _setting(False, "stop with an error, instead of a warning, when bubblewrap (bwrap) "
                                            "is missing")
    cifar_root: Path = _setting(Path(os.environ.get("NORMLAB_DATA") or REPO / "data"),
                                "folder with the CIFAR test sets for the bonus (default: %(default)s)")

    @property
    def question_list(self):
        chosen = [q.strip() for q in self.questions.split(",") if q.strip()]
        unknown = sorted(set(chosen) - set(QUESTION_IDS))
        if unknown or not chosen:
            raise ValueError(f"--questions takes a comma-separated subset of {','.join(QUESTION_IDS)}, "
                             f"not {self.questions!r}")
        return tuple(q for q in QUESTION_IDS if q in chosen)

    def to_json(self):
        return {f.name: str(v) if isinstance(v := getattr(self, f.name), Path) else v for f in fields(self)}

    @classmethod
    def from_json(cls, data):
        types = {f.name: f.type for f in fields(cls)}
        return cls(**{k: types[k](v) for k, v in data.items() if k in types})


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
