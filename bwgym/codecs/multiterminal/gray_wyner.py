r"""Learnable Gray-Wyner codec (paper 002): a common channel for two receivers and a private one each.

Two sources ``x1, x2`` serve two tasks. The encoder emits three integer latents: the common ``Y0``
(both receivers get it) and the private ``Y1, Y2`` (receiver ``k`` gets ``Y_k``); receiver ``k``
predicts its task ``z_k = g_k([Y_k, Y0])``. The objective (eq. 12, scaled by ``eta = 1/lambda``,
App. D.2, plus the matching term of eq. 15)::

    L = eta * (beta * R0 + R1 + R2) + D1 + D2 + gamma * mean((Y0^(1) - Y0^(2))^2)

with rates in bits per position (per element of ``x1``) and ``D_k`` the RMSE of task ``k``.
``beta = 1`` optimises the transmit rate ``R0 + R1 + R2``, ``beta = 2`` the receive rate
``2 R0 + R1 + R2``.

Architectures (``kind=``): ``shared`` (the paper's: two analysis transforms, each seeing both
sources, each output split into ``(Y_k, Y0^(k))``, the common channel of eq. 14), ``separated`` (one
transform per channel), ``combined`` (one transform split three ways), ``joint`` (one channel for
both tasks: the transmit-rate baseline) and ``independent`` (``Y_k = f_k(x_k)``, no common channel:
the receive-rate baseline). The transforms are MLPs (the synthetic data are small vectors).

Entropy models: ``Y0`` factorised (a learned integer mean and scale index per element), ``Y_k``
conditioned on ``Y0`` by a small ReLU network that predicts a mean and a scale index per element.
The coder runs that network in *integer fixed-point* arithmetic on the integer symbols of ``Y0``,
so the encoder and every receiver derive the same model on any machine, and the bytes are real
``constriction`` range-coder streams (:mod:`bwgym.codecs.core.entropy`).

Variable rate: one model holds a ladder of rate points, one per ``eta``, each with learned gain
vectors (``2 ** (g / 8)`` per latent element, encoder and decoder side) and its own entropy-model
parameters; :meth:`GrayWynerCodec.compress` picks the finest point whose payload fits the budget.

Payload (wire name ``gray_wyner``): streams ``(common, private_1, private_2)``; ``meta`` is a
2-byte model hash, the step (mod 256), the rate index and a layout byte. Receiver ``k`` decodes
from ``common`` + ``private_k`` alone (:meth:`GrayWynerCodec.for_receiver`,
:meth:`GrayWynerCodec.split_channels`, :meth:`GrayWynerCodec.decode_receiver`), bit-exactly the
same output as from the full payload. These payloads are container v1 (:mod:`bwgym.codecs.core.protocol`:
112 bits of header and CRC-16 per channel payload), and :attr:`GrayWynerCodec.session` stays None.

**Lean channel frames** (:meth:`GrayWynerCodec.compress_channels`, for links that carry one channel
each, as in :mod:`bwgym.scenarios.two_receivers`): every link first carries the model's
:attr:`GrayWynerCodec.channel_session` once per episode (a :class:`~bwgym.codecs.core.protocol.Session`
header, 88 bits: codec id, 3 streams, and a 4-byte fingerprint hashing the weights, the config
with its kind and rate-point ladder, and the view and task names), then per step and channel one
lean frame (16 bits of overhead)::

    header u8 = step tag (3 bits) << 5 | channel (2 bits) << 3 | rate index (3 bits)
    | body: the channel's range-coder stream | crc8 (seeded with the session's identity)

The channel (0 common, 1 private_1, 2 private_2) and the step tag (the step mod 8) let a receiver
name what it got: a private frame without the common one, frames of different steps (or rate
points), or a frame of another channel raise :class:`~bwgym.codecs.core.protocol.PayloadError`; a frame of
another model fails the session check (parsed under its own session) or the CRC (parsed under the
receiver's). Frames of steps 8 apart share a tag: a link that delays frames by a multiple of 8 steps
would need a longer tag. The body must be exactly the encoding of what it decodes to (a second
check behind the CRC-8). Lean frames need at most 8 rate points. Decode with
:meth:`GrayWynerCodec.decompress_channels` or :meth:`GrayWynerCodec.decode_receiver`.

Sources and tasks may have other sizes than ``n_elements`` (``x_dims``, ``z_dims``), a task's
distortion may be measured after a fixed differentiable map (``distortion_maps``, e.g. a frozen
policy head: a task loss on a receiver's actions), and ``common_dim = 0`` gives two codecs that
share nothing. The LocateLift-v1 two-receiver model (BC policy + side-view monitor, on features of
the two views) uses all three: :mod:`bwgym.scenarios.two_receivers`, shipped as
``gray_wyner_locate_lift_v1.ckpt`` with its baseline ``gray_wyner_locate_lift_v1_separate.ckpt``
(``bwgym train two-receivers``).

Train (:meth:`GrayWynerCodec.train`) and regenerate the shipped model (its registered recipe)::

    bwgym train codec --codec gray_wyner --kind shared --beta 1.5 --etas 0.01,0.05,0.2,0.5 --out gw.ckpt
    bwgym train --all --only gray_wyner_synthetic    # bwgym/codecs/checkpoints/gray_wyner_synthetic.ckpt
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bwgym.codecs.core.entropy import MIN_SCALE_INDEX, get_coder, quantize_ste, rate_bits
from bwgym.codecs.core.protocol import Codec, Payload, PayloadError, Session, ViewSpec
from bwgym.codecs.core.registry import register_codec
from bwgym.codecs.multiterminal.gray_wyner_sources import GaussianPairs, SyntheticGrayWyner
from bwgym.common.checkpoint import (
    Checkpoint,
    CheckpointError,
    first_shape_mismatch,
    load_checkpoint,
    save_checkpoint,
)

__all__ = [
    "KINDS",
    "GrayWynerCodec",
    "GrayWynerConfig",
    "GrayWynerNet",
    "check_gray_wyner_arrays",
    "common_channel",
    "evaluate_net",
    "gray_wyner_state_shapes",
    "train_gray_wyner",
]

KINDS = ("shared", "separated", "combined", "joint", "independent")
CHECKPOINT_KIND = "codec/gray_wyner"
SHIPPED_CHECKPOINT = "gray_wyner_synthetic.ckpt"
#: Largest scale index the entropy models predict (scale 2**10; wider scales would be wasteful).
MAX_MODEL_SCALE_INDEX = 80
#: Fraction bits of the fixed-point conditional entropy model.
FIXED_POINT_BITS = 12
_LAYOUT_FULL, _LAYOUT_RECEIVER, _LAYOUT_CHANNEL = 0, 1, 2
CHANNELS = ("common", "private_1", "private_2")
#: Lean channel frames: bits of the rate index and of the step tag in the header byte.
LEAN_RATE_BITS, LEAN_TAG_BITS = 3, 3
#: Optional fixed maps ``(h1, h2)`` the task distortions are measured after (None: identity).
DistortionMaps = tuple[Any, Any] | None


def _check_beta_eta(beta: float, etas: Sequence[float]) -> None:
    if not 0.0 < float(beta) <= 2.0:
        raise ValueError(f"beta must be in (0, 2] (1: transmit rate, 2: receive rate), got {beta}")
    if len(etas) == 0:
        raise ValueError("etas must hold at least one rate point")
    for eta in etas:
        if not float(eta) >= 0.0:
            raise ValueError(f"eta must be >= 0 (the rate weight 1/lambda), got {eta}")


@dataclass(frozen=True)
class GrayWynerConfig:
    """Architecture and objective of a Gray-Wyner model.

    Attributes:
        kind: one of :data:`KINDS`.
        n_elements: elements per source (and per task target).
        private_dim: elements of each private latent ``Y_k`` (3-channel kinds).
        common_dim: elements of the common latent ``Y0`` (3-channel kinds).
        hidden: width of the analysis and synthesis MLPs.
        context_hidden: width of the conditional entropy model.
        beta: weight of the common rate, in ``(0, 2]``.
        etas: rate weights ``1/lambda`` of the rate points, finest first (ascending), each >= 0.
        gamma: weight of the matching loss of eq. 15 (shared kind only).
        family: entropy-model family, ``"laplace"`` or ``"gaussian"``.
        x_dims: elements of the two sources ``(x1, x2)`` when they differ (None: ``n_elements``
            each); rates are still normalised by ``n_elements``.
        z_dims: elements of the two task targets ``(z1, z2)`` (None: ``n_elements`` each).

    ``common_dim = 0`` with a three-channel kind is two codecs, one per receiver, each seeing both
    sources and sharing nothing (the baseline of the LocateLift two-receiver comparison).
    """

    kind: str = "shared"
    n_elements: int = 32
    private_dim: int = 32
    common_dim: int = 32
    hidden: int = 128
    context_hidden: int = 64
    beta: float = 1.5
    etas: tuple[float, ...] = (0.1,)
    gamma: float = 1.0
    family: str = "laplace"
    x_dims: tuple[int, int] | None = None
    z_dims: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        object.__setattr__(self, "etas", tuple(float(e) for e in self.etas))
        _check_beta_eta(self.beta, self.etas)
        if list(self.etas) != sorted(self.etas):
            raise ValueError(f"etas must be ascending (finest rate point first), got {self.etas}")
        if self.gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")
        if self.family not in ("laplace", "gaussian"):
            raise ValueError(f"family must be 'laplace' or 'gaussian', got {self.family!r}")
        for name in ("n_elements", "private_dim", "hidden", "context_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.common_dim < 0:
            raise ValueError(f"common_dim must be >= 0, got {self.common_dim}")
        for name in ("x_dims", "z_dims"):
            value = getattr(self, name)
            if value is not None:
                value = tuple(int(v) for v in value)
                if len(value) != 2 or min(value) < 1:
                    raise ValueError(f"{name} must be two sizes >= 1 (or None), got {value}")
                object.__setattr__(self, name, value)

    @property
    def source_dims(self) -> tuple[int, int]:
        """Elements of ``(x1, x2)``."""
        return self.x_dims or (self.n_elements, self.n_elements)

    @property
    def task_dims(self) -> tuple[int, int]:
        """Elements of ``(z1, z2)``."""
        return self.z_dims or (self.n_elements, self.n_elements)

    @property
    def dims(self) -> tuple[int, int, int]:
        """Elements of ``(Y0, Y1, Y2)`` for this kind (the same total for the three-channel kinds)."""
        p, c = self.private_dim, self.common_dim
        if self.kind == "joint":
            return (2 * p + c, 0, 0)
        if self.kind == "independent":
            return (0, p + c, p + c)
        return (c, p, p)

    @property
    def n_rates(self) -> int:
        """Number of rate points."""
        return len(self.etas)


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(), nn.Linear(hidden, n_out)
    )


def common_channel(y0_1: torch.Tensor, y0_2: torch.Tensor) -> torch.Tensor:
    """Eq. 14: the mean of the two quantised copies where they agree, zero elsewhere.

    Written as ``where(agree, (y0_1 + y0_2) / 2, 0)`` so gradients reach both copies wherever they
    agree (and neither where they do not).
    """
    agree = y0_1.detach() == y0_2.detach()
    return torch.where(agree, 0.5 * (y0_1 + y0_2), torch.zeros_like(y0_1))


class ConditionalPrior(nn.Module):
    """Mean and scale index of ``Y_k`` per element from ``Y0`` and the rate point (one-hot).

    One hidden ReLU layer, so the coder can run it exactly in integer fixed point
    (:meth:`integer_params`, :func:`_integer_prior`).
    """

    def __init__(self, common_dim: int, n_rates: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(common_dim + n_rates, hidden)
        self.fc2 = nn.Linear(hidden, 2 * out_dim)
        self.out_dim = out_dim
        self.n_rates = n_rates
        with torch.no_grad():  # start near a unit-ish scale: scale index 8 (scale 2)
            self.fc2.bias[out_dim:].fill_(8.0)

    def forward(self, y0: torch.Tensor, rate_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(mean, scale_index)`` as floats, each ``(batch, out_dim)``."""
        onehot = torch.zeros(y0.shape[0], self.n_rates, dtype=y0.dtype, device=y0.device)
        onehot[:, rate_idx] = 1.0
        out = self.fc2(torch.relu(self.fc1(torch.cat([y0, onehot], dim=1))))
        return out[:, : self.out_dim], out[:, self.out_dim :]

    def integer_params(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Fixed-point weights ``rint(w * 2**F)`` (int64), deterministic from the float32 weights."""
        scale = float(1 << FIXED_POINT_BITS)
        return tuple(
            np.rint(p.detach().cpu().double().numpy() * scale).astype(np.int64)
            for p in (self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias)
        )  # type: ignore[return-value]


def gray_wyner_state_shapes(config: GrayWynerConfig) -> dict[str, tuple[int, ...]]:
    """The ``state_dict`` shapes of the :class:`GrayWynerNet` of ``config`` (arithmetic only, no module built)."""
    c = config
    h, r = c.hidden, c.n_rates
    (n1, n2), (t1, t2) = c.source_dims, c.task_dims
    d0, d1, d2 = c.dims
    shapes: dict[str, tuple[int, ...]] = {}

    def mlp(name: str, n_in: int, n_out: int) -> None:  # the layers of _mlp: Linear, ELU, Linear, ELU, Linear
        for i, (rows, cols) in enumerate(((h, n_in), (h, h), (n_out, h))):
            shapes[f"{name}.{2 * i}.weight"] = (rows, cols)
            shapes[f"{name}.{2 * i}.bias"] = (rows,)

    if c.kind == "shared":
        mlp("f1", n1 + n2, d1 + d0)
        mlp("f2", n1 + n2, d2 + d0)
    elif c.kind == "separated":
        for name, d in (("f0", d0), ("f1", d1), ("f2", d2)):
            mlp(name, n1 + n2, d)
    elif c.kind in ("combined", "joint"):
        mlp("f", n1 + n2, d0 + d1 + d2)
    else:  # independent
        mlp("f1", n1, d1)
        mlp("f2", n2, d2)
    mlp("g1", d1 + d0, t1)
    mlp("g2", d2 + d0, t2)
    for name, d in (("0", d0), ("1", d1), ("2", d2)):
        shapes[f"enc_gain{name}"] = shapes[f"dec_gain{name}"] = (r, d)
    shapes["prior0_mean"] = shapes["prior0_scale"] = (r, d0)
    for k, d in ((1, d1), (2, d2)):
        shapes[f"prior{k}.fc1.weight"] = (c.context_hidden, d0 + r)
        shapes[f"prior{k}.fc1.bias"] = (c.context_hidden,)
        shapes[f"prior{k}.fc2.weight"] = (2 * d, c.context_hidden)
        shapes[f"prior{k}.fc2.bias"] = (2 * d,)
    return shapes


#: Fields of :class:`GrayWynerConfig` that size the network: integers, checked before any arithmetic.
_SIZE_FIELDS = ("n_elements", "private_dim", "common_dim", "hidden", "context_hidden")


def check_gray_wyner_arrays(ckpt: Checkpoint) -> GrayWynerConfig:
    """The checkpoint's config, once its network arrays are confirmed; nothing is built before.

    Reads ``metadata["config"]`` into a :class:`GrayWynerConfig` (its own range checks), computes
    the shapes of the network it describes (:func:`gray_wyner_state_shapes`) and requires exactly
    those keys and shapes in the file, so the :class:`GrayWynerNet` built afterwards takes no more
    memory than the file's arrays (already capped by the checkpoint loader): metadata asking for a
    million hidden units or rate points is refused here, not by the allocator.

    Raises:
        CheckpointError: naming the file, the field or the first array that disagrees.
    """
    where = ckpt.path or "gray_wyner checkpoint"
    fix = "the file is damaged or crafted; retrain it (`bwgym train codec --codec gray_wyner ...`)"
    raw = ckpt.metadata.get("config")
    try:
        if not isinstance(raw, dict):
            raise TypeError("'config' must be an object of GrayWynerConfig fields")
        for name in _SIZE_FIELDS:
            value = raw.get(name, 0)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, got {repr(value)[:80]}")
        for name in ("x_dims", "z_dims"):
            value = raw.get(name)
            if value is not None and not (
                isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            ):
                raise TypeError(f"{name} must be a list of integers or null, got {repr(value)[:80]}")
        config = GrayWynerConfig(**{**raw, "etas": tuple(raw["etas"])})
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(
            f"{where}: gray_wyner checkpoint without a valid config ({err}); {fix}"
        ) from None
    expected = gray_wyner_state_shapes(config)
    if len(ckpt.state) != len(expected):
        raise CheckpointError(
            f"{where}: config (kind {config.kind!r}) implies {len(expected)} arrays, the file holds "
            f"{len(ckpt.state)}; {fix}"
        )
    mismatch = first_shape_mismatch(expected, ckpt.state)
    if mismatch is not None:
        key, shape, got = mismatch
        raise CheckpointError(
            f"{where}: config (kind {config.kind!r}, hidden {config.hidden}, context_hidden "
            f"{config.context_hidden}, dims {config.dims}, {config.n_rates} rate points) needs {key} of "
            f"shape {shape}, the file has {'none' if got is None else got}; {fix}"
        )
    return config


def _round_shift(x: np.ndarray, bits: int) -> np.ndarray:
    """``round(x / 2**bits)`` for int64, halves up, exactly."""
    return np.right_shift(x + (1 << (bits - 1)), bits)


def _integer_prior(
    params: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], y0: np.ndarray, rate_idx: int, n_rates: int
) -> tuple[np.ndarray, np.ndarray]:
    """Run the conditional prior in integer arithmetic: integer ``(mean, scale_index)`` per element."""
    w1, b1, w2, b2 = params
    onehot = np.zeros(n_rates, dtype=np.int64)
    onehot[rate_idx] = 1
    x = np.concatenate([np.asarray(y0, dtype=np.int64), onehot])
    h = np.maximum(w1 @ x + b1, 0)  # scale 2**F
    out = w2 @ h + np.left_shift(b2, FIXED_POINT_BITS)  # scale 2**(2F)
    out = _round_shift(out, 2 * FIXED_POINT_BITS)
    d = out.size // 2
    return out[:d], np.clip(out[d:], MIN_SCALE_INDEX, MAX_MODEL_SCALE_INDEX)


class GrayWynerNet(nn.Module):
    """Analysis transforms, entropy models and synthesis transforms of one Gray-Wyner model."""

    def __init__(self, config: GrayWynerConfig) -> None:
        super().__init__()
        self.config = config
        with warnings.catch_warnings():  # joint/independent kinds have empty channels: 0-size layers
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
            self._build(config)

    def _build(self, config: GrayWynerConfig) -> None:
        c = config
        h = c.hidden
        (n1, n2), (t1, t2) = c.source_dims, c.task_dims
        d0, d1, d2 = c.dims
        if c.kind == "shared":
            self.f1 = _mlp(n1 + n2, h, d1 + d0)
            self.f2 = _mlp(n1 + n2, h, d2 + d0)
        elif c.kind == "separated":
            self.f0 = _mlp(n1 + n2, h, d0)
            self.f1 = _mlp(n1 + n2, h, d1)
            self.f2 = _mlp(n1 + n2, h, d2)
        elif c.kind in ("combined", "joint"):
            self.f = _mlp(n1 + n2, h, d0 + d1 + d2)
        else:  # independent
            self.f1 = _mlp(n1, h, d1)
            self.f2 = _mlp(n2, h, d2)
        self.g1 = _mlp(d1 + d0, h, t1)
        self.g2 = _mlp(d2 + d0, h, t2)
        r = c.n_rates
        # gains 2**g (g in octaves, rounded to the 1/8-octave grid) per rate point and element;
        # coarser points start with smaller gains
        init = torch.tensor([-0.5 * math.log2(max(e, 1e-6) / max(c.etas[0], 1e-6)) for e in c.etas])
        for name, d in (("0", d0), ("1", d1), ("2", d2)):
            self.register_parameter(f"enc_gain{name}", nn.Parameter(init[:, None].repeat(1, d).clone()))
            self.register_parameter(f"dec_gain{name}", nn.Parameter(-init[:, None].repeat(1, d).clone()))
        # factorised Y0 model, in octave-like units so Adam moves it as fast as the weights:
        # mean = 4 * prior0_mean, scale index = 8 * prior0_scale (scale 2 ** prior0_scale)
        self.prior0_mean = nn.Parameter(torch.zeros(r, d0))
        self.prior0_scale = nn.Parameter(torch.full((r, d0), 1.0))
        self.prior1 = ConditionalPrior(d0, r, c.context_hidden, d1)
        self.prior2 = ConditionalPrior(d0, r, c.context_hidden, d2)

    # -- pieces ---------------------------------------------------------------------------------

    def _gain(self, which: str, channel: int, rate_idx: int) -> torch.Tensor:
        g = getattr(self, f"{which}_gain{channel}")[rate_idx]
        return torch.exp2(quantize_ste(8.0 * g) / 8.0)

    def analysis(
        self, x1: torch.Tensor, x2: torch.Tensor, rate_idx: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantised ``(Y0, Y1, Y2)`` (integers, straight-through) and the eq. 15 matching loss."""
        kind = self.config.kind
        d0, d1, d2 = self.config.dims
        both = torch.cat([x1, x2], dim=1)
        q = quantize_ste
        zero = both.new_zeros(())
        if kind == "shared":
            u1, u2 = self.f1(both), self.f2(both)
            y1 = q(u1[:, :d1] * self._gain("enc", 1, rate_idx))
            y2 = q(u2[:, :d2] * self._gain("enc", 2, rate_idx))
            g0 = self._gain("enc", 0, rate_idx)
            c1, c2 = q(u1[:, d1:] * g0), q(u2[:, d2:] * g0)
            return common_channel(c1, c2), y1, y2, ((c1 - c2) ** 2).mean()
        if kind == "separated":
            u0, u1, u2 = self.f0(both), self.f1(both), self.f2(both)
        elif kind in ("combined", "joint"):
            u = self.f(both)
            u0, u1, u2 = u[:, :d0], u[:, d0 : d0 + d1], u[:, d0 + d1 :]
        else:
            u1, u2 = self.f1(x1), self.f2(x2)
            u0 = both[:, :0]
        return (
            q(u0 * self._gain("enc", 0, rate_idx)),
            q(u1 * self._gain("enc", 1, rate_idx)),
            q(u2 * self._gain("enc", 2, rate_idx)),
            zero,
        )

    def synthesis(self, task: int, y_private: torch.Tensor, y0: torch.Tensor, rate_idx: int) -> torch.Tensor:
        """Task ``task``'s prediction from ``[Y_k, Y0]`` (de-gained)."""
        inp = torch.cat(
            [y_private * self._gain("dec", task, rate_idx), y0 * self._gain("dec", 0, rate_idx)], dim=1
        )
        return (self.g1 if task == 1 else self.g2)(inp)

    def prior0(self, rate_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Float mean and scale index of the factorised ``Y0`` model at a rate point."""
        return 4.0 * self.prior0_mean[rate_idx], 8.0 * self.prior0_scale[rate_idx]

    def _bits(self, y: torch.Tensor, mean: torch.Tensor, scale_idx: torch.Tensor) -> torch.Tensor:
        """Bits per sample of integer ``y`` under the rounded (coder's) mean and scale index."""
        if y.shape[1] == 0:
            return y.new_zeros(y.shape[0])
        s = quantize_ste(scale_idx.clamp(MIN_SCALE_INDEX, MAX_MODEL_SCALE_INDEX))
        return rate_bits(y - quantize_ste(mean), torch.exp2(s / 8.0), self.config.family).sum(dim=1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, rate_idx: int = 0) -> dict[str, torch.Tensor]:
        """Training pass: latents, predictions, bits per sample of each channel, matching loss."""
        y0, y1, y2, match = self.analysis(x1, x2, rate_idx)
        m0, s0 = self.prior0(rate_idx)
        bits0 = self._bits(y0, m0.expand_as(y0), s0.expand_as(y0))
        m1, s1 = self.prior1(y0, rate_idx)
        m2, s2 = self.prior2(y0, rate_idx)
        return {
            "y0": y0,
            "y1": y1,
            "y2": y2,
            "z1": self.synthesis(1, y1, y0, rate_idx),
            "z2": self.synthesis(2, y2, y0, rate_idx),
            "bits0": bits0,
            "bits1": self._bits(y1, m1, s1),
            "bits2": self._bits(y2, m2, s2),
            "match": match,
        }

    def loss(
        self,
        batch: Mapping[str, torch.Tensor],
        rate_idx: int = 0,
        distortion_maps: DistortionMaps = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Eq. 12 scaled by ``eta`` plus eq. 15: ``eta (beta R0 + R1 + R2) + D1 + D2 + gamma match``.

        ``distortion_maps``: optional fixed differentiable maps ``(h1, h2)`` (None entries: identity);
        ``D_k`` is then the RMSE of ``h_k(z_k_hat)`` against ``h_k(z_k)``, e.g. a frozen policy head
        that turns receiver 1's decoded features into actions (a task loss on its actions).
        """
        c = self.config
        out = self(batch["x1"], batch["x2"], rate_idx)
        n = c.n_elements
        r0, r1, r2 = (out[f"bits{k}"].mean() / n for k in range(3))
        d1, d2 = (_distortion(out[f"z{k}"], batch[f"z{k}"], distortion_maps, k) for k in (1, 2))
        eta = c.etas[rate_idx]
        total = eta * (c.beta * r0 + r1 + r2) + d1 + d2 + c.gamma * out["match"]
        stats = {"R0": r0.item(), "R1": r1.item(), "R2": r2.item(), "D1": d1.item(), "D2": d2.item()}
        stats["match"] = float(out["match"].item())
        stats["loss"] = total.item()
        return total, stats


# ---------------------------------------------------------------------------------------------
# Training and evaluation
# ---------------------------------------------------------------------------------------------


def _distortion(pred: torch.Tensor, target: torch.Tensor, maps: DistortionMaps, task: int) -> torch.Tensor:
    """RMSE of task ``task``'s prediction, after its distortion map when one is given."""
    fn = None if maps is None else maps[task - 1]
    if fn is not None:
        with torch.no_grad():
            target = fn(target)
        pred = fn(pred)
    return torch.sqrt(((pred - target) ** 2).mean())


def make_dataset(name: str = "synthetic", **kwargs: Any) -> SyntheticGrayWyner | GaussianPairs:
    """Build the dataset ``"synthetic"`` (paper 002 App. D.3) or ``"gaussian"`` (pairs with ``rho``)."""
    if name == "synthetic":
        return SyntheticGrayWyner(**kwargs)
    if name == "gaussian":
        return GaussianPairs(**kwargs)
    raise ValueError(f"dataset must be 'synthetic' or 'gaussian', got {name!r}")


def _torch_batch(data: Any, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in data.sample(batch_size, rng).items()}


def train_gray_wyner(
    config: GrayWynerConfig,
    data: SyntheticGrayWyner | GaussianPairs | None = None,
    steps: int = 3000,
    batch_size: int = 100,
    lr: float = 2e-3,
    seed: int = 0,
    log_dir: str | Path | None = None,
    progress: bool = False,
    distortion_maps: DistortionMaps = None,
) -> GrayWynerNet:
    """Train a model from scratch on fresh batches (Adam, grad-norm clip 1, one-cycle cosine lr).

    The rate points are cycled batch by batch. On one CPU thread a 3000-step run of the default
    size takes well under a minute.

    Args:
        config: architecture and objective.
        data: the source (default: the synthetic dataset with ``n_elements`` of the config).
        steps: optimiser steps.
        batch_size: samples per step (the paper's 100).
        lr: peak learning rate.
        seed: seeds the weights and the batches.
        log_dir: TensorBoard folder (None: no logs).
        progress: print a line every 500 steps.
        distortion_maps: fixed maps the distortions are measured after (:meth:`GrayWynerNet.loss`).

    """
    torch.manual_seed(seed)
    data = data if data is not None else SyntheticGrayWyner(n_elements=config.n_elements)
    have = tuple(getattr(data, "x_dims", None) or (data.n_elements, data.n_elements))
    if have != config.source_dims:
        raise ValueError(f"data has sources of {have} elements, the config {config.source_dims}")
    net = GrayWynerNet(config)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    # OneCycleLR needs a warm-up of more than one step: a run of 20 steps or fewer keeps lr constant.
    sched = (
        torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
        if 0.05 * steps > 1
        else None
    )
    rng = np.random.default_rng(seed + 1)
    writer = None
    if log_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(log_dir))
    net.train()
    for step in range(steps):
        rate_idx = step % config.n_rates
        loss, stats = net.loss(_torch_batch(data, batch_size, rng), rate_idx, distortion_maps)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        if sched is not None:
            sched.step()
        if writer is not None and step % 50 == 0:
            for k, v in stats.items():
                writer.add_scalar(f"train/{k}/rate{rate_idx}", v, step)
        if progress and (step % 500 == 0 or step == steps - 1):
            print(f"step {step:5d} rate {rate_idx} " + " ".join(f"{k}={v:.4f}" for k, v in stats.items()))
    if writer is not None:
        writer.close()
    net.eval()
    return net


@torch.no_grad()
def evaluate_net(
    net: GrayWynerNet,
    data: Any,
    n_samples: int = 2000,
    seed: int = 12345,
    rate_idx: int = 0,
    distortion_maps: DistortionMaps = None,
) -> dict[str, float]:
    """Model-estimated rates (bits per position, under the coder's rounded models) and RMSEs."""
    net.eval()
    batch = _torch_batch(data, n_samples, np.random.default_rng(seed))
    out = net(batch["x1"], batch["x2"], rate_idx)
    n = net.config.n_elements
    r = [float(out[f"bits{k}"].mean()) / n for k in range(3)]
    d1, d2 = (float(_distortion(out[f"z{k}"], batch[f"z{k}"], distortion_maps, k)) for k in (1, 2))
    return {
        "R0": r[0],
        "R1": r[1],
        "R2": r[2],
        "Rt": r[0] + r[1] + r[2],
        "Rr": 2 * r[0] + r[1] + r[2],
        "D1": d1,
        "D2": d2,
    }


# ---------------------------------------------------------------------------------------------
# The codec
# ---------------------------------------------------------------------------------------------


def _resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass(frozen=True)
class _Meta:
    model_hash: bytes
    step: int
    rate_idx: int
    layout: int  # 0 full (3 streams) | 1 + k receiver k (2 streams) | 4 + ch one channel

    def to_bytes(self) -> bytes:
        return self.model_hash + bytes((self.step & 0xFF, self.rate_idx, self.layout))

    @classmethod
    def parse(cls, meta: bytes) -> _Meta:
        if len(meta) != 5:
            raise PayloadError(f"gray_wyner payload meta has {len(meta)} bytes, expected 5")
        return cls(bytes(meta[:2]), meta[2], meta[3], meta[4])


@dataclass(frozen=True)
class _LeanHeader:
    """The header byte of a lean channel frame: step tag, channel and rate index."""

    tag: int
    channel: int
    rate_idx: int

    def to_byte(self) -> bytes:
        return bytes((self.tag << (8 - LEAN_TAG_BITS) | self.channel << LEAN_RATE_BITS | self.rate_idx,))

    @classmethod
    def parse(cls, meta: bytes) -> _LeanHeader:
        b = meta[0]
        return cls(b >> (8 - LEAN_TAG_BITS), (b >> LEAN_RATE_BITS) & 3, b & ((1 << LEAN_RATE_BITS) - 1))


@register_codec(
    "gray_wyner",
    wire_id=8,
    checkpoint=SHIPPED_CHECKPOINT,
    recipe={"kind": "shared", "beta": 1.5, "etas": (0.01, 0.03, 0.1, 0.5), "steps": 6000},
    description="learnable Gray-Wyner network: common + two private streams for two receivers (paper 002)",
)
class GrayWynerCodec(Codec):
    """Gray-Wyner codec: ``compress({x1, x2}) -> (common, private_1, private_2)``; decodes ``{z1, z2}``.

    ``decompress`` returns the *task outputs* (``task_names``, default ``z1, z2``), not the input
    views: receiver ``k`` gets its task ``z_k``. Payloads built by :meth:`for_receiver` decode to
    that receiver's task only; :meth:`split_channels` gives one payload per channel for links
    that carry them separately, and :meth:`decode_receiver` joins them again.
    """

    name = "gray_wyner"

    def __init__(
        self,
        net: GrayWynerNet,
        view_names: tuple[str, str] = ("x1", "x2"),
        task_names: tuple[str, str] = ("z1", "z2"),
        env_id: str | None = None,
        device: str | torch.device = "auto",
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.device = _resolve_device(device)
        self.net = net.to(self.device).eval()
        self.config = net.config
        self.views = tuple(
            ViewSpec(v, (n,), "float32") for v, n in zip(view_names, self.config.source_dims, strict=True)
        )
        self.task_names = tuple(task_names)
        self.env_id = env_id
        self.metadata = dict(metadata or {})
        self.coder = get_coder(self.config.family)
        self._step = 0
        # integer entropy-model parameters: what both ends derive identically from the weights
        self._prior0 = [
            (
                np.rint(4.0 * net.prior0_mean[j].detach().cpu().double().numpy()).astype(np.int64),
                np.clip(
                    np.rint(8.0 * net.prior0_scale[j].detach().cpu().double().numpy()),
                    MIN_SCALE_INDEX,
                    MAX_MODEL_SCALE_INDEX,
                ).astype(np.int64),
            )
            for j in range(self.config.n_rates)
        ]
        self._prior_k = {1: net.prior1.integer_params(), 2: net.prior2.integer_params()}
        digest = hashlib.sha256()
        for key, value in sorted(net.state_dict().items()):
            digest.update(key.encode())
            digest.update(value.detach().cpu().numpy().tobytes())
        self.model_hash = digest.digest()[:2]

    def __repr__(self) -> str:
        c = self.config
        return (
            f"GrayWynerCodec(kind={c.kind!r}, beta={c.beta}, etas={c.etas}, n_elements={c.n_elements}, "
            f"views={[v.name for v in self.views]}, tasks={list(self.task_names)})"
        )

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(
        cls, ckpt: Checkpoint, device: str | torch.device = "auto", **kwargs: Any
    ) -> GrayWynerCodec:
        """Build the codec from a loaded ``codec/gray_wyner`` checkpoint."""
        if kwargs:
            raise TypeError(f"GrayWynerCodec.from_checkpoint got unexpected options {sorted(kwargs)}")
        meta = ckpt.metadata
        config = check_gray_wyner_arrays(ckpt)  # before GrayWynerNet allocates what the config asks
        views, tasks = meta.get("views", {"x1": {}, "x2": {}}), meta.get("tasks", ["z1", "z2"])
        for what, names in (("views", views), ("tasks", tasks)):
            if (
                not isinstance(names, (dict, list))
                or len(names) != 2
                or not all(isinstance(n, str) for n in names)
            ):
                raise CheckpointError(
                    f"{ckpt.path}: gray_wyner metadata {what} must name two {what}, got {repr(names)[:80]}"
                )
        views, tasks = list(views), list(tasks)
        net = GrayWynerNet(config)
        try:
            net.load_state_dict(ckpt.tensors())
        except RuntimeError as err:
            raise CheckpointError(f"{ckpt.path}: weights do not match the recorded config ({err})") from err
        return cls(
            net,
            view_names=(views[0], views[1]),
            task_names=(tasks[0], tasks[1]),
            env_id=meta.get("env_id"),
            device=device,
            metadata=meta,
        )

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "auto") -> GrayWynerCodec:
        """Load a checkpoint file written by :meth:`save`."""
        return cls.from_checkpoint(load_checkpoint(path, kind=CHECKPOINT_KIND), device=device)

    def save(self, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
        """Write the model in the project's checkpoint format (``codec/gray_wyner``)."""
        metadata = {
            **{k: v for k, v in self.metadata.items() if k not in ("config", "views", "tasks", "env_id")},
            "env_id": self.env_id,
            "views": {v.name: {"shape": list(v.shape), "dtype": v.dtype} for v in self.views},
            "tasks": list(self.task_names),
            "config": asdict(self.config),
            **dict(extra or {}),
        }
        state = {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
        return save_checkpoint(path, CHECKPOINT_KIND, state, metadata)

    @classmethod
    def train(
        cls,
        out: str | Path | None = None,
        kind: str = "shared",
        beta: float = 1.5,
        etas: Sequence[float] = (0.1,),
        steps: int = 3000,
        dataset: str = "synthetic",
        n_elements: int = 32,
        seed: int = 0,
        log_dir: str | Path | None = None,
        progress: bool = False,
        **config: Any,
    ) -> GrayWynerCodec:
        """Train from scratch (what ``bwgym train codec --codec gray_wyner`` runs) and save to ``out``.

        Args:
            out: checkpoint file to write (None: not saved).
            kind: architecture, one of :data:`KINDS`.
            beta: weight of the common rate, ``(0, 2]``.
            etas: rate points (ascending), each >= 0.
            steps: optimiser steps.
            dataset: ``"synthetic"`` (App. D.3, dependency 4/5) or ``"gaussian"`` (``rho=0.9``).
            n_elements: elements per source.
            seed: seeds weights, batches and the dataset.
            log_dir: TensorBoard folder.
            progress: print progress lines.
            **config: further :class:`GrayWynerConfig` fields (``hidden``, ``gamma``, ...).

        """
        _check_beta_eta(beta, tuple(etas))
        cfg = GrayWynerConfig(kind=kind, beta=beta, etas=tuple(sorted(etas)), n_elements=n_elements, **config)
        data = make_dataset(dataset, n_elements=n_elements, seed=seed)
        start = time.perf_counter()
        net = train_gray_wyner(cfg, data, steps=steps, seed=seed, log_dir=log_dir, progress=progress)
        metrics = [evaluate_net(net, data, rate_idx=j) for j in range(cfg.n_rates)]
        codec = cls(
            net,
            device="cpu",
            metadata={
                "dataset": {
                    "name": dataset,
                    **{f.name: getattr(data, f.name) for f in fields(data) if f.init},
                },
                "train": {"steps": steps, "seed": seed, "seconds": round(time.perf_counter() - start, 1)},
                "metrics": metrics,
            },
        )
        if out is not None:
            codec.save(out)
        return codec

    def check_spec(self, env_id: str | None = None, views: Sequence[ViewSpec] | None = None) -> None:
        """Raise ``ValueError`` naming both specs when another env or other views are requested."""
        super().check_spec(env_id=env_id, views=views)

    # -- coding ---------------------------------------------------------------------------------

    @property
    def n_rates(self) -> int:
        """Number of rate points (finest first)."""
        return self.config.n_rates

    @torch.no_grad()
    def encode_symbols(self, views: Mapping[str, np.ndarray], rate_idx: int) -> tuple[np.ndarray, ...]:
        """Integer ``(Y0, Y1, Y2)`` of one sample at a rate point."""
        x1, x2 = (
            torch.as_tensor(np.asarray(views[v.name], dtype=np.float32).reshape(1, -1), device=self.device)
            for v in self.views
        )
        y0, y1, y2, _ = self.net.analysis(x1, x2, rate_idx)
        return tuple(np.rint(y[0].cpu().double().numpy()).astype(np.int64) for y in (y0, y1, y2))

    def _private_model(self, task: int, y0: np.ndarray, rate_idx: int) -> tuple[np.ndarray, np.ndarray]:
        return _integer_prior(self._prior_k[task], y0, rate_idx, self.n_rates)

    def encode_streams(self, symbols: Sequence[np.ndarray], rate_idx: int) -> tuple[tuple[bytes, ...], float]:
        """Entropy-code ``(Y0, Y1, Y2)``; return the three streams and the models' estimate in bits."""
        y0, y1, y2 = symbols
        m0, s0 = self._prior0[rate_idx]
        streams = [self.coder.encode(y0 - m0, s0)]
        estimate = self.coder.estimate_bits(y0 - m0, s0)
        for task, y in ((1, y1), (2, y2)):
            mean, scale_idx = self._private_model(task, y0, rate_idx)
            streams.append(self.coder.encode(y - mean, scale_idx))
            estimate += self.coder.estimate_bits(y - mean, scale_idx)
        return tuple(streams), estimate

    def compress_at(self, views: Mapping[str, np.ndarray], rate_idx: int, step: int | None = None) -> Payload:
        """Return the full payload (three streams) of one sample at rate point ``rate_idx``."""
        return self.compress_with_estimate(views, rate_idx, step)[0]

    def compress_with_estimate(
        self, views: Mapping[str, np.ndarray], rate_idx: int, step: int | None = None
    ) -> tuple[Payload, float]:
        """Return :meth:`compress_at`'s payload and the entropy models' estimate of its stream bits."""
        if not 0 <= rate_idx < self.n_rates:
            raise ValueError(f"rate_idx must be in 0..{self.n_rates - 1}, got {rate_idx}")
        streams, estimate = self.encode_streams(self.encode_symbols(views, rate_idx), rate_idx)
        step = self._step if step is None else step
        meta = _Meta(self.model_hash, step, rate_idx, _LAYOUT_FULL)
        return Payload(self.name, streams, meta.to_bytes()), estimate

    def _compress(
        self, views: Mapping[str, np.ndarray], budget_bits: int, allocation: Mapping[str, float] | None
    ) -> Payload:
        """Send the finest rate point whose full payload fits ``budget_bits``; empty when none does.

        ``allocation`` is ignored (the split over the three channels is the model's).
        """
        step = self._step
        self._step = (self._step + 1) & 0xFF
        for rate_idx in range(self.n_rates):
            payload = self.compress_at(views, rate_idx, step=step)
            if payload.nbits <= budget_bits:
                return payload
        return Payload.empty(self.name)

    def _check_meta(self, meta: _Meta, what: str) -> None:
        if meta.model_hash != self.model_hash:
            raise PayloadError(
                f"{what} was written by gray_wyner model {meta.model_hash.hex()}, this codec is model "
                f"{self.model_hash.hex()}: streams of another model"
            )
        if meta.rate_idx >= self.n_rates:
            raise PayloadError(
                f"{what} has rate index {meta.rate_idx}, the model has {self.n_rates} rate points"
            )

    def _decode_common(self, data: bytes, rate_idx: int) -> np.ndarray:
        m0, s0 = self._prior0[rate_idx]
        return self.coder.decode(data, s0) + m0

    def _decode_private(self, task: int, data: bytes | None, y0: np.ndarray, rate_idx: int) -> np.ndarray:
        mean, scale_idx = self._private_model(task, y0, rate_idx)
        if data is None:  # the private stream did not arrive: its conditional mean
            return mean
        return self.coder.decode(data, scale_idx) + mean

    @torch.no_grad()
    def _synthesise(self, task: int, y_private: np.ndarray, y0: np.ndarray, rate_idx: int) -> np.ndarray:
        def t(y: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(y, dtype=torch.float32, device=self.device).reshape(1, -1)

        return self.net.synthesis(task, t(y_private), t(y0), rate_idx)[0].cpu().numpy().astype(np.float32)

    def decode_receiver(
        self, task: int, common: Payload | None, private: Payload | None = None
    ) -> np.ndarray:
        """Receiver ``task``'s output from channel payloads delivered apart.

        The payloads are those of :meth:`split_channels` (container v1) or lean frames of
        :meth:`compress_channels` (parsed under :attr:`channel_session`; then a model without a
        common channel needs only ``private``).

        Args:
            task: 1 or 2.
            common: the ``common`` channel payload (required).
            private: the ``private_<task>`` payload; None decodes from ``common`` alone (the
                private latent is replaced by its conditional mean given ``Y0``).

        Raises:
            PayloadError: ``common`` missing, a payload of another channel, model or step.

        """
        if task not in (1, 2):
            raise ValueError(f"task must be 1 or 2, got {task}")
        lean = [p.is_lean for p in (common, private) if p is not None and not p.is_empty]
        if any(lean):
            if not all(lean):
                raise PayloadError("a lean channel frame and a container payload cannot be decoded together")
            if "common" in self.channels and (common is None or common.is_empty):
                raise PayloadError(
                    f"receiver {task} needs the common stream, which is missing (private_{task} arrived)"
                )
            out = self.decompress_channels({"common": common, f"private_{task}": private})
            if self.task_names[task - 1] not in out:  # pragma: no cover - no common channel, no private
                raise PayloadError(f"receiver {task} got no stream")
            return out[self.task_names[task - 1]]
        if common is None or common.is_empty:
            have = f" (private_{task} arrived)" if private is not None and not private.is_empty else ""
            raise PayloadError(f"receiver {task} needs the common stream, which is missing{have}")
        cm = self._channel_meta(common, 0)
        y0 = self._decode_common(common.streams[0], cm.rate_idx)
        data = None
        if private is not None and not private.is_empty:
            pm = self._channel_meta(private, task)
            if (pm.step, pm.rate_idx) != (cm.step, cm.rate_idx):
                raise PayloadError(
                    f"private_{task} is from step {pm.step} rate {pm.rate_idx}, the common stream from step "
                    f"{cm.step} rate {cm.rate_idx}: streams of different steps"
                )
            data = private.streams[0]
        return self._synthesise(task, self._decode_private(task, data, y0, cm.rate_idx), y0, cm.rate_idx)

    def _channel_meta(self, payload: Payload, channel: int) -> _Meta:
        meta = _Meta.parse(payload.meta)
        self._check_meta(meta, f"the {CHANNELS[channel]} payload")
        if meta.layout != _LAYOUT_CHANNEL + channel or len(payload.streams) != 1:
            raise PayloadError(
                f"expected a {CHANNELS[channel]} channel payload, got layout {meta.layout} with "
                f"{len(payload.streams)} streams"
            )
        return meta

    def decompress(self, payload: Payload) -> dict[str, np.ndarray]:
        """Decode the tasks a payload serves: both (full), one (receiver), or ``Y0`` alone (common).

        A lean channel frame decodes as :meth:`decompress_channels` of that frame alone.

        Raises:
            PayloadError: a payload of another codec, model, or a private channel alone.

        """
        if payload.codec != self.name:
            raise PayloadError(f"payload of codec {payload.codec!r}, expected {self.name!r}")
        if payload.is_empty:
            return {}
        if payload.is_lean:  # one lean channel frame
            head = self._lean_header(payload, None)
            return self.decompress_channels({CHANNELS[head.channel]: payload})
        meta = _Meta.parse(payload.meta)
        self._check_meta(meta, "the payload")
        j, streams = meta.rate_idx, payload.streams
        if meta.layout == _LAYOUT_FULL and len(streams) == 3:
            y0 = self._decode_common(streams[0], j)
            return {
                self.task_names[k - 1]: self._synthesise(k, self._decode_private(k, streams[k], y0, j), y0, j)
                for k in (1, 2)
            }
        if meta.layout in (_LAYOUT_RECEIVER + 1, _LAYOUT_RECEIVER + 2) and len(streams) == 2:
            k = meta.layout - _LAYOUT_RECEIVER
            y0 = self._decode_common(streams[0], j)
            return {
                self.task_names[k - 1]: self._synthesise(k, self._decode_private(k, streams[1], y0, j), y0, j)
            }
        if meta.layout == _LAYOUT_CHANNEL and len(streams) == 1:
            y0 = self._decode_common(streams[0], j)
            return {
                self.task_names[k - 1]: self._synthesise(k, self._decode_private(k, None, y0, j), y0, j)
                for k in (1, 2)
            }
        if meta.layout in (_LAYOUT_CHANNEL + 1, _LAYOUT_CHANNEL + 2):
            k = meta.layout - _LAYOUT_CHANNEL
            raise PayloadError(f"private_{k} arrived without the common stream; receiver {k} needs both")
        raise PayloadError(
            f"gray_wyner payload layout {meta.layout} with {len(streams)} streams is not valid"
        )

    def for_receiver(self, payload: Payload, task: int) -> Payload:
        """Return what receiver ``task`` gets: the ``common`` and ``private_<task>`` streams only."""
        if task not in (1, 2):
            raise ValueError(f"task must be 1 or 2, got {task}")
        meta = self._full_meta(payload)
        layout = _LAYOUT_RECEIVER + task
        return Payload(
            self.name, (payload.streams[0], payload.streams[task]), _Meta(*meta[:3], layout).to_bytes()
        )

    def split_channels(self, payload: Payload) -> dict[str, Payload]:
        """One single-stream payload per channel (``common``, ``private_1``, ``private_2``)."""
        meta = self._full_meta(payload)
        return {
            ch: Payload(self.name, (payload.streams[i],), _Meta(*meta[:3], _LAYOUT_CHANNEL + i).to_bytes())
            for i, ch in enumerate(CHANNELS)
        }

    def _full_meta(self, payload: Payload) -> tuple[bytes, int, int, int]:
        if payload.is_empty:
            raise PayloadError("an empty payload has no channels")
        meta = _Meta.parse(payload.meta)
        self._check_meta(meta, "the payload")
        if meta.layout != _LAYOUT_FULL or len(payload.streams) != 3:
            raise PayloadError("expected a full gray_wyner payload (common, private_1, private_2)")
        return (meta.model_hash, meta.step, meta.rate_idx, meta.layout)

    # -- lean channel frames (one link per channel, a session per link and episode) ------------

    @property
    def fingerprint(self) -> bytes:
        """4 bytes of the sha256 of the weights, config (kind, rate ladder, sizes), views and tasks."""
        cached = self.__dict__.get("_fingerprint")
        if cached is None:
            digest = hashlib.sha256()
            spec = [self.name, asdict(self.config), [v.name for v in self.views], list(self.task_names)]
            digest.update(repr(spec).encode())
            for key, value in sorted(self.net.state_dict().items()):
                arr = value.detach().cpu().numpy()
                digest.update(f"{key}:{arr.dtype.str}:{arr.shape}".encode())
                digest.update(arr.tobytes())
            cached = digest.digest()[:4]
            self.__dict__["_fingerprint"] = cached
        return cached

    @property
    def channel_session(self) -> Session:
        """The session header every link carrying lean channel frames sends once per episode.

        Raises:
            ValueError: the model has more rate points than a lean header holds (8).
        """
        if self.n_rates > 1 << LEAN_RATE_BITS:
            raise ValueError(
                f"lean channel frames hold at most {1 << LEAN_RATE_BITS} rate points, the model has "
                f"{self.n_rates}; use the container payloads (compress_at, split_channels)"
            )
        return Session(self.name, self.fingerprint, len(CHANNELS), 0)

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels that carry latents for this kind (the baseline ``common_dim = 0``: no common)."""
        return tuple(ch for ch, d in zip(CHANNELS, self.config.dims, strict=True) if d > 0)

    def compress_channels(
        self, views: Mapping[str, np.ndarray], rate_idx: int, step: int
    ) -> dict[str, Payload]:
        """One lean frame per channel of :attr:`channels` at rate point ``rate_idx``.

        Each frame is ``header | body | crc8`` under :attr:`channel_session` (16 bits of overhead);
        its body is the same range-coder stream as the container payload's.

        Args:
            views: one array per view.
            rate_idx: the rate point.
            step: the sender's step counter (its low 3 bits are sent: the step tag).
        """
        if not 0 <= rate_idx < self.n_rates:
            raise ValueError(f"rate_idx must be in 0..{self.n_rates - 1}, got {rate_idx}")
        session = self.channel_session
        streams, _ = self.encode_streams(self.encode_symbols(views, rate_idx), rate_idx)
        tag = int(step) & ((1 << LEAN_TAG_BITS) - 1)
        return {
            ch: Payload(self.name, (streams[i],), _LeanHeader(tag, i, rate_idx).to_byte(), session=session)
            for i, ch in enumerate(CHANNELS)
            if ch in self.channels
        }

    def _lean_header(self, payload: Payload, expected: str | None) -> _LeanHeader:
        if payload.codec != self.name:
            raise PayloadError(f"payload of codec {payload.codec!r}, expected {self.name!r}")
        if payload.session is None:
            raise PayloadError(
                "expected a lean gray_wyner channel frame: parse its bytes with "
                "Payload.from_bytes(data, session=...) using the session header received on its link"
            )
        payload.session.check(self.channel_session)
        head = _LeanHeader.parse(payload.meta)
        if head.channel >= len(CHANNELS) or CHANNELS[head.channel] not in self.channels:
            raise PayloadError(f"lean frame header {payload.meta[0]:#04x}: no such channel (corrupt)")
        if head.rate_idx >= self.n_rates:
            raise PayloadError(
                f"lean frame has rate index {head.rate_idx}, the model has {self.n_rates} rate points (corrupt)"
            )
        if expected is not None and CHANNELS[head.channel] != expected:
            raise PayloadError(f"expected a {expected} channel frame, got a {CHANNELS[head.channel]} frame")
        return head

    def _decode_exact(self, body: bytes, symbols_of: Any, scale_idx: np.ndarray, what: str) -> np.ndarray:
        """Decode ``body``; refuse it unless it is exactly the encoding of what it decodes to."""
        x = self.coder.decode(body, scale_idx)
        if self.coder.encode(x, scale_idx) != body:
            raise PayloadError(f"{what} frame body is not the encoding of what it decodes to: corrupted")
        return symbols_of(x)

    def decompress_channels(self, frames: Mapping[str, Payload | None]) -> dict[str, np.ndarray]:
        """Decode the tasks that lean channel frames serve.

        With the common frame, both tasks (a task whose private frame is absent uses its conditional
        mean given ``Y0``); without a common channel (``common_dim = 0``), the task of each private
        frame present.

        Args:
            frames: ``{channel: frame}`` (None or empty: not received).

        Raises:
            PayloadError: a private frame without the common one (naming both), frames of different
                steps or rate points, of another channel than their key, of another model (session),
                or corrupted.
        """
        unknown = set(frames) - set(CHANNELS)
        if unknown:
            raise ValueError(f"frames are keyed by channel {CHANNELS}, got {sorted(unknown)}")
        got = {ch: p for ch, p in frames.items() if p is not None and not p.is_empty}
        heads = {ch: self._lean_header(p, ch) for ch, p in got.items()}
        need_common = "common" in self.channels
        if need_common and "common" not in got:
            if got:
                names = " and ".join(sorted(got))
                tasks = " and ".join(f"receiver {ch[-1]}" for ch in sorted(got))
                raise PayloadError(f"{names} arrived without the common stream; {tasks} needs both")
            return {}
        if not got:
            return {}
        ref_ch = "common" if need_common else next(iter(heads))
        ref = heads[ref_ch]
        for ch, h in heads.items():
            if (h.tag, h.rate_idx) != (ref.tag, ref.rate_idx):
                raise PayloadError(
                    f"{ch} is from step tag {h.tag} rate {h.rate_idx}, {ref_ch} from step tag {ref.tag} "
                    f"rate {ref.rate_idx}: streams of different steps"
                )
        j = ref.rate_idx
        m0, s0 = self._prior0[j]
        y0 = m0.copy()
        if need_common:
            y0 = self._decode_exact(got["common"].streams[0], lambda x: x + m0, s0, "common")
        out = {}
        for k in (1, 2):
            ch = f"private_{k}"
            if not need_common and ch not in got:
                continue
            mean, scale_idx = self._private_model(k, y0, j)
            yk = mean
            if ch in got:
                yk = self._decode_exact(got[ch].streams[0], lambda x, m=mean: x + m, scale_idx, ch)
            out[self.task_names[k - 1]] = self._synthesise(k, yk, y0, j)
        return out

    def rate_bits(self, views: Mapping[str, np.ndarray], rate_idx: int) -> dict[str, float]:
        """Real stream bits per channel and the entropy models' estimate, for one sample."""
        streams, estimate = self.encode_streams(self.encode_symbols(views, rate_idx), rate_idx)
        bits = {ch: 8.0 * len(s) for ch, s in zip(CHANNELS, streams, strict=True)}
        bits["estimate"] = estimate
        return bits
