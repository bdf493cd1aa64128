# Two commands set up everything on a fresh machine:
#   make run    the main job (creates .venv and installs on first use)
#   make test   the test suite (same)
# A CPU build of torch is installed first where there is no NVIDIA GPU (torch==2.13.0 is the CPU
# wheel this machine kind keeps on disk); with a GPU, pip's default (CUDA) torch is used.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.bwgym-installed
export MUJOCO_GL ?= egl
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: run lint test test-fast bench checkpoints install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "NVIDIA GPU found: installing the CUDA build of torch"; \
		$(PY) -m pip install -q "torch>=2.2"; \
	else \
		echo "no NVIDIA GPU: installing the CPU build torch==2.13.0"; \
		$(PY) -m pip install -q torch==2.13.0; \
	fi
	$(PY) -m pip install -q -e ".[test]"
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/bwgym run lora_ndpca --workers 2

# Lint and format checks first (seconds): a tree that ruff would change does not pass.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(VENV)/bin/bwgym bench

# Regenerate every shipped model from scratch (~90 min on one core): every row of the model zoo
# (`bwgym zoo` lists them: file, env, kind, dependencies, the command that makes each), in
# dependency order; each command writes into runs/zoo/<stamp>/ and its file is then copied into the
# package atomically. `bwgym train --all --dry-run` prints the commands; `--only NAME...` picks rows.
checkpoints: $(STAMP)
	$(VENV)/bin/bwgym train --all

clean:
	rm -rf $(VENV) runs
