"""PPO from a latent agent's prior: the first policy is the prior, GAE stops at episode ends,
a run trains and saves a latent agent that scenarios run, and a killed run resumes its curve."""

from __future__ import annotations

import csv
import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bwgym.agents.latent_bc import SHIPPED, LatentBCAgent
from bwgym.agents.latent_rl import (
    CURVE_FILE,
    STATE_FILE,
    TRAIN_SEED_BASE,
    LatentPPO,
    _advantages,
    _Trainer,
    train_latent_ppo,
)
from bwgym.common.checkpoint import CheckpointError, load_checkpoint

PRIOR = Path(__file__).resolve().parents[2] / "bwgym/agents/checkpoints" / SHIPPED["bwgym/LocateLift-v1"]
TINY = dict(
    n_envs=2,
    rollout_steps=16,
    epochs=2,
    minibatch_size=16,
    critic_warmup_steps=32,
    eval_every_steps=32,
    eval_episodes=1,
    checkpoint_every_steps=32,
)


@pytest.fixture(scope="module")
def prior() -> LatentBCAgent:
    return LatentBCAgent.load(PRIOR)


@pytest.fixture(scope="module")
def env_factory():
    from bwgym.cli.latent_agent import latent_scenario
    from bwgym.scenarios.factory import make_env

    return functools.partial(make_env, latent_scenario("lora_ndpca"))


def _curve(folder: Path) -> list[dict[str, str]]:
    with open(folder / CURVE_FILE, newline="") as f:
        return list(csv.DictReader(f))


def test_generalised_advantages_stop_at_the_end_of_an_episode() -> None:
    rewards = np.array([[0.0], [1.0], [0.0]], np.float32)
    dones = np.array([[0.0], [1.0], [0.0]], np.float32)
    values = np.array([[0.5], [0.5], [0.2]], np.float32)
    adv = _advantages(rewards, dones, values, np.array([0.4], np.float32), gamma=0.9, lam=1.0)
    # step 2 starts a new episode: it bootstraps from the last value; step 1 ends one: no bootstrap
    np.testing.assert_allclose(adv[:, 0], [0.9 * 1.0 - 0.5, 1.0 - 0.5, 0.9 * 0.4 - 0.2], rtol=1e-6)


def test_the_first_policy_is_the_prior_and_the_prior_term_anneals(prior) -> None:
    trainer = _Trainer(prior, LatentPPO(initial_noise_std=0.2, prior_coef=0.5, prior_anneal_steps=100))
    rows = torch.randn(7, prior.features.size)
    with torch.no_grad():
        torch.testing.assert_close(trainer.mean(rows), prior({"features": rows}))
        assert torch.allclose(trainer.distribution(rows).stddev, torch.tensor(0.2))
    assert [trainer.config.prior_weight(s) for s in (0, 50, 100, 500)] == [0.5, 0.25, 0.0, 0.0]
    with pytest.raises(ValueError, match=r"initial_noise_std=0\.0"):
        LatentPPO(initial_noise_std=0.0)


def test_a_run_trains_the_actor_and_saves_a_latent_agent_scenarios_run(tmp_path, prior, env_factory) -> None:
    torch.set_num_threads(1)
    agent = train_latent_ppo(
        env_factory, prior, tmp_path / "run", LatentPPO(total_steps=64, **TINY), progress=False
    )
    rows = _curve(tmp_path / "run")
    assert [int(r["env_steps"]) for r in rows] == [32, 64]
    assert float(rows[0]["prior_coef"]) > float(rows[1]["prior_coef"]) >= 0.0
    moved = [
        not torch.equal(a, b) for a, b in zip(agent.mlp.parameters(), prior.mlp.parameters(), strict=True)
    ]
    assert all(moved), "after the critic's warm-up the actor learns"
    assert agent.code_spec == prior.code_spec and agent.train_config["rl"]["env_steps"] == 64
    path = agent.save(tmp_path / "ppo.ckpt")
    from bwgym.scenarios.config import load_scenario
    from bwgym.scenarios.factory import count_successes

    scenario = load_scenario("lora_ndpca_latent", {"agent.checkpoint": str(path)})
    assert count_successes(scenario, range(1), LatentBCAgent.load(path)) in (0, 1)


