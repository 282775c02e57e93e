"""records/inert.py: what a student wrote keeps its formatting and loses everything that could run, alone and as
nbconvert renders a notebook under the course's own nbgrader_config.py, with nbgrader's formgrade and feedback
templates (the browser test opens the real pages: test_browser.py)."""
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from jinja2 import Environment
from nbconvert.exporters import HTMLExporter
from nbgrader.server_extensions.formgrader import handlers

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


class Active(HTMLParser):
    """What in a page could run or restyle it: script elements with their text, embedded documents and forms,
    event handlers, style attributes, and javascript: or data: links."""

    RISKY_TAGS = {"script", "iframe", "object", "embed", "svg", "math", "input", "form", "style", "base", "meta"}

    def __init__(self, html):
        super().__init__()
        self.parts, self.in_script = [], False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.in_script = tag == "script"
        self.parts += [f"<{tag}>"] if tag in self.RISKY_TAGS else []
        for name, value in attrs:
            link = name in ("href", "src") and (value or "").strip().lower().startswith(("javascript:", "data:"))
            if name.startswith("on") or name == "style" or (link and not (tag == "img" and
                                                                           value.startswith("data:image/"))):
                self.parts.append(f"{tag} {name}={value}")

    def handle_data(self, data):
        if self.in_script:
            self.parts.append(data.strip())

    def handle_endtag(self, tag):
        self.in_script = False


# Where nbgrader's generate_feedback finds the CSS its feedback template inlines.
STATIC_CSS = str(Path(handlers.static_path, "node_modules", "bootstrap", "dist", "css"))


def render(source, cell=None):
    env = Environment()
    env.filters["md"] = markdown2html
    return env.from_string("{{ source | md }}").render(source=source, cell=cell or {})


@pytest.mark.parametrize("attack", ATTACKS)
def test_nothing_active_survives_in_markdown_or_html(attack):
    assert not Active(render(attack)).parts, render(attack)
    assert not Active(clean_html(attack)).parts, clean_html(attack)
    assert "id=" not in clean_html('<p id="q4_analysis">a field of the formgrader\'s own</p>')


def test_an_honest_answer_keeps_its_formatting():
    answer = ("# Analysis\n\nBN is **stable**; <b>LN</b> is not, since $\\mu<\\sigma$.\n\n| norm | acc |\n|---|---|\n"
              "| BN | 0.9 |\n\n```python\nx = a < b\n```\n\n[the paper](https://arxiv.org/abs/1502.03167) "
              "![plot](attachment:plot.png)")
    html = render(answer, {"attachments": {"plot.png": {"image/png": "iVBORw0KGgo="}}})
    for kept in ("<h1>Analysis</h1>", "<strong>stable</strong>", "<b>LN</b>", "\\mu&lt;\\sigma", "<table>",
                 "<td>BN</td>", '<a href="https://arxiv.org/abs/1502.03167">', 'src="data:image/png;base64,iVBOR',
                 '<span class="o">&lt;</span>'):
        assert kept in html, (kept, html)


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    write_config(course)
    return course_config(course)


def rendered(config, template, hostile):
    """nbgrader's page (template) of a notebook whose markdown, written answer and outputs carry ATTACKS when
    hostile, and harmless HTML otherwise."""
    payload = ATTACKS[0] if hostile else "<i>harmless</i>"
    answer = nbformat.v4.new_markdown_cell("my <b>own</b> answer " + payload, metadata={"nbgrader": {
        "solution": True, "grade": True, "grade_id": "q4_analysis", "points": 10, "score": 7, "comment": payload,
        "schema_version": 3}})
    code = nbformat.v4.new_code_cell("display(...)", outputs=[
        nbformat.v4.new_output("display_data", data={"text/html": payload, "text/plain": "x"}),
        nbformat.v4.new_output("display_data", data={"text/markdown": ATTACKS[2] if hostile else payload})])
    if hostile:
        code.outputs.append(nbformat.v4.new_output("display_data", data={"application/javascript": "document.t=1"}))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(ATTACKS[1] if hostile else payload), answer,
                                         code])
    for number, cell in enumerate(nb.cells):
        cell.id = f"cell-{number}"
    exporter = HTMLExporter(config=config, template_name=template, extra_template_basedirs=[handlers.template_path],
                            extra_template_paths=[STATIC_CSS])
    resources = {"nbgrader": {"notebook": "norm", "score": 7, "max_score": 10, "late_penalty": 0}, "base_url": "",
                 "index": 0, "total": 1, "notebook_id": "norm", "assignment_id": "norm", "student": "alice",
                 "submission_id": "x", "notebook_path": "x", "last_name": "", "first_name": ""}
    return exporter.from_notebook_node(nb, resources=resources)[0]


@pytest.mark.parametrize("template", ["formgrade", "feedback"])
def test_the_course_renders_a_hostile_notebook_with_nothing_active_of_its_own(config, template):
    hostile, honest = (rendered(config, template, hostile) for hostile in (True, False))
    assert Active(hostile).parts == Active(honest).parts  # the page's own scripts only
    assert "<b>own</b>" in hostile and "<i>harmless</i>" in honest
