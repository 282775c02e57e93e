"""The documentation holds together: every relative link of README.md, docs/*.md and BENCHMARKS.md resolves, down
to its #anchor, and the student README's links resolve inside the student bundle, where it is read; README.md leads
to every doc; BENCHMARKS.md opens with its summary of figures, each said to be measured or estimated."""
import re
from pathlib import Path

import pytest

from conftest import REPO
from grading.assignment import NOTEBOOK, PYFILE
from grading.authoring.course import BUNDLED, student_readme

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
EXTERNAL = ("http://", "https://", "mailto:")
SUMMARY_COLUMNS = ["figure", "what it means", "hardware", "command", "date", "measured or estimated"]
KINDS = ("measured", "**estimated", "goals, **not measured", "targets, **not measured")


def documents() -> list[Path]:
    return [REPO / "README.md", REPO / "BENCHMARKS.md", *sorted((REPO / "docs").glob("*.md"))]


def without_code(text: str) -> str:
    """text without code blocks and inline code, where brackets and parentheses are not links."""
    return re.sub(r"`[^`]*`", "", re.sub(r"```.*?```", "", text, flags=re.S))


def anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in path (a repeated heading's as GitHub numbers it: name, name-1, ...)."""
    found: set[str] = set()
    for heading in re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S),
                              re.M):
        name = anchor(heading)
        number, unique = 0, name
        while unique in found:
            number += 1
            unique = f"{name}-{number}"
        found.add(unique)
    return found


def broken_links(path: Path) -> list[str]:
    """The relative links of path whose file, or whose #anchor in that file, does not exist."""
    broken = []
    for target in LINK.findall(without_code(path.read_text(encoding="utf-8"))):
        if target.startswith(EXTERNAL):
            continue
        file, _, fragment = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists():
            broken.append(f"{target}: no file {linked}")
        elif fragment and (linked.suffix != ".md" or fragment not in anchors(linked)):
            broken.append(f"{target}: no heading #{fragment} in {linked.name}")
    return broken


@pytest.mark.parametrize("path", documents(), ids=lambda path: str(path.relative_to(REPO)))
def test_every_relative_link_resolves(path: Path) -> None:
    assert broken_links(path) == []


def test_a_link_to_a_missing_file_or_heading_is_caught(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## What grading costs\n\n## What grading costs\n")
    (tmp_path / "doc.md").write_text(
        "# Doc\n\n[fine](other.md#what-grading-costs), [repeated](other.md#what-grading-costs-1), [here](#doc), "
        "[web](https://example.org/x#y), `[not a link](nowhere.md)`\n\n"
        "[gone](missing.md), [no heading](other.md#what-grading-cost), [not markdown](doc.txt#x)\n")
    (tmp_path / "doc.txt").write_text("")
    assert broken_links(tmp_path / "doc.md") == [
        f"missing.md: no file {tmp_path / 'missing.md'}",
        "other.md#what-grading-cost: no heading #what-grading-cost in other.md",
        "doc.txt#x: no heading #x in doc.txt"]


def links_outside_the_bundle(readme: str) -> list[str]:
    """The relative links of the student bundle's README that lead to no file the bundle holds."""
    bundled = [NOTEBOOK, PYFILE, "README.md", *BUNDLED]
    return [target for target in LINK.findall(without_code(readme)) if not target.startswith(EXTERNAL)
            and not any(target.partition("#")[0] == entry or target.startswith(entry + "/") for entry in bundled)]


def test_the_student_readme_links_only_to_what_the_bundle_holds() -> None:
    assert links_outside_the_bundle(student_readme()) == []


def test_a_student_readme_link_to_the_repository_is_caught() -> None:
    readme = "[tests](tests/test_batchnorm.py), [loader](normlab/data.py), [figures](../BENCHMARKS.md), [TA](grading.md)"
    assert links_outside_the_bundle(readme) == ["../BENCHMARKS.md", "grading.md"]


def test_the_readme_leads_to_every_doc() -> None:
    linked = {(REPO / target.partition("#")[0]).resolve()
              for target in LINK.findall(without_code((REPO / "README.md").read_text(encoding="utf-8")))}
    assert set(documents()[1:]) <= linked, set(documents()[1:]) - linked


def test_benchmarks_open_with_a_summary_whose_every_figure_is_measured_or_estimated() -> None:
    text = (REPO / "BENCHMARKS.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings[0] == "Summary" and "History" in headings, headings
    summary = text[text.index("## Summary"):text.index("\n## ", text.index("## Summary") + 1)]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in summary.splitlines() if line.startswith("|") and not line.startswith("|---")]
    assert rows[0] == SUMMARY_COLUMNS
    assert len(rows) > 10
    for row in rows[1:]:
        assert len(row) == len(SUMMARY_COLUMNS), row
        assert row[-1].startswith(KINDS), row
        assert row[-1].startswith("measured") == ("estimated" not in row[-1] and "not measured" not in row[-1]), row
