# Two commands do all the set-up on a fresh machine; each creates .venv on first use, from requirements.txt (what
# students install) and grading/requirements.txt (what TAs and the tests need besides).
#   make demo   the main job on bundled data (see README)
#   make test   every test (CI runs exactly this)
#   make unit   the unit tier alone, one test module per grading module, under a minute
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# rfc3987-syntax, which jupyter-events' jsonschema[format-nongpl] pulls in, builds a grammar whenever jsonschema is
# imported: 0.8 s of CPU in every process that imports nbformat (each grading run, each nbgrader command), for
# jsonschema's "iri" format check, which nothing here uses. It goes, as in Gradescope's setup.sh.
$(VENV)/installed: requirements.txt grading/requirements.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r grading/requirements.txt
	$(BIN)/python -m pip uninstall --quiet --yes rfc3987-syntax
	touch $@

.PHONY: demo test unit
demo: $(VENV)/installed
	$(BIN)/python -m grading demo

test: $(VENV)/installed
	$(BIN)/python -m pytest -q -n 2 tests grading/tests

unit: $(VENV)/installed
	$(BIN)/python -m pytest -q grading/tests/unit
