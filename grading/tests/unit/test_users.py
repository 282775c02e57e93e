"""isolation/users.py: where the grader is not root, it refuses to grade without bubblewrap unless told the
submissions are trusted. Where bubblewrap cannot run and the grader is root, a user of its own per slot is the
wall: test_users_as_root.py checks it as root, in a container."""
import os

import pytest

from grading.isolation import sandbox
from grading.isolation.sandbox import Isolation, SandboxMissing, check_sandbox
from grading.settings import Settings


def test_without_bubblewrap_a_grader_that_is_not_root_refuses_unless_told_the_work_is_trusted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "bwrap_works", lambda: False)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    warnings = []
    with pytest.raises(SandboxMissing, match="install it.*run the grader as root.*--unsandboxed"):
        check_sandbox(Settings(), warnings.append)
    assert check_sandbox(Settings(unsandboxed=True), warnings.append) is Isolation.NONE
    assert "WITHOUT a sandbox, as this grader's own user" in warnings[-1]
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert check_sandbox(Settings(), warnings.append) is Isolation.SEPARATE_USER
    with pytest.raises(SandboxMissing, match="--require-sandbox"):
        check_sandbox(Settings(require_sandbox=True), warnings.append)
