# Two commands matter: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench venv clean lint-config

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

## Start the daemon on ./inbox with the offline default model (tiny.en).
run: $(STAMP)
	mkdir -p inbox
	$(BIN)/scribewatch run --watch ./inbox

## Set up and run the whole test suite.
test: $(STAMP)
	$(BIN)/python -m pytest -ra $(PYTEST_ARGS)

## Benchmarks: each script prints one JSON object and writes bench/results/<name>.json.
bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
