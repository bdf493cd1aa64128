import base64
import dataclasses
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from pickle_guard import refuse_pickle_loaders

import bwgym  # noqa: F401
from bwgym.agents.rl import POLICY_FILE, RLConfig, convert_legacy, load_rl, make_rl_env, train_rl
from bwgym.common.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

ENV_ID = "bwgym/LocateLift-v0"
SMALL = {"image_size": 36, "reward_type": "dense"}  # 36 px: the smallest image SB3's NatureCNN takes
HYPER = {
    "ppo": {"n_steps": 64, "batch_size": 32, "n_epochs": 1},
    "sac": {"buffer_size": 300, "learning_starts": 64, "batch_size": 16},
}
CODEC_CHECKPOINT = Path(bwgym.__file__).parent / "codecs" / "checkpoints" / "pca_locate_lift.ckpt"


def _config(algo: str, out: Path, **kwargs) -> RLConfig:
    return RLConfig(
        algo=algo,
        env_kwargs=SMALL,
        total_timesteps=128,
        eval_freq_steps=10_000,
        checkpoint_freq_steps=10_000,
        hyperparams=HYPER[algo],
        out_dir=str(out),
        device="cpu",
        **kwargs,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """PPO and SAC trained for 128 steps on 36x36 views: {algo: (model, folder, config)}."""
    torch.set_num_threads(1)
    out = {}
    for algo in ("ppo", "sac"):
        folder = tmp_path_factory.mktemp(algo)
        config = _config(algo, folder)
        out[algo] = (train_rl(config, progress=False), folder, config)
    return out


def _observations(config: RLConfig, n: int = 4) -> list[dict[str, np.ndarray]]:
    """Env observations of a few seeded resets and steps, plus samples of the space."""
    env = make_rl_env(config)
    try:
        obs_list = []
        for seed in range(2):
            obs, _ = env.reset(seed=seed)
            obs_list.append(obs)
            obs, *_ = env.step(env.action_space.sample())
            obs_list.append(obs)
        env.observation_space.seed(0)
        obs_list += [env.observation_space.sample() for _ in range(n)]
        return obs_list
    finally:
        env.close()


class _Touch:
    """Unpickling this creates ``path``: a stand-in for any code a pickle can run."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _crafted_legacy_folder(folder: Path, marker: Path) -> Path:
    """An old-layout agent folder whose ``model.zip`` runs code when SB3 (or pickle) opens it."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = base64.b64encode(pickle.dumps(_Touch(marker))).decode()
    data = {
        "policy_class": {":type:": "<class 'abc.ABCMeta'>", ":serialized:": payload},
        "observation_space": {":type:": "<class 'gymnasium.spaces.dict.Dict'>", ":serialized:": payload},
    }
    with zipfile.ZipFile(folder / "model.zip", "w") as zf:
        zf.writestr("data", json.dumps(data))
        zf.writestr("policy.pth", pickle.dumps(_Touch(marker)))
        zf.writestr("_stable_baselines3_version", "2.9.2")
    (folder / "model.json").write_text(json.dumps({"algo": "ppo", "env_id": ENV_ID, "observation_spec": {}}))
    (folder / "extra.pkl").write_bytes(pickle.dumps(_Touch(marker)))
    return folder


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_save_load_round_trip_same_actions(trained, algo):
    model, folder, config = trained[algo]
    assert (folder / POLICY_FILE).is_file() and not (folder / "model.zip").exists()
    ckpt = load_checkpoint(folder / POLICY_FILE, kind=f"agent/sb3-{algo}")
    meta = ckpt.metadata
    assert meta["algo"] == algo and meta["env_id"] == ENV_ID
    assert meta["views"]["arm"] == {"shape": [36, 36, 3], "dtype": "uint8"}  # as the env gives it
    assert meta["observation_space"]["spaces"][0][1]["shape"] == [3, 36, 36]  # as the policy sees it
    assert meta["action_space"]["shape"] == [4] and meta["action_space"]["low"] == -1.0
    assert meta["policy_kwargs"]["features_extractor_class"] == "CombinedExtractor"
    assert isinstance(meta["policy_kwargs"]["activation_fn"], str)
    assert meta["config"]["total_timesteps"] == 128 and "stable_baselines3" in meta["versions"]

    env = make_rl_env(config)
    agent = load_rl(folder, env_id=ENV_ID, observation_space=env.observation_space, device="cpu")
    env.close()
    assert agent.policy.observation_space == model.policy.observation_space
    assert agent.policy.action_space == model.policy.action_space
    saved, loaded = model.policy.state_dict(), agent.policy.state_dict()
    assert list(saved) == list(loaded)
    for name in saved:
        assert torch.equal(saved[name].cpu(), loaded[name].cpu()), name
    agent.reset(seed=0)
    for obs in _observations(config):
        expected, _ = model.predict(obs, deterministic=True)
        action = agent.act(obs)
        assert action.dtype == np.float32 and action.shape == (4,)
        np.testing.assert_array_equal(action, expected)
        np.testing.assert_array_equal(agent.act(obs), action)  # deterministic
    # The checkpoint file itself is accepted too.
    np.testing.assert_array_equal(load_rl(folder / POLICY_FILE, device="cpu").act(obs), action)


def test_spec_mismatch_names_both_specs(trained):
    _, folder, config = trained["ppo"]
    with pytest.raises(CheckpointError, match=r"env_id='bwgym/LocateLift-v0'.*env_id='bwgym/LocateLift-v1'"):
        load_rl(folder, env_id="bwgym/LocateLift-v1")
    env = gym.make(ENV_ID, image_size=48)
    with pytest.raises(
        CheckpointError, match=r"trained for .*\[36, 36, 3\].*but .*\[48, 48, 3\].* was requested"
    ):
        load_rl(folder, env_id=ENV_ID, observation_space=env.observation_space)
    env.close()
    no_side = gym.spaces.Dict({"arm": gym.spaces.Box(0, 255, (36, 36, 3), np.uint8)})
    with pytest.raises(CheckpointError, match=r"'side': \{'dtype': 'uint8'.*'side': None"):
        load_rl(folder, observation_space=no_side)
    # Extra keys the policy does not read are fine.
    extra = gym.spaces.Dict(
        {**make_rl_env(config).observation_space.spaces, "proprio": gym.spaces.Box(-1, 1, (7,))}
    )
    load_rl(folder, env_id=ENV_ID, observation_space=extra, device="cpu")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # from the proof that the payload is live
def test_crafted_pickle_in_the_folder_is_never_executed(trained, tmp_path, monkeypatch):
    # The payload is live: SB3's own loader runs it (which is what `PPO.load` did on such a folder).
    from stable_baselines3.common.save_util import load_from_zip_file

    proof = tmp_path / "proof"
    try:
        load_from_zip_file(_crafted_legacy_folder(tmp_path / "proof_folder", proof) / "model.zip")
    except Exception:  # noqa: BLE001  (what it raises after running the payload does not matter)
        pass
    assert proof.exists()

    marker = tmp_path / "marker"
    folder = _crafted_legacy_folder(tmp_path / "evil", marker)
    for target in (folder, folder / "model.zip", folder / "model.json"):
        with pytest.raises(CheckpointError, match=r"earlier format.*pickled model\.zip.*convert_legacy"):
            load_rl(target, env_id=ENV_ID)
        assert not marker.exists()

    # A policy.ckpt that is itself a pickle (or a torch file) is not a checkpoint; nothing runs.
    (folder / POLICY_FILE).write_bytes(pickle.dumps(_Touch(marker)))
    with pytest.raises(CheckpointError, match="is not a bwgym checkpoint"):
        load_rl(folder)
    torch.save({"x": _Touch(marker)}, folder / POLICY_FILE)
    with pytest.raises(CheckpointError, match="is not a bwgym checkpoint"):
        load_rl(folder)
    assert not marker.exists()

    # A real policy.ckpt next to the crafted files: loads from it, and never reaches a pickle loader.
    refuse_pickle_loaders(monkeypatch, "load_rl")
    model, trained_folder, config = trained["ppo"]
    shutil.copy(trained_folder / POLICY_FILE, folder / POLICY_FILE)
    agent = load_rl(folder, env_id=ENV_ID, device="cpu")
    monkeypatch.undo()
    obs = _observations(config, n=0)[0]
    np.testing.assert_array_equal(agent.act(obs), model.predict(obs, deterministic=True)[0])
    assert not marker.exists()


def test_crafted_metadata_cannot_name_arbitrary_classes(trained, tmp_path):
    _, folder, _ = trained["ppo"]
    ckpt = load_checkpoint(folder / POLICY_FILE)
    cases = {
        "activation_fn": ("system", r"activation_fn='system' is not a Module class of torch\.nn"),
        "features_extractor_class": ("os.system", "is not a class name"),
        "optimizer_class": ("Module", r"is not a Optimizer class of torch\.optim"),
    }
    for key, (value, message) in cases.items():
        meta = json.loads(json.dumps(ckpt.metadata))
        meta["policy_kwargs"][key] = value
        (tmp_path / key).mkdir()
        save_checkpoint(tmp_path / key / POLICY_FILE, ckpt.kind, ckpt.state, meta)
        with pytest.raises(CheckpointError, match=message):
            load_rl(tmp_path / key)
    meta = json.loads(json.dumps(ckpt.metadata))
    meta["observation_space"]["spaces"][0][1]["shape"] = [10**6, 10**6, 3]
    (tmp_path / "huge").mkdir()
    save_checkpoint(tmp_path / "huge" / POLICY_FILE, ckpt.kind, ckpt.state, meta)
    with pytest.raises(CheckpointError, match="more than"):
        load_rl(tmp_path / "huge")


def test_old_format_folder_is_refused_with_the_conversion_hint(trained, tmp_path):
    model, _, config = trained["sac"]
    folder = tmp_path / "old"
    folder.mkdir()
    model.save(folder / "model.zip")  # the earlier layout: SB3's pickled zip + model.json
    env = make_rl_env(config)
    spec = {
        k: {"shape": list(s.shape), "dtype": str(s.dtype)} for k, s in env.observation_space.spaces.items()
    }
    legacy_meta = {
        "algo": "sac",
        "env_id": ENV_ID,
        "env_kwargs": SMALL,
        "scenario": None,
        "observation_spec": spec,
        "config": dataclasses.asdict(config),
    }
    (folder / "model.json").write_text(json.dumps(legacy_meta))
    with pytest.raises(CheckpointError, match=r"convert_legacy\('.*old'\).*or retrain"):
        load_rl(folder, env_id=ENV_ID)
    with pytest.warns(UserWarning, match="unpickles"):
        path = convert_legacy(folder)
    assert path == folder / POLICY_FILE
    agent = load_rl(folder, env_id=ENV_ID, observation_space=env.observation_space, device="cpu")
    for obs in _observations(config, n=2):
        np.testing.assert_array_equal(agent.act(obs), model.predict(obs, deterministic=True)[0])
    env.close()
    with pytest.raises(FileExistsError, match="overwrite"):
        convert_legacy(folder)


def test_another_kind_or_no_checkpoint_is_refused(tmp_path):
    (tmp_path / "codec").mkdir()
    shutil.copy(CODEC_CHECKPOINT, tmp_path / "codec" / POLICY_FILE)
    with pytest.raises(
        CheckpointError, match=r"checkpoint of 'codec/.*expected 'agent/sb3-ppo' or 'agent/sb3-sac'"
    ):
        load_rl(tmp_path / "codec")
    with pytest.raises(CheckpointError, match="agent/bc.*expected 'agent/sb3-ppo'"):
        load_rl(Path(bwgym.__file__).parent / "agents" / "checkpoints" / "bc_locate_lift.ckpt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="policy.ckpt is missing"):
        load_rl(tmp_path / "empty")
    with pytest.raises(ValueError, match="does not exist"):
        load_rl(tmp_path / "nothing")


@pytest.fixture
def narrow_scenario(tmp_path):
    path = tmp_path / "narrow.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "narrow",
                "env": {"kwargs": {"image_size": 36}},
                "trace": {
                    "source": None,
                    "generator": "constant",
                    "params": {"bps": 300_000.0, "duration_s": 10.0},
                },
                "codec": {"name": "jpeg"},
            }
        )
    )
    return str(path)


