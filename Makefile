# Two commands matter: `make run` and `make test`. Everything else is a helper.
# Another Python: `make test PYTHON=python3.13` (the venv is rebuilt for it; VENV=… keeps several).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYVER  := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
# The stamp names the interpreter's version, so a venv made by another Python is made again.
STAMP  := $(VENV)/.installed-$(PYVER)
PYTEST := $(BIN)/python -m pytest -ra --durations=25

.PHONY: run test test-smoke bench generate venv clean

$(STAMP): pyproject.toml
	@test -n "$(PYVER)" || { echo "$(PYTHON) not found: set PYTHON=/path/to/python3.x" >&2; exit 2; }
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

## Start the daemon on ./inbox with the offline default model (tiny.en).
run: $(STAMP)
	mkdir -p inbox
	$(BIN)/scribewatch run --watch ./inbox

## Set up, lint (ruff, configured in pyproject.toml) and run the whole test suite, with the
## slowest tests' durations.
test: $(STAMP)
	$(BIN)/ruff check .
	$(PYTEST) $(PYTEST_ARGS)

## The unit tests and one real end-to-end transcription: what CI runs on the other Pythons.
test-smoke: $(STAMP)
	$(PYTEST) -m "not slow or smoke" $(PYTEST_ARGS)

## Benchmarks: each script prints one JSON object and writes bench/results/<name>.json.
bench: $(STAMP)
	$(BIN)/python -m bench.run_all

## Rewrite every generated file: alerting rules, dashboards, mixin/runbook.md and
## docs/dashboards.md, docs/metrics.md, docs/http.md, the README's config and reason tables,
## scribewatch.example.yaml, docs/performance.md's results table.
## tests/unit/test_generated.py fails while a committed one differs.
generate: $(STAMP)
	$(BIN)/python -m mixin
	$(BIN)/python -m scribewatch.exporter.docs
	$(BIN)/python -m scribewatch.web.docs
	$(BIN)/python -m scribewatch.pipeline.docs
	$(BIN)/python -m bench.report

clean:
	rm -rf $(VENV) .venv-3.* build *.egg-info .pytest_cache
