"""Allocation policies as agents: the default allocation env, PPO training and loading a trained policy.

The env (:class:`bwgym.envs.allocation.AllocateBandwidthEnv`) lives in the envs layer and takes
its frozen task agent as an argument; this module, one layer up, supplies the agent:

* :func:`make_allocation_env` - the entry point of ``bwgym/AllocateBandwidth-v0``:
  ``gymnasium.make("bwgym/AllocateBandwidth-v0")`` with no arguments is LocateLift + the shipped
  task-aware NDPCA + the shipped behaviour-cloning agent + :func:`~bwgym.envs.allocation.default_traces`;
* :func:`train_allocator` - stock SB3 PPO on vectorised allocation envs, TensorBoard, periodic
  evaluation on held-out traces, ``policy.ckpt`` in the project's checkpoint format (what
  ``bwgym train allocator`` runs), optionally warm-started by distilling the oracle
  (:class:`DistillConfig`, below);
* :func:`load_learned_allocator` - a :class:`~bwgym.envs.allocators.LearnedAllocator` from that
  checkpoint, for a scenario (``allocator: {name: learned, checkpoint: ...}``). A checkpoint
  trained for another number of views or another observation spec is a ``ValueError`` naming both.

Why distil: the task reward says little about one step's split (success comes at the end, and a
split's effect on the agent's action is mostly quantisation luck), so PPO from scratch learns
little in a budget of 10^4 steps. The simulator can do better: at every step
:class:`~bwgym.envs.allocators.OracleAllocator` scores *every* split of its grid (and the codec's
own) by how far the agent's action on the decoded views moves from its action on the true ones,
so one step gives full information over the candidates instead of one noisy reward.
:func:`collect_oracle_scores` records those scores beside the observation a sender has;
:func:`fit_split_scorer` regresses each candidate's score on the observation (ridge, per-feature
standardised), and the policy is fitted by maximum likelihood to the candidate of lowest
predicted score at every recorded state before PPO starts (a contextual bandit solved by
regression, then RL). The scores are privileged (they need the true views and the agent); the
policy never sees them, only the sender's observation.

A trained allocator's ``policy.ckpt`` is an SB3 checkpoint of :mod:`bwgym.agents.rl` (kind
``agent/sb3-ppo``, env id ``bwgym/AllocateBandwidth-v0``, never unpickled) whose metadata adds
``allocation``: the observation spec (:meth:`~bwgym.envs.allocators.AllocationObserver.spec`),
the codec, the task env and agent, and the training and held-out trace families.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bwgym.agents.rl import CHECKPOINT_KINDS, POLICY_FILE, RLConfig, fit_policy_to_actions, load_rl, train_rl
from bwgym.common.checkpoint import CheckpointError, check_spec, load_checkpoint
from bwgym.common.registry import BuildContext, InputError, register_allocator
from bwgym.envs.allocation import DEFAULT_TASK_ENV, AllocateBandwidthEnv, GeneratedTraces, default_traces
from bwgym.envs.allocators import AllocationObserver, LearnedAllocator

__all__ = [
    "ALLOCATION_ENV_ID",
    "AllocatorTrainConfig",
    "DistillConfig",
    "collect_oracle_scores",
    "default_task_agent",
    "fit_split_scorer",
    "load_learned_allocator",
    "shipped_allocator",
    "make_allocation_env",
    "train_allocator",
]

#: The allocation env's id (recorded in a trained allocator's checkpoint).
ALLOCATION_ENV_ID = "bwgym/AllocateBandwidth-v0"


def default_task_agent(
    task_env_id: str = DEFAULT_TASK_ENV, checkpoint: str | os.PathLike[str] | None = None
) -> Any:
    """The behaviour-cloning agent for ``task_env_id``: ``checkpoint``, else the shipped one.

    The shipped agents: ``bc_locate_lift.ckpt`` (``bwgym/LocateLift-v0``) and
    ``bc_locate_lift_vN.ckpt`` (``bwgym/LocateLift-vN``), see :meth:`BCAgent.load_shipped`.

    Raises:
        FileNotFoundError: no checkpoint for that env (the message says how to train or pass one).
    """
    from bwgym.agents.bc import BCAgent

    if checkpoint is not None:
        return BCAgent.load(checkpoint, env_id=task_env_id)
    return BCAgent.load_shipped(env_id=task_env_id)


def make_allocation_env(
    task_agent: Any = None,
    task_env_id: str = DEFAULT_TASK_ENV,
    task_agent_checkpoint: str | None = None,
    train_traces: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> AllocateBandwidthEnv:
    """Build :class:`~bwgym.envs.allocation.AllocateBandwidthEnv`; the registered entry point.

    Args:
        task_agent: the frozen task agent; None: :func:`default_task_agent` of ``task_env_id``.
        task_env_id: the task env.
        task_agent_checkpoint: a BC checkpoint for the default agent instead of the shipped one.
        train_traces: a :class:`~bwgym.envs.allocation.GeneratedTraces` spec (plain data, as
            recorded in checkpoints) when ``traces`` is not given.
        **kwargs: the env's other arguments (``codec``, ``traces``, ``bit_cost``, ...).
    """
    if task_agent is None:
        task_agent = default_task_agent(task_env_id, task_agent_checkpoint)
    if train_traces is not None and "traces" not in kwargs:
        kwargs["traces"] = GeneratedTraces(**dict(train_traces))
    return AllocateBandwidthEnv(task_agent, task_env_id=task_env_id, **kwargs)


# ----------------------------------------------------------------------------------- loading
#: Where shipped allocation policies live: ``allocator_<codec>_<env>.ckpt``.
SHIPPED_DIR = Path(__file__).resolve().parent / "checkpoints"


def shipped_allocator(
    codec_name: str,
    env_id: str = DEFAULT_TASK_ENV,
    prefix: str = "allocator",
    train: str = "bwgym train allocator --scenario ... --out FOLDER",
) -> Path:
    """The shipped allocation policy for ``codec_name`` on ``env_id`` (``<prefix>_<codec>_locate_lift_vN.ckpt``).

    ``prefix`` names the kind (``allocator_content``: the content scorer) and ``train`` the
    command that makes one, for the message.

    Example:
        >>> shipped_allocator("ndpca", "bwgym/LocateLift-v1").name
        'allocator_ndpca_locate_lift_v1.ckpt'

    Raises:
        FileNotFoundError: none is shipped for that pair (the message says how to train one).
    """
    from bwgym.common.checkpoint import shipped_file

    path = SHIPPED_DIR / shipped_file(f"{prefix}_{codec_name}_locate_lift.ckpt", env_id)
    if env_id.split("/")[-1].split("-v")[0] != "LocateLift" or not path.is_file():
        shipped = sorted(p.name for p in SHIPPED_DIR.glob(f"{prefix}_*.ckpt"))
        raise FileNotFoundError(
            f"no {prefix}_* checkpoint is shipped for codec {codec_name!r} on {env_id!r} (shipped: "
            f"{shipped}); train one with `{train}` and name the folder as the checkpoint"
        )
    return path


def _policy_path(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / POLICY_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"allocation policy {path} does not exist (expected a folder or {POLICY_FILE} written by "
            "`bwgym train allocator`)"
        )
    return path


def _check_trained_for(path: Path, saved: Mapping[str, Any], codec_name: str | None, env_id: str) -> None:
    """Refuse a policy trained for another codec or task env, naming both and the fix.

    Its observations (latent energies of that codec, frames of that env) mean something else
    there, and it would run without a word. Fields the checkpoint does not record (older files) are not compared.
    """
    recorded = saved.get("env_kwargs") if isinstance(saved.get("env_kwargs"), dict) else {}
    trained = {"codec": recorded.get("codec"), "env": recorded.get("task_env_id")}
    requested = {"codec": codec_name, "env": env_id}
    if any(
        trained[k] is not None and requested[k] is not None and trained[k] != requested[k] for k in trained
    ):
        raise CheckpointError(
            f"allocation policy {path} was trained for codec {trained['codec']!r} on {trained['env']!r}, "
            f"but codec {requested['codec']!r} on {requested['env']!r} was requested; train an allocator "
            f"for them (`bwgym train allocator --scenario ... --set codec.name={requested['codec']}`) or use "
            "allocator.name=proportional"
        )


def load_learned_allocator(
    path: str | os.PathLike[str] | None, codec: Any, device: str = "cpu", env_id: str = DEFAULT_TASK_ENV
) -> LearnedAllocator:
    """Load a policy written by :func:`train_allocator` as an allocator for ``codec``'s views.

    Args:
        path: the training folder or its ``policy.ckpt``; None: the shipped policy for ``codec``
            on ``env_id`` (:func:`shipped_allocator`).
        codec: the codec on the link (its views are the K views; its latent model gives energies).
        device: torch device of the policy.
        env_id: the task env (only to find the shipped policy).

    Raises:
        FileNotFoundError: no checkpoint there (or none shipped).
        ValueError: (``CheckpointError``) not an allocation policy, or one trained for another
            number of views or another observation spec: the message names both.
    """
    ckpt_path = _policy_path(path) if path is not None else shipped_allocator(codec.name, env_id)
    ckpt = load_checkpoint(ckpt_path, kind=tuple(CHECKPOINT_KINDS.values()))
    saved = ckpt.metadata.get("allocation")
    if (
        ckpt.env_id != ALLOCATION_ENV_ID
        or not isinstance(saved, dict)
        or not isinstance(saved.get("observation"), dict)
    ):
        raise CheckpointError(
            f"{ckpt_path} is a policy for {ckpt.env_id!r}, not an allocation policy for {ALLOCATION_ENV_ID!r}; "
            "train one with `bwgym train allocator --scenario ... --out FOLDER`"
        )
    observation = saved["observation"]
    try:
        observer = AllocationObserver(
            codec.view_names,
            codec,
            history_steps=int(observation.get("history_steps", 8)),
            max_steps=int(observation.get("max_steps", 50)),
            max_age_steps=int(observation.get("max_age_steps", 10)),
        )
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{ckpt_path}: damaged allocation metadata ({err})") from err
    check_spec(
        f"allocation policy {ckpt_path}",
        observation,
        observer.spec(),
        "train an allocator for these views and this codec (`bwgym train allocator --scenario ...`)",
    )
    # After the views: a policy for other views is refused for that, the clearer reason.
    _check_trained_for(ckpt_path, saved, getattr(codec, "name", None), env_id)
    agent = load_rl(
        ckpt_path, env_id=ALLOCATION_ENV_ID, observation_space=observer.observation_space, device=device
    )
    codec_split = bool((saved.get("env_kwargs") or {}).get("codec_split", False))
    expected = len(observer.view_names) + int(codec_split)
    got = agent.policy.action_space.shape
    if tuple(got) != (expected,):
        raise CheckpointError(
            f"{ckpt_path}: damaged allocation policy: action shape {tuple(got)}, expected ({expected},)"
        )
    return LearnedAllocator(agent, observer, codec_split=codec_split)


# ----------------------------------------------------------------------------------- training
@register_allocator(
    "learned",
    description="a trained policy: checkpoint (a folder or policy.ckpt from `bwgym train allocator`; none: the shipped one)",
    uses=("checkpoint",),
)
def learned_allocator(context: BuildContext, options: None) -> LearnedAllocator:
    """The scenario's learned allocator: its checkpoint, or the policy shipped for its codec and env."""
    if context.checkpoint is None:
        try:
            shipped_allocator(context.codec.name, context.env_id)
        except FileNotFoundError as exc:
            raise InputError(
                "checkpoint",
                f"required for allocator 'learned' unless one is shipped for the codec and env ({exc})",
            ) from None
    try:
        return load_learned_allocator(context.checkpoint, context.codec, env_id=context.env_id)
    except (FileNotFoundError, ValueError) as exc:
        raise InputError("checkpoint", str(exc)) from None


