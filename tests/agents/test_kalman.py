"""The Kalman fusion agent: exact on clean views, time update on held ones."""

import gymnasium as gym
import numpy as np
import pytest

import bwgym  # noqa: F401
from bwgym.agents.kalman import KalmanFusionAgent


def test_matches_the_envs_centralised_kalman_filter_on_clean_views():
    env = gym.make("bwgym/SensorNetwork-v0", preset="cv2d", n_sensors=3, horizon=60)
    agent = KalmanFusionAgent.for_env(env)
    obs, _ = env.reset(seed=4)
    agent.reset(4)
    for _ in range(60):
        obs, reward, _, truncated, info = env.step(agent.act(obs))
        # the same filter on the same (float32) measurements: the reference's error
        assert -reward == pytest.approx(
            info["kalman_squared_error"], rel=1e-3, abs=1e-6
        )  # float32 views and actions
    assert truncated and agent.updates == 60 * 3


def test_a_repeated_view_is_a_dropped_one():
    env = gym.make("bwgym/SensorNetwork-v0", preset="ar1", n_sensors=2, horizon=10)
    agent = KalmanFusionAgent.for_env(env)
    obs, _ = env.reset(seed=0)
    agent.reset(0)
    agent.act(obs)
    assert agent.updates == 2
    held = {"sensor_0": obs["sensor_0"].copy(), "sensor_1": np.array([0.25], np.float32)}
    before = agent.filter.cov.copy()
    agent.act(held)  # sensor_0 repeats bit for bit: time update only for it
    assert agent.updates == 3
    assert agent.filter.cov[0, 0] > 0.5 * before[0, 0]


@pytest.mark.parametrize("preset", ["ar1", "cv2d"])
def test_kalman_lqr_matches_the_envs_lqg_reference_on_clean_views(preset):
    env = gym.make("bwgym/SensorNetwork-v0", preset=preset, mode="control", n_sensors=3, horizon=80)
    agent = KalmanFusionAgent.for_env(env)
    assert agent.lqr_gain is not None
    obs, _ = env.reset(seed=2)
    agent.reset(2)
    total = reference = 0.0
    for _ in range(80):
        obs, reward, _, truncated, info = env.step(agent.act(obs))
        total, reference = total - reward, reference + info["lqg_cost"]
        assert -reward == pytest.approx(info["lqg_cost"], rel=1e-3, abs=1e-5)  # float32 actions
    assert truncated and total == pytest.approx(reference, rel=1e-4)


def test_refuses_other_envs_and_mismatched_gains():
    with pytest.raises(ValueError, match="mode"):
        KalmanFusionAgent.for_env(gym.make("CartPole-v1"))
    with pytest.raises(ValueError, match="one view per sensor"):
        env = gym.make("bwgym/SensorNetwork-v0", n_sensors=2)
        KalmanFusionAgent(env.unwrapped.model, ("a",), 1.0)
    env = gym.make("bwgym/SensorNetwork-v0", preset="cv2d", n_sensors=2, mode="control")
    with pytest.raises(ValueError, match="lqr_gain"):
        KalmanFusionAgent(env.unwrapped.model, env.unwrapped.link_views, 1.0, lqr_gain=np.ones((1, 4)))
