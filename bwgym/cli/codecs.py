r"""The ``bwgym train codec`` sub-command: train or fit any registered codec, or every shipped one.

::

    bwgym train codec --codec ndpca_agnostic --env bwgym/LocateLift-v0 --out runs/codecs/agnostic.ckpt
    bwgym train codec --codec ndpca --demos data/lift_demos --init runs/codecs/agnostic.ckpt \\
        --out runs/codecs/ndpca.ckpt --steps 500 --batch-size 16
    bwgym train codec --codec linear_dpca --out runs/codecs/linear_dpca.ckpt
    bwgym train codec --all            # every shipped checkpoint, from scratch (make checkpoints)

Without ``--demos`` it collects ``--episodes`` expert episodes first (into a temporary folder).
Task-aware codecs train through the frozen BC agent ``--agent`` (default: the shipped one).
TensorBoard logs go to ``--logdir`` (default ``<out>.tb``), and ``<out>.json`` next to the
checkpoint records the command, the config and the validation metrics. Errors in the user's
input print one line to stderr and return exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bwgym.cli.agents import parse_env_kwargs

__all__ = ["cmd_train_codec", "load_frames", "register", "regenerate_shipped"]


def _fail(message: str) -> int:
    print(f"bwgym train codec: {message}", file=sys.stderr)
    return 2


def load_frames(
    demos: str | os.PathLike[str] | None = None,
    env_id: str = "bwgym/LocateLift-v0",
    episodes: int = 120,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Expert frames of the link views ``({view: (N, ...)}, episode_index (N,))``.

    Args:
        demos: a folder written by :func:`bwgym.agents.demos.collect_demos`; when None, ``episodes``
            episodes are collected into a temporary folder (deleted afterwards).
        env_id: env to collect from (checked against the demos' env when both are given).
        episodes: episodes to collect when ``demos`` is None.
        seed: first env seed of the collection.
        env_kwargs: keyword arguments of the env.
        progress: show progress bars.
    """
    from bwgym.agents.demos import DemoDataset, collect_demos

    if demos is not None:
        dataset = DemoDataset(demos)
        if env_id and dataset.env_id != env_id:
            raise ValueError(f"demos in {demos} come from env {dataset.env_id!r}, expected {env_id!r}")
        obs, _, episode_index = dataset.arrays(progress=progress)
        return {v: obs[v] for v in dataset.view_names}, episode_index
    with tempfile.TemporaryDirectory(prefix="bwgym_codec_demos_") as tmp:
        path = collect_demos(
            Path(tmp) / "demos",
            env_id=env_id,
            episodes=episodes,
            seed=seed,
            env_kwargs=env_kwargs,
            progress=progress,
        )
        dataset = DemoDataset(path)
        obs, _, episode_index = dataset.arrays(progress=progress)
        return {v: obs[v].copy() for v in dataset.view_names}, episode_index.copy()


def _task_model(env_id: str, frames: Mapping[str, np.ndarray], agent_path: str | None) -> tuple[Any, Path]:
    """The frozen BC agent whose actions task-aware codecs preserve, and its file."""
    from bwgym.agents.bc import SHIPPED_CHECKPOINT, BCAgent

    path = Path(agent_path) if agent_path else SHIPPED_CHECKPOINT
    shape = next(iter(frames.values())).shape[1:3]
    return BCAgent.load(path, env_id=env_id, views=list(frames), image_shape=shape), path


def _needs_task_model(name: str, overrides: Mapping[str, Any]) -> bool:
    from bwgym.codecs import codec_entry

    lambda_task = overrides.get("lambda_task")
    if lambda_task is None:
        lambda_task = codec_entry(name).recipe.get("lambda_task", 0.0)
    return float(lambda_task) > 0


