"""Allocators (uniform, fixed, proportional, oracle, learned) for K = 1, 2, 3 views, and AllocateBandwidth-v0."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import bwgym  # noqa: F401  (registers the envs)
from bwgym.codecs.image.linear import LinearDPCACodec
from bwgym.envs.allocation import AllocateBandwidthEnv, GeneratedTraces
from bwgym.envs.allocators import (
    AllocationObserver,
    CodecAllocator,
    FixedAllocator,
    LearnedAllocator,
    OracleAllocator,
    ProportionalAllocator,
    UniformAllocator,
    action_to_split,
    make_allocator,
    simplex_grid,
    view_energy,
)
from bwgym.envs.bandwidth import BandwidthLimited
from bwgym.traces.generators import constant

CAMERAS = ("arm", "side", "front")
SIZE = 32
TASK_KWARGS = {"image_size": SIZE, "reward_type": "dense"}


class MeanAgent:
    """A frozen, memoryless task agent whose action depends on every view (its mean brightness)."""

    def __init__(self, views):
        self.views = tuple(views)

    def reset(self, seed=None):
        pass

    def act(self, obs):
        action = np.zeros(4, np.float32)
        for i, v in enumerate(self.views):
            x = np.asarray(obs[v], np.float64)
            action[i % 4] += np.tanh(4.0 * (x.mean() / 127.5 - 1.0)) + 0.1 * (i + 1) * x[::4, ::4].std() / 64
        return np.clip(action, -1, 1)


class ConstantPolicy:
    def __init__(self, action):
        self.action = action

    def act(self, obs):
        return self.action


@pytest.fixture(scope="module")
def frames():
    env = gym.make("bwgym/LocateLift-v0", cameras=CAMERAS, image_size=SIZE)
    out = {c: [] for c in CAMERAS}
    rng = np.random.default_rng(0)
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        for _ in range(10):
            for c in CAMERAS:
                out[c].append(obs[c])
            obs, *_ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
    env.close()
    return {c: np.stack(v) for c, v in out.items()}


@pytest.fixture(scope="module")
def codecs(frames):
    return {
        k: LinearDPCACodec.train(
            {c: frames[c] for c in CAMERAS[:k]}, max_components=8, env_id="bwgym/LocateLift-v0"
        )
        for k in (1, 2, 3)
    }


def _views(frames, k, i=5):
    return {c: frames[c][i] for c in CAMERAS[:k]}


def _valid(split, names):
    assert isinstance(split, dict) and list(split) == list(names)
    values = np.array(list(split.values()), dtype=np.float64)
    assert np.all(np.isfinite(values)) and np.all(values >= 0)
    assert math.isclose(values.sum(), 1.0, rel_tol=1e-9)


# ------------------------------------------------------------------------------ allocators
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("budget", [300, 3_000])
def test_every_allocator_returns_a_valid_split(frames, codecs, k, budget):
    codec = codecs[k]
    names = codec.view_names
    views = _views(frames, k)
    agent = MeanAgent(names)
    observer = AllocationObserver(names, codec)
    allocators = [
        UniformAllocator(),
        FixedAllocator({names[0]: 1.0}),
        ProportionalAllocator(codec),
        ProportionalAllocator(),
        OracleAllocator(agent, codec, levels=2),
        LearnedAllocator(ConstantPolicy(np.linspace(-0.5, 0.5, k)), observer),
        LearnedAllocator(ConstantPolicy(np.full(k, np.nan)), AllocationObserver(names, codec)),
        LearnedAllocator(ConstantPolicy(np.full(k, -1.0)), AllocationObserver(names, codec)),
    ]
    for allocator in allocators:
        allocator.reset()
        for step in range(2):
            split = allocator(views, budget, {"step": step, "frame_age_steps": dict.fromkeys(names, -1)})
            _valid(split, names)
    assert CodecAllocator()(views, budget, {}) is None
    assert allocators[-2].invalid_actions["non_finite"] == 2
    assert allocators[-1].invalid_actions["all_zero"] == 2


def test_proportional_follows_the_latent_energy(frames, codecs):
    codec = codecs[3]
    views = _views(frames, 3)
    split = ProportionalAllocator(codec)(views, 1000, {})
    coeffs = codec.coefficients(views)
    energy = {n: float(np.sum(np.square(coeffs[n]))) for n in codec.view_names}
    total = sum(energy.values())
    for n in codec.view_names:
        assert split[n] == pytest.approx(energy[n] / total)
    assert view_energy(views, codec) == pytest.approx(energy)
    # without a codec: pixel energy, so a flat view gets nothing
    flat = {"a": np.full((4, 4, 3), 9, np.uint8), "b": views["arm"]}
    assert ProportionalAllocator()(flat, 100, {}) == {"a": 0.0, "b": 1.0}


def _independent_distance(codec, agent, views, budget, split):
    """What a split does to the agent's action, computed apart from OracleAllocator."""
    clean = np.asarray(agent.act(views), np.float64)
    payload = codec.compress(views, budget, dict(zip(codec.view_names, split, strict=True)))
    decoded = codec.decompress(payload) if payload.nbits and payload.nbits <= budget else {}
    shown = {n: decoded.get(n, np.zeros_like(v)) for n, v in views.items()}
    return float(np.linalg.norm(np.asarray(agent.act(shown), np.float64) - clean))


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("budget", [250, 600, 3_000])
def test_oracle_is_never_below_the_fixed_splits_it_searches(frames, codecs, k, budget):
    codec = codecs[k]
    agent = MeanAgent(codec.view_names)
    for i in (0, 7, 19):
        views = _views(frames, k, i)
        oracle = OracleAllocator(agent, codec, levels=4)
        chosen = oracle(views, budget, {})
        distances = {s: _independent_distance(codec, agent, views, budget, s) for s in simplex_grid(k, 4)}
        mine = distances[tuple(chosen[n] for n in codec.view_names)]
        assert all(mine <= d + 1e-12 for d in distances.values())
        assert oracle.last_scores == pytest.approx(distances)
        # the same holds against any fixed split run through the wrapper's own codec path
        for split in distances:
            assert oracle.score(views, budget, split) == pytest.approx(distances[split])


