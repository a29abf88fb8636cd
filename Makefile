# unseg: `make install`, `make lint`, `make test`, `make demo`. Everything runs inside .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UNSEG := $(VENV)/bin/unseg
DEMO ?= demo_out

.PHONY: install lint format reference test demo demo-model bench clean

install: $(VENV)/.installed

# the cloud extra (fsspec, aiohttp) lets the URL tests run (memory://, a loopback http server).
# the crf extra (pydensecrf2 builds from source: needs a C++ compiler) lets the CRF tests run instead of skipping;
# without a compiler the install goes on and says so (CI checks that it is there: .ci/run); the ray extra
# (Ray Data, pyarrow) and the openvino extra (--engine openvino) likewise, best effort
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q -e '.[crf]' || echo "note: the crf extra did not build (no C++ compiler?); its tests will skip" >&2
	$(PY) -m pip install -q -e '.[cloud]' || echo "note: the cloud extra did not install; the URL tests will skip" >&2
	$(PY) -m pip install -q -e '.[ray]' || echo "note: the ray extra did not install; tests/integrations/test_ray.py's Ray tests will skip" >&2
	$(PY) -m pip install -q -e '.[openvino]' || echo "note: the openvino extra did not install; its tests will skip" >&2
	touch $@

# ruff (lint + format check) on everything, mypy on the package, the import contract (pyproject's
# [tool.importlinter]: layers, methods independent), the generated references (docs/reference/) up to date:
# what CI runs before the tests
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy unsegcli
	$(VENV)/bin/lint-imports
	$(PY) scripts/gen_reference.py --check

# regenerate docs/reference/cli.md (from the Typer app) and docs/reference/formats.md (from the label writers)
reference: install
	$(PY) scripts/gen_reference.py

# rewrite files in place: import order, fixable lint, formatting
format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# two pytest-xdist workers (work stealing), one intra-op thread each (tests/conftest.py): on 2 idle cores 122 s
# (128 s with the default distribution) against 190 s in one process (benchmarks/RESULTS.md); TEST_WORKERS=0 runs
# them in this process (a debugger, -x, prints)
TEST_WORKERS ?= 2
test: install
	$(PY) -m pytest --durations=10 -n $(TEST_WORKERS) --dist worksteal

# The whole chain on the embedded defaults (CPU, offline). See README "Quick start".
demo: install
	bash scripts/demo.sh $(DEMO)

# Reproduce the embedded demo checkpoint unsegcli/weights_data/unseg-demo-synth.pt (CPU, about 20 minutes).
demo-model: install
	bash scripts/demo_model.sh

bench: install
	$(PY) benchmarks/predict_throughput.py

clean:
	rm -rf $(DEMO) demo_model_work .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
