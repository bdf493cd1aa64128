"""The one episode loop: reset order, step callbacks, step limits, and the expert labeller on top of it."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from bwgym.agents.base import RandomAgent, rollout
from bwgym.agents.demos import ExpertLabeller


class _Recorder:
    """An agent that pushes the cart one way and records its resets."""

    def __init__(self) -> None:
        self.resets: list[int | None] = []

    def reset(self, seed: int | None = None) -> None:
        self.resets.append(seed)

    def act(self, obs: np.ndarray) -> int:
        return 1


class _ActOnly:
    def act(self, obs: np.ndarray) -> int:
        return 0


def test_rollout_resets_calls_back_and_counts() -> None:
    env = gym.make("CartPole-v1")
    agent = _Recorder()
    calls: list[tuple[int, object, float]] = []
    result = rollout(env, agent, 7, on_step=lambda t, obs, a, r, info: calls.append((t, a, r)))
    assert agent.resets == [7]
    assert calls[0] == (0, None, 0.0)  # the reset
    assert [c[0] for c in calls] == list(range(result.steps + 1))
    assert all(a == 1 for _, a, _ in calls[1:])
    assert result.ret == sum(r for *_, r in calls) and not result.success
    again = rollout(env, _Recorder(), 7)  # the seed fixes the episode
    assert (again.steps, again.ret) == (result.steps, result.ret)


def test_rollout_stops_at_max_steps_and_takes_act_only_agents() -> None:
    env = gym.make("CartPole-v1")
    assert rollout(env, RandomAgent(env.action_space), 0, max_steps=3).steps == 3
    assert rollout(env, _ActOnly(), 1, max_steps=4).steps == 4  # no reset() to call


class _ScriptedExpert:
    """Stands in for LiftExpert: a label that depends on how often it was asked this episode."""

    def __init__(self) -> None:
        self.calls = 0

    def reset(self, seed: int | None = None) -> None:
        self.calls = 0

    def act(self, obs: object) -> np.ndarray:
        self.calls += 1
        return np.full(2, 0.1 * self.calls, np.float32)


class _Box2:
    """A two-step env with a Dict observation."""

    def reset(self, seed=None, options=None):
        self.t = 0
        return {"x": np.zeros(3, np.float32)}, {}

    def step(self, action):
        self.t += 1
        return {"x": np.full(3, self.t, np.float32)}, 1.0, self.t >= 2, False, {"is_success": True}


def test_expert_labeller_records_what_the_expert_saw_and_what_was_executed() -> None:
    noisy = ExpertLabeller(_ScriptedExpert(), ["x"], noise_std=0.5)
    result = rollout(_Box2(), noisy, 3)
    assert result.steps == 2 and result.success
    np.testing.assert_array_equal(np.stack(noisy.frames["x"]), [[0, 0, 0], [1, 1, 1]])
    np.testing.assert_allclose(np.stack(noisy.labels), [[0.1, 0.1], [0.2, 0.2]], rtol=1e-6)
    rng = np.random.default_rng([3, 1])  # the documented noise stream of episode 3
    expected = [np.clip(label + rng.normal(0.0, 0.5, 2), -1, 1) for label in noisy.labels]
    np.testing.assert_allclose(np.stack(noisy.executed), expected, rtol=1e-6)

    policy = _Recorder()
    dagger = ExpertLabeller(_ScriptedExpert(), ["x"], policy=policy)
    rollout(_Box2(), dagger, 5)
    rollout(_Box2(), dagger, 6)  # the lists grow over episodes; the expert restarts each one
    assert policy.resets == [5, 6] and [int(a) for a in dagger.executed] == [1, 1, 1, 1]
    np.testing.assert_allclose(np.stack(dagger.labels)[:, 0], [0.1, 0.2, 0.1, 0.2], rtol=1e-6)
