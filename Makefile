# Two commands: `make demo` and `make test`. Both create the virtual environment when it is missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.nnatlas-installed

.PHONY: demo test venv lint contracts pytest bench docs clean

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

# The documentation: Sphinx with warnings as errors and the gallery executed, then the built site opened in
# headless Chromium (tests/docs/test_built_site.py: no console errors, every image decodes, screenshots).
DOCS_STAMP := $(VENV)/.nnatlas-docs-installed
$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	rm -rf docs/_build docs/gallery
	MPLBACKEND=Agg $(BIN)/sphinx-build -W --keep-going -n -b html docs docs/_build/html
	NNATLAS_DOCS_BUILT=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/docs/test_built_site.py

bench: venv
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build docs/_build docs/gallery *.egg-info src/*.egg-info .pytest_cache .ruff_cache
