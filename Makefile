# Two commands do all the set-up on a fresh machine; each creates .venv from requirements.txt on first use.
#   make demo   the main job on bundled data (see README)
#   make test   every test (CI runs exactly this)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(VENV)/installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

.PHONY: demo test
demo: $(VENV)/installed
	$(BIN)/python -m grading demo

test: $(VENV)/installed
	$(BIN)/python -m pytest -q tests grading/tests
