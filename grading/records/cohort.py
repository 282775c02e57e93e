"""OUT/report.html: the cohort at a glance, for the TA, written by every autograde run and by collect. How the
points of each question and the total spread (histograms, embedded as PNG images), which checks failed most and how
(their verdicts and the slips they named, with counts and example students), who handed in late, and who needs a
person: written answers still to grade, REVIEW, ERROR.

It reads the StudentResults, so it shows autograde's grades; the TA's scores are in the gradebook and `python -m
grading export`. What students wrote reaches it only in verdicts, notes and statuses, and all of it is escaped; the
page also carries a Content-Security-Policy that lets nothing run or load but its own images and style, in case
anything ever slipped through.
"""
import base64
import html
import io
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from grading.assignment import BY_ID, QUESTION_IDS
from grading.records.reports import ungraded_extra, verdict
from grading.records.results import SLIP, Rejected, StudentResult, write_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORT_FILE = "report.html"
EXAMPLES_SHOWN = 3  # students named per verdict, slip or list entry before "and N more"
VERDICTS_SHOWN = 4  # verdicts shown per check, most common first
POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
# (student, why), in the lists of who needs a person
PersonEntry = tuple[str, str]
# {label: (points of each graded student, the most there is)}
Spread = dict[str, tuple[list[float], float]]


@dataclass
class FailedCheck:
    """Who failed one check and how: each verdict (a slip's as "slip: <verdict>") and each slip named, counted, with
    the students who got it."""

    students: set[str] = field(default_factory=set)
    verdicts: Counter[str] = field(default_factory=Counter)
    who: dict[str, set[str]] = field(default_factory=dict)  # by verdict
    slips: Counter[str] = field(default_factory=Counter)
    slipped: dict[str, set[str]] = field(default_factory=dict)  # by slip


def examples(students: Iterable[str]) -> str:
    students = sorted(students)
    more = f" and {len(students) - EXAMPLES_SHOWN} more" if len(students) > EXAMPLES_SHOWN else ""
    return html.escape(", ".join(students[:EXAMPLES_SHOWN]) + more)


def ranked(counts: Counter[str]) -> list[tuple[str, int]]:
    """[(key, count)] of a Counter, most first, ties by key: the same page whatever order students came in."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def distributions(graded: list[StudentResult]) -> Spread:
    """{label: (points of each graded student, the most there is)} per question and for the total."""
    spread: Spread = {}
    for q in QUESTION_IDS:
        scores = [r.questions[q].score for r in graded if q in r.questions and not ungraded_extra(r.questions[q])]
        most = BY_ID[q].extra or BY_ID[q].points
        if scores:
            spread[BY_ID[q].title] = (scores, most)
    if graded:
        total = sum(q.points for q in BY_ID.values())  # the autograded points; the bonus may go past them
        spread["Total (autograded and bonus, less late penalties)"] = ([r.total for r in graded], total)
    return spread


def histograms(spread: Spread) -> str:
    """One PNG, as a data: URL, with a histogram per entry of spread; "" when there is nothing to plot."""
    if not spread:
        return ""
    plt = pyplot()
    columns = 3
    rows = -(-len(spread) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 2.8 * rows), squeeze=False)
    for axis, (label, (scores, most)) in zip(axes.flat, spread.items()):
        axis.hist(scores, bins=10, range=(0, max(most, *scores) or 1), color="#4878a8", edgecolor="white")
        axis.set_title(f"{label}\n(mean {sum(scores) / len(scores):.1f} of {most:g}, n={len(scores)})", fontsize=9)
        axis.set_xlabel("points", fontsize=8)
        axis.set_ylabel("students", fontsize=8)
        axis.yaxis.get_major_locator().set_params(integer=True)
    for axis in list(axes.flat)[len(spread):]:
        axis.set_visible(False)
    return data_url(figure)


def lateness_plot(late: list[StudentResult]) -> str:
    """A histogram of hours late, as a data: URL."""
    figure, axis = pyplot().subplots(figsize=(6, 2.4))
    axis.hist([r.late_seconds / 3600 for r in late], bins=12, color="#a86048", edgecolor="white")
    axis.set_xlabel("hours late", fontsize=8)
    axis.set_ylabel("students", fontsize=8)
    axis.yaxis.get_major_locator().set_params(integer=True)
    return data_url(figure)


def pyplot() -> ModuleType:
    """matplotlib's pyplot, drawing without a display (the grader runs on servers); imported only for a report."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def data_url(figure: "Figure") -> str:
    """figure as an embedded PNG (a data: URL, which the page's policy allows), closed."""
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    pyplot().close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def check_rows(graded: list[StudentResult]) -> list[str]:
    """Table rows, one per check that failed for anyone, most failures first: its verdicts and slips, with counts
    and example students."""
    failures: dict[tuple[str, str], FailedCheck] = {}  # by (question, check)
    for r in graded:
        named = {test.name: test for question in r.questions.values() for test in question.tests}
        for q, question in r.questions.items():
            for test in question.tests:
                if test.passed:
                    continue
                # a message merged into an earlier check's is counted as what that check said
                said_by = named.get(test.same_as, test)
                entry = failures.setdefault((q, test.name), FailedCheck())
                entry.students.add(r.student_id)
                said = "slip: " + verdict(said_by) if test.failure == SLIP else verdict(said_by)
                entry.verdicts[said] += 1
                entry.who.setdefault(said, set()).add(r.student_id)
                for key in test.slips:
                    entry.slips[key] += 1
                    entry.slipped.setdefault(key, set()).add(r.student_id)
    rows = []
    for (q, name), entry in sorted(failures.items(), key=lambda item: (-len(item[1].students), item[0])):
        verdicts = "".join(f"<li><b>{count}</b> &times; {html.escape(said)} <span class='who'>"
                           f"({examples(entry.who[said])})</span></li>"
                           for said, count in ranked(entry.verdicts)[:VERDICTS_SHOWN])
        hidden = len(entry.verdicts) - VERDICTS_SHOWN
        if hidden > 0:
            verdicts += f"<li>{hidden} other verdict(s)</li>"
        slips = "".join(f"<li><b>{count}</b> &times; {html.escape(key)} <span class='who'>"
                        f"({examples(entry.slipped[key])})</span></li>" for key, count in ranked(entry.slips))
        rows.append(f"<tr><td>{html.escape(BY_ID[q].title)}</td><td>{html.escape(name)}</td>"
                    f"<td class='n'>{len(entry.students)} of {len(graded)}</td><td><ul>{verdicts}</ul></td>"
                    f"<td>{'<ul>' + slips + '</ul>' if slips else ''}</td></tr>")
    return rows


