"""Reinforcement learning with stock stable-baselines3 algorithms, on clean or decoded views.

The policy trains on any bwgym env, optionally inside ``BandwidthLimited`` (so it learns on what
the codec and the link deliver), with SB3's own callbacks: evaluation (``eval/success_rate`` from
``info["is_success"]``), checkpoints, TensorBoard. bwgym adds one callback that logs the link
(``bw/...``) and two warm starts: ``bc_init``, the trained BC network itself as the actor of PPO
or SAC, with a critic warm-up (:mod:`bwgym.agents.bc_prior`); or, for PPO, ``bc_demos``, behaviour
cloning of SB3's own network on expert demonstrations. ``resume`` continues a stopped run from
its newest periodic training state (see below)::

    from bwgym.agents.rl import RLConfig, load_rl, train_rl
    model = train_rl(RLConfig(algo="ppo", total_timesteps=20_000, out_dir="runs/ppo"))
    agent = load_rl("runs/ppo", env_id="bwgym/LocateLift-v0")   # reset(seed), act(obs)

**What is saved, and what is loaded.** :func:`save_rl` writes ``policy.ckpt`` into the run
folder, in the project's one checkpoint format (:mod:`bwgym.common.checkpoint`, kind
``agent/sb3-ppo`` or ``agent/sb3-sac``): the policy's ``state_dict`` as ``.npy`` arrays plus JSON
metadata (algorithm, env id, the observation spec as the env gives it, the policy's observation
and action spaces, the keyword arguments that rebuild the policy with classes stored by name,
SB3/torch versions, the :class:`RLConfig`). :func:`load_rl` rebuilds SB3's ``MultiInputPolicy``
from that metadata and loads the weights into it: it never calls ``PPO.load``/``SAC.load`` and
unpickles nothing from the folder, so loading a folder someone sent you runs none of its code.

**Resuming** reads the same format only. Every ``checkpoint_freq_steps`` and at the end,
:func:`save_training_state` writes ``checkpoints/<algo>_<n>_steps.ckpt`` (kind
``agent/sb3-<algo>-train``): the policy's ``state_dict``, each optimiser's state as arrays (its
settings as JSON numbers), SAC's entropy coefficient, the step and update counts, the learning
rate and clip range as numbers, the torch/numpy/Python RNG states and the :class:`RLConfig`; for
SAC also ``checkpoints/<algo>_<n>_steps.replay.ckpt``, the filled rows of the replay buffer (only
the newest is kept). ``resume`` rebuilds the SB3 model from the config exactly as a new run would
and loads those arrays into it: it never calls SB3's ``load``, ``torch.load`` or ``pickle``, so
resuming a folder someone sent you runs none of its code. The env's own state is not saved: the
resumed run starts new episodes.

SB3's ``EvalCallback`` still writes ``best/best_model.zip`` (SB3's pickled format, for your own
use with SB3 on runs you made); nothing in bwgym reads it. A folder of the earlier layout (a
pickled ``model.zip`` and ``model.json``, no ``policy.ckpt``) is refused with a message;
:func:`convert_legacy` rewrites such a folder once you trust it (it unpickles, and warns so), or
retrain. Runs of earlier versions kept SB3 zips in ``checkpoints/``; resume refuses them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from bwgym.common.checkpoint import (
    CheckpointError,
    check_spec,
    is_size_list,
    load_checkpoint,
    save_checkpoint,
)
from bwgym.common.device import resolve_device
from bwgym.common.registry import BuildContext, InputError, register_agent
from bwgym.common.training_state import (
    load_optimizer,
    load_state_dict_checked,
    optimizer_arrays,
    rng_state,
    set_rng_state,
)

__all__ = [
    "ALGOS",
    "CHECKPOINT_KINDS",
    "POLICY_FILE",
    "REPLAY_BUFFER_KIND",
    "RLAgent",
    "RLConfig",
    "bc_pretrain_policy",
    "fit_policy_to_actions",
    "convert_legacy",
    "load_rl",
    "make_rl_env",
    "save_rl",
    "save_training_state",
    "TRAIN_STATE_KINDS",
    "train_rl",
]

ALGOS = ("ppo", "sac")
#: The file :func:`save_rl` writes into the run folder and :func:`load_rl` reads.
POLICY_FILE = "policy.ckpt"
#: Checkpoint kind per algorithm.
CHECKPOINT_KINDS = {algo: f"agent/sb3-{algo}" for algo in ALGOS}
#: The only policy class saved and rebuilt (SB3's alias, resolved per algorithm).
POLICY_CLASS = "MultiInputPolicy"
#: Files of the earlier, pickled layout.
_LEGACY_FILES = ("model.zip", "model.json")
#: Policy constructor arguments that are classes: the module they are looked up in (by name only)
#: and the base class they must derive from. Nothing else is ever imported from a checkpoint.
_CLASS_KWARGS = {
    "activation_fn": (("torch.nn",), "torch.nn", "Module"),
    "optimizer_class": (("torch.optim",), "torch.optim", "Optimizer"),
    "features_extractor_class": (
        ("stable_baselines3.common.torch_layers", "bwgym.agents.bc_prior"),
        "stable_baselines3.common.torch_layers",
        "BaseFeaturesExtractor",
    ),
}
#: Constructor parameters not stored as policy kwargs (spaces are stored apart, the rest is derived).
_NOT_KWARGS = ("observation_space", "action_space", "lr_schedule", "features_extractor", "features_dim")
#: Largest space (elements) rebuilt from a checkpoint: guards against a crafted shape (its float64
#: bounds take 8 bytes per element each; an 84x84x3 image has 21,168).
_MAX_SPACE_ELEMENTS = 1 << 22
#: Default ``net_arch`` of each algorithm's ``MultiInputPolicy`` when a checkpoint records none.
_DEFAULT_NET_ARCH = {"ppo": [64, 64], "sac": [256, 256]}
_DTYPE_KINDS = "uifb"


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
    """Parallel envs."""
    vec: str = "subproc"
    """With ``n_envs > 1``: ``subproc`` (one spawned process per env), ``dummy`` (in this process, in
    turn) or ``vector`` (one vector env from :func:`train_rl`'s ``vector_factory``, e.g. a scenario's
    :class:`~bwgym.envs.bandwidth.VectorBandwidthLimited`, whose codec calls are batched)."""
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
    bc_init: str | None = None
    """A BC agent whose network becomes the policy's actor (:mod:`bwgym.agents.bc_prior`): a
    checkpoint path, or ``"shipped"`` for the shipped agent of ``env_id``. Its spec must match
    the env's views."""
    initial_noise_std: float = 0.1
    """With ``bc_init``: exploration noise (std before tanh) of the first policy."""
    critic_warmup_steps: int = 0
    """Env steps during which the actor is frozen and only the critic learns."""
    resume: bool = False
    """Continue from the newest ``checkpoints/<algo>_<n>_steps.ckpt`` of ``out_dir`` (the project's
    format, nothing unpickled) up to ``total_timesteps``; ``algo``, ``env_id``, ``env_kwargs``,
    ``hyperparams``, ``bc_init`` (and for SAC ``n_envs``) must be the stopped run's."""
    hyperparams: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of the SB3 algorithm (e.g. ``n_steps``, ``buffer_size``)."""
    out_dir: str = "runs/rl"
    """The run folder: ``policy.ckpt`` (what :func:`load_rl` reads), ``checkpoints/`` (what ``resume``
    reads), SB3's ``best/`` zip, ``eval/`` and ``tensorboard/``."""
    device: str = "auto"
    """torch device (CUDA when present)."""


