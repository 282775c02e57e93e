"""The hidden Q3–Q5 suites as a careful TA grades: a slip in a normalization layer (the unbiased variance or std,
eps outside the square root, no eps, a wrong eps) is named and charged once for Q3, however many of LN, IN and GN
show it (one helper they share is one slip), two different slips once each, and a wrong idea beside a slip still
loses its own points; wrong axes lose the cell's normalization points; every other property counts on its own; honest choices (float64 as torch's default,
any eps up to 1e-3, a shortcut that leaves out num_groups only where it matters) keep their points; layers that do
not normalize earn nothing; and an answer cell that does not compile is named with its error and line.

All students are judged in one process (hidden_suite_runner.py): the real suites and KernelProbes, with the probe
program running against the notebook's definitions in that process instead of a sandboxed kernel.
"""
import json
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from grading.assignment import NOTEBOOK
from grading.authoring.regions import solution_cells
from grading.settings import REPO

from hidden_suite_runner import points_and_messages

# ({student: {cell: (points, [failure messages])}}, the executed broken notebook)
Graded = tuple[dict[str, dict[str, tuple[float, list[str]]]], nbformat.NotebookNode]
Q3 = ["q3_layer_norm", "q3_instance_norm", "q3_group_norm", "q3_shortcut"]
NORM_CELLS = {"LN": "q3_layer_norm", "IN": "q3_instance_norm", "GN": "q3_group_norm"}
ALL_CELLS = Q3 + ["q4_no_norm", "q4_trains", "q5_cifar_stem"]

OWN_NORM = """
class OwnNorm(nn.Module):
    def __init__(self, groups, channels):
        super().__init__()
        self.groups = groups
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        g = x.reshape(x.shape[0], self.groups, -1)
        mean = g.mean(-1, keepdim=True)
        normalized = {normalized}
        return normalized.reshape(x.shape) * self.weight[:, None, None] + self.bias[:, None, None]


return OwnNorm({{"LN": 1, "IN": num_channels, "GN": num_groups}}[norm_type], num_channels)
"""
SLIPS = {  # name: (how the layer divides, the words the message must use, {norm type: points of its cell})
    "unbiased-variance": ("(g - mean) / torch.sqrt(g.var(-1, keepdim=True) + 1e-5)",
                          ["unbiased variance, dividing by n - 1"], {"LN": 3.0, "IN": 5.0, "GN": 5.0}),
    # two slips in one helper: each charged once, the second where the first left points
    "unbiased-std": ("(g - mean) / (g.std(-1, keepdim=True) + 1e-5)",
                     ["unbiased variance, dividing by n - 1", "outside the square root"],
                     {"LN": 3.0, "IN": 3.0, "GN": 5.0}),
    "eps-outside-sqrt": ("(g - mean) / (g.var(-1, unbiased=False, keepdim=True).sqrt() + 1e-5)",
                         ["eps = 1e-05 outside the square root, std + eps"], {"LN": 3.0, "IN": 5.0, "GN": 5.0}),
    "no-eps": ("(g - mean) / g.var(-1, unbiased=False, keepdim=True).sqrt()", ["no eps", "divides by zero"],
               {"LN": 3.0, "IN": 5.0, "GN": 5.0}),
    "eps-of-a-tenth": ("(g - mean) / torch.sqrt(g.var(-1, unbiased=False, keepdim=True) + 0.1)", ["eps is 0.1"],
                       {"LN": 3.0, "IN": 5.0, "GN": 5.0}),
    # the slip in IN alone (the helper takes norm_type from make_norm)
    "unbiased-in-in-only": ("(g - mean) / torch.sqrt(g.var(-1, unbiased=norm_type == 'IN', keepdim=True) + 1e-5)",
                            ["unbiased variance, dividing by n - 1"], {"LN": 5.0, "IN": 3.0, "GN": 5.0}),
    # two different slips in two cells: each charged once, where it shows
    "two-slips-in-two-cells": ("(g - mean) / (g.var(-1, unbiased=False, keepdim=True).sqrt() + 1e-5 "
                               "if norm_type == 'GN' else torch.sqrt(g.var(-1, unbiased=norm_type == 'LN', "
                               "keepdim=True) + 1e-5))", ["unbiased variance, dividing by n - 1"],
                               {"LN": 3.0, "IN": 5.0, "GN": 3.0}),
}
# a wrong idea beside a slip: LN as batch normalization (wrong axes) and the unbiased variance in IN
WRONG_BESIDE_A_SLIP = 'if norm_type == "LN":\n    return nn.BatchNorm2d(num_channels)\n' + OWN_NORM.format(
    normalized="(g - mean) / torch.sqrt(g.var(-1, unbiased=norm_type == 'IN', keepdim=True) + 1e-5)")
