# Two commands do all the set-up on a fresh machine: `make demo` and `make test`
# (`make test-all` for every test, as CI runs them).
# Each creates .venv with the pinned dependencies (requirements.lock) when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export XLA_PYTHON_CLIENT_PREALLOCATE := false

.PHONY: demo test test-all lint bench clean venv

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/mnist_demo.py

# Two tiers, chosen by the `slow` marker (pyproject.toml; docs/design.md section 9).
# `make test`, on every change: the linter, then every test not marked slow (on two
# cores, 8 minutes on a first run, 2 once JAX's compilation cache in .pytest_cache/jax
# is warm). `make test-all`, what CI runs: the linter, then every test, the slow ones
# included (float64 cases, every case of each property sweep, benchmarks' --quick runs,
# notebooks, the demo, Ray and Optuna runs).
# .venv/bin first on PATH: the notebooks' Jupyter kernel runs `python`.
# A file's tests on one worker; the files with the most slow tests first (tests/conftest.py).
PYTEST := PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -n 2 --dist loadfile \
	--no-loadscope-reorder -q --durations=15

test: $(STAMP)
	$(BIN)/ruff check .
	$(PYTEST) -m "not slow" tests

test-all: $(STAMP)
	$(BIN)/ruff check .
	$(PYTEST) tests

lint: $(STAMP)
	$(BIN)/ruff check .

# The reproduction of the ExpTest paper and the README's table (about 40 minutes on two
# CPU cores; inner_rules gives its ExpTest-with-momentum-and-Adam rows),
# then the report benchmarks/RESULTS.md.
bench: $(STAMP)
	for e in mnist_logreg alpha_beta batch_size california inner_rules step_time demo_seeds; do \
	  $(BIN)/python -m benchmarks $$e || exit 1; done
	$(BIN)/python -m benchmarks cifar10 --quick
	$(BIN)/python -m benchmarks report

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
