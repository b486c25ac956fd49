# Quick start: `make demo` runs the default scenario, `make test` runs the test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: demo test bench install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test]'
	$(VENV)/bin/cmasim compile
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/cmasim run --scenario default --out results/default --force

test: install
	$(PY) -m pytest -q -p no:cacheprovider

bench: install
	$(VENV)/bin/cmasim bench --gib 1
	$(VENV)/bin/cmasim bench --gib 16 --runs 3 --events 3000000 --no-start
	$(VENV)/bin/cmasim bench --gib 16 --reference bench/native/run-native.sh

clean:
	rm -rf $(VENV) results .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
