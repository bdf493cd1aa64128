"""A learned one-shot Wyner-Ziv codec: a discrete encoder, a decoder that uses side information.

After paper 001 (Ozyilkan, Balle, Erkip, "Neural Distributed Compressor Does Binning", ISIT 2023):
the encoder maps each sample ``x`` to a discrete index ``u`` with no knowledge of the side
information ``y``; ``u`` is entropy-coded with a learned marginal model ``q(u)`` (the paper's
``L_m``, whose rate is a real one-shot code length); the decoder reconstructs from ``(u, y)``.
The test source is the paper's: ``X ~ N(0, 1)``, ``Y = X + N``, ``N ~ N(0, 0.01)``.

The model
---------
* **Encoder**: a table over a fine grid of ``x`` (cells of width ``dx`` on ``[-L, L]``, values
  outside clipped to the edge cells) giving each cell an index in ``0..n_labels-1``, one table per
  rate point: a discrete encoder with no structure imposed (its start is a random index per
  block of cells).
* **Decoder**: the conditional mean ``E[X | U = u, Y = y]`` under the source model and the
  encoder: the cells of index ``u`` weighted by ``p(x) p(y | x)``. It is what the paper's decoder
  network approximates; here it is computed exactly (no weights), so it is the best decoder for the
  learned encoder.
* **Entropy model**: per rate point, the integer frequency table (``2 ** 24`` in total) of the
  indices, fitted to the encoder; indices are range-coded with ``constriction`` (bit-exact: the
  tables are integers in the checkpoint).

Training (:func:`train_wyner_ziv`) minimises the paper's Lagrangian ``R + lambda D`` with
``R = -log2 q(u)`` and ``lambda = 1 / (2 ln 2 D_target)`` (the slope of ``R_WZ`` at the target) by
alternating minimisation over the grid, exact expectations under the source model: the decoder
and ``q`` are re-fitted to the encoder, then a random fifth of the cells each move to the index
that minimises its own rate plus ``lambda`` times its exact distortion with that move applied.
The paper's finding shows up without being asked for: the indices repeat along ``x`` (binning),
the cells of one index a few side-information standard deviations apart
(``benchmarks/wyner_ziv.py`` draws them).

One model, several rates: a checkpoint holds one encoder table and one entropy table per rate
point; :meth:`WynerZivCodec.compress` sends the finest rate whose payload fits the budget.

Regenerate the shipped checkpoint (about 20 minutes on one CPU thread of a loaded machine)::

    bwgym train wyner-ziv --out wyner_ziv_gaussian.ckpt     # or: bwgym train --all --only wyner_ziv_gaussian

Block coding: :mod:`bwgym.codecs.multiterminal.slepian_wolf` codes a long block of this encoder's indices with
LDPC syndromes of their bit-planes (Slepian-Wolf, BP with ``y`` at the decoder), spending close to
``H(U | Y)`` instead of the one-shot ``H(U)``; ``benchmarks/wyner_ziv.py`` compares the two.

Side information: the receiver gives ``y`` with :meth:`WynerZivCodec.set_side_information` (or
calls :meth:`WynerZivCodec.decode` with it) before ``decompress``.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import constriction
import numpy as np

from bwgym.codecs.core.entropy import PROBABILITY_BITS, _shortest_stream
from bwgym.codecs.core.protocol import Codec, Payload, PayloadError, ViewSpec
from bwgym.codecs.core.registry import CHECKPOINT_DIR, register_codec
from bwgym.common.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint

__all__ = ["WynerZivCodec", "WynerZivConfig", "train_wyner_ziv"]

CHECKPOINT_KIND = "codec/wyner_ziv"
SHIPPED_CHECKPOINT = "wyner_ziv_gaussian.ckpt"
_TOTAL = 1 << PROBABILITY_BITS
#: Decoder window: cells within this many side-information standard deviations of y.
_WINDOW_SIGMAS = 6.0


@dataclass(frozen=True)
class WynerZivConfig:
    """Source model, grid and rate points of a Wyner-Ziv model.

    Attributes:
        source_var: variance of X (zero mean).
        noise_var: variance of N in ``Y = X + N``.
        dx: encoder grid cell width.
        half_range: the grid covers ``[-half_range, half_range]``.
        n_labels: indices available to the encoder.
        distortions: target distortion of each rate point, largest (coarsest) first.
        iterations: alternating-minimisation sweeps per rate point.
        seed: seeds the random initial indices.
    """

    source_var: float = 1.0
    noise_var: float = 0.01
    dx: float = 0.005
    half_range: float = 5.0
    n_labels: int = 48
    distortions: tuple[float, ...] = (3e-3, 1e-3, 3e-4, 1e-4)
    iterations: int = 150
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("source_var", "noise_var", "dx", "half_range"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"WynerZivConfig.{name} must be a positive finite number, got {value}")
        if not 2 <= self.n_labels <= 4096:
            raise ValueError(f"WynerZivConfig.n_labels must be in 2..4096, got {self.n_labels}")
        if not 1 <= len(self.distortions) <= 256:
            raise ValueError(f"WynerZivConfig.distortions: 1 to 256 rate points, got {len(self.distortions)}")
        if not self.distortions or any(not (0 < d < self.conditional_var) for d in self.distortions):
            raise ValueError(
                f"WynerZivConfig.distortions must be in (0, sigma^2_X|Y = {self.conditional_var:.4g}), "
                f"got {self.distortions}"
            )

    @property
    def conditional_var(self) -> float:
        """sigma^2_{X|Y}: the MMSE of X from Y alone."""
        return self.source_var * self.noise_var / (self.source_var + self.noise_var)

    @property
    def centres(self) -> np.ndarray:
        """Encoder grid cell centres."""
        n = int(round(2 * self.half_range / self.dx))
        return -self.half_range + self.dx * (np.arange(n) + 0.5)

    def cell_prior(self) -> np.ndarray:
        """Probability of each grid cell under X (normalised over the grid)."""
        xc = self.centres
        p = np.exp(-(xc**2) / (2 * self.source_var))
        return p / p.sum()


# ---------------------------------------------------------------------------------------------
# Training: alternating minimisation of R + lambda D over the grid
# ---------------------------------------------------------------------------------------------


def _train_rate(config: WynerZivConfig, d_target: float, seed: int, progress: bool = False) -> np.ndarray:
    import torch

    g = torch.Generator().manual_seed(seed)
    M, dx, sn = config.n_labels, config.dx, math.sqrt(config.noise_var)
    xc = torch.from_numpy(config.centres)
    pc = torch.from_numpy(config.cell_prior())
    C = xc.numel()
    dy = dx
    y0 = -config.half_range - 5 * sn
    Y = int(round(2 * (config.half_range + 5 * sn) / dy))
    yg = y0 + dy * (torch.arange(Y, dtype=torch.float64) + 0.5)
    K = int(round(10 * sn / dy))
    start = torch.clamp(torch.round((xc - 5 * sn - y0) / dy).long(), 0, Y - K)
    yidx = start[:, None] + torch.arange(K)[None, :]
    pb = torch.exp(-((yg[yidx] - xc[:, None]) ** 2) / (2 * sn * sn))
    pb /= pb.sum(1, keepdim=True)
    jb = pc[:, None] * pb
    lam = 1.0 / (2 * math.log(2) * d_target)
    width = math.sqrt(12 * d_target)
    block = torch.floor((xc + config.half_range) / width).long()
    u = torch.randint(0, M, (int(block.max()) + 1,), generator=g)[block]
    for it in range(config.iterations):
        num = torch.zeros(Y * M, dtype=torch.float64)
        den = torch.zeros(Y * M, dtype=torch.float64)
        flat = (yidx * M + u[:, None]).reshape(-1)
        num.index_add_(0, flat, (jb * xc[:, None]).reshape(-1))
        den.index_add_(0, flat, jb.reshape(-1))
        num, den = num.view(Y, M), den.view(Y, M)
        q = torch.zeros(M, dtype=torch.float64).index_add_(0, u, pc)
        cost = torch.empty(C, M, dtype=torch.float64)
        for s in range(0, C, 250):
            sl = slice(s, min(C, s + 250))
            j, x = jb[sl][..., None], xc[sl][:, None, None]
            own = torch.nn.functional.one_hot(u[sl], M).double()
            nb = num[yidx[sl]] - own[:, None, :] * j * x  # the other cells of each index
            db = den[yidx[sl]] - own[:, None, :] * j
            xh = (nb + j * x) / (db + j)  # decoder with this cell moved to each index
            d = (pb[sl][..., None] * (x - xh) ** 2).sum(1)
            qc = q[None, :] - own * pc[sl][:, None] + pc[sl][:, None]
            cost[sl] = -torch.log2(qc) + lam * d
        best = cost.argmin(1)
        if torch.equal(best, u):
            break
        u = torch.where(torch.rand(C, generator=g) < 0.2, best, u)
        if progress and it % 20 == 0:
            rate = float(-(q[q > 0] * torch.log2(q[q > 0])).sum())
            print(f"  D target {d_target:g}: sweep {it}, H(U) = {rate:.3f} bits", flush=True)
    # relabel by first appearance along x (a cosmetic, deterministic order)
    _, first = np.unique(u.numpy(), return_index=True)
    order = np.argsort(first)
    relabel = np.empty(M, dtype=np.int64)
    relabel[np.unique(u.numpy())[order]] = np.arange(order.size)
    return relabel[u.numpy()].astype(np.int16)


def _frequencies(table: np.ndarray, prior: np.ndarray, n_labels: int) -> np.ndarray:
    """Integer frequencies (sum 2**24, every index >= 1) of the encoder's indices."""
    q = np.bincount(table.astype(np.int64), weights=prior, minlength=n_labels)
    freq = np.maximum(1, np.floor(q * (_TOTAL - n_labels)).astype(np.int64))
    freq[int(np.argmax(freq))] += _TOTAL - int(freq.sum())
    return freq


