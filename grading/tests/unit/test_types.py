"""How much of grading/ (its tests and examples aside) a type checker can hold (issue 32): the share of functions
that are fully annotated, read from the source with ast, nothing imported."""
import ast
from pathlib import Path

GRADING = Path(__file__).resolve().parents[2]
NOT_THE_GRADER = {"tests", "examples"}  # top-level folders of grading/ that are not the grader's own code
GOAL = 0.85  # otter-grader's share of annotated functions, which issue 32 asks the grader to reach

Function = ast.FunctionDef | ast.AsyncFunctionDef


def grader_sources() -> list[Path]:
    return [path for path in sorted(GRADING.rglob("*.py")) if path.relative_to(GRADING).parts[0] not in NOT_THE_GRADER]


def functions(source: str) -> list[Function]:
    """Every function and method defined in source, nested ones included."""
    return [node for node in ast.walk(ast.parse(source)) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def annotated(function: Function) -> bool:
    """Whether function has a return annotation and one on every parameter but a method's leading self or cls."""
    arguments = function.args
    positional = [*arguments.posonlyargs, *arguments.args]
    if positional and positional[0].arg in ("self", "cls"):
        positional = positional[1:]
    parameters = [*positional, *arguments.kwonlyargs, *(p for p in (arguments.vararg, arguments.kwarg) if p)]
    return function.returns is not None and all(p.annotation is not None for p in parameters)


def unannotated_by_file() -> tuple[int, dict[str, int]]:
    """(how many functions grading/ has, {file relative to grading/: how many of its functions are not annotated})."""
    total, missing = 0, {}
    for path in grader_sources():
        found = functions(path.read_text(encoding="utf-8"))
        total += len(found)
        left = sum(not annotated(function) for function in found)
        if left:
            missing[str(path.relative_to(GRADING))] = left
    return total, missing


def test_the_share_of_annotated_functions_reaches_otter_graders() -> None:
    total, missing = unannotated_by_file()
    share = 1 - sum(missing.values()) / total
    worst = ", ".join(f"{name} ({count})" for name, count in sorted(missing.items(), key=lambda item: -item[1])[:8])
    assert total > 300 and share >= GOAL, (f"{share:.1%} of grading/'s {total} functions are annotated, not "
                                           f"{GOAL:.0%}; most unannotated: {worst}")


def test_a_function_counts_only_with_every_parameter_and_its_return_annotated() -> None:
    source = '''
def bare(a, b): ...
def no_return(a: int): ...
def one_left(a: int, b) -> int: ...
def star_left(a: int, *rest) -> None: ...
def keyword_left(a: int, *, key) -> None: ...
async def full(a: int, /, b: str = "", *rest: int, key: bool = False, **more: str) -> None: ...
def nothing() -> None: ...
class Thing:
    def method(self, a: int) -> int: ...
    @classmethod
    def make(cls) -> "Thing": ...
    def unannotated_self_only(self): ...
'''
    verdicts = {function.name: annotated(function) for function in functions(source)}
    assert verdicts == {"bare": False, "no_return": False, "one_left": False, "star_left": False,
                        "keyword_left": False, "full": True, "nothing": True, "method": True, "make": True,
                        "unannotated_self_only": False}
