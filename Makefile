# `make run` and `make test` set up .venv on first use, then do their job.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.adasr-installed

.PHONY: setup run test results clean

$(STAMP): pyproject.toml requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . \
	  || $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/adasr demo

test: $(STAMP)
	$(BIN)/ruff check adasr tests
	$(BIN)/python -m pytest -q

# docs/RESULTS.md from the benches' JSON in docs/results/ (scripts/results_benches.sh reruns the benches)
results: $(STAMP)
	$(BIN)/adasr bench report

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
