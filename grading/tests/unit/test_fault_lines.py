"""Who is at fault is decided by type (grading/failures.py): a lint over the grader's own code, which runs in the
grader's process. It fails where a handler catches every exception, unless it is one of the few places listed
below (none of which gives a verdict), and where code decides by the words of an exception's or a log record's
message. grading/sandboxed/ is left out: it runs in the student's processes, where catching everything is how
what happened is handed over as data."""
import ast
import textwrap
from collections.abc import Iterator

from grading.settings import REPO

GRADER = REPO / "grading"
BROAD = {"Exception", "BaseException"}
# (module, function) -> why catching everything there decides no verdict
CATCH_ALL = {
    ("grading/pipeline/parallel.py", "_child"): "the grading child records any failure as an ERROR, with its traceback",
    ("grading/pipeline/parallel.py", "_swept"): "a zygote that cannot be cleaned is retired; no student is judged",
    ("grading/pipeline/canary.py", "grade_canary_here"): "any failure of the canary stops the run before anyone",
    ("grading/commands/gradescope.py", "run_autograder"): "the autograder's own failure is an ERROR for the "
                                                          "instructors",
}


def grader_modules() -> Iterator[tuple[str, str]]:
    for path in sorted(GRADER.rglob("*.py")):
        relative = path.relative_to(REPO).as_posix()
        if not relative.startswith(("grading/tests/", "grading/sandboxed/")):
            yield relative, path.read_text()


def catch_alls(source: str) -> list[tuple[str, int]]:
    """[(function, line)] of handlers that catch every exception (bare, Exception or BaseException)."""
    found = []
    for function in _functions(ast.parse(source)):
        for node in ast.walk(function):
            if isinstance(node, ast.ExceptHandler) and _catches_everything(node.type):
                found.append((function.name, node.lineno))
    return found


def message_matches(source: str) -> list[int]:
    """Lines where code compares or searches the text of an exception it caught or of a log record, directly or
    through a variable it was assigned to in the same function."""
    found = set()
    for function in _functions(ast.parse(source)):
        caught = {node.name for node in ast.walk(function) if isinstance(node, ast.ExceptHandler) and node.name}
        texts = set()
        for node in ast.walk(function):
            if isinstance(node, ast.Assign) and _holds_text(node.value, caught, texts):
                texts |= {target.id for target in node.targets if isinstance(target, ast.Name)}
        found |= {node.lineno for node in ast.walk(function) if _decides(node) and _holds_text(node, caught, texts)}
    return sorted(found)


def _functions(tree: ast.AST) -> list[ast.AST]:
    return [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))] or [tree]


def _catches_everything(kind: ast.expr | None) -> bool:
    if kind is None:
        return True
    names = kind.elts if isinstance(kind, ast.Tuple) else [kind]
    return any(isinstance(name, ast.Name) and name.id in BROAD for name in names)


def _decides(node: ast.AST) -> bool:
    """A comparison, a call of the re module, or a search in a string."""
    if isinstance(node, ast.Compare):
        return True
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return False
    of_re = isinstance(node.func.value, ast.Name) and node.func.value.id == "re"
    return of_re or node.func.attr in ("startswith", "endswith", "find", "rfind", "index", "count")


def _holds_text(node: ast.AST, caught: set[str], texts: set[str]) -> bool:
    """Whether node contains str(e), repr(e), e.args or f"{e}" of a caught exception e, a log record's
    getMessage(), or a variable assigned one of them."""
    for part in ast.walk(node):
        if isinstance(part, ast.Call) and isinstance(part.func, ast.Name) and part.func.id in ("str", "repr"):
            if any(isinstance(arg, ast.Name) and arg.id in caught for arg in part.args):
                return True
        elif isinstance(part, (ast.Attribute, ast.FormattedValue)) and isinstance(part.value, ast.Name):
            if part.value.id in caught and (isinstance(part, ast.FormattedValue) or part.attr == "args"):
                return True
        elif isinstance(part, ast.Call) and isinstance(part.func, ast.Attribute) and part.func.attr == "getMessage":
            return True
        elif isinstance(part, ast.Name) and part.id in texts:
            return True
    return False


def test_only_the_listed_places_catch_every_exception() -> None:
    found = {(module, function) for module, source in grader_modules() for function, _ in catch_alls(source)}
    assert found <= set(CATCH_ALL), sorted(found - set(CATCH_ALL))


def test_no_code_decides_by_the_words_of_a_message() -> None:
    found = {module: lines for module, source in grader_modules() if (lines := message_matches(source))}
    assert not found, found


def test_the_lint_finds_what_it_forbids() -> None:
    matching = textwrap.dedent("""
        import re
        def call(self):
            try:
                probe()
            except StudentFailure as failure:
                if "timed out" in str(failure):
                    spend()
                missing = re.fullmatch(r"name '(\\w+)'", f"{failure}")
        def emit(self, record):
            if "has changed" in record.getMessage():
                keep()
            text = record.getMessage()
            if text.startswith("Attribute"):
                keep()
    """)
    assert message_matches(matching) == [7, 9, 11, 14]
    catching = textwrap.dedent("""
        def replay(self):
            try:
                run()
            except Exception:
                return False
            try:
                run()
            except (OSError, BaseException):
                pass
            try:
                run()
            except:
                pass
        def typed(self):
            try:
                run()
            except (OSError, ValueError) as error:
                return str(error)
    """)
    assert catch_alls(catching) == [("replay", 5), ("replay", 9), ("replay", 13)]
