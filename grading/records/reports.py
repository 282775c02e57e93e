"""What is made of a StudentResult for people: Gradescope's results.json, feedback.html for the student, the rows of
grades.csv and the table that ends a run. A grader error shows no points anywhere: the student reads that the
submission could not be graded yet and that the course staff know, never anything that blames their code; the TA
reads its whole account (error_report) in OUT/errors/<student>.txt, which the status line and the end of the run
name."""
import csv
import html
import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grading.assignment import BY_ID, QUESTION_IDS
from grading.failures import Cause
from grading.records.results import ERRORS, GraderFailure, QuestionScore, Rejected, StudentResult, Test, write_atomic
from grading.settings import Settings

if TYPE_CHECKING:
    from grading.records.final import FinalGrade, FinalQuestion

NOT_GRADED_YET = ("Your submission could not be graded yet: the grading machine failed, not your code. Nothing is "
                  "wrong with your files, and they were received. The course staff have been told and will grade it "
                  "again.")
CSV_COLUMNS = ["student_id", *QUESTION_IDS, "late_minutes", "late_penalty", "total", "status", "manual_pending",
               "notes"]


def points_line(name: str, question: QuestionScore) -> str:
    """How a question stands, in words: '12.50 / 20', with the written part, or 'not graded' for the bonus."""
    if name == "bonus":
        if question.graded:
            return f"{question.score:.2f} of {question.extra_max:g} extra points"
        if question.score:
            return f"{question.score:.2f} of {question.extra_max:g} extra points so far, the rest not graded yet"
        return f"not graded yet (up to {question.extra_max:g} extra points)"
    line = f"{question.score:.2f} / {question.max_score:g}"
    if question.manual_max:
        line += f" + {question.manual_max:g} graded by hand{' (pending)' if question.manual_pending else ''}"
    return line


def verdict(test: Test) -> str:
    """What a student sees of one check: "passed", or the first line of why it failed, cut to
    Settings.verdict_chars."""
    if test.passed:
        return "passed"
    first = next((line.strip() for line in test.message.splitlines() if line.strip()), "failed")
    cap = Settings.verdict_chars
    return first if len(first) <= cap else first[:cap - 1] + "\u2026"


def results_json(result: StudentResult, final: "FinalGrade | None" = None) -> dict[str, Any]:
    """results.json in Gradescope's schema, visible to the student at once: every check of the hidden suites as a
    test showing only its name, score and verdict; then a summary of notes and of what could not be graded. The
    written answers are graded by hand (on Gradescope, or in nbgrader's formgrader) and never scored here. No
    leaderboard; stdout, which may name the grading machine's paths, stays with the instructors. A grader error has
    no score at all (Gradescope is never handed one: gradescope.py writes no results.json then). With final (a
    records.final.FinalGrade, rewritten by `python -m grading feedback`), the score is the gradebook's, and the
    output starts with the TA's points and comments."""
    if result.error:
        return {"output": NOT_GRADED_YET, "visibility": "visible", "stdout_visibility": "hidden", "tests": []}
    tests: list[dict[str, Any]] = []
    checks = [(name, test) for name, question in result.questions.items() for test in question.tests]
    for (name, test), (score, most) in zip(checks, in_cents(result.questions)):
        tests.append({"name": f"{BY_ID[name].title}: {test.name}", "score": score / 100, "max_score": most / 100,
                      # a check that only shows a slip charged elsewhere keeps its points: it did not fail
                      "status": "passed" if test.passed or score >= most else "failed", "output": verdict(test),
                      "visibility": "visible"})
    output = [f"Autograded points: {result.total:.2f}.", *(f"Note: {n}" for n in result.notes)]
    output += [f"{BY_ID[n].title}: {points_line(n, q)}" for n, q in result.questions.items() if q.tests]
    output += [f"{BY_ID[n].title}: {points_line(n, q)}. {q.status}".strip() for n, q in result.questions.items()
               if q.status or not q.graded]
    written = []
    for n, q in result.questions.items():
        if q.manual_max:
            # An answer cell left as handed out already scores 0 (nbgrader's rule); the others await a person.
            unanswered = q.graded and not q.manual_pending
            written.append(f"{BY_ID[n].title} ({q.manual_max:g} points{', unanswered' if unanswered else ''})")
    if written and final is None:
        output.append("Graded by hand, not part of this score: the written answers of " + "; ".join(written) + ".")
    if final is not None:
        by_hand = [f"{BY_ID[n].title}: {final_points_line(n, q)}" + "".join(f"\n  Your TA: {c}" for c in q.comments)
                   for n, q in final.questions.items() if q.pending or q.comments or any(c.manual_score is not None
                                                                                          for c in q.cells)]
        output = [f"Points after grading by hand: {final.total:.2f} (autograded: {result.total:.2f}).", *by_hand,
                  *output[1:]]
    points = final.total if final is not None else result.total
    return {"score": round(points, 2), "execution_time": round(result.seconds, 1), "output": "\n".join(output),
            "visibility": "visible", "stdout_visibility": "hidden", "tests": tests}


