"""Train the learned codecs (NDPCA, task-agnostic NDPCA, DAE, JAE) through a frozen task model.

* :func:`train_codec` - eq. 8 of the NDPCA paper through a frozen task model, with Alg. 1's
  random-dimension projection and straight-through quantisation in the loop; refits the latent
  model afterwards. ``NeuralLatentCodec.train`` calls it.
* :func:`train_registered` - train (or fit) any registered codec by name, with its registry recipe,
  and write its checkpoint. The task model and the frames are arguments: this layer never imports
  agents or envs; ``bwgym train codec`` (:mod:`bwgym.cli.codecs`) supplies them.
* :data:`SHIPPED_RECIPE` - how the shipped checkpoints in ``bwgym/codecs/checkpoints/`` are made
  (the commands of ``bwgym zoo``, run by ``bwgym train --all``): the task-aware codecs are fine-tuned from the
  task-agnostic NDPCA (their recipe's ``init``), so all three start from the same network.

Every trained or fitted codec then gets the residual layer (``TrainConfig.residual``): a block DCT
of the pixel residual with scales fitted on the training frames, so one checkpoint spans every
rate from ~24 bits to tens of kbit per step.

Training of one step, for a batch ``x`` of views and the frozen agent ``phi``::

    z = E(x)                                     # per view (NDPCA, DAE) or joint (JAE)
    m ~ U[m_min, m_max];  step = sqrt(lambda_max) * 2 ** -u,  u ~ U[u_min, u_max]
    z_hat = Alg1(z, m, coeff_fn=quantize_ste(., step))   # DAE: per view, m split equally
    x_hat = D(z_hat)
    loss = lambda_task * |phi(x_hat) - phi(x)|^2 + lambda_rec * mean (x_hat - x)^2
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bwgym.codecs.core.entropy import quantize_ste
from bwgym.codecs.core.protocol import Codec, ViewSpec
from bwgym.codecs.core.registry import CHECKPOINT_DIR, codec_entry, codec_names, load_codec
from bwgym.codecs.image.networks import DEFAULT_CHANNELS, round_to_float16
from bwgym.common.device import resolve_device

if TYPE_CHECKING:  # the codecs this module trains call it (NeuralLatentCodec.train)
    from bwgym.codecs.image.neural import NeuralLatentCodec

__all__ = [
    "SHIPPED_RECIPE",
    "TrainConfig",
    "codec_loss",
    "split_episodes",
    "train_codec",
    "train_registered",
]


@dataclass
class TrainConfig:
    """How a learned codec is trained (saved in its checkpoint).

    Attributes:
        codec: the registered name it is trained as (``ndpca``, ``ndpca_agnostic``, ``dae``, ``jae``).
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
        init: a learned-codec checkpoint (a path, or a registered name for its shipped checkpoint)
            whose network initialises this one (same views, size and channels; a joint JAE may
            start from a distributed one), e.g. fine-tuning the task-aware codecs from the
            task-agnostic NDPCA. None: random initialisation. Saved checkpoints record it as
            "<path> sha256:<digest>".
        agent: record of the frozen agent the task loss went through (its checkpoint and the
            file's sha256; filled by :func:`train_variant`, not read by the training).
        residual: fit the residual layer (:meth:`~bwgym.codecs.core.latent.LatentCodec.fit_residual`,
            a block DCT of the pixel residual) after training, so the codec spans every rate.
        residual_frames: training frames the residual layer's scales are fitted on, at most.

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
    residual: bool = True
    residual_frames: int = 400

    @classmethod
    def for_variant(cls, variant: str, **overrides: Any) -> TrainConfig:
        """Return the registry recipe of a learned codec name, with ``overrides`` (None values ignored)."""
        entry = codec_entry(variant)
        if not _is_learned(entry.cls):
            raise ValueError(
                f"codec {variant!r} is not a learned codec; TrainConfig is for {_learned_names()}"
            )
        fields = set(cls.__dataclass_fields__)
        base = cls(codec=variant, **{k: v for k, v in entry.recipe.items() if k in fields})
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def _is_learned(cls: type) -> bool:
    """A learned image codec: one this module trains (it builds its network from the recipe)."""
    return all(
        callable(getattr(cls, m, None)) for m in ("build_network", "training_projection", "fit_latent_model")
    )


def _learned_names() -> list[str]:
    return [n for n in codec_names() if _is_learned(codec_entry(n).cls)]


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def split_episodes(
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
        net: the :class:`~bwgym.codecs.image.networks.LatentAutoencoder`.
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
    cls, image_shape = _check_training_input(config, frames, agent)
    if config.threads:
        torch.set_num_threads(int(config.threads))
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    train_rows, val_rows = _train_val_rows(frames, episode_index, config)
    train = _to_device(frames, train_rows, device)
    val = _to_device(frames, val_rows, device) if val_rows.size else None
    net = _initial_network(cls, config, frames, image_shape, train_rows).to(device)
    run = _TrainingRun(cls, net, config, agent, train, val, rng, device, log_dir)
    start = time.perf_counter()
    run.optimise(progress)
    # Inference model: weights rounded as shipped, then the latent model fitted on all training latents.
    net.eval()
    round_to_float16(net)
    model = cls.fit_latent_model(_training_latents(net, train, len(train_rows)))
    cfg = json.loads(json.dumps(asdict(config)))
    if cfg["init"]:
        cfg["init"] = _file_record(_init_path(cfg["init"]))
    metrics = run.metrics(time.perf_counter() - start, len(train_rows), len(val_rows))
    views = [ViewSpec(v, tuple(image_shape)) for v in frames]
    codec = cls(
        net,
        model,
        views,
        env_id=config.env_id,
        family=config.family,
        device=device,
        variant=config.codec,
        train_config=cfg,
        metrics=metrics,
    )
    if config.residual:
        codec.fit_residual(
            {v: np.asarray(a)[train_rows] for v, a in frames.items()}, max_frames=config.residual_frames
        )
    if run.writer is not None:
        run.writer.close()
    return codec


def _check_training_input(
    config: TrainConfig, frames: Mapping[str, np.ndarray], agent: torch.nn.Module | None
) -> tuple[type[NeuralLatentCodec], tuple[int, ...]]:
    """The learned codec's class and the frames' ``(H, W, 3)``; errors for what cannot be trained."""
    cls = codec_entry(config.codec).cls
    if not _is_learned(cls):
        raise ValueError(f"codec {config.codec!r} is not a learned codec; expected one of {_learned_names()}")
    if config.lambda_task > 0 and agent is None:
        raise ValueError(
            f"codec {config.codec!r} is task-aware (lambda_task={config.lambda_task}): pass the "
            "frozen task model (e.g. the shipped BC agent)"
        )
    if config.lambda_task <= 0 and config.lambda_rec <= 0:
        raise ValueError("lambda_task and lambda_rec are both 0: nothing to train")
    shapes = {tuple(np.shape(a)[1:]) for a in frames.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3 or next(iter(shapes))[2] != 3:
        raise ValueError(
            f"frames must be uint8 (N, H, W, 3) of one size for every view, got "
            f"{ {v: np.shape(a) for v, a in frames.items()} }"
        )
    return cls, next(iter(shapes))


def _train_val_rows(
    frames: Mapping[str, np.ndarray], episode_index: np.ndarray | None, config: TrainConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Training rows and (at most 160) validation rows, split by episodes when they are known."""
    n = len(next(iter(frames.values())))
    if episode_index is not None and config.val_fraction > 0:
        train_rows, val_rows = split_episodes(np.asarray(episode_index), config.val_fraction, config.seed)
    else:
        train_rows, val_rows = np.arange(n), np.zeros(0, np.int64)
    return train_rows, val_rows[:: max(1, -(-len(val_rows) // 160))]  # validation stays cheap


def _initial_network(
    cls: type[NeuralLatentCodec],
    config: TrainConfig,
    frames: Mapping[str, np.ndarray],
    image_shape: tuple[int, ...],
    train_rows: np.ndarray,
) -> torch.nn.Module:
    """The network to train: from ``config.init``'s checkpoint, else new with the training mean images."""
    view_names = list(frames)
    net = cls.build_network(view_names, image_shape[:2], config.latent_dim, config.channels)
    if config.init:
        init = load_codec(_init_path(config.init))
        init.check_spec(views={v: image_shape for v in view_names})
        net.initialise_from(init.net.cpu())
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
    return net


@torch.no_grad()
def _training_latents(
    net: torch.nn.Module, train: Mapping[str, torch.Tensor], n_train: int
) -> dict[str, np.ndarray]:
    """The (rounded) network's latents of every training frame, per latent group, float64."""
    latents: dict[str, list[np.ndarray]] = {k: [] for k in net.latent_names}
    for i in range(0, n_train, 256):
        z = net.encode(_float({v: t[i : i + 256] for v, t in train.items()}))
        for k, t in z.items():
            latents[k].append(t.double().cpu().numpy())
    return {k: np.concatenate(v) for k, v in latents.items()}


class _TrainingRun:
    """Eq. 8's optimisation of one :func:`train_codec` call: Alg. 1's projection, frozen agent, logs.

    Draws from ``rng`` in a fixed order (warm-up rows, then per step: rows, ``m``, quantised or
    not, the step's octave), so a seed gives the same weights.
    """

    def __init__(
        self,
        cls: type[NeuralLatentCodec],
        net: torch.nn.Module,
        config: TrainConfig,
        agent: torch.nn.Module | None,
        train: Mapping[str, torch.Tensor],
        val: Mapping[str, torch.Tensor] | None,
        rng: np.random.Generator,
        device: torch.device,
        log_dir: str | os.PathLike[str] | None,
    ) -> None:
        self.config, self.net, self.train, self.val, self.rng = config, net, train, val, rng
        self.device = device
        total = sum(net.latent_dims.values())
        self.m_max = total if config.m_max is None else min(int(config.m_max), total)
        self.m_min = max(0, min(int(config.m_min), self.m_max))
        self.projection = cls.training_projection(net.latent_dims, self.m_min, self.m_max, config.momentum)
        self.projection = self.projection.to(device)
        net.train()
        self.projection.train()
        self.agent, self.grad_flags = agent, None
        if agent is not None:
            self.agent = agent.to(device).eval()
            self.grad_flags = [p.requires_grad for p in agent.parameters()]
            agent.requires_grad_(False)
        self.use_agent = self.agent if config.lambda_task > 0 else None
        self.train_targets = _agent_targets(self.use_agent, train)
        self.val_targets = _agent_targets(self.agent, val) if val is not None else None
        self.optimiser = torch.optim.Adam(net.parameters(), lr=config.lr)
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimiser, T_max=max(config.steps, 1), eta_min=config.lr / 10
        )
        self.writer = _hyperparameter_writer(log_dir, config)
        self.val_ms = sorted({max(self.m_min, 1), min(8, self.m_max), min(24, self.m_max), self.m_max})
        self.n_train = len(next(iter(train.values())))
        self.losses: list[float] = []
        self.initial: dict[str, float] = {}
        self.last: dict[str, float] = {}

    def optimise(self, progress: bool) -> None:
        """Warm the projection up, validate the initial network, take ``config.steps`` steps.

        The agent's ``requires_grad`` flags are restored once the steps end, even on an error.
        """
        from tqdm import tqdm

        config = self.config
        self._warm_up()
        if self.val is not None:
            self.initial = {"initial_" + k: v for k, v in self._validate().items()}
            self._log({k.removeprefix("initial_"): v for k, v in self.initial.items()}, 0)
        bar = tqdm(range(config.steps), desc=f"train {config.codec}", unit="step", disable=not progress)
        try:
            for step in bar:
                self._step(step, bar)
                if self.val is not None and ((step + 1) % config.eval_every == 0 or step == config.steps - 1):
                    self.last = self._validate()
                    self._log(self.last, step)
        finally:
            bar.close()
            if self.agent is not None and self.grad_flags is not None:
                for p, flag in zip(self.agent.parameters(), self.grad_flags, strict=True):
                    p.requires_grad_(flag)

    def _warm_up(self) -> None:
        """Start the projection's running statistics from the network's latents of <= 512 training frames.

        The first batches and the initial validation then use a sensible basis.
        """
        with torch.no_grad():
            warm = torch.as_tensor(self.rng.permutation(self.n_train)[:512], device=self.device)
            self.projection(
                self.net.encode(_float({v: t[warm] for v, t in self.train.items()})), m=self.m_max
            )

    def _step(self, step: int, bar: Any) -> None:
        """One Adam step on eq. 8 of a random batch, ``m`` and quantisation step; logs every 10th."""
        config, rng = self.config, self.rng
        rows = torch.as_tensor(rng.integers(0, self.n_train, config.batch_size), device=self.device)
        x = _float({v: t[rows] for v, t in self.train.items()})
        m = int(rng.integers(self.m_min, self.m_max + 1))
        u = rng.uniform(*config.step_octaves) if rng.random() >= config.p_unquantised else None
        targets = None if self.train_targets is None else self.train_targets[rows]
        terms = codec_loss(
            self.net, self.projection, x, m, u, self.use_agent, targets, config.lambda_task, config.lambda_rec
        )
        loss, rec, task = terms["loss"], terms["rec_mse"], terms.get("task_mse")
        self.losses.append(float(loss.detach()))
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 10.0)
        self.optimiser.step()
        self.schedule.step()
        if step % 10 == 0 or step == config.steps - 1:
            scalars = {
                "train/loss": float(loss.detach()),
                "train/rec_mse": float(rec.detach()),
                "train/psnr_db": _psnr_db(float(rec.detach())),
                "train/m": m,
            }
            if task is not None:
                scalars["train/task_mse"] = float(task.detach())
            self._log(scalars, step)
            bar.set_postfix(loss=f"{self.losses[-1]:.4f}", psnr=f"{scalars['train/psnr_db']:.1f}", m=m)

    def _validate(self) -> dict[str, float]:
        c = self.config
        return _validate(
            self.net,
            self.projection,
            self.agent,
            self.val,
            self.val_targets,
            self.val_ms,
            c.lambda_task,
            c.lambda_rec,
        )

    def _log(self, scalars: Mapping[str, float], step: int) -> None:
        if self.writer is not None:
            for k, v in scalars.items():
                self.writer.add_scalar(k, v, step)

    def metrics(self, seconds: float, n_train: int, n_val: int) -> dict[str, Any]:
        """Initial and last validation, the mean loss of the first and last tenth of the steps, sizes."""
        losses = self.losses
        tenth = max(1, len(losses) // 10)
        return {
            **self.initial,
            **self.last,
            "train/loss_first": float(np.mean(losses[:tenth])) if losses else float("nan"),
            "train/loss_last": float(np.mean(losses[-tenth:])) if losses else float("nan"),
            "train_seconds": round(seconds, 1),
            "train_frames": int(n_train),
            "val_frames": int(n_val),
        }


def _hyperparameter_writer(log_dir: str | os.PathLike[str] | None, config: TrainConfig) -> Any:
    """A TensorBoard writer on ``log_dir`` with the config as a table (None: no logs)."""
    if log_dir is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(log_dir))
    table = "\n".join(f"|{k}|{v}|" for k, v in asdict(config).items())
    writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{table}")
    return writer


def _init_path(init: str | os.PathLike[str]) -> Path:
    """A checkpoint path, or a registered codec name for its shipped checkpoint."""
    if isinstance(init, str) and not Path(init).suffix and "/" not in init:
        path = codec_entry(init).shipped_path
        if path is not None:
            return path
    return Path(init)


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


def train_registered(
    name: str,
    frames: Mapping[str, np.ndarray],
    out: str | os.PathLike[str] | None = None,
    *,
    env_id: str,
    episode_index: np.ndarray | None = None,
    task_model: Callable[..., Any] | None = None,
    task_model_path: str | os.PathLike[str] | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    **overrides: Any,
) -> Codec:
    """Train (or fit) the registered codec ``name`` with its recipe and write its checkpoint to ``out``.

    Args:
        name: a registered codec name whose class has a ``train`` classmethod.
        frames: ``{view: (N, ...)}`` training frames, rows aligned in time.
        out: where to write the checkpoint (None: do not write).
        env_id: the env the frames come from (recorded in the checkpoint).
        episode_index: episode of each row (validation split by episode).
        task_model: the frozen task model of task-aware codecs (``model({view: float (B,3,H,W)})``).
        task_model_path: the file ``task_model`` came from, recorded with its sha256.
        log_dir: TensorBoard folder.
        progress: show progress bars.
        **overrides: recipe options to replace (e.g. ``steps``, ``seed``, ``init``).

    Raises:
        ValueError: ``name`` is not registered or cannot be trained.
    """
    entry = codec_entry(name)
    if not entry.trainable:
        raise ValueError(f"codec {name!r} has nothing to train (no `train` classmethod)")
    options: dict[str, Any] = {**entry.recipe, **{k: v for k, v in overrides.items() if v is not None}}
    codec: Codec = entry.cls.train(
        frames,
        variant=name,
        env_id=env_id,
        episode_index=episode_index,
        task_model=task_model,
        task_model_path=task_model_path,
        log_dir=log_dir,
        progress=progress,
        **options,
    )
    if out is not None:
        codec.save(out)
    return codec


#: Recipe of the shipped checkpoints (their ``bwgym zoo`` commands): expert frames of ``episodes``
#: episodes; the task-agnostic NDPCA trained from scratch on reconstruction (``pretrain``); the
#: task-aware codecs (NDPCA, DAE, JAE) fine-tuned from it with eq. 8 (``finetune``), so they start
#: from the same network and train for the same steps.
SHIPPED_RECIPE: dict[str, Any] = dict(
    env_id="bwgym/LocateLift-v0",  # the zoo has a set per LocateLift version
    episodes=150,
    seed=0,
    pretrain=dict(steps=5000, batch_size=8, lr=2e-3),
    finetune=dict(steps=3000, batch_size=8, lr=1e-3),
)
