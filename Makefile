# The README's two commands. Both create .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: venv test lint typecheck demo bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	# The Silero VAD model, without the torch its wheel asks for (see pyproject.toml).
	$(PIP) install -q --no-deps 'silero-vad==6.2.3'
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check callfleet tests
	$(VENV)/bin/ruff format --check callfleet tests

typecheck: venv
	$(VENV)/bin/mypy

test: lint typecheck
	$(VENV)/bin/pytest -q -ra

demo: venv
	$(VENV)/bin/callfleet demo

bench: venv
	$(VENV)/bin/pytest -q -s -m benchmark tests/benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
