r"""Neural DPCA on sensor vectors (``vector_ndpca``): the NDPCA paper's architecture for K sensors.

Each sensor ``k`` has its own small MLP encoder ``E_k: y_k -> z_k`` (it sees only its own
measurement); a :class:`~bwgym.codecs.core.dpca.DPCA` fitted on the training latents projects every
``z_k`` on its own principal directions and pools the components of all sensors by variance; one
joint MLP decoder ``D(z_1, ..., z_K) -> (y_1, ..., y_K)`` reconstructs every sensor's measurement
from all the latents the frame carries::

    y_0 -> E_0 -> z_0 -> V_0^T -> q \                         / y_0_hat
    ...                              > bytes -> V^T^-1 -> D <   ...
    y_K -> E_K -> z_K -> V_K^T -> q /                         \ y_K_hat

Encoders and decoder are a linear map plus a one-hidden-layer tanh MLP (the MLP's last layer
starts at zero, so training starts from linear DPCA). Quantisation, entropy coding, the lean
frame, the session and the budget search are those of :class:`~bwgym.codecs.core.latent.LatentCodec`:
one quantisation step (the frame's header byte) decides how many components each sensor sends,
so one trained model serves every bandwidth and ``compress`` never exceeds the budget.

Training (:meth:`VectorNDPCACodec.train`, the recipe of :mod:`bwgym.codecs.train` without a task
model) minimises the reconstruction MSE of all sensors' measurements through Alg. 1's
random-dimension DPCA projection (:class:`~bwgym.codecs.core.dpca.DPCAProjection`: ``m`` components
drawn uniformly per batch, pooled over the sensors by variance) and straight-through
quantisation at a random step ``sqrt(lambda_max) * 2 ** -u``. So the encoders learn both a
representation and, through their latents' variances, the order in which the sensors' components
are sent. Afterwards the weights are rounded to float16 and the DPCA is refitted on the training
latents; evaluation never refits.

Fusion: the decoded measurements are estimates from a joint decoder, not measurements plus a
known quantisation noise. After training, the codec is *calibrated* on held-out rollouts: for every
frame header (every quantisation step, hence every split of components), the mean squared error
per value of each sensor's decoded measurement against the measurement itself
(:attr:`VectorNDPCACodec.calibration`, ``(headers, K)``, stored in the checkpoint). After
:meth:`~VectorNDPCACodec.decompress`:

* :attr:`~VectorNDPCACodec.last_error_variances`: that calibrated error variance of each decoded
  view, which a Kalman fusion node adds to the sensor's noise ``R_k``;
* :attr:`~VectorNDPCACodec.last_steps`: the same as the step of a uniform quantiser of equal error
  (``sqrt(12 * variance)``), so code written for ``scalar`` / ``predictive`` / ``vector_dpca``
  (noise ``R_k + step^2 / 12``) weighs it correctly.

This is a documented approximation: the decoder's errors are correlated across sensors (every
output depends on every latent sent) and with the sensors' own noise, while a fusion node that adds
them to ``R_k`` treats them as independent; and the calibration is an average over the training
distribution, not the error of this frame.

A sensor that sent no component is left out of the decoded views (as ``vector_dpca`` and
``scalar`` do): the joint decoder's guess of its measurement is a function of the other sensors'
data, and fusing it would count their information twice. The guesses of every view are kept in
:attr:`~VectorNDPCACodec.last_reconstruction`.

Shipped checkpoint: ``vector_ndpca_sensor_network.ckpt`` serves ``bwgym/SensorNetwork-v0`` with the
``cv2d`` preset and K = 4 sensors (views ``sensor_0..3`` of two floats each: noisy 2-D positions),
where the sensors are strongly correlated; other presets or sensor counts are refused with both
specs named. ``vector_ndpca_sensor_network_ar1.ckpt`` (ar1, K = 4) ships beside it; pass it as
``checkpoint=``. Regenerate them with ``bwgym train sensor-codec --codec vector_ndpca --preset
cv2d --sensors 4 --out PATH`` (``bwgym zoo`` lists the shipped commands).

Example::

    env = gym.make("bwgym/SensorNetwork-v0", preset="cv2d")
    codec = make_codec("vector_ndpca", link_views(env), env_id="bwgym/SensorNetwork-v0")
    payload = codec.compress(obs, budget_bits=64)
    decoded = codec.decompress(Payload.from_bytes(payload.to_bytes(), session=codec.session))
    codec.last_error_variances             # {'sensor_0': 0.004, ...}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bwgym.codecs.core.dpca import DPCA, DPCAProjection
from bwgym.codecs.core.entropy import quantize_ste, step_from_index
from bwgym.codecs.core.latent import LatentCodec
from bwgym.codecs.core.protocol import Payload, ViewSpec
from bwgym.codecs.core.registry import register_codec
from bwgym.codecs.sensor.predictive import _float_views, check_system, pop_system
from bwgym.common.arch import ArchCheck
from bwgym.common.checkpoint import Checkpoint

__all__ = [
    "SHIPPED_CHECKPOINT",
    "SHIPPED_CHECKPOINT_AR1",
    "SensorAutoencoder",
    "VectorNDPCACodec",
    "check_sensor_network_arrays",
    "sensor_network_state_shapes",
]

#: The shipped checkpoint (``bwgym/SensorNetwork-v0``, cv2d, K = 4).
SHIPPED_CHECKPOINT = "vector_ndpca_sensor_network.ckpt"
#: The ar1 (K = 4) checkpoint shipped beside it (pass as ``checkpoint=``).
SHIPPED_CHECKPOINT_AR1 = "vector_ndpca_sensor_network_ar1.ckpt"

#: Training defaults (the recipe): optimiser steps, batch, learning rate, MLP widths, the range of
#: ``u`` in the training step ``sqrt(lambda_max) * 2 ** -u``, the share of unquantised batches and
#: the share of rows held out for calibration.
RECIPE: dict[str, Any] = dict(
    steps=3000,
    batch_size=256,
    lr=3e-3,
    hidden=32,
    decoder_hidden=64,
    step_octaves=(0.0, 14.0),
    p_unquantised=0.25,
    holdout=0.2,
    seed=0,
)


class _LinearPlusMLP(nn.Module):
    """``x -> W x + b + MLP(x)``: a linear map and a one-hidden-layer tanh MLP whose output starts at 0."""

    def __init__(self, n_in: int, n_out: int, hidden: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.mlp = nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, n_out))
        with torch.no_grad():
            self.mlp[2].weight.zero_()
            self.mlp[2].bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x) + self.mlp(x)


class SensorAutoencoder(nn.Module):
    """Per-sensor MLP encoders and one joint MLP decoder, in measurement units.

    Inputs are centred per sensor and divided by one common scale (so the loss weighs every sensor
    in its own units, as the fusion does); the linear parts start as identity maps when the latent
    size equals the measurement size (training then starts from linear DPCA).

    Args:
        view_names: the sensors' views, in order.
        view_dims: measurement size ``d_k`` per view.
        latent_dims: latent size per view (default: ``d_k``).
        hidden: hidden units of each encoder's MLP.
        decoder_hidden: hidden units of the decoder's MLP.
        means: per-view input mean (default 0); scale: the common input scale (default 1).
    """

    def __init__(
        self,
        view_names: Sequence[str],
        view_dims: Sequence[int],
        latent_dims: Sequence[int] | None = None,
        hidden: int = 32,
        decoder_hidden: int = 64,
        means: Sequence[Sequence[float]] | None = None,
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.view_names = tuple(str(v) for v in view_names)
        self.view_dims = tuple(int(d) for d in view_dims)
        self.latent_dims = tuple(int(d) for d in (latent_dims or view_dims))
        self.hidden, self.decoder_hidden = int(hidden), int(decoder_hidden)
        if (
            not (len(self.view_names) == len(self.view_dims) == len(self.latent_dims))
            or min(self.latent_dims, default=0) < 1
        ):
            raise ValueError(
                f"one measurement and latent size (>= 1) per view: {self.view_names}, "
                f"{self.view_dims}, {self.latent_dims}"
            )
        self.encoders = nn.ModuleList(
            _LinearPlusMLP(d, w, self.hidden) for d, w in zip(self.view_dims, self.latent_dims, strict=True)
        )
        self.decoder = _LinearPlusMLP(sum(self.latent_dims), sum(self.view_dims), self.decoder_hidden)
        with torch.no_grad():
            for enc, d, w in zip(self.encoders, self.view_dims, self.latent_dims, strict=True):
                if d == w:
                    enc.linear.weight.copy_(torch.eye(d))
                    enc.linear.bias.zero_()
            if self.view_dims == self.latent_dims:
                self.decoder.linear.weight.copy_(torch.eye(sum(self.view_dims)))
                self.decoder.linear.bias.zero_()
        mean = (
            np.zeros(sum(self.view_dims)) if means is None else np.concatenate([np.ravel(m) for m in means])
        )
        self.register_buffer("input_mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("input_scale", torch.as_tensor(float(scale), dtype=torch.float32))

    def _split(self, x: Tensor) -> list[Tensor]:
        return list(torch.split(x, list(self.view_dims), dim=-1))

    def encode(self, views: Sequence[Tensor]) -> list[Tensor]:
        """Latents ``[(B, l_k)]`` of measurements ``[(B, d_k)]`` (each encoder sees its own view only)."""
        means = self._split(self.input_mean)
        return [
            enc((y - mu) / self.input_scale) for enc, y, mu in zip(self.encoders, views, means, strict=True)
        ]

    def decode(self, latents: Sequence[Tensor]) -> list[Tensor]:
        """Measurements ``[(B, d_k)]`` of every view from all latents ``[(B, l_k)]``."""
        x = self.decoder(torch.cat(list(latents), dim=-1)) * self.input_scale + self.input_mean
        return self._split(x)

    def config(self) -> dict[str, Any]:
        """The constructor arguments (JSON-able; means and scale travel as buffers)."""
        return dict(
            view_names=list(self.view_names),
            view_dims=list(self.view_dims),
            latent_dims=list(self.latent_dims),
            hidden=self.hidden,
            decoder_hidden=self.decoder_hidden,
        )


#: The arguments of :class:`SensorAutoencoder` a checkpoint's ``arch`` may hold (the input means
#: and scale travel as buffers).
_ARCH_KEYS = frozenset({"view_names", "view_dims", "latent_dims", "hidden", "decoder_hidden"})


def sensor_network_state_shapes(
    view_dims: Sequence[int], latent_dims: Sequence[int], hidden: int, decoder_hidden: int
) -> dict[str, tuple[int, ...]]:
    """The ``state_dict`` shapes of the :class:`SensorAutoencoder` these sizes describe (no module built)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def linear_plus_mlp(prefix: str, n_in: int, n_out: int, width: int) -> None:
        shapes[f"{prefix}.linear.weight"] = (n_out, n_in)
        shapes[f"{prefix}.linear.bias"] = (n_out,)
        shapes[f"{prefix}.mlp.0.weight"] = (width, n_in)
        shapes[f"{prefix}.mlp.0.bias"] = (width,)
        shapes[f"{prefix}.mlp.2.weight"] = (n_out, width)
        shapes[f"{prefix}.mlp.2.bias"] = (n_out,)

    for i, (d, w) in enumerate(zip(view_dims, latent_dims, strict=True)):
        linear_plus_mlp(f"encoders.{i}", d, w, hidden)
    linear_plus_mlp("decoder", sum(latent_dims), sum(view_dims), decoder_hidden)
    shapes["input_mean"] = (sum(view_dims),)
    shapes["input_scale"] = ()
    return shapes


