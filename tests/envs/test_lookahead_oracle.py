"""The k-step lookahead oracle: k = 1 is the one-step oracle, the budget holds, the episode is untouched."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import bwgym  # noqa: F401  (registers the envs)
from bwgym.agents.allocation import default_task_agent
from bwgym.agents.base import rollout
from bwgym.codecs import make_codec
from bwgym.common.registry import ALLOCATORS, BuildContext
from bwgym.envs.allocators import LookaheadOracleAllocator, OracleAllocator
from bwgym.envs.bandwidth import BandwidthLimited
from bwgym.envs.views import link_views
from bwgym.traces.generators import generate

ENV_ID = "bwgym/LocateLift-v1"
STEPS = 12  # a short episode: the lookahead's cost is what it is, the checks need a few steps


@pytest.fixture(scope="module")
def parts():
    """The bare env, the shipped NDPCA codec, the shipped BC agent and a trace near NDPCA's floor."""
    env = gym.make(ENV_ID, max_episode_steps=STEPS)
    codec = make_codec("ndpca", link_views(env), env_id=ENV_ID)
    trace = generate("gilbert_elliott", seed=5, good_bps=10e3, bad_bps=1e3, duration_s=20.0)
    trace = trace.scale(200 / 0.04 / trace.mean_bps)  # 200 bits per step on average
    yield env, codec, default_task_agent(ENV_ID), trace
    env.close()


def _episode(parts, allocator, seed: int = 3):
    """Run one episode; the observations, the infos and the split requested at each step."""
    env, codec, agent, trace = parts
    linked = BandwidthLimited(env, codec, trace, allocator=allocator)
    if isinstance(allocator, LookaheadOracleAllocator):
        allocator.bind_link(linked.link)
    observations, infos = [], []

    def on_step(step, obs, action, reward, info):
        observations.append({k: np.array(v) for k, v in obs.items()})
        infos.append(info)

    rollout(linked, agent, seed=seed, on_step=on_step)
    return observations, infos


class _Replay:
    """Sends a recorded sequence of splits, one per step."""

    def __init__(self, splits):
        self.splits, self.step = list(splits), 0

    def __call__(self, views, budget_bits, info):
        self.step += 1
        return self.splits[self.step - 1]

    def reset(self):
        self.step = 0


def test_lookahead_with_k_1_makes_the_one_step_oracles_choices(parts):
    env, codec, agent, _ = parts
    _, one_step = _episode(parts, OracleAllocator(agent, codec, levels=4))
    _, lookahead = _episode(parts, LookaheadOracleAllocator(agent, codec, env, k=1, levels=4))
    assert len(one_step) == len(lookahead) > 1
    assert [i["requested_allocation"] for i in lookahead] == [i["requested_allocation"] for i in one_step]


def test_lookahead_stays_in_budget_and_leaves_the_episode_as_a_plain_run_plays_it(parts):
    env, codec, agent, _ = parts
    oracle = LookaheadOracleAllocator(agent, codec, env, k=2, keep=2, levels=4)
    observations, infos = _episode(parts, oracle)
    assert all(i["bits_sent_total"] <= i["budget_bits"] for i in infos)
    # pruned: every candidate has its one-step score, only `keep` of them a finite total
    assert np.isfinite(list(oracle.last_totals.values())).sum() == 2
    replayed_obs, replayed = _episode(parts, _Replay([i["requested_allocation"] for i in infos]))
    assert len(replayed) == len(infos)
    for a, b in zip(observations, replayed_obs, strict=True):
        for view in a:
            np.testing.assert_array_equal(a[view], b[view])
    for a, b in zip(infos, replayed, strict=True):
        assert a["budget_bits"] == b["budget_bits"] and a["bits_sent"] == b["bits_sent"]
        assert a["is_success"] == b["is_success"]


def test_lookahead_differs_from_one_step_only_through_the_future(parts):
    """At k = 2 each kept candidate's total is its one-step distance plus a non-negative rollout."""
    env, codec, agent, trace = parts
    oracle = LookaheadOracleAllocator(agent, codec, env, k=2, keep=3, levels=4)
    linked = BandwidthLimited(env, codec, trace, allocator=oracle)
    oracle.bind_link(linked.link)
    linked.reset(seed=1)
    finite = {s: t for s, t in oracle.last_totals.items() if np.isfinite(t)}
    assert len(finite) == 3
    for split, total in finite.items():
        assert total >= oracle.last_scores[split] - 1e-12
    best_first = sorted(oracle.last_scores, key=oracle.last_scores.get)[:3]
    assert set(finite) == set(best_first)


def test_lookahead_registered_with_its_options_and_bad_input(parts):
    env, codec, agent, _ = parts
    built = ALLOCATORS.get("oracle_lookahead").build(
        BuildContext(env=env, codec=codec, make_agent=lambda: agent), {"k": 3, "keep": 1}
    )
    assert isinstance(built, LookaheadOracleAllocator) and (built.k, built.keep) == (3, 1)
    with pytest.raises(ValueError, match="k is expected"):
        LookaheadOracleAllocator(agent, codec, env, k=0)
    with pytest.raises(ValueError, match="keep is expected"):
        LookaheadOracleAllocator(agent, codec, env, keep=0)
    with pytest.raises(TypeError, match="gymnasium env"):
        LookaheadOracleAllocator(agent, codec, env=object())
    with pytest.raises(ValueError, match="needs arguments"):
        ALLOCATORS.get("oracle_lookahead").build(BuildContext(), {})