GROUP_NORM_WITH_EPS = 'return nn.GroupNorm({{"LN": 1, "IN": num_channels, "GN": num_groups}}[norm_type], num_channels, eps={})'
WRONG = {  # name: (make_norm, {norm type: points}, words)
    "ln-as-batchnorm": ('if norm_type == "LN":\n    return nn.BatchNorm2d(num_channels)\n'
                        'return nn.GroupNorm({"IN": num_channels, "GN": num_groups}[norm_type], num_channels)',
                        {"LN": 1.0}, "it normalizes like BN"),
    "ln-per-pixel": ("class PerPixel(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                     "        self.norm = nn.LayerNorm(num_channels)\n\n    def forward(self, x):\n"
                     "        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)\n\n\n"
                     'if norm_type == "LN":\n    return PerPixel()\n'
                     'return nn.GroupNorm({"IN": num_channels, "GN": num_groups}[norm_type], num_channels)',
                     {"LN": 2.0}, "none of BN, LN, IN and GN"),
    "in-without-affine": ('if norm_type == "IN":\n    return nn.InstanceNorm2d(num_channels)\n'
                          'return nn.GroupNorm({"LN": 1, "GN": num_groups}[norm_type], num_channels)',
                          {"IN": 4.0}, "two learnable tensors"),
    "output-scaled-by-a-constant": (OWN_NORM.format(
        normalized="1.3 * (g - mean) / torch.sqrt(g.var(-1, unbiased=False, keepdim=True) + 1e-5)"),
        {"LN": 2.0, "IN": 2.0, "GN": 2.0}, "none of BN, LN, IN and GN"),
}
# Attacks on the properties now judged on their own: layers that do not normalize earn none of them.
DEGENERATE = {
    "identity": "return nn.Identity()",
    "constant-with-gamma-and-beta": OWN_NORM.format(normalized="0 * g"),
    "centres-only": OWN_NORM.format(normalized="g - mean"),
}
BROKEN = {  # answer cell: code with a syntax error on its second line
    "q3_make_norm": 'groups = {"LN": 1, "IN": num_channels, "GN": num_groups}\nif norm_type == "LN"\n    return None',
    "q3_make_shortcut": "conv = nn.Conv2d(in_channels, out_channels, 1, stride)\nreturn nn.Sequential(conv,,)",
    "q4_make_no_norm": "identity = nn.Identity()\nreturn identity)",
    "q5_make_cifar_stem": "layers = []\nfor layer in layers\n    pass",
}


def students(executed: Path) -> dict[str, dict[str, Any]]:
    found = {f"slip-{name}": {"answers": {"q3_make_norm": OWN_NORM.format(normalized=code)}, "cells": Q3}
             for name, (code, _, _) in SLIPS.items()}
    found["wrong-beside-a-slip"] = {"answers": {"q3_make_norm": WRONG_BESIDE_A_SLIP}, "cells": Q3}
    found.update({f"wrong-{name}": {"answers": {"q3_make_norm": code}, "cells": Q3}
                  for name, (code, _, _) in WRONG.items()})
    found.update({f"degenerate-{name}": {"answers": {"q3_make_norm": code}, "cells": Q3}
                  for name, code in DEGENERATE.items()})
    found.update({f"groupnorm-eps-{eps}": {"answers": {"q3_make_norm": GROUP_NORM_WITH_EPS.format(eps)}, "cells": Q3}
                  for eps in ("1e-8", "1e-6", "1e-3")})
    found["float64-default-dtype"] = {"answers": {}, "cells": ALL_CELLS, "default_dtype": "float64"}
    found["shortcut-without-num-groups"] = {"answers": {"q3_make_shortcut": (
        "return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), "
        "make_norm(norm_type, out_channels))")}, "cells": Q3 + ["q5_cifar_stem"]}
    found["syntax-errors"] = {"answers": BROKEN, "cells": ALL_CELLS, "executed": str(executed)}
    return found


def broken_notebook(path: Path) -> nbformat.NotebookNode:
    """The source notebook's answer cells with BROKEN answers, run in a real kernel: the executed notebook whose
    error outputs the grader reads."""
    nb = nbformat.read(REPO / NOTEBOOK, as_version=4)
    cells = solution_cells(nb)
    nb.cells = [cells[grade_id] for grade_id in BROKEN]
    for grade_id, code in BROKEN.items():
        cell = cells[grade_id]
        indent = re.search(r"^( *)### BEGIN SOLUTION", cell.source, re.M).group(1)
        cell.source = re.sub(r"^( *)### BEGIN SOLUTION\n.*?^\1### END SOLUTION\n?",
                             lambda m: "\n".join(indent + line for line in code.split("\n")) + "\n", cell.source,
                             flags=re.M | re.S)
    NotebookClient(nb, timeout=60, allow_errors=True, kernel_name="python3").execute()
    nbformat.write(nb, path)
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> Graded:
    """{student: {cell: (points, [failure messages])}}, and the executed broken notebook."""
    folder = tmp_path_factory.mktemp("norms")
    executed = broken_notebook(folder / "executed.ipynb")
    spec = folder / "students.json"
    spec.write_text(json.dumps(students(folder / "executed.ipynb")))
    return points_and_messages(spec), executed


