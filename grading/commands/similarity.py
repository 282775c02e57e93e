"""`python -m grading similarity SUBMISSIONS --out DIR`: pairs of students ranked by how much of their own work they
share, with the shared passages side by side. The report is evidence for a person to read; it accuses no one.

A student's own work is what they wrote in the answer regions: in batchnormalization.py the code between the student
markers, in norm.ipynb the answer cells (nbgrader solution cells): the code between the markers, and the written
answers. Where a student deleted the markers, the whole file (or cell) is compared instead, with a note. Submissions
are found and unpacked by pipeline/intake.py exactly as autograde finds them (folders, zips, nbgrader trees); files are
only read as text, so no student code runs.

Fingerprints are copydetect's (MOSS-style): code is tokenized, with names, strings and comments normalized away, so
renamed variables and added comments change nothing, and every run of MATCH_CHARACTERS characters is a fingerprint.
Fingerprints that also occur in the provided material (the source files with the reference solutions, the released
stubs, normlab/ and the public tests) are dropped: what is left is each student's own work, and only that is
compared. A pair's score is the share of their own work found in the other's, over the regions both answered:
(matched characters of A + of B) / (own characters of A + of B). Regions weigh by their size, so a coincidence in a
one-line answer moves the score little.
"""
import csv
import functools
import html
import io
import logging
import re
import tempfile
import textwrap
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Iterator, Sequence

import nbformat
import numpy as np
from copydetect import CodeFingerprint, compare_files
from copydetect.utils import get_token_coverage

from grading.assignment import CODE_STUB, NOTEBOOK, PYFILE, PYFILE_REGIONS, TEXT_STUB
from grading.authoring.regions import STUDENT_BEGIN, STUDENT_END, cell_id, marked_regions, solution_cells, stub_pyfile
from grading.failures import MALFORMED
from grading.handoff import Submission
from grading.pipeline.intake import discover, unpack
from grading.settings import REPO, ConfigurationError

logger = logging.getLogger(__name__)

# The shortest run that counts as shared: characters of normalized code (where `running_mean = momentum * ...` is
# `V=V*...`, about a dozen characters a statement), or of prose. Shorter runs are idioms any two students write alike.
# copydetect's default for code, 25, misses copies whose statements were reordered: answers here are short (20 to 300
# normalized characters a region), so a reordering breaks most runs that long.
MATCH_CHARACTERS = {"code": 20, "prose": 50}
CSV_COLUMNS = ("student_a", "student_b", "score", "region")
DISCLAIMER = ("It ranks pairs of students by how much of their own work is alike and shows the shared passages, as "
              "evidence for a person to read. Work is alike for innocent reasons too (a common source, a study "
              "group, a standard idiom), and only a person who reads the passages, and talks to the students, can "
              "judge. The released stubs, the provided code and the reference solution are not counted.")


@dataclass
class Answer:
    """One region of one student's work: its kind ("code" or "prose"), its text as shown, and (computed when first
    needed) the copydetect fingerprint of what is their own."""

    kind: str
    text: str
    fingerprinter: "Fingerprinter" = field(repr=False)

    @functools.cached_property
    def fingerprint(self) -> CodeFingerprint:
        return self.fingerprinter.own(self.kind, self.text)

    @property
    def own_characters(self) -> int:
        return int(self.fingerprint.token_coverage)


@dataclass
class Student:
    """What one student wrote, by region, and notes on what could not be compared. whole_pyfile is their
    batchnormalization.py in full, compared instead of its regions where either student of a pair lost the markers."""

    student_id: str
    answers: dict[str, Answer] = field(default_factory=dict)
    whole_pyfile: Answer | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class SharedRegion:
    """A region where a pair's answers share passages: matched characters of each side's own work, and copydetect's
    slices (a 2 x n array of starts and ends in each side's text) of the shared passages."""

    region: str
    answers: tuple[Answer, Answer]
    matched: tuple[int, int]
    slices: tuple[np.ndarray, np.ndarray]


@dataclass
class Pair:
    """Two students (in name order), their score, and the regions where they share passages, most matched first."""

    student_a: str
    student_b: str
    score: float
    shared: list[SharedRegion]

    @property
    def matched(self) -> int:
        return sum(sum(region.matched) for region in self.shared)


