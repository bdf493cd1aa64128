"""Behaviour cloning on the received code: an MLP on what a latent codec's receiver holds.

Where the link carries ~100 bits a step, an agent that sees decoded pixels pays for the decoder and
sees its artefacts, while the receiver already holds the codec's dequantised latent components.
:class:`LatentBCAgent` acts on that code: the observation of ``BandwidthLimited(...,
observation="latent")`` (:mod:`bwgym.envs.latent_views`: one vector per codec stream, zeros for
components not sent, and each code's age), optionally with the last few codes and its own last
actions (``history_steps``: successive frames carry independent quantisation errors, and its own
actions tell it how the arm moved since), through an MLP to tanh actions::

    code per stream (standardised) | age features | [codes and actions of the last H steps] -> MLP -> action

:func:`train_latent_bc` trains one on a scenario's latent stream: behaviour cloning of the scripted
expert's clean actions on its own noisy rollouts through the link, then DAgger rounds (the agent
drives, the expert labels the states it visits; Ross et al. 2011), with the fit, the early
stopping and the logs of :mod:`bwgym.agents.bc_training`. ``bwgym train latent-agent`` runs it.

The code means nothing under another codec, checkpoint or view set: the agent records the code it
was trained on (:meth:`~bwgym.envs.latent_views.LatentViews.code_spec`: codec, checkpoint
fingerprint, streams and ranks, views) and :meth:`LatentBCAgent.check_code` refuses any other,
naming both. Checkpoints use the project's format (kind ``agent/latent_bc``).
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bwgym.agents.base import rollout
from bwgym.agents.bc_training import action_mse, finished, fit_bc, fit_options, tensorboard_writer
from bwgym.common.checkpoint import (
    CheckpointError,
    check_spec,
    first_shape_mismatch,
    is_size_list,
    load_checkpoint,
    save_checkpoint,
    sidecar_path,
)
from bwgym.common.device import resolve_device
from bwgym.common.registry import BuildContext, InputError, register_agent
from bwgym.envs.latent_views import AGE_KEY, find_latent_views

__all__ = [
    "CHECKPOINT_KIND",
    "DAGGER_SEED_BASE",
    "DEMO_SEED_BASE",
    "SHIPPED",
    "LatentBCAgent",
    "LatentFeatures",
    "LatentSteps",
    "LatentTraining",
    "latent_rollouts",
    "train_latent_bc",
]

#: Kind of a latent agent's checkpoint (:mod:`bwgym.common.checkpoint`).
CHECKPOINT_KIND = "agent/latent_bc"
#: The shipped latent agents: env id -> file in ``agents/checkpoints`` (each for one codec's code).
SHIPPED = {"bwgym/LocateLift-v1": "latent_bc_locate_lift_v1_lora_ndpca.ckpt"}
#: Seeds of the expert's demonstrations start here; DAgger's at :data:`DAGGER_SEED_BASE`. Both are
#: far from the scenarios' seeds (0 onwards), evaluation's (10 000 onwards) and the pixel BC's.
DEMO_SEED_BASE = 3_000_000
DAGGER_SEED_BASE = 3_100_000
_CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
_FIX = "retrain it on this scenario's code (`bwgym train latent-agent --scenario ...`)"


class LatentFeatures:
    """The agent's input from latent observations: code, age features, and the last ``history_steps`` steps.

    One row per step: every stream's code (in ``code_spec`` order), then per stream ``[age < 0,
    min(age, age_cap_steps) / age_cap_steps]``, then for each of the last ``history_steps`` steps
    (most recent first) its codes and the action taken after it (zeros before the episode began).
    :meth:`row` appends the step's code to the history, :meth:`push_action` the action taken.
    """

    def __init__(
        self, code_spec: Mapping[str, Any], action_dim: int, history_steps: int, age_cap_steps: int
    ) -> None:
        self.streams = {str(s): int(r) for s, r in code_spec["streams"].items()}
        self.action_dim, self.history_steps, self.age_cap_steps = action_dim, history_steps, age_cap_steps
        self.code_size = sum(self.streams.values())
        self.size = self.code_size + 2 * len(self.streams) + history_steps * (self.code_size + action_dim)
        self.reset()

    def reset(self) -> None:
        """Start an episode: forget the history."""
        self._codes: list[np.ndarray] = []
        self._actions: list[np.ndarray] = []

    def row(self, obs: Mapping[str, Any]) -> np.ndarray:
        """The features of one latent observation (``float32 (size,)``); its code joins the history."""
        missing = [k for k in (*self.streams, AGE_KEY) if k not in obs]
        if missing:
            raise KeyError(
                f"the latent agent needs the observation keys {[*self.streams, AGE_KEY]}, missing {missing}: "
                "is the env's link observation 'latent'?"
            )
        code = np.concatenate([np.asarray(obs[s], np.float32).reshape(-1) for s in self.streams])
        age = np.asarray(obs[AGE_KEY], np.float32).reshape(-1)
        parts = [code, (age < 0).astype(np.float32), np.clip(age, 0, self.age_cap_steps) / self.age_cap_steps]
        for j in range(1, self.history_steps + 1):
            parts.append(self._codes[-j] if len(self._codes) >= j else np.zeros(self.code_size, np.float32))
            parts.append(
                self._actions[-j] if len(self._actions) >= j else np.zeros(self.action_dim, np.float32)
            )
        self._codes = [*self._codes[-self.history_steps :], code] if self.history_steps else []
        return np.concatenate(parts).astype(np.float32)

    def push_action(self, action: np.ndarray) -> None:
        """Record the action taken after the last :meth:`row`."""
        if self.history_steps:
            self._actions = [*self._actions[-self.history_steps :], np.asarray(action, np.float32)]


@register_agent(
    "latent_bc",
    description="behaviour cloning / DAgger MLP on the received latent code (link.observation: latent)",
    uses=("checkpoint",),
)
class LatentBCAgent(nn.Module):
    """An MLP from the received latent code (and optionally a short history) to tanh actions.

    Args:
        code_spec: the code it acts on (:meth:`~bwgym.envs.latent_views.LatentViews.code_spec`).
        env_id: the env it acts in.
        action_dim: size of the action.
        hidden: sizes of the MLP's hidden layers.
        history_steps: past steps (codes and own actions) in the input; 0: memoryless.
        age_cap_steps: ages above this read as this.
    """

    def __init__(
        self,
        code_spec: Mapping[str, Any],
        env_id: str = "bwgym/LocateLift-v1",
        action_dim: int = 4,
        hidden: Sequence[int] = (256, 256),
        history_steps: int = 0,
        age_cap_steps: int = 10,
    ) -> None:
        super().__init__()
        if history_steps < 0 or age_cap_steps < 1 or not hidden:
            raise ValueError(
                f"history_steps >= 0, age_cap_steps >= 1 and >= 1 hidden layer expected, got "
                f"{history_steps}, {age_cap_steps}, {list(hidden)}"
            )
        self.code_spec = dict(code_spec)
        self.env_id, self.action_dim = str(env_id), int(action_dim)
        self.arch = dict(
            hidden=[int(h) for h in hidden],
            history_steps=int(history_steps),
            age_cap_steps=int(age_cap_steps),
        )
        self.features = LatentFeatures(
            self.code_spec, self.action_dim, int(history_steps), int(age_cap_steps)
        )
        #: How the weights were trained, and anything else to keep with them (saved with the weights).
        self.train_config: dict[str, Any] = {}
        self.extra_meta: dict[str, Any] = {}
        # Standardisation of the features, fitted on the training set (see :meth:`fit_scaling`).
        self.register_buffer("feature_mean", torch.zeros(self.features.size))
        self.register_buffer("feature_std", torch.ones(self.features.size))
        layers: list[nn.Module] = []
        width = self.features.size
        for h in self.arch["hidden"]:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers += [nn.Linear(width, self.action_dim), nn.Tanh()]
        self.mlp = nn.Sequential(*layers)

    @property
    def memoryless(self) -> bool:
        """Whether actions depend on the current observation only (one instance may serve many envs)."""
        return self.arch["history_steps"] == 0

    def fit_scaling(self, features: np.ndarray) -> None:
        """Standardise inputs by the mean and spread of training ``features`` (constant ones pass through)."""
        mean, std = features.mean(0), features.std(0)
        self.feature_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feature_std.copy_(torch.as_tensor(np.where(std > 1e-6 * max(std.max(), 1e-12), std, 1.0)))

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Actions ``(B, action_dim)`` for ``inputs["features"]``, ``(B, features.size)`` float rows."""
        return self.mlp((inputs["features"] - self.feature_mean) / self.feature_std)

    def reset(self, seed: int | None = None) -> None:
        """Start an episode: forget the history."""
        self.features.reset()

    @torch.no_grad()
    def act(self, obs: Mapping[str, Any]) -> np.ndarray:
        """The action ``float32 (action_dim,)`` for one latent observation."""
        row = torch.as_tensor(self.features.row(obs), device=self.feature_mean.device)[None]
        action = self.mlp((row - self.feature_mean) / self.feature_std)[0].cpu().numpy().astype(np.float32)
        self.features.push_action(action)
        return action

    # ------------------------------------------------------------------ the code it acts on
    def check_code(
        self, code_spec: Mapping[str, Any], env_id: str | None = None, where: str = "the latent agent"
    ) -> None:
        """Raise ``CheckpointError`` naming both unless ``code_spec`` (and ``env_id``) are those it was trained on."""
        saved = {"env_id": self.env_id, "code": self.code_spec}
        check_spec(where, saved, {"env_id": env_id, "code": dict(code_spec)}, _FIX)

    # ------------------------------------------------------------------ persistence
    def metadata(self) -> dict[str, Any]:
        """The checkpoint's JSON metadata: env id, code, action size, architecture, config, metrics."""
        return dict(
            env_id=self.env_id,
            code=self.code_spec,
            action_dim=self.action_dim,
            arch=self.arch,
            config=self.train_config,
            metrics=self.extra_meta,
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the agent as a checkpoint of kind ``agent/latent_bc`` (atomically); return its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return save_checkpoint(path, CHECKPOINT_KIND, self.state_dict(), self.metadata())

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> LatentBCAgent:
        """Rebuild an agent from :meth:`save`'s file, in eval mode.

        The metadata's sizes are checked against the file's arrays before any module is built, so
        a file whose metadata asks for more than its arrays hold allocates nothing.

        Raises:
            FileNotFoundError: no file at ``path``.
            CheckpointError: not a latent agent's checkpoint, or metadata that its arrays contradict.
        """
        ckpt = load_checkpoint(path, kind=CHECKPOINT_KIND)
        meta, where = ckpt.metadata, f"latent agent {path}"
        expected = _state_shapes(meta, where)
        mismatch = first_shape_mismatch(expected, ckpt.state)
        if mismatch is not None or len(ckpt.state) != len(expected):
            key, shape, got = mismatch or ("no more arrays", (), f"{len(ckpt.state)} arrays")
            raise CheckpointError(
                f"{where}: its metadata needs {key} of shape {shape}, the file has {got}; {_FIX}"
            )
        agent = cls(meta["code"], meta["env_id"], meta["action_dim"], **meta["arch"])
        agent.load_state_dict(ckpt.tensors())
        agent.train_config, agent.extra_meta = dict(meta.get("config") or {}), dict(meta.get("metrics") or {})
        return agent.to(resolve_device(device)).eval()

    @classmethod
    def from_context(cls, context: BuildContext, options: None) -> LatentBCAgent:
        """The scenario's agent: its checkpoint (or the env's shipped one), checked against the link's code."""
        views = find_latent_views(context.env)
        if views is None:
            raise ValueError(
                "agent 'latent_bc' acts on the received latent code: set `link: {observation: latent}` "
                "in the scenario (with a latent codec such as ndpca)"
            )
        path = context.checkpoint
        if not path:
            if context.env_id not in SHIPPED:
                raise InputError(
                    "checkpoint", f"no shipped latent agent for {context.env_id!r}; give agent.checkpoint"
                )
            path = _CHECKPOINTS / SHIPPED[context.env_id]
            if not path.is_file():
                raise InputError(
                    "checkpoint",
                    f"{path} is missing from this install; retrain it with the command recorded in "
                    f"{sidecar_path(path).name} (`bwgym train --all --only {path.stem}`)",
                )
        try:
            agent = cls.load(path, device=context.device)
            agent.check_code(views.code_spec(), context.env_id, where=f"latent agent {path}")
        except (FileNotFoundError, ValueError) as exc:
            raise InputError("checkpoint", str(exc)) from None
        return agent


def _state_shapes(meta: Mapping[str, Any], where: str) -> dict[str, tuple[int, ...]]:
    """The ``state_dict`` shapes a latent agent's metadata implies, computed without building it.

    Raises:
        CheckpointError: a field missing or of the wrong type.
    """
    code, arch = meta.get("code"), meta.get("arch")
    streams = code.get("streams") if isinstance(code, dict) else None
    ok = (
        isinstance(meta.get("env_id"), str)
        and isinstance(streams, dict)
        and bool(streams)
        and is_size_list(list(streams.values()))
        and isinstance(arch, dict)
        and set(arch) == {"hidden", "history_steps", "age_cap_steps"}
        and is_size_list(arch["hidden"])
        and bool(arch["hidden"])
        and is_size_list([arch["history_steps"]], 0)
        and is_size_list([arch["age_cap_steps"], meta.get("action_dim")])
    )
    if not ok:
        raise CheckpointError(
            f"{where}: metadata needs env_id, code.streams (name: rank), action_dim and arch "
            f"(hidden, history_steps, age_cap_steps) as positive integers; {_FIX}"
        )
    code_size, action_dim = sum(streams.values()), meta["action_dim"]
    width = code_size + 2 * len(streams) + arch["history_steps"] * (code_size + action_dim)
    shapes: dict[str, tuple[int, ...]] = {"feature_mean": (width,), "feature_std": (width,)}
    for j, size in enumerate([*arch["hidden"], action_dim]):
        shapes[f"mlp.{2 * j}.weight"], shapes[f"mlp.{2 * j}.bias"] = (size, width), (size,)
        width = size
    return shapes


# ---------------------------------------------------------------------- training


class LatentSteps:
    """Training steps: feature rows and the expert's actions (the data protocol of :func:`~bwgym.agents.bc_training.fit_bc`)."""

    def __init__(self, features: np.ndarray, actions: np.ndarray) -> None:
        self.features = torch.as_tensor(np.asarray(features, np.float32))
        self.actions = torch.as_tensor(np.asarray(actions, np.float32))

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    def extend(self, other: LatentSteps) -> None:
        """Append ``other``'s steps (DAgger: the states the policy visited, labelled by the expert)."""
        self.features = torch.cat([self.features, other.features])
        self.actions = torch.cat([self.actions, other.actions])

    def batch(
        self, idx: Tensor, device: torch.device, shift: bool, generator: torch.Generator | None
    ) -> tuple[dict[str, Tensor], Tensor]:
        """Feature rows and targets of ``idx`` (no augmentation: ``shift`` and ``generator`` are unused)."""
        return {"features": self.features[idx].to(device)}, self.actions[idx].to(device)


class _Labeller:
    """Plays ``policy`` (or the expert with action noise), records each step's features and the expert's clean label.

    The features come from its own copy of ``features`` fed with the actions executed, so they
    are the rows the policy computes when it drives (not the policy's object: each step would
    enter its history twice).
    """

    def __init__(
        self, expert: Any, features: LatentFeatures, policy: LatentBCAgent | None, noise_std: float
    ) -> None:
        self.expert, self.policy, self.noise_std = expert, policy, noise_std
        self.features = copy.deepcopy(features)
        self.rows: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.episode_lengths: list[int] = []
        self.rng = np.random.default_rng()

    def reset(self, seed: int | None = None) -> None:
        self.expert.reset()
        self.features.reset()
        if self.policy is not None:
            self.policy.reset(seed)
        self.rng = np.random.default_rng(None if seed is None else [seed, 1])
        self.episode_lengths.append(0)

    def act(self, obs: Mapping[str, Any]) -> np.ndarray:
        self.rows.append(self.features.row(obs))
        label = action = self.expert.act(obs)
        if self.policy is not None:
            action = self.policy.act(obs)
        elif self.noise_std:
            action = np.clip(label + self.rng.normal(0.0, self.noise_std, label.shape), -1, 1).astype(
                np.float32
            )
        self.features.push_action(action)
        self.labels.append(label)
        self.episode_lengths[-1] += 1
        return action


def latent_rollouts(
    env: Any,
    features: LatentFeatures,
    seeds: Sequence[int],
    policy: LatentBCAgent | None = None,
    noise_std: float = 0.0,
    progress: bool = False,
    desc: str = "rollouts",
) -> tuple[LatentSteps, list[int], float]:
    """Episodes of ``policy`` (None: the expert, with N(0, ``noise_std``) action noise) labelled by the expert.

    Returns:
        The steps (feature rows, the expert's noise-free actions), each episode's length and the
        success rate.
    """
    from tqdm import tqdm

    from bwgym.agents.expert import LiftExpert

    labeller = _Labeller(LiftExpert(env), features, policy, noise_std)
    successes = sum(
        rollout(env, labeller, int(seed)).success
        for seed in tqdm(seeds, desc=desc, unit="ep", disable=not progress)
    )
    steps = LatentSteps(np.stack(labeller.rows), np.stack(labeller.labels))
    return steps, labeller.episode_lengths, successes / max(len(seeds), 1)


@dataclass(frozen=True)
class LatentTraining:
    """The hyper-parameters of :func:`train_latent_bc` (recorded in the agent's ``train_config``).

    Attributes:
        demo_episodes: expert episodes through the link (seeds from :data:`DEMO_SEED_BASE`).
        demo_noise_std: the expert's action noise in them (labels are noise-free).
        val_fraction: share of the episodes of every round held out for early stopping. 0 (the
            default): none, every fit runs its epochs (until the training loss stalls); on
            ``lora_ndpca`` the held-out action error hardly fell while success rose, and stopping
            on it cut each DAgger fit short and cost success (README, "Agents on the received code").
        epochs: maximum epochs of the first fit.
        dagger_rounds: DAgger rounds after it (0: plain behaviour cloning).
        dagger_episodes: policy episodes per round (seeds from :data:`DAGGER_SEED_BASE`).
        dagger_epochs: maximum epochs per round.
        batch_size: steps per gradient step.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        patience: epochs without validation improvement before a fit stops.
        hidden: MLP hidden sizes.
        history_steps: past steps in the input (see :class:`LatentFeatures`).
        age_cap_steps: ages above this read as this.
        seed: seed of initialisation, split and batch order.
    """

    demo_episodes: int = 200
    demo_noise_std: float = 0.1
    val_fraction: float = 0.0
    epochs: int = 60
    dagger_rounds: int = 6
    dagger_episodes: int = 80
    dagger_epochs: int = 40
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-5
    patience: int = 8
    hidden: Sequence[int] = (256, 256)
    history_steps: int = 3
    age_cap_steps: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.demo_episodes < 2 or self.dagger_rounds < 0 or self.dagger_episodes < 1:
            raise ValueError(
                "demo_episodes >= 2, dagger_rounds >= 0 and dagger_episodes >= 1 expected, got "
                f"{self.demo_episodes}, {self.dagger_rounds}, {self.dagger_episodes}"
            )


def train_latent_bc(
    env_factory: Callable[[], Any],
    out_path: str | os.PathLike[str] | None = None,
    training: LatentTraining | None = None,
    *,
    bc_out_path: str | os.PathLike[str] | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    describe: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    **options: Any,
) -> LatentBCAgent:
    """Behaviour cloning, then DAgger, of the scripted expert on a link's latent stream.

    The expert plays ``demo_episodes`` episodes through ``env_factory()`` (a ``BandwidthLimited``
    env with ``observation="latent"``) with action noise; the agent learns its noise-free actions
    from the code the receiver held (early stopping on held-out episodes). Each DAgger round the
    agent plays ``dagger_episodes`` episodes, the expert labels every state visited, and the fit
    goes on over everything collected. Each round's rollouts score the policy that played them
    (the last policy plays one more set); the agent returned is the policy with the best score,
    the behaviour-cloning one included, as :func:`~bwgym.agents.dagger.finetune_bc` selects.
    Select on these seeds, report on others.

    Args:
        env_factory: builds the env (its link observation must be ``"latent"``).
        out_path: where to save the selected agent (None: not saved).
        training: the hyper-parameters (None: :class:`LatentTraining`'s defaults).
        bc_out_path: where to save the behaviour-cloning agent, before DAgger (None: not saved).
        log_dir: TensorBoard folder (``train/loss``, ``val/loss``, ``dagger/success_rate``).
        describe: extra entries for ``train_config`` (e.g. the scenario).
        device: where the network trains.
        progress: tqdm progress bars.
        **options: :class:`LatentTraining` fields that replace those of ``training``.

    Returns:
        The selected agent, in eval mode, its ``train_config`` filled (per-policy history).

    Raises:
        ValueError: the env's observations are not latent.
        TypeError: an option that is not a :class:`LatentTraining` field.
    """
    hyper = replace(training or LatentTraining(), **options)
    torch.manual_seed(hyper.seed)  # the initial weights
    env = env_factory()
    writer = tensorboard_writer(log_dir, {**dict(describe or {}), **asdict(hyper)})
    start = time.perf_counter()
    try:
        views = find_latent_views(env)
        if views is None:
            raise ValueError("train_latent_bc needs an env whose link observation is 'latent'")
        env_id = getattr(getattr(env, "spec", None), "id", None) or getattr(env.unwrapped.spec, "id", "")
        agent = LatentBCAgent(
            views.code_spec(),
            env_id,
            int(env.action_space.shape[0]),
            hyper.hidden,
            hyper.history_steps,
            hyper.age_cap_steps,
        ).to(resolve_device(device))
        history: list[dict[str, Any]] = []
        states = _fit_and_dagger(
            agent,
            env,
            hyper,
            fit_options(hyper, agent.feature_mean.device, writer, progress),
            history,
            progress,
            bc_out_path,
        )
    finally:
        env.close()
        if writer is not None:
            writer.close()
    chosen = max(range(len(history)), key=lambda i: (history[i]["rollout_success"], i))
    agent.load_state_dict(states[chosen])
    record = dict(dict(describe or {}), **asdict(hyper), history=history, selected_round=chosen)
    record["seconds"] = round(time.perf_counter() - start, 1)
    return finished(agent, record, out_path)


def _fit_and_dagger(
    agent: LatentBCAgent,
    env: Any,
    hyper: LatentTraining,
    fit: Mapping[str, Any],
    history: list[dict[str, Any]],
    progress: bool,
    bc_out_path: str | os.PathLike[str] | None,
) -> list[dict[str, Tensor]]:
    """Demonstrations, the first fit and the DAgger rounds: the weights of every policy, the BC one first."""
    demo_seeds = range(DEMO_SEED_BASE, DEMO_SEED_BASE + hyper.demo_episodes)
    demos, lengths, expert_success = latent_rollouts(
        env, agent.features, demo_seeds, None, hyper.demo_noise_std, progress, "expert demonstrations"
    )
    train, val = _split_episodes(demos, lengths, hyper.val_fraction, hyper.seed)
    agent.fit_scaling(train.features.numpy())
    step, epoch, best = fit_bc(agent, train, val, epochs=hyper.epochs, step0=0, epoch0=0, desc="BC", **fit)
    history.append(
        dict(
            round=0,
            epochs=epoch,
            val_mse=_mse(agent, val),
            train_steps=len(train),
            expert_success=expert_success,
        )
    )
    states = [copy.deepcopy(agent.state_dict())]
    if bc_out_path is not None:
        finished(copy.deepcopy(agent), dict(asdict(hyper), dagger_rounds=0, history=history[:1]), bc_out_path)
    for r in range(1, hyper.dagger_rounds + 2):
        seeds = range(DAGGER_SEED_BASE + 10_000 * r, DAGGER_SEED_BASE + 10_000 * r + hyper.dagger_episodes)
        last = r > hyper.dagger_rounds
        desc = "last policy's rollouts" if last else f"DAgger {r}/{hyper.dagger_rounds} rollouts"
        new, lengths, success = latent_rollouts(env, agent.features, seeds, agent, 0.0, progress, desc)
        history[r - 1].update(rollout_success=success, rollout_episodes=hyper.dagger_episodes)
        if fit["writer"] is not None:
            fit["writer"].add_scalar("dagger/success_rate", success, r - 1)
        if last:
            break
        # Held-out episodes of every round join the validation set: early stopping then follows
        # the states the policy visits, not the expert's alone.
        new_train, new_val = _split_episodes(new, lengths, hyper.val_fraction, hyper.seed + r)
        train.extend(new_train)
        val.extend(new_val)
        step, epoch, best = fit_bc(
            agent,
            train,
            val,
            epochs=hyper.dagger_epochs,
            step0=step,
            epoch0=epoch,
            desc=f"DAgger {r}/{hyper.dagger_rounds}",
            **fit,
        )
        history.append(
            dict(
                round=r,
                epochs=epoch,
                val_mse=_mse(agent, val),
                train_steps=len(train),
            )
        )
        states.append(copy.deepcopy(agent.state_dict()))
    return states


def _mse(agent: LatentBCAgent, val: LatentSteps) -> float | None:
    """The action error on the validation steps (None without any)."""
    return action_mse(agent, val, agent.feature_mean.device, 256) if len(val) else None


def _split_episodes(
    steps: LatentSteps, lengths: Sequence[int], val_fraction: float, seed: int
) -> tuple[LatentSteps, LatentSteps]:
    """Training and validation steps, split by whole episodes (a seeded draw of ``val_fraction`` of them)."""
    n_val = round(val_fraction * len(lengths))
    val_ids = set(np.random.default_rng(seed).permutation(len(lengths))[:n_val].tolist())
    episode = np.repeat(np.arange(len(lengths)), lengths)
    mask = torch.as_tensor(np.isin(episode, sorted(val_ids)))
    return (
        LatentSteps(steps.features[~mask].numpy(), steps.actions[~mask].numpy()),
        LatentSteps(steps.features[mask].numpy(), steps.actions[mask].numpy()),
    )
