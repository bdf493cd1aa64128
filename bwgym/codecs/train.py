"""Train the learned codecs (NDPCA, task-agnostic NDPCA, DAE, JAE), fit the linear ones, load any.

* :func:`train_codec` - eq. 8 of the NDPCA paper through a frozen agent, with Alg. 1's random-dimension
  projection and straight-through quantisation in the loop; refits the latent model afterwards.
* :func:`fit_linear_codec` - :class:`~bwgym.codecs.linear.LinearDPCACodec` / ``PCACodec`` on pixels.
* :func:`load_frames` - expert frames from a demo folder, or freshly collected.
* :func:`load_codec` - one loader for every codec checkpoint, dispatching on the codec name in it.
* :func:`regenerate_all` / ``python -m bwgym.codecs.train --all`` - retrain every shipped checkpoint in
  ``bwgym/codecs/checkpoints/`` from scratch, following :data:`SHIPPED_RECIPE` (one CPU thread).

The command ``bwgym train codec`` (:mod:`bwgym.codecs.commands`) wraps :func:`train_variant`::

    bwgym train codec --codec ndpca_agnostic --env bwgym/LocateLift-v0 --out runs/codecs/agnostic.pt
    bwgym train codec --codec ndpca --init runs/codecs/agnostic.pt --steps 1500 --out runs/codecs/ndpca.pt

Variants (``--codec``): ``ndpca`` (task-aware, ``lambda_task=1``), ``ndpca_agnostic``
(``lambda_task=0``), ``dae`` and ``jae`` (task-aware, as the paper's baselines), ``linear_dpca`` and
``pca`` (no training: fitted on pixels). The shipped task-aware codecs are fine-tuned from the shipped
task-agnostic one (``--init``), so all three start from the same network and train equally long.

Training of one step, for a batch ``x`` of views and the frozen agent ``phi``::

    z = E(x)                                     # per view (NDPCA, DAE) or joint (JAE)
    m ~ U[m_min, m_max];  step = sqrt(lambda_max) * 2 ** -u,  u ~ U[u_min, u_max]
    z_hat = Alg1(z, m, coeff_fn=quantize_ste(., step))   # DAE: per view, m split equally
    x_hat = D(z_hat)
    loss = lambda_task * |phi(x_hat) - phi(x)|^2 + lambda_rec * mean (x_hat - x)^2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bwgym.codecs.autoencoders import (
    DEFAULT_CHANNELS,
    DAECodec,
    JAECodec,
    NeuralLatentCodec,
    read_checkpoint,
    resolve_device,
    round_to_float16,
)
from bwgym.codecs.base import Codec
from bwgym.codecs.entropy import quantize_ste
from bwgym.codecs.linear import LinearDPCACodec, PCACodec
from bwgym.codecs.ndpca import CHECKPOINT_DIR, SHIPPED, NDPCACodec

__all__ = [
    "LEARNED",
    "LINEAR",
    "VARIANTS",
    "TrainConfig",
    "fit_linear_codec",
    "load_codec",
    "codec_loss",
    "load_frames",
    "main",
    "SHIPPED_ORDER",
    "SHIPPED_RECIPE",
    "regenerate_all",
    "train_codec",
    "train_variant",
]

#: Learned variants: codec class and the loss weights of eq. 8.
LEARNED: dict[str, tuple[type[NeuralLatentCodec], dict[str, float]]] = {
    "ndpca": (NDPCACodec, dict(lambda_task=1.0, lambda_rec=1.0)),
    "ndpca_agnostic": (NDPCACodec, dict(lambda_task=0.0, lambda_rec=1.0)),
    "dae": (DAECodec, dict(lambda_task=1.0, lambda_rec=1.0)),
    "jae": (JAECodec, dict(lambda_task=1.0, lambda_rec=1.0)),
}
#: Linear variants: codec class and fit arguments (downsampled 4x so checkpoints stay ~1 MB).
LINEAR: dict[str, tuple[type[LinearDPCACodec] | type[PCACodec], dict[str, Any]]] = {
    "linear_dpca": (LinearDPCACodec, dict(max_components=32, downsample=4)),
    "pca": (PCACodec, dict(max_components=64, downsample=4)),
}
VARIANTS = (*LEARNED, *LINEAR)
#: Codec name stored in a checkpoint -> class that loads it.
_LOADERS: dict[str, Any] = {c.name: c for c in (NDPCACodec, DAECodec, JAECodec, LinearDPCACodec, PCACodec)}


@dataclass
class TrainConfig:
    """How a learned codec is trained (saved in its checkpoint).

    Attributes:
        codec: variant name, a key of :data:`LEARNED`.
        env_id: the env the frames come from (recorded in the checkpoint).
        steps: optimiser steps.
        batch_size: frames per step.
        lr: Adam learning rate (cosine-decayed to ``lr / 10``).
        latent_dim: latent features per view (JAE: ``latent_dim * K`` joint features).
        channels: output channels of the encoder convolutions (patch layer first).
        m_min: smallest total number of components drawn per step (Alg. 1).
        m_max: largest (None: every latent feature).
        lambda_task: weight of ``|agent(x_hat) - agent(x)|^2`` (sum over action dims).
        lambda_rec: weight of the reconstruction MSE (mean over pixels, images in [0, 1]).
        step_octaves: range of ``u`` in the training quantisation step ``sqrt(lambda_max) * 2**-u``.
        p_unquantised: share of steps trained without quantisation.
        momentum: EMA weight of the batch covariance in Alg. 1's projection.
        family: entropy model family of the codec.
        val_fraction: share of episodes held out for validation.
        eval_every: steps between validation passes (logged to TensorBoard).
        seed: seed of the initialisation, the batches and the random dimensions.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``.
        threads: CPU threads torch may use (0: leave torch's default). 1 by default: the small
            convolutions gain little from a second thread, and on a machine shared with other
            jobs a second thread spin-waits and runs many times slower.
        init: a learned-codec checkpoint whose network initialises this one (same views, size and
            channels; a joint JAE may start from a distributed one), e.g. fine-tuning the
            task-aware codecs from the task-agnostic NDPCA. None: random initialisation. Saved
            checkpoints record it as "<path> sha256:<digest>".
        agent: record of the frozen agent the task loss went through (its checkpoint and the
            file's sha256; filled by :func:`train_variant`, not read by the training).

    """

    codec: str = "ndpca"
    env_id: str = "bwgym/LocateLift-v0"
    steps: int = 3000
    batch_size: int = 8
    lr: float = 2e-3
    latent_dim: int = 32
    channels: tuple[int, ...] = DEFAULT_CHANNELS
    m_min: int = 2
    m_max: int | None = None
    lambda_task: float = 1.0
    lambda_rec: float = 1.0
    step_octaves: tuple[float, float] = (1.0, 7.0)
    p_unquantised: float = 0.2
    momentum: float = 0.1
    family: str = "gaussian"
    val_fraction: float = 0.1
    eval_every: int = 250
    seed: int = 0
    device: str = "auto"
    threads: int = 1
    init: str | None = None
    agent: str | None = None

    @classmethod
    def for_variant(cls, variant: str, **overrides: Any) -> TrainConfig:
        """Return the default recipe of a learned variant, with ``overrides`` (None values ignored)."""
        if variant not in LEARNED:
            raise ValueError(f"unknown learned codec {variant!r}; expected one of {sorted(LEARNED)}")
        base = cls(codec=variant, **LEARNED[variant][1])
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def load_frames(
    demos: str | os.PathLike[str] | None = None,
    env_id: str = "bwgym/LocateLift-v0",
    episodes: int = 120,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Expert frames ``({view: uint8 (N, H, W, 3)}, episode_index (N,))``.

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


def _split_episodes(
    episode_index: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of training and validation frames, split by whole episodes."""
    episodes = np.unique(episode_index)
    rng = np.random.default_rng(seed)
    n_val = int(round(val_fraction * len(episodes)))
    if val_fraction > 0 and len(episodes) >= 2:
        n_val = min(max(n_val, 1), len(episodes) - 1)
    val_eps = rng.permutation(episodes)[:n_val]
    is_val = np.isin(episode_index, val_eps)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def _to_device(
    frames: Mapping[str, np.ndarray], rows: np.ndarray, device: torch.device
) -> dict[str, torch.Tensor]:
    """uint8 ``(N, 3, H, W)`` tensors of the chosen rows."""
    return {
        v: torch.as_tensor(np.ascontiguousarray(a[rows])).permute(0, 3, 1, 2).contiguous().to(device)
        for v, a in frames.items()
    }


def _float(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {v: t.float().div_(255.0) for v, t in batch.items()}


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def _psnr_db(mse: float) -> float:
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


@torch.no_grad()
def _agent_targets(
    agent: torch.nn.Module | None, data: Mapping[str, torch.Tensor], batch: int = 256
) -> torch.Tensor | None:
    if agent is None:
        return None
    n = next(iter(data.values())).shape[0]
    out = [agent(_float({v: t[i : i + batch] for v, t in data.items()})) for i in range(0, n, batch)]
    return torch.cat(out)


def _top_eigenvalue(z: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Largest covariance eigenvalue over the latent groups of a batch (detached)."""
    with torch.no_grad():
        return (
            max(
                torch.linalg.eigvalsh(torch.cov(t.T.double()).reshape(t.shape[1], t.shape[1]))[-1]
                for t in z.values()
            )
            .float()
            .clamp_min(1e-12)
        )


@torch.no_grad()
def _validate(
    net, projection, agent, data, targets, ms: Sequence[int], lambda_task: float, lambda_rec: float
) -> dict[str, float]:
    """Unquantised validation at a few total dimensions (eval-mode projection: running statistics)."""
    net.eval()
    projection.eval()
    out: dict[str, float] = {}
    n = next(iter(data.values())).shape[0]
    for m in ms:
        sq, task, count = 0.0, 0.0, 0
        for i in range(0, n, 128):
            x = _float({v: t[i : i + 128] for v, t in data.items()})
            x_hat = net.decode(projection(net.encode(x), m=m).z_hat)
            sq += (
                sum(float(((x_hat[v] - x[v]) ** 2).mean()) for v in x)
                / len(x)
                * x[net.view_names[0]].shape[0]
            )
            if agent is not None:
                task += float(((agent(x_hat) - targets[i : i + 128]) ** 2).sum(-1).sum())
            count += x[net.view_names[0]].shape[0]
        out[f"val/psnr_db_m{m}"] = _psnr_db(sq / count)
        if agent is not None:
            out[f"val/task_mse_m{m}"] = task / count
        out[f"val/loss_m{m}"] = lambda_task * out.get(f"val/task_mse_m{m}", 0.0) + lambda_rec * sq / count
    net.train()
    projection.train()
    return out


def codec_loss(
    net: torch.nn.Module,
    projection: torch.nn.Module,
    x: Mapping[str, torch.Tensor],
    m: int,
    step_octaves: float | None,
    agent: torch.nn.Module | None,
    targets: torch.Tensor | None,
    lambda_task: float,
    lambda_rec: float,
) -> dict[str, torch.Tensor]:
    """Eq. 8 on one batch, through Alg. 1's projection to ``m`` components and STE quantisation.

    Args:
        net: the :class:`~bwgym.codecs.autoencoders.LatentAutoencoder`.
        projection: its training projection (``cls.training_projection(...)``).
        x: float views ``{view: (B, 3, H, W)}`` in [0, 1].
        m: total components kept.
        step_octaves: quantisation step ``sqrt(lambda_max) * 2 ** -step_octaves`` (``lambda_max``: the
            largest batch covariance eigenvalue of the latents); None: no quantisation.
        agent: the frozen task model (None: no task term).
        targets: ``agent(x)``, precomputed (the agent is frozen).
        lambda_task: weight of ``|agent(x_hat) - agent(x)|^2`` (summed over action dims, batch mean).
        lambda_rec: weight of the reconstruction MSE (mean over views and pixels).

    Returns:
        ``loss``, ``rec_mse`` and (with an agent) ``task_mse`` tensors, and ``x_hat``.

    """
    z = net.encode(x)
    coeff_fn = None
    if step_octaves is not None:
        q_step = torch.sqrt(_top_eigenvalue(z)) * 2.0 ** (-float(step_octaves))
        coeff_fn = lambda _k, c, _var: quantize_ste(c, q_step)  # noqa: E731
    x_hat = net.decode(projection(z, m=m, coeff_fn=coeff_fn).z_hat)
    rec = sum(torch.mean((x_hat[v] - x[v]) ** 2) for v in x) / len(x)
    out: dict[str, Any] = {"rec_mse": rec, "loss": lambda_rec * rec, "x_hat": x_hat}
    if agent is not None and lambda_task > 0:
        if targets is None:
            with torch.no_grad():
                targets = agent(x)
        task = ((agent(x_hat) - targets) ** 2).sum(-1).mean()
        out["task_mse"] = task
        out["loss"] = out["loss"] + lambda_task * task
    return out


def train_codec(
    config: TrainConfig,
    frames: Mapping[str, np.ndarray],
    episode_index: np.ndarray | None = None,
    agent: torch.nn.Module | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> NeuralLatentCodec:
    """Train a learned codec (eq. 8) and return it with its latent model fitted on the training frames.

    Args:
        config: the recipe (:meth:`TrainConfig.for_variant` gives the defaults of a variant).
        frames: ``{view: uint8 (N, H, W, 3)}``, rows aligned in time across views.
        episode_index: episode of each row, for a validation split by episodes (None: no validation).
        agent: the frozen task model, ``agent({view: float (B, 3, H, W)}) -> (B, A)`` (e.g.
            :class:`~bwgym.agents.bc.BCAgent`); required when ``config.lambda_task > 0``. Its
            parameters are never changed (``requires_grad`` is restored afterwards).
        log_dir: TensorBoard folder (None: no logs).
        progress: show a tqdm progress bar.

    Returns:
        The trained codec, on ``config.device``, with its config and validation metrics attached.

    """
    from tqdm import tqdm

    if config.codec not in LEARNED:
        raise ValueError(f"unknown learned codec {config.codec!r}; expected one of {sorted(LEARNED)}")
    if config.lambda_task > 0 and agent is None:
        raise ValueError(
            f"codec {config.codec!r} is task-aware (lambda_task={config.lambda_task}): pass the "
            "frozen agent (e.g. BCAgent.load_shipped())"
        )
    if config.lambda_task <= 0 and config.lambda_rec <= 0:
        raise ValueError("lambda_task and lambda_rec are both 0: nothing to train")
    cls = LEARNED[config.codec][0]
    view_names = list(frames)
    shapes = {tuple(np.shape(a)[1:]) for a in frames.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3 or next(iter(shapes))[2] != 3:
        raise ValueError(
            f"frames must be uint8 (N, H, W, 3) of one size for every view, got "
            f"{ {v: np.shape(a) for v, a in frames.items()} }"
        )
    image_shape = next(iter(shapes))
    if config.threads:
        torch.set_num_threads(int(config.threads))
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)

    n = len(next(iter(frames.values())))
    if episode_index is not None and config.val_fraction > 0:
        train_rows, val_rows = _split_episodes(np.asarray(episode_index), config.val_fraction, config.seed)
    else:
        train_rows, val_rows = np.arange(n), np.zeros(0, np.int64)
    train = _to_device(frames, train_rows, device)
    val_rows = val_rows[:: max(1, -(-len(val_rows) // 160))]  # at most 160 frames: validation stays cheap
    val = _to_device(frames, val_rows, device) if val_rows.size else None

    net = cls.build_network(view_names, image_shape[:2], config.latent_dim, config.channels)
    if config.init:
        net.initialise_from(
            load_codec(config.init, expect_views={v: image_shape for v in view_names}).net.cpu()
        )
    else:
        net.set_mean_images(
            {
                v: torch.as_tensor(a[train_rows[:: max(1, len(train_rows) // 512)]])
                .float()
                .mean(0)
                .permute(2, 0, 1)
                / 255.0
                for v, a in frames.items()
            }
        )
    net = net.to(device)
    total = sum(net.latent_dims.values())
    m_max = total if config.m_max is None else min(int(config.m_max), total)
    m_min = max(0, min(int(config.m_min), m_max))
    projection = cls.training_projection(net.latent_dims, m_min, m_max, config.momentum).to(device)
    net.train()
    projection.train()

    grad_flags = None
    if agent is not None:
        agent = agent.to(device).eval()
        grad_flags = [p.requires_grad for p in agent.parameters()]
        agent.requires_grad_(False)
    use_agent = agent if config.lambda_task > 0 else None
    train_targets = _agent_targets(use_agent, train)
    val_targets = _agent_targets(agent, val) if val is not None else None

    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimiser, T_max=max(config.steps, 1), eta_min=config.lr / 10
    )
    writer = None
    if log_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(log_dir))
        table = "\n".join(f"|{k}|{v}|" for k, v in asdict(config).items())
        writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{table}")
    val_ms = sorted({max(m_min, 1), min(8, m_max), min(24, m_max), m_max})
    metrics: dict[str, float] = {}
    losses: list[float] = []
    n_train = len(train_rows)
    # Start the projection's running statistics from the (initial) network's latents of up to 512
    # training frames, so the first batches and the initial validation use a sensible basis.
    with torch.no_grad():
        warm = torch.as_tensor(rng.permutation(n_train)[:512], device=device)
        projection(net.encode(_float({v: t[warm] for v, t in train.items()})), m=m_max)
    initial: dict[str, float] = {}
    if val is not None:
        initial = {
            "initial_" + k: v
            for k, v in _validate(
                net, projection, agent, val, val_targets, val_ms, config.lambda_task, config.lambda_rec
            ).items()
        }
        if writer is not None:
            for k, v in initial.items():
                writer.add_scalar(k.removeprefix("initial_"), v, 0)
    start = time.perf_counter()
    bar = tqdm(range(config.steps), desc=f"train {config.codec}", unit="step", disable=not progress)
    try:
        for step in bar:
            rows = torch.as_tensor(rng.integers(0, n_train, config.batch_size), device=device)
            x = _float({v: t[rows] for v, t in train.items()})
            m = int(rng.integers(m_min, m_max + 1))
            u = rng.uniform(*config.step_octaves) if rng.random() >= config.p_unquantised else None
            terms = codec_loss(
                net,
                projection,
                x,
                m,
                u,
                use_agent,
                None if train_targets is None else train_targets[rows],
                config.lambda_task,
                config.lambda_rec,
            )
            loss, rec, task = terms["loss"], terms["rec_mse"], terms.get("task_mse")
            losses.append(float(loss.detach()))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
            optimiser.step()
            schedule.step()
            if step % 10 == 0 or step == config.steps - 1:
                scalars = {
                    "train/loss": float(loss.detach()),
                    "train/rec_mse": float(rec.detach()),
                    "train/psnr_db": _psnr_db(float(rec.detach())),
                    "train/m": m,
                }
                if task is not None:
                    scalars["train/task_mse"] = float(task.detach())
                if writer is not None:
                    for k, v in scalars.items():
                        writer.add_scalar(k, v, step)
                bar.set_postfix(loss=f"{losses[-1]:.4f}", psnr=f"{scalars['train/psnr_db']:.1f}", m=m)
            if val is not None and ((step + 1) % config.eval_every == 0 or step == config.steps - 1):
                metrics = _validate(
                    net, projection, agent, val, val_targets, val_ms, config.lambda_task, config.lambda_rec
                )
                if writer is not None:
                    for k, v in metrics.items():
                        writer.add_scalar(k, v, step)
    finally:
        bar.close()
        if agent is not None and grad_flags is not None:
            for p, flag in zip(agent.parameters(), grad_flags, strict=True):
                p.requires_grad_(flag)

    # Inference model: weights rounded as shipped, then the latent model fitted on all training latents.
    net.eval()
    round_to_float16(net)
    latents: dict[str, list[np.ndarray]] = {k: [] for k in net.latent_names}
    with torch.no_grad():
        for i in range(0, n_train, 256):
            z = net.encode(_float({v: t[i : i + 256] for v, t in train.items()}))
            for k, t in z.items():
                latents[k].append(t.double().cpu().numpy())
    model = cls.fit_latent_model({k: np.concatenate(v) for k, v in latents.items()})
    from bwgym.codecs.base import ViewSpec

    views = [ViewSpec(v, tuple(image_shape)) for v in view_names]
    cfg = json.loads(json.dumps(asdict(config)))
    if cfg["init"]:
        cfg["init"] = _file_record(cfg["init"])
    tenth = max(1, len(losses) // 10)
    metrics = {
        **initial,
        **metrics,
        "train/loss_first": float(np.mean(losses[:tenth])) if losses else float("nan"),
        "train/loss_last": float(np.mean(losses[-tenth:])) if losses else float("nan"),
        "train_seconds": round(time.perf_counter() - start, 1),
        "train_frames": int(n_train),
        "val_frames": int(len(val_rows)),
    }
    codec = cls(
        net,
        model,
        views,
        env_id=config.env_id,
        family=config.family,
        device=device,
        train_config=cfg,
        metrics=metrics,
    )
    if writer is not None:
        writer.close()
    return codec


def fit_linear_codec(
    variant: str, frames: Mapping[str, np.ndarray], env_id: str = "bwgym/LocateLift-v0", **overrides: Any
) -> LinearDPCACodec | PCACodec:
    """Fit ``linear_dpca`` or ``pca`` on frames (defaults in :data:`LINEAR`; ``overrides`` replace them)."""
    if variant not in LINEAR:
        raise ValueError(f"unknown linear codec {variant!r}; expected one of {sorted(LINEAR)}")
    cls, kwargs = LINEAR[variant]
    return cls.fit(frames, env_id=env_id, **{**kwargs, **overrides})


def _shipped_agent_path() -> Path:
    from bwgym.agents.bc import SHIPPED_CHECKPOINT

    return Path(SHIPPED_CHECKPOINT)


def _shown_path(path: str | os.PathLike[str]) -> str:
    """Return a path as recorded in checkpoints: relative to the repository when inside it."""
    try:
        return str(Path(path).resolve().relative_to(CHECKPOINT_DIR.parent.parent.parent))
    except ValueError:
        return str(path)


def _file_record(path: str | os.PathLike[str]) -> str:
    """``"<path (repository-relative when inside it)> sha256:<first 16 hex>"``."""
    import hashlib

    path = Path(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "missing"
    return f"{_shown_path(path)} sha256:{digest}"


def train_variant(
    variant: str,
    out: str | os.PathLike[str],
    frames: Mapping[str, np.ndarray],
    episode_index: np.ndarray | None = None,
    agent: torch.nn.Module | None = None,
    env_id: str = "bwgym/LocateLift-v0",
    log_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    agent_path: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> Codec:
    """Train (or fit) one variant and write its checkpoint to ``out``; return the codec.

    ``overrides`` are :class:`TrainConfig` fields for learned variants (e.g. ``steps``, ``seed``).
    A task-aware variant without ``agent`` uses the shipped BC agent. ``agent_path`` (the file
    ``agent`` came from) is recorded in the checkpoint with its sha256.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if variant in LINEAR:
        codec = fit_linear_codec(variant, frames, env_id=env_id)
        codec.save(out)
        return codec
    config = TrainConfig.for_variant(variant, env_id=env_id, **overrides)
    if config.lambda_task > 0 and agent is None:
        from bwgym.agents.bc import BCAgent

        shape = next(iter(frames.values())).shape[1:3]
        agent = BCAgent.load_shipped(env_id=env_id, views=list(frames), image_shape=shape)
        agent_path = agent_path or _shipped_agent_path()
    if config.lambda_task > 0 and agent_path is not None:
        config = replace(config, agent=_file_record(agent_path))
    codec = train_codec(config, frames, episode_index, agent=agent, log_dir=log_dir, progress=progress)
    codec.save(out)
    return codec


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def load_codec(
    path: str | os.PathLike[str],
    expect_env_id: str | None = None,
    expect_views: Any = None,
    expect_image_shape: Sequence[int] | None = None,
    device: str | torch.device = "auto",
    follow_allocation: bool | None = None,
) -> Codec:
    """Load any codec checkpoint (learned ``.pt`` or linear ``.npz``), dispatching on the codec name in it.

    Args:
        path: the checkpoint.
        expect_env_id: the env the caller runs (None: any).
        expect_views: the caller's views (ViewSpecs, ``{name: shape}`` or a gymnasium ``Dict``; None: any).
        expect_image_shape: ``(H, W)`` or ``(H, W, 3)`` of every view (None: any).
        device: where learned codecs run.
        follow_allocation: learned codecs only: honour the allocator's fractions (a fixed split)
            instead of the codec's own allocation (None: as saved, which is off).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a codec checkpoint, or one for another env / views / image size.

    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no codec checkpoint at {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic.startswith(b"PK"):  # both torch.save and np.savez write zip files
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"])) if "header" in data.files else None
        except (OSError, ValueError, KeyError):
            header = None
        if header is not None:
            name = header.get("codec")
            if name not in ("linear_dpca", "pca"):
                raise ValueError(f"{path}: linear checkpoint of unknown codec {name!r}")
            codec = _LOADERS[name].load(path, expect_env_id=expect_env_id, expect_views=expect_views)
            if expect_image_shape is not None:
                for spec in codec.views:
                    if tuple(spec.shape[: len(expect_image_shape)]) != tuple(expect_image_shape):
                        raise ValueError(
                            f"{path}: codec fitted for images {spec.shape}, expected "
                            f"{tuple(expect_image_shape)}"
                        )
            return codec
    blob = read_checkpoint(path)
    name = blob["meta"].get("codec")
    if name not in _LOADERS or not issubclass(_LOADERS[name], NeuralLatentCodec):
        raise ValueError(f"{path}: checkpoint of unknown codec {name!r}; expected one of {sorted(_LOADERS)}")
    codec = _LOADERS[name].from_checkpoint(blob, device=device, where=str(path))
    codec.check_spec(expect_env_id, expect_views, expect_image_shape)
    if follow_allocation is not None:
        codec.follow_allocation = bool(follow_allocation)
    return codec


# ---------------------------------------------------------------------------------------------
# Shipped checkpoints
# ---------------------------------------------------------------------------------------------

#: Recipe of the shipped checkpoints (``python -m bwgym.codecs.train --all``): expert frames of
#: ``episodes`` episodes; the task-agnostic NDPCA trained from scratch on reconstruction
#: (``pretrain``); the three task-aware codecs (NDPCA, DAE, JAE) fine-tuned from it with eq. 8
#: (``finetune``), so they start from the same network and train for the same steps.
SHIPPED_RECIPE: dict[str, Any] = dict(
    env_id="bwgym/LocateLift-v0",
    episodes=150,
    seed=0,
    pretrain=dict(steps=5000, batch_size=8, lr=2e-3),
    finetune=dict(steps=1500, batch_size=8, lr=1e-3),
)
#: Order of :func:`regenerate_all`: the pre-trained network comes before the codecs that start from it.
SHIPPED_ORDER = ("linear_dpca", "pca", "ndpca_agnostic", "ndpca", "dae", "jae")


def _summary(metrics: Mapping[str, float]) -> str:
    """Return the final validation numbers of a training run, one short line."""
    keys = sorted(
        (k for k in metrics if k.startswith("val/") and not k.startswith("val/loss")),
        key=lambda k: (k.split("_m")[0], int(k.rsplit("_m", 1)[1])),
    )
    return "".join(f" {k.removeprefix('val/')}={metrics[k]:.3g}" for k in keys)


def regenerate_all(
    out_dir: str | os.PathLike[str] = CHECKPOINT_DIR,
    demos: str | os.PathLike[str] | None = None,
    agent_path: str | os.PathLike[str] | None = None,
    variants: Sequence[str] = SHIPPED_ORDER,
    scale_steps: float = 1.0,
    seed: int = SHIPPED_RECIPE["seed"],
    log_root: str | os.PathLike[str] | None = "runs/codecs",
    device: str = "auto",
    threads: int = 1,
    progress: bool = True,
) -> dict[str, Path]:
    """Retrain every shipped codec checkpoint from scratch (expert frames collected unless ``demos``).

    Follows :data:`SHIPPED_RECIPE`; the task-aware codecs start from ``ndpca_agnostic`` in
    ``out_dir`` (trained first when it is among ``variants``). Prints one line per checkpoint and
    returns the paths written.

    Args:
        out_dir: where the checkpoints go (default: the package's ``checkpoints/``).
        demos: a demo folder to train on instead of collecting ``SHIPPED_RECIPE["episodes"]``.
        agent_path: the frozen BC agent (default: the shipped one).
        variants: which checkpoints to write.
        scale_steps: multiply every step count (e.g. 0.1 for a smoke run).
        seed: seed of the collection and of the training.
        log_root: TensorBoard root (``<log_root>/<variant>``); None for no logs.
        device: where to train.
        threads: CPU threads torch may use.
        progress: show progress bars.

    """
    env_id = SHIPPED_RECIPE["env_id"]
    unknown = set(variants) - set(SHIPPED_ORDER)
    if unknown:
        raise ValueError(f"unknown variants {sorted(unknown)}; expected some of {list(SHIPPED_ORDER)}")
    frames, episode_index = load_frames(
        demos, env_id=env_id, episodes=SHIPPED_RECIPE["episodes"], seed=seed, progress=progress
    )
    agent = None
    if any(v in LEARNED and LEARNED[v][1]["lambda_task"] > 0 for v in variants):
        from bwgym.agents.bc import BCAgent

        shape = next(iter(frames.values())).shape[1:3]
        agent = (
            BCAgent.load(agent_path, env_id=env_id, views=list(frames), image_shape=shape)
            if agent_path
            else BCAgent.load_shipped(env_id=env_id, views=list(frames), image_shape=shape)
        )
        agent_path = agent_path or _shipped_agent_path()
    out_dir = Path(out_dir)
    pretrained = out_dir / SHIPPED["ndpca_agnostic"]
    written = {}
    start = time.perf_counter()
    for variant in [v for v in SHIPPED_ORDER if v in variants]:
        path = out_dir / SHIPPED[variant]
        log_dir = None if log_root is None or variant in LINEAR else Path(log_root) / variant
        kwargs: dict[str, Any] = {}
        if variant in LEARNED:
            stage = "pretrain" if variant == "ndpca_agnostic" else "finetune"
            kwargs = dict(SHIPPED_RECIPE[stage], seed=seed, device=device, threads=threads)
            kwargs["steps"] = max(1, int(round(kwargs["steps"] * scale_steps)))
            if stage == "finetune":
                if not pretrained.is_file():
                    raise FileNotFoundError(
                        f"{variant} is fine-tuned from {pretrained}; train ndpca_agnostic first"
                    )
                kwargs["init"] = str(pretrained)
        t0 = time.perf_counter()
        codec = train_variant(
            variant,
            path,
            frames,
            episode_index,
            agent=agent,
            env_id=env_id,
            log_dir=log_dir,
            progress=progress,
            agent_path=agent_path,
            **kwargs,
        )
        written[variant] = path
        print(
            f"{variant:15s} -> {path} ({path.stat().st_size / 1e3:.0f} kB, {time.perf_counter() - t0:.0f} s)"
            f"{_summary(getattr(codec, 'metrics', {}))}",
            flush=True,
        )
    print(f"all done in {time.perf_counter() - start:.0f} s", flush=True)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bwgym.codecs.train --all``: regenerate the shipped codec checkpoints."""
    parser = argparse.ArgumentParser(prog="python -m bwgym.codecs.train", description=main.__doc__)
    parser.add_argument("--all", action="store_true", help="retrain every shipped checkpoint (required)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SHIPPED_ORDER,
        default=None,
        help="retrain only these variants (the task-aware ones start from ndpca_agnostic)",
    )
    parser.add_argument(
        "--out-dir", default=str(CHECKPOINT_DIR), help="where to write (default: the package's)"
    )
    parser.add_argument("--demos", default=None, help="demo folder to train on (default: collect fresh)")
    parser.add_argument("--agent", default=None, help="BC agent checkpoint (default: the shipped one)")
    parser.add_argument(
        "--scale-steps", type=float, default=1.0, help="multiply every step count (0.1: smoke run)"
    )
    parser.add_argument("--seed", type=int, default=SHIPPED_RECIPE["seed"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")
    parser.add_argument("--logdir", default="runs/codecs", help="TensorBoard root")
    args = parser.parse_args(argv)
    if not args.all and not args.only:
        parser.error("pass --all (or --only VARIANT ...)")
    regenerate_all(
        args.out_dir,
        demos=args.demos,
        agent_path=args.agent,
        variants=args.only or SHIPPED_ORDER,
        scale_steps=args.scale_steps,
        seed=args.seed,
        log_root=args.logdir,
        device=args.device,
        threads=args.threads,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
