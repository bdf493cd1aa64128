"""The content allocator: a ranking scorer on spec-2 candidate features, its checkpoints and scenarios."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import yaml
from gymnasium import spaces

import bwgym  # noqa: F401
from bwgym.agents.allocation import SHIPPED_DIR, fit_split_scorer
from bwgym.agents.base import rollout
from bwgym.agents.content_allocation import (
    ContentAllocator,
    ScorerConfig,
    fit_content_scorer,
    load_content_allocator,
    phase_breakdown,
    pick,
    save_content_scorer,
)
from bwgym.cli import main
from bwgym.codecs.image.linear import LinearDPCACodec
from bwgym.common.checkpoint import CheckpointError
from bwgym.envs.bandwidth import BandwidthLimited
from bwgym.envs.candidate_features import CandidateObserver
from bwgym.scenarios.config import ConfigError, load_scenario
from bwgym.scenarios.factory import make_agent, make_env
from bwgym.traces.generators import constant

V1_POLICY = SHIPPED_DIR / "allocator_ndpca_locate_lift_v1.ckpt"


class TwoCameras(gym.Env):
    """Two 16 px views of noise: a sender's frames, nothing else."""

    observation_space = spaces.Dict({v: spaces.Box(0, 255, (16, 16, 3), np.uint8) for v in ("arm", "side")})
    action_space = spaces.Box(-1, 1, (1,), np.float32)
    dt = 0.04

    def _obs(self):
        return {v: self.np_random.integers(0, 255, (16, 16, 3), dtype=np.uint8) for v in ("arm", "side")}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._obs(), {}

    def step(self, action):
        return self._obs(), 0.0, False, False, {}


