"""isolation/kernel.py without a kernel: the connection file is created under its new name and never through a link,
the kernel's sockets are reached only through the descriptors the grader pinned, a kernel manager that would start
the kernel outside the sandbox is refused, cells that did not run say why, and the cells that run a probe answer
alike whether they send the probe program or name the copy left in the kernel. A real sandboxed kernel:
test_kernel_sandboxed.py."""
import json
import os
import socket
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest
import torch
from jupyter_client.manager import AsyncKernelManager

from grading.authoring.regions import provided_model_code
from grading.isolation.kernel import (CHANNELS, PinnedKernelClient, SandboxedExecute, SandboxedKernelManager,
                                      _open_socket, error_output, not_run, probe_arguments)
from grading.isolation.protocol import parse_reply, read_regular_file
from grading.sandboxed.wire import encode
from grading.settings import Settings


class FakeSandbox:
    """What the kernel manager uses of a grading.isolation.sandbox.Sandbox."""

    separate_user = False

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def wrap(self, argv: list[str]) -> list[str]:
        return ["sandbox", *argv]


def manager(tmp_path: Path) -> SandboxedKernelManager:
    return SandboxedKernelManager(sandbox=FakeSandbox(tmp_path), transport="ipc", ip=str(tmp_path / ".kernel-x"),
                                  connection_file=str(tmp_path / ".kernel-x.json"))


def test_the_connection_file_is_made_under_its_new_name_with_the_fixed_channels(tmp_path: Path) -> None:
    km = manager(tmp_path)
    km.write_connection_file()
    info = json.loads((tmp_path / ".kernel-x.json").read_text())
    assert {f"{channel}_port": number for channel, number in CHANNELS.items()}.items() <= info.items()
    assert info["transport"] == "ipc" and info["ip"] == str(tmp_path / ".kernel-x") and info["key"]
    assert (tmp_path / ".kernel-x.json").stat().st_mode & 0o777 == 0o600


def test_a_link_planted_at_the_connection_files_name_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "solution.py"
    target.write_text("# the solution\n")
    os.symlink(target, tmp_path / ".kernel-x.json")
    with pytest.raises(FileExistsError):
        manager(tmp_path).write_connection_file()
    assert target.read_text() == "# the solution\n"


def test_the_kernel_is_started_in_the_sandbox_without_its_folder_on_the_path(tmp_path: Path) -> None:
    command = manager(tmp_path).format_kernel_cmd()
    assert command[0] == "sandbox" and command[2:5] == ["-P", "-m", "ipykernel_launcher"]
    assert "--IPKernelApp.parent_handle=1" in command


def test_manager_and_client_connect_only_through_the_pinned_descriptors(tmp_path: Path) -> None:
    km = manager(tmp_path)
    km.pinned = {channel: 100 + number for channel, number in CHANNELS.items()}
    assert km.channel_url("shell") == "ipc:///proc/self/fd/101"  # which compat.py makes jupyter_client's URL
    assert PinnedKernelClient(parent=km).channel_url("hb") == "ipc:///proc/self/fd/105"
    with pytest.raises(KeyError):  # a channel not pinned yet has no URL at all
        manager(tmp_path).channel_url("shell")


def test_a_socket_is_pinned_once_it_is_there_and_anything_else_refused(tmp_path: Path) -> None:
    folder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert _open_socket(folder, "k-1") is None  # not made yet
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(tmp_path / "k-1"))
        descriptor = _open_socket(folder, "k-1")
        assert descriptor is not None
        os.close(descriptor)
        server.close()
        (tmp_path / "k-2").write_text("not a socket")
        os.symlink(tmp_path / "k-1", tmp_path / "k-3")
        for planted in ("k-2", "k-3"):
            with pytest.raises((RuntimeError, OSError)):
                _open_socket(folder, planted)
    finally:
        os.close(folder)


def test_a_kernel_manager_that_would_start_outside_the_sandbox_is_refused(tmp_path: Path) -> None:
    executor = SandboxedExecute(kernel_manager_class=AsyncKernelManager)
    executor.sandbox = FakeSandbox(tmp_path)
    with pytest.raises(TypeError, match="must subclass SandboxedKernelManager"):
        executor.create_kernel_manager()
    executor = SandboxedExecute()
    executor.sandbox = FakeSandbox(tmp_path)
    km = executor.create_kernel_manager()
    assert isinstance(km, SandboxedKernelManager) and executor.km is km and km.transport == "ipc"
    assert Path(km.connection_file).parent == tmp_path and Path(km.ip).name.startswith(".kernel-")


def test_cells_that_did_not_run_say_why() -> None:
    cells = [nbformat.v4.new_code_cell("1"), nbformat.v4.new_code_cell("2")]
    cells[0].execution_count = 3
    note = not_run(cells, "the submission's time budget ran out")
    assert note == "the submission's time budget ran out; 2 cell(s) from there on did not run"
    assert all(c.execution_count is None and c.outputs == [error_output("NotRun", "the submission's time budget "
                                                                                   "ran out")] for c in cells)
    assert error_output("NotRun", "why").traceback == ["NotRun: why"]


def test_a_probe_is_given_its_files_and_limits_and_the_provided_model_code() -> None:
    arguments = probe_arguments(".request-1.npz", ".reply-1.npz")
    assert arguments == {"REQUEST": ".request-1.npz", "REPLY": ".reply-1.npz",
                         "MESSAGE_CHARS": Settings.message_chars, "MODEL_CODE": provided_model_code()}


def test_the_program_left_in_the_namespace_answers_later_probes_as_the_full_program_did(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cells a probe sends, run here in a namespace that stands for the kernel's: the first compiles the program
    into it, the next only names it, and both answer alike, although the student's variables shadow dict, tuple and
    the names the cells use."""
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"make_no_norm": lambda channels: torch.nn.Identity(), "dict": {}, "tuple": None,
                                 "name": "n", "value": "v", "probe": "p"}
    executor = SandboxedExecute()
    executor._program_name = "_grader_probe_1"
    x = np.arange(8.0).reshape(1, 2, 2, 2)
    replies = []
    for number, install in enumerate((True, False)):
        request, reply = f".request-{number}.npz", f".reply-{number}.npz"
        Path(request).write_bytes(encode({"op": "no_norm_layer", "args": {"channels": 2}}, {"x": x}))
        exec(executor._probe_cell(request, reply, install), namespace)
        replies.append(parse_reply(read_regular_file(reply)))
        assert ("compile(" in executor._probe_cell(request, reply, install)) is install
    assert [meta for meta, _ in replies] == [{"ok": True}] * 2
    assert all(np.array_equal(arrays["out"], x) for _, arrays in replies)
    _, fixed = namespace["_grader_probe_1"]
    assert dict(fixed) == {name: value for name, value in probe_arguments("", "").items()
                           if name not in ("REQUEST", "REPLY")}
