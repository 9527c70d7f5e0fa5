# edgedet: `make demo` runs the whole pipeline, `make test` the test suite (what CI runs).
SHELL := /bin/bash
PY := .venv/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup test

# .venv with the project editable and every extra; torch pinned to the local CPU build by constraints.txt.
setup: .venv/.installed
.venv/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv .venv
	.venv/bin/pip install -q -c constraints.txt -e ".[all]"
	touch $@

test: setup
	$(PY) -m pytest -q tests
