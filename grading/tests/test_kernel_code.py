"""normlab.kernel on cells simulated as a notebook kernel runs them: each cell's text compiled under its own file name,
which the kernel keeps in linecache, and executed in the namespace of __main__. (test_training_gpu_paths.py runs the
notebook's real model cells in an IPython kernel.)"""
import linecache
import pickle
import sys
import types
from typing import Any, Callable

import pytest

from normlab import kernel


@pytest.fixture
def kernel_namespace(monkeypatch: pytest.MonkeyPatch) -> Callable[..., dict[str, Any]]:
    """Run cells, one after another, as a kernel does: in the module __main__ (a fresh one, as a kernel's), each
    cell's text kept in linecache under its own file name; return the module's globals."""
    def run(*cells: str) -> dict[str, Any]:
        main = types.ModuleType("__main__")
        monkeypatch.setitem(sys.modules, "__main__", main)
        for number, source in enumerate(cells, 1):
            filename = f"<ipython-input-{number}-test>"
            linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
            exec(compile(source, filename, "exec"), vars(main))
        return vars(main)

    return run


def test_a_function_comes_with_its_classes_imports_values_and_aliases_and_runs_in_another_namespace(
        kernel_namespace: Callable[..., dict[str, Any]]) -> None:
    namespace = kernel_namespace(
        "import math\nSCALE = 3\n",
        "class Base:\n    def scaled(self, x):\n        return x * SCALE\n",
        "def twice(f):\n    return f\n\n\n@twice\nclass Doubler(Base):\n    offset = len('ab')\n\n"
        "    def __call__(self, x):\n        return self.scaled(x) + self.offset + math.floor(0.5)\n",
        "def build(x):\n    return Maker()(x)\n\n\nMaker = Doubler\nunrelated = open\n")
    captured = pickle.loads(pickle.dumps(kernel.capture(namespace["build"])))
    assert captured(5) == namespace["build"](5) == 17
    assert [name for name, _ in captured.code.definitions].index("Base") < \
        [name for name, _ in captured.code.definitions].index("Doubler")
    assert dict(captured.code.aliases) == {"Maker": "Doubler"}
    assert dict(captured.code.imports) == {"math": "math"} and pickle.loads(captured.code.values) == {"SCALE": 3}


@pytest.mark.parametrize("cells, says", [
    (["def outer():\n    k = 2\n    def build():\n        return k\n    return build\n\n\nbuild = outer()\n"],
     "is defined inside another function or class"),
    (["HANDLE = (n for n in [1])\n\n\ndef build():\n    return next(HANDLE)\n"],
     r"'HANDLE' \(generator\) cannot be sent"),
    (["class Settings:\n    width = 8\n\n\nSETTINGS = Settings()\n\n\ndef build():\n    return SETTINGS.width\n"],
     r"'SETTINGS' \(Settings\) holds something that the notebook's cells defined"),
])
def test_what_another_process_could_not_rebuild_is_refused_with_the_reason(
        kernel_namespace: Callable[..., dict[str, Any]], cells: list[str], says: str) -> None:
    with pytest.raises(kernel.CannotCapture, match=says):
        kernel.capture(kernel_namespace(*cells)["build"])


def test_a_function_whose_cell_text_is_unknown_is_refused() -> None:
    namespace = {"__name__": "__main__"}
    exec(compile("def build():\n    return 1\n", "<nowhere>", "exec"), namespace)
    with pytest.raises(kernel.CannotCapture, match="text of the cell that defined 'build' is not known"):
        kernel.capture(namespace["build"])
