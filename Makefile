# Two commands on a fresh machine with Python 3.10+:  make demo  |  make test
PYTHON ?= python3
VENV ?= .venv
VENV_OPENAI2 ?= .venv-openai2
BIN = $(VENV)/bin
PIP_FLAGS ?= --quiet --disable-pip-version-check

.PHONY: demo test test-openai2 lint typecheck bench serve clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(BIN)/python -m pip install $(PIP_FLAGS) -e '.[dev]'
	touch $@

# openai 2.x (built on httpx) beside the main venv's openai 3.x (built on httpx2).
$(VENV_OPENAI2)/bin/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_OPENAI2)
	$(VENV_OPENAI2)/bin/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(VENV_OPENAI2)/bin/python -m pip install $(PIP_FLAGS) -e '.[all]' 'openai>=2,<3' pytest pytest-asyncio
	touch $@

demo: $(BIN)/.installed
	$(BIN)/studio-embeddings demo

test: $(BIN)/.installed $(VENV_OPENAI2)/bin/.installed
	$(BIN)/python -m pytest -q
	$(MAKE) --no-print-directory test-openai2

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
	rm -rf $(VENV) $(VENV_OPENAI2) .pytest_cache .mypy_cache .ruff_cache
