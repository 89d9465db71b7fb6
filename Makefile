# returns-mock: `make run` serves both providers on http://127.0.0.1:8080; `make test` runs everything CI runs;
# `make docs` builds the documentation site (docs/, mkdocs.yml) into site/.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080
STORE ?= sqlite:returns-mock.db
PYTEST_ARGS ?=

.PHONY: run test check docs reference timings fuzz bench bench-postgres lint typecheck pytest clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps: reinstall only when pyproject.toml or the version changes (the install is editable, so code
# changes need none; the metadata's version is read at install time).
$(VENV)/.run-installed: pyproject.toml mockserver/version.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml mockserver/version.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	@echo "make run: the returns-mock command is $(BIN)/returns-mock (or run '. $(BIN)/activate' once in your shell, then returns-mock ...)"
	$(BIN)/returns-mock serve $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT)) $(if $(STORE),--store $(STORE))

lint: $(VENV)/.test-installed
	$(BIN)/ruff check mockserver tests bench tools
	$(BIN)/lint-imports --no-cache

typecheck: $(VENV)/.test-installed
	$(BIN)/mypy mockserver tests bench tools

pytest: $(VENV)/.test-installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Not part of make test: the README's durations, measured in a fresh clone of HEAD (make run's build, the
# test extras, make check, make test), each with the machine's load beside it.
timings:
	$(PYTHON) tools/timings.py

# The reference pages written from the code (CLI, admin API, configuration, provider fidelity): a test fails
# when they are stale.
reference: $(VENV)/.test-installed
	$(BIN)/python tools/reference.py

# Strict: a broken link or anchor, or a page left out of the navigation, fails the build (and so make test).
docs: $(VENV)/.test-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test: lint typecheck docs pytest

# The quick lane: lint, types and the tests that start no process, browser or build (pytest -m "not
# system"); make test runs everything.
check: lint typecheck
	$(BIN)/python -m pytest -m "not system" -q $(PYTEST_ARGS)

# A larger fuzz budget than CI's (3.5 minutes on a 2-core machine), with a fresh seed each run, printed
# first: `make fuzz FUZZ_SEED=N` repeats a run. Progress every FUZZ_PROGRESS requests.
FUZZ_EXAMPLES ?= 300
FUZZ_STEPS ?= 10
FUZZ_PROGRESS ?= 2000
ifndef FUZZ_SEED
FUZZ_SEED := $(shell $(PYTHON) -c 'import secrets; print(secrets.randbelow(2**32))')
endif
fuzz: $(VENV)/.test-installed
	@echo "make fuzz: seed $(FUZZ_SEED); repeat this run with: make fuzz FUZZ_SEED=$(FUZZ_SEED)"
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_STEPS=$(FUZZ_STEPS) FUZZ_RANDOM=1 FUZZ_PROGRESS=$(FUZZ_PROGRESS) \
		$(BIN)/python -m pytest tests/test_fuzz.py -p no:cacheprovider -v -s --hypothesis-seed=$(FUZZ_SEED) \
		|| { echo "make fuzz: seed $(FUZZ_SEED) FAILED; repeat it with: make fuzz FUZZ_SEED=$(FUZZ_SEED)"; exit 1; }
	@echo "make fuzz: seed $(FUZZ_SEED) passed"

# Not part of make test: every benchmark (the real server under wrk against a bare-Flask floor on the same
# stack, the per-stage budget, a fuzzed test's cost, the shadow proxy's), then each target met or missed.
# Exit 0 unless GATE=1 and a target was missed (2 if a benchmark could not run).
GATE ?=
bench: $(VENV)/.test-installed
	@command -v wrk >/dev/null || { echo "make bench needs wrk: apt-get install wrk"; exit 2; }
	$(BIN)/python bench/all.py $(if $(GATE),--gate)

# Not part of make test: every operation on the PostgreSQL store (durable: fsync on) against SQLite.
bench-postgres: $(VENV)/.test-installed
	@command -v wrk >/dev/null || { echo "make bench-postgres needs wrk: apt-get install wrk"; exit 2; }
	$(BIN)/python bench/postgres.py

clean:
	rm -rf $(VENV) build dist site .pytest_cache .mypy_cache .ruff_cache returns-mock.db returns-mock.db-*
