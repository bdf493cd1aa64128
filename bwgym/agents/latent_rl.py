"""PPO from a latent agent's prior: reinforcement learning that starts where imitation stopped.

The DAgger-trained latent agent (:mod:`bwgym.agents.latent_bc`) imitates an expert that sees the
true state; what it cannot learn by imitation is how to act on the code it actually receives
(wait for the next refresh, approach more slowly when the arm code is stale). :func:`train_latent_ppo`
fine-tunes it on the task's own reward with PPO (Schulman et al. 2017), written out in one place
in the manner of CleanRL because the stabilisers it needs are not stable-baselines3 options:

* **the actor is the prior's network**: the policy is ``N(mu(x), sigma)`` with ``mu`` the latent
  agent's MLP (its input standardisation and tanh output) and ``sigma`` one learned deviation per
  action component, starting at ``initial_noise_std``; its deterministic action is the prior's
  action at step 0, and the trained actor is saved as a plain latent agent (kind
  ``agent/latent_bc``) that any scenario with ``agent: {name: latent_bc}`` runs;
* **a KL term toward the prior that anneals**: ``prior_coef * |mu(x) - mu_prior(x)|^2 / (2
  sigma_0^2)`` (the KL divergence between the two Gaussians at the initial deviation), its
  coefficient falling linearly to 0 over ``prior_anneal_steps``;
* **critic warm-up**: for ``critic_warmup_steps`` only the critic learns, so the first policy
  gradients use advantages from a critic that has seen the prior's returns; the critic is its own
  MLP and also reads the step index (the 50-step limit makes the value depend on time left, which
  the actor need not know), so the episode's end at the time limit is a true terminal;
* small steps: a separate, smaller learning rate for the actor, clipping and a KL early stop.

Episodes run on training seeds from :data:`TRAIN_SEED_BASE`; every ``eval_every_steps`` the
deterministic actor plays ``eval_episodes`` fixed episodes from :data:`EVAL_SEED_BASE` (the prior's
success on them is the curve's reference line). The learning curve goes to TensorBoard and to
``curve.csv``; every ``checkpoint_every_steps`` the whole training state (networks, optimisers,
RNGs, counters, curve) is written atomically to ``state.ckpt``, from which ``resume=True``
continues after a kill: the resumed run starts fresh episodes from the next unused seed, and its
curve continues the first run's rows.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bwgym.agents.base import rollout
from bwgym.agents.bc_training import tensorboard_writer
from bwgym.agents.latent_bc import LatentBCAgent, LatentFeatures
from bwgym.common.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from bwgym.common.files import atomic_write_text
from bwgym.common.training_state import (
    load_optimizer,
    load_state_dict_checked,
    optimizer_arrays,
    rng_state,
    set_rng_state,
)

__all__ = [
    "CURVE_FILE",
    "EVAL_SEED_BASE",
    "STATE_FILE",
    "TRAIN_SEED_BASE",
    "LatentPPO",
    "train_latent_ppo",
]

#: Kind of the training state checkpoint (:mod:`bwgym.common.checkpoint`).
STATE_KIND = "train_state/latent_ppo"
#: Files of the run folder: the training state, the learning curve.
STATE_FILE, CURVE_FILE = "state.ckpt", "curve.csv"
#: Training episodes' seeds start here, the periodic evaluations' at :data:`EVAL_SEED_BASE`: far from
#: the scenarios' (0 onwards), held-out evaluations' (10 000 onwards) and the latent agent's
#: demonstration and DAgger seeds (3 000 000 onwards).
TRAIN_SEED_BASE = 3_200_000
EVAL_SEED_BASE = 3_900_000
_CURVE_COLUMNS = (
    "env_steps",
    "episodes",
    "train_success",
    "train_return",
    "eval_success",
    "prior_eval_success",
    "prior_coef",
    "noise_std",
    "approx_kl",
    "value_loss",
    "seconds",
)
#: Fields of :class:`LatentPPO` a resumed run may change (the rest rebuild the same run).
_RESUMABLE_CHANGES = ("total_steps", "eval_every_steps", "checkpoint_every_steps", "workers")


@dataclass(frozen=True)
class LatentPPO:
    """Hyper-parameters of :func:`train_latent_ppo` (recorded with the trained agent).

    Attributes:
        total_steps: env steps of training, over all envs.
        n_envs: envs of the rollout (one batched network call per step).
        workers: processes that step them (1: this one; else ``n_envs / workers`` envs in each of
            ``workers`` spawned processes). The numbers do not depend on it.
        rollout_steps: steps per env between updates.
        epochs: passes over each rollout.
        minibatch_size: steps per gradient step.
        actor_lr, critic_lr: Adam learning rates.
        gamma, gae_lambda: discount and GAE parameter.
        clip_range: PPO's ratio clip.
        target_kl: stop an update's epochs once the approximate KL to the rollout policy passes 1.5x this.
        max_grad_norm: gradient clip.
        initial_noise_std: the Gaussian's deviation at the start (actions are in [-1, 1]).
        learn_noise: whether the deviation is learned (else fixed).
        prior_coef: weight of the KL term toward the prior at the start.
        prior_anneal_steps: env steps over which that weight falls linearly to 0.
        critic_warmup_steps: env steps during which only the critic learns.
        critic_hidden: the critic's hidden layer sizes.
        eval_every_steps: env steps between evaluations (and curve rows).
        eval_episodes: episodes of each evaluation (fixed seeds from :data:`EVAL_SEED_BASE`).
        checkpoint_every_steps: env steps between training states on disk.
        seed: seed of the noise, the critic's initialisation and the minibatch order.
    """

    total_steps: int = 200_000
    n_envs: int = 8
    workers: int = 1
    rollout_steps: int = 128
    epochs: int = 4
    minibatch_size: int = 256
    actor_lr: float = 3e-5
    critic_lr: float = 3e-4
    gamma: float = 0.98
    gae_lambda: float = 0.95
    clip_range: float = 0.1
    target_kl: float = 0.02
    max_grad_norm: float = 0.5
    initial_noise_std: float = 0.1
    learn_noise: bool = True
    prior_coef: float = 1.0
    prior_anneal_steps: int = 100_000
    critic_warmup_steps: int = 10_240
    critic_hidden: Sequence[int] = field(default=(256, 256))
    eval_every_steps: int = 20_480
    eval_episodes: int = 40
    checkpoint_every_steps: int = 20_480
    seed: int = 0

    def __post_init__(self) -> None:
        positive = ("total_steps", "n_envs", "rollout_steps", "epochs", "minibatch_size", "eval_every_steps")
        bad = [f"{k}={getattr(self, k)}" for k in positive if getattr(self, k) < 1]
        if not 0.0 < self.initial_noise_std <= 1.0:
            bad.append(f"initial_noise_std={self.initial_noise_std} (expected in (0, 1])")
        if not (0.0 < self.gamma <= 1.0 and 0.0 <= self.gae_lambda <= 1.0):
            bad.append(f"gamma={self.gamma}, gae_lambda={self.gae_lambda} (expected in (0, 1] and [0, 1])")
        if min(self.actor_lr, self.critic_lr, self.clip_range) <= 0.0 or self.prior_coef < 0:
            bad.append("learning rates and clip_range must be > 0, prior_coef >= 0")
        if self.workers < 1 or self.n_envs % self.workers:
            bad.append(f"workers={self.workers} (expected >= 1 and dividing n_envs={self.n_envs})")
        if bad:
            raise ValueError(f"LatentPPO: {', '.join(bad)}")

    @property
    def steps_per_update(self) -> int:
        """Env steps in one rollout."""
        return self.n_envs * self.rollout_steps

    def prior_weight(self, env_steps: int) -> float:
        """The KL term's coefficient after ``env_steps``."""
        if self.prior_anneal_steps <= 0:
            return 0.0
        return self.prior_coef * max(0.0, 1.0 - env_steps / self.prior_anneal_steps)


