import json
import shutil

import gymnasium as gym
import numpy as np
import pytest

import bwgym  # noqa: F401  (registers the envs; before mujoco)
from bwgym.agents.demos import DemoDataset, DemoFormatError, collect_demos
from bwgym.agents.expert import LiftExpert
from bwgym.cli import build_parser as _parser

SMALL = {"image_size": 32}


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    out = tmp_path_factory.mktemp("demos") / "lift"
    return collect_demos(out, episodes=3, noise_std=0.1, seed=5, env_kwargs=SMALL, progress=False)


def test_round_trip_shapes_and_meta(demos):
    data = DemoDataset(demos)
    assert data.env_id == "bwgym/LocateLift-v0"
    assert data.view_names == ["arm", "side"]
    assert data.image_shape == (32, 32, 3)
    assert data.n_episodes == len(data) == 3
    assert data.seeds == [5, 6, 7]
    meta = json.loads((demos / "meta.json").read_text())
    assert (
        meta["noise_std"] == 0.1
        and meta["env_kwargs"] == SMALL
        and meta["bwgym_version"] == bwgym.__version__
    )
    assert meta["action_shape"] == [4]
    obs, actions, episode_index = data.arrays()
    n = data.n_steps
    assert set(obs) == {"arm", "side"}
    for view in ("arm", "side"):
        assert obs[view].shape == (n, 32, 32, 3) and obs[view].dtype == np.uint8
    assert actions.shape == (n, 4) and actions.dtype == np.float32
    assert np.all(np.abs(actions) <= 1)
    assert episode_index.shape == (n,) and list(np.unique(episode_index)) == [0, 1, 2]
    sub_obs, sub_actions, sub_index = data.arrays([2])
    assert np.array_equal(sub_obs["arm"], obs["arm"][episode_index == 2])
    assert np.array_equal(sub_actions, actions[episode_index == 2]) and set(sub_index) == {2}
    assert not any(demos.glob(".*tmp*")), "temporary files left behind"


def test_frames_are_lossless_and_labels_are_clean_expert_actions(demos):
    data = DemoDataset(demos)
    episode = data.episode(1)
    assert bool(episode["success"])
    env = gym.make("bwgym/LocateLift-v0", **SMALL)
    expert = LiftExpert(env, noise_std=0.0)
    obs, _ = env.reset(seed=int(episode["seed"]))
    try:
        for t, executed in enumerate(episode["executed_actions"]):
            for view in ("arm", "side"):
                assert np.array_equal(obs[view], episode[view][t]), f"{view} frame {t} differs"
            np.testing.assert_allclose(expert.act(obs), episode["actions"][t], atol=1e-6)
            obs, *_ = env.step(executed)
    finally:
        env.close()
    # The executed actions carry the N(0, 0.1) noise; the labels do not.
    assert np.abs(episode["executed_actions"] - episode["actions"]).mean() > 0.02


def test_wrong_spec_names_file_and_both_specs(demos, tmp_path):
    with pytest.raises(ValueError, match="meta.json") as err:
        DemoDataset(demos, env_id="bwgym/Other-v0")
    assert "bwgym/Other-v0" in str(err.value) and "bwgym/LocateLift-v0" in str(err.value)
    with pytest.raises(ValueError, match="front"):
        DemoDataset(demos, views=["arm", "front"])
    with pytest.raises(ValueError, match="84"):
        DemoDataset(demos, image_shape=(84, 84))
    DemoDataset(demos, env_id="bwgym/LocateLift-v0", views=["arm", "side"], image_shape=(32, 32))

    other = tmp_path / "other"
    shutil.copytree(demos, other)
    meta = json.loads((other / "meta.json").read_text())
    meta["env_id"] = "bwgym/SensorNetwork-v0"
    (other / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="SensorNetwork"):
        DemoDataset(other, env_id="bwgym/LocateLift-v0")


def test_truncated_or_missing_files_raise_clear_errors(demos, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(demos, broken)
    file = broken / "episode_00001.npz"
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    data = DemoDataset(broken)  # only meta.json is read on open
    data.episode(0)
    with pytest.raises(DemoFormatError, match="episode_00001.npz.*truncated or corrupt"):
        data.arrays()
    assert issubclass(DemoFormatError, ValueError)

    (broken / "episode_00002.npz").unlink()
    with pytest.raises(ValueError, match="episode_00002.npz is missing"):
        DemoDataset(broken)
    (broken / "meta.json").unlink()
    with pytest.raises(ValueError, match="meta.json not found.*did not finish"):
        DemoDataset(broken)
    (broken / "meta.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        DemoDataset(broken)


def test_collect_refuses_to_overwrite(demos):
    with pytest.raises(FileExistsError, match="overwrite"):
        collect_demos(demos, episodes=1, env_kwargs=SMALL, progress=False)


def test_split_by_episode(demos):
    data = DemoDataset(demos)
    train, val = data.split(0.34, seed=0)
    assert len(val) == 1 and sorted(train + val) == [0, 1, 2]
    assert data.split(0.34, seed=0) == (train, val)
    assert data.split(0.0) == ([0, 1, 2], [])
    with pytest.raises(ValueError):
        data.split(1.0)


def test_collect_command(tmp_path, capsys):
    out = tmp_path / "cli"
    args = _parser().parse_args(
        [
            "collect",
            "--episodes",
            "2",
            "--noise-std",
            "0.1",
            "--env-kwargs",
            '{"image_size": 24}',
            "--out",
            str(out),
        ]
    )
    assert args.func(args) == 0
    assert DemoDataset(out).image_shape == (24, 24, 3)
    assert "2 episodes" in capsys.readouterr().out
    assert args.func(args) == 2  # exists already: one-line error, exit code 2
    assert "overwrite" in capsys.readouterr().err