def train_wyner_ziv(config: WynerZivConfig, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Learn the encoder tables and entropy models of every rate point.

    Returns:
        ``(tables, frequencies)``: int16 (n_rates, n_cells) indices and int64 (n_rates,
        n_labels) frequencies.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tables = [
            _train_rate(config, d, config.seed + 1000 * j, progress) for j, d in enumerate(config.distortions)
        ]
    finally:
        torch.set_num_threads(threads)
    prior = config.cell_prior()
    freqs = [_frequencies(t, prior, config.n_labels) for t in tables]
    return np.stack(tables), np.stack(freqs)


# ---------------------------------------------------------------------------------------------
# The codec
# ---------------------------------------------------------------------------------------------


@register_codec(
    "wyner_ziv",
    wire_id=12,
    checkpoint=SHIPPED_CHECKPOINT,
    recipe={},
    description="learned one-shot Wyner-Ziv codec (paper 001): discrete encoder, decoder with side information",
)
class WynerZivCodec(Codec):
    """Learned Wyner-Ziv codec of one float view; the decoder needs the side information ``y``.

    Args:
        config: the model's source, grid and rate points.
        tables: int (n_rates, n_cells) encoder indices.
        frequencies: int (n_rates, n_labels) entropy models (each row sums to ``2 ** 24``).
        view: the view's name.
        block_size: samples per payload (the view's length).
        metadata: extra checkpoint metadata (training time, ...).
    """

    name = "wyner_ziv"

    def __init__(
        self,
        config: WynerZivConfig,
        tables: np.ndarray,
        frequencies: np.ndarray,
        view: str = "x",
        block_size: int = 1,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = config
        n_rates, n_cells = len(config.distortions), config.centres.size
        tables = np.asarray(tables)
        frequencies = np.asarray(frequencies)
        if tables.shape != (n_rates, n_cells) or frequencies.shape != (n_rates, config.n_labels):
            raise CheckpointError(
                f"wyner_ziv tables {tables.shape} / frequencies {frequencies.shape} do not match the config "
                f"({n_rates} rates, {n_cells} cells, {config.n_labels} labels)"
            )
        if tables.min() < 0 or tables.max() >= config.n_labels or np.any(frequencies.sum(1) != _TOTAL):
            raise CheckpointError("wyner_ziv tables or frequencies out of range")
        if isinstance(block_size, bool) or int(block_size) != block_size or block_size < 1:
            raise ValueError(f"block_size must be an integer >= 1, got {block_size!r}")
        self.tables = tables.astype(np.int64)
        self.frequencies = frequencies.astype(np.int64)
        self.views = (ViewSpec(view, (int(block_size),), "float32"),)
        self.metadata = dict(metadata or {})
        self._models = [None] * n_rates
        self._side: np.ndarray | None = None
        self._prior = config.cell_prior()
        digest = hashlib.sha256(self.tables.tobytes() + self.frequencies.tobytes())
        self.model_hash = digest.digest()[:2]

    # -- construction -----------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(
        cls, ckpt: Checkpoint, view: str | None = None, block_size: int = 1, **kwargs: Any
    ) -> WynerZivCodec:
        """Build from a loaded ``codec/wyner_ziv`` checkpoint (``block_size`` samples per payload)."""
        if kwargs:
            raise TypeError(f"WynerZivCodec.from_checkpoint got unexpected options {sorted(kwargs)}")
        meta = ckpt.metadata
        try:
            raw = dict(meta["config"])
            config = WynerZivConfig(**{**raw, "distortions": tuple(raw["distortions"])})
            tables, freqs = ckpt.state["tables"], ckpt.state["frequencies"]
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(
                f"{ckpt.path}: wyner_ziv checkpoint without a valid config ({err})"
            ) from err
        return cls(
            config, tables, freqs, view=view or meta.get("view", "x"), block_size=block_size, metadata=meta
        )

    @classmethod
    def load(cls, path: str | Path | None = None, **kwargs: Any) -> WynerZivCodec:
        """Load a checkpoint file (default: the shipped one)."""
        path = CHECKPOINT_DIR / SHIPPED_CHECKPOINT if path is None else Path(path)
        return cls.from_checkpoint(load_checkpoint(path, kind=CHECKPOINT_KIND), **kwargs)

    def save(self, path: str | Path) -> Path:
        """Write the model in the project's checkpoint format (``codec/wyner_ziv``)."""
        metadata = {
            **{k: v for k, v in self.metadata.items() if k not in ("config", "view", "env_id", "views")},
            "env_id": None,
            "view": self.views[0].name,
            "config": asdict(self.config),
        }
        state = {"tables": self.tables.astype(np.int16), "frequencies": self.frequencies}
        return save_checkpoint(path, CHECKPOINT_KIND, state, metadata)

    @classmethod
    def learn(cls, out: str | Path | None = None, progress: bool = False, **config: Any) -> WynerZivCodec:
        """Learn a model (fields of :class:`WynerZivConfig` as keywords) and save it to ``out``.

        (Not named ``train``: ``bwgym train codec`` trains on LocateLift frames; this model learns
        from its source model alone, with ``bwgym train wyner-ziv``.)
        """
        if "distortions" in config:
            config["distortions"] = tuple(sorted(config["distortions"], reverse=True))
        cfg = WynerZivConfig(**config)
        start = time.perf_counter()
        tables, freqs = train_wyner_ziv(cfg, progress=progress)
        codec = cls(cfg, tables, freqs, metadata={"train_seconds": round(time.perf_counter() - start, 1)})
        if out is not None:
            codec.save(out)
        return codec

    def check_spec(self, env_id: str | None = None, views: Sequence[ViewSpec] | None = None) -> None:
        """Accept any env; the views must be one float32 vector (its length sets the block size)."""
        if views is not None:
            views = tuple(views)
            if len(views) != 1 or len(views[0].shape) != 1 or views[0].dtype != "float32":
                raise ValueError(
                    f"codec 'wyner_ziv' codes one float32 vector view, got {[(v.name, v.shape, v.dtype) for v in views]}"
                )

    # -- model ------------------------------------------------------------------------------------

    @property
    def n_rates(self) -> int:
        """Rate points, coarsest first."""
        return len(self.config.distortions)

    def _model(self, rate_idx: int) -> Any:
        if self._models[rate_idx] is None:
            probs = self.frequencies[rate_idx].astype(np.float64) / _TOTAL  # exact in float64
            self._models[rate_idx] = constriction.stream.model.Categorical(probs, perfect=False)
        return self._models[rate_idx]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_models"] = [None] * self.n_rates
        return state

    def encode_indices(self, x: np.ndarray, rate_idx: int) -> np.ndarray:
        """The encoder: the index of each sample at rate point ``rate_idx``."""
        cfg = self.config
        cells = np.floor((np.asarray(x, dtype=np.float64).reshape(-1) + cfg.half_range) / cfg.dx).astype(
            np.int64
        )
        return self.tables[rate_idx, np.clip(cells, 0, self.tables.shape[1] - 1)]

    def window(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The grid cells within a few side-information sigmas of each ``y``, and their weights.

        Returns ``(cells, weights)``, both (samples, W): cell indices and ``p(x) p(y | x)`` at their
        centres (unnormalised), what every decoder-side posterior over the cells is built from.
        """
        cfg = self.config
        xc = cfg.centres
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        half = int(math.ceil(_WINDOW_SIGMAS * math.sqrt(cfg.noise_var) / cfg.dx))
        centre = np.clip(np.floor((y + cfg.half_range) / cfg.dx).astype(np.int64), 0, xc.size - 1)
        cells = np.clip(centre[:, None] + np.arange(-half, half + 1)[None, :], 0, xc.size - 1)
        return cells, self._prior[cells] * np.exp(-((y[:, None] - xc[cells]) ** 2) / (2 * cfg.noise_var))

    def reconstruct(self, indices: np.ndarray, y: np.ndarray, rate_idx: int) -> np.ndarray:
        """The decoder: ``E[X | U = u, Y = y]`` for each sample."""
        cfg = self.config
        xc = cfg.centres
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        u = np.asarray(indices, dtype=np.int64).reshape(-1)
        cells, w = self.window(y)
        w = np.where(self.tables[rate_idx, cells] == u[:, None], w, 0.0)
        den = w.sum(1)
        fallback = y * cfg.source_var / (cfg.source_var + cfg.noise_var)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = (w * xc[cells]).sum(1) / den
        return np.where(den > 0, out, fallback)

    # -- coding -----------------------------------------------------------------------------------

    def encode_stream(self, x: np.ndarray, rate_idx: int) -> bytes:
        """Range-code the samples' indices at ``rate_idx``."""
        encoder = constriction.stream.queue.RangeEncoder()
        encoder.encode(self.encode_indices(x, rate_idx).astype(np.int32), self._model(rate_idx))
        return _shortest_stream(encoder)

    def decode_stream(self, data: bytes, n: int, rate_idx: int) -> np.ndarray:
        """Decode ``n`` indices."""
        if data.endswith(b"\0"):
            raise PayloadError("wyner_ziv stream ends in a zero byte: corrupt")
        words = np.frombuffer(data + b"\0" * (-len(data) % 4), dtype=">u4").astype(np.uint32)
        try:
            decoder = constriction.stream.queue.RangeDecoder(words)
            return decoder.decode(self._model(rate_idx), n).astype(np.int64)
        except (AssertionError, ValueError, RuntimeError, OverflowError, IndexError) as exc:
            raise PayloadError(f"undecodable wyner_ziv stream ({exc})") from exc

    def compress_at(self, views: Mapping[str, np.ndarray], rate_idx: int) -> Payload:
        """The payload of ``views`` at rate point ``rate_idx`` (0 = coarsest)."""
        self.check_views(views)
        if not 0 <= rate_idx < self.n_rates:
            raise ValueError(f"rate_idx must be in 0..{self.n_rates - 1}, got {rate_idx}")
        data = self.encode_stream(views[self.views[0].name], rate_idx)
        return Payload(self.name, (data,), self.model_hash + bytes((rate_idx,)))

    def _compress(
        self, views: Mapping[str, np.ndarray], budget_bits: int, allocation: Mapping[str, float] | None
    ) -> Payload:
        """The finest rate point whose payload fits ``budget_bits``; empty when none does."""
        for rate_idx in reversed(range(self.n_rates)):
            payload = self.compress_at(views, rate_idx)
            if payload.nbits <= budget_bits:
                return payload
        return Payload.empty(self.name)

    def set_side_information(self, views: Mapping[str, np.ndarray] | None) -> None:
        """Give the decoder its side information ``y`` (same shape as the view), or None to clear it."""
        if views is None:
            self._side = None
            return
        spec = self.views[0]
        if set(views) != {spec.name}:
            raise ValueError(f"side information must hold view {spec.name!r}, got {sorted(views)}")
        y = np.asarray(views[spec.name], dtype=np.float64)
        if y.shape != spec.shape or not np.all(np.isfinite(y)):
            raise ValueError(
                f"side information {spec.name!r}: expected {spec.shape} finite values, got {y.shape}"
            )
        self._side = y

    def decode(self, payload: Payload, side_information: np.ndarray) -> np.ndarray:
        """Decode a payload with the side information ``y`` (float64 reconstruction)."""
        self.set_side_information({self.views[0].name: side_information})
        return self.decompress(payload)[self.views[0].name].astype(np.float64)

    def decompress(self, payload: Payload) -> dict[str, np.ndarray]:
        """Decode with the side information given by :meth:`set_side_information`."""
        if payload.codec != self.name:
            raise PayloadError(f"payload of codec {payload.codec!r}, expected {self.name!r}")
        if payload.is_empty:
            return {}
        if len(payload.meta) != 3 or len(payload.streams) != 1:
            raise PayloadError("wyner_ziv payload must carry a 3-byte header and one stream")
        if payload.meta[:2] != self.model_hash:
            raise PayloadError(
                f"payload of wyner_ziv model {payload.meta[:2].hex()}, this codec is model {self.model_hash.hex()}"
            )
        rate_idx = payload.meta[2]
        if rate_idx >= self.n_rates:
            raise PayloadError(f"wyner_ziv rate index {rate_idx} out of range")
        if self._side is None:
            raise ValueError(
                "the Wyner-Ziv decoder needs side information: call set_side_information() first"
            )
        spec = self.views[0]
        indices = self.decode_stream(payload.streams[0], spec.shape[0], rate_idx)
        return {spec.name: self.reconstruct(indices, self._side, rate_idx).astype(np.float32)}
