# cxloop: `make demo` to try it, `make test` to check it. Both set everything up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit postgres java chromium poppler venv bench-ingest bench-import bench-lifecycle bench-feedback bench-pages bench-insights bench-funnel bench-analytics-api bench-automations bench-startup clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "cxloop needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: venv
	$(BIN)/cxloop demo

postgres:
	bash scripts/ensure-postgres.sh

java:
	bash scripts/ensure-java.sh

chromium:
	bash scripts/ensure-chromium.sh

poppler:
	bash scripts/ensure-poppler.sh

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: venv
	$(BIN)/mypy

unit: venv postgres java chromium poppler
	$(BIN)/pytest -n 2

test: lint typecheck unit

bench-ingest: venv
	$(BIN)/python bench/ingest.py

bench-import: venv
	$(BIN)/python bench/import_events.py

bench-funnel: venv
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python bench/funnel.py

bench-analytics-api: venv
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python bench/analytics_api.py

bench-lifecycle: venv
	$(BIN)/python bench/lifecycle.py

bench-insights: venv
	$(BIN)/python bench/insights.py

bench-feedback: venv
	$(BIN)/python bench/feedback.py

bench-pages: venv
	$(BIN)/python bench/pages.py

bench-automations: venv
	$(BIN)/python bench/automations.py

bench-startup: venv
	$(BIN)/python bench/startup.py

clean:
	rm -rf $(VENV) .cxloop .pytest_cache .mypy_cache .ruff_cache