class _Critic(nn.Module):
    """V(features, step index): an MLP on the standardised features and the episode's elapsed fraction."""

    def __init__(self, actor: LatentBCAgent, hidden: Sequence[int]) -> None:
        super().__init__()
        self.register_buffer("feature_mean", actor.feature_mean.detach().clone())
        self.register_buffer("feature_std", actor.feature_std.detach().clone())
        layers: list[nn.Module] = []
        width = actor.features.size + 1
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.Tanh()]
            width = int(h)
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, features: Tensor, elapsed: Tensor) -> Tensor:
        x = (features - self.feature_mean) / self.feature_std
        return self.mlp(torch.cat([x, elapsed[:, None]], dim=-1))[:, 0]


class _Slot:
    """One env of the rollout: its features (history), step index and the episode's running return."""

    def __init__(self, env: Any, feature_args: tuple[Any, ...]) -> None:
        self.env = env
        self.features = LatentFeatures(*feature_args)
        self.t, self.ret, self.row = 0, 0.0, np.zeros(self.features.size, np.float32)

    def reset(self, seed: int) -> None:
        obs, _ = self.env.reset(seed=seed)
        self.features.reset()
        self.t, self.ret, self.row = 0, 0.0, self.features.row(obs)

    def step(self, action: np.ndarray) -> tuple[float, bool, bool, float, np.ndarray, int]:
        """Take ``action``; return the reward, episode end, success, return so far, next row and step index."""
        self.features.push_action(action)
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.t += 1
        self.ret += float(reward)
        self.row = self.features.row(obs)
        done = bool(terminated or truncated)
        return float(reward), done, bool(info.get("is_success", False)), self.ret, self.row, self.t