class Fingerprinter:
    """Fingerprints of answers, minus those of the provided material (given as {kind: [texts]})."""

    def __init__(self, provided: dict[str, list[str]]) -> None:
        self.provided = {kind: set().union(*(self.fingerprint(kind, text).hashes for text in texts))
                         for kind, texts in provided.items()}

    @staticmethod
    def fingerprint(kind: str, text: str) -> CodeFingerprint:
        # A window of 1 keeps every run of MATCH_CHARACTERS (copydetect's default too): answers are short, and
        # copydetect hashes with Python's hash(), which changes from run to run, so winnowing, which keeps the
        # smallest hash of each window, would make the scores change from run to run.
        code = kind == "code"
        return CodeFingerprint("answer", MATCH_CHARACTERS[kind], 1, filter=code, language="python" if code else None,
                               fp=io.StringIO(text))

    def own(self, kind: str, text: str) -> CodeFingerprint:
        """The fingerprint of text without the provided material's. copydetect's own boilerplate option is not used:
        in copydetect 0.5 it also drops a passage that repeats within one answer."""
        fingerprint = self.fingerprint(kind, text)
        provided = self.provided[kind]
        fingerprint.hashes -= provided
        fingerprint.hash_idx = {h: at for h, at in fingerprint.hash_idx.items() if h not in provided}
        fingerprint.token_coverage = get_token_coverage(fingerprint.hash_idx, fingerprint.k,
                                                        len(fingerprint.filtered_code))
        return fingerprint


def prose(markdown: str) -> str:
    """A written answer as compared and shown: without the released placeholder, each paragraph on one line, so
    re-wrapping a copied paragraph changes nothing."""
    paragraphs = re.split(r"\n\s*\n", markdown.replace(TEXT_STUB, ""))
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in paragraphs if paragraph.strip())


def between_markers(text: str) -> list[str]:
    """The dedented code of each student region of text."""
    lines = text.split("\n")
    return [textwrap.dedent("\n".join(lines[first:last + 1])).strip("\n")
            for first, last in marked_regions(text, STUDENT_BEGIN, STUDENT_END)]


def provided_material(source_dir: Path) -> tuple[dict[str, list[str]], dict[str, str]]:
    """({kind: [texts]} of everything students were given or that answers the questions, and {grade_id: kind} of
    the notebook's answer cells), from the assignment's sources."""
    source_dir = Path(source_dir)
    pyfile = (source_dir / PYFILE).read_text(encoding="utf-8")
    nb = nbformat.read(source_dir / NOTEBOOK, as_version=4)
    answer_cells = solution_cells(nb)
    code = [pyfile, stub_pyfile(pyfile), CODE_STUB]
    code += [cell.source for cell in nb.cells if cell.cell_type == "code"]
    code += [stub_pyfile(cell.source) for cell in answer_cells.values() if cell.cell_type == "code"]
    code += [path.read_text(encoding="utf-8") for folder in ("normlab", "tests")
             for path in sorted((source_dir / folder).glob("*.py"))]
    prose_texts = [prose(cell.source) for cell in nb.cells if cell.cell_type == "markdown"] + [TEXT_STUB]
    kinds = {grade_id: "code" if cell.cell_type == "code" else "prose" for grade_id, cell in answer_cells.items()}
    return {"code": code, "prose": prose_texts}, kinds


def read_student(submission: Submission, fingerprinter: Fingerprinter, notebook_kinds: dict[str, str]) -> Student:
    """A Student from one intake submission; every problem becomes a note."""
    student = Student(submission.student_id)
    with tempfile.TemporaryDirectory(prefix="similarity-") as scratch:
        intake = unpack(submission, scratch)
        problems = [problem for part, problem in intake.problems.items() if part != "bonus"]
        student.notes += list(dict.fromkeys(intake.notes + problems))  # a broken zip is one problem, not two
        written: dict[str, tuple[str, str]] = {}
        if intake.pyfile is not None:
            written.update(pyfile_answers(intake.pyfile.read_text(encoding="utf-8", errors="replace"), student,
                                          fingerprinter))
        if intake.notebook is not None:
            written.update(notebook_answers(intake.notebook.read_bytes(), student, notebook_kinds))
    for region, (kind, text) in written.items():
        answer = Answer(kind, text, fingerprinter)
        if answer.own_characters:
            student.answers[region] = answer
    if not student.answers:
        student.notes.append("nothing of their own to compare: the answers are empty, the released stubs, or "
                             "provided or reference code")
    return student


def pyfile_answers(text: str, student: Student, fingerprinter: Fingerprinter) -> dict[str, tuple[str, str]]:
    """{region: ("code", text)} of batchnormalization.py; the whole file as one region if markers are missing."""
    student.whole_pyfile = Answer("code", text, fingerprinter)
    regions = between_markers(text)
    if len(regions) == len(PYFILE_REGIONS):
        return {region: ("code", code) for region, code in zip(PYFILE_REGIONS, regions)}
    student.notes.append(f"{PYFILE} has {len(regions)} complete student regions instead of {len(PYFILE_REGIONS)} "
                         f"(markers deleted or edited); the whole file was compared")
    return {PYFILE: ("code", text)}