def _default_rl() -> RLConfig:
    return RLConfig(
        algo="ppo", env_id=ALLOCATION_ENV_ID, env_kwargs={}, n_envs=2, device="cpu", out_dir="runs/allocator"
    )


@dataclass(frozen=True)
class DistillConfig:
    """The oracle-distilled warm start of an allocation policy (module docstring, "Why distil")."""

    episodes: int = 0
    """Episodes of the oracle on the training traces (0: no warm start, PPO from scratch)."""
    explore: float = 0.3
    """Probability that the oracle sends a random split of its grid instead of its best, so the
    recorded states include those a worse split leads to."""
    levels: int = 4
    """The oracle's grid, :func:`~bwgym.envs.allocators.simplex_grid` (the codec's own split is a
    candidate too when the policy has the codec-split action)."""
    ridge: float = 1.0
    """Ridge penalty of the scorer, on standardised features."""
    epochs: int = 30
    """Maximum-likelihood epochs fitting the policy to the scorer's choices."""
    data: str | None = None
    """A ``distill.npz`` of an earlier run to fit instead of running the oracle (``episodes``,
    ``explore`` and ``levels`` are then ignored): refit or fine-tune longer without recollecting."""


@dataclass(frozen=True)
class AllocatorTrainConfig:
    """What ``bwgym train allocator`` trains, and how."""

    rl: RLConfig = field(default_factory=_default_rl)
    """The PPO run (:class:`~bwgym.agents.rl.RLConfig`, ``env_id`` the allocation env); its
    ``env_kwargs`` are the arguments of :func:`make_allocation_env` except the traces (plain JSON:
    task env, codec, task agent checkpoint, link, reward terms)."""
    train_traces: dict[str, Any] = field(default_factory=lambda: default_traces().spec())
    """The training family, a :class:`~bwgym.envs.allocation.GeneratedTraces` spec."""
    eval_traces: dict[str, Any] = field(default_factory=lambda: default_traces(seed_offset=1 << 40).spec())
    """The held-out traces for periodic evaluation: a ``GeneratedTraces`` spec, or ``{"trace": {...}}``
    for one trace (``source``/``format``/``scale`` or ``generator``/``params``/``scale``)."""
    distill: DistillConfig = field(default_factory=DistillConfig)
    """The oracle-distilled warm start (off by default)."""


