"""The grader: `python -m grading release | autograde | demo` (see README, "For TAs" and "For instructors")."""
import os
import sys
from pathlib import Path

# nbgrader runs the `alembic` command when it creates a gradebook; from an unactivated virtual environment it is
# not on PATH, so put the interpreter's own bin/ first.
_BIN = str(Path(sys.executable).parent)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")
