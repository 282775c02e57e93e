# Two commands do all the set-up on a fresh machine; each creates .venv on first use, from requirements.txt (what
# students install) and grading/requirements.txt (what TAs and the tests need besides).
#   make demo   the main job on bundled data (see README)
#   make test   the type checker over grading/ and normlab/ (mypy.ini), then every test (CI runs exactly this)
#   make unit   the unit tier alone, one test module per grading module, under a minute
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# rfc3987-syntax, which jupyter-events' jsonschema[format-nongpl] pulls in, builds grammars whenever jsonschema is
# imported, for an "iri" format check that nothing here uses. The grader's own commands keep it out
# (grading/nbgrader_support.py), but nbgrader's and Jupyter's commands import nbformat before they read any config
# of ours: 0.8 to 1.3 s of CPU each (nbgrader export --help: 2.1 s with it, 0.84 s without).
$(VENV)/installed: requirements.txt grading/requirements.txt grading/constraints.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r grading/requirements.txt -c grading/constraints.txt
	$(BIN)/python -m pip uninstall --quiet --yes rfc3987-syntax
	touch $@

.PHONY: demo test unit
demo: $(VENV)/installed
	$(BIN)/python -m grading demo

test: $(VENV)/installed
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q -n 2 --durations=25 tests grading/tests

unit: $(VENV)/installed
	$(BIN)/python -m pytest -q grading/tests/unit