def _feature_args(agent: LatentBCAgent) -> tuple[Any, ...]:
    return agent.code_spec, agent.action_dim, agent.arch["history_steps"], agent.arch["age_cap_steps"]


class _SlotGroup:
    """Some envs of the rollout and the two requests they answer, in whichever process holds them."""

    def __init__(self, env_factory: Callable[[], Any], feature_args: tuple[Any, ...], size: int) -> None:
        self.slots = [_Slot(env_factory(), feature_args) for _ in range(size)]

    def handle(self, command: str, data: Any) -> list[Any]:
        """``step``: one action per env -> each env's step results; ``reset``: (index, seed) pairs -> (row, 0)."""
        if command == "step":
            return [slot.step(action) for slot, action in zip(self.slots, data, strict=True)]
        for i, seed in data:
            self.slots[i].reset(seed)
        return [(self.slots[i].row, 0) for i, _ in data]

    def close(self) -> None:
        for slot in self.slots:
            slot.env.close()

    # the same calls as a worker's pipe: the reply is ready at once
    def start(self, command: str, data: Any) -> None:
        self._reply = self.handle(command, data)

    def finish(self) -> list[Any]:
        return self._reply


class _WorkerGroup:
    """A :class:`_SlotGroup` in a spawned process: requests go out on ``start``, replies come back on ``finish``."""

    def __init__(self, env_factory: Callable[[], Any], feature_args: tuple[Any, ...], size: int) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # a fork after EGL or torch threads can hang
        self.pipe, theirs = context.Pipe()
        self.process = context.Process(
            target=_worker, args=(theirs, env_factory, feature_args, size), daemon=True
        )
        self.process.start()
        theirs.close()

    def start(self, command: str, data: Any) -> None:
        self.pipe.send((command, data))

    def finish(self) -> list[Any]:
        return self.pipe.recv()

    def close(self) -> None:
        self.pipe.send(("close", None))
        self.process.join(timeout=30)


def _worker(conn: Any, env_factory: Callable[[], Any], feature_args: tuple[Any, ...], size: int) -> None:
    """A worker process's loop: answers the trainer's requests for its group of envs."""
    torch.set_num_threads(1)
    group = _SlotGroup(env_factory, feature_args, size)
    try:
        while (request := conn.recv())[0] != "close":
            conn.send(group.handle(*request))
    finally:
        group.close()


