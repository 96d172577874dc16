# The README's two commands: `make drill` and `make test`. Both set up what they need first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup test lint drill up bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade uv
	$(VENV)/bin/uv pip install -q --python $(PY) -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

test: setup lint
	sh scripts/sysdeps.sh
	$(PY) -m pytest

# Lint and type-check src before the tests (config in pyproject.toml: [tool.ruff], [tool.mypy]).
lint: setup
	$(VENV)/bin/ruff check src
	$(VENV)/bin/mypy src

# The detection drills need Prometheus and Alertmanager (waguard up starts them when installed).
drill: setup
	sh scripts/sysdeps.sh
	$(VENV)/bin/waguard drill --all

up: setup
	$(VENV)/bin/waguard up

clean:
	rm -rf $(VENV) .waguard .pytest_cache
