# Every target bootstraps .venv itself, so a fresh clone needs only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: test test-fast lint typecheck pytest demo bench soak fuzz clean

# Rebuilt when the dependencies or the compiled scanners change (pip builds them in place with gcc).
$(STAMP): pyproject.toml setup.py proxy/_jsonscan.h proxy/_usagescan.h proxy/metering/_rowscan.c proxy/budgets/_estscan.c \
		proxy/openai_door/_chatscan.c proxy/openai_door/_chatrows.c
	@echo "==> Creating $(VENV) and installing the proxy with its dependencies and test tools (a few minutes the first time)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,emulator]'
	touch $(STAMP)

## make test: lint, type-check and the whole test suite
test: lint typecheck pytest

## make test-fast: the tests that run no emulator job, start no server and need no PostgreSQL (about a minute)
test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow and not postgres" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy proxy

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

## make demo: the whole flow on this machine with no Google account
demo: $(STAMP)
	$(BIN)/python -m proxy.emulator.demo

## make bench: the benchmarks (they print figures; they do not fail on them)
bench: $(STAMP)
	PYTHONPATH=. $(BIN)/python -m bench.run

## make soak: `vbp serve` on the emulator under mixed load for 10 minutes; prints figures and targets (not in make test)
## SOAK_ARGS="--minutes 1 --rate 50", "--storm", "--database postgres --db-restart": see bench/soak/run.py
soak: $(STAMP)
	PYTHONPATH=. $(BIN)/python -m bench.soak $(SOAK_ARGS)

## make fuzz: the compiled scanners built with ASan and UBSan, held to Python by their tests and fuzz targets (not in make test)
FUZZ_DIR := build/fuzz
FUZZ_SECONDS ?= 60
SANITIZE := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1
fuzz: $(STAMP)
	rm -rf $(FUZZ_DIR) && mkdir -p $(FUZZ_DIR)
	cp -r proxy tests pricing setup.py pyproject.toml $(FUZZ_DIR)/
	rm -f $(FUZZ_DIR)/proxy/metering/_rowscan*.so $(FUZZ_DIR)/proxy/budgets/_estscan*.so \
		$(FUZZ_DIR)/proxy/openai_door/_chatscan*.so $(FUZZ_DIR)/proxy/openai_door/_chatrows*.so
	cd $(FUZZ_DIR) && CFLAGS="$(SANITIZE)" LDFLAGS="-fsanitize=address,undefined" \
		$(CURDIR)/$(BIN)/python setup.py --quiet build_ext --inplace
	# The copy comes first on the path (ahead of the editable install), so its sanitized scanner is the one tested.
	cd $(FUZZ_DIR) && LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
		ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(CURDIR)/$(BIN)/python -c "import proxy.metering._rowscan as m, proxy.budgets._estscan as e, proxy.openai_door._chatscan as c, proxy.openai_door._chatrows as r, sys; sys.exit(0 if all('build/fuzz' in x.__file__ for x in (m, e, c, r)) else 'not the sanitized build')" && \
		LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
		ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(CURDIR)/$(BIN)/pytest -q -p no:cacheprovider tests/metering/test_rowscan.py tests/metering/test_scanner.py tests/reports/test_line_reader.py \
			tests/reports/test_line_records.py \
			tests/budgets/test_estscan.py tests/budgets/test_estimate.py tests/openai_door/test_conversion_fast_path.py \
			tests/openai_door/test_file_conversion.py tests/openai_door/test_chat_request.py tests/openai_door/test_chat_rows.py && \
		LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
		ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(CURDIR)/$(BIN)/python -m tests.metering.fuzz_rowscan --seconds $(FUZZ_SECONDS) && \
		LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
		ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(CURDIR)/$(BIN)/python -m tests.budgets.fuzz_estscan --seconds $(FUZZ_SECONDS) && \
		LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
		ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(CURDIR)/$(BIN)/python -m tests.openai_door.fuzz_chatscan --seconds $(FUZZ_SECONDS) && \
		LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
		ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(CURDIR)/$(BIN)/python -m tests.openai_door.fuzz_chatrows --seconds $(FUZZ_SECONDS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache vbp.db* build proxy/metering/_rowscan.*.so proxy/budgets/_estscan.*.so \
		proxy/openai_door/_chatscan.*.so proxy/openai_door/_chatrows.*.so