def notebook_answers(raw: bytes, student: Student, notebook_kinds: dict[str, str]) -> dict[str, tuple[str, str]]:
    """{grade_id: (kind, text)} of the notebook's answer cells; a code cell without its markers counts whole."""
    try:
        nb = nbformat.reads(raw.decode("utf-8", errors="replace"), as_version=4)
        cells = {cell_id(cell): cell.source for cell in nb.cells if cell_id(cell) in notebook_kinds}
        if not all(isinstance(source, str) for source in cells.values()):
            raise TypeError("an answer cell's source is not text")
    except MALFORMED as error:  # nbformat, and cells of the wrong shape, raise JSON, key, type and attribute errors
        student.notes.append(f"{NOTEBOOK} could not be read as a notebook ({type(error).__name__}: {error}); its "
                             f"answers were not compared")
        return {}
    missing = [grade_id for grade_id in notebook_kinds if grade_id not in cells]
    if missing:
        student.notes.append(f"{NOTEBOOK} has no answer cell {', '.join(missing)} (deleted, or its nbgrader metadata "
                             f"was edited); not compared")
    answers: dict[str, tuple[str, str]] = {}
    for grade_id, source in cells.items():
        if notebook_kinds[grade_id] == "prose":
            answers[grade_id] = ("prose", prose(source))
            continue
        regions = between_markers(source)
        if len(regions) != 1:
            student.notes.append(f"the cell {grade_id} has no complete student region; the whole cell was compared")
        answers[grade_id] = ("code", regions[0] if len(regions) == 1 else source)
    return answers


def comparable(a: Student, b: Student, regions: Sequence[str]) -> Iterator[tuple[str, Answer, Answer]]:
    """(region, answer of a, answer of b) for each region both answered, in the order of regions; where either lost
    the markers of batchnormalization.py, the two whole files take the place of its regions."""
    whole = None
    if (PYFILE in a.answers or PYFILE in b.answers) and a.whole_pyfile and b.whole_pyfile:
        whole = (a.whole_pyfile, b.whole_pyfile)
    for region in regions:
        if whole and region in PYFILE_REGIONS:
            continue
        if whole and region == PYFILE:
            if whole[0].own_characters and whole[1].own_characters:
                yield region, *whole
        elif region in a.answers and region in b.answers:
            yield region, a.answers[region], b.answers[region]


def compare(a: Student, b: Student, regions: Sequence[str]) -> Pair:
    """The Pair of students a and b."""
    shared, own = [], 0
    for region, answer_a, answer_b in comparable(a, b, regions):
        own += answer_a.own_characters + answer_b.own_characters
        _, (share_a, share_b), slices = compare_files(answer_a.fingerprint, answer_b.fingerprint)
        if share_a or share_b:
            matched = (round(share_a * answer_a.own_characters), round(share_b * answer_b.own_characters))
            shared.append(SharedRegion(region, (answer_a, answer_b), matched, slices))
    shared.sort(key=lambda region: -sum(region.matched))
    score = sum(sum(region.matched) for region in shared) / own if own else 0.0
    return Pair(a.student_id, b.student_id, score, shared)


def rank(students: list[Student], regions: Sequence[str]) -> list[Pair]:
    """Every pair that shares anything, highest score first (then most matched characters, then by name)."""
    pairs = [compare(a, b, regions) for a, b in combinations(students, 2)]
    return sorted((pair for pair in pairs if pair.shared),
                  key=lambda pair: (-pair.score, -pair.matched, pair.student_a, pair.student_b))


def write_csv(pairs: list[Pair], path: Path) -> None:
    """similarity.csv: every pair, its score and the regions it shares."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for pair in pairs:
            writer.writerow([pair.student_a, pair.student_b, f"{pair.score:.3f}",
                             " ".join(region.region for region in pair.shared)])


def highlighted(answer: Answer, slices: np.ndarray) -> str:
    """The answer's text as HTML, its shared passages marked and every character of it escaped: students' answers
    hold what they like, <script> included (copydetect's own highlighter returns the text unescaped when it finds
    nothing to mark)."""
    text, parts, end = answer.text, [], 0
    for start, stop in zip(*slices) if len(slices) == 2 else ():
        parts += [html.escape(text[end:start]), "<mark>", html.escape(text[start:stop]), "</mark>"]
        end = stop
    return "".join(parts) + html.escape(text[end:])


STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 110em; }
.disclaimer { border: 2px solid #c60; background: #fff4e5; padding: 0.8em 1em; font-size: 1.1em; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
.side { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }
pre { background: #f6f6f6; padding: 0.5em; overflow: auto; max-height: 40em; white-space: pre-wrap; }
mark { background: #ffd27f; }
"""


