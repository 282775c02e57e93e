"""Every command that README.md, docs/*.md and the summary of BENCHMARKS.md show works as written, from the
repository's root.

Each command line is checked against the parser of the program it names, built but not run: this repository's
Python commands (`python -m grading ...`, `python -m normlab...`, `python data/download.py`) by their own argparse
parser, nbgrader's commands by nbgrader's, the Slurm script by its own option list, so that a renamed or removed
option fails here. A documented line with optional parts (`[--jobs N]`, `[--format csv|canvas|moodle]`) is parsed
without them and once with each, placeholders (`N`, `<its CPUs>`) standing for a value. Besides, every program
still starts: the quick and harmless commands run literally, the others answer --help, make targets run dry and
the Slurm script prints its usage."""
import argparse
import re
import runpy
import shlex
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from unittest import mock

import pytest
import traitlets.config
from nbgrader.apps.nbgraderapp import NbGraderApp
from traitlets.utils.importstring import import_item

from conftest import REPO
from grading.compat import option_strings, subcommand_parsers

PROGRAMS = ("python", "python3", ".venv/bin/python", "pip", "pytest", "make", "nbgrader", "jupyter", "bash")
PYTHONS = ("python", "python3", ".venv/bin/python")
LITERAL = {"pytest tests/"}
# The modules of this repository whose command lines are parsed by their own parser.
OWN_MODULES = ("grading", "normlab.")
SLURM_SCRIPT = "grading/cluster/autograde.sbatch"
# Values for the placeholders of documented command lines, where the option's type needs a number.
PLACEHOLDER_VALUES = {"N": "2", "S": "60", "M": "2048", "SHARDS": "3", "LIST": "2"}
ALTERNATIVES = " | "
REQUIRED_MISSING = "the following arguments are required"


@dataclass(frozen=True)
class Documented:
    """A command line as a doc shows it: in a code block (a whole command) or inline (perhaps only its start)."""
    command: str
    source: str
    whole: bool


def documentation() -> dict[str, str]:
    """{path: text} of the docs whose commands are checked: BENCHMARKS.md up to its history, which keeps the
    commands of its day."""
    docs = {"README.md": (REPO / "README.md").read_text(encoding="utf-8")}
    for path in sorted((REPO / "docs").glob("*.md")):
        docs[str(path.relative_to(REPO))] = path.read_text(encoding="utf-8")
    benchmarks = (REPO / "BENCHMARKS.md").read_text(encoding="utf-8")
    docs["BENCHMARKS.md"] = benchmarks[:benchmarks.index("\n## History")]
    return docs


def commands_in(text: str, source: str) -> list[Documented]:
    """The command lines of text's code blocks (continuation lines joined) and of its inline code."""
    found = []
    for block in re.findall(r"```[^\n]*\n(.*?)```", text, re.S):
        lines: list[str] = []
        for line in block.splitlines():
            if line.startswith((" ", "\t")) and lines:
                lines[-1] += " " + line.strip()
            elif line.strip():
                lines.append(line.strip())
        found += [Documented(line, source, whole=True) for line in lines]
    for code in re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S)):
        if "\n\n" not in code:
            found.append(Documented(" ".join(code.split()), source, whole=False))
    commands = []
    for documented in found:
        for part in documented.command.split("&&"):
            part = re.sub(r"\s+#.*$", "", part).strip()
            if part.split(" ")[0] in PROGRAMS:
                commands.append(Documented(part, source, documented.whole))
    return commands


def documented_commands() -> list[Documented]:
    """Every command line of the docs, each once (a whole one before an inline mention of the same line)."""
    everything = [c for source, text in documentation().items() for c in commands_in(text, source)]
    seen: dict[str, Documented] = {}
    for documented in sorted(everything, key=lambda c: not c.whole):
        seen.setdefault(documented.command, documented)
    return list(seen.values())


def top_level_groups(command: str) -> tuple[str, list[str]]:
    """(command without its optional [...] parts, the contents of each top-level [...] part)."""
    required, groups, depth, current = [], [], 0, ""
    for char in command:
        if char == "[":
            depth += 1
            if depth == 1:
                current = ""
                continue
        elif char == "]":
            depth -= 1
            if depth == 0:
                groups.append(current)
                continue
        if depth:
            current += char
        else:
            required.append(char)
    return " ".join("".join(required).split()), groups


