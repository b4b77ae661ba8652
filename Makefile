# fedota: `make demo` and `make test` are all a newcomer needs; both set up .venv on first use.
#
# Override on another machine, e.g. `make test TORCH_SPEC="torch==2.5.1" PYTHON=python3.12`.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch goes in first, on its own, so the project's loose `torch>=2.4` never pulls a CUDA build.
# Here pip's find-links holds a CPU wheel; elsewhere add
# TORCH_INDEX="--index-url https://download.pytorch.org/whl/cpu".
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
EXTRAS ?= dev,postgres,bench
TEST_TIMEOUT ?= 120
# Worker processes (pytest-xdist), a test file to each: the end-to-end tests mostly wait on
# processes and sockets, so two workers keep a two-core machine busy. 0: one process.
TEST_WORKERS ?= 2
PYTEST_ARGS ?=
# Written after a complete install; pip runs again only when pyproject.toml is newer.
STAMP := $(VENV)/.fedota-installed

.PHONY: demo test protos lint clean distclean

demo: $(STAMP)
	$(BIN)/fedota demo

test: $(STAMP)
	$(BIN)/pytest -q --timeout=$(TEST_TIMEOUT) -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

protos: $(STAMP)
	$(BIN)/python -m fedota.protos._generate

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python .ci/lint_imports.py

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -e ".[$(EXTRAS)]"
	touch $@

clean:
	rm -rf build dist .pytest_cache .ruff_cache .import_linter_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -path ./$(VENV) -prune -o -name '*.egg-info' -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
