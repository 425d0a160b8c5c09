# Two entry points: `make demo` and `make test`. Both create .venv on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, exact: this version lies on the build machines' disk (see README).
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/unified-adv run scenarios/quickstart.yaml

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/run.py

lint: setup
	$(VENV)/bin/ruff check unified_adv adapters tests bench
	$(VENV)/bin/mypy unified_adv adapters

clean:
	rm -rf $(VENV) reports/quickstart