def in_cents(questions: dict[str, QuestionScore]) -> list[tuple[int, int]]:
    """[(score, max_score)] in whole cents of every test of questions ({id: QuestionScore}), in order: Gradescope
    shows them as they are, and 0.333333 of a point reads as noise. Each question's maxima add up to its points,
    the scores to the autograded total to the cent, and a test never scores over its maximum. The cents that
    rounding down leaves go to the maxima of tests without full marks first (so that a test with full marks shows
    score = maximum), and to the scores of tests with full marks first; then by the largest remainder."""
    tests = [test for question in questions.values() for test in question.tests]
    maxima: list[int] = []
    for question in questions.values():
        exact = [t.max_score * 100 for t in question.tests]
        maxima += share_out(exact, round(sum(exact)), [t.score < t.max_score for t in question.tests])
    scores = share_out([t.score * 100 for t in tests], round(sum(t.score for t in tests) * 100),
                       [t.score >= t.max_score for t in tests], maxima)
    return list(zip(scores, maxima))


def share_out(exact: Sequence[float], total: int, first: Sequence[bool],
              caps: Sequence[float] | None = None) -> list[int]:
    """Whole numbers near exact that add up to total: each rounded down (to at most its cap), then one more to each
    in turn, those marked first before the others, each by the largest remainder, while total is not reached."""
    caps = caps or [math.inf] * len(exact)
    shares = [int(min(math.floor(value + 1e-6), cap)) for value, cap in zip(exact, caps)]
    order = sorted(range(len(exact)), key=lambda i: (not first[i], -(exact[i] - shares[i]), i))
    for i in order:
        if sum(shares) >= total:
            break
        if shares[i] < caps[i]:
            shares[i] += 1
    return shares


def feedback_html(result: StudentResult, final: "FinalGrade | None" = None) -> str:
    """Per-question scores and the grader's messages for the student: nothing about the grading machine, and never
    a line of hidden test source. With final (the student's records.final.FinalGrade, after manual grading), the
    points are the gradebook's: the TA's scores, overrides and comments shown beside the checks' verdicts."""
    e = html.escape
    if result.error:
        headline = e(NOT_GRADED_YET)
    elif final is not None:
        waiting = any(q.pending for q in final.questions.values())
        headline = f"Points: {final.total:.2f}" + (" so far (some answers are still to be graded by hand)"
                                                    if waiting else "")
    else:
        headline = f"Autograded points: {result.total:.2f}"
    rows = []
    for name, q in ({} if result.error else result.questions).items():
        graded = final.questions.get(name) if final is not None else None
        line = final_points_line(name, graded) if graded else points_line(name, q)
        rows.append(f"<h2>{e(BY_ID[name].title)}: {e(line)}</h2>")
        if graded:
            rows.extend(ta_lines(graded))
        if q.status:
            rows.append(f"<p class='status'>{e(q.status)}</p>")
        if q.tests:
            rows.append("<table><tr><th>check</th><th>points</th><th>result</th></tr>")
            for t in q.tests:
                shown = "passed" if t.passed else e(t.message or "failed")
                rows.append(f"<tr class='{'pass' if t.passed else 'fail'}'><td>{e(t.name)}</td>"
                            f"<td>{t.score:.2f} / {t.max_score:.2f}</td><td>{shown}</td></tr>")
            rows.append("</table>")
    notes = "".join(f"<li>{e(n)}</li>" for n in result.notes)
    late = final_late_line(result, final) if final is not None else late_line(result)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Feedback for {e(result.student_id)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}table{{border-collapse:collapse;width:100%}}
