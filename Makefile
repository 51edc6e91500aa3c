# `make demo` and `make test` set everything up themselves (a .venv next to this file).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS := $(VENV)/.extras

.PHONY: setup extras demo test clean-data

setup: $(STAMP)

# Re-installs only when requirements.txt changes; quick when already done.
$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

# The optional extras (ONNX export); the test suite checks the export with them.
extras: $(EXTRAS)

$(EXTRAS): requirements-extras.txt $(STAMP)
	$(PY) -m pip install --quiet -r requirements-extras.txt
	touch $(EXTRAS)

demo: setup
	$(PY) main.py --mode unsup --config runs/recipes/demo.yaml

test: setup extras
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

clean-data:
	rm -rf datasets/synthetic*/ datasets/.synthetic*