@pytest.mark.parametrize("budget", [250, 600])
def test_oracle_with_the_codec_split_is_never_below_dpca_either(frames, codecs, budget):
    codec = codecs[3]
    agent = MeanAgent(codec.view_names)
    for i in (2, 11):
        views = _views(frames, 3, i)
        oracle = OracleAllocator(agent, codec, levels=2, include_codec_split=True)
        chosen = oracle(views, budget, {})
        clean = np.asarray(agent.act(views), np.float64)
        payload = codec.compress(views, budget)  # the codec's own split, as "dpca" sends it
        decoded = codec.decompress(payload) if payload.nbits else {}
        shown = {n: decoded.get(n, np.zeros_like(v)) for n, v in views.items()}
        dpca = float(np.linalg.norm(np.asarray(agent.act(shown), np.float64) - clean))
        assert oracle.last_scores[None] == pytest.approx(dpca)
        assert min(oracle.last_scores.values()) <= dpca + 1e-12
        key = None if chosen is None else tuple(chosen[n] for n in codec.view_names)
        assert oracle.last_scores[key] == min(oracle.last_scores.values())
        assert len(oracle.last_scores) == len(simplex_grid(3, 2)) + 1


def test_oracle_explore_sends_other_splits_but_scores_them_all(frames, codecs):
    codec = codecs[2]
    agent = MeanAgent(codec.view_names)
    sent = set()
    for i in range(12):
        views = _views(frames, 2, i)
        # fresh oracles: both start from the same receiver frames
        best = OracleAllocator(agent, codec, levels=4)(views, 600, {})
        exploring = OracleAllocator(agent, codec, levels=4, explore=1.0, seed=i)
        chosen = exploring(views, 600, {})
        sent.add(tuple(chosen[n] for n in codec.view_names))
        # every split is scored whatever is sent, so a learner gets full information
        assert set(exploring.last_scores) == set(simplex_grid(2, 4))
        assert exploring.last_scores[tuple(best[n] for n in codec.view_names)] == pytest.approx(
            min(exploring.last_scores.values())
        )
    assert len(sent) >= 3  # random splits, not the best one each time
    runs = [OracleAllocator(agent, codec, levels=4, explore=0.5, seed=3) for _ in range(2)]
    assert [runs[0](_views(frames, 2, i), 600, {}) for i in range(8)] == [
        runs[1](_views(frames, 2, i), 600, {}) for i in range(8)
    ]  # the same seed, the same draws
    with pytest.raises(ValueError, match="explore"):
        OracleAllocator(agent, codec, explore=1.5)


