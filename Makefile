# The two quickstart commands are `make lab` and `make test`; both set everything up first.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8888

.PHONY: setup lab demo test test-ts lint bench docs-images docs-images-exec chromium screen-tools clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Python deps + the package (editable; builds the labextension with node when present)
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/python -m codex_exec_kernel install --sys-prefix
	touch $(STAMP)

setup: $(STAMP)

chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

## tmux and vim for the screen tests (session attach, full-screen programs).
screen-tools:
	@command -v tmux >/dev/null && command -v vim >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux vim >/dev/null; }

## Quickstart 1: set up and open JupyterLab with the codex-exec kernel and the Kernel Terminal.
## It opens the demo workspace: examples/demo.ipynb with a Kernel Terminal below it.
lab: setup
	$(BIN)/jupyter lab workspaces import examples/demo.jupyterlab-workspace
	$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.port=$(PORT) \
	  --LabApp.default_url=/lab/workspaces/codex-exec-demo \
	  $(if $(filter 0,$(shell id -u)),--allow-root)

## A scripted tour where no browser can be used.
demo: setup
	$(BIN)/python examples/demo_stdio.py

lint: setup
	$(BIN)/ruff check codex_exec_kernel tests benchmarks examples
	$(BIN)/mypy

## The panel's unit tests (node's test runner over the compiled TypeScript).
test-ts: setup
	cd labextension && ../$(BIN)/jlpm install >/dev/null && ../$(BIN)/jlpm test

## Quickstart 2: set up and run the whole test suite.
test: setup chromium screen-tools lint test-ts
	$(BIN)/python -m pytest -q -p no:cacheprovider

## README image of %exec --tty (needs PyPI); not run by `make test`.
docs-images-exec: setup chromium
	CODEX_EXEC_DOCS_IMAGES=1 $(BIN)/python -m pytest -q -p no:cacheprovider \
	  tests/browser/test_docs_images_exec.py

## The README's figures: the ratio benchmarks and the browser's, into benchmarks/results/.
## (`make test` runs the browser measurements too but keeps their JSON in build/.)
bench: setup chromium
	$(BIN)/python benchmarks/bench_stdio.py
	$(BIN)/python benchmarks/bench_kernel.py
	$(BIN)/python benchmarks/bench_magics.py
	$(BIN)/python benchmarks/bench_idle.py
	$(BIN)/python benchmarks/bench_pty_floor.py
	$(BIN)/python benchmarks/bench_connect.py
	CODEX_EXEC_RESULTS_DIR=$(CURDIR)/benchmarks/results $(BIN)/python -m pytest -q \
	  -p no:cacheprovider tests/browser/test_terminal.py \
	  -k "keystroke_latency or gigabyte_flood"

## The README's and docs' screenshots, into docs/img/ (tests write them to build/).
docs-images: setup chromium
	CODEX_EXEC_DOCS_IMG_DIR=$(CURDIR)/docs/img $(BIN)/python -m pytest -q \
	  -p no:cacheprovider -m "browser and not slow" tests/browser \
	  -k "not gigabyte_flood and not keystroke_latency"

clean:
	rm -rf $(VENV) build dist *.egg-info
