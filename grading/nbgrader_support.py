"""What the grader needs from nbgrader's side, applied explicitly: `prepare_nbgrader()` by every command that runs
nbgrader's code (the CLI, and the course's nbgrader_config.py for nbgrader's own commands), and the two helpers that
read a course's configuration and apply a chain of nbgrader preprocessors."""
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

if TYPE_CHECKING:
    from nbformat import NotebookNode

RFC3987_SYNTAX = "rfc3987_syntax"


def prepare_nbgrader() -> None:
    """Make nbgrader's commands work and cost less in this process; idempotent (each step checks what it finds).

    - nbgrader runs the `alembic` command when it creates a gradebook; from an unactivated virtual environment it is
      not on PATH, so the interpreter's own bin/ goes first.
    - jsonschema, which nbformat imports, loads rfc3987_syntax where it is installed (jupyter-events pulls it in), and
      that compiles 38 grammars on import: 2.5 s. Notebook validation never checks the IRI formats it serves.
    - nbgrader validates every cell's metadata with jsonschema.validate, which checks the schema itself before each
      cell: two thirds of a second per notebook. A schema already checked is not checked again; the validation of
      each cell is unchanged.
    - nbgrader's Gradebook makes a database engine of its own, and each of its preprocessors opens one, so every
      query was compiled again four times per recorded submission (a third of recording): the Gradebooks of this
      process share one engine per database (compat.share_gradebook_engines).
    - nbgrader 0.9 trips over SQLAlchemy 2's session rules in its own code (the rows it writes are right): its
      warning is silenced (warnings keeps one filter of each).
    """
    interpreter_bin = str(Path(sys.executable).parent)
    if interpreter_bin not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = interpreter_bin + os.pathsep + os.environ.get("PATH", "")
    sys.modules.setdefault(RFC3987_SYNTAX, None)  # type: ignore[arg-type]  # None in sys.modules: not importable
    # Imported only now: grading.compat imports nbformat, hence jsonschema, which must not find rfc3987_syntax.
    from grading.compat import share_gradebook_engines, validate_each_schema_once

    validate_each_schema_once()
    share_gradebook_engines()
    warnings.filterwarnings("ignore", message=".*not in session, add operation along.*")


def course_config(course: str | Path) -> Config:
    """The course's nbgrader_config.py, so our chains are configured exactly as nbgrader's are."""
    path = Path(course) / "nbgrader_config.py"
    return PyFileConfigLoader(path.name, str(path.parent)).load_config() if path.is_file() else Config()


def apply_chain(steps: list[Any], nb: "NotebookNode", resources: dict[str, Any], config: Config, log: Any = None,
                **traits: Any) -> tuple["NotebookNode", dict[str, Any]]:
    """Apply the preprocessors steps to nb, as nbgrader's converters do; traits go to those that declare them."""
    for step in steps:
        preprocessor = step(config=config, **{k: v for k, v in traits.items() if step.class_traits().get(k)})
        if log is not None:
            preprocessor.log = log
        nb, resources = preprocessor.preprocess(nb, resources)
    return nb, resources
