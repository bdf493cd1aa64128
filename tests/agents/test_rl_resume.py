"""`train agent --resume` reads the project's own checkpoints only: a folder of crafted pickles runs nothing.

The run folder used to be resumed with SB3's ``PPO.load``/``SAC.load``, which unpickle parts of the
zip; a folder received from someone else executed its code. Now every SB3 zip is replaced by a
live pickle payload (its ``__reduce__`` writes a marker file), every pickle-based loader is made to
fail loudly, and the run must still resume from ``checkpoints/<algo>_<n>_steps.ckpt`` (policy,
optimisers, counters, RNG, and SAC's replay buffer), at the saved step count.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from pickle_guard import refuse_pickle_loaders

import bwgym  # noqa: F401  (registers the envs)
from bwgym.agents.rl import (
    POLICY_FILE,
    RLConfig,
    _build_model,
    _optimizers,
    _vec_env,
    train_rl,
)
from bwgym.common.checkpoint import CheckpointError, load_checkpoint

#: The fastest env with a Dict observation and a Box action (vectors, no rendering).
ENV_ID = "bwgym/SensorNetwork-v0"
HYPER = {
    "ppo": {"n_steps": 32, "batch_size": 32, "n_epochs": 1},
    "sac": {"buffer_size": 1000, "learning_starts": 32, "batch_size": 16},
}
FIRST, TOTAL = 96, 192  # steps of the first run, and of the resumed one (multiples of PPO's n_steps)


class _Touch:
    """Unpickling this creates ``path``: a stand-in for any code a pickle can run."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _config(algo: str, out: Path, **kwargs) -> RLConfig:
    return RLConfig(
        algo=algo,
        env_id=ENV_ID,
        env_kwargs={},
        total_timesteps=FIRST,
        eval_freq_steps=10**6,  # SensorNetwork episodes are 200 steps: no evaluation in these runs
        checkpoint_freq_steps=32,
        hyperparams=HYPER[algo],
        out_dir=str(out),
        device="cpu",
        **kwargs,
    )


def _poison(folder: Path, marker: Path, algo: str) -> list[Path]:
    """Replace every SB3 zip in ``folder`` by a live pickle, and plant more where SB3 would look."""
    payload = pickle.dumps(_Touch(marker))
    planted = [
        folder / "checkpoints" / f"{algo}_999999_steps.zip",  # "newer" than every real checkpoint
        folder / "best" / "best_model.zip",
        folder / "model.zip",
    ]
    for path in {*folder.rglob("*.zip"), *planted}:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
    return sorted(folder.rglob("*.zip"))


@pytest.fixture
def no_pickle_loaders(monkeypatch):
    """Every loader that unpickles raises: resuming must not reach one."""
    refuse_pickle_loaders(monkeypatch, "resume")


def _steps_at_start():
    from stable_baselines3.common.callbacks import BaseCallback

    class Record(BaseCallback):
        """Records ``num_timesteps`` when learning starts (the step the resumed run continues from)."""

        at_start: int | None = None

        def _on_training_start(self) -> None:
            Record.at_start = int(self.model.num_timesteps)

        def _on_step(self) -> bool:
            return True

    return Record()


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_resume_from_poisoned_folder_runs_no_pickle_and_continues(algo, tmp_path, no_pickle_loaders):
    torch.set_num_threads(1)
    out, marker = tmp_path / "run", tmp_path / "marker"
    first = train_rl(_config(algo, out), progress=False)
    assert int(first.num_timesteps) == FIRST
    assert (out / "checkpoints" / f"{algo}_{FIRST}_steps.ckpt").is_file()
    assert not list((out / "checkpoints").glob("*.zip")), "periodic checkpoints are the project's format"
    if algo == "sac":  # only the newest buffer is kept
        assert [p.name for p in (out / "checkpoints").glob("*.replay.ckpt")] == [
            f"sac_{FIRST}_steps.replay.ckpt"
        ]
    (out / POLICY_FILE).unlink()  # as after kill -9 at the end: the training state remains
    assert len(_poison(out, marker, algo)) >= 3

    # The rebuilt model holds exactly what the stopped run had.
    config = dataclasses.replace(_config(algo, out), total_timesteps=TOTAL, resume=True)
    venv = _vec_env(config, config.seed)
    try:
        resumed, steps = _build_model(config, venv, out)
        assert steps == FIRST == resumed.num_timesteps
        for key, value in first.policy.state_dict().items():
            torch.testing.assert_close(resumed.policy.state_dict()[key], value, rtol=0, atol=0)
        for name, optimizer in _optimizers(first).items():
            want, got = optimizer.state_dict(), _optimizers(resumed)[name].state_dict()
            assert want["state"].keys() == got["state"].keys() and want["state"]
            for index, entries in want["state"].items():
                for key, value in entries.items():
                    torch.testing.assert_close(got["state"][index][key], value, rtol=0, atol=0)
            assert [g["lr"] for g in got["param_groups"]] == [g["lr"] for g in want["param_groups"]]
        if algo == "sac":
            torch.testing.assert_close(resumed.log_ent_coef, first.log_ent_coef, rtol=0, atol=0)
            assert (resumed.replay_buffer.pos, resumed.replay_buffer.full) == (
                first.replay_buffer.pos,
                first.replay_buffer.full,
            )
            rows = first.replay_buffer.pos
            for key, value in first.replay_buffer.observations.items():
                np.testing.assert_array_equal(resumed.replay_buffer.observations[key][:rows], value[:rows])
            np.testing.assert_array_equal(
                resumed.replay_buffer.actions[:rows], first.replay_buffer.actions[:rows]
            )
    finally:
        venv.close()

    # And the run itself continues from the saved step count to the new total.
    record = _steps_at_start()
    model = train_rl(config, progress=False, callbacks=[record])
    assert type(record).at_start == FIRST
    assert int(model.num_timesteps) == TOTAL
    assert load_checkpoint(out / POLICY_FILE).metadata["num_timesteps"] == TOTAL
    assert (out / "checkpoints" / f"{algo}_{TOTAL}_steps.ckpt").is_file()
    assert not marker.exists(), "a pickle in the run folder was executed"