def _trace_family(spec: Mapping[str, Any]) -> Any:
    """A trace family from plain data: a ``GeneratedTraces`` spec, or ``{"trace": {...}}`` for one trace.

    One trace is ``{"source": name or path, "format": ..., "scale": ...}`` or
    ``{"generator": kind, "params": {...}, "scale": ...}``.
    """
    if "trace" not in spec:
        return GeneratedTraces(**dict(spec))
    one = dict(spec["trace"])
    if one.get("generator") is not None:
        from bwgym.traces import generate

        trace = generate(one["generator"], **dict(one.get("params") or {}))
    else:
        from bwgym.traces import load_trace

        trace = load_trace(one["source"], format=one.get("format"))
    scale = float(one.get("scale") or 1.0)
    return trace.scale(scale) if scale != 1.0 else trace


def _make_env(env_kwargs: Mapping[str, Any], traces: Mapping[str, Any]) -> AllocateBandwidthEnv:
    """One allocation env (module level, so spawned workers can build it)."""
    return make_allocation_env(traces=_trace_family(traces), **dict(env_kwargs))


def _allocation_callback() -> Any:
    from stable_baselines3.common.callbacks import BaseCallback

    class AllocationCallback(BaseCallback):
        """Log the link and the split under ``bw/`` and ``alloc/``."""

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", []):
                if "split" not in info:
                    continue
                split = info["split"]
                self.logger.record_mean("alloc/codec_split", float(split is None))
                for view, share in (split or {}).items():
                    self.logger.record_mean(f"alloc/share_{view}", share)
                self.logger.record_mean("alloc/invalid_action", float(info["invalid_action"] is not None))
            return True

    return AllocationCallback()