def test_oracle_runs_inside_bandwidth_limited(codecs):
    codec = codecs[2]
    env = gym.make("bwgym/LocateLift-v0", cameras=CAMERAS[:2], image_size=SIZE)
    oracle = OracleAllocator(MeanAgent(codec.view_names), codec, levels=2)
    wrapped = BandwidthLimited(env, codec, constant(400 / 0.04), allocator=oracle)
    obs, info = wrapped.reset(seed=0)
    for _ in range(3):
        obs, *_, info = wrapped.step(np.zeros(4, np.float32))
        _valid(info["requested_allocation"], codec.view_names)
        assert len(oracle.last_scores) == 3
    with pytest.raises(ValueError, match="needs arguments"):
        make_allocator("oracle")


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        ([0.2, -0.2, 1.0], None),
        ([np.nan, 0.0, 0.0], "non_finite"),
        ([np.inf, 0.0, 0.0], "non_finite"),
        ([-3.0, 0.5, 0.0], "out_of_bounds"),
        ([-1.0, -1.0, -1.0], "all_zero"),
        ([-2.0, -5.0, -1.0], "all_zero"),
    ],
)
def test_actions_off_the_simplex_become_valid_splits(action, reason):
    split, why = action_to_split(action, CAMERAS)
    _valid(split, CAMERAS)
    assert why == reason


def test_action_to_split_shapes_and_codec_switch():
    with pytest.raises(ValueError, match="3 values"):
        action_to_split([0.0, 0.0], CAMERAS)
    assert action_to_split([0.0, 0.0, 0.0, 0.3], CAMERAS, codec_split=True) == (None, None)
    split, why = action_to_split([1.0, -1.0, -1.0, -0.3], CAMERAS, codec_split=True)
    assert split == {"arm": 1.0, "side": 0.0, "front": 0.0} and why is None


def test_observer_space_and_spec(frames, codecs):
    codec = codecs[3]
    observer = AllocationObserver(codec.view_names, codec, history_steps=4)
    views = _views(frames, 3)
    obs = observer.observe(views, 200, {"step": 0, "frame_age_steps": dict.fromkeys(CAMERAS, -1)})
    assert observer.observation_space.contains(obs)
    observer.commit({"arm": 1.0, "side": 0.0, "front": 0.0})
    obs2 = observer.observe(views, 900, {"step": 1, "frame_age_steps": {"arm": 0, "side": -1, "front": 3}})
    assert observer.observation_space.contains(obs2)
    assert (
        obs2["budget"][-2] == pytest.approx(math.log2(201) / 16) and obs2["budget"][-1] > obs2["budget"][-2]
    )
    per_view = obs2["views"].reshape(3, -1)
    assert per_view[:, 2].tolist() == [1.0, 0.0, 0.0]  # last step's shares
    assert per_view[:, 4].tolist() == pytest.approx([0.0, 1.0, 0.3])  # frame ages
    assert observer.spec()["n_views"] == 3 and observer.spec()["energy"] == "latent"
    assert AllocationObserver(CAMERAS).spec()["energy"] == "pixels"
    with pytest.raises(RuntimeError, match="observe"):
        AllocationObserver(CAMERAS).commit({})


# ------------------------------------------------------------------------------ the env
def _env(codecs, k=2, **kwargs):
    codec = codecs[k]
    kwargs.setdefault("traces", GeneratedTraces("lognormal_walk", (150, 2_000), params={"duration_s": 20.0}))
    return AllocateBandwidthEnv(
        MeanAgent(codec.view_names),
        task_env_kwargs={**TASK_KWARGS, "cameras": codec.view_names},
        codec=codec,
        **kwargs,
    )


def _episode(env, seed, n=12):
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    trail = [(obs, 0.0, info["budget_bits"], info["trace_start_s"])]
    for _ in range(n):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        trail.append((obs, reward, info["bits_sent_total"], dict(info["split"] or {})))
        if terminated or truncated:
            break
    return trail


def _same(a, b):
    for (oa, ra, ba, sa), (ob, rb, bb, sb) in zip(a, b, strict=True):
        for key in oa:
            if not np.array_equal(oa[key], ob[key]):
                return False
        if (ra, ba, sa) != (rb, bb, sb):
            return False
    return True