class _Envs:
    """The rollout's ``n_envs`` envs: in this process, or split evenly over ``workers`` spawned processes.

    Both step the envs with the same actions and reset them with the same seeds, so a run's numbers
    do not depend on ``workers``.

    Args:
        limit: the envs' episode length limit (the critic reads the elapsed fraction of it).
    """

    def __init__(
        self,
        env_factory: Callable[[], Any],
        feature_args: tuple[Any, ...],
        n_envs: int,
        workers: int,
        limit: int,
    ) -> None:
        self.n, self.per, self.limit = n_envs, n_envs // workers, limit
        self.rows = np.zeros((n_envs, LatentFeatures(*feature_args).size), np.float32)
        self.steps = np.zeros(n_envs, np.int64)
        self.returns = np.zeros(n_envs, np.float64)
        group = _SlotGroup if workers == 1 else _WorkerGroup
        self.groups = [group(env_factory, feature_args, self.per) for _ in range(workers)]

    def elapsed(self) -> np.ndarray:
        """Each env's step index over the episode limit."""
        return (self.steps / self.limit).astype(np.float32)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step every env; return rewards, episode ends and successes (rows, steps and returns updated)."""
        for w, group in enumerate(self.groups):
            group.start("step", actions[w * self.per : (w + 1) * self.per])
        results = [r for group in self.groups for r in group.finish()]
        rewards, dones, successes, self.returns[:], rows, self.steps[:] = (
            np.array(x) for x in zip(*results, strict=True)
        )
        self.rows[:] = rows
        return rewards, dones, successes

    def reset(self, seeds: dict[int, int]) -> None:
        """Reset env ``i`` with seed ``seeds[i]``."""
        asked = [
            [(i % self.per, seed) for i, seed in seeds.items() if i // self.per == w]
            for w in range(len(self.groups))
        ]
        for group, mine in zip(self.groups, asked, strict=True):
            if mine:
                group.start("reset", mine)
        for w, (group, mine) in enumerate(zip(self.groups, asked, strict=True)):
            for (i, _), (row, t) in zip(mine, group.finish() if mine else [], strict=True):
                self.rows[w * self.per + i], self.steps[w * self.per + i] = row, t

    def close(self) -> None:
        for group in self.groups:
            group.close()


class _Trainer:
    """The networks, optimisers and counters of one run (what ``state.ckpt`` holds)."""

    def __init__(self, prior: LatentBCAgent, config: LatentPPO) -> None:
        torch.manual_seed(config.seed)
        self.config = config
        # The exploration noise's own generator: building envs (their codecs' modules) draws from
        # the global one, which would tie the numbers to where and in which order envs are built.
        self.sampler = torch.Generator().manual_seed(config.seed)
        self.prior = copy.deepcopy(prior).eval().requires_grad_(False)
        self.actor = copy.deepcopy(prior).train()
        self.critic = _Critic(prior, config.critic_hidden)
        self.log_std = nn.Parameter(torch.full((prior.action_dim,), math.log(config.initial_noise_std)))
        self.log_std.requires_grad_(config.learn_noise)
        actor_params = [*self.actor.mlp.parameters(), *([self.log_std] if config.learn_noise else [])]
        self.optimizers = {
            "actor": torch.optim.Adam(actor_params, lr=config.actor_lr, eps=1e-5),
            "critic": torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr, eps=1e-5),
        }
        self.env_steps = 0
        self.next_seed = TRAIN_SEED_BASE
        self.episodes = 0
        self.curve: list[dict[str, float]] = []
        self.seconds = 0.0

    # ------------------------------------------------------------------ policy
    def mean(self, rows: Tensor) -> Tensor:
        return self.actor({"features": rows})

    def distribution(self, rows: Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self.mean(rows), self.log_std.exp())

    def trained_agent(self) -> LatentBCAgent:
        """The actor as a plain latent agent (in eval mode), its RL settings and curve recorded."""
        agent = copy.deepcopy(self.actor).eval()
        rl = dict(algo="ppo (bwgym.agents.latent_rl)", **_config_json(self.config), env_steps=self.env_steps)
        agent.train_config = dict(self.prior.train_config, rl=rl)
        agent.extra_meta = dict(curve=self.curve, train_seconds=round(self.seconds, 1))
        return agent

    # ------------------------------------------------------------------ persistence
    def save(self, out: Path) -> Path:
        state: dict[str, Any] = {f"actor/{k}": v for k, v in self.actor.state_dict().items()}
        state.update({f"critic/{k}": v for k, v in self.critic.state_dict().items()})
        state["log_std"] = self.log_std.detach()
        groups = {}
        for name, optimizer in self.optimizers.items():
            arrays, groups[name] = optimizer_arrays(name, optimizer)
            state.update(arrays)
        rng_arrays, rng_meta = rng_state()
        state.update(rng_arrays)
        state["rng/sampler"] = self.sampler.get_state()
        meta = dict(
            config=_config_json(self.config),
            prior=self.prior.metadata(),
            env_steps=self.env_steps,
            next_seed=self.next_seed,
            episodes=self.episodes,
            seconds=self.seconds,
            curve=self.curve,
            optimizers=groups,
            rng=rng_meta,
        )
        return save_checkpoint(out / STATE_FILE, STATE_KIND, state, meta)

    def load(self, out: Path) -> None:
        path = out / STATE_FILE
        what = f"training state {path}"
        ckpt = load_checkpoint(path, kind=STATE_KIND)
        meta = ckpt.metadata
        saved, now = dict(meta.get("config") or {}), _config_json(self.config)
        differ = [k for k in now if k not in _RESUMABLE_CHANGES and saved.get(k) != now[k]]
        if differ or meta.get("prior") != self.prior.metadata():
            detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in differ) or "its prior agent"
            raise CheckpointError(
                f"resume: {what} was trained with other settings ({detail}); resume with the run's own "
                "settings and prior, or start a new run in another folder"
            )
        load_state_dict_checked(self.actor, ckpt.tensors("actor/"), what, "the actor")
        load_state_dict_checked(self.critic, ckpt.tensors("critic/"), what, "the critic")
        log_std = ckpt.state.get("log_std")
        if log_std is None or tuple(log_std.shape) != tuple(self.log_std.shape):
            raise CheckpointError(f"{what}: no log_std of shape {tuple(self.log_std.shape)}; start a new run")
        with torch.no_grad():
            self.log_std.copy_(torch.from_numpy(np.array(log_std, np.float32)))
        for name, optimizer in self.optimizers.items():
            load_optimizer(optimizer, ckpt, name, (meta.get("optimizers") or {}).get(name), what)
        set_rng_state(ckpt.state, meta.get("rng"), what)
        sampler = ckpt.state.get("rng/sampler")
        if (
            sampler is None
            or sampler.dtype != np.uint8
            or sampler.shape != tuple(self.sampler.get_state().shape)
        ):
            raise CheckpointError(f"{what}: damaged RNG state of the exploration noise; start a new run")
        self.sampler.set_state(torch.from_numpy(np.array(sampler, copy=True)))
        self.env_steps, self.next_seed = int(meta["env_steps"]), int(meta["next_seed"])
        self.episodes, self.seconds = int(meta["episodes"]), float(meta["seconds"])
        self.curve = [dict(row) for row in meta.get("curve") or []]


def _config_json(config: LatentPPO) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}


def _evaluate(agent: LatentBCAgent, env: Any, episodes: int) -> float:
    """Success rate of ``agent``'s deterministic actions on the fixed evaluation seeds."""
    agent.eval()
    wins = sum(rollout(env, agent, EVAL_SEED_BASE + i).success for i in range(episodes))
    return wins / max(episodes, 1)


