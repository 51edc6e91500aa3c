# `make demo` and `make test` set everything up themselves (a .venv next to this file).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS := $(VENV)/.extras

.PHONY: setup extras demo test clean-data

setup: $(STAMP)

# The project itself (editable: `import reidlab` and the `reid` command from any folder) with its dependencies
# and test tools, all declared in pyproject.toml; re-installs only when that file changes.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The optional extras (ONNX export); the test suite checks the export with them.
extras: $(EXTRAS)

$(EXTRAS): pyproject.toml $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,onnx]"
	touch $(EXTRAS)

demo: setup
	$(PY) main.py --mode unsup --config demo

# -n 2: two pytest workers (pytest-xdist), one per core of the 2-core machine the suite is sized for;
# `python -m pytest -q` alone runs it in one process.
test: setup extras
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n 2

clean-data:
	rm -rf datasets/synthetic*/ datasets/.synthetic*