def slip_totals(graded: list[StudentResult]) -> dict[str, set[str]]:
    """{slip key: students it was named for}, over every check."""
    found: dict[str, set[str]] = {}
    for r in graded:
        for question in r.questions.values():
            for test in question.tests:
                for key in test.slips:
                    found.setdefault(key, set()).add(r.student_id)
    return found


def needs_person(results: Iterable[StudentResult]) -> tuple[list[PersonEntry], list[PersonEntry], list[PersonEntry]]:
    """(manual grading left, REVIEW, ERROR): [(student, why)] each."""
    manual: list[PersonEntry] = []
    review: list[PersonEntry] = []
    error: list[PersonEntry] = []
    for r in sorted(results, key=lambda r: r.student_id):
        if r.error:
            error.append((r.student_id, f"{r.error} ({r.error_cause.value if r.error_cause else 'cause unknown'}; "
                                        f"see {r.error_file or 'the run log'})"))
            continue
        pending = [f"{BY_ID[q].title} ({question.manual_max:g} points)" for q, question in r.questions.items()
                   if question.manual_pending]
        if pending:
            manual.append((r.student_id, "; ".join(pending)))
        reviews = [question.review for question in r.questions.values() if question.review]
        if r.status.startswith("REVIEW") or r.flags or reviews:
            review.append((r.student_id, r.status if r.status.startswith("REVIEW") else "; ".join(
                reviews or [f"the notebook uses {', '.join(r.flags)}"])))
    return manual, review, error


def person_list(title: str, entries: list[PersonEntry], empty: str) -> str:
    if not entries:
        return f"<h3>{html.escape(title)}: none</h3><p class='quiet'>{html.escape(empty)}</p>"
    items = "".join(f"<li><b>{html.escape(student)}</b>: {html.escape(why)}</li>" for student, why in entries)
    return f"<h3>{html.escape(title)}: {len(entries)}</h3><ul class='people'>{items}</ul>"


def from_gradebook(waiting: dict[str, list[str]]) -> tuple[list[PersonEntry], list[PersonEntry], list[PersonEntry]]:
    """needs_person's lists from the gradebook's account ({student: records.final.FinalGrade.needs_person})."""
    manual: list[PersonEntry] = []
    review: list[PersonEntry] = []
    error: list[PersonEntry] = []
    for student, reasons in sorted(waiting.items()):
        for why in reasons:
            kind = error if why.startswith("ERROR") else review if why.startswith("REVIEW") else manual
            kind.append((student, why))
    return manual, review, error


