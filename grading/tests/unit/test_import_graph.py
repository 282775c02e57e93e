"""The import graph of grading/ (its tests aside) has no cycle, function-local imports included: read from the
source with ast, nothing imported. Imports under `if TYPE_CHECKING:` are left out: they never run."""
import ast
from pathlib import Path

GRADING = Path(__file__).resolve().parents[2]
PACKAGE = GRADING.name


def module_name(path: Path) -> str:
    """The dotted name of the module at path under grading/ (a package by its __init__.py)."""
    parts = path.relative_to(GRADING.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def grader_modules() -> dict[str, Path]:
    """{dotted name: path} of every module of grading/ but its tests."""
    return {module_name(path): path for path in sorted(GRADING.rglob("*.py"))
            if "tests" not in path.relative_to(GRADING).parts}


def type_checking_only(node: ast.AST) -> bool:
    """Whether node is `if TYPE_CHECKING:` (or `if typing.TYPE_CHECKING:`), whose body only a type checker reads."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of tree that can run: all of them but the bodies of `if TYPE_CHECKING:` (their else stays)."""
    found, pending = [], [tree]
    while pending:
        node = pending.pop()
        found.append(node)
        children = list(ast.iter_child_nodes(node))
        if type_checking_only(node):
            assert isinstance(node, ast.If)
            children = [node.test, *node.orelse]
        pending.extend(children)
    return found


def imported(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The modules of grading/ that the module name at path imports when it runs, anywhere in it (in a function
    too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in runtime_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from package import module` imports the module; `from module import name` the module itself
            found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                         for alias in node.names)
    return {target for target in found if target in modules and target != name}


def import_graph() -> dict[str, set[str]]:
    modules = grader_modules()
    return {name: imported(path, name, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as the modules around it, the first repeated at the end) per strongly connected component of
    graph that has one (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            successor = next(successors, None)
            if successor is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(component)
            elif successor not in index:
                index[successor] = low[successor] = len(index)
                stack.append(successor)
                on_stack.add(successor)
                work.append((successor, iter(sorted(graph[successor]))))
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
    return [cycle_in(graph, component) for component in components]


def cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A cycle through the strongly connected component's first module (by name), found breadth-first."""
    start = min(component)
    came_from = {start: start}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(graph[node] & component):
                if successor == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if successor not in came_from:
                    came_from[successor] = node
                    following.append(successor)
        frontier = following
    raise AssertionError(f"{sorted(component)} is not strongly connected")


def test_the_grader_imports_no_module_that_imports_it_back() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles in grading/: " + "; ".join(" -> ".join(cycle) for cycle in found)


def test_a_cycle_is_found_and_named_even_through_a_function_local_import(tmp_path: Path) -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}) == [["a", "b", "c", "a"]]
    module = tmp_path / "judged_execute.py"
    module.write_text("import typing\nif typing.TYPE_CHECKING:\n    from grading.pipeline import front_door\n\n\n"
                      "def late():\n    from grading.pipeline.canary import grade_canary_here\n\n\n"
                      "def later():\n    from . import canary\n")
    modules = grader_modules()
    assert imported(module, f"{PACKAGE}.pipeline.judged_execute", modules) == {f"{PACKAGE}.pipeline.canary"}


def test_the_graph_sees_every_kind_of_import_the_grader_uses() -> None:
    graph = import_graph()
    assert len(graph) > 40 and f"{PACKAGE}.pipeline.canary" in graph[f"{PACKAGE}.pipeline.parallel"] | \
        graph[f"{PACKAGE}.commands.autograde"]
    assert f"{PACKAGE}.pipeline.chains" in graph[f"{PACKAGE}.pipeline.grade"]  # `from grading.pipeline import chains`
