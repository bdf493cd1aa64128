r"""The ``bwgym train codec`` sub-command: train or fit any registered codec.

::

    bwgym train codec --codec ndpca_agnostic --env bwgym/LocateLift-v0 --out runs/codecs/agnostic.ckpt
    bwgym train codec --codec ndpca --demos data/lift_demos --init runs/codecs/agnostic.ckpt \\
        --out runs/codecs/ndpca.ckpt --steps 500 --batch-size 16
    bwgym train codec --codec linear_dpca --out runs/codecs/linear_dpca.ckpt
    bwgym train codec --codec gray_wyner --kind shared --beta 1.5 --etas 0.01,0.1,0.5 --steps 3000 \\
        --out runs/codecs/gw.ckpt
    bwgym train --all --kind codec --env bwgym/LocateLift-v1   # the shipped v1 set (bwgym zoo)

It collects ``--episodes`` expert episodes first: into ``--demos`` when that folder holds no
finished dataset (so the next command reads them), else into a temporary folder.
``gray_wyner`` trains on its own synthetic two-source data (paper 002, App. D.3) instead of
LocateLift frames: ``--kind``, ``--beta`` and ``--etas`` (its rate ladder) apply to it alone, and
the frame options (``--demos``, ``--agent``, ``--batch-size``...) do not apply to it.
Task-aware codecs train through the frozen BC agent ``--agent`` (default: the shipped one).
TensorBoard logs go to ``--logdir`` (default ``<out>.tb``), and the sidecar ``<out stem>.json`` next
to the checkpoint records the command, the config and the validation metrics. Errors in the user's
input print one line to stderr and return exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from bwgym.cli.args import (
    MAX_DEMO_EPISODES,
    MAX_SEED,
    add_env_options,
    add_torch_options,
    bounded_float,
    bounded_int,
    check_device,
    check_env_id,
    parse_env_kwargs,
    values,
)

__all__ = ["cmd_train_codec", "load_frames", "register"]

#: Most optimiser steps of one codec training (``--steps``).
MAX_STEPS = 10_000_000
#: Largest minibatch of frames (``--batch-size``).
MAX_BATCH_SIZE = 65_536
#: Most latent features per view (``--latent-dim``): an 84 px RGB view has 21,168 values.
MAX_LATENT_DIM = 4_096
#: Most rate points of ``--etas`` (each trains its own rate weight).
MAX_RATE_POINTS = 64
#: Largest loss weight (``--lambda-task``, ``--lambda-rec``).
MAX_LOSS_WEIGHT = 1e6


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
        demos: a folder written by :func:`bwgym.agents.demos.collect_demos`; a folder without a
            finished dataset gets ``episodes`` episodes collected into it first; None collects them
            into a temporary folder (deleted afterwards).
        env_id: env to collect from (checked against the demos' env when both are given).
        episodes: episodes to collect when ``demos`` holds no finished dataset.
        seed: first env seed of the collection.
        env_kwargs: keyword arguments of the env.
        progress: show progress bars.
    """
    from bwgym.agents.demos import DemoDataset, collect_demos

    if demos is not None:
        if not (Path(demos) / "meta.json").is_file():
            collect_demos(
                demos, env_id=env_id, episodes=episodes, seed=seed, env_kwargs=env_kwargs, progress=progress
            )
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
    from bwgym.common.checkpoint import shipped_file

    # the shipped agent of that env: bc_locate_lift.ckpt (v0), bc_locate_lift_v1.ckpt (v1), ...
    default = SHIPPED_CHECKPOINT.with_name(shipped_file(SHIPPED_CHECKPOINT.name, env_id))
    path = Path(agent_path) if agent_path else default
    shape = next(iter(frames.values())).shape[1:3]
    return BCAgent.load(path, env_id=env_id, views=list(frames), image_shape=shape), path


def _needs_task_model(name: str, overrides: Mapping[str, Any]) -> bool:
    from bwgym.codecs import codec_entry

    lambda_task = overrides.get("lambda_task")
    if lambda_task is None:
        lambda_task = codec_entry(name).recipe.get("lambda_task", 0.0)
    return float(lambda_task) > 0


def train_gray_wyner(
    out: Path,
    log_dir: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    progress: bool = True,
    **options: Any,
) -> Any:
    """Train a :class:`~bwgym.codecs.multiterminal.gray_wyner.GrayWynerCodec` on its synthetic data into ``out``.

    ``options`` are those of :meth:`~bwgym.codecs.multiterminal.gray_wyner.GrayWynerCodec.train` (``kind``,
    ``beta``, ``etas``, ``steps``, ``seed``...); ``threads`` sets torch's CPU threads.
    """
    import torch

    from bwgym.codecs.multiterminal.gray_wyner import GrayWynerCodec

    if threads:
        torch.set_num_threads(int(threads))
    return GrayWynerCodec.train(out=out, log_dir=log_dir, progress=progress, **options)


