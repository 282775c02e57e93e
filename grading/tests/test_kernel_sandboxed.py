"""isolation/kernel.py with one real sandboxed kernel (forked, then replayed cold after it dies): cells run one by one
with their output capped and their time limited, a cell that kills the kernel is survived, and probes read back only
data. Not a unit test: it starts a zygote, sandboxes and kernels (what needs none of them is unit/test_kernel.py)."""
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest

from grading.failures import Cause, GraderError, StudentFailure
from grading.isolation.kernel import SandboxedExecute
from grading.isolation.sandbox import Limits, Sandbox, bwrap_works
from grading.isolation.zygote import Zygotes
from grading.settings import Settings

pytestmark = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap is required: .ci/run installs it")
SLOT = 9  # a worker slot of its own
Kernel = tuple[SandboxedExecute, nbformat.NotebookNode, list[str]]  # the executor, the notebook run, its notes
ZYGOTES = Zygotes()  # this module's grading run: its zygotes, one per slot and limits


@pytest.fixture(scope="module", autouse=True)
def zygotes_closed() -> Iterator[None]:
    """The module's zygotes end with it, as a run's end with the run."""
    yield
    ZYGOTES.close()

CELLS = [
    "from torch import nn\nprint('x' * 5000)",
    "def make_norm(norm_type, num_channels, num_groups=4):\n    return nn.GroupNorm(1, num_channels)",
    "import os\nos._exit(1)",
    "import time\ntime.sleep(30)",
    "def make_no_norm(num_channels):\n    raise ValueError('not done')",
    # names a student may well use, which the code that runs a probe must not depend on
    "dict, name, value, tuple, probe = {}, 'n', 'v', None, 'p'",
    # an attack: make_shortcut removes from the kernel's namespace what the grader left there to run its probes
    "def make_shortcut(in_channels, out_channels, stride, norm_type, num_groups=4):\n"
    "    for left in [n for n in globals() if n.startswith('_grader_probe_')]:\n"
    "        del globals()[left]\n"
    "    return nn.Identity()",
]


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    """The cells run in a kernel forked from a zygote (torch already imported, so that 3 s is time enough for a cell
    even on a loaded machine) with a 2 KiB output cap and a 3 s cell timeout: (executor, notebook, notes)."""
    limits = Limits.from_settings(Settings())
    zygote = ZYGOTES.for_slot(SLOT, limits)
    executor = SandboxedExecute(output_limit=2 << 10, zygote=zygote)
    executor.sandbox = Sandbox(zygote.new_folder(), limits, SLOT)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in CELLS])
    notes = executor.start(nb, {"metadata": {"path": str(executor.sandbox.workdir)}}, time.monotonic() + 120, 3)
    yield executor, nb, notes
    executor.stop()
    zygote.close()


def outputs(cell: nbformat.NotebookNode, kind: str) -> list[nbformat.NotebookNode]:
    return [o for o in cell.outputs if o.output_type == kind]


def test_a_cells_output_is_capped(kernel: Kernel) -> None:
    printed = "".join(o.text for o in outputs(kernel[1].cells[0], "stream"))
    assert printed.endswith("[output beyond 2 KiB dropped by the grader]\n") and len(printed) < 3000


def test_a_cell_past_its_timeout_is_interrupted_and_the_rest_run(kernel: Kernel) -> None:
    assert [o.ename for o in outputs(kernel[1].cells[3], "error")][-1] == "CellTimeoutError"


def test_a_cell_that_kills_the_kernel_is_noted_and_the_cells_before_it_are_replayed(kernel: Kernel) -> None:
    executor, nb, notes = kernel
    assert notes == ["the kernel died while running cell 3"]
    assert executor.alive and outputs(nb.cells[2], "error")[-1].ename == "DeadKernelError"


def test_a_probe_reads_back_the_students_layer_as_float64_arrays(kernel: Kernel) -> None:
    """(make_norm was defined before the kernel died: the replay brought it back)"""
    executor = kernel[0]
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4))
    meta, arrays = executor.probe("norm_layer", {"norm_type": "LN", "channels": 3, "groups": 1},
                                  {"x": x, "x_other": x, "x_eval": x, "x_shifted": x, "x_slips": x,
                                   "gamma": np.ones(3), "beta": np.zeros(3)}, 10)
    assert meta["parameters"] == [["weight", [3]], ["bias", [3]]]
    assert arrays["train"].dtype == np.float64 and arrays["train"].shape == x.shape
    assert abs(arrays["train"].reshape(2, -1).mean(axis=1)).max() < 1e-5


def layer_probe(executor: SandboxedExecute) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    x = np.random.default_rng(1).standard_normal((2, 4, 3, 3))
    return executor.probe("norm_layer", {"norm_type": "LN", "channels": 4, "groups": 1},
                          {"x": x, "x_other": x, "x_eval": x, "x_shifted": x, "x_slips": x, "gamma": np.ones(4),
                           "beta": np.zeros(4)}, 10)


