"""The probe program's own Adam (grading/sandboxed/kernel_probe.py, adam_step), which trains the network without
normalization for the q4_trains check, against torch.optim.Adam, whose step it writes out."""
import ast
from collections.abc import Callable

import pytest
import torch

from grading.settings import SANDBOXED

STEPS = 5
LR = 3e-3
CLOSE = 1e-12  # float64: the same formula, computed in a slightly different order
Stepper = Callable[[list[torch.Tensor]], Callable[[int], None]]  # parameters -> one step, by its number from 1


def probe_adam(parameters: list[torch.Tensor]) -> Callable[[int], None]:
    """Steps of adam_step as the probe program defines it, taken from its source without running the program (which
    answers a request)."""
    tree = ast.parse((SANDBOXED / "kernel_probe.py").read_text())
    (definition,) = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "adam_step"]
    namespace = {"torch": torch}
    exec(compile(ast.Module(body=[definition], type_ignores=[]), "kernel_probe.py", "exec"), namespace)
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in parameters]
    return lambda number: namespace["adam_step"](parameters, moments, number, LR)


def torch_adam(parameters: list[torch.Tensor]) -> Callable[[int], None]:
    optimizer = torch.optim.Adam(parameters, lr=LR)
    return lambda number: optimizer.step()


def trained(stepper: Stepper, unused_gets_a_gradient: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(used, unused) parameters after STEPS steps on a loss that only the used one enters: the unused one gets a
    zero gradient, as from a forward that multiplies it by 0, or none, as from a forward that never touches it."""
    generator = torch.Generator().manual_seed(0)
    used, unused, target = (torch.randn(shape, dtype=torch.float64, generator=generator) for shape in [(4, 3), 3, 3])
    used.requires_grad_()
    unused.requires_grad_()
    step = stepper([used, unused])
    for number in range(1, STEPS + 1):
        loss = ((used - target) ** 2).sum() + (0 * unused.sum() if unused_gets_a_gradient else 0)
        used.grad = unused.grad = None
        loss.backward()
        step(number)
    return used.detach(), unused.detach()


@pytest.mark.parametrize("unused_gets_a_gradient", [True, False], ids=["zero-gradient", "no-gradient"])
def test_adam_step_moves_parameters_as_torch_optim_adam_does(unused_gets_a_gradient: bool) -> None:
    start, _ = trained(lambda parameters: lambda number: None, unused_gets_a_gradient)
    used, unused = trained(probe_adam, unused_gets_a_gradient)
    expected_used, expected_unused = trained(torch_adam, unused_gets_a_gradient)
    assert float((used - start).abs().max()) > STEPS * LR / 2
    assert float((used - expected_used).abs().max()) < CLOSE
    assert float((unused - expected_unused).abs().max()) < CLOSE
