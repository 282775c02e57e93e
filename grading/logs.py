"""How the grader's commands talk: the standard logging module, to stderr, at the level -q or -v sets.

- default: info (what a command did and where it wrote), warnings and errors;
- -q, --quiet: warnings and errors only;
- -v, --verbose: debug too, which adds the whole traceback to each of the grader's own errors (a student's grader
  ERROR, a refused configuration) where the default tells it in one line.

Every module logs through logging.getLogger(__name__), under the "grading" logger that configure() sets up. What a
user asked a command for is not a log and goes to stdout at every level: autograde's and collect's tables, the
similarity ranking, bench's timings, and `gradescope --try`'s transcript. nbgrader's own commands keep nbgrader's
logging."""
import argparse
import logging
import sys

ROOT = "grading"
QUIET, DEFAULT, VERBOSE = logging.WARNING, logging.INFO, logging.DEBUG


class Plain(logging.Formatter):
    """Info and warnings in their own words, as a person reads them; errors after "error: ", debug after "debug: "
    (with the logger's name, which says which module speaks), and a record's traceback, where it has one, below."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.ERROR:
            return f"error: {text}"
        if record.levelno < logging.INFO:
            return f"debug: {record.name}: {text}"
        return text


def add_arguments(parser: argparse.ArgumentParser, default: object = argparse.SUPPRESS) -> None:
    """-q and -v on parser, into args.log_level. The main parser passes default=DEFAULT and each subcommand keeps
    SUPPRESS, so that -q or -v is taken before the subcommand and after it alike."""
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("-q", "--quiet", dest="log_level", action="store_const", const=QUIET, default=default,
                        help="say only warnings and errors")
    chosen.add_argument("-v", "--verbose", dest="log_level", action="store_const", const=VERBOSE, default=default,
                        help="say more, with the traceback of each of the grader's own errors")


class Console(logging.StreamHandler):
    """A handler to sys.stderr (or sys.stdout) as it is at each record, not as it was when configured: whatever
    replaces it later (pytest's capture, a redirection) gets every line."""

    def __init__(self, stdout: bool = False) -> None:
        super().__init__()
        self.stdout = stdout

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout if self.stdout else sys.stderr
        super().emit(record)


def configure(level: int, stdout: bool = False) -> None:
    """Send the records of the "grading" loggers at level and above to stderr (to stdout with stdout), in place of
    whatever an earlier configure() set up. They propagate too, so that pytest's caplog sees them."""
    logger = logging.getLogger(ROOT)
    for handler in [h for h in logger.handlers if isinstance(h, Console)]:
        logger.removeHandler(handler)
    handler = Console(stdout)
    handler.setFormatter(Plain())
    logger.addHandler(handler)
    logger.setLevel(level)
