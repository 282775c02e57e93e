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

# nbgrader validates every cell's metadata with jsonschema.validate, which checks the schema itself before each
# cell: two thirds of a second per notebook, paid by every worker and by the process that records the grades. A
# schema already checked is not checked again; the validation of each cell is unchanged.
import json  # noqa: E402

import jsonschema  # noqa: E402

_validate = jsonschema.validate
_checked = {}


def _validate_with_checked_schemas(instance, schema, cls=None, *args, **kwargs):
    if cls is not None or args or kwargs or not isinstance(schema, dict):
        return _validate(instance, schema, cls, *args, **kwargs)
    key = json.dumps(schema, sort_keys=True)
    validator = _checked.get(key)
    if validator is None:
        validator_class = jsonschema.validators.validator_for(schema)
        validator_class.check_schema(schema)
        validator = _checked[key] = validator_class(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is not None:
        raise error


jsonschema.validate = _validate_with_checked_schemas