def test_resume_continues_counters_and_curve_and_refuses_other_settings(tmp_path, prior, env_factory) -> None:
    torch.set_num_threads(1)
    run = tmp_path / "run"
    train_latent_ppo(env_factory, prior, run, LatentPPO(total_steps=32, **TINY), progress=False)
    saved = load_checkpoint(run / STATE_FILE).metadata
    assert saved["env_steps"] == 32 and saved["next_seed"] > TRAIN_SEED_BASE + TINY["n_envs"] - 1
    with pytest.raises(CheckpointError, match=r"actor_lr: 3e-05 -> 0\.001"):
        train_latent_ppo(
            env_factory,
            prior,
            run,
            LatentPPO(total_steps=64, actor_lr=1e-3, **TINY),
            resume=True,
            progress=False,
        )
    with pytest.raises(FileNotFoundError, match="no state.ckpt"):
        train_latent_ppo(
            env_factory, prior, tmp_path / "empty", LatentPPO(**TINY), resume=True, progress=False
        )
    agent = train_latent_ppo(
        env_factory, prior, run, LatentPPO(total_steps=64, **TINY), resume=True, progress=False
    )
    assert [int(r["env_steps"]) for r in _curve(run)] == [32, 64]
    state = load_checkpoint(run / STATE_FILE).metadata
    assert state["env_steps"] == 64 and state["next_seed"] >= saved["next_seed"] + TINY["n_envs"]
    assert agent.train_config["rl"]["env_steps"] == 64


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_from_its_last_state(tmp_path) -> None:
    """``bwgym train latent-ppo`` killed with -9 after its first state: ``--resume`` continues its curve."""
    run, out = tmp_path / "run", tmp_path / "ppo.ckpt"
    settings = {**TINY, "total_steps": 160}
    command = [
        sys.executable, "-m", "bwgym.cli", "train", "latent-ppo", "--scenario", "lora_ndpca", "--prior", str(PRIOR),
        "--run-dir", str(run), "--out", str(out), "--eval-episodes", "1",
        *[a for k, v in settings.items() for a in ("--ppo", f"{k}={v}")],
    ]  # fmt: skip
    env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (run / STATE_FILE).is_file() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = load_checkpoint(run / STATE_FILE).metadata["env_steps"]
    assert 32 <= killed_at < 160 and not out.exists()
    done = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    steps = [int(r["env_steps"]) for r in _curve(run)]
    assert steps == list(range(32, 161, 32)), "the resumed curve continues the first run's rows"
    assert LatentBCAgent.load(out).train_config["rl"]["env_steps"] == 160


def test_the_shipped_rl_agent_runs_from_its_library_scenario(tmp_path, prior) -> None:
    from bwgym.cli import main

    out = tmp_path / "run"
    assert main(["run", "lora_ndpca_latent_rl", "--episodes", "2", "--out", str(out)]) == 0
    table = __import__("pandas").read_parquet(out / "episodes.parquet")
    assert len(table) == 2 and set(table.agent) == {"latent_bc"}
    shipped = LatentBCAgent.load(PRIOR.with_name("latent_ppo_locate_lift_v1_lora_ndpca.ckpt"))
    assert shipped.code_spec == prior.code_spec and shipped.train_config["rl"]["env_steps"] > 0
    curve = shipped.extra_meta["curve"]
    assert curve and curve[0]["prior_eval_success"] is not None and "eval_prior" in shipped.extra_meta


@pytest.mark.slow
def test_worker_processes_give_the_same_rollouts_as_one_process(prior, env_factory) -> None:
    """Spawned workers step the same envs with the same actions and seeds: the numbers do not depend on them."""
    from bwgym.agents.latent_rl import _collect, _Envs, _feature_args

    batches = []
    for workers in (1, 2):
        trainer = _Trainer(prior, LatentPPO(n_envs=2, rollout_steps=52, workers=workers))
        envs = _Envs(env_factory, _feature_args(trainer.actor), 2, workers, limit=50)
        try:
            envs.reset({0: TRAIN_SEED_BASE, 1: TRAIN_SEED_BASE + 1})
            trainer.next_seed = TRAIN_SEED_BASE + 2
            batches.append((_collect(trainer, envs, []), trainer.next_seed))
        finally:
            envs.close()
    (one, seeds_one), (two, seeds_two) = batches
    assert seeds_one == seeds_two > TRAIN_SEED_BASE + 2, (
        "the 50-step limit ends every episode within 52 steps"
    )
    for key in one:
        torch.testing.assert_close(one[key], two[key], rtol=0, atol=0, msg=key)
    with pytest.raises(ValueError, match=r"workers=3 \(expected >= 1 and dividing n_envs=8\)"):
        LatentPPO(workers=3)
