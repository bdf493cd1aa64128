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


def test_refuses_control_mode_and_other_envs():
    with pytest.raises(ValueError, match="estimate"):
        KalmanFusionAgent.for_env(gym.make("bwgym/SensorNetwork-v0", mode="control"))
    with pytest.raises(ValueError, match="one view per sensor"):
        env = gym.make("bwgym/SensorNetwork-v0", n_sensors=2)
        KalmanFusionAgent(env.unwrapped.model, ("a",), 1.0)
