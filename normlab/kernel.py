"""A function that a running notebook defined, as code that another process can run: what the grid's processes for
other GPUs build their models with.

Spawned processes start afresh, so they cannot import what the notebook's cells defined, and the notebook file on
disk is not what the kernel runs: on Kaggle, on Colab opened from GitHub, or in Jupyter before Ctrl+S, it holds other
code, or none of the student's. capture() takes the text of the function and of every function, class, import and
value it uses, as the kernel defined them last: IPython keeps the text of every cell it ran (for its tracebacks) under
the file name that the cell's functions carry. What cannot be captured so (a function made inside another function,
a class without methods, a value that does not pickle) raises CannotCapture, which says what.
"""
import ast
import builtins
import dis
import graphlib
import hashlib
import importlib
import linecache
import pickle
import types
from dataclasses import dataclass
from typing import Any, Callable, Iterator

DEFINED_IN_KERNEL = "__main__"  # the module of what a notebook's (or IPython's) cells define


class CannotCapture(ValueError):
    """A function's code cannot be captured for another process; the message says which part and why."""


@dataclass(frozen=True)
class KernelCode:
    """What a namespace needs to define a kernel's functions again: modules to import under a name, values (a pickled
    dict), the sources of functions and classes in an order they can be defined in, and names that alias others."""

    imports: tuple[tuple[str, str], ...]
    values: bytes
    definitions: tuple[tuple[str, str], ...]
    aliases: tuple[tuple[str, str], ...]

    @property
    def digest(self) -> str:
        return hashlib.sha1(pickle.dumps(self)).hexdigest()

    def namespace(self) -> dict[str, Any]:
        """A fresh namespace in which the captured code has run."""
        namespace: dict[str, Any] = {"__name__": "normlab_kernel_code", "__builtins__": builtins}
        for name, module in self.imports:
            namespace[name] = importlib.import_module(module)
        namespace.update(pickle.loads(self.values))
        for name, source in self.definitions:
            filename = f"<notebook kernel: {name}>"
            linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
            exec(compile(source, filename, "exec"), namespace)
        for alias, name in self.aliases:
            namespace[alias] = namespace[name]
        return namespace


_namespaces: dict[str, dict[str, Any]] = {}  # by KernelCode.digest: each process defines the code once


@dataclass(frozen=True)
class KernelFunction:
    """A function of captured kernel code, by name. It pickles as its code, so another process can call it."""

    name: str
    code: KernelCode

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        digest = self.code.digest
        if digest not in _namespaces:
            _namespaces[digest] = self.code.namespace()
        return _namespaces[digest][self.name](*args, **kwargs)


def is_defined_in_kernel(value: Any) -> bool:
    return isinstance(value, (types.FunctionType, type)) and getattr(value, "__module__", None) == DEFINED_IN_KERNEL


