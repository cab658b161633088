# Set-up and everyday tasks. Everything installs into .venv; torch is pinned (torch==2.13.0,
# CPU build) through the [train] extra in pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SOURCE ?= 0
ARGS ?=
PYTEST_ARGS ?=

.PHONY: install install-all live lint test bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Stamps: pip runs again only when pyproject.toml changed (the install is editable, so code
# changes need no reinstall).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[video]"
	touch $@

$(VENV)/.installed-all: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[train,web,dev,video,pandas,batch]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed  ## inference only (no torch), H.264 video output

install-all: $(VENV)/.installed-all  ## training, web server and test tools too

live: install  ## live recognition with the bundled default model (SOURCE=0|FILE|URL, ARGS=...)
	$(BIN)/emolens live --source $(SOURCE) $(ARGS)

lint: install-all  ## ruff check (what `make test` runs first); `ruff format FILE` for new code
	$(BIN)/ruff check .

test: install-all  ## lint (ruff, configured in pyproject.toml), then the whole test suite
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)