def make_rl_env(config: RLConfig, env_factory: Callable[[], gym.Env] | None = None) -> gym.Env:
    """Make one env of the config, wrapped in SB3's ``Monitor``.

    Args:
        config: the run's configuration (``env_id`` and ``env_kwargs`` when no factory is given).
        env_factory: builds the env (e.g. a scenario's env inside ``BandwidthLimited``); None: the
            bare ``config.env_id`` with ``config.env_kwargs``.

    """
    import bwgym  # noqa: F401

    env = env_factory() if env_factory is not None else gym.make(config.env_id, **config.env_kwargs)
    from stable_baselines3.common.monitor import Monitor

    return Monitor(env, info_keywords=("is_success",))


def _vec_env(
    config: RLConfig,
    seed: int,
    env_factory: Callable[[], gym.Env] | None = None,
    vector_factory: Callable[[int], Any] | None = None,
):
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecMonitor

    if config.vec == "vector" and vector_factory is not None:
        venv = VecMonitor(sb3_vector_env(vector_factory(config.n_envs)), info_keywords=("is_success",))
        venv.seed(seed)
        return venv
    fns = [lambda: make_rl_env(config, env_factory) for _ in range(config.n_envs)]
    if config.n_envs > 1 and config.vec == "subproc":
        # spawn: forked children would inherit the parent's EGL context and can hang.
        venv = SubprocVecEnv(fns, start_method="spawn")
    else:
        venv = DummyVecEnv(fns)
    venv.seed(seed)
    return venv


def sb3_vector_env(venv: Any) -> Any:
    """SB3's ``VecEnv`` over a gymnasium vector env with ``NEXT_STEP`` autoreset.

    SB3 expects an env whose episode ends to be reset within the same step, its last observation in
    ``info["terminal_observation"]``; this resets those envs (``reset_mask``) right away, so PPO's
    rollouts go through the vector env's batched codec calls
    (:class:`~bwgym.envs.bandwidth.VectorBandwidthLimited`). ``seed(s)`` seeds env ``i`` with
    ``s + i`` at the next ``reset``, as SB3's own vector envs do.

    Args:
        venv: the vector env; its ``envs`` (the single envs) answer ``get_attr`` and ``env_method``.
    """
    return _sb3_vector_env_class()(venv)


@functools.cache
def _sb3_vector_env_class() -> type:
    from stable_baselines3.common.vec_env import VecEnv  # SB3 is imported on first use only

    class SB3VectorEnv(VecEnv):
        """See :func:`sb3_vector_env`."""

        def __init__(self, venv: Any) -> None:
            self.venv = venv  # first: SB3's constructor asks the envs for their render_mode
            super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
            self._actions: np.ndarray | None = None

        def reset(self) -> Any:
            """Reset every env (with the seeds given to :meth:`seed`, once)."""
            seeds = [None if s is None else int(s) for s in self._seeds]
            obs, _ = self.venv.reset(seed=seeds)
            self.reset_infos = [dict(info) for info in self.venv.env_infos]
            self._reset_seeds()
            self._reset_options()
            return obs

        def step_async(self, actions: np.ndarray) -> None:
            """Store the actions of the next :meth:`step_wait`."""
            self._actions = actions

        def step_wait(self) -> Any:
            """Step every env; the ones whose episode ended are reset at once (SB3's convention)."""
            obs, rewards, terminated, truncated, _ = self.venv.step(self._actions)
            dones = terminated | truncated
            infos = [dict(info) for info in self.venv.env_infos]
            for i, info in enumerate(infos):
                info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            if dones.any():
                for i in np.flatnonzero(dones):
                    infos[i]["terminal_observation"] = {k: v[i] for k, v in obs.items()}
                obs, _ = self.venv.reset(options={"reset_mask": dones})
                for i in np.flatnonzero(dones):
                    self.reset_infos[i] = dict(self.venv.env_infos[i])
            return obs, rewards.astype(np.float32), dones, infos

        def close(self) -> None:
            """Close the vector env."""
            self.venv.close()

        def _targets(self, indices: Any) -> list[Any]:
            return [self.venv.envs[i] for i in self._get_indices(indices)]

        def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
            """An attribute of each (single) env."""
            return [env.get_wrapper_attr(attr_name) for env in self._targets(indices)]

        def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
            """Set an attribute of each (single) env."""
            for env in self._targets(indices):
                env.set_wrapper_attr(attr_name, value)

        def env_method(
            self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any
        ) -> list[Any]:
            """Call a method of each (single) env."""
            return [
                env.get_wrapper_attr(method_name)(*method_args, **method_kwargs)
                for env in self._targets(indices)
            ]

        def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
            """Whether each (single) env is wrapped in ``wrapper_class``."""
            from stable_baselines3.common import env_util

            return [env_util.is_wrapped(env, wrapper_class) for env in self._targets(indices)]

    return SB3VectorEnv


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


def bc_pretrain_policy(
    model: Any, demos: str | os.PathLike[str], epochs: int = 20, batch_size: int = 64, seed: int = 0
) -> list[float]:
    """Behaviour-clone an SB3 actor-critic policy on expert demonstrations (maximum likelihood).

    Returns the mean loss of each epoch. Only the views the policy observes are used.
    """
    from bwgym.agents.demos import DemoDataset

    obs, actions, _ = DemoDataset(demos).arrays()
    keys = list(model.observation_space.spaces)
    missing = [k for k in keys if k not in obs]
    if missing:
        raise ValueError(
            f"demonstrations in {demos} lack observation keys {missing}; the policy observes {keys}"
        )
    return fit_policy_to_actions(model, obs, actions, epochs=epochs, batch_size=batch_size, seed=seed)


def fit_policy_to_actions(
    model: Any,
    obs: Mapping[str, np.ndarray],
    actions: np.ndarray,
    epochs: int = 20,
    batch_size: int = 64,
    seed: int = 0,
) -> list[float]:
    """Fit an SB3 actor-critic policy to target actions by maximum likelihood; the loss per epoch.

    ``obs`` holds one array per key of the policy's observation space (the first axis: samples);
    ``actions`` one target per sample, clipped just inside ``[-1, 1]`` (a Gaussian policy's
    targets at the box's edge would pull its mean without bound).
    """
    import torch

    keys = list(model.observation_space.spaces)
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
            obs_tensor, _ = policy.obs_to_tensor({k: obs[k][idx] for k in keys})
            dist = policy.get_distribution(obs_tensor)
            loss = -dist.log_prob(torch.as_tensor(target[idx], device=policy.device)).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        losses.append(total / len(order))
    policy.set_training_mode(False)
    return losses


def _observation_spec(space: gym.spaces.Dict) -> dict[str, Any]:
    return {k: {"shape": list(s.shape), "dtype": str(s.dtype)} for k, s in space.spaces.items()}


def _bc_prior(config: RLConfig, venv: Any) -> Any:
    """The BC agent of ``config.bc_init``, checked against the env's views (names, image size)."""
    from bwgym.agents.bc import BCAgent

    images = [k for k, sp in venv.observation_space.spaces.items() if len(sp.shape) == 3]
    shape = list(venv.observation_space.spaces[images[0]].shape[:2]) if images else None
    if config.bc_init == "shipped":
        bc = BCAgent.load_shipped(env_id=config.env_id)
    else:
        bc = BCAgent.load(config.bc_init)
    views = bc.view_names if set(images) == set(bc.view_names) else images  # the order is BC's
    bc.check_spec(env_id=config.env_id, views=views, image_shape=shape, where=f"bc_init {config.bc_init}")
    return bc


