"""-q and -v on every subcommand of `python -m grading` (grading/logs.py): -q silences info, the default tells it
and an error in one line, -v adds debug records and the traceback of each error.

Every subcommand of the parser is a case, so a new one is covered, and fails until it is given a way to be checked
here. Where a subcommand has a quick real run, main() runs it: one that refuses to go on (a folder that is not what
it should be) shows its error and that error's traceback, and two that do real work quickly (the similarity of no
students, the Gradescope zip) show their info lines. The others (release, demo and bench take minutes before anything
they could refuse) are checked on what main() sets up for them: the level their -q or -v gives, through the logger
of the command's own module, and main's refusal, which tells every command's errors, on an exception raised here."""
import logging
from pathlib import Path
from typing import Callable, Iterator

import pytest

from grading import logs
from grading.__main__ import build_parser, main, refuse
from grading.nbgrader_support import prepare_nbgrader

TRACEBACK = "Traceback (most recent call last)"
Arguments = Callable[[Path], list[str]]  # a subcommand's arguments, with its folders under a test's tmp_path

prepare_nbgrader()  # before build_parser(), as main() does
SUBCOMMANDS = list(build_parser()[1])
# {subcommand: (arguments of a run that refuses quickly, words of the error it logs)}
REFUSALS: dict[str, tuple[Arguments, str]] = {
    "autograde": (lambda tmp: [str(tmp / "nowhere"), "--out", str(tmp / "out")], "is not a folder of submissions"),
    "collect": (lambda tmp: [str(tmp), "--out", str(tmp / "merged")], "not the output of this grader's"),
    "export": (lambda tmp: [str(tmp)], "holds no course/gradebook.db"),
    "feedback": (lambda tmp: [str(tmp)], "holds no course/gradebook.db"),
    "similarity": (lambda tmp: [str(tmp / "nowhere"), "--out", str(tmp / "out")], "is not a folder"),
    "gradescope": (lambda tmp: ["--out", str(tmp / "zip"), "--try", str(tmp / "nowhere")], "no such file or folder"),
}
# {subcommand: (arguments of a quick run that logs info, words of that info)}
INFO_RUNS: dict[str, tuple[Arguments, str]] = {
    "similarity": (lambda tmp: [str(tmp), "--out", str(tmp / "out")], "Wrote "),
    "gradescope": (REFUSALS["gradescope"][0], "autograder.zip: upload it"),  # the zip is written before --try
}
SLOW = {"release", "demo", "bench"}  # every argument has a default: they parse without any


def arguments(command: str, tmp_path: Path) -> list[str]:
    """Arguments that parse for command."""
    return REFUSALS[command][0](tmp_path) if command in REFUSALS else []


def configure_as_main(argv: list[str]) -> None:
    """What main() does with argv before it runs the command."""
    logs.configure(build_parser()[0].parse_args(argv).log_level)


@pytest.fixture(autouse=True)
def grading_logger() -> Iterator[None]:
    """The "grading" logger as it was before the test: main() configures it."""
    logger = logging.getLogger(logs.ROOT)
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:], logger.level = handlers, level


def test_every_subcommand_is_checked_here() -> None:
    unchecked = set(SUBCOMMANDS) - set(REFUSALS) - SLOW
    assert not unchecked, f"give {unchecked} a quick refusal in REFUSALS, or name it in SLOW"


@pytest.mark.parametrize("command", SUBCOMMANDS)
@pytest.mark.parametrize("flag,level", [(None, logs.DEFAULT), ("-q", logs.QUIET), ("--quiet", logs.QUIET),
                                        ("-v", logs.VERBOSE), ("--verbose", logs.VERBOSE)])
def test_the_level_is_taken_before_and_after_the_subcommand(command: str, flag: str | None, level: int,
                                                            tmp_path: Path) -> None:
    flags = [flag] if flag else []
    parser = build_parser()[0]
    assert parser.parse_args([*flags, command, *arguments(command, tmp_path)]).log_level == level
    assert parser.parse_args([command, *arguments(command, tmp_path), *flags]).log_level == level


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_quiet_keeps_the_error_and_verbose_adds_its_traceback(command: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    told = {}
    for flag in ("-q", None, "-v"):
        flags = [flag] if flag else []
        if command in REFUSALS:
            error = REFUSALS[command][1]
            assert main([command, *arguments(command, tmp_path), *flags]) != 0
        else:
            error = f"{command} cannot go on"
            configure_as_main([command, *flags])
            try:
                raise RuntimeError(error)
            except RuntimeError as raised:
                assert refuse(raised, 2) == 2
        told[flag] = capsys.readouterr().err
        assert "error: " in told[flag] and error in told[flag], told[flag]
    assert TRACEBACK not in told["-q"] and TRACEBACK not in told[None]
    verbose = told["-v"]
    assert "debug: " in verbose and TRACEBACK in verbose and verbose.index(error) < verbose.index(TRACEBACK), verbose


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_quiet_silences_info_and_verbose_shows_debug(command: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    told = {}
    for flag in ("-q", None, "-v"):
        flags = [flag] if flag else []
        if command in INFO_RUNS:
            run, info = INFO_RUNS[command]
            main([command, *run(tmp_path), *flags])
        else:
            info = f"{command} did its work"
            configure_as_main([command, *arguments(command, tmp_path), *flags])
            module = logging.getLogger(f"{logs.ROOT}.commands.{command}")
            module.info(info)
            module.debug(f"{command} says more")
        told[flag] = capsys.readouterr().err
    assert info not in told["-q"] and info in told[None] and info in told["-v"], told
    if command not in INFO_RUNS:
        more = f"debug: grading.commands.{command}: {command} says more"
        assert more not in told[None] and more in told["-v"], told


def test_info_and_warnings_keep_their_words_and_errors_say_so() -> None:
    formatter = logs.Plain()

    def shown(level: int, message: str) -> str:
        return formatter.format(logging.LogRecord("grading.x", level, __file__, 1, message, None, None))

    assert shown(logging.INFO, "wrote grades.csv") == "wrote grades.csv"
    assert shown(logging.WARNING, "WARNING: no sandbox") == "WARNING: no sandbox"
    assert shown(logging.ERROR, "the roster is not a file") == "error: the roster is not a file"
    assert shown(logging.DEBUG, "details") == "debug: grading.x: details"