#: Shipped codecs that train on their own synthetic data rather than LocateLift frames: name -> trainer
#: ``(out, log_dir=, threads=, progress=, **recipe)``; the recipe is the registry's.
SYNTHETIC: dict[str, Callable[..., Any]] = {"gray_wyner": train_gray_wyner}
#: Options of ``bwgym train codec`` for the codecs of :data:`SYNTHETIC` only (read with their recipe).
SYNTHETIC_OPTIONS = ("kind", "beta", "etas")
#: Options that select or shape LocateLift frames, which the codecs of :data:`SYNTHETIC` do not use.
FRAME_OPTIONS = (
    "demos",
    "env_kwargs",
    "agent",
    "batch_size",
    "lr",
    "latent_dim",
    "lambda_task",
    "lambda_rec",
    "init",
)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _train_frames_codec(args: argparse.Namespace, out: Path, log_dir: Path) -> tuple[Any, dict[str, Any]]:
    """Train a registered codec on LocateLift frames; return it and its report entries."""
    from bwgym.codecs.train import train_registered

    given = [_flag(k) for k in SYNTHETIC_OPTIONS if getattr(args, k) is not None]
    if given:
        raise ValueError(f"{', '.join(given)} apply to --codec {' or '.join(SYNTHETIC)} only")
    overrides = values(args, "steps", "batch_size", "lr", "latent_dim", "init", "lambda_task", "lambda_rec")
    overrides.update(values(args, "threads", "seed", "device"))
    frames, episode_index = load_frames(
        args.demos,
        env_id=args.env,
        episodes=args.episodes,
        seed=args.seed,
        env_kwargs=parse_env_kwargs(args.env_kwargs),
    )
    task_model, task_path = None, None
    if _needs_task_model(args.codec, overrides):
        task_model, task_path = _task_model(args.env, frames, args.agent)
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
    report = dict(
        frames=int(len(episode_index)),
        train_config=getattr(codec, "train_config", {}),
        metrics=getattr(codec, "metrics", {}),
    )
    return codec, report


def _train_synthetic_codec(args: argparse.Namespace, out: Path, log_dir: Path) -> tuple[Any, dict[str, Any]]:
    """Train a codec of :data:`SYNTHETIC` with its registered recipe, overridden by the flags given."""
    from bwgym.codecs import codec_entry

    given = [_flag(k) for k in FRAME_OPTIONS if getattr(args, k) is not None]
    if given:
        raise ValueError(
            f"{', '.join(given)} do not apply to --codec {args.codec}: it trains on its own synthetic data"
        )
    options = dict(codec_entry(args.codec).recipe, seed=args.seed)
    options.update(
        {k: getattr(args, k) for k in ("steps", *SYNTHETIC_OPTIONS) if getattr(args, k) is not None}
    )
    codec = SYNTHETIC[args.codec](out, log_dir=log_dir, threads=args.threads or 1, **options)
    meta = codec.metadata
    config = {**meta.get("train", {}), **asdict(codec.config), "dataset": meta.get("dataset")}
    return codec, dict(train_config=config, metrics=meta.get("metrics", []))


def cmd_train_codec(args: argparse.Namespace) -> int:
    """Train (or fit) one registered codec and write ``args.out`` and its sidecar ``<out stem>.json``."""
    from bwgym.codecs import codec_entry
    from bwgym.common.checkpoint import sidecar_path

    try:
        check_device(args.device)
        # Frames come from the LocateLift expert, unless the codec trains on its own synthetic data.
        if args.codec not in SYNTHETIC:
            finished = bool(args.demos) and (Path(args.demos) / "meta.json").is_file()
            check_env_id("--env", args.env, expert=not finished)
        if not codec_entry(args.codec).trainable:
            return _fail(
                f"--codec {args.codec} has nothing to train; trainable: the learned and linear codecs"
            )
        out = Path(args.out)
        if out.suffix != ".ckpt":
            return _fail(f"--out must end in .ckpt (the bwgym checkpoint format), got {str(out)!r}")
        if not out.parent.exists():
            return _fail(f"--out folder {str(out.parent)!r} does not exist")
        log_dir = Path(args.logdir) if args.logdir else out.with_suffix(".tb")
        start = time.perf_counter()
        train = _train_synthetic_codec if args.codec in SYNTHETIC else _train_frames_codec
        codec, details = train(args, out, log_dir)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as err:
        return _fail(str(err))
    command = "bwgym " + " ".join(shlex.quote(a) for a in (getattr(args, "argv", None) or sys.argv[1:]))
    report = dict(
        command=command,
        codec=args.codec,
        checkpoint=str(out),
        seconds=round(time.perf_counter() - start, 1),
        **details,
    )
    sidecar = sidecar_path(out)
    sidecar.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{codec!r}\nwrote {out} ({out.stat().st_size / 1e3:.0f} kB) and {sidecar.name}")
    return 0