def group_variants(group: str) -> list[str]:
    """Each way of writing one optional part: every alternative (`a | b`), every choice of a value (`csv|canvas`),
    with and without its nested optional parts (`per-day:P[:MAX]`)."""
    variants = []
    for alternative in group.split(ALTERNATIVES):
        for nested in (re.sub(r"\[([^\]]*)\]", r"\1", alternative), re.sub(r"\[[^\]]*\]", "", alternative)):
            words = nested.split()
            choices = max((len(word.split("|")) for word in words), default=1)
            for index in range(choices):
                picked = " ".join(w.split("|")[index] if "|" in w else w for w in words)
                if picked not in variants:
                    variants.append(picked)
    return variants


def variants(command: str) -> list[list[str]]:
    """The argv of every way to write command that its parser must accept, placeholders given values."""
    required, groups = top_level_groups(command)
    lines = [required] + [f"{required} {variant}" for group in groups for variant in group_variants(group)]
    return [[PLACEHOLDER_VALUES.get(word, word) for word in shlex.split(re.sub(r"<[^>]*>", "2", line))]
            for line in lines]


class Captured(Exception):
    """Raised instead of parsing: the parser a command built, and the arguments it would have parsed."""

    def __init__(self, parser: argparse.ArgumentParser, args: list[str] | None) -> None:
        super().__init__(parser.prog)
        self.parser, self.arguments = parser, args


class Refused(Exception):
    """What argparse would have printed before exiting with status 2."""


@contextmanager
def refusing() -> Iterator[None]:
    """Within it, argparse's errors raise Refused instead of exiting."""
    def refuse(parser: argparse.ArgumentParser, message: str) -> None:
        raise Refused(f"{parser.prog}: {message}")

    with mock.patch.object(argparse.ArgumentParser, "error", refuse):
        yield


@contextmanager
def capturing_parsers() -> Iterator[None]:
    """Within it, a command's first parse_args raises Captured instead of parsing."""
    def capture(parser: argparse.ArgumentParser, args: list[str] | None = None,
                namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        raise Captured(parser, args)

    with mock.patch.object(argparse.ArgumentParser, "parse_args", capture):
        yield


def own_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The argparse parser that this repository's command argv builds (it runs up to its parse_args, no further),
    and the arguments it parses."""
    words = argv[1:]
    if words[0] == "-m":
        target, arguments = words[1], words[2:]

        def run() -> None:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        target, arguments = words[0], words[1:]

        def run() -> None:
            runpy.run_path(str(REPO / target), run_name="__main__")
    with capturing_parsers(), mock.patch.object(sys, "argv", [target, *arguments]), warnings.catch_warnings():
        # The module runs again as __main__, as `python -m` runs it, beside the copy this process imported.
        warnings.filterwarnings("ignore", message=".*found in sys.modules", category=RuntimeWarning)
        try:
            run()
        except Captured as captured:
            return captured.parser, arguments if captured.arguments is None else list(captured.arguments)
    raise AssertionError(f"{' '.join(argv)} ran to its end without parsing its arguments with argparse")


def unknown_options(parser: argparse.ArgumentParser, arguments: list[str]) -> list[str]:
    """The options in arguments that parser (or the subcommand they name) does not take."""
    subcommands = subcommand_parsers(parser)
    if arguments and arguments[0] in subcommands:
        parser = subcommands[arguments[0]]
    known = option_strings(parser)
    return [word for word in arguments if word.startswith("-") and word.split("=")[0] not in known]


def parse_problems(documented: Documented) -> list[str]:
    """What this repository's parser refuses in each way of writing the documented command."""
    problems = []
    for argv in variants(documented.command):
        parser, arguments = own_parser(argv)
        unknown = unknown_options(parser, arguments)
        if unknown:
            problems.append(f"{' '.join(argv)}: no such option {unknown}")
            continue
        with refusing():
            try:
                parser.parse_args(arguments)
            except Refused as refused:
                if documented.whole or REQUIRED_MISSING not in str(refused):
                    problems.append(f"{' '.join(argv)}: {refused}")
            except SystemExit as leaving:  # --help prints the help and exits
                if leaving.code != 0 or not {"-h", "--help"} & set(arguments):
                    problems.append(f"{' '.join(argv)}: exited with {leaving.code}")
    return problems


def configurable_traits() -> dict[str, set[str]]:
    """{class name: its configurable traits} of every configurable class imported (classes of one name merged)."""
    found: dict[str, set[str]] = {}
    pending = [traitlets.config.Configurable]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.__name__, set()).update(cls.class_traits(config=True))
        pending += cls.__subclasses__()
    return found


