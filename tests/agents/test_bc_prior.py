"""BC-initialised PPO/SAC: the first policy is the BC agent; CLI training, reloading, evaluation, resume."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

import bwgym  # noqa: F401
from bwgym.agents.bc import BCAgent
from bwgym.agents.rl import POLICY_FILE, RLAgent, RLConfig, _build_model, _vec_env, load_rl
from bwgym.cli import main
from bwgym.common.checkpoint import load_checkpoint

ENV_ID = "bwgym/LocateLift-v1"
SMALL_RL = {
    "ppo": ["--rl-kwarg", "n_steps=32", "--rl-kwarg", "batch_size=16", "--rl-kwarg", "n_epochs=1"],
    "sac": [
        "--rl-kwarg",
        "buffer_size=200",
        "--rl-kwarg",
        "learning_starts=16",
        "--rl-kwarg",
        "batch_size=8",
    ],
}


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_first_policy_acts_like_the_bc_agent(tmp_path, algo):
    torch.set_num_threads(1)
    config = RLConfig(
        algo=algo, env_id=ENV_ID, bc_init="shipped", total_timesteps=64, device="cpu", out_dir=str(tmp_path)
    )
    venv = _vec_env(config, 0)
    try:
        model, steps = _build_model(config, venv, tmp_path)
    finally:
        venv.close()
    assert steps == 0
    bc = BCAgent.load_shipped(ENV_ID)
    agent = RLAgent(model.policy, {"views": {"arm": None, "side": None}})
    env = gym.make(ENV_ID)
    obs, _ = env.reset(seed=5)
    for _ in range(8):
        expected = bc.act(obs)
        np.testing.assert_allclose(agent.act(obs), expected, atol=1e-5)
        obs, *_ = env.step(expected)
    # ... and explores: stochastic actions are not all the deterministic one.
    batch = {k: np.repeat(v[None], 16, axis=0) for k, v in obs.items()}
    model.policy.reset_noise(16) if algo == "ppo" else None
    actions, _ = model.policy.predict(batch, deterministic=False)
    assert np.std(actions, axis=0).max() > 1e-3
    env.close()


def test_bc_prior_of_another_env_is_refused_naming_both(tmp_path):
    config = RLConfig(
        algo="ppo",
        env_id=ENV_ID,
        bc_init=str(Path(bwgym.__file__).parent / "agents" / "checkpoints" / "bc_locate_lift.ckpt"),
        out_dir=str(tmp_path),
        device="cpu",
    )
    venv = _vec_env(config, 0)
    try:
        with pytest.raises(ValueError, match=r"LocateLift-v0.*LocateLift-v1|LocateLift-v1.*LocateLift-v0"):
            _build_model(config, venv, tmp_path)
    finally:
        venv.close()


def _train(algo: str, out: Path, steps: int, *extra: str) -> int:
    return main(
        [
            "train",
            "agent",
            "--algo",
            algo,
            "--env",
            ENV_ID,
            "--scenario",
            "lora_ndpca",
            "--bc-init",
            "shipped",
            "--total-timesteps",
            str(steps),
            "--eval-freq",
            "10000",
            "--eval-episodes",
            "1",
            "--checkpoint-freq",
            "32",
            "--device",
            "cpu",
            "--out",
            str(out),
            *SMALL_RL[algo],
            *extra,
        ]
    )


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_cli_trains_reloads_evaluates_and_resumes(tmp_path, algo):
    out = tmp_path / algo
    assert _train(algo, out, 64, "--critic-warmup-steps", "32") == 0
    ckpt = load_checkpoint(out / POLICY_FILE)
    assert ckpt.metadata["config"]["bc_init"] == "shipped"
    assert ckpt.metadata["policy_kwargs"]["features_extractor_class"] == "BCFeatures"
    agent = load_rl(out, env_id=ENV_ID, device="cpu")
    env = gym.make(ENV_ID)
    obs, _ = env.reset(seed=0)
    assert agent.act(obs).shape == (4,)
    env.close()

    # As after kill -9: the final policy is gone, the periodic checkpoints remain.
    (out / POLICY_FILE).unlink()
    assert _train(algo, out, 96, "--resume") == 0
    assert load_checkpoint(out / POLICY_FILE).metadata["num_timesteps"] >= 96

    run = tmp_path / "eval"
    status = main(
        [
            "evaluate",
            "--env",
            ENV_ID,
            "--agent",
            "sb3",
            "--agent-checkpoint",
            str(out),
            "--codec",
            "ndpca",
            "--trace",
            "lora_narrowband",
            "--episodes",
            "1",
            "--out",
            str(run),
        ]
    )
    assert status == 0
    episodes = pd.read_parquet(next(run.rglob("episodes.parquet")))
    assert len(episodes) == 1


def test_resume_without_checkpoints_is_a_clear_error(tmp_path):
    status = _train("ppo", tmp_path / "none", 64, "--resume")
    assert status != 0
