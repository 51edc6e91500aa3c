# `make demo` and `make test` set everything up themselves (a .venv next to this file), with exactly the
# versions of requirements.lock (README, "Installing").
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCK := requirements.lock
# torch and torchvision stay where the project's numbers were measured; `make lock` takes the newest of the
# rest. Raise these after `make test-latest` passes with the newer ones (README, "Installing").
PINS := -P torch==2.14.1 -P torchvision==0.29.1

.PHONY: setup demo test lock test-latest clean-data

setup: $(STAMP)

# The locked versions, every file's hash checked (pip's --require-hashes), then the project itself (editable,
# no dependencies, built with the locked setuptools); re-runs when pyproject.toml or the lock changes. On a
# machine without a GPU, the one line that saves the CUDA build's gigabytes is printed first.
$(STAMP): pyproject.toml $(LOCK)
	@command -v nvidia-smi >/dev/null 2>&1 || echo "note: no GPU here. The locked torch is the CUDA build (about 6 GB in $(VENV)); torch's CPU build saves most of it, outside the lock (its wheels are not on PyPI): $(PYTHON) -m venv $(VENV) && $(VENV)/bin/pip install torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu && $(VENV)/bin/pip install -e '.[dev,onnx]' && touch $(STAMP)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: setup
	$(PY) main.py --mode unsup --config demo

# First the environment against the lock (what differs, if anything), then ruff and the suite in two pytest
# workers (pytest-xdist), one per core of the 2-core machine it is sized for; `python -m pytest -q` alone runs
# it in one process.
test: setup
	$(PY) tests/locked.py $(LOCK)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n 2

# A new lock from pyproject.toml's ranges: the newest versions they allow (but PINS), with every file's hash,
# resolved by pip-tools in a venv of its own. Run it to take new releases, then `make test`.
lock:
	test -x .venv-lock/bin/pip-compile || ($(PYTHON) -m venv .venv-lock && .venv-lock/bin/pip install --quiet pip-tools==7.7.0)
	.venv-lock/bin/pip-compile --quiet --upgrade --extra dev --extra onnx --extra tensorboard --generate-hashes \
		--allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links $(PINS) -o $(LOCK) pyproject.toml

# The suite against the newest versions the ranges allow, in a separate environment (.venv-latest), so a break
# shows before users meet it. PIP_CONSTRAINT=/dev/null sets aside a machine's own version caps (this project's
# machines cap torch at the build they keep on disk).
test-latest:
	rm -rf .venv-latest && $(PYTHON) -m venv .venv-latest
	PIP_CONSTRAINT=/dev/null .venv-latest/bin/pip install --quiet --upgrade --upgrade-strategy eager -e ".[dev,onnx]"
	.venv-latest/bin/python tests/locked.py $(LOCK) --newest
	.venv-latest/bin/ruff check .
	.venv-latest/bin/python -m pytest -q -n 2

clean-data:
	rm -rf datasets/synthetic*/ datasets/.synthetic*
