"""The shipped SensorNetwork control policy: SAC on decoded measurements, its recipe and its wrappers.

``bwgym/agents/checkpoints/sac_sensors_control_scalar.ckpt`` is what
``bwgym train sensor-control --timesteps 30000`` writes (stock SB3 SAC through
:func:`bwgym.agents.rl.train_rl`, one CPU thread, seed 0; about 15 minutes on one core). It trains
on the library scenario :data:`SCENARIO`: ``bwgym/SensorNetwork-v0`` in control mode inside
``BandwidthLimited`` (the ``scalar`` codec on a narrowband trace), so the policy sees exactly what
the fusion node decodes. The policy is SB3's ``MultiInputPolicy`` on the last :data:`STACK`
decoded observations (:func:`stacked`: with the current view alone a policy cannot tell a held,
stale measurement from a fresh one); during training only, the stage cost is clipped at
:data:`TRAIN_COST_CLIP` (:func:`training_env`).

The scenario's env comes from the caller (``make_decoded``): this module sits below the scenario
layer that builds it. ``benchmarks/sensor_control.py`` evaluates the shipped policy.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym

__all__ = [
    "EVAL_EPISODES",
    "EVAL_FREQ_STEPS",
    "HYPERPARAMS",
    "SCENARIO",
    "STACK",
    "TRAIN_COST_CLIP",
    "stacked",
    "train_sensor_control",
    "training_env",
]

#: The library scenario the shipped policy trains on (env, codec, trace, link).
SCENARIO = "sensors_control_scalar"
#: Observations the policy sees at once (the current decoded measurements and the previous ones):
#: a memoryless policy cannot tell a held (stale) view from a fresh one.
STACK = 4
#: Training only: the stage cost is clipped at this value (a run-away state's cost of hundreds per
#: step would swamp the critic; a policy that controls never sees such states).
TRAIN_COST_CLIP = 20.0
#: Training evaluations (SB3's EvalCallback) that pick the policy kept.
EVAL_FREQ_STEPS = 2_500
EVAL_EPISODES = 5
#: SAC settings: a small MLP so that the training fits in ~15 minutes on one core.
HYPERPARAMS: dict[str, Any] = {
    "policy_kwargs": {"net_arch": [64, 64]},
    "learning_rate": 3e-4,
    "buffer_size": 50_000,
    "learning_starts": 1_000,
    "batch_size": 256,
    "gamma": 0.9,
    "train_freq": 1,
    "gradient_steps": 1,
}


def stacked(env: gym.Env) -> gym.Env:
    """What the SAC policy observes: the last :data:`STACK` (decoded) observations of every view."""
    return gym.wrappers.FrameStackObservation(env, STACK)


def _clip_cost(reward: float) -> float:
    return max(float(reward), -TRAIN_COST_CLIP)


def training_env(make_decoded: Callable[[], gym.Env]) -> gym.Env:
    """The training env: ``make_decoded()`` stacked, its stage cost clipped at :data:`TRAIN_COST_CLIP`."""
    return stacked(gym.wrappers.TransformReward(make_decoded(), _clip_cost))


def train_sensor_control(
    make_decoded: Callable[[], gym.Env],
    env_id: str,
    env_kwargs: Mapping[str, Any],
    out_dir: str | os.PathLike[str],
    timesteps: int,
    seed: int = 0,
    hyperparams: Mapping[str, Any] | None = None,
    eval_freq_steps: int = EVAL_FREQ_STEPS,
    progress: bool = False,
    select_best: bool = True,
    scenario: str = SCENARIO,
) -> Path:
    """Train SAC on decoded measurements through ``train_rl``; return the written ``policy.ckpt``.

    Args:
        make_decoded: builds the scenario's env (SensorNetwork inside ``BandwidthLimited``); it must
            pickle (a module-level function or a ``functools.partial`` of one).
        env_id: the scenario's env id, recorded in the checkpoint.
        env_kwargs: the scenario's env arguments, recorded in the checkpoint.
        out_dir: the run folder (``policy.ckpt``, ``best/``, evaluations).
        timesteps: env steps of training.
        seed: seeds SB3 and the envs.
        hyperparams: SAC keyword arguments (default :data:`HYPERPARAMS`).
        eval_freq_steps: env steps between the evaluations that pick the policy kept.
        progress: SB3's progress bar.
        select_best: keep the policy of the best periodic evaluation (SB3's ``EvalCallback``:
            :data:`EVAL_EPISODES` episodes every ``eval_freq_steps`` steps on the training env),
            not the last one (SAC's return oscillates from one evaluation to the next on this task).
        scenario: the scenario's name, recorded in the checkpoint.
    """
    import torch

    from bwgym.agents.rl import RLConfig, save_rl, train_rl

    torch.set_num_threads(1)
    config = RLConfig(
        algo="sac",
        env_id=env_id,
        env_kwargs=dict(env_kwargs),
        scenario=scenario,
        total_timesteps=timesteps,
        seed=seed,
        eval_freq_steps=eval_freq_steps,
        eval_episodes=EVAL_EPISODES,
        checkpoint_freq_steps=10**9,
        hyperparams=dict(HYPERPARAMS if hyperparams is None else hyperparams),
        out_dir=str(out_dir),
        device="cpu",
    )
    model = train_rl(config, progress=progress, env_factory=functools.partial(training_env, make_decoded))
    best = Path(out_dir) / "best" / "best_model.zip"
    if select_best and best.is_file():
        # this run wrote that zip itself, so loading it is safe
        from stable_baselines3 import SAC

        spec = {
            k: {"shape": list(v.shape), "dtype": str(v.dtype)}
            for k, v in model.observation_space.spaces.items()
        }
        save_rl(SAC.load(best, device="cpu"), config, out_dir, spec)
    return Path(out_dir) / "policy.ckpt"
