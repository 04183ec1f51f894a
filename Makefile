# The two quickstart commands are `make lab` and `make test`; both set everything up first.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8888

.PHONY: setup lab demo test lint bench chromium clean docs-images-exec

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

## Quickstart 2: set up and run the whole test suite.
test: setup chromium lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

## README image of %exec --tty (needs PyPI); not run by `make test`.
docs-images-exec: setup chromium
	CODEX_EXEC_DOCS_IMAGES=1 $(BIN)/python -m pytest -q -p no:cacheprovider \
	  tests/browser/test_docs_images_exec.py

bench: setup
	$(BIN)/python benchmarks/bench_stdio.py

clean:
	rm -rf $(VENV) build dist *.egg-info