def test_folder_of_sb3_zips_only_is_refused_without_running_them(tmp_path, no_pickle_loaders):
    out, marker = tmp_path / "old", tmp_path / "marker"
    _poison(out, marker, "ppo")
    (out / "checkpoints" / "ppo_64_steps.zip").write_bytes(pickle.dumps(_Touch(marker)))
    config = dataclasses.replace(_config("ppo", out), resume=True)
    with pytest.raises(CheckpointError, match=r"holds only SB3 zips.*pickles.*start a new run") as info:
        train_rl(config, progress=False)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_resume_with_nothing_to_continue_is_a_clear_error(tmp_path):
    config = dataclasses.replace(_config("ppo", tmp_path / "empty"), resume=True)
    with pytest.raises(CheckpointError, match=r"no ppo_<n>_steps\.ckpt"):
        train_rl(config, progress=False)


@pytest.fixture(scope="module")
def stopped_ppo(tmp_path_factory) -> Path:
    """A PPO run of 32 steps (one rollout): its folder."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("stopped") / "run"
    train_rl(dataclasses.replace(_config("ppo", out), total_timesteps=32), progress=False)
    return out


def test_resume_with_other_settings_names_both(stopped_ppo, tmp_path):
    config = dataclasses.replace(
        _config("ppo", stopped_ppo),
        total_timesteps=64,
        resume=True,
        hyperparams={**HYPER["ppo"], "n_epochs": 2},
    )
    with pytest.raises(
        CheckpointError, match=r"hyperparams=.*'n_epochs': 1.*this run asks for.*'n_epochs': 2"
    ):
        train_rl(config, progress=False)


def _exp_avg_of_other_shape(state: dict) -> None:
    key = next(k for k in state if k.startswith("optim/policy/") and k.endswith("/exp_avg"))
    state[key] = np.zeros((7, 7), np.float32)


def _huge_rng_state(state: dict) -> None:
    state["rng/python"] = np.zeros(10**6, np.uint32)  # would be a tuple of a million ints


def _policy_of_other_shape(state: dict) -> None:
    key = next(k for k in state if k.startswith("policy/") and k.endswith(".weight"))
    state[key] = np.zeros((3, 3), np.float32)


@pytest.mark.parametrize(
    ("craft", "message"),
    [
        (_exp_avg_of_other_shape, r"optimiser entry .* is \(7, 7\)"),
        (_huge_rng_state, r"damaged RNG state"),
        (_policy_of_other_shape, r"the policy does not fit the rebuilt model"),
    ],
)
def test_crafted_training_state_is_refused_before_loading(stopped_ppo, tmp_path, craft, message):
    import shutil

    from bwgym.common.checkpoint import save_checkpoint

    out = tmp_path / "crafted"
    shutil.copytree(stopped_ppo, out)
    path = out / "checkpoints" / "ppo_32_steps.ckpt"
    ckpt = load_checkpoint(path)
    state = dict(ckpt.state)
    craft(state)
    save_checkpoint(path, ckpt.kind, state, ckpt.metadata)  # rewritten with the format's own writer
    config = dataclasses.replace(_config("ppo", out), total_timesteps=64, resume=True)
    with pytest.raises(CheckpointError, match=message) as info:
        train_rl(config, progress=False)
    assert "\n" not in str(info.value)


def test_pickle_named_like_a_training_state_runs_nothing(stopped_ppo, tmp_path):
    import shutil

    out, marker = tmp_path / "crafted", tmp_path / "marker"
    shutil.copytree(stopped_ppo, out)
    (out / "checkpoints" / "ppo_32_steps.ckpt").write_bytes(pickle.dumps(_Touch(marker)))
    config = dataclasses.replace(_config("ppo", out), total_timesteps=64, resume=True)
    with pytest.raises(CheckpointError, match="is not a bwgym checkpoint"):
        train_rl(config, progress=False)
    assert not marker.exists()
