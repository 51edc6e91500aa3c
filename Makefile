# `make demo` and `make test` set everything up themselves (a .venv next to this file).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test clean-data

setup: $(STAMP)

# Re-installs only when requirements.txt changes; quick when already done.
$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

demo: setup
	$(PY) main.py --mode unsup --config runs/recipes/demo.yaml

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

clean-data:
	rm -rf datasets/synthetic*/ datasets/.synthetic*