def _write_curve(out: Path, rows: list[dict[str, float]]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=_CURVE_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / CURVE_FILE, text.getvalue())


def _advantages(
    rewards: np.ndarray,
    dones: np.ndarray,
    values: np.ndarray,
    last_values: np.ndarray,
    gamma: float,
    lam: float,
) -> np.ndarray:
    """GAE over ``(T, n_envs)`` arrays; ``dones[t]``: the episode ended at step t (no bootstrap)."""
    advantages = np.zeros_like(rewards)
    running = np.zeros(rewards.shape[1], np.float32)
    for t in reversed(range(rewards.shape[0])):
        next_values = last_values if t == rewards.shape[0] - 1 else values[t + 1]
        alive = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_values * alive - values[t]
        running = delta + gamma * lam * alive * running
        advantages[t] = running
    return advantages


def train_latent_ppo(
    env_factory: Callable[[], Any],
    prior: LatentBCAgent,
    out_dir: str | os.PathLike[str],
    config: LatentPPO | None = None,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> LatentBCAgent:
    """Fine-tune ``prior`` with PPO on ``env_factory``'s envs (latent observations); return the trained actor.

    Args:
        env_factory: builds one env whose observation is the latent code the prior was trained on.
        prior: the starting policy (a latent agent; it is not modified).
        out_dir: run folder: ``state.ckpt``, ``curve.csv``, ``tensorboard/``.
        config: hyper-parameters (default :class:`LatentPPO`).
        resume: continue from ``out_dir/state.ckpt`` (same settings and prior; ``total_steps`` may grow).
        progress: show a progress bar.
        log: where one line per evaluation goes.

    Raises:
        CheckpointError: ``resume`` with a state of other settings, another prior, or a damaged file.
        FileNotFoundError: ``resume`` with no state in ``out_dir``.
    """
    from tqdm import tqdm

    config = config or LatentPPO()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trainer = _Trainer(prior, config)
    if resume:
        if not (out / STATE_FILE).is_file():
            raise FileNotFoundError(f"resume: no {STATE_FILE} in {out}; start the run without --resume")
        trainer.load(out)
    writer = tensorboard_writer(out / "tensorboard", _config_json(config))
    eval_env = env_factory()
    envs = None
    try:
        limit = int(getattr(eval_env.spec, "max_episode_steps", None) or 50)
        envs = _Envs(env_factory, _feature_args(trainer.actor), config.n_envs, config.workers, limit)
        # a resumed run keeps its reference line instead of evaluating the prior again
        prior_eval = (
            trainer.curve[0]["prior_eval_success"]
            if trainer.curve
            else _evaluate(trainer.prior, eval_env, config.eval_episodes)
        )
        envs.reset({i: trainer.next_seed + i for i in range(config.n_envs)})
        trainer.next_seed += config.n_envs
        bar = tqdm(
            total=config.total_steps,
            initial=trainer.env_steps,
            desc="latent PPO",
            unit="step",
            disable=not progress,
        )
        window: list[tuple[bool, float]] = []
        last_eval = (trainer.env_steps // config.eval_every_steps) * config.eval_every_steps
        last_save = trainer.env_steps
        while trainer.env_steps < config.total_steps:
            start = time.perf_counter()
            stats = _update(trainer, _collect(trainer, envs, window))
            trainer.env_steps += config.steps_per_update
            trainer.seconds += time.perf_counter() - start
            bar.update(config.steps_per_update)
            done = trainer.env_steps >= config.total_steps
            if done or trainer.env_steps - last_eval >= config.eval_every_steps:
                last_eval = trainer.env_steps
                eval_success = _evaluate(trainer.actor, eval_env, config.eval_episodes)
                row = _curve_row(trainer, window, stats, eval_success, prior_eval)
                window.clear()
                _write_curve(out, trainer.curve)
                _log_row(writer, row, log)
            if done or trainer.env_steps - last_save >= config.checkpoint_every_steps:
                last_save = trainer.env_steps
                trainer.save(out)
        bar.close()
    finally:
        if envs is not None:
            envs.close()
        eval_env.close()
        if writer is not None:
            writer.close()
    return trainer.trained_agent()


def _curve_row(
    trainer: _Trainer,
    window: list[tuple[bool, float]],
    stats: dict[str, float],
    eval_success: float,
    prior_eval_success: float,
) -> dict[str, float | None]:
    """The learning curve's row for now (appended to ``trainer.curve``)."""
    nan = None  # no episode ended, no actor update yet: an empty cell, not a number
    row = dict(
        env_steps=trainer.env_steps,
        episodes=trainer.episodes,
        train_success=float(np.mean([s for s, _ in window])) if window else nan,
        train_return=float(np.mean([r for _, r in window])) if window else nan,
        eval_success=eval_success,
        prior_eval_success=prior_eval_success,
        prior_coef=trainer.config.prior_weight(trainer.env_steps),
        noise_std=float(trainer.log_std.detach().exp().mean()),
        approx_kl=stats.get("approx_kl", nan),
        value_loss=stats.get("value_loss", nan),
        seconds=round(trainer.seconds, 1),
    )
    trainer.curve.append(row)
    return row


def _log_row(writer: Any, row: dict[str, Any], log: Callable[[str], None]) -> None:
    if writer is not None:
        for key, value in row.items():
            if key != "env_steps" and value is not None:
                writer.add_scalar(f"latent_ppo/{key}", value, row["env_steps"])
        writer.flush()
    log(
        f"{row['env_steps']} steps: eval success {row['eval_success']:.2f} (prior "
        f"{row['prior_eval_success']:.2f}), training episodes {row['train_success'] or 0.0:.2f} of "
        f"{row['episodes']}"
    )


def _collect(trainer: _Trainer, envs: _Envs, window: list[tuple[bool, float]]) -> dict[str, Tensor]:
    """One rollout of ``rollout_steps`` per env with the current stochastic policy."""
    config = trainer.config
    T, n = config.rollout_steps, envs.n
    rows = np.zeros((T, n, envs.rows.shape[1]), np.float32)
    elapsed = np.zeros((T, n), np.float32)
    actions = np.zeros((T, n, trainer.actor.action_dim), np.float32)
    logps, values, rewards, dones = (np.zeros((T, n), np.float32) for _ in range(4))
    for t in range(T):
        rows[t], elapsed[t] = envs.rows, envs.elapsed()
        with torch.no_grad():
            obs = torch.from_numpy(rows[t])
            dist = trainer.distribution(obs)
            sample = dist.mean + dist.stddev * torch.randn(dist.mean.shape, generator=trainer.sampler)
            logps[t] = dist.log_prob(sample).sum(-1).numpy()
            values[t] = trainer.critic(obs, torch.from_numpy(elapsed[t])).numpy()
        actions[t] = sample.numpy()
        rewards[t], ended, successes = envs.step(np.clip(actions[t], -1.0, 1.0))
        dones[t] = ended
        ends = np.flatnonzero(ended)
        window += [(bool(successes[i]), float(envs.returns[i])) for i in ends]
        trainer.episodes += len(ends)
        envs.reset({int(i): trainer.next_seed + j for j, i in enumerate(ends)})
        trainer.next_seed += len(ends)
    with torch.no_grad():
        last = torch.from_numpy(envs.rows.copy())
        last_values = trainer.critic(last, torch.from_numpy(envs.elapsed())).numpy()
    advantages = _advantages(rewards, dones, values, last_values, config.gamma, config.gae_lambda)
    flat = lambda a: torch.from_numpy(a.reshape(T * n, *a.shape[2:]))  # noqa: E731
    return dict(
        rows=flat(rows),
        elapsed=flat(elapsed),
        actions=flat(actions),
        logps=flat(logps),
        advantages=flat(advantages),
        returns=flat(advantages + values),
    )


def _update(trainer: _Trainer, batch: dict[str, Tensor]) -> dict[str, float]:
    """PPO epochs on one rollout: the critic always, the actor after the warm-up."""
    config = trainer.config
    train_actor = trainer.env_steps >= config.critic_warmup_steps
    prior_weight = config.prior_weight(trainer.env_steps)
    with torch.no_grad():
        prior_mean = trainer.prior({"features": batch["rows"]})
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + trainer.env_steps)
    size = batch["rows"].shape[0]
    kls, value_losses = [], []
    for _ in range(config.epochs):
        order = torch.randperm(size, generator=generator)
        epoch_kls = []
        for start in range(0, size, config.minibatch_size):
            idx = order[start : start + config.minibatch_size]
            value = trainer.critic(batch["rows"][idx], batch["elapsed"][idx])
            value_loss = 0.5 * (value - batch["returns"][idx]).pow(2).mean()
            _step(trainer.optimizers["critic"], value_loss, trainer.critic.parameters(), config.max_grad_norm)
            value_losses.append(float(value_loss.detach()))
            if not train_actor:
                continue
            dist = trainer.distribution(batch["rows"][idx])
            logp = dist.log_prob(batch["actions"][idx]).sum(-1)
            log_ratio = logp - batch["logps"][idx]
            ratio = log_ratio.exp()
            adv = batch["advantages"][idx]
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            policy_loss = -torch.min(
                ratio * adv, ratio.clamp(1 - config.clip_range, 1 + config.clip_range) * adv
            ).mean()
            prior_loss = (dist.mean - prior_mean[idx]).pow(2).sum(-1).mean() / (
                2 * config.initial_noise_std**2
            )
            loss = policy_loss + prior_weight * prior_loss
            params = [*trainer.actor.mlp.parameters(), trainer.log_std]
            _step(trainer.optimizers["actor"], loss, params, config.max_grad_norm)
            with torch.no_grad():
                epoch_kls.append(float(((ratio - 1) - log_ratio).mean()))
        kls += epoch_kls
        if epoch_kls and np.mean(epoch_kls) > 1.5 * config.target_kl:
            break
    return dict(approx_kl=float(np.mean(kls)) if kls else 0.0, value_loss=float(np.mean(value_losses)))


def _step(optimizer: torch.optim.Optimizer, loss: Tensor, params: Any, max_norm: float) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(list(params), max_norm)
    optimizer.step()