def points(graded: Graded, student: str, cell: str) -> float:
    return round(graded[0][student][cell][0], 6)


@pytest.mark.parametrize("slip", SLIPS)
def test_a_slip_is_charged_once_for_q3_and_named_where_it_shows(graded: Graded, slip: str) -> None:
    _, words, expected = SLIPS[slip]
    student = f"slip-{slip}"
    assert {norm_type: points(graded, student, cell) for norm_type, cell in NORM_CELLS.items()} == expected
    assert points(graded, student, "q3_shortcut") == 5.0
    said = {norm_type: graded[0][student][cell][1] for norm_type, cell in NORM_CELLS.items()}
    charged = [norm_type for norm_type, messages in said.items() if any("point(s) off q3, once" in m for m in messages)]
    assert charged == [norm_type for norm_type, kept in expected.items() if kept < 5], said
    for norm_type, messages in said.items():
        assert len(messages) <= 1 and all(m.startswith(f"the {norm_type} layer normalizes") for m in messages)
    assert all(any(w in m for messages in said.values() for m in messages) for w in words), said


def test_a_wrong_idea_beside_a_slip_still_loses_its_own_points(graded: Graded) -> None:
    scores = {norm_type: points(graded, "wrong-beside-a-slip", cell) for norm_type, cell in NORM_CELLS.items()}
    assert scores == {"LN": 1.0, "IN": 3.0, "GN": 5.0}
    assert any("it normalizes like BN" in m for m in graded[0]["wrong-beside-a-slip"]["q3_layer_norm"][1])


@pytest.mark.parametrize("name", WRONG)
def test_a_wrong_idea_loses_more_than_a_slip_and_costs_only_its_own_cell(graded: Graded, name: str) -> None:
    _, expected, words = WRONG[name]
    for norm_type, cell in NORM_CELLS.items():
        assert points(graded, f"wrong-{name}", cell) == expected.get(norm_type, 5.0)
    wrong_cell = NORM_CELLS[next(iter(expected))]
    assert any(words in message for message in graded[0][f"wrong-{name}"][wrong_cell][1])


@pytest.mark.parametrize("name", DEGENERATE)
def test_a_layer_that_does_not_normalize_earns_nothing_for_its_other_properties(graded: Graded, name: str) -> None:
    assert [points(graded, f"degenerate-{name}", cell) for cell in NORM_CELLS.values()] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("eps", ["1e-8", "1e-6", "1e-3"])
def test_any_eps_up_to_a_thousandth_keeps_full_marks(graded: Graded, eps: str) -> None:
    assert [points(graded, f"groupnorm-eps-{eps}", cell) for cell in Q3] == [5.0] * 4


def test_float64_as_torchs_default_dtype_keeps_full_marks(graded: Graded) -> None:
    assert {cell: points(graded, "float64-default-dtype", cell) for cell in ALL_CELLS} == {
        "q3_layer_norm": 5.0, "q3_instance_norm": 5.0, "q3_group_norm": 5.0, "q3_shortcut": 5.0, "q4_no_norm": 6.0,
        "q4_trains": 4.0, "q5_cifar_stem": 10.0}


def test_a_shortcut_without_num_groups_costs_only_its_gn_case(graded: Graded) -> None:
    assert points(graded, "shortcut-without-num-groups", "q3_shortcut") == round(5 - 5 / 6, 6)
    (message,) = graded[0]["shortcut-without-num-groups"]["q3_shortcut"][1]
    assert "'GN'" in message and "pass num_groups on" in message
    assert points(graded, "shortcut-without-num-groups", "q5_cifar_stem") == 10.0


def test_an_answer_cell_with_a_syntax_error_is_named_with_its_line_and_no_later_name_error(graded: Graded) -> None:
    outcome, executed = graded
    lines = {}
    for cell in executed.cells:
        broken = BROKEN[cell.metadata.nbgrader.grade_id].split("\n")[1].strip()
        lines[cell.metadata.nbgrader.grade_id] = [line.strip() for line in cell.source.split("\n")].index(broken) + 1
    named = {**{cell: "q3_make_norm" for cell in NORM_CELLS.values()}, "q3_shortcut": "q3_make_shortcut",
             "q4_no_norm": "q4_make_no_norm", "q4_trains": "q4_make_no_norm", "q5_cifar_stem": "q5_make_cifar_stem"}
    for cell, answer in named.items():
        points_left, messages = outcome["syntax-errors"][cell]
        assert points_left == 0 and messages
        for message in messages:
            assert f"its cell, {answer}, stopped with SyntaxError at line {lines[answer]}" in message, message
            assert "KeyError" not in message and "NameError" not in message