# ----------------------------------------------------------------------------- distillation
def _feature_rows(obs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Batched observations (a row per sample under each key) as one feature matrix, keys sorted."""
    n = len(next(iter(obs.values())))
    return np.concatenate([np.asarray(obs[k], np.float64).reshape(n, -1) for k in sorted(obs)], axis=1)


class _RecordingOracle:
    """An oracle allocator that records the sender's observation and every candidate's score."""

    def __init__(self, oracle: Any, observer: Any) -> None:
        self.oracle, self.observer = oracle, observer
        self.candidates = [*oracle.splits, *([None] if oracle.include_codec_split else [])]
        self.observations: list[dict[str, np.ndarray]] = []
        self.scores: list[list[float]] = []
        #: called at each step for analysis columns (``extras`` of :func:`collect_oracle_scores`)
        self.extras: Callable[[], Mapping[str, float]] | None = None
        self.extra_rows: list[Mapping[str, float]] = []

    def __call__(self, views: Mapping[str, np.ndarray], budget_bits: int, info: Mapping[str, Any]):
        obs = self.observer.observe(views, budget_bits, info)
        split = self.oracle(views, budget_bits, info)
        self.observer.commit(split)
        self.observations.append(obs)
        self.scores.append([self.oracle.last_scores[c] for c in self.candidates])
        if self.extras is not None:
            self.extra_rows.append(self.extras())
        return split

    def reset(self) -> None:
        self.oracle.reset()
        self.observer.reset()


def collect_oracle_scores(
    env: AllocateBandwidthEnv,
    distill: DistillConfig,
    seed: int = 0,
    progress: bool = False,
    observer: Any = None,
    extras: Callable[[Any], Mapping[str, float]] | None = None,
) -> dict[str, Any]:
    """Run the oracle on ``env``'s training traces and record what a distilled policy learns from.

    Each of ``distill.episodes`` episodes draws a trace from the env's family and plays the task
    with the env's frozen agent through :class:`~bwgym.envs.bandwidth.BandwidthLimited` (the
    scenario runner's send, so the observation is the one a
    :class:`~bwgym.envs.allocators.LearnedAllocator` builds there), with an
    :class:`~bwgym.envs.allocators.OracleAllocator` choosing the splits.

    Args:
        env: the allocation env whose parts (task env and agent, codec, link, traces) it uses.
        distill: episodes, the oracle's grid and its exploration.
        seed: seeds the oracle's exploration, the traces and the episodes.
        progress: a progress bar.
        observer: what the sender observes (``observe(views, budget_bits, context) -> dict``,
            ``commit(split)``, ``reset()``); default the env's spec-1
            :class:`~bwgym.envs.allocators.AllocationObserver`.
        extras: ``extras(task_env) -> {column: number}`` called at each step beside the
            observation, for analysis (e.g. the task phase from the true state); the policy never
            sees them.

    Returns:
        ``obs`` (one array per observation key, a row per step), ``scores`` (steps x candidates:
        the distance of the agent's action on each candidate's decoded views to its action on
        the true views), ``candidates`` (the splits as lists, None: the codec's), ``episode`` (the
        episode of each step), ``success`` (per episode) and ``extras`` (one array per column).
    """
    import gymnasium as gym
    from tqdm.auto import tqdm

    from bwgym.agents.base import rollout
    from bwgym.envs.allocators import OracleAllocator
    from bwgym.envs.bandwidth import BandwidthLimited

    oracle = OracleAllocator(
        env.task_agent,
        env.codec,
        levels=distill.levels,
        include_codec_split=env.codec_split,
        explore=distill.explore,
        seed=seed,
    )
    if observer is None:
        observer = AllocationObserver(
            env.view_names,
            env.codec,
            history_steps=env.observer.history_steps,
            max_steps=env.observer.max_steps,
            max_age_steps=env.observer.max_age_steps,
        )
    recorder = _RecordingOracle(oracle, observer)
    task_env = gym.make(env.task_env_id, **env.task_env_kwargs)
    if extras is not None:
        recorder.extras = functools.partial(extras, task_env)
    rng = np.random.default_rng(seed)
    episodes, success = [], []
    try:
        for episode in tqdm(range(distill.episodes), desc="oracle", disable=not progress):
            link = BandwidthLimited(
                task_env,
                env.codec,
                env.traces(rng),
                allocator=recorder,
                step_seconds=env.step_seconds,
                latency_steps=env.latency_steps,
                loss_prob=env.loss_prob,
            )
            before = len(recorder.scores)
            result = rollout(link, env.task_agent, seed=int(rng.integers(2**31 - 1)))
            episodes += [episode] * (len(recorder.scores) - before)
            success.append(bool(result.success))
    finally:
        task_env.close()
    keys = list(recorder.observations[0]) if recorder.observations else []
    columns = list(recorder.extra_rows[0]) if recorder.extra_rows else []
    return {
        "obs": {k: np.stack([o[k] for o in recorder.observations]) for k in keys},
        "scores": np.asarray(recorder.scores, np.float64),
        "candidates": [None if c is None else list(c) for c in recorder.candidates],
        "episode": np.asarray(episodes, np.int64),
        "success": np.asarray(success, bool),
        "extras": {k: np.asarray([row[k] for row in recorder.extra_rows]) for k in columns},
    }


def fit_split_scorer(
    obs: Mapping[str, np.ndarray], scores: np.ndarray, ridge: float = 1.0
) -> Callable[[Mapping[str, np.ndarray]], np.ndarray]:
    """Ridge regression of each candidate's score on the observation; returns ``obs -> scores``.

    ``obs`` holds a row per sample; so does what the returned function takes and gives back.
    """
    features = _feature_rows(obs)
    mean, scale = features.mean(0), features.std(0) + 1e-6
    design = np.c_[(features - mean) / scale, np.ones(len(features))]
    penalty = float(ridge) * np.eye(design.shape[1])
    penalty[-1, -1] = 0.0  # the intercept is not shrunk
    weights = np.linalg.solve(design.T @ design + penalty, design.T @ np.asarray(scores, np.float64))

    def predict(batch: Mapping[str, np.ndarray]) -> np.ndarray:
        rows = _feature_rows(batch)
        return np.c_[(rows - mean) / scale, np.ones(len(rows))] @ weights

    return predict


def _split_action(split: Sequence[float] | None, n_views: int, codec_split: bool) -> np.ndarray:
    """The action in ``Box(-1, 1)`` that :func:`~bwgym.envs.allocators.action_to_split` maps to ``split``."""
    if split is None:  # the codec's own split: the switch on, the shares ignored
        return np.r_[np.zeros(n_views), 1.0]
    shares = np.asarray(split, np.float64)
    action = 2.0 * shares / shares.max() - 1.0
    return np.r_[action, -1.0] if codec_split else action


def _distill_report(data: Mapping[str, Any], distill: DistillConfig, folds: int = 5) -> dict[str, Any]:
    """Mean score of the scorer's picks on held-out episodes (k-fold by episode) against references."""
    scores, episode = data["scores"], data["episode"]
    picks = np.zeros(len(scores), np.int64)
    for fold in range(folds):
        test = episode % folds == fold
        if not test.any():
            continue
        train = ~test if (~test).any() else test  # a single episode: in-sample
        predict = fit_split_scorer(
            {k: v[train] for k, v in data["obs"].items()}, scores[train], distill.ridge
        )
        picks[test] = predict({k: v[test] for k, v in data["obs"].items()}).argmin(1)
    chosen = scores[np.arange(len(scores)), picks]
    report = {
        "steps": len(scores),
        "episodes": int(episode.max() + 1) if len(episode) else 0,
        "oracle_success_rate": float(np.mean(data["success"])) if len(data["success"]) else None,
        "candidates": data["candidates"],
        "mean_score_per_candidate": [float(v) for v in scores.mean(0)],
        "mean_score_scorer_cross_validated": float(chosen.mean()),
        "mean_score_oracle": float(scores.min(1).mean()),
        "scorer_choices": [int(v) for v in np.bincount(picks, minlength=scores.shape[1])],
    }
    return report


