# `make run` and `make test` set up .venv on first use, then do their job.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.adasr-installed

.PHONY: setup run test clean js

$(STAMP): pyproject.toml requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . \
	  || $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP)

# The browser player's JS (onnxruntime-web, mp4box) and the browser tests' driver (playwright-core),
# exactly as package-lock.json pins them; node_modules/ is git-ignored, adasr serve serves from it.
JS_STAMP := node_modules/.adasr-installed
$(JS_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(JS_STAMP)

js: $(JS_STAMP)

run: $(STAMP) $(JS_STAMP)
	$(BIN)/adasr demo

test: $(STAMP) $(JS_STAMP)
	$(BIN)/ruff check adasr tests
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache node_modules
