# Two commands do all the set-up on a fresh machine:
#   make run   - create .venv, install ctxd, run the daemon in the foreground with config.yaml
#   make test  - the same venv, then ruff, mypy and the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench fuzz clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,ocr]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m daemon --config config.yaml

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Both cores; a test file runs whole on one worker (its module fixtures, such as
# the OCR worker pool, are set up once; session ones, such as the fleet's redis
# servers, once per worker).
test: lint
	$(PY) -m pytest -n 2 --dist loadfile

fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q tests/test_fuzz.py tests/test_ocr_layout.py \
		tests/test_http11.py

bench: $(STAMP)
	$(PY) bench/rpc_bench.py

clean:
	rm -rf $(VENV) var build *.egg-info
