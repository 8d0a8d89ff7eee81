# `make run` and `make test` set up .venv on first use, then do their job. `make run` installs the
# core only (requirements.txt: what upscale, play, encode and decode need); `make test` adds every
# extra and the test tools (requirements-dev.txt).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.adasr-installed
DEV_STAMP := $(VENV)/.adasr-dev-installed
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: setup setup-dev run test clean

$(STAMP): pyproject.toml requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt
	$(PIP) --no-deps --no-build-isolation -e . || $(PIP) --no-deps -e .
	@touch $(STAMP)

$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(PIP) -r requirements-dev.txt
	@touch $(DEV_STAMP)

setup: $(STAMP)

setup-dev: $(DEV_STAMP)

run: $(STAMP)
	$(BIN)/adasr demo

test: $(DEV_STAMP)
	$(BIN)/ruff check adasr tests
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