def nbgrader_problems(documented: Documented) -> list[str]:
    """What nbgrader's own parser refuses in the documented command: an unknown subcommand, flag or alias, or a
    `--Class.trait=` that names no configurable trait."""
    problems = []
    for argv in variants(documented.command):
        subcommand, arguments = argv[1], argv[2:]
        if subcommand not in NbGraderApp.subcommands:
            problems.append(f"{' '.join(argv)}: nbgrader has no subcommand {subcommand}")
            continue
        app_class = NbGraderApp.subcommands[subcommand][0]
        app = (import_item(app_class) if isinstance(app_class, str) else app_class)()
        try:
            app.parse_command_line(arguments)
        except SystemExit:
            problems.append(f"{' '.join(argv)}: nbgrader {subcommand} refuses its arguments")
            continue
        traits = configurable_traits()
        for name, settings in app.config.items():
            for trait in settings:
                if trait not in traits.get(name, set()):
                    problems.append(f"{' '.join(argv)}: nbgrader knows no setting {name}.{trait}")
    return problems


def slurm_options() -> set[str]:
    """The options the Slurm script takes, from the one `case` that reads them."""
    script = (REPO / SLURM_SCRIPT).read_text(encoding="utf-8")
    case = re.search(r"^\s*(--[\w-]+(?:\|--[\w-]+)*)\)$", script, re.M)
    assert case, f"{SLURM_SCRIPT} no longer reads its options in one `case` pattern: update this test"
    return set(case.group(1).split("|"))


def slurm_problems(documented: Documented) -> list[str]:
    """Options the Slurm script does not take, and autograde options after `--` that autograde does not take."""
    problems = []
    for argv in variants(documented.command):
        words = argv[2:]
        ours, autograde = (words[:words.index("--")], words[words.index("--") + 1:]) if "--" in words else (words, [])
        unknown = [word for word in ours if word.startswith("--") and word not in slurm_options()]
        if unknown:
            problems.append(f"{' '.join(argv)}: the script has no option {unknown}")
        if any(word.startswith("-") for word in autograde):  # not the placeholder `-- autograde options`
            problems += parse_problems(Documented(f"python -m grading autograde {shlex.join(autograde)}",
                                                  documented.source, whole=False))
    return problems


def is_own(documented: Documented) -> bool:
    words = documented.command.split()
    if words[0] not in PYTHONS or len(words) < 2:
        return False
    if words[1] == "-m":
        return len(words) > 2 and words[2].startswith(OWN_MODULES)
    return words[1].endswith(".py") and (REPO / words[1]).is_file()


COMMANDS = documented_commands()
OWN = [c for c in COMMANDS if is_own(c)]
NBGRADER = [c for c in COMMANDS if c.command.split()[0] == "nbgrader"]
SLURM = [c for c in COMMANDS if c.command.split()[:2] == ["bash", SLURM_SCRIPT]]


def test_the_readme_gives_the_two_commands_that_ci_and_the_makefile_use() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```\n(.*?)```", readme, re.S)
    assert block, "README.md has no code block"
    assert [line.split("#")[0].strip() for line in block.group(1).splitlines()] == ["make demo", "make test"]
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert re.search(r"^(\w+=\S+ )*make test$", (REPO / ".ci/run").read_text(encoding="utf-8"), re.M)


def test_the_docs_show_the_commands_people_need() -> None:
    commands = [c.command for c in COMMANDS]
    for expected in ("make demo", "make test", "grading autograde", "grading release", "grading collect",
                     "grading gradescope", "grading similarity", "grading export", "grading feedback",
                     "nbgrader autograde", "jupyter lab", "gradescope --out grading-out/gradescope --try",
                     SLURM_SCRIPT, "normlab.evaluate", "normlab.train", "normlab.bench", "data/download.py"):
        assert any(expected in command for command in commands), expected