td,th{{border:1px solid #ccc;padding:.3em;text-align:left;vertical-align:top}}.pass td:last-child{{color:#060}}
.fail td:last-child{{color:#a00}}.status{{color:#555}}.comment{{border-left:4px solid #48c;margin:.5em 0;
padding:.3em 1em;white-space:pre-wrap}}</style></head><body>
<h1>Normalization layers: feedback for {e(result.student_id)}</h1>
<p><b>{headline}</b>{late}</p>
{"<ul>" + notes + "</ul>" if notes else ""}
{''.join(rows)}
</body></html>
"""


def final_points_line(name: str, question: "FinalQuestion") -> str:
    """How a question stands in the gradebook (a records.final.FinalQuestion), in words."""
    if name == "bonus":
        if not question.graded:
            return f"not graded yet (up to {BY_ID[name].extra:g} extra points)"
        return f"{question.extra:.2f} of {BY_ID[name].extra:g} extra points"
    line = f"{question.score:.2f} / {question.max_score:g}"
    return line + (" so far (graded by hand: pending)" if question.pending else "")


def ta_lines(question: "FinalQuestion") -> list[str]:
    """The TA's scores and comments on a question (a records.final.FinalQuestion), as HTML for the student."""
    e = html.escape
    lines = []
    for cell in question.cells:
        if cell.overridden:
            lines.append(f"<p class='ta'>Your TA set {e(cell.name)} to {cell.manual_score:.2f} / {cell.max_score:g} "
                         f"(the checks below gave {cell.auto_score:.2f}).</p>")
        elif cell.manual_score is not None and cell.auto_score is None and cell.max_score:
            lines.append(f"<p class='ta'>Graded by your TA: {e(cell.name)} {cell.manual_score:.2f} / "
                         f"{cell.max_score:g}.</p>")
    lines += [f"<blockquote class='comment'>Your TA: {e(comment)}</blockquote>" for comment in question.comments]
    return lines


def final_late_line(result: StudentResult, final: "FinalGrade") -> str:
    if not final.late_penalty and not result.late_seconds:
        return ""
    hours = f"handed in {result.late_seconds / 3600:.1f} hours late: " if result.late_seconds else ""
    return html.escape(f" ({hours}{final.late_penalty:.2f} points off)")


def late_line(result: StudentResult) -> str:
    if not result.late_seconds:
        return ""
    return html.escape(f" (handed in {result.late_seconds / 3600:.1f} hours late: {result.late_penalty:.2f} points "
                       "off)")


def manual_pending(result: StudentResult) -> str:
    return ", ".join(f"{name} ({q.manual_max:g})" for name, q in result.questions.items() if q.manual_pending)


def grades_csv(results: Iterable[StudentResult], rejected: Iterable[Rejected] = ()) -> str:
    """One row per student, then one per entry of SUBMISSIONS that could not be graded at all."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in sorted(results, key=lambda r: r.student_id):
        row = {"student_id": r.student_id, "late_minutes": f"{r.late_seconds / 60:.1f}",
               "late_penalty": f"{r.late_penalty:.2f}", "total": "" if r.error else f"{r.total:.2f}",
               "status": r.status, "manual_pending": manual_pending(r), "notes": " | ".join(r.notes + r.ta_notes)}
        row.update({q: "" if r.error or q not in r.questions or ungraded_extra(r.questions[q])
                    else f"{r.questions[q].score:.2f}" for q in QUESTION_IDS})
        writer.writerow(row)
    for entry in rejected:
        writer.writerow({"student_id": entry.name, "status": f"not graded: {entry.status}"})
    return buffer.getvalue()


def ungraded_extra(question: QuestionScore) -> bool:
    """Whether question is extra credit of which nothing is graded yet (a bonus NOT GRADED): shown empty, not as 0,
    which would read as a verdict."""
    return bool(question.extra_max) and not question.graded and not question.score


def table(results: Iterable[StudentResult]) -> str:
    """The final table, printed at the end of a run."""
    header = f"{'student':<24}" + "".join(f"{q:>7}" for q in QUESTION_IDS) + f"{'total':>8}  status"
    lines = [header, "-" * len(header)]
    for r in sorted(results, key=lambda r: r.student_id):
        cells = "".join(f"{r.questions[q].score:>7.2f}" if q in r.questions and not r.error
                        and not ungraded_extra(r.questions[q]) else f"{'-':>7}" for q in QUESTION_IDS)
        total = f"{'-':>8}" if r.error else f"{r.total:>8.2f}"
        lines.append(f"{r.student_id[:24]:<24}{cells}{total}  {r.status}")
    return "\n".join(lines)


def error_report(result: StudentResult, failure: GraderFailure) -> str:
    """The text of a grader error's error_file, for whoever fixes the machine: what failed, what to do, and the
    traceback of the process that met it (failure: a GraderFailure)."""
    told = failure.traceback.rstrip() or ("none: the grading process did not end on its own (it was killed, or "
                                          "overran and was stopped), or what failed was noticed after it ended")
    return (f"{result.student_id} was not graded: the grading machine failed (cause: {failure.cause.value}).\n\n"
            f"What failed: {failure.message.strip()}\n\n"
            f"What to do: {failure.cause.advice}. The same command, run again, grades this student again.\n\n"
            f"Traceback:\n{told}\n")


def errors_summary(results: Iterable[StudentResult], out_dir: str | os.PathLike[str]) -> str:
    """The lines that end a run in which the machine failed some students: who, where each one's account is, and
    what to do, by cause; "" when it failed no one."""
    errors = sorted((r for r in results if r.error), key=lambda r: r.student_id)
    if not errors:
        return ""
    by_cause: dict[Cause | None, list[str]] = {}
    for r in errors:
        by_cause.setdefault(r.error_cause, []).append(r.student_id)
    lines = [f"{len(errors)} student(s) could not be graded because the grading machine failed (ERROR in grades.csv, "
             f"flagged in the gradebook, no points recorded): {', '.join(r.student_id for r in errors)}. Run the same "
             "command again to grade them. What failed, what to do and the traceback of each are in "
             f"{Path(out_dir) / ERRORS}/<student>.txt; by cause:"]
    for cause, students in by_cause.items():
        advice = cause.advice if cause else "not recorded (an earlier grader's result): regrade them"
        lines.append(f"  {cause.value if cause else 'unknown'} ({', '.join(students)}): {advice}")
    return "\n".join(lines)


def write_student(out_dir: str | os.PathLike[str], result: StudentResult) -> None:
    """results.json and feedback.html first, grade.json last: grade.json marks the student as done."""
    folder = Path(out_dir) / result.student_id
    write_atomic(folder / "results.json", json.dumps(results_json(result), indent=1, ensure_ascii=False))
    write_atomic(folder / "feedback.html", feedback_html(result))