def cohort_html(results: Iterable[StudentResult], rejected: Sequence[Rejected] = (),
                waiting: dict[str, list[str]] | None = None) -> str:
    """The page of report.html for results (StudentResults) and the entries of SUBMISSIONS that were not taken.
    waiting, where given, is who needs a person as the gradebook has it ({student: FinalGrade.needs_person}), so
    that what a TA has graded by hand since autograde is no longer listed."""
    results = list(results)
    graded = [r for r in results if not r.error]
    e = html.escape
    spread = distributions(graded)
    picture = histograms(spread)
    summary_rows = "".join(
        f"<tr><td>{e(label)}</td><td class='n'>{len(scores)}</td><td class='n'>{sum(scores) / len(scores):.2f}</td>"
        f"<td class='n'>{sorted(scores)[len(scores) // 2]:.2f}</td><td class='n'>{min(scores):.2f}</td>"
        f"<td class='n'>{max(scores):.2f}</td><td class='n'>{most:g}</td>"
        f"<td class='n'>{sum(s >= most - 1e-9 for s in scores)}</td></tr>" for label, (scores, most) in spread.items())
    checks = check_rows(graded)
    slips = "".join(f"<li><b>{len(students)}</b> &times; {e(key)} ({examples(students)})</li>"
                    for key, students in sorted(slip_totals(graded).items(), key=lambda kv: (-len(kv[1]), kv[0])))
    late = sorted((r for r in results if r.late_seconds > 0), key=lambda r: (-r.late_seconds, r.student_id))
    late_items = "".join(f"<li><b>{e(r.student_id)}</b>: {r.late_seconds / 3600:.1f} hours late, "
                         f"{r.late_penalty:.2f} points off</li>" for r in late)
    manual, review, error = needs_person(results) if waiting is None else from_gradebook(waiting)
    errors = sum(1 for r in results if r.error)
    not_taken = "".join(f"<li><b>{e(entry.name)}</b>: {e(entry.status)}</li>" for entry in rejected)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{POLICY}">
<title>Normalization layers: the cohort</title>
<style>body{{font-family:sans-serif;max-width:75em;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;width:100%;margin:.5em 0 1.5em}}td,th{{border:1px solid #ccc;padding:.3em;
text-align:left;vertical-align:top;overflow-wrap:anywhere}}table.checks{{table-layout:fixed}}td.n{{text-align:right;white-space:nowrap}}ul{{margin:.2em 0;padding-left:1.2em}}
.who,.quiet{{color:#666}}.needs{{background:#fff6e0;border:1px solid #e0c070;padding:.5em 1em}}
img{{max-width:100%}}</style></head><body>
<h1>Normalization layers: the cohort</h1>
<p>{len(results)} students: {len(graded)} graded, {errors} not graded because the grading machine failed
(ERROR){f", and {len(rejected)} entries that are not submissions" if rejected else ""}. These are autograde's points;
the final grades, with the TA's, come from <code>python -m grading export</code>.</p>
<section class="needs" id="needs-a-person"><h2>Who needs a person</h2>
{person_list("To grade by hand (written answers, a bonus)", manual, "nothing is left to grade by hand")}
{person_list("REVIEW", review, "no submission was flagged for review")}
{person_list("ERROR (grade again: run the same command)", error, "the grading machine failed no one")}
{"<h3>Not taken as submissions: " + str(len(rejected)) + "</h3><ul>" + not_taken + "</ul>" if rejected else ""}
</section>
<h2 id="distributions">How the points spread</h2>
{f'<img id="histograms" alt="a histogram of the points of each question and of the total" src="{picture}">'
 if picture else "<p>No student was graded.</p>"}
<table><tr><th>question</th><th>graded</th><th>mean</th><th>median</th><th>min</th><th>max</th><th>of</th>
<th>full marks</th></tr>{summary_rows}</table>
<h2 id="checks">Checks that failed, most often first</h2>
{"<table class='checks'><tr><th style='width:13%'>question</th><th style='width:20%'>check</th>"
 "<th style='width:7%'>failed</th><th>most common verdicts (example students)</th><th style='width:18%'>slips named"
 "</th></tr>" + "".join(checks) + "</table>" if checks else "<p>Every check passed for everyone.</p>"}
<h2 id="slips">Slips, over all checks</h2>
{"<ul>" + slips + "</ul>" if slips else "<p>No slip was named.</p>"}
<h2 id="lateness">Lateness</h2>
{f"<p>{len(late)} of {len(results)} handed in late.</p>" if late else "<p>No one handed in late.</p>"}
{f'<img id="lateness-plot" alt="a histogram of hours late" src="{lateness_plot(late)}"><ul>{late_items}</ul>'
 if late else ""}
</body></html>
"""


def write_report(out_dir: str | os.PathLike[str], results: Iterable[StudentResult], rejected: Sequence[Rejected] = (),
                 waiting: dict[str, list[str]] | None = None) -> Path:
    """Write OUT/report.html (waiting: as for cohort_html); return its path."""
    path = Path(out_dir) / REPORT_FILE
    write_atomic(path, cohort_html(results, rejected, waiting))
    return path
