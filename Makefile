# Two commands: `make demo` and `make test`. Both create the virtual environment when it is missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.nnatlas-installed

.PHONY: demo test venv lint contracts pytest bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: venv
	$(BIN)/nnatlas train

lint: venv
	$(BIN)/ruff check src tests benchmarks gallery docs
	$(BIN)/ruff format --check src tests benchmarks gallery docs

contracts: venv
	$(BIN)/lint-imports

pytest: venv
	$(BIN)/python -m pytest

test: lint contracts pytest

bench: venv
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