def _build_model(config: RLConfig, venv: Any, out: Path) -> tuple[Any, int]:
    """A new SB3 model (BC-initialised when asked) and 0; with ``resume``, the newest training state's.

    A resumed model is built exactly as a new one of the same config (without the warm starts,
    whose weights are overwritten anyway) and then loaded from the project's own files.
    """
    from stable_baselines3 import PPO, SAC

    algo = {"ppo": PPO, "sac": SAC}[config.algo]
    n_steps = max(16, min(256, config.total_timesteps // config.n_envs))
    kwargs: dict[str, Any] = (
        {"n_steps": n_steps, "batch_size": min(64, n_steps * config.n_envs)}
        if config.algo == "ppo"
        else {"buffer_size": 20_000, "learning_starts": 500}
    )
    bc = None
    if config.bc_init:
        from bwgym.agents.bc_prior import bc_algo_kwargs, bc_policy_kwargs

        bc = _bc_prior(config, venv)
        kwargs.update(bc_algo_kwargs(config.algo), policy_kwargs=bc_policy_kwargs(bc, config.algo))
    hyper = dict(config.hyperparams)
    if "policy_kwargs" in hyper and "policy_kwargs" in kwargs:
        hyper["policy_kwargs"] = {**kwargs["policy_kwargs"], **hyper["policy_kwargs"]}
    model = algo(
        "MultiInputPolicy",
        venv,
        seed=config.seed,
        device=config.device,
        verbose=0,
        tensorboard_log=str(out / "tensorboard"),
        **{**kwargs, **hyper},
    )
    if config.resume:
        return model, _resume_from(model, config, out)
    if bc is not None:
        from bwgym.agents.bc_prior import load_bc_weights

        bc = bc.to(model.policy.device)
        load_bc_weights(model.policy, bc, config.algo, venv.reset(), config.initial_noise_std)
    if config.bc_demos:
        losses = bc_pretrain_policy(model, config.bc_demos, epochs=config.bc_epochs, seed=config.seed)
        (out / "bc_pretrain.json").write_text(json.dumps({"epoch_losses": losses}))
    return model, 0


def train_rl(
    config: RLConfig,
    progress: bool = True,
    env_factory: Callable[[], gym.Env] | None = None,
    eval_env_factory: Callable[[], gym.Env] | None = None,
    callbacks: Sequence[Any] = (),
    describe: Callable[[Any], Mapping[str, Any]] | None = None,
    pretrain: Callable[[Any], None] | None = None,
    vector_factory: Callable[[int], Any] | None = None,
) -> Any:
    """Train an SB3 policy as ``config`` says and write ``policy.ckpt`` into ``config.out_dir``.

    Args:
        config: what to train and how.
        progress: SB3's progress bar.
        env_factory: builds one training env (e.g. a scenario's env inside ``BandwidthLimited``);
            None: ``gymnasium.make(config.env_id, **config.env_kwargs)``. With ``vec="subproc"``
            it is sent to spawned processes, so it must pickle (a module-level function or a
            ``functools.partial`` of one).
        eval_env_factory: builds the evaluation env (e.g. on held-out traces); None: ``env_factory``.
        callbacks: more SB3 callbacks (the evaluation, checkpoint and ``bw/`` ones always run).
        describe: called with the training ``VecEnv`` after training; what it returns joins the
            checkpoint's metadata (e.g. an observation spec only the envs know).
        pretrain: called with the new SB3 model before RL starts (not on ``resume``), e.g. to fit
            its policy to a teacher's actions.
        vector_factory: with ``config.vec == "vector"``, builds the ``n_envs`` training envs as one
            gymnasium vector env with ``NEXT_STEP`` autoreset (e.g.
            ``functools.partial(make_vector_env, scenario)``); evaluation keeps ``env_factory``.

    Returns:
        The trained SB3 model (its policy is what :func:`load_rl` gives back from the folder).

    """
    from stable_baselines3.common.callbacks import CallbackList
    from stable_baselines3.common.vec_env import VecTransposeImage

    _check_rl_config(config, vector_factory)
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    venv = _vec_env(config, config.seed, env_factory, vector_factory)
    observation_spec = _observation_spec(venv.observation_space)  # as the env gives it, not transposed
    # Wrapped as SB3 wraps the training env, so EvalCallback sees the same kind of env.
    eval_config = dataclasses.replace(config, n_envs=1, vec="dummy" if config.vec == "vector" else config.vec)
    eval_env = VecTransposeImage(_vec_env(eval_config, config.seed + 10_000, eval_env_factory or env_factory))
    try:
        model, done_steps = _build_model(config, venv, out)
        if pretrain is not None and not config.resume:
            pretrain(model)
        every = _rl_callbacks(config, out, eval_env, callbacks)
        with warnings.catch_warnings():
            # Training envs in processes and the evaluation env in this one are the same envs.
            warnings.filterwarnings("ignore", message="Training and eval env are not of the same type")
            # On resume SB3 adds the steps done to what it is asked for: ask for the rest only,
            # so that the run ends at total_timesteps and the schedules continue where they were.
            remaining = config.total_timesteps - done_steps
            if remaining > 0:
                model.learn(
                    remaining,
                    callback=CallbackList(every),
                    progress_bar=progress,
                    tb_log_name=config.algo,
                    reset_num_timesteps=not config.resume,
                )
        save_training_state(model, config, out)  # a finished run can be resumed to more steps
        extra = dict(describe(venv)) if describe is not None else {}
        save_rl(model, config, out, observation_spec, extra)
    finally:
        venv.close()
        eval_env.close()
    return model


def _check_rl_config(config: RLConfig, vector_factory: Callable[[int], Any] | None) -> None:
    """Refuse a config :func:`train_rl` cannot run, before any env is built."""
    if config.algo not in ALGOS:
        raise ValueError(f"algo must be one of {ALGOS}, got {config.algo!r}")
    if config.vec not in ("subproc", "dummy", "vector"):
        raise ValueError(f"vec must be 'subproc', 'dummy' or 'vector', got {config.vec!r}")
    if config.vec == "vector" and vector_factory is None:
        raise ValueError(
            "vec 'vector' needs a vector_factory (e.g. a scenario's make_vector_env): train with --scenario"
        )
    for label in ("total_timesteps", "n_envs", "eval_freq_steps", "eval_episodes", "checkpoint_freq_steps"):
        value = getattr(config, label)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be an integer >= 1, got {value!r}")
    if config.bc_demos and config.bc_init:
        raise ValueError("give bc_demos (pretrain SB3's own network) or bc_init (the BC network), not both")
    if config.bc_demos and config.algo != "ppo":
        raise ValueError(
            "bc_demos warm start is implemented for PPO (a stochastic actor-critic); use algo='ppo'"
        )


def _rl_callbacks(config: RLConfig, out: Path, eval_env: Any, callbacks: Sequence[Any]) -> list[Any]:
    """Evaluation, training state, ``bw/`` scalars, the critic's warm-up when asked, then ``callbacks``."""
    from stable_baselines3.common.callbacks import EvalCallback

    from bwgym.agents.bc_prior import CriticWarmup

    per_env = lambda steps: max(1, steps // config.n_envs)  # noqa: E731  (SB3 counts callback calls)
    return [
        EvalCallback(
            eval_env,
            n_eval_episodes=config.eval_episodes,
            eval_freq=per_env(config.eval_freq_steps),
            best_model_save_path=str(out / "best"),
            log_path=str(out / "eval"),
            verbose=0,
        ),
        _training_state_callback(config, out, per_env(config.checkpoint_freq_steps)),
        _bandwidth_callback(),
        *([CriticWarmup(config.algo, config.critic_warmup_steps)] if config.critic_warmup_steps else []),
        *callbacks,
    ]


# ---------------------------------------------------------------------- spaces <-> JSON
def _number_to_json(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf", "-inf", "nan": JSON has no literal for them
    return value


def _bound_to_json(bound: np.ndarray) -> Any:
    """One number when every element is the same (images: 0 and 255), else the flat list."""
    flat = np.asarray(bound).ravel()
    if flat.size and np.array_equal(flat, np.full_like(flat, flat[0]), equal_nan=True):
        return _number_to_json(flat[0])
    return [_number_to_json(v) for v in flat]


def _space_to_json(space: gym.Space) -> dict[str, Any]:
    """Describe a ``Box`` or a ``Dict`` of them as plain JSON (keys kept in order, bounds exact)."""
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": [int(n) for n in space.shape],
            "dtype": str(space.dtype),
            "low": _bound_to_json(space.low),
            "high": _bound_to_json(space.high),
        }
    if isinstance(space, gym.spaces.Dict):
        # A list of pairs, not an object: the feature order of the policy follows the keys'.
        return {"type": "Dict", "spaces": [[str(k), _space_to_json(s)] for k, s in space.spaces.items()]}
    raise ValueError(f"save_rl stores Box and Dict spaces only, got {space!r}")


def _bound_from_json(value: Any, shape: tuple[int, ...], dtype: np.dtype, what: str) -> np.ndarray:
    def number(v: Any) -> float | int:
        if isinstance(v, str):
            if v not in ("inf", "-inf", "nan"):
                raise CheckpointError(f"{what}: bound {v!r} is not a number")
            return float(v)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise CheckpointError(f"{what}: bound {v!r} is not a number")
        return v

    size = math.prod(shape)
    if isinstance(value, list):
        if len(value) != size:
            raise CheckpointError(f"{what}: {len(value)} bounds for shape {list(shape)}")
        return np.asarray([number(v) for v in value], dtype=dtype).reshape(shape)
    return np.full(shape, number(value), dtype=dtype)


def _space_from_json(data: Any, what: str = "space") -> gym.Space:
    """Inverse of :func:`_space_to_json`; anything else is a :class:`CheckpointError`."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{what}: expected a space description, got {type(data).__name__}")
    if data.get("type") == "Dict":
        items = data.get("spaces")
        if not isinstance(items, list) or not all(
            isinstance(i, list) and len(i) == 2 and isinstance(i[0], str) for i in items
        ):
            raise CheckpointError(f"{what}: a Dict space needs a list of [name, space] pairs")
        return gym.spaces.Dict([(k, _space_from_json(s, f"{what}[{k!r}]")) for k, s in items])
    if data.get("type") != "Box":
        raise CheckpointError(f"{what}: space type {data.get('type')!r}, expected 'Box' or 'Dict'")
    shape = data.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape
    ):
        raise CheckpointError(f"{what}: shape {shape!r} is not a list of positive integers")
    if math.prod(shape) > _MAX_SPACE_ELEMENTS:
        raise CheckpointError(f"{what}: shape {shape} has more than {_MAX_SPACE_ELEMENTS} elements")
    try:
        dtype = np.dtype(str(data.get("dtype")))
    except TypeError as err:
        raise CheckpointError(f"{what}: dtype {data.get('dtype')!r} is not a numpy dtype") from err
    if dtype.kind not in _DTYPE_KINDS:
        raise CheckpointError(f"{what}: dtype {dtype} is not numeric")
    shape_t = tuple(shape)
    low = _bound_from_json(data.get("low"), shape_t, dtype, what)
    high = _bound_from_json(data.get("high"), shape_t, dtype, what)
    return gym.spaces.Box(low=low, high=high, shape=shape_t, dtype=dtype)


# ---------------------------------------------------------------------- policy kwargs <-> JSON
def _allowed_class(key: str, name: Any) -> type:
    """Return the class named ``name`` in the modules allowed for ``key`` (never an import path)."""
    import importlib

    modules, base_module, base_name = _CLASS_KWARGS[key]
    if not isinstance(name, str) or not name.isidentifier():
        raise CheckpointError(f"policy kwarg {key}={name!r} is not a class name")
    base = getattr(importlib.import_module(base_module), base_name)
    for module_name in modules:
        cls = getattr(importlib.import_module(module_name), name, None)
        if isinstance(cls, type) and issubclass(cls, base):
            return cls
    raise CheckpointError(f"policy kwarg {key}={name!r} is not a {base_name} class of {' or '.join(modules)}")


def _policy_kwargs(policy: Any) -> dict[str, Any]:
    """Return the keyword arguments that rebuild ``policy`` (with its spaces), as plain JSON."""
    params = dict(policy._get_constructor_parameters())
    params["share_features_extractor"] = bool(policy.share_features_extractor)
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key in _NOT_KWARGS or value is None:
            continue
        if key in _CLASS_KWARGS:
            name = getattr(value, "__name__", None)
            if name is None or _allowed_class(key, name) is not value:
                modules = " or ".join(_CLASS_KWARGS[key][0])
                raise ValueError(
                    f"policy kwarg {key}={value!r}: save_rl stores classes of {modules} only, by name"
                )
            out[key] = name
            continue
        try:
            out[key] = json.loads(json.dumps(value))
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"policy kwarg {key}={value!r} is not plain JSON; save_rl cannot store it"
            ) from err
    return out


def _policy_class(algo: str) -> type:
    from stable_baselines3 import PPO, SAC

    return {"ppo": PPO, "sac": SAC}[algo].policy_aliases[POLICY_CLASS]


def _zero_schedule(_progress_remaining: float) -> float:
    """Learning-rate schedule of a rebuilt policy: it is not trained, the optimizer only exists."""
    return 0.0


def _build_policy(
    algo: str, metadata: Mapping[str, Any], what: str, state: Mapping[str, np.ndarray] | None = None
) -> Any:
    """Build a fresh ``MultiInputPolicy`` of ``algo`` from the checkpoint's JSON metadata.

    With ``state`` (the file's arrays), the recorded architecture is first checked against their
    shapes (:func:`_check_policy_arrays`), so nothing is built that the file does not hold.
    """
    observation_space = _space_from_json(metadata.get("observation_space"), f"{what}: observation_space")
    action_space = _space_from_json(metadata.get("action_space"), f"{what}: action_space")
    if not isinstance(observation_space, gym.spaces.Dict) or not isinstance(action_space, gym.spaces.Box):
        raise CheckpointError(f"{what}: expected a Dict observation space and a Box action space")
    raw = metadata.get("policy_kwargs")
    if not isinstance(raw, dict):
        raise CheckpointError(f"{what}: policy_kwargs missing")
    kwargs = {k: _allowed_class(k, v) if k in _CLASS_KWARGS else v for k, v in raw.items()}
    if state is not None:
        _check_policy_arrays(algo, raw, observation_space, action_space, state, what)
    try:
        return _policy_class(algo)(observation_space, action_space, _zero_schedule, **kwargs)
    except (TypeError, ValueError, KeyError, AssertionError) as err:
        raise CheckpointError(
            f"{what}: cannot rebuild the {algo} policy ({type(err).__name__}: {err})"
        ) from err


# ---------------------------------------------------------------------- policy shape checks
def _layer_sizes(value: Any, what: str, n_arrays: int) -> list[int]:
    """``value`` as a list of positive layer sizes, no longer than the file has arrays."""
    if not is_size_list(value):
        shown = repr(value)
        raise CheckpointError(
            f"{what} must be a list of positive layer sizes, got {shown[:80]}{'...' if len(shown) > 80 else ''}"
        )
    if len(value) > n_arrays:
        raise CheckpointError(f"{what} declares {len(value)} layers, the file holds {n_arrays} arrays")
    return value


def _net_arch(algo: str, raw: Any, what: str, n_arrays: int) -> tuple[list[int], list[int]]:
    """The actor's and the critic's hidden sizes, as SB3 reads ``net_arch`` (a list: both)."""
    if raw is None:
        raw = _DEFAULT_NET_ARCH[algo]
    critic_key = "vf" if algo == "ppo" else "qf"
    if isinstance(raw, dict):
        if set(raw) - {"pi", critic_key}:
            raise CheckpointError(
                f"{what}: net_arch keys must be among ['pi', {critic_key!r}], got {sorted(raw)}"
            )
        pi, critic = raw.get("pi", []), raw.get(critic_key, [])
    else:
        pi = critic = raw
    return (
        _layer_sizes(pi, f"{what}: net_arch pi", n_arrays),
        _layer_sizes(critic, f"{what}: net_arch {critic_key}", n_arrays),
    )


def _check_mlp(
    what: str, state: Mapping[str, np.ndarray], prefix: str, sizes: list[int], out_key: str, out_size: int
) -> int | None:
    """Check SB3's ``create_mlp`` layers (Linear at even indices) and the output layer against the file.

    Returns the first layer's input width as the file records it (None without hidden layers).
    """

    def shape_of(key: str) -> tuple[int, ...]:
        array = state.get(key)
        if array is None:
            raise CheckpointError(
                f"{what}: net_arch {sizes[:8]} needs array {key!r}, the file has none; the file is damaged "
                "or crafted; retrain it (`bwgym train agent --algo ppo|sac ...`)"
            )
        return tuple(array.shape)

    width: int | None = None
    first: int | None = None
    for i, size in enumerate(sizes):
        key = f"{prefix}{2 * i}.weight"
        shape = shape_of(key)
        if len(shape) != 2 or shape[0] != size or (width is not None and shape[1] != width):
            raise CheckpointError(
                f"{what}: net_arch {sizes[:8]} declares a layer of {size} units, the file's {key!r} has "
                f"shape {shape}; the file is damaged or crafted; retrain it"
            )
        first = shape[1] if first is None else first
        width = size
    shape = shape_of(out_key)
    if len(shape) != 2 or shape[0] != out_size or (width is not None and shape[1] != width):
        raise CheckpointError(
            f"{what}: output layer {out_key!r} should be ({out_size}, {width if width is not None else 'features'}), "
            f"the file has {shape}; the file is damaged or crafted; retrain it"
        )
    return first if first is not None else shape[1]


def _nature_cnn_flat(shape: tuple[int, ...]) -> int:
    """Flattened size of SB3's ``NatureCNN`` trunk (8/4, 4/2, 3/1 unpadded convolutions, 64 channels)."""
    h, w = shape[1], shape[2]
    for kernel, stride in ((8, 4), (4, 2), (3, 1)):
        h, w = (h - kernel) // stride + 1, (w - kernel) // stride + 1
    return 64 * max(h, 0) * max(w, 0)


def _features_dim(
    kwargs: Mapping[str, Any],
    observation_space: gym.spaces.Dict,
    state: Mapping[str, np.ndarray],
    what: str,
) -> int | None:
    """The features extractor's output width, checked against its arrays; None when unknown.

    Known extractors (``CombinedExtractor``, ``FlattenExtractor``, ``BCFeatures``) are checked
    array by array, so building them takes no more memory than the file's arrays.
    """
    from stable_baselines3.common.preprocessing import get_flattened_obs_dim, is_image_space

    from bwgym.agents.bc import MAX_BC_IMAGE_SIDE_PIXELS, _positive_ints, encoder_state_shapes

    name = kwargs.get("features_extractor_class", "CombinedExtractor")
    extra = kwargs.get("features_extractor_kwargs") or {}
    if not isinstance(extra, dict):
        raise CheckpointError(f"{what}: features_extractor_kwargs must be an object")
    if name == "FlattenExtractor":
        return int(gym.spaces.flatdim(observation_space))
    if name == "CombinedExtractor":
        cnn_dim = extra.get("cnn_output_dim", 256)
        (cnn_dim,) = _positive_ints([cnn_dim], "features_extractor_kwargs.cnn_output_dim", what)
        normalized = bool(kwargs.get("normalize_images", True)) is False or bool(
            extra.get("normalized_image", False)
        )
        total = 0
        for key, subspace in observation_space.spaces.items():
            if is_image_space(subspace, normalized_image=normalized):
                suffix = f"extractors.{key}.linear.0.weight"
                want = (cnn_dim, _nature_cnn_flat(tuple(subspace.shape)))
                found = [k for k in state if k.endswith(suffix)]
                bad = [k for k in found if tuple(state[k].shape) != want]
                if not found or bad:
                    raise CheckpointError(
                        f"{what}: the image extractor of {key!r} needs {suffix} of shape {want}, the file has "
                        f"{tuple(state[bad[0]].shape) if bad else 'none'}; the file is damaged or crafted"
                    )
                total += cnn_dim
            else:
                total += int(get_flattened_obs_dim(subspace))
        return total
    if name == "BCFeatures":
        views = extra.get("view_names", ["arm", "side"])
        if not isinstance(views, list) or not all(isinstance(v, str) for v in views) or not views:
            raise CheckpointError(f"{what}: features_extractor_kwargs.view_names must be a list of names")
        image = _positive_ints(extra.get("image_shape", [84, 84]), "BCFeatures image_shape", what)
        channels = _positive_ints(extra.get("channels", [32, 64, 64]), "BCFeatures channels", what)
        (features,) = _positive_ints([extra.get("features", 128)], "BCFeatures features", what)
        (stem,) = _positive_ints([extra.get("stem", 4)], "BCFeatures stem", what)
        (proprio,) = _positive_ints(
            [extra.get("proprio_dim", 0)], "BCFeatures proprio_dim", what, allow_zero=True
        )
        if len(image) != 2 or max(image) > MAX_BC_IMAGE_SIDE_PIXELS or not channels:
            raise CheckpointError(
                f"{what}: BCFeatures needs an (H, W) image_shape of at most "
                f"MAX_BC_IMAGE_SIDE_PIXELS={MAX_BC_IMAGE_SIDE_PIXELS} and >= 1 channel size, got {image}"
            )
        if len(views) * len(channels) > len(state):
            raise CheckpointError(f"{what}: BCFeatures declares more layers than the file holds arrays")
        expected = encoder_state_shapes(views, image, channels, features, stem, prefix="encoders.")
        prefixes = {k[: k.index("encoders.")] for k in state if "encoders." in k}
        if not prefixes:
            raise CheckpointError(f"{what}: BCFeatures declared but the file holds no encoder arrays")
        for prefix in prefixes:
            for key, shape in expected.items():
                got = state.get(prefix + key)
                if got is None or tuple(got.shape) != shape:
                    raise CheckpointError(
                        f"{what}: BCFeatures (channels {channels[:8]}, features {features}, image_shape "
                        f"{image}) needs {prefix + key} of shape {shape}, the file has "
                        f"{'none' if got is None else tuple(got.shape)}; the file is damaged or crafted"
                    )
        return len(views) * features + proprio
    return None  # another extractor: its first MLP layer is still checked against the file


def _check_policy_arrays(
    algo: str,
    kwargs: Mapping[str, Any],
    observation_space: gym.spaces.Dict,
    action_space: gym.spaces.Box,
    state: Mapping[str, np.ndarray],
    what: str,
) -> None:
    """Refuse recorded policy arguments that disagree with the arrays in the file, before building.

    SB3 allocates every layer ``net_arch`` names when the policy is constructed (a ``net_arch``
    of 200,000 units takes gigabytes), so each declared layer must match an array of the file,
    and the features extractor's width must match the first layer's input.
    """
    pi, critic = _net_arch(algo, kwargs.get("net_arch"), what, len(state))
    act_dim = int(np.prod(action_space.shape))
    if algo == "ppo":
        pi_in = _check_mlp(what, state, "mlp_extractor.policy_net.", pi, "action_net.weight", act_dim)
        critic_in = [_check_mlp(what, state, "mlp_extractor.value_net.", critic, "value_net.weight", 1)]
        critic_extra = 0
    else:
        n_critics = kwargs.get("n_critics", 2)
        if not isinstance(n_critics, int) or isinstance(n_critics, bool) or not 1 <= n_critics <= len(state):
            raise CheckpointError(
                f"{what}: n_critics must be an integer in [1, {len(state)}], got {n_critics!r}"
            )
        pi_in = _check_mlp(what, state, "actor.latent_pi.", pi, "actor.mu.weight", act_dim)
        critic_in = [
            _check_mlp(what, state, f"{net}.qf{j}.", critic, f"{net}.qf{j}.{2 * len(critic)}.weight", 1)
            for net in ("critic", "critic_target")
            for j in range(n_critics)
        ]
        critic_extra = act_dim  # SAC's critics read the features and the action
    features = _features_dim(kwargs, observation_space, state, what)
    if features is not None and (pi_in != features or any(c != features + critic_extra for c in critic_in)):
        raise CheckpointError(
            f"{what}: the features extractor gives {features} features, the file's first layers read "
            f"{pi_in} (actor) and {critic_in[0]} (critic); the file is damaged or crafted; retrain it"
        )


# ---------------------------------------------------------------------- save / load
def _json_default(value: Any) -> Any:
    if isinstance(value, type):  # e.g. a class in hyperparams["policy_kwargs"]: recorded by name
        return f"{value.__module__}.{value.__qualname__}"
    raise TypeError(f"{value!r} is not JSON")


def save_rl(
    model: Any,
    config: RLConfig,
    out_dir: str | os.PathLike[str],
    observation_spec: dict[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write the policy of ``model`` as ``<out_dir>/policy.ckpt`` (what :func:`load_rl` reads).

    Args:
        model: a trained SB3 ``PPO`` or ``SAC`` with a ``MultiInputPolicy``.
        config: the run's configuration (recorded).
        out_dir: the run folder.
        observation_spec: ``{key: {"shape": [...], "dtype": ...}}`` as the env gives observations
            (before SB3 transposes images), which :func:`load_rl` checks.
        extra: more metadata (plain JSON), e.g. what an allocation policy observes.

    Returns:
        The checkpoint's path.

    Raises:
        ValueError: an algorithm other than PPO/SAC, another policy class, or a policy argument
            that cannot be stored as JSON.

    """
    import stable_baselines3
    import torch

    algo = config.algo
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {ALGOS}, got {algo!r}")
    policy = model.policy
    expected = _policy_class(algo)
    if type(policy) is not expected:
        raise ValueError(
            f"save_rl stores {algo}'s {POLICY_CLASS} ({expected.__name__}), got {type(policy).__name__}"
        )
    metadata = {
        "algo": algo,
        "env_id": config.env_id,
        "env_kwargs": config.env_kwargs,
        "scenario": config.scenario,
        "views": observation_spec,
        "policy_class": POLICY_CLASS,
        "observation_space": _space_to_json(policy.observation_space),
        "action_space": _space_to_json(policy.action_space),
        "policy_kwargs": _policy_kwargs(policy),
        "num_timesteps": int(getattr(model, "num_timesteps", 0)),
        "config": json.loads(json.dumps(asdict(config), default=_json_default)),
        "versions": {
            "stable_baselines3": stable_baselines3.__version__,
            "torch": torch.__version__,
            "gymnasium": gym.__version__,
        },
        **dict(extra or {}),
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(out / POLICY_FILE, CHECKPOINT_KINDS[algo], policy.state_dict(), metadata)


class RLAgent:
    """A trained SB3 policy behind the agent interface (``reset``, ``act``), deterministic actions.

    Args:
        policy: the SB3 policy (``model.policy``, or one :func:`load_rl` rebuilt).
        meta: the checkpoint's metadata (``views`` names the observation keys the policy reads).

    """

    def __init__(self, policy: Any, meta: dict[str, Any]) -> None:
        self.policy = policy
        self.meta = meta

    def reset(self, seed: int | None = None) -> None:
        """Nothing to reset: the policies are feed-forward."""

    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Return the deterministic action for one observation."""
        action, _ = self.policy.predict({k: obs[k] for k in self.meta["views"]}, deterministic=True)
        return np.asarray(action, dtype=np.float32)


def _legacy_message(folder: Path) -> str:
    return (
        f"{folder} holds an RL agent in the earlier format (a pickled model.zip, no {POLICY_FILE}); "
        "bwgym no longer loads it because unpickling runs code from the file. If you trust the folder, "
        f'convert it once with `python -c "from bwgym.agents.rl import convert_legacy; '
        f"convert_legacy('{folder}')\"` (it unpickles model.zip and writes {POLICY_FILE}), or retrain "
        "with `bwgym train agent --algo ppo|sac --out FOLDER`"
    )


def _checkpoint_path(path: str | os.PathLike[str]) -> Path:
    """``policy.ckpt`` of a run folder (or the file itself); old layouts get the conversion hint."""
    path = Path(path)
    if path.is_file() and (path.suffix == ".zip" or path.name in _LEGACY_FILES):
        path = path.parent  # a file of the earlier layout names its folder
    if path.is_file():
        return path
    if not path.exists():
        raise CheckpointError(f"RL agent folder {path} does not exist (expected a folder with {POLICY_FILE})")
    ckpt = path / POLICY_FILE
    if ckpt.is_file():
        return ckpt
    if any((path / name).is_file() for name in _LEGACY_FILES):
        raise CheckpointError(_legacy_message(path))
    raise CheckpointError(
        f"{path} is not an RL agent folder: {POLICY_FILE} is missing "
        "(written by `bwgym train agent --algo ppo|sac --out FOLDER`)"
    )


@register_agent(
    "sb3",
    description="a stable-baselines3 policy (PPO/SAC) written by `bwgym train agent` (checkpoint)",
    uses=("checkpoint",),
)
def sb3_agent(context: BuildContext, options: None) -> RLAgent:
    """The scenario's SB3 policy, checked against its env id and observation space."""
    if not context.checkpoint:
        raise InputError("checkpoint", "required for agent 'sb3' (a folder written by `bwgym train agent`)")
    try:
        return load_rl(
            context.checkpoint, env_id=context.env_id, observation_space=context.env.observation_space
        )
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise InputError("checkpoint", str(exc).strip("'\"")) from None


def load_rl(
    path: str | os.PathLike[str],
    env_id: str | None = None,
    observation_space: gym.spaces.Dict | None = None,
    device: str = "auto",
) -> RLAgent:
    """Load the policy :func:`save_rl` wrote, without unpickling anything; check its spec when asked.

    The policy class is SB3's ``MultiInputPolicy`` of the recorded algorithm, built from the
    recorded spaces and keyword arguments (classes are looked up by name in ``torch.nn``,
    ``torch.optim`` and SB3's ``torch_layers`` only); the weights come from ``.npy`` arrays.

    Args:
        path: the run folder (or its ``policy.ckpt``).
        env_id: the env the caller runs (None: not checked).
        observation_space: the caller's observation space (None: not checked); each key the
            policy reads must have the recorded shape and dtype.
        device: where the policy runs (``"auto"``: CUDA when available).

    Returns:
        The agent, acting deterministically.

    Raises:
        CheckpointError: (a ``ValueError``) no ``policy.ckpt``, a folder of the earlier pickled
            layout (the message says how to convert it), a checkpoint of another kind, damaged
            metadata, or a spec that does not match (the message names both).

    """
    ckpt_path = _checkpoint_path(path)
    ckpt = load_checkpoint(ckpt_path, kind=tuple(CHECKPOINT_KINDS.values()))
    meta = ckpt.metadata
    algo = ckpt.kind.removeprefix("agent/sb3-")
    if meta.get("algo") != algo or not isinstance(meta.get("views"), dict):
        raise CheckpointError(
            f"{ckpt_path}: damaged RL checkpoint (algo {meta.get('algo')!r}, kind {ckpt.kind!r})"
        )
    saved_views = meta["views"]
    requested: dict[str, Any] = {"env_id": env_id, "views": None}
    if observation_space is not None:
        offered = _observation_spec(observation_space)
        requested["views"] = {k: offered.get(k) for k in saved_views}
    check_spec(
        f"RL agent {ckpt_path}",
        meta,
        requested,
        "train a policy for this env (`bwgym train agent --algo ppo|sac --env ... --out FOLDER`)",
    )
    policy = _build_policy(algo, meta, str(ckpt_path), ckpt.state)
    try:
        policy.load_state_dict(ckpt.tensors())
    except RuntimeError as err:
        raise CheckpointError(f"{ckpt_path}: weights do not match the recorded policy ({err})") from err
    policy = policy.to(resolve_device(device))
    policy.set_training_mode(False)
    return RLAgent(policy, meta)


def convert_legacy(folder: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Rewrite a run folder of the earlier layout (pickled ``model.zip`` + ``model.json``) as ``policy.ckpt``.

    **This unpickles** ``model.zip`` with SB3's own loader, which can run any code the file holds:
    call it only on folders you made or trust (it warns each time). The weights, spaces and
    policy arguments are then written in the project's format, which :func:`load_rl` reads
    without unpickling.

    Args:
        folder: the old run folder.
        overwrite: replace an existing ``policy.ckpt``.

    Returns:
        The path of the new ``policy.ckpt``.

    Raises:
        FileExistsError: ``policy.ckpt`` exists and ``overwrite`` is False.
        ValueError: ``model.zip`` or ``model.json`` is missing or names another algorithm.

    """
    from stable_baselines3 import PPO, SAC

    folder = Path(folder)
    if (folder / POLICY_FILE).exists() and not overwrite:
        raise FileExistsError(f"{folder / POLICY_FILE} exists; pass overwrite=True to replace it")
    for name in _LEGACY_FILES:
        if not (folder / name).is_file():
            raise ValueError(f"{folder} is not a folder of the earlier layout: {name} is missing")
    meta = json.loads((folder / "model.json").read_text())
    algo = meta.get("algo")
    if algo not in ALGOS:
        raise ValueError(f"{folder / 'model.json'}: algo {algo!r}, expected one of {ALGOS}")
    warnings.warn(
        f"convert_legacy unpickles {folder / 'model.zip'}, which runs any code the file holds; "
        "convert only folders you trust",
        UserWarning,
        stacklevel=2,
    )
    model = {"ppo": PPO, "sac": SAC}[algo].load(folder / "model.zip", device="cpu")
    fields = {f.name for f in dataclasses.fields(RLConfig)}
    config = RLConfig(**{k: v for k, v in dict(meta.get("config") or {}).items() if k in fields})
    config = dataclasses.replace(config, algo=algo, env_id=meta.get("env_id", config.env_id))
    return save_rl(model, config, folder, meta["observation_spec"])


# ---------------------------------------------------------------------- training state (resume)
#: Checkpoint kind of the training state :func:`save_training_state` writes and ``resume`` reads.
TRAIN_STATE_KINDS = {algo: f"agent/sb3-{algo}-train" for algo in ALGOS}
#: Checkpoint kind of an off-policy algorithm's replay buffer (a file of its own: it is large).
REPLAY_BUFFER_KIND = "agent/sb3-replay-buffer"
#: Folder of the run that holds the training states.
CHECKPOINT_DIR = "checkpoints"
_REPLAY_SUFFIX = "_steps.replay.ckpt"
#: RLConfig fields a resumed run must share with the run it continues: they decide the model that
#: is rebuilt (its architecture, its optimisers, its replay buffer). The rest (total_timesteps,
#: evaluation, checkpoints, device, seed: the RNG state is restored) may change on resume.
_RESUME_FIELDS = ("algo", "env_id", "env_kwargs", "hyperparams", "bc_init")
_REPLAY_FIELDS = ("actions", "rewards", "dones", "timeouts")


def _training_state_path(out: Path, algo: str, steps: int) -> Path:
    return out / CHECKPOINT_DIR / f"{algo}_{steps}_steps.ckpt"


def _optimizers(model: Any) -> dict[str, Any]:
    """The torch optimisers of an SB3 model, by a stable name."""
    if hasattr(model, "actor") and hasattr(model, "critic"):  # SAC
        found = {"actor": model.actor.optimizer, "critic": model.critic.optimizer}
        if getattr(model, "ent_coef_optimizer", None) is not None:
            found["ent_coef"] = model.ent_coef_optimizer
        return found
    return {"policy": model.policy.optimizer}


def _replay_arrays(buffer: Any) -> dict[str, np.ndarray]:
    """The SB3 replay buffer's arrays by name (observations per key for a dict buffer)."""
    arrays: dict[str, np.ndarray] = {}
    for name in ("observations", "next_observations"):
        value = getattr(buffer, name, None)
        if isinstance(value, dict):
            arrays.update({f"{name}/{k}": v for k, v in value.items()})
        elif value is not None:  # None: optimize_memory_usage keeps next observations in place
            arrays[name] = value
    arrays.update({name: getattr(buffer, name) for name in _REPLAY_FIELDS})
    return arrays


def _save_replay_buffer(model: Any, out: Path, algo: str, steps: int) -> Path | None:
    """Write the filled rows of the replay buffer next to the training state (None: too large)."""
    from bwgym.common.checkpoint import MAX_CHECKPOINT_BYTES, MAX_CHECKPOINT_ENTRY_BYTES

    buffer = model.replay_buffer
    rows = buffer.buffer_size if buffer.full else buffer.pos
    arrays = {k: v[:rows] for k, v in _replay_arrays(buffer).items()}
    total = sum(a.nbytes for a in arrays.values())
    if total > MAX_CHECKPOINT_BYTES or any(a.nbytes > MAX_CHECKPOINT_ENTRY_BYTES for a in arrays.values()):
        warnings.warn(
            f"the replay buffer ({total} bytes) exceeds MAX_CHECKPOINT_BYTES={MAX_CHECKPOINT_BYTES} or "
            f"MAX_CHECKPOINT_ENTRY_BYTES={MAX_CHECKPOINT_ENTRY_BYTES} and is not saved: a resumed run "
            "refills it from scratch (use a smaller buffer_size to keep it)",
            UserWarning,
            stacklevel=3,
        )
        return None
    meta = {
        "num_timesteps": steps,
        "pos": int(buffer.pos),
        "full": bool(buffer.full),
        "buffer_size": int(buffer.buffer_size),
        "n_envs": int(buffer.n_envs),
    }
    path = out / CHECKPOINT_DIR / f"{algo}_{steps}{_REPLAY_SUFFIX}"
    save_checkpoint(path, REPLAY_BUFFER_KIND, arrays, meta)
    for old in (out / CHECKPOINT_DIR).glob(f"{algo}_*{_REPLAY_SUFFIX}"):
        if old != path:  # one buffer is enough: it is the largest file of the run
            old.unlink(missing_ok=True)
    return path


def _load_replay_buffer(model: Any, path: Path, steps: int) -> None:
    """Fill the model's (fresh) replay buffer from :func:`_save_replay_buffer`'s file."""
    ckpt = load_checkpoint(path, kind=REPLAY_BUFFER_KIND)
    meta, buffer = ckpt.metadata, model.replay_buffer
    pos, full = meta.get("pos"), meta.get("full")
    if (
        meta.get("num_timesteps") != steps
        or not isinstance(full, bool)
        or not isinstance(pos, int)
        or isinstance(pos, bool)
        or not 0 <= pos < buffer.buffer_size
        or (full and meta.get("buffer_size") != buffer.buffer_size)
    ):
        raise CheckpointError(
            f"{path}: replay buffer of step {meta.get('num_timesteps')!r} (pos {pos!r}, full {full!r}, "
            f"size {meta.get('buffer_size')!r}) does not fit this run's buffer of {buffer.buffer_size} at "
            f"step {steps}"
        )
    rows = buffer.buffer_size if full else pos
    targets = _replay_arrays(buffer)
    if set(ckpt.state) != set(targets):
        raise CheckpointError(
            f"{path}: replay buffer holds {sorted(ckpt.state)}, this run's buffer has {sorted(targets)}"
        )
    for name, target in targets.items():
        saved = ckpt.state[name]
        if saved.shape != (rows, *target.shape[1:]) or saved.dtype != target.dtype:
            raise CheckpointError(
                f"{path}: replay buffer entry {name!r} is {saved.dtype} {saved.shape}, this run's needs "
                f"{target.dtype} {(rows, *target.shape[1:])}"
            )
    for name, target in targets.items():
        target[:rows] = ckpt.state[name]
    buffer.pos, buffer.full = pos, full


def save_training_state(model: Any, config: RLConfig, out_dir: str | os.PathLike[str]) -> Path:
    """Write what resuming ``model`` needs as ``<out_dir>/checkpoints/<algo>_<n>_steps.ckpt``.

    Everything is in the project's checkpoint format (:mod:`bwgym.common.checkpoint`: JSON and
    ``.npy``, nothing pickled): the policy's ``state_dict``, each optimiser's state tensors (its
    settings as JSON numbers), SAC's entropy coefficient, the step and update counts, the current
    learning rate and clip range as numbers, the torch/numpy/Python RNG states and the
    :class:`RLConfig`. An off-policy model's replay buffer goes into
    ``<algo>_<n>_steps.replay.ckpt`` (only the newest is kept; one over the checkpoint size caps
    is skipped with a warning).

    Args:
        model: the SB3 ``PPO`` or ``SAC`` being trained.
        config: its run's configuration (``resume`` checks the next run against it).
        out_dir: the run folder.

    Returns:
        The training state's path.
    """
    algo = config.algo
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {ALGOS}, got {algo!r}")
    out = Path(out_dir)
    (out / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
    steps = int(model.num_timesteps)
    state: dict[str, Any] = {f"policy/{k}": v for k, v in model.policy.state_dict().items()}
    groups = {}
    for name, optimizer in _optimizers(model).items():
        arrays, groups[name] = optimizer_arrays(name, optimizer)
        state.update(arrays)
    if getattr(model, "log_ent_coef", None) is not None:
        state["sac/log_ent_coef"] = model.log_ent_coef
    rng_arrays, rng_meta = rng_state()
    state.update(rng_arrays)
    progress = float(getattr(model, "_current_progress_remaining", 1.0))
    schedules = {"learning_rate": float(model.lr_schedule(progress))}
    if callable(getattr(model, "clip_range", None)):
        schedules["clip_range"] = float(model.clip_range(progress))
    metadata = {
        "algo": algo,
        "env_id": config.env_id,
        "num_timesteps": steps,
        "n_updates": int(getattr(model, "_n_updates", 0)),
        "episode_num": int(getattr(model, "_episode_num", 0)),
        "progress_remaining": progress,
        "schedules": schedules,
        "optimizers": groups,
        "rng": rng_meta,
        "config": json.loads(json.dumps(asdict(config), default=_json_default)),
    }
    path = save_checkpoint(_training_state_path(out, algo, steps), TRAIN_STATE_KINDS[algo], state, metadata)
    if getattr(model, "replay_buffer", None) is not None:
        _save_replay_buffer(model, out, algo, steps)
    return path


def _comparable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_json_default, sort_keys=True))


def _check_resumable(meta: Mapping[str, Any], config: RLConfig, what: str) -> None:
    """Refuse a training state whose run differs from ``config`` where the rebuilt model depends on it."""
    saved = meta.get("config")
    if not isinstance(saved, dict) or meta.get("algo") != config.algo:
        raise CheckpointError(f"{what}: damaged training state (algo {meta.get('algo')!r}, no config)")
    now = _comparable(asdict(config))
    fields = _RESUME_FIELDS + (("n_envs",) if config.algo == "sac" else ())  # the buffer is per env
    differ = [f for f in fields if _comparable(saved.get(f)) != now[f]]
    if differ:
        was = ", ".join(f"{f}={saved.get(f)!r}" for f in differ)
        asked = ", ".join(f"{f}={now[f]!r}" for f in differ)
        raise CheckpointError(
            f"resume: {what} was trained with {was}, this run asks for {asked}; resume with the run's "
            "own settings, or start a new run in another folder"
        )


def _latest_training_state(out: Path, algo: str) -> tuple[Path, int] | None:
    """The newest ``checkpoints/<algo>_<n>_steps.ckpt`` in ``out`` and its step count."""
    found = []
    for path in (out / CHECKPOINT_DIR).glob(f"{algo}_*_steps.ckpt"):
        middle = path.name[len(algo) + 1 : -len("_steps.ckpt")]
        if middle.isdigit():
            found.append((int(middle), path))
    if not found:
        return None
    steps, path = max(found)
    return path, steps


def _resume_from(model: Any, config: RLConfig, out: Path) -> int:
    """Load the newest training state of ``out`` into the freshly built ``model``; its step count.

    Only the project's own files are read (JSON and ``.npy``); SB3 zips in the folder are never
    opened, so a run folder from someone else runs none of its code on resume.
    """
    import torch

    latest = _latest_training_state(out, config.algo)
    if latest is None:
        zips = sorted(p.name for p in (out / CHECKPOINT_DIR).glob(f"{config.algo}_*_steps.zip"))
        if zips:
            raise CheckpointError(
                f"resume: {out / CHECKPOINT_DIR} holds only SB3 zips ({zips[0]}, ...), which are pickles "
                f"bwgym never loads (they can run code); bwgym resumes from its own "
                f"{config.algo}_<n>_steps.ckpt files, so start a new run"
            )
        raise CheckpointError(
            f"resume: no {config.algo}_<n>_steps.ckpt in {out / CHECKPOINT_DIR} to continue from; "
            "start without --resume"
        )
    path, steps = latest
    what = str(path)
    ckpt = load_checkpoint(path, kind=TRAIN_STATE_KINDS[config.algo])
    meta = ckpt.metadata
    _check_resumable(meta, config, what)
    if meta.get("num_timesteps") != steps:
        raise CheckpointError(f"{what}: records step {meta.get('num_timesteps')!r}, its name says {steps}")
    load_state_dict_checked(model.policy, ckpt.tensors("policy/"), what, "the policy")
    optimizers = _optimizers(model)
    saved_groups = meta.get("optimizers")
    if not isinstance(saved_groups, dict) or set(saved_groups) != set(optimizers):
        raise CheckpointError(
            f"{what}: optimisers {sorted(saved_groups or {})}, the model has {sorted(optimizers)}"
        )
    for name, optimizer in optimizers.items():
        load_optimizer(optimizer, ckpt, name, saved_groups[name], what)
    if getattr(model, "log_ent_coef", None) is not None:
        value = ckpt.state.get("sac/log_ent_coef")
        if value is None or value.shape != tuple(model.log_ent_coef.shape) or not np.all(np.isfinite(value)):
            raise CheckpointError(f"{what}: SAC's entropy coefficient is missing or damaged")
        with torch.no_grad():
            model.log_ent_coef.copy_(torch.from_numpy(np.array(value, copy=True)))
    set_rng_state(ckpt.state, meta.get("rng"), what)
    for attr, key in (("_n_updates", "n_updates"), ("_episode_num", "episode_num")):
        value = meta.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise CheckpointError(f"{what}: {key} {value!r} is not a count")
        setattr(model, attr, value)
    model.num_timesteps = steps
    if getattr(model, "replay_buffer", None) is not None:
        replay = out / CHECKPOINT_DIR / f"{config.algo}_{steps}{_REPLAY_SUFFIX}"
        if replay.is_file():
            _load_replay_buffer(model, replay, steps)
        else:
            warnings.warn(
                f"resume: {replay.name} is missing; the replay buffer starts empty", UserWarning, stacklevel=3
            )
    return steps


def _training_state_callback(config: RLConfig, out: Path, every_calls: int) -> Any:
    """An SB3 callback that writes :func:`save_training_state` every ``every_calls`` calls."""
    from stable_baselines3.common.callbacks import BaseCallback

    class TrainingStateCallback(BaseCallback):
        """Save the training state in the project's format (what ``resume`` reads)."""

        def _on_step(self) -> bool:
            if self.n_calls % every_calls == 0:
                save_training_state(self.model, config, out)
            return True

    return TrainingStateCallback()
