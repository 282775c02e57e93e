"""Submissions made by filling the student regions of the release.

A submission is described by its answers, one per region, and built from the released files: that is how the
demo's sample students, the benchmark's submissions and the tests' catalogues (mutants, attacks, honest students)
are written, without copying the assignment.
"""
import base64
import json
import os
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from grading.assignment import NOTEBOOK, PYFILE, PYFILE_REGIONS, TEXT_STUB
from grading.authoring.regions import STUDENT_BEGIN, STUDENT_END, marked_regions, reference_answers, solution_cells


def fill_code(text: str, answers: Sequence[str | None]) -> str:
    """Replace the stub inside each student region of text by answers[i] (None keeps the stub)."""
    lines = text.split("\n")
    regions = marked_regions(text, STUDENT_BEGIN, STUDENT_END)
    if len(answers) != len(regions):
        raise ValueError(f"{len(answers)} answers for {len(regions)} student regions")
    for (first, last), answer in reversed(list(zip(regions, answers))):
        if answer is None:
            continue
        opening = lines[first - 1]
        indent = opening[:len(opening) - len(opening.lstrip())]
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
    regions: dict[str, str] = field(default_factory=dict)
    files: dict[str, str | bytes] = field(default_factory=dict)
    notebook_edits: list[Callable[[NotebookNode], object]] = field(default_factory=list)
    file_edits: dict[str, Callable[[str], str]] = field(default_factory=dict)


def build_submission(answers: Answers, release_dir: str | os.PathLike[str], source_dir: str | os.PathLike[str],
                     out_dir: str | os.PathLike[str]) -> Path:
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
    for relative, change in answers.file_edits.items():
        path = out_dir / relative
        path.write_text(change(path.read_text(encoding="utf-8")), encoding="utf-8")
    return out_dir


def load_example(folder: str | os.PathLike[str]) -> Answers:
    """Answers from an example folder: example.json ({"base", "files": {path: base64}}) plus one file per region,
    named <region>.py for code and <region>.md for written answers."""
    folder = Path(folder)
    spec = json.loads((folder / "example.json").read_text(encoding="utf-8"))
    regions = {path.stem: path.read_text(encoding="utf-8") for path in sorted(folder.iterdir())
               if path.suffix in (".py", ".md") and path.name != "README.md"}
    files: dict[str, str | bytes] = {name: base64.b64decode(content) for name, content in spec.get("files", {}).items()}
    return Answers(base=spec.get("base", "stub"), regions=regions, files=files)
