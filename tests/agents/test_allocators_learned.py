"""`bwgym train allocator` end to end, and learned / oracle / proportional allocators in scenarios."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

import bwgym  # noqa: F401
from bwgym.agents.allocation import (
    ALLOCATION_ENV_ID,
    _split_action,
    fit_split_scorer,
    load_learned_allocator,
)
from bwgym.agents.base import rollout
from bwgym.cli import main
from bwgym.common.checkpoint import CheckpointError, load_checkpoint
from bwgym.envs.allocators import (
    LearnedAllocator,
    OracleAllocator,
    ProportionalAllocator,
    action_to_split,
    simplex_grid,
)
from bwgym.scenarios.config import ConfigError, load_scenario
from bwgym.scenarios.factory import make_agent, make_env, validate

SCENARIO = {
    "name": "alloc_small",
    "env": {"id": "bwgym/LocateLift-v0"},
    "trace": {"generator": "lognormal_walk", "params": {"mean_bps": 6_000, "duration_s": 20.0}},
    "codec": {"name": "ndpca"},
    "agent": {"name": "bc"},
    "run": {"episodes": 1},
}


def _write(folder: Path, data: dict, name: str = "scenario.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A smoke-trained allocator: 256 PPO steps on two envs, evaluated on the held-out trace."""
    folder = tmp_path_factory.mktemp("allocator")
    scenario = _write(folder, SCENARIO)
    out = folder / "run"
    status = main(
        [
            "train",
            "allocator",
            "--scenario",
            str(scenario),
            "--total-timesteps",
            "256",
            "--n-envs",
            "2",
            "--vec",
            "dummy",
            "--eval-freq",
            "128",
            "--eval-episodes",
            "1",
            "--out",
            str(out),
        ]
    )
    assert status == 0
    return out


def _valid_or_codec(split, names):
    if split is None:
        return
    values = np.array([split[n] for n in names], dtype=np.float64)
    assert set(split) == set(names) and np.all(values >= 0) and math.isclose(values.sum(), 1.0)


@pytest.mark.slow
def test_train_allocator_writes_a_checkpoint_evaluations_and_tensorboard(trained):
    ckpt = load_checkpoint(trained / "policy.ckpt", kind="agent/sb3-ppo")
    assert ckpt.env_id == ALLOCATION_ENV_ID
    allocation = ckpt.metadata["allocation"]
    assert allocation["observation"]["n_views"] == 2 and allocation["observation"]["energy"] == "latent"
    assert allocation["eval_traces"]["trace"]["generator"] == "lognormal_walk"  # the scenario's own trace
    assert allocation["train_traces"]["generator"] == "lognormal_walk"
    assert ckpt.metadata["num_timesteps"] >= 256
    evaluations = np.load(trained / "eval" / "evaluations.npz")
    assert len(evaluations["timesteps"]) >= 2
    assert list((trained / "tensorboard").rglob("events.out.tfevents.*"))
    assert (trained / "config.json").is_file()


def _requested_splits(scenario, allocator_cls, max_steps):
    """One episode (seed 0) of the scenario's env, whose allocator is an ``allocator_cls``.

    Returns the rollout and the split requested at each step, each checked valid (or the codec's).
    """
    env = make_env(scenario)
    assert isinstance(env.allocator, allocator_cls)
    seen = []
    result = rollout(
        env,
        make_agent(scenario, env),
        seed=0,
        max_steps=max_steps,
        on_step=lambda step, obs, action, reward, info: seen.append(info["requested_allocation"]),
    )
    for split in seen:
        _valid_or_codec(split, ("arm", "side"))
    env.close()
    return result, seen


def test_shipped_allocator_serves_the_library_scenario():
    scenario = load_scenario("narrowband_ndpca_learned")
    assert scenario.allocator.name == "learned" and scenario.allocator.checkpoint is None
    _, seen = _requested_splits(scenario, LearnedAllocator, 4)
    assert any(split is not None for split in seen)  # the policy's own shares, not the codec's


@pytest.mark.slow
def test_learned_allocator_loads_into_a_scenario_and_runs(trained, tmp_path):
    from bwgym.scenarios.runner import run_scenario

    data = {**SCENARIO, "allocator": {"name": "learned", "checkpoint": str(trained)}}
    scenario = load_scenario(_write(tmp_path, data))
    result, seen = _requested_splits(scenario, LearnedAllocator, 8)
    assert result.steps == 8 and len(seen) == 9
    run = run_scenario(scenario, tmp_path / "run")
    assert len(run.episodes) == 1


@pytest.mark.slow
def test_learned_checkpoint_for_other_views_is_refused_naming_both(trained, tmp_path):
    from bwgym.codecs.image.linear import LinearDPCACodec

    rng = np.random.default_rng(0)
    frames = {v: rng.integers(0, 255, (12, 16, 16, 3), dtype=np.uint8) for v in ("arm", "side", "front")}
    three = LinearDPCACodec.train(frames, max_components=4)
    with pytest.raises(ValueError, match=r"n_views=2.*n_views=3"):
        load_learned_allocator(trained, three)
    # a scenario naming it gets one line naming the key
    data = {
        **SCENARIO,
        "env": {
            "id": "bwgym/LocateLift-v0",
            "kwargs": {"cameras": ["arm", "side", "front"], "image_size": 16},
        },
        "codec": {"name": "jpeg"},
        "allocator": {"name": "learned", "checkpoint": str(trained)},
    }
    with pytest.raises(ConfigError, match="allocator.checkpoint: .*n_views=2.*n_views=3"):
        make_env(load_scenario(_write(tmp_path, data)))