def test_probes_after_the_first_answer_as_it_did_with_the_students_names_shadowing_builtins(kernel: Kernel) -> None:
    """(the first probe leaves the compiled program in the kernel; later ones only name it, with dict, tuple, name,
    value and probe all the student's variables)"""
    first, *later = [layer_probe(kernel[0]) for _ in range(3)]
    for meta, arrays in later:
        assert meta == first[0] and arrays.keys() == first[1].keys()
        assert all(np.array_equal(arrays[name], first[1][name]) for name in arrays)


def test_a_probe_answers_after_the_students_code_removed_the_graders_program_from_the_kernel(
        kernel: Kernel) -> None:
    executor = kernel[0]
    before, _ = layer_probe(executor)
    x = np.ones((1, 2, 3, 3))
    executor.probe("shortcut", {"in_channels": 2, "out_channels": 2, "stride": 1, "norm_type": "BN", "groups": 4},
                   {"x": x, "marker_scale": np.ones(2), "marker_shift": np.zeros(2)}, 10)
    removed = executor._program_name
    after, arrays = layer_probe(executor)
    assert after == before and arrays["train"].shape == (2, 4, 3, 3)
    assert executor._program_name != removed  # the program was sent in full again


def test_what_the_students_code_raised_comes_back_as_their_failure(kernel: Kernel) -> None:
    with pytest.raises(StudentFailure, match="your code raised ValueError: not done") as failure:
        kernel[0].probe("no_norm_layer", {"channels": 2}, {"x": np.ones((1, 2, 2, 2))}, 10)
    assert failure.value.error == "ValueError"


def test_a_notebook_that_writes_past_the_disk_bound_is_stopped_there_and_not_probed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound counts the kernel's folder and the sandbox's /tmp together: half of it in each is past it."""
    monkeypatch.setattr(Settings, "disk_bytes", 2 << 20)
    limits = Limits.from_settings(Settings())
    zygote = ZYGOTES.for_slot(SLOT, limits)
    executor = SandboxedExecute(zygote=zygote)
    executor.sandbox = Sandbox(zygote.new_folder(), limits, SLOT)
    cells = ["print('small files are fine')\nopen('notes.txt', 'w').write('x' * 1000)",
             "import time\nopen('half.bin', 'wb').write(b'x' * (3 << 19))\n"
             "open('/tmp/half.bin', 'wb').write(b'x' * (3 << 19))\ntime.sleep(30)", "print('never')"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    try:
        notes = executor.start(nb, {"metadata": {"path": str(executor.sandbox.workdir)}}, time.monotonic() + 60, 50)
        assert outputs(nb.cells[0], "stream")[0].text == "small files are fine\n"
        assert notes == ["the notebook wrote more than 2 MiB (in its folder, /tmp and /dev/shm together) while "
                         "running cell 2; 2 cell(s) from there on did not run"]
        with pytest.raises(StudentFailure, match="not run: the notebook wrote more than 2 MiB"):
            executor.probe("no_norm_layer", {"channels": 2}, {"x": np.ones((1, 2, 2, 2))}, 10)
    finally:
        executor.stop()


# A cell that runs at once, but hangs when it is run again: what a busy machine does to a replay, made certain.
HANGS_WHEN_RUN_AGAIN = "import os, time\nif os.path.exists('ran'):\n    time.sleep(60)\nopen('ran', 'w').close()"
# The same, but ending the kernel when it is run again: the student's code, as deterministic as the first time.
ENDS_WHEN_RUN_AGAIN = "import os\nif os.path.exists('ran'):\n    os._exit(1)\nopen('ran', 'w').close()"


def run_cold(tmp_path: Path, cells: list[str], cell_timeout: float = 3) -> list[str]:
    """cells run in a cold kernel (no zygote) in a folder under tmp_path: the notes, or what start raised."""
    folder = tmp_path / "kernel"
    folder.mkdir()
    executor = SandboxedExecute()
    executor.sandbox = Sandbox(folder, Limits.from_settings(Settings()), SLOT + 1)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    try:
        return executor.start(nb, {"metadata": {"path": str(folder)}}, time.monotonic() + 60, cell_timeout)
    finally:
        executor.stop()


def test_a_replay_that_times_out_where_the_first_run_did_not_is_the_machines_failure(tmp_path: Path) -> None:
    with pytest.raises(GraderError, match="cell 1 ran within 3 s the first time but not when it was run again") \
            as error:
        run_cold(tmp_path, [HANGS_WHEN_RUN_AGAIN, "import os\nos._exit(1)", "print('after')"])
    assert error.value.cause is Cause.OVERLOAD


def test_a_replayed_cell_that_ends_the_kernel_again_is_the_students(tmp_path: Path) -> None:
    notes = run_cold(tmp_path, [ENDS_WHEN_RUN_AGAIN, "import os\nos._exit(1)", "print('after')"])
    assert notes == ["the kernel died while running cell 2",
                     "the kernel died again when cell 1 was run again; 1 cell(s) from there on did not run"]


def test_a_cell_that_timed_out_is_not_run_again(tmp_path: Path) -> None:
    """(its first run did not finish: a replay would wait for the timeout again, and then be taken for load)"""
    notes = run_cold(tmp_path, ["x = 1", "import time\ntime.sleep(60)", "import os\nos._exit(1)", "print('after')"])
    assert notes == ["the kernel died while running cell 3"]