def write_html(pairs: list[Pair], students: list[Student], notes: list[str], path: Path, top: int) -> None:
    """The report: the disclaimer, the ranking, the top pairs' shared regions side by side, and the notes."""
    e = html.escape
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Similarity report</title>"
             f"<style>{STYLE}</style></head><body><h1>Similarity report</h1>",
             f"<p class='disclaimer'><strong>This report accuses no one.</strong> {e(DISCLAIMER)}</p>",
             f"<p>{len(students)} students, {len(pairs)} pairs with shared passages. Score: the share of the "
             f"pair's own work (in the regions both answered) found in the other's; a passage counts from "
             f"{MATCH_CHARACTERS['code']} characters of normalized code or {MATCH_CHARACTERS['prose']} of prose."
             f"</p>"]
    shown = pairs[:max(top, 0)]
    if pairs:
        parts.append("<h2>Ranking</h2><table><tr><th>#</th><th>student A</th><th>student B</th><th>score</th>"
                     "<th>regions with shared passages</th></tr>")
        for number, pair in enumerate(pairs, 1):
            name = f"<a href='#pair-{number}'>{number}</a>" if number <= len(shown) else str(number)
            parts.append(f"<tr><td>{name}</td><td>{e(pair.student_a)}</td><td>{e(pair.student_b)}</td>"
                         f"<td>{pair.score:.3f}</td><td>{e(' '.join(r.region for r in pair.shared))}</td></tr>")
        parts.append("</table>")
        if len(shown) < len(pairs):
            parts.append(f"<p>The first {len(shown)} pairs are shown below (--top); the CSV lists all.</p>")
    for number, pair in enumerate(shown, 1):
        parts.append(f"<h2 id='pair-{number}'>{number}. {e(pair.student_a)} and {e(pair.student_b)}: "
                     f"{pair.score:.3f}</h2>")
        for region in pair.shared:
            parts.append(f"<h3>{e(region.region)}</h3><div class='side'>")
            for student, answer, matched, slices in zip((pair.student_a, pair.student_b), region.answers,
                                                        region.matched, region.slices):
                parts.append(f"<div><p>{e(student)}: {matched / answer.own_characters:.0%} of their own "
                             f"{answer.kind} here is shared</p><pre>{highlighted(answer, slices)}</pre></div>")
            parts.append("</div>")
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(note)}</li>" for note in notes) + "</ul>")
    parts.append("</body></html>")
    Path(path).write_text("\n".join(parts), encoding="utf-8")


def similarity(submissions_dir: Path, out_dir: Path, top: int, source_dir: Path = REPO) -> None:
    """Write out_dir/similarity.csv (every pair that shares anything) and out_dir/similarity.html (the top pairs side
    by side) for the submissions in submissions_dir, and print the ranking's top. ConfigurationError where
    submissions_dir is not a folder."""
    submissions_dir, out_dir = Path(submissions_dir), Path(out_dir)
    if not submissions_dir.is_dir():
        raise ConfigurationError(f"{submissions_dir} is not a folder; pass the folder that holds the <student_id>/ "
                                 "folders, <student_id>.zip files or nbgrader's submitted/ tree")
    provided, notebook_kinds = provided_material(source_dir)
    fingerprinter = Fingerprinter(provided)
    submissions, rejected = discover(submissions_dir)
    students = [read_student(submission, fingerprinter, notebook_kinds) for submission in submissions]
    regions = [*PYFILE_REGIONS, PYFILE, *notebook_kinds]
    pairs = rank([student for student in students if student.answers], regions)
    notes = [f"{entry.name}: skipped, {entry.status}" for entry in rejected]
    notes += [f"{student.student_id}: {note}" for student in students for note in student.notes]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(pairs, out_dir / "similarity.csv")
    write_html(pairs, students, notes, out_dir / "similarity.html", top)
    print(f"Similarity of {len(students)} students' own work: {len(pairs)} pairs share passages.")
    for pair in pairs[:10]:
        print(f"  {pair.score:.3f}  {pair.student_a}  {pair.student_b}  ({' '.join(r.region for r in pair.shared)})")
    print("This ranks pairs and shows evidence; it accuses no one. Read the passages in similarity.html before "
          "drawing any conclusion.")
    if notes:
        logger.warning(f"{len(notes)} notes on the submissions (what could not be read or compared) are in "
                       "similarity.html.")
    logger.info(f"Wrote {out_dir / 'similarity.csv'} and {out_dir / 'similarity.html'}")
