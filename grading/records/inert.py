"""What students write, rendered inert wherever a TA reads it in a browser: nothing of it runs, and nothing of it
restyles the page or lays itself over the TA's controls. nbgrader's formgrader and its feedback render notebooks
with nbconvert's HTMLExporter, which passes markdown and HTML outputs through as they are: a written answer's
<img onerror=...> would run with the TA's Jupyter session (/api/contents, terminals, and the course's
nbgrader_config.py, which is Python every nbgrader command runs), and the formgrader loads Bootstrap, whose classes
turn a <div> into a fixed layer over the whole window.

The course's nbgrader_config.py (authoring/course.py) therefore sets the exporter's sanitize_html (nbconvert then
drops JavaScript and widget outputs and cleans text/html and text/markdown outputs, raw cells and unencoded SVG with
its clean_html filter) and replaces three of its filters with this module's: markdown2html, because nbgrader's
formgrade and feedback templates render markdown cells (and comments) without nbconvert's clean-up, clean_html, so
that all of it passes one allow-list, and highlight_code (CodeHighlight). With InertMetadata, these also keep what a
student put in a notebook's metadata out of the attributes nbconvert's templates write. Ours feedback.html and the
similarity report escape what they show instead (records/reports.py, commands/similarity.py).

Math stays text ($x^2$) for MathJax, which the pages load with its Safe extension: the classes and ids a formula
may set must start with MJX-, its styles are colours, fonts, borders and margins or paddings of at most 3em.
"""
import re
from typing import Any

import bleach
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup
from nbformat import NotebookNode
from nbconvert.filters.highlight import Highlight2HTML
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from nbconvert.preprocessors import Preprocessor
from pygments.token import STANDARD_TYPES

# What written answers need: text formatting, lists, tables, code, links and images. Nothing that runs, and no
# attribute the page's own CSS or scripts act on: no class (Bootstrap's modal-backdrop and navbar-fixed-top are
# fixed layers; the formgrader's inputs are .score, .comment and .tabbable), id (#q4_analysis, #statusmessage),
# name (a named <img> shadows document's own properties), style, data-* (Bootstrap's data-toggle and
# data-spy="affix", the formgrader's data-link), role or aria-* (Bootstrap's dropdowns), and none that takes the
# TA's keyboard or focus (tabindex, accesskey, autofocus) or opens a link over the page (target). title is a tooltip
# only: Bootstrap shows its own tooltips for the formgrader's navigation links alone.
TAGS = {"a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del", "details", "div",
        "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p",
        "pre", "q", "s", "samp", "small", "span", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot",
        "th", "thead", "tr", "u", "ul", "var"}
ATTRIBUTES = {"*": {"title"}, "a": {"href"}, "img": {"src", "alt", "width", "height"},
              "td": {"colspan", "rowspan", "align"}, "th": {"colspan", "rowspan", "align"}, "ol": {"start"}}
# The classes of nbconvert's own highlighting of fenced code (<div class="highlight"> around pygments' token spans):
# the only ones kept, since the pages style them only as .highlight and .highlight .<token>, with colours and fonts.
HIGHLIGHT_CLASSES = {"div": {"highlight"}, "span": set(STANDARD_TYPES.values()) - {""}}
PROTOCOLS = {"http", "https", "mailto", "data"}  # never javascript:; data: only for images (allowed below)
NUMBER = re.compile(r"\d+(\.\d+)?")


def allowed(tag: str, name: str, value: str) -> bool:
    """Whether bleach keeps the attribute name="value" on tag (it then checks URLs against PROTOCOLS)."""
    if name == "class":
        return set(value.split()) <= HIGHLIGHT_CLASSES.get(tag, set())
    if name not in ATTRIBUTES["*"] | ATTRIBUTES.get(tag, set()):
        return False
    return name not in ("href", "src") or not value.strip().lower().startswith("data:") or (
        tag == "img" and value.strip().lower().startswith("data:image/"))


def clean_html(html: str | Markup | bytes) -> str:
    """html (text, Markup or bytes) with only the allow-listed tags and attributes; any other tag is shown as
    text, so a TA sees what was attempted."""
    text = html.decode("utf-8", "replace") if isinstance(html, bytes) else str(html)
    return bleach.clean(text, tags=TAGS, attributes=allowed, protocols=PROTOCOLS, strip_comments=True)


@pass_context
def markdown2html(context: Context, source: str) -> str:
    """nbconvert's markdown2html (math and the cell's attached images kept), cleaned by clean_html."""
    cell = context.get("cell", {})
    renderer = IPythonRenderer(escape=False, allow_harmful_protocols=False, exclude_anchor_links=True,
                               attachments=cell.get("attachments", {}))
    return clean_html(MarkdownWithMath(renderer=renderer).render(source))


class CodeHighlight(Highlight2HTML):
    """nbconvert's highlight_code, always in the course's language (its notebooks are IPython's). nbconvert's own
    takes the language from the notebook's language_info, which the student's file carries, and writes it into
    every code cell's class attribute ("highlight hl-<language>"), spaces and all: "ipython3 modal-backdrop"."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(pygments_lexer="ipython3", **kwargs)


class InertMetadata(Preprocessor):
    """Takes out of the copy nbconvert renders the metadata its templates write into the page's own attributes
    beyond a value: a cell's tags, each written into the cell's class attribute as "celltag_<tag>", spaces and all
    (the tag "x modal-backdrop" makes the cell Bootstrap's backdrop; nothing on the pages uses them), and an image
    output's width and height unless they are numbers (they are written unquoted: the width "1 onerror=..." is
    script)."""

    def preprocess_cell(self, cell: NotebookNode, resources: dict[str, Any],
                        index: int) -> tuple[NotebookNode, dict[str, Any]]:
        cell.metadata.pop("tags", None)
        for output in cell.get("outputs", []):
            metadata = output.get("metadata", {})
            for sizes in [metadata, *(value for value in metadata.values() if isinstance(value, dict))]:
                for key in ("width", "height"):
                    if key in sizes and not NUMBER.fullmatch(str(sizes[key])):
                        del sizes[key]
        return cell, resources