def test_env_is_deterministic_under_a_seed(codecs):
    env, other = _env(codecs, latency_steps=1, loss_prob=0.2), _env(codecs, latency_steps=1, loss_prob=0.2)
    first, again = _episode(env, 3), _episode(other, 3)
    assert _same(first, again)
    assert _same(_episode(env, 3), first)  # the same env, reset again
    assert not _same(_episode(env, 4), first)  # and the seed matters


@pytest.mark.parametrize(("k", "codec_split"), [(1, False), (2, False), (3, True)])
def test_env_passes_both_checkers(codecs, k, codec_split):
    import warnings

    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = _env(codecs, k, codec_split=codec_split)
    assert env.action_space.shape == (k + int(codec_split),)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)
        sb3_check_env(env)


def test_reward_is_the_sum_of_its_terms(codecs):
    env = _env(codecs, bit_cost=0.5, success_bonus=2.0, action_error_weight=3.0)
    env.reset(seed=0)
    charged = errors = 0.0
    for _ in range(5):
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert reward == pytest.approx(
            info["reward_task"] + info["reward_success"] + info["reward_bits"] + info["reward_action"]
        )
        assert info["reward_bits"] == pytest.approx(-0.5 * info["bits_sent_total"] / 1000)
        assert info["reward_action"] == pytest.approx(-3.0 * info["action_error"])
        errors += info["action_error"]
        assert info["reward_task"] == pytest.approx(
            info["reward_reach"] + info["reward_grasp"] + info["reward_lift"]
        )
        charged += info["reward_bits"]
    assert charged < 0  # bits were sent, so the bit cost was charged
    assert errors > 0  # decoded views move the agent's action


def test_env_counts_and_repairs_bad_actions(codecs):
    env = _env(codecs)
    env.reset(seed=1)
    bad = [np.array([np.nan, 0.0]), np.array([-1.0, -1.0]), np.array([4.0, -9.0])]
    reasons = []
    for action in bad:
        *_, info = env.step(action)
        reasons.append(info["invalid_action"])
        _valid(info["split"], env.view_names)
        _valid(info["requested_allocation"], env.view_names)
    assert reasons == ["non_finite", "all_zero", "out_of_bounds"]
    assert info["invalid_actions"] == {"non_finite": 1, "out_of_bounds": 1, "all_zero": 1}
    # the split the env reports is what the link carried
    assert info["split"] == {"arm": 1.0, "side": 0.0}


def test_env_codec_split_action_hands_the_split_to_the_codec(codecs):
    env = _env(codecs, codec_split=True)
    env.reset(seed=2)
    *_, info = env.step(np.array([1.0, -1.0, 0.5]))
    assert info["split"] is None and info["requested_allocation"] is None
    *_, info = env.step(np.array([1.0, -1.0, -0.5]))
    assert info["split"] == {"arm": 1.0, "side": 0.0}


def test_env_runs_an_episode_on_a_pinned_trace_and_refuses_bad_options(codecs):
    env = _env(codecs)
    trace = constant(300 / 0.04, duration_s=10.0, name="pinned")
    obs, info = env.reset(seed=0, options={"trace": trace, "trace_start_s": 0.0})
    assert info["trace"] == "pinned" and info["budget_bits"] == 300
    steps, done = 0, False
    while not done:
        obs, _, terminated, truncated, info = env.step(env.action_space.sample())
        assert info["budget_bits"] == 300 and info["trace"] == "pinned"
        steps, done = steps + 1, terminated or truncated
    assert steps <= 50
    with pytest.raises(gym.error.ResetNeeded):
        env.step(env.action_space.sample())
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(seed=0, options={"trace_strat_s": 1.0})


def test_env_refuses_banking_and_bad_agents(codecs):
    with pytest.raises(ValueError, match="never carries unused bits"):
        _env(codecs, bank=True)
    with pytest.raises(TypeError, match="act"):
        AllocateBandwidthEnv(object(), codec=codecs[2], task_env_kwargs=TASK_KWARGS)


@pytest.mark.slow
def test_default_env_from_gymnasium_make():
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make("bwgym/AllocateBandwidth-v0")
    inner = env.unwrapped
    assert isinstance(inner, AllocateBandwidthEnv)
    assert inner.task_env_id == "bwgym/LocateLift-v1" and inner.codec.name == "ndpca"
    assert inner.view_names == ("arm", "side")
    check_env(inner, skip_render_check=True)
    sb3_check_env(inner)
    env.close()
