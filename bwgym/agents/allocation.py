"""Allocation policies as agents: the default allocation env, PPO training and loading a trained policy.

The env (:class:`bwgym.envs.allocation.AllocateBandwidthEnv`) lives in the envs layer and takes
its frozen task agent as an argument; this module, one layer up, supplies the agent:

* :func:`make_allocation_env` - the entry point of ``bwgym/AllocateBandwidth-v0``:
  ``gymnasium.make("bwgym/AllocateBandwidth-v0")`` with no arguments is LocateLift + the shipped
  task-aware NDPCA + the shipped behaviour-cloning agent + :func:`~bwgym.envs.allocation.default_traces`;
* :func:`train_allocator` - stock SB3 PPO on vectorised allocation envs, TensorBoard, periodic
  evaluation on held-out traces, ``policy.ckpt`` in the project's checkpoint format (what
  ``bwgym train allocator`` runs);
* :func:`load_learned_allocator` - a :class:`~bwgym.envs.allocators.LearnedAllocator` from that
  checkpoint, for a scenario (``allocator: {name: learned, checkpoint: ...}``). A checkpoint
  trained for another number of views or another observation spec is a ``ValueError`` naming both.

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bwgym.agents.rl import CHECKPOINT_KINDS, POLICY_FILE, RLConfig, load_rl, train_rl
from bwgym.common.checkpoint import CheckpointError, check_spec, load_checkpoint
from bwgym.envs.allocation import DEFAULT_TASK_ENV, AllocateBandwidthEnv, GeneratedTraces, default_traces
from bwgym.envs.allocators import AllocationObserver, LearnedAllocator

__all__ = [
    "ALLOCATION_ENV_ID",
    "AllocatorTrainConfig",
    "default_task_agent",
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


def shipped_allocator(codec_name: str, env_id: str = DEFAULT_TASK_ENV) -> Path:
    """The shipped allocation policy for ``codec_name`` on ``env_id``.

    Example:
        >>> shipped_allocator("ndpca", "bwgym/LocateLift-v1").name
        'allocator_ndpca_locate_lift_v1.ckpt'

    Raises:
        FileNotFoundError: none is shipped for that pair (the message says how to train one).
    """
    from bwgym.common.checkpoint import shipped_file

    path = SHIPPED_DIR / shipped_file(f"allocator_{codec_name}_locate_lift.ckpt", env_id)
    if env_id.split("/")[-1].split("-v")[0] != "LocateLift" or not path.is_file():
        raise FileNotFoundError(
            f"no allocation policy is shipped for codec {codec_name!r} on {env_id!r} (shipped: "
            f"{sorted(p.name for p in SHIPPED_DIR.glob('allocator_*.ckpt'))}); train one with "
            "`bwgym train allocator --scenario ... --out FOLDER` and name the folder as the checkpoint"
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
def _default_rl() -> RLConfig:
    return RLConfig(
        algo="ppo", env_id=ALLOCATION_ENV_ID, env_kwargs={}, n_envs=2, device="cpu", out_dir="runs/allocator"
    )


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

    train_rl(
        rl,
        progress=progress,
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
