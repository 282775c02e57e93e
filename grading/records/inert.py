"""What students write, rendered inert wherever a TA reads it in a browser. nbgrader's formgrader and its feedback
render notebooks with nbconvert's HTMLExporter, which passes markdown and HTML outputs through as they are: a written
answer's <img onerror=...> would run with the TA's Jupyter session (/api/contents, terminals, and the course's
nbgrader_config.py, which is Python every nbgrader command runs).

The course's nbgrader_config.py (authoring/course.py) therefore sets the exporter's sanitize_html (nbconvert then
drops JavaScript and widget outputs and cleans text/html and text/markdown outputs, raw cells and unencoded SVG with
its clean_html filter) and replaces two of its filters with this module's: markdown2html, because nbgrader's
formgrade and feedback templates render markdown cells (and comments) without nbconvert's clean-up, and clean_html,
so that all of it passes one allow-list. Ours feedback.html and the similarity report escape what they show instead
(records/reports.py, commands/similarity.py).
"""
import bleach
from jinja2 import pass_context
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

# What written answers need: text formatting, lists, tables, code, links and images. Nothing that runs or restyles
# the page: no script, style, form, iframe or event handler, no style or id attribute (an id could shadow the
# formgrader's own score fields).
TAGS = {"a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del", "details", "div",
        "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p",
        "pre", "q", "s", "samp", "small", "span", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot",
        "th", "thead", "tr", "u", "ul", "var"}
ATTRIBUTES = {"*": {"class", "title"}, "a": {"href"}, "img": {"src", "alt", "width", "height"},
              "td": {"colspan", "rowspan", "align"}, "th": {"colspan", "rowspan", "align"}, "ol": {"start"}}
PROTOCOLS = {"http", "https", "mailto", "data"}  # never javascript:; data: only for images (allowed below)


def allowed(tag, name, value):
    """Whether bleach keeps the attribute name="value" on tag (it then checks URLs against PROTOCOLS)."""
    if name not in ATTRIBUTES["*"] | ATTRIBUTES.get(tag, set()):
        return False
    return name not in ("href", "src") or not value.strip().lower().startswith("data:") or (
        tag == "img" and value.strip().lower().startswith("data:image/"))


def clean_html(html):
    """html (text, Markup or bytes) with only the allow-listed tags and attributes; any other tag is shown as
    text, so a TA sees what was attempted."""
    text = html.decode("utf-8", "replace") if isinstance(html, bytes) else str(html)
    return bleach.clean(text, tags=TAGS, attributes=allowed, protocols=PROTOCOLS, strip_comments=True)


@pass_context
def markdown2html(context, source):
    """nbconvert's markdown2html (math and the cell's attached images kept), cleaned by clean_html."""
    cell = context.get("cell", {})
    renderer = IPythonRenderer(escape=False, allow_harmful_protocols=False, exclude_anchor_links=True,
                               attachments=cell.get("attachments", {}))
    return clean_html(MarkdownWithMath(renderer=renderer).render(source))
