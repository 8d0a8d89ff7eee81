# `make run`, `make test` and `make test-fast` set up .venv on first use, then do their job. `make run`
# installs the core only (requirements.txt: what demo, play and upscale need, with ONNX Runtime, no torch); `make test`
# and `make test-fast` add every extra and the test tools (requirements-dev.txt).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.adasr-installed
# The fast tier: every package, without the tests marked slow, integration, browser or cluster
# (pyproject.toml [tool.pytest.ini_options] markers).
FAST := not (slow or integration or browser or cluster)
# Two pytest workers (pytest-xdist), one per core of the 2-core machines this suite is sized for; a
# test file runs whole in one worker, so its module fixtures (a trained model, a served channel, a
# browser) are built once. Many tests wait on servers, subprocesses and real-time playback, so two
# workers take about 60 % of one's time. `make test WORKERS=` runs in one process.
WORKERS ?= -n 2 --dist loadfile
# The tests marked cluster start a Ray node or several torch.distributed processes, each needing
# the whole machine: they run after the others, alone, in one process. Beside the other worker, a
# cold 2-rank run and Ray's start starved each other past their timeouts. (The fast tier has none.)
ALONE := cluster


DEV_STAMP := $(VENV)/.adasr-dev-installed
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: setup setup-dev run test test-fast chromium results clean js

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

# The browser player's JS (onnxruntime-web, mp4box) and the browser tests' driver (playwright-core),
# exactly as package-lock.json pins them; node_modules/ is git-ignored, adasr serve serves from it.
JS_STAMP := node_modules/.adasr-installed
$(JS_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(JS_STAMP)

js: $(JS_STAMP)

run: $(STAMP)
	$(BIN)/adasr demo

# The browser test (tests/serve/test_serve_browser.py) needs Debian's chromium: installed here as
# root; otherwise make stops before pytest with one line saying what to install.
chromium:
	@if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update && apt-get install -y --no-install-recommends chromium; \
	  else \
	    echo "make test needs chromium for its browser test: install it as root (apt-get install -y --no-install-recommends chromium), or run make test-fast" >&2; \
	    exit 1; \
	  fi; \
	fi

test: $(DEV_STAMP) $(JS_STAMP) chromium
	$(BIN)/ruff check adasr tests
	$(BIN)/python -m pytest -q $(WORKERS) -m "not $(ALONE)"
	$(BIN)/python -m pytest -q -m "$(ALONE)"

test-fast: $(DEV_STAMP)
	$(BIN)/ruff check adasr tests
	$(BIN)/python -m pytest -q $(WORKERS) -m "$(FAST)"

# docs/RESULTS.md from the benches' JSON in docs/results/ (scripts/results_benches.sh reruns the benches)
results: $(STAMP)
	$(BIN)/adasr bench report

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache node_modules
