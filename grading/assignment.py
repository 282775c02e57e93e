"""What the assignment is: its files, its questions with their grade cells and points, the bonus thresholds and the
stubs students get. Everything else (the gradebook, the hidden suites, grades.csv, feedback, the release checks)
derives from this table."""
from dataclasses import dataclass, field

from normlab import BONUS_FILES  # noqa: F401 (part of the assignment; students need it too)

ASSIGNMENT = "norm"
COURSE_ID = "normlab"
PYFILE = "batchnormalization.py"
NOTEBOOK = "norm.ipynb"
NOTEBOOK_ID = NOTEBOOK.removesuffix(".ipynb")  # what nbgrader's gradebook calls it
# The solution regions of batchnormalization.py, in the order they appear.
PYFILE_REGIONS = ("forward_train", "forward_test", "backward")
# The locked cell of norm.ipynb with the provided model code (BasicBlock, ResNet, make_stem, resnet18, ...), which
# calls the students' make_norm, make_shortcut, make_no_norm and make_cifar_stem.
MODEL_CODE_CELL = "model_code"
# Bonus points per dataset: none below the floor, all at or above the target, linear in between. The perturbations a
# model must also survive to keep them are declared in normlab.evaluate, with which students check their models.
BONUS_THRESHOLDS = {"cifar10": (0.90, 0.95, 5.0), "cifar100": (0.70, 0.77, 5.0)}
CODE_STUB = ("# 请在此段内填写代码(开始) / YOUR CODE BEGINS\n"
             "raise NotImplementedError(\"not implemented yet / 尚未实现\")\n"
             "# 请在此段内填写代码(结束) / YOUR CODE ENDS")
TEXT_STUB = "请在此作答 / YOUR ANSWER HERE"


@dataclass(frozen=True)
class Question:
    """One question of the assignment, as specified (its score for a student is a records.results.QuestionScore).

    autograded: {grade cell id of norm.ipynb: points}; the hidden suite grading/hidden/check_<cell>.py (or a
        `cell` marker there) scores each cell, and its tests' points must add up to these.
    written: {grade cell id: points} of answers graded by hand.
    extra: extra credit on top of the 100 points (the bonus).
    """

    id: str
    title: str
    answered_in: str
    autograded: dict[str, float]
    written: dict[str, float] = field(default_factory=dict)
    extra: float = 0.0

    @property
    def points(self) -> float:
        return sum(self.autograded.values())

    @property
    def written_points(self) -> float:
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
# A slip (grading/hidden/slips.py: the unbiased variance, eps outside the square root, no eps or too large an eps,
# momentum and 1 - momentum swapped) costs at most this share of its question's autograded points, once per
# question, however many checks and cells it shows in: what a careful TA takes off for a convention, not an idea.
SLIP_SHARE = 0.1
QUESTION_IDS = tuple(q.id for q in QUESTIONS)
BY_ID = {q.id: q for q in QUESTIONS}
# {grade cell id: the Question it belongs to}, for autograded and written cells alike
CELLS = {cell: q for q in QUESTIONS for cell in (*q.autograded, *q.written)}
# {autograded grade cell id: its points}
AUTOGRADED_POINTS = {cell: points for q in QUESTIONS for cell, points in q.autograded.items()}
# Questions whose hidden checks need the notebook's kernel, and those that need batchnormalization.py
KERNEL_QUESTIONS = tuple(q.id for q in QUESTIONS if q.answered_in == NOTEBOOK)
PYFILE_QUESTIONS = tuple(q.id for q in QUESTIONS if q.answered_in == PYFILE)


def question_of(grade_id: str) -> str:
    """The id of the question a grade cell belongs to ("" for cells outside the table)."""
    question = CELLS.get(grade_id)
    return question.id if question else ""
