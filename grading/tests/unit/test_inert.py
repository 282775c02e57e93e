"""records/inert.py: what a student wrote keeps its formatting and loses everything that could run or that the
page's own CSS and scripts act on, alone and as nbconvert renders a notebook under the course's own
nbgrader_config.py, with nbgrader's formgrade and feedback templates (the browser test opens the real pages:
test_browser.py)."""
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jinja2 import Environment
from nbconvert.exporters import HTMLExporter
from nbgrader.server_extensions.formgrader import handlers
from traitlets.config import Config

from grading.authoring.course import write_config
from grading.nbgrader_support import course_config
from grading.records.inert import clean_html, markdown2html

ATTACKS = [
    '<img src="data:," onerror="document.title=1">',
    "<script>document.title=1</script>",
    "<svg onload=document.title=1></svg>",
    '<a href="javascript:document.title=1">a link</a>',
    "[a link](javascript:document.title=1)",
    '<a href="data:text/html,<script>document.title=1</script>">a link</a>',
    '<iframe src="https://example.org"></iframe>',
    '<p style="position:fixed;top:0">over the score</p><input id="q4_analysis">',
]


# Bootstrap's classes (the formgrader loads Bootstrap) and the formgrader's own ids, names and data attributes.
COVERS = [
    '<div class="modal-backdrop"></div>',
    '<a class="navbar-fixed-top btn btn-danger btn-block" href="https://example.org/login">sign in again</a>',
    '<p id="q4_analysis" name="q4_analysis" style="position:fixed;inset:0">over the score</p>',
    '<img name="getElementById" src="https://example.org/a.png">',
    '<a href="https://example.org" data-toggle="modal" data-target="#statusmessage" data-spy="affix" data-link="x" '
    'role="button" aria-hidden="true" tabindex="1" accesskey="s" target="_blank">a link</a>',
    '<p dir="rtl" lang="ar" hidden autofocus popover contenteditable>text</p>',
    '<div class="highlight modal-backdrop"><span class="n navbar-fixed-top">x</span></div>',
]
PAGE_HOOKS = {"class", "id", "name", "style", "role", "for", "target", "dir", "lang", "tabindex", "accesskey",
              "autofocus", "hidden", "popover", "contenteditable"}


