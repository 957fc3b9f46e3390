# Quick start: `make run` (install if needed, then the whole pipeline on the default data)
# and `make test` (install if needed, then the test suite).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=
# Test files run side by side in this many pytest-xdist workers (each file in one worker, so
# a file's fixtures are built once); 0 runs them in this process.
TEST_WORKERS ?= 2

.PHONY: run test test-fast bench image clean help
help:
	@echo "make run    install if needed, then run the whole pipeline on the default data (ARGS='--quick' etc.)"
	@echo "make test   install if needed, then run the test suite"
	@echo "make bench  run the benchmarks under benchmarks/"
	@echo "make image  build the pipeline container image (needs a Docker engine)"

# The venv is rebuilt whenever the lock or setup.py is newer than the last install.
$(VENV)/.installed: requirements.lock setup.py
	@py=$$(scripts/find_python310.sh) || exit 1; \
	rm -rf $(VENV) && "$$py" -m venv $(VENV) && \
	$(PY) -m pip install --quiet --no-deps -r requirements.lock && \
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e . && \
	$(PY) -m pip check && touch $@

run: $(VENV)/.installed
	$(PY) local_runner.py $(ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests $(ARGS)

test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not e2e" tests $(ARGS)

bench: $(VENV)/.installed
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

image:
	@command -v docker >/dev/null && docker info >/dev/null 2>&1 || { echo "make image: no Docker engine is running here; build the image on a machine with Docker (see README, 'Running on Kubeflow Pipelines')"; exit 1; }
	docker build -t $${IMAGE:-tfx-compress:latest} .

clean:
	rm -rf $(VENV) runs .pytest_cache