def regenerate_shipped(
    out_dir: str | os.PathLike[str] | None = None,
    demos: str | os.PathLike[str] | None = None,
    agent_path: str | None = None,
    names: Sequence[str] | None = None,
    scale_steps: float = 1.0,
    log_root: str | os.PathLike[str] | None = "runs/codecs",
    device: str = "auto",
    threads: int = 1,
    progress: bool = True,
) -> dict[str, Path]:
    """Retrain the shipped codec checkpoints from scratch, following :data:`~bwgym.codecs.train.SHIPPED_RECIPE`.

    The task-aware codecs are fine-tuned from the task-agnostic NDPCA written first into ``out_dir``.
    """
    from bwgym.codecs import codec_entry
    from bwgym.codecs.registry import CHECKPOINT_DIR
    from bwgym.codecs.train import SHIPPED_ORDER, SHIPPED_RECIPE, train_registered

    names = list(names or SHIPPED_ORDER)
    unknown = set(names) - set(SHIPPED_ORDER)
    if unknown:
        raise ValueError(f"unknown shipped codecs {sorted(unknown)}; expected some of {list(SHIPPED_ORDER)}")
    env_id, seed = SHIPPED_RECIPE["env_id"], SHIPPED_RECIPE["seed"]
    frames, episode_index = load_frames(
        demos, env_id=env_id, episodes=SHIPPED_RECIPE["episodes"], seed=seed, progress=progress
    )
    task_model, task_path = None, None
    if any(_needs_task_model(n, {}) for n in names):
        task_model, task_path = _task_model(env_id, frames, agent_path)
    out_dir = Path(out_dir or CHECKPOINT_DIR)
    pretrained = out_dir / str(codec_entry("ndpca_agnostic").checkpoint)
    written = {}
    for name in [n for n in SHIPPED_ORDER if n in names]:
        entry = codec_entry(name)
        options: dict[str, Any] = {}
        if entry.needs_checkpoint and name != "linear_dpca" and name != "pca":
            stage = "pretrain" if name == "ndpca_agnostic" else "finetune"
            options = dict(SHIPPED_RECIPE[stage], seed=seed, device=device, threads=threads)
            options["steps"] = max(1, int(round(options["steps"] * scale_steps)))
            if stage == "finetune":
                if not pretrained.is_file():
                    raise FileNotFoundError(
                        f"{name} is fine-tuned from {pretrained}; train ndpca_agnostic first"
                    )
                options["init"] = str(pretrained)
            options["log_dir"] = None if log_root is None else Path(log_root) / name
        t0 = time.perf_counter()
        path = out_dir / str(entry.checkpoint)
        train_registered(
            name,
            frames,
            path,
            env_id=env_id,
            episode_index=episode_index,
            task_model=task_model,
            task_model_path=task_path,
            progress=progress,
            **options,
        )
        written[name] = path
        print(
            f"{name:15s} -> {path} ({path.stat().st_size / 1e3:.0f} kB, {time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    return written


def cmd_train_codec(args: argparse.Namespace) -> int:
    """Train (or fit) one registered codec and write ``args.out`` and ``<out>.json``, or all (``--all``)."""
    from bwgym.codecs import codec_entry
    from bwgym.codecs.train import train_registered

    try:
        if args.all:
            regenerate_shipped(
                args.out_dir,
                demos=args.demos,
                agent_path=args.agent,
                names=args.only,
                scale_steps=args.scale_steps,
                device=args.device,
                threads=args.threads or 1,
            )
            return 0
        if not args.codec or not args.out:
            return _fail("--codec and --out are required (or --all for every shipped checkpoint)")
        entry = codec_entry(args.codec)
        if not entry.trainable:
            return _fail(
                f"--codec {args.codec} has nothing to train; trainable: the learned and linear codecs"
            )
        for flag in ("steps", "batch_size", "latent_dim", "episodes", "threads"):
            value = getattr(args, flag)
            if value is not None and value < 1:
                return _fail(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
        out = Path(args.out)
        if out.suffix != ".ckpt":
            return _fail(f"--out must end in .ckpt (the bwgym checkpoint format), got {str(out)!r}")
        if not out.parent.exists():
            return _fail(f"--out folder {str(out.parent)!r} does not exist")
        overrides = {
            k: getattr(args, k)
            for k in (
                "steps",
                "batch_size",
                "lr",
                "latent_dim",
                "init",
                "lambda_task",
                "lambda_rec",
                "threads",
            )
        }
        overrides.update(seed=args.seed, device=args.device)
        env_kwargs = parse_env_kwargs(args.env_kwargs)
        start = time.perf_counter()
        frames, episode_index = load_frames(
            args.demos, env_id=args.env, episodes=args.episodes, seed=args.seed, env_kwargs=env_kwargs
        )
        task_model, task_path = None, None
        if _needs_task_model(args.codec, overrides):
            task_model, task_path = _task_model(args.env, frames, args.agent)
        log_dir = Path(args.logdir) if args.logdir else out.with_suffix(".tb")
        codec = train_registered(
            args.codec,
            frames,
            out,
            env_id=args.env,
            episode_index=episode_index,
            task_model=task_model,
            task_model_path=task_path,
            log_dir=log_dir,
            **overrides,
        )
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as err:
        return _fail(str(err))
    command = "bwgym " + " ".join(shlex.quote(a) for a in (getattr(args, "argv", None) or sys.argv[1:]))
    report = dict(
        command=command,
        codec=args.codec,
        checkpoint=str(out),
        seconds=round(time.perf_counter() - start, 1),
        frames=int(len(episode_index)),
        train_config=getattr(codec, "train_config", {}),
        metrics=getattr(codec, "metrics", {}),
    )
    out.with_name(out.name + ".json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"{codec!r}\nwrote {out} ({out.stat().st_size / 1e3:.0f} kB) and {out.name}.json")
    return 0


def register(subparsers: Any, train_subparsers: Any) -> None:
    """Add ``codec`` to the sub-parsers of ``bwgym train``."""
    p = train_subparsers.add_parser(
        "codec",
        help="train a learned codec (NDPCA, DAE, JAE) or fit a linear one on expert frames",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--codec", default=None, help="a registered codec name (`bwgym codecs` lists them)")
    p.add_argument("--all", action="store_true", help="retrain every shipped checkpoint from scratch")
    p.add_argument("--only", nargs="+", default=None, help="with --all: only these shipped codecs")
    p.add_argument("--out-dir", default=None, help="with --all: where to write (default: the package's)")
    p.add_argument("--scale-steps", type=float, default=1.0, help="with --all: multiply every step count")
    p.add_argument("--env", default="bwgym/LocateLift-v0", help="env id (default: %(default)s)")
    p.add_argument(
        "--env-kwargs", default=None, help="JSON keyword arguments of the env, e.g. '{\"image_size\": 64}'"
    )
    p.add_argument(
        "--demos", default=None, help="demo folder from `bwgym collect` (default: collect --episodes)"
    )
    p.add_argument(
        "--episodes", type=int, default=150, help="episodes to collect without --demos (%(default)s)"
    )
    p.add_argument("--agent", default=None, help="frozen BC agent checkpoint (default: the shipped one)")
    p.add_argument("--out", default=None, help="checkpoint to write (.ckpt)")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the codec's recipe)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--latent-dim", type=int, default=None, help="latent features per view")
    p.add_argument("--lambda-task", type=float, default=None, help="weight of the task loss (eq. 8)")
    p.add_argument("--lambda-rec", type=float, default=None, help="weight of the reconstruction loss (eq. 8)")
    p.add_argument(
        "--init", default=None, help="start from this learned checkpoint's network (or a codec name)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default 1)")
    p.add_argument("--logdir", default=None, help="TensorBoard folder (default: <out>.tb)")
    p.set_defaults(func=cmd_train_codec)
