"""Every command README.md shows works as written, from the repository's root: the quick and harmless ones run
literally, the others (with placeholders such as SUBMISSIONS, or that take minutes) answer --help, make targets
a dry run, and shell scripts their usage."""
import re
import shlex
import subprocess
import sys

import pytest

from conftest import REPO

PROGRAMS = ("python", "python3", ".venv/bin/python", "pip", "pytest", "make", "nbgrader", "jupyter", "bash")
LITERAL = {"pytest tests/"}


def readme_commands():
    """The command lines of README.md's code blocks (continuation lines joined) and of its inline code."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```\n(.*?)```", text, re.S):
        lines = []
        for line in block.splitlines():
            if line.startswith((" ", "\t")) and lines:
                lines[-1] += " " + line.strip()
            elif line.strip():
                lines.append(line.strip())
        commands += lines
    commands += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    found = []
    for command in commands:
        for part in command.split("&&"):
            part = re.sub(r"\s+#.*$", "", part).strip()
            if part.split(" ")[0] in PROGRAMS and part not in found:
                found.append(part)
    return found


def as_run(command):
    """The argv that checks command: itself, or its --help, a dry run, or a script's usage."""
    words = shlex.split(re.sub(r"\[[^\]]*\]", "", command))
    program, rest = words[0], words[1:]
    if program in ("python", "python3", ".venv/bin/python"):
        program = sys.executable
    elif program in ("pip", "pytest", "nbgrader", "jupyter"):
        program, rest = sys.executable, ["-m", program, *rest]
    if command in LITERAL:
        return [program, *rest]
    if words[0] == "make":
        return ["make", "-n", *rest]
    if words[0] == "bash":
        return ["bash", rest[0]]
    if words[:2] == ["pip", "install"]:
        return [program, *rest, "--dry-run"]
    keep = 3 if rest[:1] == ["-m"] and rest[1:2] in (["grading"], ["nbgrader"], ["jupyter"]) else \
        2 if rest[:1] == ["-m"] else 1
    return [program, *rest[:keep], "--help"]


def test_the_readme_shows_the_commands_people_need():
    commands = readme_commands()
    for expected in ("make demo", "make test", "grading autograde", "grading release", "grading collect",
                     "grading gradescope", "grading similarity", "grading export", "grading feedback",
                     "nbgrader autograde", "jupyter lab", "gradescope --out grading-out/gradescope --try"):
        assert any(expected in command for command in commands), expected


def checks():
    """{argv: the README commands it checks}: commands that differ only in what --help leaves out run once."""
    found = {}
    for command in readme_commands():
        found.setdefault(tuple(as_run(command)), []).append(command)
    return found


CHECKS = checks()


@pytest.mark.parametrize("argv", list(CHECKS), ids=[commands[0] for commands in CHECKS.values()])
def test_a_readme_command_works(argv):
    completed = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    output = completed.stdout + completed.stderr
    if argv[0] == "bash":
        assert completed.returncode == 2 and "usage:" in output, output[-2000:]
    else:
        assert completed.returncode == 0, f"{argv}: {output[-2000:]}"
