# Two entry points: `make demo` and `make test`. Both create .venv on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# pipefail: an install whose output is filtered still fails the target when pip fails.
SHELL       := /bin/bash
.SHELLFLAGS := -o pipefail -ec
# pip reads this machine's /etc/pip.conf, whose extra index locations may not exist here:
# its "Location ... is ignored" lines are noise, not errors. Everything else pip says stays.
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check
QUIET  := 2>&1 | { grep -v "^WARNING: Location '.*' is ignored" || true; }

.PHONY: setup demo cifar-shapes test lint bench weights readme-numbers chromium clean

# torch first, exact: this version lies on the build machines' disk (see README).
# build-constraints.txt holds back setuptools for the packages built from source (visdom,
# which adv-lib needs, imports pkg_resources in its setup.py).
# The package maps unified_adv.adapters to ./adapters, so setuptools installs it in editable
# mode through an import finder and says so in an "Editable installation." warning on every
# install: information for setuptools' developers, not for ours.
# [mlflow] goes on its own, after [all]: every MLflow client needs a newer requests than
# torchattacks 3.5.1 pins (requests~=2.25.1; see pyproject.toml). pip installs it and then
# reports that known pin conflict in two lines, filtered here; torchattacks never imports
# requests. Any other pip message still shows.
QUIET_MLFLOW := 2>&1 | { grep -v -e "^WARNING: Location '.*' is ignored" \
  -e "^ERROR: pip's dependency resolver does not currently take into account" \
  -e "^torchattacks 3.5.1 requires requests~=2.25.1" || true; }

$(STAMP): pyproject.toml build-constraints.txt
	python3 -m venv $(VENV)
	$(PIP) --upgrade pip $(QUIET)
	$(PIP) torch==2.14.1 torchvision==0.29.1 $(QUIET)
	PYTHONWARNINGS="ignore:Editable installation" $(PIP) --build-constraint build-constraints.txt -e '.[all,dev]' $(QUIET)
	PYTHONWARNINGS="ignore:Editable installation" $(PIP) -e '.[mlflow]' $(QUIET_MLFLOW)
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/unified-adv run scenarios/quickstart.yaml

# The bring-your-own example at CIFAR size (README "Your own model and data"): the seeded shapes
# data and the ResNet-18 trained on them (a few minutes on one thread) are made when missing.
SHAPES := build/shapes
$(SHAPES)/resnet18_shapes.ts: scripts/make_shapes_cifar.py scripts/train_shapes_resnet.py | $(STAMP)
	$(PY) scripts/make_shapes_cifar.py $(SHAPES)
	$(PY) scripts/train_shapes_resnet.py $(SHAPES)

cifar-shapes: setup $(SHAPES)/resnet18_shapes.ts
	$(VENV)/bin/unified-adv run scenarios/cifar_shapes.yaml

# The report tests drive a real headless Chromium (Debian's package). Installed here when
# missing and running as root; otherwise one line says what to run, before anything else.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Debian's chromium for the report tests (apt-get) ..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "make test needs Chromium for the report tests: run  sudo apt-get install -y chromium  and then make test again" >&2; \
	    exit 2; \
	  fi; }

test: chromium setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/run.py

# Retrain every builtin model and rewrite unified_adv/sources/builtin/weights (files + manifest).
weights: setup
	$(PY) -m unified_adv.sources.builtin.train

# Re-run every scenario README.md quotes (lim, zingade, ding_moller, possas, kugler, quickstart)
# and rewrite its numbers in place, with the Performance tables read from bench/results_*.json
# (the last `make bench`; not re-run). `make readme-numbers CHECK=1` only compares (exit 1 and a
# diff when they differ); STORED=1 uses bench/readme_summaries/ instead of re-running (seconds).
readme-numbers: setup
	$(PY) bench/readme_numbers.py $(if $(CHECK),--check,) $(if $(STORED),--stored,)

lint: setup
	$(VENV)/bin/ruff check unified_adv adapters tests bench
	$(VENV)/bin/mypy unified_adv adapters

clean:
	rm -rf $(VENV) reports/quickstart
