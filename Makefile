# Two commands on a fresh machine with Python 3.10+:  make demo  |  make test
PYTHON ?= python3
VENV ?= .venv
VENV_OPENAI2 ?= .venv-openai2
VENV_NOTEBOOKS ?= .venv-notebooks
BIN = $(VENV)/bin
PIP_FLAGS ?= --quiet --disable-pip-version-check

.PHONY: demo test test-openai2 test-notebooks lint typecheck bench serve clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(BIN)/python -m pip install $(PIP_FLAGS) -e '.[dev]'
	touch $@

# openai 2.x (built on httpx) beside the main venv's openai 3.x (built on httpx2).
$(VENV_OPENAI2)/bin/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_OPENAI2)
	$(VENV_OPENAI2)/bin/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(VENV_OPENAI2)/bin/python -m pip install $(PIP_FLAGS) -e '.[all,redis,parquet]' 'openai>=2,<3' pytest pytest-asyncio
	touch $@

# Only the `notebooks` extra (and pytest): a notebook import the extra lacks fails here.
$(VENV_NOTEBOOKS)/bin/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_NOTEBOOKS)
	$(VENV_NOTEBOOKS)/bin/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(VENV_NOTEBOOKS)/bin/python -m pip install $(PIP_FLAGS) -e '.[notebooks]' pytest pytest-asyncio
	touch $@

demo: $(BIN)/.installed
	$(BIN)/studio-embeddings demo

test: $(BIN)/.installed $(VENV_OPENAI2)/bin/.installed $(VENV_NOTEBOOKS)/bin/.installed
	$(BIN)/python -m pytest -q --ignore=tests/e2e/test_notebooks.py
	$(MAKE) --no-print-directory test-openai2
	$(MAKE) --no-print-directory test-notebooks

# The notebooks, executed in the venv of the `notebooks` extra; a missing module fails, never skips.
test-notebooks: $(VENV_NOTEBOOKS)/bin/.installed
	STUDIO_EMBEDDINGS_NOTEBOOK_ENV=1 $(VENV_NOTEBOOKS)/bin/python -m pytest -q \
		-p no:cacheprovider -o addopts= tests/e2e/test_notebooks.py

# The core, both shells, the CLI and the fault tests again, on openai 2.x (httpx).
# (langchain-tests' standard suites and the notebooks run once, above.)
test-openai2: $(VENV_OPENAI2)/bin/.installed
	$(VENV_OPENAI2)/bin/python -m pytest -q -p no:cacheprovider \
		tests/unit/test_client.py tests/unit/test_retry.py tests/unit/test_pacing.py \
		tests/unit/test_llama_index_unit.py tests/e2e \
		--ignore=tests/e2e/test_notebooks.py --ignore=tests/e2e/test_langchain_standard.py

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: $(BIN)/.installed
	$(BIN)/python -m pip install $(PIP_FLAGS) -e '.[bench]'
	$(BIN)/python benchmarks/run.py

serve: $(BIN)/.installed
	$(BIN)/studio-embeddings serve --port 8000

clean:
	rm -rf $(VENV) $(VENV_OPENAI2) $(VENV_NOTEBOOKS) .pytest_cache .mypy_cache .ruff_cache