def test_learned_needs_a_checkpoint_and_refuses_other_kinds(tmp_path):
    data = {**SCENARIO, "allocator": {"name": "learned"}}
    with pytest.raises(ConfigError, match="allocator.checkpoint: required"):
        validate(load_scenario(_write(tmp_path, data)))
    codec_ckpt = Path(bwgym.__file__).parent / "codecs" / "checkpoints" / "pca_locate_lift.ckpt"
    with pytest.raises(CheckpointError, match="codec/pca"):
        load_learned_allocator(codec_ckpt, object())
    data = {**SCENARIO, "allocator": {"name": "learned", "checkpoint": "missing_folder"}}
    with pytest.raises(ConfigError, match="does not exist"):
        load_scenario(_write(tmp_path, data))


@pytest.mark.parametrize(
    ("name", "cls"), [("oracle", OracleAllocator), ("proportional", ProportionalAllocator)]
)
def test_oracle_and_proportional_from_a_scenario(tmp_path, name, cls):
    data = {**SCENARIO, "allocator": {"name": name, "kwargs": {"levels": 2} if name == "oracle" else {}}}
    _, seen = _requested_splits(load_scenario(_write(tmp_path, data)), cls, 3)
    assert all(split is not None for split in seen)
    bad = {**SCENARIO, "allocator": {"name": "uniform", "kwargs": {"levels": 2}}}
    with pytest.raises(ConfigError, match="allocator.kwargs"):
        make_env(load_scenario(_write(tmp_path, bad, "bad.yaml")))


@pytest.mark.parametrize("codec_split", [False, True])
def test_split_actions_map_back_to_their_splits(codec_split):
    names = ["arm", "side", "front"]
    for split in simplex_grid(3, 4):
        back, reason = action_to_split(_split_action(split, 3, codec_split), names, codec_split)
        assert reason is None
        assert [back[n] for n in names] == pytest.approx(split)
    if codec_split:
        assert action_to_split(_split_action(None, 3, True), names, True) == (None, None)


def test_split_scorer_recovers_which_split_is_best():
    """Scores that depend on the observation: the fitted scorer's argmin follows them."""
    rng = np.random.default_rng(0)
    n = 400
    obs = {"step": rng.uniform(0, 1, (n, 1)), "budget": rng.uniform(0, 1, (n, 3))}
    # split 0 is best early in the episode, split 1 late; split 2 never; noise on top
    truth = np.c_[obs["step"][:, 0], 1.0 - obs["step"][:, 0], np.full(n, 0.8)]
    scores = truth + rng.normal(0, 0.1, truth.shape)
    predict = fit_split_scorer(obs, scores, ridge=1.0)
    test = {"step": np.array([[0.05], [0.95]]), "budget": np.full((2, 3), 0.5)}
    assert list(predict(test).argmin(1)) == [0, 1]


@pytest.mark.slow
def test_distilled_allocator_trains_from_the_cli_and_runs(tmp_path):
    scenario = _write(tmp_path, SCENARIO)
    out = tmp_path / "distilled"
    status = main(
        ["train", "allocator", "--scenario", str(scenario), "--total-timesteps", "64", "--n-envs", "1"]
        + ["--vec", "dummy", "--eval-freq", "64", "--eval-episodes", "1", "--distill-episodes", "2"]
        + ["--out", str(out)]
    )
    assert status == 0
    report = json.loads((out / "distill.json").read_text())
    assert report["episodes"] == 2 and report["steps"] > 0
    assert len(report["mean_score_per_candidate"]) == len(simplex_grid(2, 4))
    # the oracle's per-step best can only be at or below any one candidate's mean
    assert report["mean_score_oracle"] <= min(report["mean_score_per_candidate"]) + 1e-12
    losses = report["policy_fit_loss_per_epoch"]
    assert losses[-1] < losses[0]
    data = {**SCENARIO, "allocator": {"name": "learned", "checkpoint": str(out)}}
    learned = load_scenario(_write(tmp_path, data, "learned.yaml"))
    env = make_env(learned)
    assert isinstance(env.allocator, LearnedAllocator)
    result = rollout(env, make_agent(learned, env), seed=0, max_steps=4)
    assert result.steps == 4
    env.close()
    # refit from the recorded scores without running the oracle again; a bad file is refused
    refit = tmp_path / "refit"
    common = ["train", "allocator", "--scenario", str(scenario), "--total-timesteps", "64", "--n-envs", "1"]
    common += ["--vec", "dummy", "--eval-freq", "64", "--eval-episodes", "1"]
    assert main([*common, "--distill-data", str(out / "distill.npz"), "--out", str(refit)]) == 0
    assert json.loads((refit / "distill.json").read_text())["steps"] == report["steps"]
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    assert main([*common, "--distill-data", str(bad), "--out", str(tmp_path / "bad")]) == 2
