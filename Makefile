# One venv, one set of commands. `make train` and `make test` install what they need first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU install path pins torch (a CPU wheel, seconds to install); GPU users bring their own CUDA torch.
TORCH_CPU ?= torch==2.13.0
# DeepSpeed ships only a source archive that imports torch while building: build it against the
# torch above (no isolated build environment, which would download another torch).
DEEPSPEED ?= deepspeed==0.19.8
PIP_INSTALL := $(PY) -m pip install --quiet $(if $(wildcard /opt/wheels),--find-links /opt/wheels)

.PHONY: install install-train test test-fast lint format train bench bench-quick clean

# `make train` needs the package and torch only; the tests also need DeepSpeed and the dev and real extras.
install-train: $(VENV)/.installed-train
install: $(VENV)/.installed

$(VENV)/.installed-train: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) "$(TORCH_CPU)"
	$(PIP_INSTALL) -e .
	touch $@

# The test install does not go through the train install: the package and its extras come in one pip
# call after DeepSpeed (one dependency resolution less). DeepSpeed compiles its CPU shared-memory op at
# the first ZeRO run on a CPU (a minute of C++): build it here, beside that last call, for the tests and
# a user's first run. A failed build is not fatal (DeepSpeed retries at run time); its log is
# $(VENV)/deepspeed-ops.log.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) "$(TORCH_CPU)"
	$(PIP_INSTALL) --no-build-isolation "$(DEEPSPEED)" "transformers>=4.46"
	$(PY) -c "from deepspeed.comm.torch import build_shm_op; build_shm_op()" > $(VENV)/deepspeed-ops.log 2>&1 & \
	  ops=$$!; $(PIP_INSTALL) -e ".[dev,real]"; status=$$?; wait $$ops || true; exit $$status
	touch $(VENV)/.installed-train $@

# GPU tests need a CUDA device: CI deselects them; benchmarks/gpu_check.sh runs them on a GPU machine.
# pytest-xdist runs TEST_WORKERS tests at once; tests/conftest.py shares the cores among the workers.
TEST_WORKERS ?= 2
test: install lint
	$(PY) -m pytest -m "not gpu" -n $(TEST_WORKERS)

test-fast: install
	$(PY) -m pytest -m "not slow and not gpu" -n $(TEST_WORKERS)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

train: install-train
	$(VENV)/bin/harmonic-forecast train --config configs/quickstart.toml

bench: install
	$(PY) benchmarks/run_suite.py

bench-quick: install
	$(PY) benchmarks/run_suite.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
