"""The grader: `python -m grading release | autograde | demo` (see README, "For TAs" and "For instructors")."""
import os
import sys
from pathlib import Path

# nbgrader runs the `alembic` command when it creates a gradebook; from an unactivated virtual environment it is
# not on PATH, so put the interpreter's own bin/ first.
_BIN = str(Path(sys.executable).parent)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")

# jsonschema, which nbformat imports, loads rfc3987_syntax where it is installed (jupyter-events pulls it in), and
# that compiles 38 grammars on import: 2.5 s for every grader command. Notebook validation never checks the IRI
# formats it serves, so the grader's processes go without it.
sys.modules.setdefault("rfc3987_syntax", None)