@pytest.mark.parametrize("documented", OWN, ids=[c.command for c in OWN])
def test_a_documented_command_of_this_repository_parses(documented: Documented) -> None:
    assert parse_problems(documented) == [], documented.source


@pytest.mark.parametrize("documented", NBGRADER, ids=[c.command for c in NBGRADER])
def test_a_documented_nbgrader_command_parses(documented: Documented) -> None:
    assert nbgrader_problems(documented) == [], documented.source


@pytest.mark.parametrize("documented", SLURM, ids=[c.command for c in SLURM])
def test_a_documented_slurm_command_takes_its_options(documented: Documented) -> None:
    assert slurm_problems(documented) == [], documented.source


@pytest.mark.parametrize("line, complaint", [
    ("python -m grading autograde SUBMISSIONS --out OUT [--jobz N]", "no such option ['--jobz']"),
    ("python -m grading export OUT [--format csv|canvas|blackboard]", "invalid choice: 'blackboard'"),
    ("python -m grading autograde SUBMISSIONS [--jobs N]", "required: --out"),
    ("python -m normlab.evaluate bonus.pt2 --datasets cifar10", "no such option ['--datasets']"),
    ("python -m grading bench --submissions many", "invalid int value: 'many'"),
])
def test_a_renamed_or_wrong_option_fails_the_check(line: str, complaint: str) -> None:
    problems = parse_problems(Documented(line, "a doc", whole=True))
    assert any(complaint in problem for problem in problems), problems


def test_an_inline_mention_may_leave_out_required_arguments_but_not_rename_an_option() -> None:
    assert parse_problems(Documented("python -m grading autograde --require-sandbox", "a doc", whole=False)) == []
    assert parse_problems(Documented("python -m grading autograde --require-sandbox", "a doc", whole=True))
    assert parse_problems(Documented("python -m grading autograde --requires-sandbox", "a doc", whole=False))


def test_a_wrong_nbgrader_or_slurm_option_fails_the_check() -> None:
    assert nbgrader_problems(Documented("nbgrader collect --ExchangeCollect.check_owners=False norm", "a doc", True))
    assert nbgrader_problems(Documented("nbgrader autograde --no-such-flag norm", "a doc", True))
    assert nbgrader_problems(Documented("nbgrader autograd norm", "a doc", True))
    assert slurm_problems(Documented(f"bash {SLURM_SCRIPT} S O 3 [--partitions P]", "a doc", True))
    assert slurm_problems(Documented(f"bash {SLURM_SCRIPT} S O 3 -- --require-sandbx", "a doc", True))


def as_run(command: str) -> list[str]:
    """The argv that checks that command's program starts: itself, or its --help, a dry run, or a script's usage."""
    words = shlex.split(re.sub(r"\[[^\]]*\]", "", command))
    program, rest = words[0], words[1:]
    if program in PYTHONS:
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


def checks() -> dict[tuple[str, ...], list[str]]:
    """{argv: the documented commands it checks}: commands that differ only in what --help leaves out run once.
    Of the shell scripts only the Slurm script runs (for its usage): `.ci/run` is the whole suite."""
    found: dict[tuple[str, ...], list[str]] = {}
    for documented in COMMANDS:
        words = documented.command.split()
        if words[0] == "bash" and words[1:2] != [SLURM_SCRIPT]:
            continue
        found.setdefault(tuple(as_run(documented.command)), []).append(documented.command)
    return found


CHECKS = checks()


def test_every_documented_shell_script_exists() -> None:
    scripts = {c.command.split()[1] for c in COMMANDS if c.command.split()[0] == "bash"}
    assert SLURM_SCRIPT in scripts and all((REPO / script).is_file() for script in scripts), scripts


@pytest.mark.parametrize("argv", list(CHECKS), ids=[commands[0] for commands in CHECKS.values()])
def test_a_documented_command_starts(argv: tuple[str, ...]) -> None:
    completed = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    output = completed.stdout + completed.stderr
    if argv[0] == "bash":
        assert completed.returncode == 2 and "usage:" in output, output[-2000:]
    else:
        assert completed.returncode == 0, f"{argv}: {output[-2000:]}"
