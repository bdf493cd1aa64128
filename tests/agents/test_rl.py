import numpy as np
import pytest
import yaml

import bwgym  # noqa: F401
from bwgym.agents.rl import RLConfig, load_rl, make_rl_env, train_rl


@pytest.fixture
def narrow_scenario(tmp_path):
    path = tmp_path / "narrow.yaml"
    path.write_text(yaml.safe_dump({
        "name": "narrow", "env": {"kwargs": {"image_size": 36}},
        "trace": {"source": None, "generator": "constant", "params": {"bps": 300_000.0, "duration_s": 10.0}},
        "codec": {"name": "jpeg"},
    }))
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("algo, hyper", [
    ("ppo", {"n_steps": 64, "batch_size": 32, "n_epochs": 1}),
    ("sac", {"buffer_size": 300, "learning_starts": 100, "batch_size": 16}),
])
def test_sb3_trains_through_bandwidth_limited_and_reloads(tmp_path, narrow_scenario, algo, hyper):
    config = RLConfig(algo=algo, env_kwargs={"image_size": 36, "reward_type": "dense"}, scenario=narrow_scenario,
                      total_timesteps=128, eval_freq_steps=10_000, checkpoint_freq_steps=10_000, hyperparams=hyper,
                      out_dir=str(tmp_path / algo), device="cpu")
    model = train_rl(config, progress=False)
    assert model.num_timesteps >= 128
    env = make_rl_env(config)
    obs, info = env.reset(seed=0)
    assert "budget_bits" in info  # the policy sees decoded views
    agent = load_rl(tmp_path / algo, env_id="bwgym/LocateLift-v0", observation_space=env.observation_space)
    action = agent.act(obs)
    expected, _ = model.predict(obs, deterministic=True)
    np.testing.assert_allclose(action, expected, atol=1e-6)
    assert (tmp_path / algo / "tensorboard").is_dir()


def test_load_rejects_another_env(tmp_path):
    (tmp_path / "model.json").write_text('{"env_id": "bwgym/Other-v0", "observation_spec": {}, "algo": "ppo"}')
    with pytest.raises(ValueError, match="trained on 'bwgym/Other-v0', not on 'bwgym/LocateLift-v0'"):
        load_rl(tmp_path, env_id="bwgym/LocateLift-v0")
    with pytest.raises(ValueError, match="model.json is missing"):
        load_rl(tmp_path / "nothing")


def test_bad_algo_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="algo must be one of"):
        train_rl(RLConfig(algo="dqn", out_dir=str(tmp_path)), progress=False)