def capture(function: Callable) -> KernelFunction:
    """function, defined in this notebook kernel's cells, with everything it uses from the kernel's globals."""
    if not is_defined_in_kernel(function):
        raise CannotCapture(f"{getattr(function, '__name__', function)!r} is not defined in a notebook's cells")
    kernel_globals = function.__globals__
    imports: dict[str, str] = {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    needed_first: dict[str, set[str]] = {}  # a definition's names that must exist when it runs (bases, decorators)
    aliases: dict[str, str] = {}
    pending: list[tuple[str, Any]] = [(function.__name__, function)]
    while pending:
        name, value = pending.pop()
        if name in imports or name in values or name in sources or name in aliases:
            continue
        if isinstance(value, types.ModuleType):
            imports[name] = value.__name__
        elif is_defined_in_kernel(value):
            own_name = value.__name__
            if own_name != name:
                if kernel_globals.get(own_name) is not value:
                    raise CannotCapture(f"{name!r} is {own_name!r}, a name the kernel has since given to something "
                                        "else")
                aliases[name] = own_name
                pending.append((own_name, value))
                continue
            sources[name] = definition_source(value)
            at_definition, at_call = global_names(sources[name])
            needed_first[name] = at_definition
            pending += [(used, kernel_globals[used]) for used in at_definition | at_call
                        if used in kernel_globals and not is_dunder(used)]
        else:
            values[name] = picklable(name, value)
    order = graphlib.TopologicalSorter(
        {name: {used for used in needed_first[name] if used in sources} for name in sources}).static_order()
    code = KernelCode(tuple(sorted(imports.items())), pickle.dumps(values),
                      tuple((name, sources[name]) for name in order), tuple(sorted(aliases.items())))
    return KernelFunction(function.__name__, code)


def is_dunder(name: str) -> bool:
    """Whether name is one Python sets itself (a class body reads __name__): the new namespace has its own."""
    return name.startswith("__") and name.endswith("__")


def picklable(name: str, value: Any) -> Any:
    """value, if another process can unpickle it: not if it does not pickle, nor if it pickles as a reference to
    something the notebook's cells defined (an instance of a class of theirs), which another process lacks."""
    try:
        pickled = pickle.dumps(value)
    except Exception as error:
        raise CannotCapture(f"{name!r} ({type(value).__name__}) cannot be sent to another process: {error}") from None
    if DEFINED_IN_KERNEL.encode() in pickled:
        raise CannotCapture(f"{name!r} ({type(value).__name__}) holds something that the notebook's cells defined, "
                            "which another process cannot rebuild")
    return value


def definition_source(value: Any) -> str:
    """The text of the top-level def or class statement, decorators included, that defined value in a cell."""
    if value.__qualname__ != value.__name__:
        raise CannotCapture(f"{value.__qualname__!r} is defined inside another function or class")
    if isinstance(value, types.FunctionType):
        if value.__closure__:
            raise CannotCapture(f"{value.__name__!r} uses variables of the function that made it")
        files = [value.__code__.co_filename]
        kinds: tuple[type, ...] = (ast.FunctionDef, ast.AsyncFunctionDef)
    else:
        files = list(dict.fromkeys(code.co_filename for code in method_codes(value)))
        kinds = (ast.ClassDef,)
    for filename in files:
        lines = linecache.getlines(filename)
        if not lines:
            continue
        for node in ast.parse("".join(lines)).body:
            if isinstance(node, kinds) and getattr(node, "name") == value.__name__ and \
                    (kinds[0] is ast.ClassDef or first_line(node) == value.__code__.co_firstlineno):
                return "".join(lines[first_line(node) - 1:node.end_lineno])
    raise CannotCapture(f"the text of the cell that defined {value.__name__!r} is not known to this kernel")


def first_line(node: ast.stmt) -> int:
    decorators = getattr(node, "decorator_list", [])
    return min([node.lineno] + [decorator.lineno for decorator in decorators])


def method_codes(cls: type) -> Iterator[types.CodeType]:
    """The code of the functions that cls's own body defined: where the kernel keeps the text of its cell."""
    for attribute in vars(cls).values():
        for candidate in (attribute, getattr(attribute, "__func__", None), getattr(attribute, "fget", None)):
            if isinstance(candidate, types.FunctionType) and candidate.__qualname__.startswith(cls.__qualname__ + "."):
                yield candidate.__code__


def global_names(source: str) -> tuple[set[str], set[str]]:
    """The global names that a def or class statement reads: those it reads as it runs (decorators, default values,
    bases, a class's body) and those its functions read when called."""
    at_definition: set[str] = set()
    at_call: set[str] = set()
    codes = [compile(source, "<definition>", "exec")]
    while codes:
        code = codes.pop()
        for instruction in dis.get_instructions(code):
            if instruction.opname == "LOAD_NAME":  # module level and class bodies
                at_definition.add(instruction.argval)
            elif instruction.opname == "LOAD_GLOBAL":  # function bodies
                at_call.add(instruction.argval)
        codes += [constant for constant in code.co_consts if isinstance(constant, types.CodeType)]
    return at_definition, at_call - at_definition
