"""Reinforcement learning with stock stable-baselines3 algorithms, on clean or decoded views.

The policy trains on any bwgym env, optionally inside ``BandwidthLimited`` (so it learns on what
the codec and the link deliver), with SB3's own callbacks: evaluation (``eval/success_rate`` from
``info["is_success"]``), checkpoints, TensorBoard. bwgym adds one callback that logs the link
(``bw/...``) and, for PPO, an optional warm start by behaviour cloning of the SB3 policy itself on
expert demonstrations (BC-initialised PPO)::

    from bwgym.agents.rl import RLConfig, train_rl
    model = train_rl(RLConfig(algo="ppo", total_timesteps=20_000, out_dir="runs/ppo"))

The saved folder holds ``model.zip`` (SB3's format) and ``model.json`` (env id, env kwargs,
observation spec, scenario, library versions), which :func:`load_rl` checks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["ALGOS", "RLAgent", "RLConfig", "bc_pretrain_policy", "load_rl", "make_rl_env", "train_rl"]

ALGOS = ("ppo", "sac")


@dataclass(frozen=True)
class RLConfig:
    """What to train and how."""

    algo: str = "ppo"
    """``ppo`` or ``sac`` (stock stable-baselines3)."""
    env_id: str = "bwgym/LocateLift-v0"
    """Gymnasium id of the env."""
    env_kwargs: dict[str, Any] = field(default_factory=lambda: {"reward_type": "dense"})
    """Keyword arguments of ``gymnasium.make`` (dense reward by default: sparse success is rare)."""
    scenario: str | None = None
    """The scenario (library name or YAML) whose codec and trace sit between env and policy; a
    record only: the caller builds its env and passes it as ``env_factory`` to :func:`train_rl`."""
    total_timesteps: int = 20_000
    """Env steps of training, over all parallel envs."""
    n_envs: int = 1
    """Parallel envs; above 1 they run in spawned subprocesses (``SubprocVecEnv``)."""
    seed: int = 0
    """Seed of the algorithm and of the envs."""
    eval_freq_steps: int = 5_000
    """Evaluate every this many env steps (divided by ``n_envs`` for SB3's callback count)."""
    eval_episodes: int = 10
    """Episodes per evaluation."""
    checkpoint_freq_steps: int = 10_000
    """Save a checkpoint every this many env steps."""
    bc_demos: str | None = None
    """A demonstration folder: pretrain the PPO policy on it by behaviour cloning first."""
    bc_epochs: int = 20
    """Epochs of that pretraining."""
    hyperparams: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of the SB3 algorithm (e.g. ``n_steps``, ``buffer_size``)."""
    out_dir: str = "runs/rl"
    """Where ``model.zip``, ``model.json``, checkpoints and ``tensorboard/`` go."""
    device: str = "auto"
    """torch device (CUDA when present)."""


def make_rl_env(config: RLConfig, env_factory: Callable[[], gym.Env] | None = None) -> gym.Env:
    """One env of the config: ``env_factory()`` (e.g. a scenario's env inside ``BandwidthLimited``),
    or the bare ``config.env_id`` with ``config.env_kwargs``; wrapped in SB3's ``Monitor``."""
    import bwgym  # noqa: F401

    env = env_factory() if env_factory is not None else gym.make(config.env_id, **config.env_kwargs)
    from stable_baselines3.common.monitor import Monitor

    return Monitor(env, info_keywords=("is_success",))


def _vec_env(config: RLConfig, seed: int, env_factory: Callable[[], gym.Env] | None = None):
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    fns = [lambda: make_rl_env(config, env_factory) for _ in range(config.n_envs)]
    if config.n_envs > 1:
        # spawn: forked children would inherit the parent's EGL context and can hang.
        venv = SubprocVecEnv(fns, start_method="spawn")
    else:
        venv = DummyVecEnv(fns)
    venv.seed(seed)
    return venv


def _bandwidth_callback():
    from stable_baselines3.common.callbacks import BaseCallback

    class BandwidthCallback(BaseCallback):
        """Log the link's budget, bits sent and PSNR under ``bw/`` and ``codec/``."""

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", []):
                if "budget_bits" in info:
                    self.logger.record_mean("bw/budget_bits", info["budget_bits"])
                    self.logger.record_mean("bw/bits_sent_total", info["bits_sent_total"])
                    for view, value in info.get("distortion", {}).items():
                        if np.isfinite(value):
                            self.logger.record_mean(f"codec/psnr_db_{view}", value)
            return True

    return BandwidthCallback()


def bc_pretrain_policy(model: Any, demos: str | os.PathLike[str], epochs: int = 20, batch_size: int = 64,
                       seed: int = 0) -> list[float]:
    """Behaviour-clone an SB3 actor-critic policy on expert demonstrations (maximum likelihood).

    Returns the mean loss of each epoch. Only the views the policy observes are used.
    """
    import torch

    from bwgym.agents.demos import DemoDataset

    dataset = DemoDataset(demos)
    obs, actions, _ = dataset.arrays()
    keys = list(model.observation_space.spaces)
    missing = [k for k in keys if k not in obs]
    if missing:
        raise ValueError(f"demonstrations in {demos} lack observation keys {missing}; the policy observes {keys}")
    policy = model.policy
    policy.set_training_mode(True)
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-4)
    rng = np.random.default_rng(seed)
    target = np.clip(actions, -0.999, 0.999).astype(np.float32)
    losses = []
    for _ in range(epochs):
        order = rng.permutation(len(target))
        total = 0.0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch_obs = {k: obs[k][idx] for k in keys}
            obs_tensor, _ = policy.obs_to_tensor(batch_obs)
            dist = policy.get_distribution(obs_tensor)
            act = torch.as_tensor(target[idx], device=policy.device)
            loss = -dist.log_prob(act).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        losses.append(total / len(order))
    policy.set_training_mode(False)
    return losses


def _observation_spec(space: gym.spaces.Dict) -> dict[str, Any]:
    return {k: {"shape": list(s.shape), "dtype": str(s.dtype)} for k, s in space.spaces.items()}


def train_rl(config: RLConfig, progress: bool = True, env_factory: Callable[[], gym.Env] | None = None) -> Any:
    """Train an SB3 policy as ``config`` says and save it to ``config.out_dir``; returns the model."""
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback, EvalCallback

    if config.algo not in ALGOS:
        raise ValueError(f"algo must be one of {ALGOS}, got {config.algo!r}")
    if config.bc_demos and config.algo != "ppo":
        raise ValueError("bc_demos warm start is implemented for PPO (a stochastic actor-critic); use algo='ppo'")
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from stable_baselines3.common.vec_env import VecTransposeImage

    venv = _vec_env(config, config.seed, env_factory)
    observation_spec = _observation_spec(venv.observation_space)  # as the env gives it, not transposed
    # Wrapped as SB3 wraps the training env, so EvalCallback sees the same kind of env.
    eval_env = VecTransposeImage(
        _vec_env(RLConfig(**{**asdict(config), "n_envs": 1}), config.seed + 10_000, env_factory)
    )
    algo = {"ppo": PPO, "sac": SAC}[config.algo]
    defaults: dict[str, Any] = (
        {"n_steps": 256, "batch_size": 64} if config.algo == "ppo" else {"buffer_size": 20_000, "learning_starts": 500}
    )
    model = algo("MultiInputPolicy", venv, seed=config.seed, device=config.device, verbose=0,
                 tensorboard_log=str(out / "tensorboard"), **{**defaults, **config.hyperparams})
    if config.bc_demos:
        losses = bc_pretrain_policy(model, config.bc_demos, epochs=config.bc_epochs, seed=config.seed)
        (out / "bc_pretrain.json").write_text(json.dumps({"epoch_losses": losses}))
    per_env = lambda steps: max(1, steps // config.n_envs)  # noqa: E731  (SB3 counts callback calls)
    callbacks = CallbackList([
        EvalCallback(eval_env, n_eval_episodes=config.eval_episodes, eval_freq=per_env(config.eval_freq_steps),
                     best_model_save_path=str(out / "best"), log_path=str(out / "eval"), verbose=0),
        CheckpointCallback(per_env(config.checkpoint_freq_steps), str(out / "checkpoints"), name_prefix=config.algo),
        _bandwidth_callback(),
    ])
    model.learn(config.total_timesteps, callback=callbacks, progress_bar=progress, tb_log_name=config.algo)
    save_rl(model, config, out, observation_spec)
    venv.close()
    eval_env.close()
    return model


def save_rl(model: Any, config: RLConfig, out_dir: str | os.PathLike[str], observation_spec: dict[str, Any]) -> Path:
    """Write ``model.zip`` and ``model.json`` (what :func:`load_rl` checks) into ``out_dir``."""
    import stable_baselines3
    import torch

    import bwgym

    out = Path(out_dir)
    model.save(out / "model.zip")
    meta = {"algo": config.algo, "env_id": config.env_id, "env_kwargs": config.env_kwargs,
            "scenario": config.scenario, "observation_spec": observation_spec,
            "config": asdict(config), "versions": {"bwgym": bwgym.__version__, "torch": torch.__version__,
                                                    "stable_baselines3": stable_baselines3.__version__}}
    (out / "model.json").write_text(json.dumps(meta, indent=2))
    return out


class RLAgent:
    """A trained SB3 policy behind the agent interface (``reset``, ``act``), deterministic actions."""

    def __init__(self, model: Any, meta: dict[str, Any]) -> None:
        self.model = model
        self.meta = meta

    def reset(self, seed: int | None = None) -> None:
        """Nothing to reset: the policies are feed-forward."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Deterministic action for one observation."""
        keys = self.meta["observation_spec"]
        action, _ = self.model.predict({k: obs[k] for k in keys}, deterministic=True)
        return np.asarray(action, dtype=np.float32)


def load_rl(path: str | os.PathLike[str], env_id: str | None = None,
            observation_space: gym.spaces.Dict | None = None, device: str = "auto") -> RLAgent:
    """Load a folder written by :func:`train_rl`; check the env id and observation spec when given."""
    from stable_baselines3 import PPO, SAC

    folder = Path(path)
    if folder.suffix == ".zip":
        folder = folder.parent
    meta_path = folder / "model.json"
    if not meta_path.is_file():
        raise ValueError(f"{folder} is not an RL agent folder: {meta_path.name} is missing")
    meta = json.loads(meta_path.read_text())
    if env_id is not None and meta["env_id"] != env_id:
        raise ValueError(f"agent {folder} was trained on {meta['env_id']!r}, not on {env_id!r}")
    if observation_space is not None:
        expected = meta["observation_spec"]
        actual = _observation_spec(observation_space)
        wrong = {k: v for k, v in expected.items() if actual.get(k) != v}
        if wrong:
            raise ValueError(f"agent {folder} observes {expected}; this env offers {actual}")
    algo = {"ppo": PPO, "sac": SAC}[meta["algo"]]
    return RLAgent(algo.load(folder / "model.zip", device=device), meta)