def _load_distill_data(path: Path) -> dict[str, Any]:
    """What :func:`collect_oracle_scores` returned, read back from a run's ``distill.npz``."""
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
        return {
            "obs": {k.removeprefix("obs_"): v for k, v in data.items() if k.startswith("obs_")},
            "scores": data["scores"],
            "episode": data["episode"],
            "success": data["success"],
            "candidates": [None if np.isnan(c).any() else list(c) for c in data["candidates"]],
        }
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(
            f"{path} is not a distill.npz written by `bwgym train allocator --distill-episodes N` ({err})"
        ) from err


def _distill(
    env_kwargs: Mapping[str, Any],
    traces: Mapping[str, Any],
    distill: DistillConfig,
    seed: int,
    out: Path,
    progress: bool,
) -> Callable[[Any], None]:
    """Collect the oracle's scores, fit the scorer and return the warm start of the PPO model."""
    env = _make_env(env_kwargs, traces)
    try:
        data = (
            _load_distill_data(Path(distill.data))
            if distill.data
            else collect_oracle_scores(env, distill, seed=seed, progress=progress)
        )
        n_views = len(env.view_names)
        codec_split = env.codec_split
    finally:
        env.close()
    if not len(data["scores"]):
        raise ValueError("distillation recorded no steps; raise --distill-episodes")
    if len(data["candidates"]) != data["scores"].shape[1] or (
        distill.data and len(data["candidates"][0] or [n_views]) != n_views
    ):
        raise ValueError(
            f"distillation data of {len(data['candidates'])} candidates and {data['scores'].shape[1]} "
            f"scores per step does not fit a policy for {n_views} views: collect it for this env again"
        )
    report = _distill_report(data, distill)
    predict = fit_split_scorer(data["obs"], data["scores"], distill.ridge)
    best = predict(data["obs"]).argmin(1)
    actions = np.stack([_split_action(data["candidates"][i], n_views, codec_split) for i in best])
    candidates = np.array(
        [[np.nan] * n_views if c is None else c for c in data["candidates"]], dtype=np.float64
    )
    np.savez_compressed(
        out / "distill.npz",
        scores=data["scores"],
        episode=data["episode"],
        success=data["success"],
        candidates=candidates,
        actions=actions,
        **{f"obs_{k}": v for k, v in data["obs"].items()},
    )

    def pretrain(model: Any) -> None:
        losses = fit_policy_to_actions(model, data["obs"], actions, epochs=distill.epochs, seed=seed)
        report["policy_fit_loss_per_epoch"] = losses
        (out / "distill.json").write_text(json.dumps(report, indent=1))

    return pretrain


