"""Training and loading the shipped two-receiver pair: Gray-Wyner (Shared) and two independent codecs.

Both are :class:`~bwgym.codecs.multiterminal.gray_wyner.GrayWynerCodec` models on the features of
:mod:`~bwgym.scenarios.two_receivers.features`; the baseline is the same class with
``common_dim = 0`` (``private_k`` alone serves receiver ``k``), its latent size per receiver the
Gray-Wyner model's ``common + private``, trained with the same data, objective (``beta`` aside: it
has no common rate) and steps. :func:`ship_pair` regenerates both shipped files (about 4 minutes on
one free CPU thread).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bwgym.codecs.core.registry import CHECKPOINT_DIR
from bwgym.codecs.multiterminal.gray_wyner import (
    GrayWynerCodec,
    GrayWynerConfig,
    evaluate_net,
    train_gray_wyner,
)
from bwgym.scenarios.two_receivers.features import ENV_ID, VIEWS, FeaturePairs, ViewFeatures, collect_frames

__all__ = [
    "BASELINE_CHECKPOINT",
    "RECIPE",
    "SHIPPED_CHECKPOINT",
    "TASKS",
    "check_features",
    "load_pair",
    "ship_pair",
    "train_pair",
]

SHIPPED_CHECKPOINT = CHECKPOINT_DIR / "gray_wyner_locate_lift_v1.ckpt"
BASELINE_CHECKPOINT = CHECKPOINT_DIR / "gray_wyner_locate_lift_v1_separate.ckpt"
TASKS = ("bc_features", "side_coefficients")
#: What a checkpoint trained here records as the command that made it.
SHIP_COMMAND = "bwgym.scenarios.two_receivers.ship_pair()"
#: The shipped recipe (one CPU thread): rate points, sizes, steps, data.
RECIPE: dict[str, Any] = {
    "etas": (0.001, 0.003, 0.01, 0.03, 0.1, 0.3),
    "beta": 1.0,
    "common_dim": 16,
    "private_dim": 16,
    "hidden": 256,
    "steps": 3000,
    "batch_size": 128,
    "episodes": 200,
    "seed": 0,
}


def train_pair(
    features: ViewFeatures,
    data: FeaturePairs,
    etas: Sequence[float] = RECIPE["etas"],
    beta: float = RECIPE["beta"],
    common_dim: int = RECIPE["common_dim"],
    private_dim: int = RECIPE["private_dim"],
    hidden: int = RECIPE["hidden"],
    steps: int = RECIPE["steps"],
    batch_size: int = RECIPE["batch_size"],
    seed: int = RECIPE["seed"],
    heldout: FeaturePairs | None = None,
    progress: bool = False,
) -> tuple[GrayWynerCodec, GrayWynerCodec]:
    """Train the Gray-Wyner codec (Shared) and its baseline (two independent codecs) on features.

    Both get the same data, rate points, steps and seed; the baseline's private latent per
    receiver is ``common_dim + private_dim``.
    """
    maps = (features.head, None)
    common = dict(
        n_elements=1,
        hidden=hidden,
        context_hidden=64,
        etas=tuple(sorted(etas)),
        x_dims=features.x_dims,
        z_dims=features.z_dims,
        gamma=1.0,
    )
    configs = {
        "shared": GrayWynerConfig(
            kind="shared", beta=beta, common_dim=common_dim, private_dim=private_dim, **common
        ),
        "separate": GrayWynerConfig(
            kind="separated", beta=1.0, common_dim=0, private_dim=common_dim + private_dim, **common
        ),
    }
    codecs = []
    for name, cfg in configs.items():
        start = time.perf_counter()
        net = train_gray_wyner(
            cfg, data, steps=steps, batch_size=batch_size, seed=seed, progress=progress, distortion_maps=maps
        )
        seconds = time.perf_counter() - start
        metrics = []
        if heldout is not None:
            n = min(len(heldout), 2000)
            metrics = [
                evaluate_net(net, heldout, n_samples=n, rate_idx=j, distortion_maps=maps)
                for j in range(cfg.n_rates)
            ]
        codec = GrayWynerCodec(
            net,
            view_names=VIEWS,
            task_names=TASKS,
            env_id=ENV_ID,
            device="cpu",
            metadata={
                "role": "gray_wyner" if name == "shared" else "two independent codecs (baseline)",
                "features": features.describe(),
                "train": {
                    "steps": steps,
                    "batch_size": batch_size,
                    "seed": seed,
                    "frames": len(data),
                    "seconds": round(seconds, 1),
                },
                "metrics": metrics,
                "command": SHIP_COMMAND,
            },
        )
        codecs.append(codec)
    return codecs[0], codecs[1]


def load_pair(features: ViewFeatures | None = None) -> tuple[GrayWynerCodec, GrayWynerCodec]:
    """The shipped Gray-Wyner codec and its baseline; refuse them when built on other features."""
    pair = []
    for path in (SHIPPED_CHECKPOINT, BASELINE_CHECKPOINT):
        codec = GrayWynerCodec.load(path, device="cpu")
        if features is not None:
            check_features(codec, features, path.name)
        pair.append(codec)
    return pair[0], pair[1]


def check_features(codec: GrayWynerCodec, features: ViewFeatures, name: str) -> None:
    """Raise ``ValueError`` unless ``codec`` (checkpoint ``name``) was trained on ``features``."""
    want = features.describe()
    have = codec.metadata.get("features", {})
    if have.get("bc_sha256") != want["bc_sha256"] or have.get("x_dims") != want["x_dims"]:
        raise ValueError(
            f"{name} was trained on features of BC agent {have.get('bc_sha256')}, these come from "
            f"{want['bc_sha256']}: retrain with `bwgym.scenarios.two_receivers.ship_pair()` (two-receiver "
            "Gray-Wyner checkpoints record their features)"
        )


def ship_pair(
    out_dir: str | Path | None = CHECKPOINT_DIR,
    episodes: int = RECIPE["episodes"],
    steps: int = RECIPE["steps"],
    progress: bool = True,
) -> tuple[GrayWynerCodec, GrayWynerCodec]:
    """Collect frames, train the pair on their features and write both shipped checkpoints.

    Episodes ``0 .. episodes - 1`` (expert and noisy BC in turn, :func:`collect_frames`); the last
    10 % are held out for the per-rate-point metrics each checkpoint records.

    Args:
        out_dir: where to write ``gray_wyner_locate_lift_v1.ckpt`` and its ``_separate`` twin (the
            package's checkpoint folder by default); None writes nothing.
        episodes: training episodes (seeds 0..).
        steps: optimiser steps per model.
        progress: print the data size, the metrics per rate point and the time.

    Returns:
        The Gray-Wyner codec and its baseline.
    """
    torch.set_num_threads(1)
    start = time.perf_counter()
    features = ViewFeatures.load_shipped()
    frames = collect_frames(episodes, seed=0, features=features)
    arrays = FeaturePairs(features.batch(frames["arm"], frames["side"]))
    held = frames["episode"] >= int(0.9 * episodes)
    data, heldout = arrays.subset(np.flatnonzero(~held)), arrays.subset(np.flatnonzero(held))
    if progress:
        print(f"{len(data)} training / {len(heldout)} held-out frames in {time.perf_counter() - start:.0f} s")
    pair = train_pair(features, data, steps=steps, heldout=heldout, progress=progress)
    for codec in pair:
        codec.metadata["train"]["episodes"] = episodes
        if progress:
            for j, m in enumerate(codec.metadata["metrics"]):
                print(codec.metadata["role"], j, {k: round(v, 4) for k, v in m.items()})
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for codec, path in zip(pair, (SHIPPED_CHECKPOINT, BASELINE_CHECKPOINT), strict=True):
            codec.save(out_dir / path.name)
        if progress:
            print(f"wrote {out_dir / SHIPPED_CHECKPOINT.name} and {BASELINE_CHECKPOINT.name}")
    if progress:
        print(f"total {time.perf_counter() - start:.0f} s")
    return pair
