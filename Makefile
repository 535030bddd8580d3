# Every target bootstraps .venv itself, so a fresh clone needs only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: test lint typecheck pytest demo bench clean

# Rebuilt when the dependencies or the compiled row scanner change (pip builds it in place with gcc).
$(STAMP): pyproject.toml setup.py proxy/metering/_rowscan.c
	@echo "==> Creating $(VENV) and installing the proxy with its dependencies and test tools (a few minutes the first time)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## make test: lint, type-check and the whole test suite
test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy proxy

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

## make demo: the whole flow on this machine with no Google account
demo: $(STAMP)
	$(BIN)/python -m proxy.demo

## make bench: the benchmarks (they print figures; they do not fail on them)
bench: $(STAMP)
	PYTHONPATH=. $(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache vbp.db* build proxy/metering/_rowscan.*.so
