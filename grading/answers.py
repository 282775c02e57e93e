"""Solution regions of the source files, and submissions made by filling the student regions of the release.

The source marks solutions with nbgrader's `### BEGIN SOLUTION` / `### END SOLUTION`; the release replaces each
region by the code stub of settings.CODE_STUB, whose first and last lines are markers a machine can find. A
submission is then described by its answers, one per region, and built from the released files: that is how the
demo's sample students, the mutation tests and the attack catalogue are written, without copying the assignment.
"""
import base64
import functools
import json
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbgrader.preprocessors import ClearSolutions

from grading.settings import CODE_STUB, NOTEBOOK, PYFILE, REPO, TEXT_STUB

HIDDEN = Path(__file__).resolve().parent / "hidden"

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
STUDENT_BEGIN, STUDENT_END = CODE_STUB.splitlines()[0], CODE_STUB.splitlines()[-1]
# The solution regions of batchnormalization.py, in the order they appear.
PYFILE_REGIONS = ("forward_train", "forward_test", "backward")


def marked_regions(text, begin, end):
    """(first, last) line indices of the lines strictly between each begin and end marker line."""
    lines, found, start = text.split("\n"), [], None
    for index, line in enumerate(lines):
        if begin in line:
            start = index + 1
        elif end in line and start is not None:
            found.append((start, index - 1))
            start = None
    return found


def region_code(text, begin=BEGIN_SOLUTION, end=END_SOLUTION):
    """The dedented code of each marked region of text."""
    lines = text.split("\n")
    return [textwrap.dedent("\n".join(lines[first:last + 1])) for first, last in marked_regions(text, begin, end)]


def cell_id(cell):
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def solution_cells(nb):
    """{grade_id: cell} of the notebook's answer cells (code and written)."""
    return {cell_id(c): c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("solution")}


def reference_answers(source_dir):
    """{file: {region: code}} of the solutions in the source files."""
    pyfile = (Path(source_dir) / PYFILE).read_text(encoding="utf-8")
    codes = region_code(pyfile)
    if len(codes) != len(PYFILE_REGIONS):
        raise ValueError(f"{PYFILE} has {len(codes)} solution regions; grading.answers expects {PYFILE_REGIONS}")
    nb = nbformat.read(Path(source_dir) / NOTEBOOK, as_version=4)
    notebook = {grade_id: region_code(cell.source)[0] for grade_id, cell in solution_cells(nb).items()}
    return {PYFILE: dict(zip(PYFILE_REGIONS, codes)), NOTEBOOK: notebook}


def secret_lines(source_dir):
    """Every non-blank line of a solution region or hidden test in the source files, stripped: none of them may
    appear in the student release."""
    texts = [(Path(source_dir) / PYFILE).read_text(encoding="utf-8")]
    texts += [cell.source for cell in nbformat.read(Path(source_dir) / NOTEBOOK, as_version=4).cells]
    lines = set()
    for text in texts:
        for begin, end in ((BEGIN_SOLUTION, END_SOLUTION), (BEGIN_HIDDEN, END_HIDDEN)):
            for code in region_code(text, begin, end):
                lines.update(line.strip() for line in code.split("\n") if line.strip())
    return lines


def hidden_test_lines():
    """The lines of the hidden suites, but for short generic ones (imports, brackets)."""
    return {line.strip() for path in sorted(HIDDEN.glob("*.py"))
            for line in path.read_text(encoding="utf-8").splitlines() if len(line.strip()) > 20}


@functools.lru_cache(maxsize=1)
def unreadable_lines():
    """What the grader's own messages may never quote: a line of a solution or of a hidden suite."""
    return frozenset(secret_lines(REPO) | hidden_test_lines())


def stub_pyfile(text):
    """The student version of a source .py file: each solution region becomes settings.CODE_STUB, through the
    same nbgrader code that stubs the notebook."""
    cell = nbformat.v4.new_code_cell(text)
    ClearSolutions(code_stub={"python": CODE_STUB}, enforce_metadata=False)._replace_solution_region(cell, "python")
    return cell.source


def fill_code(text, answers):
    """Replace the stub inside each student region of text by answers[i] (None keeps the stub)."""
    lines = text.split("\n")
    regions = marked_regions(text, STUDENT_BEGIN, STUDENT_END)
    if len(answers) != len(regions):
        raise ValueError(f"{len(answers)} answers for {len(regions)} student regions")
    for (first, last), answer in reversed(list(zip(regions, answers))):
        if answer is None:
            continue
        indent = re.match(r"\s*", lines[first - 1]).group(0)
        lines[first:last + 1] = textwrap.indent(textwrap.dedent(answer).strip("\n"), indent).split("\n")
    return "\n".join(lines)


@dataclass
class Answers:
    """A submission: its answers by region, what fills the regions it leaves out, and extra or replaced files.

    base: "stub" leaves unanswered regions as released; "reference" fills them with the source's solutions.
    regions: {PYFILE_REGIONS name or notebook grade_id: code or markdown}.
    files: {relative path: str or bytes}, written after the answered files (they may replace them).
    notebook_edits: functions that change the notebook node before it is written (tampering cases).
    file_edits: {relative path: function(text) -> text}, applied last to files already written.
    """

    base: str = "stub"
    regions: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    notebook_edits: list = field(default_factory=list)
    file_edits: dict = field(default_factory=dict)


def build_submission(answers, release_dir, source_dir, out_dir):
    """Write the submission described by answers into out_dir, starting from the released files."""
    release_dir, out_dir = Path(release_dir), Path(out_dir)
    unknown = set(answers.regions) - set(PYFILE_REGIONS) - set(solution_cells(
        nbformat.read(release_dir / NOTEBOOK, as_version=4)))
    if unknown:
        raise ValueError(f"no student region is called {sorted(unknown)}")
    fills = dict(reference_answers(source_dir)[PYFILE], **reference_answers(source_dir)[NOTEBOOK]) \
        if answers.base == "reference" else {}
    fills.update(answers.regions)
    out_dir.mkdir(parents=True, exist_ok=True)
    pyfile = (release_dir / PYFILE).read_text(encoding="utf-8")
    (out_dir / PYFILE).write_text(fill_code(pyfile, [fills.get(name) for name in PYFILE_REGIONS]), encoding="utf-8")
    nb = nbformat.read(release_dir / NOTEBOOK, as_version=4)
    for grade_id, cell in solution_cells(nb).items():
        if grade_id not in fills:
            continue
        if cell.cell_type == "code":
            cell.source = fill_code(cell.source, [fills[grade_id]])
        else:
            cell.source = cell.source.replace(TEXT_STUB, fills[grade_id].strip("\n"))
    for edit in answers.notebook_edits:
        edit(nb)
    nbformat.write(nb, out_dir / NOTEBOOK)
    for relative, content in answers.files.items():
        path = out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    for relative, edit in answers.file_edits.items():
        path = out_dir / relative
        path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    return out_dir


def load_example(folder):
    """Answers from an example folder: example.json ({"base", "files": {path: base64}}) plus one file per region,
    named <region>.py for code and <region>.md for written answers."""
    folder = Path(folder)
    spec = json.loads((folder / "example.json").read_text(encoding="utf-8"))
    regions = {path.stem: path.read_text(encoding="utf-8") for path in sorted(folder.iterdir())
               if path.suffix in (".py", ".md") and path.name != "README.md"}
    files = {name: base64.b64decode(content) for name, content in spec.get("files", {}).items()}
    return Answers(base=spec.get("base", "stub"), regions=regions, files=files)