def _float_list(text: str) -> tuple[float, ...]:
    """An argparse type: comma-separated numbers, e.g. ``0.01,0.1,0.5``."""
    try:
        numbers = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, e.g. 0.01,0.1,0.5, got {text[:80]!r}"
        ) from None
    if not numbers:
        raise argparse.ArgumentTypeError(f"expected at least one number, got {text!r}")
    if len(numbers) > MAX_RATE_POINTS or not all(math.isfinite(v) and v >= 0 for v in numbers):
        raise argparse.ArgumentTypeError(
            f"expected 1 to {MAX_RATE_POINTS} finite numbers >= 0 (MAX_RATE_POINTS), got {text[:80]!r}"
        )
    return numbers


#: Options that replace the codec's recipe: (flag, type, help); each is None (the recipe's) unless given.
_RECIPE_OPTIONS = (
    ("--steps", bounded_int("--steps", 1, MAX_STEPS, "MAX_STEPS"), "optimiser steps"),
    ("--batch-size", bounded_int("--batch-size", 1, MAX_BATCH_SIZE), "frames per optimiser step"),
    ("--lr", bounded_float("--lr", 0.0, 1.0, low_open=True), "Adam learning rate"),
    (
        "--latent-dim",
        bounded_int("--latent-dim", 1, MAX_LATENT_DIM, "MAX_LATENT_DIM"),
        "latent features per view",
    ),
    (
        "--lambda-task",
        bounded_float("--lambda-task", 0.0, MAX_LOSS_WEIGHT),
        "weight of the task loss (eq. 8)",
    ),
    (
        "--lambda-rec",
        bounded_float("--lambda-rec", 0.0, MAX_LOSS_WEIGHT),
        "weight of the reconstruction loss (eq. 8)",
    ),
)


def register(subparsers: Any, train_subparsers: Any) -> None:
    """Add ``codec`` to the sub-parsers of ``bwgym train``."""
    p = train_subparsers.add_parser(
        "codec",
        help="train a learned codec (NDPCA, DAE, JAE, Gray-Wyner) or fit a linear one",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--codec", required=True, help="a registered codec name (`bwgym codecs` lists them)")
    add_env_options(p)
    p.add_argument(
        "--demos",
        default=None,
        help="demo folder from `bwgym collect`; one without a finished dataset is collected into "
        "(default: collect --episodes into a temporary folder)",
    )
    p.add_argument(
        "--episodes",
        type=bounded_int("--episodes", 1, MAX_DEMO_EPISODES, "MAX_DEMO_EPISODES"),
        default=150,
        help="episodes to collect without a finished --demos (%(default)s)",
    )
    p.add_argument("--agent", default=None, help="frozen BC agent checkpoint (default: the shipped one)")
    p.add_argument("--out", required=True, help="checkpoint to write (.ckpt)")
    for flag, kind, text in _RECIPE_OPTIONS:
        p.add_argument(flag, type=kind, default=None, help=f"{text} (default: the codec's recipe)")
    p.add_argument(
        "--init", default=None, help="start from this learned checkpoint's network (or a codec name)"
    )
    gw = p.add_argument_group("--codec gray_wyner only (default: its registered recipe)")
    gw.add_argument(
        "--kind",
        default=None,
        help="architecture: shared (the paper's), separated, combined, joint or independent",
    )
    gw.add_argument(
        "--beta",
        type=bounded_float("--beta", 0.0, 2.0, low_open=True),
        default=None,
        help="weight of the common rate R0, in (0, 2] (1: transmit, 2: receive)",
    )
    gw.add_argument(
        "--etas",
        type=_float_list,
        default=None,
        metavar="ETA,...",
        help="rate weights, one rate point each (>= 0), e.g. 0.01,0.1,0.5",
    )
    p.add_argument("--seed", type=bounded_int("--seed", 0, MAX_SEED - MAX_DEMO_EPISODES), default=0)
    add_torch_options(p, threads=None)
    p.add_argument("--logdir", default=None, help="TensorBoard folder (default: <out>.tb)")
    p.set_defaults(func=cmd_train_codec)