def train_allocator(config: AllocatorTrainConfig, progress: bool = False) -> Path:
    """Train an allocation policy with PPO and write ``<out_dir>/policy.ckpt``; return its path.

    The run is :func:`bwgym.agents.rl.train_rl`'s, with allocation envs on the training family
    and evaluation (SB3's ``EvalCallback``, deterministic actions) on envs built with
    ``config.eval_traces``, which the training family never draws: ``eval/success_rate`` and
    ``eval/mean_reward`` in TensorBoard and ``eval/evaluations.npz``.
    """
    rl = config.rl
    if rl.algo != "ppo" or rl.env_id != ALLOCATION_ENV_ID:
        raise ValueError(
            f"an allocator trains with algo 'ppo' on {ALLOCATION_ENV_ID}, got {rl.algo!r} on {rl.env_id!r}"
        )
    json.dumps(dataclasses.asdict(config))  # everything recorded must be plain JSON
    _trace_family(config.train_traces)  # bad trace specs fail here, not inside a worker process
    _trace_family(config.eval_traces)
    out = Path(rl.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=1, sort_keys=True))

    def describe(venv: Any) -> dict[str, Any]:
        observer = venv.get_attr("observer", [0])[0]
        return {
            "allocation": {
                "observation": observer.spec(),
                "env_kwargs": dict(rl.env_kwargs),
                "train_traces": dict(config.train_traces),
                "eval_traces": dict(config.eval_traces),
                "eval": _last_evaluation(out / "eval" / "evaluations.npz"),
            }
        }

    pretrain = None
    if config.distill.episodes or config.distill.data:
        pretrain = _distill(rl.env_kwargs, config.train_traces, config.distill, rl.seed, out, progress)
    train_rl(
        rl,
        progress=progress,
        pretrain=pretrain,
        env_factory=functools.partial(_make_env, dict(rl.env_kwargs), dict(config.train_traces)),
        eval_env_factory=functools.partial(_make_env, dict(rl.env_kwargs), dict(config.eval_traces)),
        callbacks=[_allocation_callback()],
        describe=describe,
    )
    return out / POLICY_FILE


def _last_evaluation(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    data = np.load(path, allow_pickle=False)
    out: dict[str, Any] = {"timesteps": int(data["timesteps"][-1])}
    out["mean_reward"] = float(np.mean(data["results"][-1]))
    if "successes" in data.files and data["successes"].size:
        out["success_rate"] = float(np.mean(data["successes"][-1]))
    return {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in out.items()}
