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

# Three pytest-xdist workers: the long units (the flow tests on the session's stack, the scaled profile,
# the drills' own stack) run side by side and the small modules fill in (tests/fixtures/workers.py).
# A targeted `pytest tests/...` stays serial.
test: setup lint
	sh scripts/sysdeps.sh
	$(PY) -m pytest -n 3 --dist loadgroup --no-loadscope-reorder

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
