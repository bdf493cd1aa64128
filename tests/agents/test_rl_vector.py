"""SB3 on a scenario's vector env: PPO's rollouts go through VectorBandwidthLimited's batched codec."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import yaml
from test_rl import ENV_ID, SMALL, _config

from bwgym.agents.rl import sb3_vector_env, train_rl
from bwgym.scenarios.config import load_scenario
from bwgym.scenarios.factory import make_env, make_vector_env


@pytest.fixture
def narrow(tmp_path):
    """A scenario file: 36 px LocateLift-v0 views as JPEG over a constant 300 kbit/s link."""
    path = tmp_path / "narrow.yaml"
    trace = {"source": None, "generator": "constant", "params": {"bps": 300_000.0, "duration_s": 10.0}}
    path.write_text(
        yaml.safe_dump(
            {
                "name": "narrow",
                "env": {"kwargs": {"image_size": 36}},
                "trace": trace,
                "codec": {"name": "jpeg"},
            }
        )
    )
    return str(path)


def _scenario(path: str):
    s = load_scenario(path)
    return dataclasses.replace(s, env=dataclasses.replace(s.env, id=ENV_ID, kwargs={**s.env.kwargs, **SMALL}))


def test_sb3_adapter_resets_ended_envs_in_the_same_step(narrow):
    scenario = _scenario(narrow)
    venv = sb3_vector_env(make_vector_env(scenario, 2))
    venv.seed(5)
    obs = venv.reset()
    assert obs["arm"].shape[0] == 2
    single = make_env(scenario)
    single_obs, _ = single.reset(seed=6)
    np.testing.assert_array_equal(obs["arm"][1], single_obs["arm"])  # env i seeded with 5 + i
    ended = 0
    for _ in range(60):
        venv.step_async(np.zeros((2, 4), np.float32))
        obs, rewards, dones, infos = venv.step_wait()
        assert rewards.dtype == np.float32 and len(infos) == 2
        for i in np.flatnonzero(dones):
            ended += 1
            assert "terminal_observation" in infos[i] and "TimeLimit.truncated" in infos[i]
            assert venv.venv.envs[i].link.step_index == 1  # already reset: its first frame went out
    assert ended >= 2  # 50-step episodes
    assert venv.get_attr("step_seconds") == [single.step_seconds] * 2
    venv.close()


@pytest.mark.slow
def test_ppo_trains_on_the_vector_env(tmp_path, narrow):
    scenario = _scenario(narrow)
    config = _config("ppo", tmp_path / "ppo", scenario=narrow, n_envs=2, vec="vector")
    model = train_rl(
        config,
        progress=False,
        env_factory=lambda: make_env(scenario),
        vector_factory=lambda n: make_vector_env(scenario, n),
    )
    assert model.num_timesteps >= 128
    assert (tmp_path / "ppo" / "policy.ckpt").is_file()


def test_vector_without_a_factory_is_refused(tmp_path):
    with pytest.raises(ValueError, match="vector_factory"):
        train_rl(_config("ppo", tmp_path / "x", n_envs=2, vec="vector"), progress=False)
