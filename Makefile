# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Each creates .venv with the pinned dependencies (requirements.lock) when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export XLA_PYTHON_CLIENT_PREALLOCATE := false

.PHONY: demo test lint bench clean venv

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/mnist_demo.py

# The linter first (configured in pyproject.toml), then the tests.
# .venv/bin first on PATH: the notebooks' Jupyter kernel runs `python`.
# A file's tests on one worker; the files with slow tests first (tests/conftest.py).
# OPTAX_EXPTEST_FULL=1 adds the full property sweeps.
test: $(STAMP)
	$(BIN)/ruff check .
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder -q --durations=15 tests

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
