# unseg: `make install`, `make test`, `make demo`. Everything runs inside .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UNSEG := $(VENV)/bin/unseg
DEMO ?= demo_out

.PHONY: install test demo demo-model bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

test: install
	$(PY) -m pytest

# The whole chain on the embedded defaults (CPU, offline). See README "Quick start".
demo: install
	bash scripts/demo.sh $(DEMO)

# Reproduce the embedded demo checkpoint weights/unseg-demo-synth.pt (CPU, about 20 minutes).
demo-model: install
	bash scripts/demo_model.sh

bench: install
	$(PY) benchmarks/predict_throughput.py

clean:
	rm -rf $(DEMO) demo_model_work .pytest_cache build *.egg-info