def _planted(n: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Steps where sending the view that changed is best: a content rule phase features cannot see.

    Three candidates (all to the arm, even, all to the side); the candidate features hold each
    view's share and its change since the receiver's frame; the spec-1 keys (budget, step,
    energies) are noise that says nothing about which view changed.
    """
    rng = np.random.default_rng(seed)
    shares = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    change = rng.uniform(0, 1, (n, 2))
    errors = (change[:, None, :] * (1 - shares[None])).sum(2) + rng.normal(0, 0.02, (n, 3))
    features = np.concatenate(
        [
            np.broadcast_to(shares, (n, 3, 2)),
            np.broadcast_to(change[:, None, :], (n, 3, 2)),
            np.ones((n, 3, 1)),  # fits
            np.full((n, 3, 1), 0.9),  # bits_used
        ],
        axis=2,
    )
    obs = {
        "budget": rng.uniform(0, 1, (n, 8)),
        "step": rng.uniform(0, 1, (n, 1)),
        "views": rng.uniform(0, 1, (n, 10)),
        "candidates": features,
        "code": rng.normal(0, 1, (n, 4)),
        "candidate_codes": rng.normal(0, 1, (n, 3, 4)),
    }
    return obs, errors


def test_the_ranking_scorer_recovers_a_content_rule_the_phase_features_cannot():
    obs, errors = _planted(800, seed=0)
    test_obs, test_errors = _planted(400, seed=1)
    best = test_errors.argmin(1)
    scorer, losses = fit_content_scorer(obs, errors, ScorerConfig(hidden=32, codes=False, epochs=60), seed=0)
    assert losses[-1] < losses[0]
    fits = np.ones_like(test_errors, bool)
    content = pick(scorer(test_obs), fits)
    predict = fit_split_scorer({k: obs[k] for k in ("budget", "step", "views")}, errors)
    ridge = pick(predict({k: test_obs[k] for k in ("budget", "step", "views")}), fits)
    assert np.mean(content == best) >= 0.9
    assert np.mean(ridge == best) <= 0.65  # no better than always sending to one view
    rows = np.arange(len(best))
    assert test_errors[rows, content].mean() < test_errors[rows, ridge].mean() - 0.1


def test_pick_never_takes_a_candidate_that_does_not_fit():
    scores = np.array([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]])
    fits = np.array([[False, True, True], [False, False, False]])
    assert list(pick(scores, fits)) == [1, 0]


def test_phase_breakdown_locates_the_gap():
    scores = np.array([[0.0, 1.0], [0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    picks = {"content": np.array([0, 1, 0, 0])}
    rows = phase_breakdown(scores, picks, np.array([0, 0, 2, 3]), fixed=0)
    by_phase = {r["phase"]: r for r in rows}
    assert set(by_phase) == {"locating", "grasp", "lift", "all"}
    # content's excess over the oracle: 1 in locating, 0 in grasp, 1 in lift
    assert by_phase["locating"]["content_gap_share"] == pytest.approx(0.5)
    assert by_phase["grasp"]["content_gap_share"] == 0.0
    assert by_phase["all"]["oracle"] == pytest.approx(0.125)


def _observed(two_view_codec, steps: int, seed: int = 0):
    """Spec-2 observations of a few steps of noise views, committing the even split."""
    observer = CandidateObserver(two_view_codec)
    env = TwoCameras()
    views, _ = env.reset(seed=seed)
    rows = []
    for step in range(steps):
        rows.append(observer.observe(views, 300, {"step": step}).observation)
        observer.commit(2)
        views, *_ = env.step(None)
    return observer, {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def test_a_saved_scorer_loads_and_scores_the_same(two_view_codec, tmp_path):
    observer, obs = _observed(two_view_codec, 12)
    errors = np.random.default_rng(0).uniform(0, 1, (12, 5))
    scorer, _ = fit_content_scorer(obs, errors, ScorerConfig(hidden=8, epochs=2))
    path = save_content_scorer(tmp_path / "policy.ckpt", scorer, observer, {"codec": two_view_codec.name})
    loaded = load_content_allocator(tmp_path, two_view_codec)
    assert isinstance(loaded, ContentAllocator)
    np.testing.assert_allclose(loaded.scorer(obs), scorer(obs), rtol=1e-6)
    # the code of another codec means something else: refused, naming both
    rng = np.random.default_rng(1)
    frames = {v: rng.integers(0, 255, (20, 16, 16, 3), dtype=np.uint8) for v in ("arm", "side")}
    other = LinearDPCACodec.train(frames, max_components=4, residual=False)
    with pytest.raises(CheckpointError, match=r"code_size=\[6, 6\].*code_size=\[4, 4\]"):
        load_content_allocator(path, other)


def test_a_spec_1_policy_loaded_as_content_is_refused_naming_both_specs(two_view_codec, tmp_path):
    with pytest.raises(
        CheckpointError, match=r"spec v1 .*needs spec v2 .*bwgym train allocator --content"
    ) as err:
        load_content_allocator(V1_POLICY, two_view_codec)
    assert "\n" not in str(err.value)
    data = {
        "name": "content_v1",
        "env": {"id": "bwgym/LocateLift-v1"},
        "trace": {"source": "lora_narrowband", "scale": 2.6},
        "codec": {"name": "ndpca"},
        "agent": {"name": "bc"},
        "allocator": {"name": "content", "checkpoint": str(V1_POLICY)},
        "run": {"episodes": 1},
    }
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="allocator.checkpoint: .*spec v1.*spec v2"):
        make_env(load_scenario(path))


def test_with_no_candidate_that_fits_nothing_is_sent_and_info_says_why(two_view_codec, tmp_path):
    observer, obs = _observed(two_view_codec, 6)
    scorer, _ = fit_content_scorer(obs, np.tile(np.arange(5.0), (6, 1)), ScorerConfig(hidden=0, epochs=1))
    allocator = ContentAllocator(scorer, CandidateObserver(two_view_codec))
    for bps, sends in ((200, False), (20_000, True)):  # 8 and 800 bits per 0.04 s step
        env = BandwidthLimited(
            TwoCameras(), two_view_codec, constant(bps, duration_s=10.0), allocator=allocator
        )
        _, info = env.reset(seed=0)
        for _ in range(3):
            _, _, _, _, info = env.step(np.zeros(1))
            assert info["bits_sent_total"] <= info["budget_bits"]
            assert ("allocation_note" in info) is not sends
            assert (sum(info["bits_sent"].values()) > 0) is sends
        if not sends:
            assert "no candidate split fits 8 bits" in info["allocation_note"]
            assert allocator.last_note == info["allocation_note"]
        else:
            assert tuple(info["requested_allocation"].values()) in CandidateObserver(two_view_codec).splits


def test_the_library_scenario_runs_and_its_allocator_reaches_no_agent_nor_state(tmp_path):
    from bwgym.scenarios.runner import run_scenario

    scenario = load_scenario("narrowband_ndpca_content")
    env = make_env(scenario)
    assert isinstance(env.allocator, ContentAllocator)
    seen, stack = set(), [env.allocator]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (np.ndarray, str, bytes, int, float)):
            continue
        seen.add(id(obj))
        assert not callable(getattr(obj, "act", None)), f"the allocator reaches an agent: {obj!r}"
        assert not isinstance(obj, gym.Env), f"the allocator reaches an env: {obj!r}"
        if isinstance(obj, dict):
            stack += list(obj.values())
        elif isinstance(obj, (list, tuple)):
            stack += list(obj)
        elif hasattr(obj, "__dict__") and not type(obj).__module__.startswith("torch"):
            stack += list(vars(obj).values())
    splits = []
    rollout(
        env,
        make_agent(scenario, env),
        seed=0,
        max_steps=3,
        on_step=lambda step, obs, action, reward, info: splits.append(info["requested_allocation"]),
    )
    assert all(tuple(s.values()) in env.allocator.observer.splits for s in splits)
    env.close()
    run = run_scenario(
        load_scenario("narrowband_ndpca_content", {"run.episodes": 2}),
        tmp_path / "run",
        progress=False,
        plots=False,
    )
    assert len(run.episodes) == 2


@pytest.mark.slow
def test_content_allocator_trains_from_the_cli_and_runs(tmp_path):
    data = {
        "name": "content_small",
        "env": {"id": "bwgym/LocateLift-v0"},
        "trace": {"generator": "lognormal_walk", "params": {"mean_bps": 6_000, "duration_s": 20.0}},
        "codec": {"name": "ndpca"},
        "agent": {"name": "bc"},
        "run": {"episodes": 1},
    }
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(data))
    out = tmp_path / "content"
    common = ["train", "allocator", "--content", "--scenario", str(scenario), "--distill-epochs", "2"]
    assert main([*common, "--distill-episodes", "2", "--out", str(out)]) == 0
    report = json.loads((out / "content.json").read_text())
    assert report["episodes"] == 2 and report["steps"] > 0
    assert report["mean_score_oracle"] <= report["mean_score_best_fixed"] + 1e-12
    assert "| all |" in (out / "content.md").read_text()
    learned = {**data, "allocator": {"name": "content", "checkpoint": str(out)}}
    scenario_file = tmp_path / "learned.yaml"
    scenario_file.write_text(yaml.safe_dump(learned))
    loaded = load_scenario(scenario_file)
    env = make_env(loaded)
    assert isinstance(env.allocator, ContentAllocator)
    assert rollout(env, make_agent(loaded, env), seed=0, max_steps=4).steps == 4
    env.close()
    # refit from the recorded data; a spec-1 option is refused
    refit = tmp_path / "refit"
    assert main([*common, "--distill-data", str(out / "content.npz"), "--out", str(refit)]) == 0
    assert json.loads((refit / "content.json").read_text())["steps"] == report["steps"]
    assert main([*common, "--distill-episodes", "2", "--codec-split", "--out", str(tmp_path / "x")]) == 2
    assert main([*common, "--out", str(tmp_path / "y")]) == 2