def _scenario_factory(scenario: str, env_kwargs: dict):
    """Build the scenario's env with ``env_kwargs`` inside its codec and link, as the CLI does."""
    from bwgym.scenarios.config import load_scenario
    from bwgym.scenarios.factory import make_env

    s = load_scenario(scenario)
    s = dataclasses.replace(
        s, env=dataclasses.replace(s.env, id=ENV_ID, kwargs={**s.env.kwargs, **env_kwargs})
    )
    return lambda: make_env(s)


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_sb3_trains_through_bandwidth_limited_and_reloads(tmp_path, narrow_scenario, algo):
    config = _config(algo, tmp_path / algo, scenario=narrow_scenario)
    factory = _scenario_factory(narrow_scenario, SMALL)
    model = train_rl(config, progress=False, env_factory=factory)
    assert model.num_timesteps >= 128
    env = make_rl_env(config, factory)
    obs, info = env.reset(seed=0)
    assert "budget_bits" in info  # the policy sees decoded views
    agent = load_rl(tmp_path / algo, env_id=ENV_ID, observation_space=env.observation_space)
    action = agent.act(obs)
    expected, _ = model.predict(obs, deterministic=True)
    np.testing.assert_allclose(action, expected, atol=1e-6)
    assert (tmp_path / algo / "tensorboard").is_dir()
    assert load_checkpoint(tmp_path / algo / POLICY_FILE).metadata["scenario"] == narrow_scenario


def test_bad_algo_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="algo must be one of"):
        train_rl(RLConfig(algo="dqn", out_dir=str(tmp_path)), progress=False)
