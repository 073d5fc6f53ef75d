# The two commands of the README's quick start: `make demo` and `make test`.
# Both create (or reuse) the virtual environment at .venv from the lock file.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed

export BENTOML_DO_NOT_TRACK := True
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
# LightGBM's OpenMP threads otherwise spin while waiting: ~10x slower on a busy 2-core machine
export OMP_WAIT_POLICY := PASSIVE

.PHONY: demo test lint bench install lock browser spark

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet "uv>=0.5,<1"
	$(UV) pip sync --quiet -p $(VENV)/bin/python requirements.lock
	$(UV) pip install --quiet -p $(VENV)/bin/python --no-deps -e .
	touch $(STAMP)

# The Spark extra (pyspark, locked in requirements-spark.lock) for `--engine spark`; Java 17 must be installed.
SPARK_STAMP := $(VENV)/.spark-installed
spark: $(SPARK_STAMP)

$(SPARK_STAMP): $(STAMP) requirements-spark.lock
	$(UV) pip install --quiet -p $(VENV)/bin/python -r requirements-spark.lock
	touch $(SPARK_STAMP)

demo: $(STAMP)
	$(VENV)/bin/churn demo

# Browser tests drive Debian's Chromium (and a CJK font for the page's Chinese terms);
# install them when missing (needs root, as on CI).
browser:
	@{ command -v chromium >/dev/null && fc-list 2>/dev/null | grep -qi wenquanyi; } || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-zenhei >/dev/null; \
	  else echo "chromium is missing: run 'sudo apt-get install chromium fonts-wqy-zenhei' (browser tests will fail without it)"; fi; }

# Lint first (ruff and mypy, configured in pyproject.toml), then the tests.
test: $(STAMP) $(SPARK_STAMP) browser lint
	$(VENV)/bin/python -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Speed benchmarks (not tests): each script prints its figures; see the README.
bench: $(STAMP)
	$(VENV)/bin/python benchmarks/generate_sample.py
	$(VENV)/bin/python benchmarks/features_bench.py
	$(VENV)/bin/python benchmarks/serving_bench.py
	$(VENV)/bin/python benchmarks/real_data.py

# Re-resolve the lock after changing pyproject.toml's dependencies.
lock: $(STAMP)
	$(UV) pip compile pyproject.toml --extra dev --extra bench -p 3.11 -o requirements.lock --no-header
	$(UV) pip compile pyproject.toml --extra dev --extra bench --extra spark -c requirements.lock -p 3.11 -o requirements-spark.lock --no-header
