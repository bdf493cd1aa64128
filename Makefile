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

# Regenerate every shipped model from scratch, in dependency order (~90 min on one core): the v1
# BC agent (the frozen task model of the task-aware codecs), the v1 codec set with Gray-Wyner, the
# learned Wyner-Ziv codec, the sensor-network DPCA / neural DPCA codecs, the two-receiver
# Gray-Wyner pair, the sensor-control SAC policy, the learned allocator (oracle-distilled), the
# v1 agents fine-tuned by DAgger (narrowband NDPCA views; those and clean views) and PPO from the
# first, then the v0 set (kept for bwgym/LocateLift-v0 users). The v0 BC
# agent:
#   .venv/bin/bwgym train agent --algo bc --env bwgym/LocateLift-v0 --episodes 200 --out bwgym/agents/checkpoints/bc_locate_lift.ckpt
checkpoints: $(STAMP)
	$(VENV)/bin/bwgym train agent --algo bc --env bwgym/LocateLift-v1 --episodes 400 --noise-std 0.1 \
		--out bwgym/agents/checkpoints/bc_locate_lift_v1.ckpt
	$(VENV)/bin/bwgym train codec --all --env bwgym/LocateLift-v1
	$(PY) -m bwgym.codecs.multiterminal.wyner_ziv --ship
	$(PY) benchmarks/sensors.py --train-dpca
	$(PY) benchmarks/sensors.py --train-ndpca
	$(PY) benchmarks/sensors.py --train-ndpca --preset ar1
	$(PY) -m bwgym.scenarios.two_receivers --ship
	$(PY) benchmarks/sensor_control.py --train --timesteps 30000 --episodes 100
	$(VENV)/bin/bwgym train allocator --scenario lora_ndpca --set trace.scale=2.6 --train-bits 100,500 \
		--distill-episodes 150 --total-timesteps 256 --n-envs 1 --vec dummy --eval-freq 256 \
		--eval-episodes 10 --seed 0 --out runs/allocator_ndpca_v1
	cp runs/allocator_ndpca_v1/policy.ckpt bwgym/agents/checkpoints/allocator_ndpca_locate_lift_v1.ckpt
	$(VENV)/bin/bwgym train agent --algo bc --env bwgym/LocateLift-v1 --scenario narrowband_ndpca \
		--dagger-rounds 5 --dagger-episodes 60 --epochs 8 --patience 3 --lr 3e-4 --eval-seed 50000 \
		--threads 1 --out bwgym/agents/checkpoints/bc_locate_lift_v1_narrowband_ndpca.ckpt
	$(VENV)/bin/bwgym train agent --algo bc --env bwgym/LocateLift-v1 --scenario narrowband_ndpca,uncompressed \
		--dagger-rounds 5 --dagger-episodes 60 --epochs 8 --patience 3 --lr 3e-4 --eval-seed 50000 \
		--threads 1 --out bwgym/agents/checkpoints/bc_locate_lift_v1_narrowband_clean.ckpt
	$(VENV)/bin/bwgym train agent --algo ppo --env bwgym/LocateLift-v1 --scenario narrowband_ndpca \
		--bc-init bwgym/agents/checkpoints/bc_locate_lift_v1_narrowband_ndpca.ckpt \
		--env-kwargs '{"reward_type": "sparse"}' --total-timesteps 20000 --eval-freq 5000 --eval-episodes 20 \
		--checkpoint-freq 5000 --critic-warmup-steps 3000 --initial-noise-std 0.05 \
		--rl-kwarg learning_rate=1e-5 --rl-kwarg n_steps=512 --rl-kwarg batch_size=64 --rl-kwarg n_epochs=5 \
		--rl-kwarg target_kl=0.02 --rl-kwarg clip_range=0.1 --rl-kwarg gamma=0.98 --seed 0 --threads 1 \
		--device cpu --out runs/ppo_narrowband_ndpca
	cp runs/ppo_narrowband_ndpca/policy.ckpt bwgym/agents/checkpoints/ppo_locate_lift_v1_narrowband_ndpca.ckpt
	$(VENV)/bin/bwgym train codec --all --env bwgym/LocateLift-v0 \
		--only ndpca_agnostic ndpca dae jae linear_dpca pca

clean:
	rm -rf $(VENV) runs