class Hooks(HTMLParser):
    """What in a page its CSS and scripts can select or act on besides tag names: (attribute, value) for classes
    (each on its own), ids, names, styles, data-* and aria-* attributes and the like."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.found = set()
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in PAGE_HOOKS or name.startswith(("data-", "aria-")):
                self.found |= {(name, part) for part in (value or "").split()} if name == "class" else {(name, value)}


class Active(HTMLParser):
    """What in a page could run or restyle it: script elements with their text, embedded documents and forms,
    event handlers, style attributes, and javascript: or data: links."""

    RISKY_TAGS = {"script", "iframe", "object", "embed", "svg", "math", "input", "form", "style", "base", "meta"}

    def __init__(self, html: str) -> None:
        super().__init__()
        self.parts, self.in_script = [], False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.in_script = tag == "script"
        self.parts += [f"<{tag}>"] if tag in self.RISKY_TAGS else []
        for name, value in attrs:
            link = name in ("href", "src") and (value or "").strip().lower().startswith(("javascript:", "data:"))
            if name.startswith("on") or name == "style" or (link and not (tag == "img" and
                                                                           value.startswith("data:image/"))):
                self.parts.append(f"{tag} {name}={value}")

    def handle_data(self, data: str) -> None:
        if self.in_script:
            self.parts.append(data.strip())

    def handle_endtag(self, tag: str) -> None:
        self.in_script = False


# Where nbgrader's generate_feedback finds the CSS its feedback template inlines.
STATIC_CSS = str(Path(handlers.static_path, "node_modules", "bootstrap", "dist", "css"))


def render(source: str, cell: dict[str, Any] | None = None) -> str:
    env = Environment()
    env.filters["md"] = markdown2html
    return env.from_string("{{ source | md }}").render(source=source, cell=cell or {})


@pytest.mark.parametrize("attack", ATTACKS)
def test_nothing_active_survives_in_markdown_or_html(attack: str) -> None:
    assert not Active(render(attack)).parts, render(attack)
    assert not Active(clean_html(attack)).parts, clean_html(attack)
    assert "id=" not in clean_html('<p id="q4_analysis">a field of the formgrader\'s own</p>')


@pytest.mark.parametrize("cover", COVERS)
def test_nothing_the_pages_css_or_scripts_act_on_survives(cover: str) -> None:
    for html in (render(cover), clean_html(cover)):
        assert not Hooks(html).found, html


def test_an_honest_answer_keeps_its_formatting() -> None:
    answer = ("# Analysis\n\nBN is **stable**; <b>LN</b> is not, since $\\mu<\\sigma$ and $x^2$.\n\n"
              "| norm | acc |\n|---|---|\n| BN | 0.9 |\n\n"
              '<table><tr><th colspan="2" title="mean of 3 seeds">CIFAR-10</th></tr><tr><td>BN</td><td>91%</td></tr>'
              "</table>\n\n```python\nx = a < b\n```\n\n[the paper](https://arxiv.org/abs/1502.03167) "
              '![plot](attachment:plot.png) <img src="https://example.org/curves.png" width="300" alt="curves">')
    html = render(answer, {"attachments": {"plot.png": {"image/png": "iVBORw0KGgo="}}})
    for kept in ("<h1>Analysis</h1>", "<strong>stable</strong>", "<b>LN</b>", "\\mu&lt;\\sigma", "$x^2$", "<table>",
                 "<td>BN</td>", '<th colspan="2" title="mean of 3 seeds">',
                 '<a href="https://arxiv.org/abs/1502.03167">', 'src="data:image/png;base64,iVBOR',
                 '<img src="https://example.org/curves.png" width="300" alt="curves">',
                 '<div class="highlight"><pre><span></span><span class="n">x</span>', '<span class="o">&lt;</span>'):
        assert kept in html, (kept, html)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    course = tmp_path_factory.mktemp("course")
    write_config(course)
    return course_config(course)


def rendered(config: Config, template: str, hostile: bool, javascript: bool | None = None) -> str:
    """nbgrader's page (template) of a notebook whose markdown, written answer and outputs carry ATTACKS and
    COVERS, and whose metadata (the notebook's language, a cell's tags, an image's width) would add attributes of
    its own, when hostile; harmless HTML and metadata otherwise. A JavaScript output (hostile's, unless javascript
    says otherwise) leaves nbconvert's wrapper, with a random id, where nbconvert drops it."""
    payload = ATTACKS[0] if hostile else "<i>harmless</i>"
    answer = nbformat.v4.new_markdown_cell("my <b>own</b> answer " + payload + "".join(COVERS if hostile else []),
                                           metadata={"nbgrader": {"solution": True, "grade": True,
                                                                  "grade_id": "q4_analysis", "points": 10,
                                                                  "score": 7, "comment": payload,
                                                                  "schema_version": 3}})
    width = "1 onerror=document.title=1 style=position:fixed;inset:0" if hostile else 300
    code = nbformat.v4.new_code_cell("display(...)", metadata={"tags": ["x modal-backdrop" if hostile else "x"]},
                                     outputs=[
        nbformat.v4.new_output("display_data", data={"text/html": payload, "text/plain": "x"}),
        nbformat.v4.new_output("display_data", data={"text/markdown": ATTACKS[2] if hostile else payload}),
        nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo="},
                               metadata={"image/png": {"width": width, "height": 200}})])
    if hostile if javascript is None else javascript:
        code.outputs.append(nbformat.v4.new_output("display_data", data={"application/javascript": "document.t=1"}))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(ATTACKS[1] if hostile else payload), answer,
                                         code])
    nb.metadata.language_info = {"name": "python", "pygments_lexer": "ipython3 modal-backdrop" if hostile else
                                 "ipython3"}
    for number, cell in enumerate(nb.cells):
        cell.id = f"cell-{number}"
    exporter = HTMLExporter(config=config, template_name=template, extra_template_basedirs=[handlers.template_path],
                            extra_template_paths=[STATIC_CSS])
    resources = {"nbgrader": {"notebook": "norm", "score": 7, "max_score": 10, "late_penalty": 0}, "base_url": "",
                 "index": 0, "total": 1, "notebook_id": "norm", "assignment_id": "norm", "student": "alice",
                 "submission_id": "x", "notebook_path": "x", "last_name": "", "first_name": ""}
    return exporter.from_notebook_node(nb, resources=resources)[0]


@pytest.mark.parametrize("template", ["formgrade", "feedback"])
def test_the_course_renders_a_hostile_notebook_with_nothing_active_of_its_own(config: Config, template: str) -> None:
    hostile, honest = (rendered(config, template, hostile) for hostile in (True, False))
    assert Active(hostile).parts == Active(honest).parts  # the page's own scripts and styles only
    assert "<b>own</b>" in hostile and "<i>harmless</i>" in honest


@pytest.mark.parametrize("template", ["formgrade", "feedback"])
def test_the_course_renders_a_hostile_notebook_with_no_class_or_id_of_its_own(config: Config, template: str) -> None:
    hostile, honest = (rendered(config, template, hostile, javascript=False) for hostile in (True, False))
    assert Hooks(hostile).found <= Hooks(honest).found
    assert 'height="200"' in hostile and 'width="300"' in honest and '<div class="highlight hl-ipython3">' in hostile
