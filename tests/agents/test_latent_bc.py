"""The latent agent: features, checkpoints, the code it refuses, training, and its library scenario."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from bwgym.agents.latent_bc import (
    SHIPPED,
    LatentBCAgent,
    LatentFeatures,
    train_latent_bc,
)
from bwgym.codecs.image.linear import LinearDPCACodec
from bwgym.common.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from bwgym.common.registry import BuildContext, InputError
from bwgym.envs.bandwidth import BandwidthLimited
from bwgym.envs.latent_views import AGE_KEY
from bwgym.traces.generators import constant

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "envs"))
from test_latent_views import ENV_ID, _frames  # noqa: E402  (the toy two-camera env)

SPEC = {"codec": "x", "fingerprint": "00", "streams": {"arm": 3, "side": 2}, "views": ["arm", "side"]}


def _obs(arm, side, ages):
    return {"arm": np.float32(arm), "side": np.float32(side), AGE_KEY: np.float32(ages)}


def test_features_are_code_ages_then_the_last_codes_and_actions_most_recent_first() -> None:
    f = LatentFeatures(SPEC, action_dim=2, history_steps=2, age_cap_steps=4)
    assert f.size == 5 + 4 + 2 * (5 + 2)
    first = f.row(_obs([1, 2, 3], [4, 5], [-1, 6]))
    np.testing.assert_array_equal(first[:9], [1, 2, 3, 4, 5, 1, 0, 0, 1])  # age -1: flag; 6 caps at 4
    assert not first[9:].any(), "nothing before the episode began"
    f.push_action([0.5, -0.5])
    second = f.row(_obs([7, 8, 9], [0, 1], [0, 2]))
    np.testing.assert_array_equal(second[:9], [7, 8, 9, 0, 1, 0, 0, 0, 0.5])
    np.testing.assert_array_equal(second[9:16], [1, 2, 3, 4, 5, 0.5, -0.5])
    assert not second[16:].any()
    f.reset()
    assert not f.row(_obs([1, 2, 3], [4, 5], [0, 0]))[9:].any()
    with pytest.raises(KeyError, match="is the env's link observation 'latent'"):
        f.row({"arm": np.zeros((84, 84, 3))})


class _Zeros:
    """An expert that always labels zeros (the labeller's bookkeeping is under test, not the expert)."""

    def reset(self) -> None:
        pass

    def act(self, obs):
        return np.zeros(2, np.float32)


def test_dagger_rows_are_the_rows_the_driving_policy_computes() -> None:
    from bwgym.agents.latent_bc import _Labeller

    policy = LatentBCAgent(SPEC, action_dim=2, hidden=(8,), history_steps=2)
    labeller = _Labeller(_Zeros(), policy.features, policy, noise_std=0.0)
    replay = LatentFeatures(SPEC, action_dim=2, history_steps=2, age_cap_steps=10)
    labeller.reset(seed=1)
    for t in range(4):
        obs = _obs([t, 1, 2], [3, t], [0, 0])
        action = labeller.act(obs)
        np.testing.assert_array_equal(labeller.rows[-1], replay.row(obs), err_msg=f"step {t}")
        replay.push_action(action)
    assert labeller.episode_lengths == [4]


def test_checkpoints_round_trip_and_metadata_the_arrays_contradict_is_refused(tmp_path) -> None:
    agent = LatentBCAgent(SPEC, "bwgym/Toy-v0", action_dim=2, hidden=(8,), history_steps=1)
    agent.fit_scaling(np.random.default_rng(0).normal(3.0, 2.0, (50, agent.features.size)))
    path = agent.save(tmp_path / "a.ckpt")
    again = LatentBCAgent.load(path)
    obs = _obs([1, 2, 3], [4, 5], [0, 1])
    for step in range(2):  # the second action reads the first from the history
        np.testing.assert_array_equal(agent.act(obs), again.act(obs), err_msg=f"step {step}")
    assert not again.memoryless and LatentBCAgent(SPEC, hidden=(8,)).memoryless

    ckpt = load_checkpoint(path)
    meta = dict(ckpt.metadata, arch=dict(ckpt.metadata["arch"], hidden=[10**6]))
    save_checkpoint(tmp_path / "big.ckpt", ckpt.kind, ckpt.state, meta)
    with pytest.raises(CheckpointError, match=r"needs mlp.0.weight of shape \(1000000, 16\)"):
        LatentBCAgent.load(tmp_path / "big.ckpt")
    save_checkpoint(tmp_path / "odd.ckpt", ckpt.kind, ckpt.state, dict(ckpt.metadata, arch={"hidden": "x"}))
    with pytest.raises(CheckpointError, match="arch .hidden, history_steps, age_cap_steps"):
        LatentBCAgent.load(tmp_path / "odd.ckpt")


@pytest.fixture(scope="module")
def codecs() -> dict[str, LinearDPCACodec]:
    frames = _frames()
    return {
        "a": LinearDPCACodec.train(frames, max_components=6, downsample=4, residual=False),
        "b": LinearDPCACodec.train(frames, max_components=5, downsample=4, residual=False),
        "arm only": LinearDPCACodec.train(
            {"arm": frames["arm"]}, max_components=6, downsample=4, residual=False
        ),
    }


def _latent_env(codec, observation="latent"):
    return BandwidthLimited(gym.make(ENV_ID), codec, constant(8_000, duration_s=5.0), observation=observation)


def test_a_code_of_another_codec_checkpoint_or_view_set_is_refused_naming_both(tmp_path, codecs) -> None:
    views = _latent_env(codecs["a"]).latent_views
    path = LatentBCAgent(views.code_spec(), ENV_ID, action_dim=2, hidden=(8,)).save(tmp_path / "a.ckpt")
    agent = LatentBCAgent.from_context(
        BuildContext(env=_latent_env(codecs["a"]), env_id=ENV_ID, checkpoint=str(path)), None
    )
    assert agent.code_spec == views.code_spec()
    for other in ("b", "arm only"):
        theirs = _latent_env(codecs[other]).latent_views.code_spec()
        with pytest.raises(InputError) as caught:
            LatentBCAgent.from_context(
                BuildContext(env=_latent_env(codecs[other]), env_id=ENV_ID, checkpoint=str(path)), None
            )
        message = str(caught.value)
        assert caught.value.key == "checkpoint" and "\n" not in message
        assert views.code_spec()["fingerprint"] in message and theirs["fingerprint"] in message
        assert "bwgym train latent-agent" in message
    with pytest.raises(ValueError, match=r"set `link: \{observation: latent\}`"):
        LatentBCAgent.from_context(
            BuildContext(env=_latent_env(codecs["a"], "pixels"), env_id=ENV_ID, checkpoint=str(path)), None
        )


@pytest.mark.slow
def test_training_on_the_lora_link_records_every_policy_and_keeps_the_best(tmp_path) -> None:
    from bwgym.cli.latent_agent import latent_scenario
    from bwgym.scenarios.factory import make_env

    scenario = latent_scenario("lora_ndpca")
    torch.set_num_threads(1)
    agent = train_latent_bc(
        lambda: make_env(scenario),
        tmp_path / "dagger.ckpt",
        bc_out_path=tmp_path / "bc.ckpt",
        demo_episodes=6,
        dagger_rounds=1,
        dagger_episodes=3,
        epochs=3,
        dagger_epochs=2,
        hidden=(32,),
        history_steps=2,
        progress=False,
    )
    history = agent.train_config["history"]
    assert [h["round"] for h in history] == [0, 1]
    assert history[0]["expert_success"] >= 0.5 and history[1]["train_steps"] > history[0]["train_steps"]
    scores = [h["rollout_success"] for h in history]
    assert agent.train_config["selected_round"] == max(range(2), key=lambda i: (scores[i], i))
    bc = LatentBCAgent.load(tmp_path / "bc.ckpt")
    assert bc.train_config["dagger_rounds"] == 0 and bc.code_spec == agent.code_spec
    assert agent.code_spec["codec"] == "ndpca" and agent.env_id == "bwgym/LocateLift-v1"


@pytest.mark.slow
def test_the_library_scenario_runs_two_episodes_and_refuses_another_codec(tmp_path, capsys) -> None:
    from bwgym.cli import main
    from bwgym.scenarios.config import ConfigError, load_scenario
    from bwgym.scenarios.factory import validate

    assert SHIPPED["bwgym/LocateLift-v1"] == "latent_bc_locate_lift_v1_lora_ndpca.ckpt"
    out = tmp_path / "run"
    assert main(["run", "lora_ndpca_latent", "--episodes", "2", "--out", str(out)]) == 0
    table = __import__("pandas").read_parquet(out / "episodes.parquet")
    assert len(table) == 2 and set(table.agent) == {"latent_bc"}
    assert not any(c.startswith("mean_psnr_db.") for c in table.columns), "no pixels are decoded"
    assert (out / "plots" / "success.png").is_file() and not (out / "plots" / "psnr.png").exists()
    with pytest.raises(
        ConfigError, match=r"agent\.checkpoint: latent agent .* was trained for code=.*ndpca'.*ndpca_agnostic"
    ):
        validate(load_scenario("lora_ndpca_latent", {"codec.name": "ndpca_agnostic"}))
    with pytest.raises(ConfigError, match=r"link: observation=\"latent\" needs a latent codec .* got 'jpeg'"):
        validate(load_scenario("lora_ndpca_latent", {"codec.name": "jpeg"}))
    report = json.loads(
        (Path(__file__).resolve().parents[2] / "bwgym/agents/checkpoints" / SHIPPED["bwgym/LocateLift-v1"])
        .with_suffix(".json")
        .read_text()
    )
    assert report["eval"]["episodes"] >= 60
