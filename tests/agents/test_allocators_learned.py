"""`bwgym train allocator` end to end, and learned / oracle / proportional allocators in scenarios."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

import bwgym  # noqa: F401
from bwgym.agents.allocation import ALLOCATION_ENV_ID, load_learned_allocator
from bwgym.agents.base import rollout
from bwgym.cli import main
from bwgym.common.checkpoint import CheckpointError, load_checkpoint
from bwgym.envs.allocators import LearnedAllocator, OracleAllocator, ProportionalAllocator
from bwgym.scenarios.config import ConfigError, load_scenario
from bwgym.scenarios.factory import make_agent, make_env

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


def test_shipped_allocator_serves_the_library_scenario():
    scenario = load_scenario("narrowband_ndpca_learned")
    assert scenario.allocator.name == "learned" and scenario.allocator.checkpoint is None
    env = make_env(scenario)
    assert isinstance(env.allocator, LearnedAllocator)
    seen = []
    rollout(
        env,
        make_agent(scenario, env),
        seed=0,
        max_steps=4,
        on_step=lambda step, obs, action, reward, info: seen.append(info["requested_allocation"]),
    )
    for split in seen:
        _valid_or_codec(split, ("arm", "side"))
    assert any(split is not None for split in seen)  # the policy's own shares, not the codec's
    env.close()


@pytest.mark.slow
def test_learned_allocator_loads_into_a_scenario_and_runs(trained, tmp_path):
    from bwgym.scenarios.runner import run_scenario

    data = {**SCENARIO, "allocator": {"name": "learned", "checkpoint": str(trained)}}
    scenario = load_scenario(_write(tmp_path, data))
    env = make_env(scenario)
    assert isinstance(env.allocator, LearnedAllocator)
    seen = []
    result = rollout(
        env,
        make_agent(scenario, env),
        seed=0,
        max_steps=8,
        on_step=lambda step, obs, action, reward, info: seen.append(info["requested_allocation"]),
    )
    assert result.steps == 8 and len(seen) == 9
    for split in seen:
        _valid_or_codec(split, ("arm", "side"))
    env.close()
    run = run_scenario(scenario, tmp_path / "run")
    assert len(run.episodes) == 1


@pytest.mark.slow
def test_learned_checkpoint_for_other_views_is_refused_naming_both(trained, tmp_path):
    from bwgym.codecs.linear import LinearDPCACodec

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
        load_scenario(_write(tmp_path, data))
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
    scenario = load_scenario(_write(tmp_path, data))
    env = make_env(scenario)
    assert isinstance(env.allocator, cls)
    seen = []
    rollout(
        env,
        make_agent(scenario, env),
        seed=0,
        max_steps=3,
        on_step=lambda step, obs, action, reward, info: seen.append(info["requested_allocation"]),
    )
    for split in seen:
        assert split is not None
        _valid_or_codec(split, ("arm", "side"))
    env.close()
    bad = {**SCENARIO, "allocator": {"name": "uniform", "kwargs": {"levels": 2}}}
    with pytest.raises(ConfigError, match="allocator.kwargs"):
        make_env(load_scenario(_write(tmp_path, bad, "bad.yaml")))
