"""records/cohort.py: report.html shows how the points spread (a plot), which checks failed and how, the slips,
lateness and who needs a person, and nothing a student wrote can run in it."""
import base64
import re
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from grading.assignment import BY_ID, QUESTION_IDS
from grading.failures import Cause
from grading.pipeline.verdicts import merge_repeated
from grading.records.cohort import POLICY, cohort_html, write_report
from grading.records.results import SLIP, WRONG, QuestionScore, Rejected, StudentResult
from grading.records.results import Test as Check

SCRIPT = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>"
PNG = b"\x89PNG\r\n\x1a\n"


def student(sid: str, share: float, slips: Sequence[str] = (), message: str = "off by 0.1",
            **fields: Any) -> StudentResult:
    """Every question of sid earns share of its autograded points; a failing check says message, and names slips
    (then it failed as a slip)."""
    result = StudentResult(sid, **fields)
    for q in QUESTION_IDS:
        tests = [Check(f"test_{cell}", share * points, points, share == 1, "" if share == 1 else message, True, cell,
                       "" if share == 1 else (SLIP if slips else WRONG), list(slips))
                 for cell, points in BY_ID[q].autograded.items()]
        result.questions[q] = QuestionScore(sum(t.score for t in tests), BY_ID[q].points, BY_ID[q].written_points,
                                            BY_ID[q].extra, manual_pending=bool(BY_ID[q].written), tests=tests)
    return result


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(page)
    return parser.tags


def cohort() -> list[StudentResult]:
    return [student("ada", 1.0), student("bob", 0.5, slips=["unbiased variance"], late_seconds=5400,
                                         late_penalty=10.0),
            student("cy", 0.5, message="running_var is off"), student("dee", 0.0, status="REVIEW: uses get_ipython",
                                                                      flags=["get_ipython"]),
            StudentResult("eve", status="ERROR: the sandbox did not start", error="the sandbox did not start",
                          error_cause=Cause.SANDBOX, error_file="errors/eve.txt")]


def test_the_report_plots_each_question_and_lists_who_needs_a_person(tmp_path: Path) -> None:
    page = write_report(tmp_path, cohort(), [Rejected("notes.txt", "not a folder")]).read_text()
    images = [attrs["src"] for tag, attrs in tags(page) if tag == "img"]
    assert len(images) == 2, "the histograms and the lateness plot"
    assert all(base64.b64decode(src.split(",", 1)[1]).startswith(PNG) for src in images)
    for q in QUESTION_IDS:
        assert BY_ID[q].title in page
    needs = page[page.index("id=\"needs-a-person\""):page.index("id=\"distributions\"")]
    assert re.search(r"To grade by hand \(written answers, a bonus\): 4\b", needs) and "REVIEW: 1" in needs
    assert "<b>eve</b>: the sandbox did not start (sandbox; see errors/eve.txt)" in needs
    assert "<b>notes.txt</b>: not a folder" in needs
    assert "1 of 5 handed in late" in page and "1.5 hours late, 10.00 points off" in page
    checks = page[page.index("id=\"checks\""):page.index("id=\"slips\"")]
    assert "3 of 4" in checks, "bob, cy and dee failed every check; ada passed"
    assert "slip: off by 0.1" in checks and "unbiased variance" in checks and "(bob)" in checks
    assert "<b>1</b> &times; unbiased variance (bob)" in page[page.index("id=\"slips\""):]


def test_what_students_wrote_is_text_and_the_page_runs_nothing(tmp_path: Path) -> None:
    """The attacker: a failing check's message and a status carry their HTML."""
    hostile = student("mallory", 0.0, message=SCRIPT, status=f"REVIEW: {SCRIPT}", flags=["get_ipython"])
    page = cohort_html([hostile, student("ada", 1.0)])
    assert "<script" not in page and "<img src=x" not in page
    assert "&lt;script&gt;" in page
    assert [tag for tag, _ in tags(page)].count("script") == 0
    assert all(attrs["src"].startswith("data:image/png;base64,") for tag, attrs in tags(page) if tag == "img")
    assert POLICY in page and "default-src 'none'" in POLICY


def test_an_honest_cohort_with_nobody_graded_late_or_failing_reads_plainly() -> None:
    """The unusual but correct cases: everyone ERROR, or one student with full marks and nothing else."""
    failed = cohort_html([cohort()[-1]])
    assert "No student was graded." in failed and "<img" not in failed
    perfect = cohort_html([student("solo", 1.0)])
    assert "Every check passed for everyone." in perfect and "No one handed in late." in perfect
    assert "No slip was named." in perfect and "REVIEW: none" in perfect
    assert len([1 for tag, _ in tags(perfect) if tag == "img"]) == 1


def test_the_page_does_not_depend_on_the_order_students_came_in(tmp_path: Path) -> None:
    """collect merges shards in another order than one run grades students: both reports are the same bytes."""
    assert cohort_html(cohort()) == cohort_html(list(reversed(cohort())))


def test_who_needs_a_person_can_come_from_the_gradebook() -> None:
    """After manual grading (records.final.waiting): those the TA has graded are no longer listed, and each reason
    goes under its heading."""
    page = cohort_html(cohort(), waiting={"bob": ["to grade by hand: Q4 no normalization (q4_analysis)"],
                                          "dee": ["REVIEW: uses get_ipython (flagged in the formgrader)"],
                                          "eve": ["ERROR: the grading machine failed (the sandbox did not start)"]})
    needs = page[page.index("id=\"needs-a-person\""):page.index("id=\"distributions\"")]
    assert re.search(r"To grade by hand \(written answers, a bonus\): 1\b", needs) and "<b>ada</b>" not in needs
    assert "REVIEW: 1" in needs and re.search(r"ERROR \(grade again: run the same command\): 1\b", needs)
    assert "4 graded, 1 not graded because the grading machine failed" in page


def test_a_message_merged_into_another_checks_is_counted_as_what_that_check_said() -> None:
    """(verdicts.merge_repeated leaves "the same as ..." in the later checks; the cohort counts the verdict)"""
    ada = student("ada", 0.0, message="make_norm is not defined")
    merge_repeated([t for q in ada.questions.values() for t in q.tests])
    page = cohort_html([ada])
    assert "the same as" not in page and page.count("make_norm is not defined") >= 2