#: The command that remakes a damaged checkpoint (its refusals name it).
_RETRAIN = "bwgym train sensor-codec --codec vector_ndpca --out PATH"


def check_sensor_network_arrays(ckpt: Checkpoint, prefix: str = "net.") -> dict[str, Any]:
    """Refuse a checkpoint whose ``arch`` disagrees with its network arrays, before building anything.

    Computes the shapes of the :class:`SensorAutoencoder` that ``arch`` describes (integer
    arithmetic only, :func:`sensor_network_state_shapes`) and requires exactly those keys and
    shapes under ``prefix``, so the network built afterwards takes no more memory than the file's
    arrays (which the checkpoint loader has already capped): metadata asking for a million hidden
    units is refused here, not by the allocator.

    Returns:
        The checked ``arch``: keyword arguments of :class:`SensorAutoencoder`.

    Raises:
        CheckpointError: naming the field or the first array that disagrees.
    """
    check = ArchCheck(ckpt, "vector_ndpca checkpoint", _RETRAIN)
    arch = check.arch(_ARCH_KEYS, "SensorAutoencoder")
    views = check.view_names(arch)
    view_dims = check.sizes(arch.get("view_dims"), "arch.view_dims")
    latent_dims = check.sizes(arch.get("latent_dims", view_dims), "arch.latent_dims")
    hidden, decoder_hidden = check.sizes(
        [arch.get("hidden", 32), arch.get("decoder_hidden", 64)], "arch.hidden / arch.decoder_hidden"
    )
    if not len(views) == len(view_dims) == len(latent_dims):
        raise check.error(
            f"names {len(views)} views, {len(view_dims)} view_dims and {len(latent_dims)} latent_dims"
        )
    have = check.arrays(prefix, 6 * len(views) + 6 + 2, f"{len(views)} views")
    expected = sensor_network_state_shapes(view_dims, latent_dims, hidden, decoder_hidden)
    described = f"view_dims {view_dims[:8]}, latent_dims {latent_dims[:8]}, hidden {hidden}, decoder_hidden {decoder_hidden}"
    check.shapes(expected, have, prefix, described)
    return dict(arch)


