"""The hidden Q4 suites on networks with parameters that get no gradient: the probe trains with its own Adam
(grading/sandboxed/kernel_probe.py), which leaves such a parameter alone as torch.optim.Adam does, so an honest
no-norm layer that holds a parameter it never uses keeps its points, and a network that learns nothing still earns
none for training.

Students are judged in one process by hidden_suite_runner.py, as in test_hidden_norms.py.
"""
import json

import pytest

from hidden_suite_runner import judged_in_a_process

Q4 = ["q4_no_norm", "q4_trains"]
STUDENTS = {
    # an identity that keeps a scale it was going to try, never used in forward
    "unused-parameter": """
class NoNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(num_channels))

    def forward(self, x):
        return x


return NoNorm()
""",
    # cuts every layer off from the loss: only the classifier's bias can learn, and most parameters get no gradient
    "learns-nothing": """
class Cut(nn.Module):
    def forward(self, x):
        return (0 * x).detach()


return Cut()
""",
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, float]]:
    """{student: {cell: points}}"""
    spec = tmp_path_factory.mktemp("no-norm") / "students.json"
    spec.write_text(json.dumps({name: {"answers": {"q4_make_no_norm": code}, "cells": Q4}
                                for name, code in STUDENTS.items()}))
    outcome: dict[str, dict[str, float]] = {}
    for student, tests in judged_in_a_process(spec).items():
        cells = outcome[student] = {}
        for test in tests:
            cells[test["cell"]] = round(cells.get(test["cell"], 0.0) + test["score"], 6)
    return outcome


def test_a_no_norm_layer_with_a_parameter_it_never_uses_keeps_its_points(graded: dict[str, dict[str, float]]) -> None:
    assert graded["unused-parameter"] == {"q4_no_norm": 6.0, "q4_trains": 4.0}


def test_a_network_that_learns_nothing_earns_nothing_for_training(graded: dict[str, dict[str, float]]) -> None:
    assert graded["learns-nothing"]["q4_trains"] == 0.0
