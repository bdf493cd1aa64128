r"""The ``bwgym train codec`` sub-command.

``bwgym/cli.py`` calls :func:`register` with its top-level sub-parsers and the sub-parsers of
``bwgym train``; the command stores its handler as ``args.func``, a function ``(args) -> int``
(the process exit code)::

    bwgym train codec --codec ndpca_agnostic --env bwgym/LocateLift-v0 --out runs/codecs/agnostic.pt
    bwgym train codec --codec ndpca --demos data/lift_demos --init runs/codecs/agnostic.pt \\
        --out runs/codecs/ndpca.pt --steps 500 --batch-size 16
    bwgym train codec --codec linear_dpca --out runs/codecs/linear_dpca.npz

Without ``--demos`` it collects ``--episodes`` expert episodes first (into a temporary folder).
Task-aware variants (``ndpca``, ``dae``, ``jae``) train through the frozen BC agent ``--agent``
(default: the shipped one). TensorBoard logs go to ``--logdir`` (default ``<out>.tb``), and a
``<out>.json`` next to the checkpoint records the command, the config and the validation metrics.
To regenerate every shipped checkpoint, run ``python -m bwgym.codecs.train --all``.
Errors in the user's input print one line to stderr and return exit code 2.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from bwgym.agents.commands import parse_env_kwargs as _env_kwargs

__all__ = ["VARIANTS", "cmd_train_codec", "register"]

#: The ``--codec`` choices (``bwgym.codecs.train.VARIANTS``; repeated here so that building the
#: parser does not import torch).
VARIANTS = ("ndpca", "ndpca_agnostic", "dae", "jae", "linear_dpca", "pca")


def _fail(message: str) -> int:
    print(f"bwgym: error: {message}", file=sys.stderr)
    return 2


def cmd_train_codec(args: argparse.Namespace) -> int:
    """Train (or fit) one codec variant and write ``args.out`` and ``<out>.json``."""
    import torch

    from bwgym.codecs.train import LEARNED, load_frames, train_variant

    command = "bwgym " + " ".join(shlex.quote(a) for a in (getattr(args, "argv", None) or sys.argv[1:]))
    out = Path(args.out)
    learned = args.codec in LEARNED
    want_suffix = ".pt" if learned else ".npz"
    if out.suffix != want_suffix:
        return _fail(f"--out for --codec {args.codec} must end in {want_suffix}, got {str(out)!r}")
    if args.init and not learned:
        return _fail(f"--init applies to learned codecs ({', '.join(LEARNED)}), not {args.codec}")
    try:
        env_kwargs = _env_kwargs(args.env_kwargs)
        start = time.perf_counter()
        frames, episode_index = load_frames(
            args.demos, env_id=args.env, episodes=args.episodes, seed=args.seed, env_kwargs=env_kwargs
        )
        agent, agent_path = None, args.agent
        lambda_task = (
            args.lambda_task
            if args.lambda_task is not None
            else LEARNED.get(args.codec, ({}, {}))[1].get("lambda_task", 0.0)
        )
        if learned and lambda_task > 0:
            from bwgym.agents.bc import SHIPPED_CHECKPOINT, BCAgent

            shape = next(iter(frames.values())).shape[1:3]
            agent_path = args.agent or SHIPPED_CHECKPOINT
            agent = BCAgent.load(agent_path, env_id=args.env, views=list(frames), image_shape=shape)
        overrides: dict[str, Any] = {}
        if learned:
            overrides = dict(
                steps=args.steps,
                seed=args.seed,
                device=args.device,
                batch_size=args.batch_size,
                lr=args.lr,
                latent_dim=args.latent_dim,
                init=args.init,
                threads=args.threads,
            )
            if args.lambda_task is not None:
                overrides["lambda_task"] = args.lambda_task
            if args.lambda_rec is not None:
                overrides["lambda_rec"] = args.lambda_rec
        log_dir = Path(args.logdir) if args.logdir else out.with_suffix(".tb")
        codec = train_variant(
            args.codec,
            out,
            frames,
            episode_index,
            agent=agent,
            env_id=args.env,
            log_dir=log_dir if learned else None,
            agent_path=agent_path,
            **overrides,
        )
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as err:
        return _fail(str(err))
    report = dict(
        command=command,
        codec=args.codec,
        checkpoint=str(out),
        seconds=round(time.perf_counter() - start, 1),
        frames=int(len(episode_index)),
        train_config=getattr(codec, "train_config", {}),
        metrics=getattr(codec, "metrics", {}),
        torch=torch.__version__,
    )
    out.with_name(out.name + ".json").write_text(json.dumps(report, indent=1) + "\n")
    size_kb = out.stat().st_size / 1e3
    print(
        f"{codec!r}\nwrote {out} ({size_kb:.0f} kB) and {out.name}.json"
        + (f"; TensorBoard: tensorboard --logdir {log_dir}" if learned else "")
    )
    return 0


def register(subparsers: Any, train_subparsers: Any) -> None:
    """Add ``codec`` to the sub-parsers of ``bwgym train``.

    Args:
        subparsers: the result of the ``bwgym`` parser's ``add_subparsers()`` (unused: the codec
            commands all live under ``train``; the argument keeps the signature of the other
            ``register`` functions).
        train_subparsers: the result of the ``train`` parser's ``add_subparsers()``.

    """
    p = train_subparsers.add_parser(
        "codec",
        help="train a learned codec (NDPCA, DAE, JAE) or fit a linear one on expert frames",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--codec", required=True, choices=VARIANTS, help="which codec variant")
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
    p.add_argument("--out", required=True, help="checkpoint to write (.pt learned, .npz linear)")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the variant's recipe)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--latent-dim", type=int, default=None, help="latent features per view")
    p.add_argument("--lambda-task", type=float, default=None, help="weight of the task loss (eq. 8)")
    p.add_argument("--lambda-rec", type=float, default=None, help="weight of the reconstruction loss (eq. 8)")
    p.add_argument("--init", default=None, help="start from this learned checkpoint's network")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default 1)")
    p.add_argument("--logdir", default=None, help="TensorBoard folder (default: <out>.tb)")
    p.set_defaults(func=cmd_train_codec)