@register_codec(
    "vector_ndpca",
    wire_id=14,
    checkpoint=SHIPPED_CHECKPOINT,
    recipe=dict(RECIPE),
    description="vector views: neural DPCA across the sensors (MLP encoders, joint decoder), memoryless",
)
class VectorNDPCACodec(LatentCodec):
    """Per-sensor MLP encoders, DPCA over their latents, a joint MLP decoder (module doc).

    Build with :meth:`train` (``{view: (N, d) float}`` measurements, e.g.
    :func:`~bwgym.codecs.sensor.dpca.sensor_frames`) or by name with :func:`bwgym.codecs.make_codec`.

    Args:
        net: the trained :class:`SensorAutoencoder`.
        latent_model: the DPCA fitted on its training latents (one stream per view).
        views: 1-D float view specs, in the network's order.
        calibration: ``(headers, K)`` mean squared error per value of each view's decoded
            measurement at each frame header (:meth:`calibrate`); None: not calibrated yet.
        env_id, family, variant, train_config, metrics: as :class:`~bwgym.codecs.core.latent.LatentCodec`.
    """

    name = "vector_ndpca"
    _coefficients_in_pixel_units = False
    #: The per-decode outputs (``last_steps``, ...) are read by the fusion agent: one instance per env.
    stateless = False

    def __init__(
        self,
        net: SensorAutoencoder,
        latent_model: DPCA,
        views: Sequence[ViewSpec],
        calibration: np.ndarray | None = None,
        env_id: str = "",
        family: str = "gaussian",
        variant: str | None = None,
        train_config: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(latent_model, _float_views(views), 1, env_id, family, variant, train_config, metrics)
        dims = tuple(int(v.shape[0]) for v in self.views)
        if net.view_names != self.view_names or net.view_dims != dims:
            raise ValueError(
                f"network views {dict(zip(net.view_names, net.view_dims, strict=True))} do not match "
                f"codec views {dict(zip(self.view_names, dims, strict=True))}"
            )
        self.net = net.eval()
        self.net.requires_grad_(False)
        self.calibration = None if calibration is None else np.asarray(calibration, np.float32)
        if self.calibration is not None and self.calibration.shape != (self._h_limit() + 1, len(self.views)):
            raise ValueError(
                f"calibration must be (headers, K) = {(self._h_limit() + 1, len(self.views))}, "
                f"got {self.calibration.shape}"
            )
        #: Calibrated error variance (per value, measurement units) of each view of the last decoded frame.
        self.last_error_variances: dict[str, float] = {}
        #: The same as a uniform quantiser's step: ``sqrt(12 * variance)``.
        self.last_steps: dict[str, float] = {}
        #: The joint decoder's output for every view of the last decoded frame (sent or not).
        self.last_reconstruction: dict[str, np.ndarray] = {}

    # -- the transform ----------------------------------------------------------------------------

    def latents(self, views: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Latents ``{view: (N, l_k)}`` (float64) of measurements ``{view: (N, d_k)}``."""
        with torch.inference_mode():
            z = self.net.encode(
                [torch.as_tensor(np.asarray(views[n]), dtype=torch.float32) for n in self.view_names]
            )
        return {n: t.double().numpy() for n, t in zip(self.view_names, z, strict=True)}

    def reconstruct(self, latents: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The joint decoder's measurements ``{view: (N, d_k)}`` (float64) from latents ``{view: (N, l_k)}``."""
        with torch.inference_mode():
            x = self.net.decode(
                [torch.as_tensor(np.asarray(latents[n]), dtype=torch.float32) for n in self.view_names]
            )
        return {n: t.double().numpy() for n, t in zip(self.view_names, x, strict=True)}

    def _latents(self, vectors: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {
            k: z[0]
            for k, z in self.latents(
                {n: v[None] for n, v in zip(self.view_names, vectors, strict=True)}
            ).items()
        }

    def _views_from_latents(self, latents: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        out = self.reconstruct({n: np.asarray(latents[n]).reshape(1, -1) for n in self.view_names})
        return [out[n][0] for n in self.view_names]

    # -- fusion -------------------------------------------------------------------------------------

    def calibrate(self, frames: Mapping[str, np.ndarray]) -> np.ndarray:
        """Set (and return) :attr:`calibration` from held-out measurements ``{view: (N, d_k)}``.

        For every header value of the codec split, each frame's coefficients are quantised as
        ``compress`` quantises them at that header, decoded, and compared with the measurement.
        """
        y = {n: np.asarray(frames[n], np.float64) for n in self.view_names}
        z = self.latents(y)
        model = self.latent_model
        coeffs = model.encode(z, dims=dict(zip(self.view_names, model.ranks, strict=True)))
        table = np.zeros((self._h_limit() + 1, len(self.views)), np.float32)
        for h in range(table.shape[0]):
            rec = self.reconstruct(model.decode(self._quantised(coeffs, h)))
            table[h] = [float(np.mean((rec[n] - y[n]) ** 2)) for n in self.view_names]
        self.calibration = table
        self.__dict__.pop("_fingerprint", None)
        return table

    def _quantised(self, coeffs: Mapping[str, np.ndarray], header: int) -> dict[str, np.ndarray]:
        """Rows of DPCA coefficients as a codec-split frame with this header carries them (dequantised)."""
        steps, dims = self._plan(header, 0)
        out = {}
        for name, s, d in zip(self.view_names, steps, dims, strict=True):
            step = float(step_from_index(int(s)))
            out[name] = np.rint(coeffs[name][:, :d] / step) * step
        return out

    def decompress(self, payload: Payload) -> dict[str, np.ndarray]:
        """Decode the views that sent at least one component (``{}`` for an empty payload).

        Sets :attr:`last_error_variances`, :attr:`last_steps` (for those views) and
        :attr:`last_reconstruction` (every view).
        """
        views = super().decompress(payload)
        self.last_error_variances, self.last_steps, self.last_reconstruction = {}, {}, dict(views)
        if not views:
            return views
        _, dims, _ = self._read(payload)
        header = int(payload.meta[0])
        out = {}
        for k, spec in enumerate(self.views):
            if int(dims[k]) == 0:
                continue
            var = float(self.calibration[header, k]) if self.calibration is not None else float("nan")
            self.last_error_variances[spec.name] = var
            self.last_steps[spec.name] = float(np.sqrt(12.0 * var))
            out[spec.name] = views[spec.name]
        return out

    def _refit_decoder_head(self, frames: Mapping[str, np.ndarray], rng: np.random.Generator) -> None:
        """Refit the decoder's output layer (linear map and MLP read-out) by weighted least squares.

        SGD leaves the joint decoder's inverse of the encoders accurate to ~1e-3 of the signal's
        scale, far coarser than the sensors' noise; the output layer is linear in its features
        (the latents and the MLP's hidden units), so it is solved exactly on the training rows, each
        decoded from a random header's quantised components (rows weighted by 1 / the mean error at
        their header, so that fine headers count as much as coarse ones).
        """
        y = {n: np.asarray(frames[n], np.float64) for n in self.view_names}
        weights_h = 1.0 / np.maximum(self.calibrate(y).mean(axis=1).astype(np.float64), 1e-12)
        model = self.latent_model
        coeffs = model.encode(self.latents(y), dims=dict(zip(self.view_names, model.ranks, strict=True)))
        n = len(next(iter(y.values())))
        headers = rng.integers(0, self._h_limit() + 1, n)
        sent = {name: np.zeros_like(c) for name, c in coeffs.items()}
        for h in np.unique(headers):
            rows = headers == h
            for name, q in self._quantised({k: c[rows] for k, c in coeffs.items()}, int(h)).items():
                sent[name][rows, : q.shape[1]] = q
        z_hat = model.decode(sent)
        dec = self.net.decoder
        with torch.no_grad():
            zt = torch.cat([torch.as_tensor(z_hat[name], dtype=torch.float32) for name in self.view_names], 1)
            hidden = dec.mlp[1](dec.mlp[0](zt)).double().numpy()
            scale, mean = float(self.net.input_scale), self.net.input_mean.double().numpy()
        features = np.concatenate([zt.double().numpy(), hidden, np.ones((n, 1))], axis=1)
        target = (np.concatenate([y[name] for name in self.view_names], axis=1) - mean) / scale
        w = np.sqrt(weights_h[headers])[:, None]
        a, b = features * w, target * w
        ridge = 1e-9 * np.trace(a.T @ a) / a.shape[1]
        sol = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ b)
        n_z = zt.shape[1]
        with torch.no_grad():
            dec.linear.weight.copy_(torch.as_tensor(sol[:n_z].T))
            dec.mlp[2].weight.copy_(torch.as_tensor(sol[n_z:-1].T))
            dec.linear.bias.copy_(torch.as_tensor(sol[-1]))
            dec.mlp[2].bias.zero_()
        self.__dict__.pop("_fingerprint", None)

    # -- spec and persistence -----------------------------------------------------------------------

    def _spec_detail(self) -> str:
        return f" (trained on preset {self.train_config.get('preset', '?')!r}, K = {len(self.views)})"

    def _spec_fix(self) -> str:
        return (
            "train one on the env's rollouts (`bwgym train sensor-codec --codec vector_ndpca --preset P "
            "--sensors K --out PATH`) and pass checkpoint=PATH"
        )

    def metadata(self) -> dict[str, Any]:
        """The base's metadata plus the network architecture."""
        return {**super().metadata(), "arch": self.net.config()}

    def state(self) -> dict[str, Any]:
        """The latent model, the network (float16 where exact) and the calibration table."""
        state = super().state()
        for k, v in self.net.state_dict().items():
            v = v.detach().cpu()
            half = v.half()
            state[f"net.{k}"] = half if torch.equal(half.float(), v) else v.clone()
        if self.calibration is not None:
            state["calibration"] = self.calibration
        return state

    @classmethod
    def _from_parts(
        cls, ckpt: Checkpoint, latent_model: DPCA, views: list[ViewSpec], **kwargs: Any
    ) -> VectorNDPCACodec:
        system = pop_system(kwargs)
        kwargs.pop("device", None)
        if kwargs:
            raise TypeError(f"{cls.__name__} takes no options {sorted(kwargs)}")
        meta = ckpt.metadata
        net = SensorAutoencoder(**check_sensor_network_arrays(ckpt))  # checked before it is built
        net.load_state_dict({k: v.float() for k, v in ckpt.tensors("net.").items()})
        codec = cls(
            net,
            latent_model,
            views,
            calibration=ckpt.state.get("calibration"),
            env_id=meta["env_id"],
            family=meta["family"],
            variant=ckpt.kind.split("/", 1)[1],
            train_config=meta.get("train_config"),
            metrics=meta.get("metrics"),
        )
        check_system(system, codec.views)
        return codec

    # -- training -----------------------------------------------------------------------------------

    @classmethod
    def train(  # type: ignore[override]
        cls,
        frames: Mapping[str, np.ndarray],
        *,
        env_id: str = "bwgym/SensorNetwork-v0",
        latent_dims: Sequence[int] | None = None,
        variant: str | None = None,
        **overrides: Any,
    ) -> VectorNDPCACodec:
        """Train on ``{view: (N, d) float}`` measurements, rows aligned in time (the module's recipe).

        The last ``holdout`` share of the rows is not trained on: it calibrates the fusion error
        table and gives the held-out metrics recorded in the checkpoint. ``overrides`` replace
        :data:`RECIPE` entries (``steps``, ``seed``...). Runs on the CPU.
        """
        unknown = set(overrides) - set(RECIPE)
        if unknown:
            raise TypeError(f"unknown training options {sorted(unknown)}; the recipe has {sorted(RECIPE)}")
        cfg = {**RECIPE, **overrides}
        names = [str(n) for n in frames]
        ys = _measurement_arrays(frames, names)
        n = ys[0].shape[0]
        n_train = int(round(n * (1.0 - float(cfg["holdout"]))))
        if not 2 <= n_train <= n - 2:
            raise ValueError(f"holdout {cfg['holdout']} leaves {n_train} of {n} rows for training")
        views = [ViewSpec(name, (y.shape[1],), "float32") for name, y in zip(names, ys, strict=True)]
        train = [y[:n_train] for y in ys]
        means = [y.mean(axis=0) for y in train]
        scale = float(
            np.sqrt(
                np.mean(np.concatenate([((y - m) ** 2).ravel() for y, m in zip(train, means, strict=True)]))
            )
        )
        torch.manual_seed(int(cfg["seed"]))
        rng = np.random.default_rng(int(cfg["seed"]))
        net = SensorAutoencoder(
            names,
            [y.shape[1] for y in ys],
            latent_dims,
            cfg["hidden"],
            cfg["decoder_hidden"],
            means,
            max(scale, 1e-12),
        )
        _optimise(net, names, train, cfg, rng, scale)
        net.eval()
        codec = cls(net, _fit_latents(net, names, train), views, env_id=env_id, variant=variant)
        codec._refit_decoder_head({name: y for name, y in zip(names, train, strict=True)}, rng)
        held = {name: y[n_train:] for name, y in zip(names, ys, strict=True)}
        table = codec.calibrate(held)
        codec.train_config.update(
            {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
            rows=n,
            train_rows=n_train,
            latent_dims=list(net.latent_dims),
        )
        codec.metrics.update(
            held_out_mse_all_components=float(np.mean(table[-1])),
            held_out_mse_per_view_finest=[float(x) for x in table[-1]],
        )
        return codec

    fit = train


def _measurement_arrays(frames: Mapping[str, np.ndarray], names: Sequence[str]) -> list[np.ndarray]:
    """Each view's ``(N >= 10, d)`` float measurements as float64, every view with the same N."""
    ys = []
    for name in names:
        arr = np.asarray(frames[name])
        if arr.ndim != 2 or arr.dtype.kind != "f" or arr.shape[0] < 10:
            raise ValueError(
                f"vector_ndpca trains on (N >= 10, d) float measurements; view {name!r} is {arr.dtype}{arr.shape}"
            )
        ys.append(arr.astype(np.float64))
    n = ys[0].shape[0]
    if any(y.shape[0] != n for y in ys):
        raise ValueError(f"views need the same number of rows, got {[y.shape[0] for y in ys]}")
    return ys


def _optimise(
    net: SensorAutoencoder,
    names: Sequence[str],
    train: Sequence[np.ndarray],
    cfg: Mapping[str, Any],
    rng: np.random.Generator,
    scale: float,
) -> None:
    """Train ``net`` through Alg. 1's projection: ``cfg["steps"]`` Adam steps on random batches.

    A share ``1 - p_unquantised`` of the steps quantise the coefficients (straight through) with a
    step ``sqrt(lambda_max) * 2**-u``, ``u`` drawn from ``step_octaves``; the loss is the squared
    error per row in units of the measurements' spread ``scale``.
    """
    n_train = train[0].shape[0]
    projection = DPCAProjection(dict(zip(names, net.latent_dims, strict=True)), m_min=1, momentum=0.1)
    data = [torch.as_tensor(y, dtype=torch.float32) for y in train]
    optimiser = torch.optim.Adam(net.parameters(), lr=float(cfg["lr"]))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimiser, T_max=int(cfg["steps"]), eta_min=cfg["lr"] / 10
    )
    net.train()
    projection.train()
    for _ in range(int(cfg["steps"])):
        rows = torch.as_tensor(rng.integers(0, n_train, int(cfg["batch_size"])))
        batch = [d[rows] for d in data]
        z = net.encode(batch)
        coeff_fn = None
        if rng.random() >= float(cfg["p_unquantised"]):
            with torch.no_grad():
                top = max(
                    float(torch.linalg.eigvalsh(torch.cov(t.T.double()).reshape(t.shape[1], -1))[-1])
                    for t in z
                )
            step = max(top, 1e-12) ** 0.5 * 2.0 ** (-rng.uniform(*cfg["step_octaves"]))
            coeff_fn = lambda _k, c, _var, step=step: quantize_ste(c, step)  # noqa: E731
        out = projection(z, coeff_fn=coeff_fn)
        rec = net.decode(out.z_hat)
        loss = sum(((r - y) ** 2).sum(dim=1).mean() for r, y in zip(rec, batch, strict=True)) / scale**2
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()


def _fit_latents(net: SensorAutoencoder, names: Sequence[str], train: Sequence[np.ndarray]) -> DPCA:
    """The inference DPCA, fitted on the (float16-rounded) network's training latents."""
    with torch.inference_mode():
        z = net.encode([torch.as_tensor(y, dtype=torch.float32) for y in train])
    return DPCA.fit({n: t.double().numpy() for n, t in zip(names, z, strict=True)})
