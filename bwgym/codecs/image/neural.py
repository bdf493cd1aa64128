"""Learned latent codecs: the shared neural codec base, and the DAE / JAE baselines.

Every learned codec here and in :mod:`bwgym.codecs.image.ndpca` is a neural autoencoder whose latents go
through a *fitted linear model* (DPCA or PCA, :mod:`bwgym.codecs.core.dpca`) before quantisation and
entropy coding, so one trained model serves every bandwidth: the linear model's components are
sorted by variance, and ``compress`` sends as many as the bit budget buys (the budget search, wire
format and coder are those of :class:`~bwgym.codecs.core.latent.LatentCodec`). They differ only in who
sees what (NDPCA paper, Sec. 5 "Baselines")::

    codec   encoder                          latent model          bandwidth split
    ndpca   one CNN per view (E_k(x_k))      DPCA over the views   pooled singular values
    dae     one CNN per view (E_k(x_k))      PCA per view          equal: same count per view
    jae     one CNN over all views (E(x))    one joint PCA         none (one joint stream)

(PCA per view is DPCA taken in another order; joint PCA is DPCA with one stream.)

and all three share the joint decoder ``D(z_1, ..., z_K) -> (x_1, ..., x_K)`` with images in
[0, 1]. In the paper DAE and JAE are retrained for every bandwidth; here each is *one* model
trained with the same random-dimension projection as NDPCA (Alg. 1, per view with an equal split
for DAE, over the joint latent for JAE), so the comparison isolates the bandwidth allocation
(DAE vs NDPCA) and the encoders' access to each other's views (JAE vs NDPCA). Train them with
:func:`bwgym.codecs.train.train_codec` (or ``bwgym train codec``) and load them with
:func:`bwgym.codecs.make_codec` or :func:`bwgym.codecs.load_codec`.

Layers (CompressAI's separation): :class:`~bwgym.codecs.image.networks.LatentAutoencoder` holds
the transforms ``g_a`` / ``g_s`` (torch); the fitted :class:`~bwgym.codecs.core.dpca.DPCA` is the latent model (one joint stream for
JAE); :mod:`bwgym.codecs.core.entropy` is the entropy model and byte coder. Checkpoints are the
project's one format (:mod:`bwgym.common.checkpoint`); weights are stored as float16 (see
:func:`~bwgym.codecs.image.networks.round_to_float16`).

Example::

    codec = make_codec("dae", views, env_id="bwgym/LocateLift-v1")   # the shipped checkpoint
    payload = codec.compress({"arm": arm, "side": side}, budget_bits=400)
    codec.last_allocation                    # {'arm': 5, 'side': 5}
    views = codec.decompress(Payload.from_bytes(payload.to_bytes(), session=codec.session))
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import nn

from bwgym.codecs.core.dpca import DPCA
from bwgym.codecs.core.latent import JOINT, LatentCodec
from bwgym.codecs.core.protocol import Allocation, Payload, ViewSet, ViewSpec, _batch_allocations
from bwgym.codecs.core.registry import register_codec
from bwgym.codecs.image.networks import (
    DEFAULT_CHANNELS,
    EqualSplitProjection,
    LatentAutoencoder,
    PooledProjection,
    check_network_arrays,
)
from bwgym.common.checkpoint import Checkpoint
from bwgym.common.device import resolve_device

__all__ = [
    "JOINT",
    "DAECodec",
    "JAECodec",
    "NeuralLatentCodec",
    "resolve_device",
]

SelfNeural = TypeVar("SelfNeural", bound="NeuralLatentCodec")
_Class = TypeVar("_Class", bound=type)


#: Weight of the reconstruction MSE in the task-aware recipe (the task term weighs 1). The task term,
#: a squared action error summed over 4 dims, is ~0.3-0.8 where the pixel MSE (images in [0, 1]) is
#: ~0.003: at weight 1 the latents drift away from the pixels (held-out PSNR 24.8 -> 17.3 dB) and
#: the codec loses more action error at every budget above 32 bits than the task term saves.
#: At 300 the two terms are of one size (BENCHMARKS.md, "Codecs", recipe note).
TASK_AWARE_LAMBDA_REC = 300.0


def neural_codec(
    name: str, wire: int | str, description: str, lambda_task: float = 1.0
) -> Callable[[_Class], _Class]:
    """Register a learned latent codec whose shipped checkpoint is ``<name>_locate_lift.ckpt``.

    Its recipe weighs the task loss ``lambda_task`` (0: task-agnostic, reconstruction weight 1) and
    the reconstruction loss :data:`TASK_AWARE_LAMBDA_REC` when task-aware; ``wire`` is the id of a
    new wire format (an int) or the name of the wire format it shares.
    """
    wire_format: dict[str, Any] = {"wire_id": wire} if isinstance(wire, int) else {"wire_name": wire}
    lambda_rec = TASK_AWARE_LAMBDA_REC if lambda_task > 0 else 1.0
    return register_codec(
        name,
        checkpoint=f"{name}_locate_lift.ckpt",
        recipe={"lambda_task": lambda_task, "lambda_rec": lambda_rec},
        description=description,
        **wire_format,
    )


# ---------------------------------------------------------------------------------------------
# Checkpoint helpers
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# The codec base
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _inference(device: torch.device) -> Iterator[None]:
    """``torch.inference_mode``, with oneDNN off on CPU.

    At batch size 1 PyTorch's own CPU kernels run these small (transposed) convolutions about
    twice as fast as oneDNN's, with bit-identical outputs (``benchmarks/loop_speed.py``; the
    golden-bytes test of the codecs would catch a difference).
    """
    with torch.inference_mode():
        if device.type != "cpu":
            yield
            return
        enabled = torch.backends.mkldnn.enabled
        torch.backends.mkldnn.enabled = False
        try:
            yield
        finally:
            torch.backends.mkldnn.enabled = enabled


class NeuralLatentCodec(LatentCodec):
    """A latent codec whose transform is a trained autoencoder and whose latent model is a fitted DPCA.

    ``compress``: views -> encoder(s) -> DPCA projection -> quantise with one step -> entropy-code,
    searching the number of components and the step for the lowest latent distortion whose real
    payload fits the budget (:class:`~bwgym.codecs.core.latent.LatentCodec`). ``decompress`` ->
    dequantise -> back-project -> joint decoder. A stream sent with 0 components decodes from the
    latent mean.

    Subclasses set :attr:`name` and :attr:`joint`, and :meth:`_dims` when the split is not
    DPCA's pooled order.

    Args:
        net: the trained autoencoder (put in eval mode on ``device``).
        latent_model: the fitted DPCA of its latents (one stream ``"joint"`` for a joint codec).
        views: view specs (uint8 ``(H, W, 3)`` images).
        env_id: the env the frames came from.
        family: entropy model, ``"gaussian"`` or ``"laplace"``.
        device: where the networks run (``"auto"``: CUDA when present). The bytes do not depend on
            it (the entropy model is integer), the reconstruction only to float rounding.
        variant: the registered name it was trained as (e.g. ``ndpca_agnostic``).
        train_config: how the model was trained (saved in checkpoints).
        metrics: evaluation numbers to keep with the checkpoint.
    """

    _coefficients_in_pixel_units = False
    #: Built with a ``device`` argument (a scenario's ``run.device``).
    uses_device: ClassVar[bool] = True

    def __init__(
        self,
        net: LatentAutoencoder,
        latent_model: DPCA,
        views: Sequence[ViewSpec],
        env_id: str = "",
        family: str = "gaussian",
        device: str | torch.device = "auto",
        variant: str | None = None,
        train_config: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(latent_model, views, 1, env_id, family, variant, train_config, metrics)
        for spec in self.views:
            if spec.dtype != "uint8" or len(spec.shape) != 3 or spec.shape[2] != 3:
                raise ValueError(
                    f"view {spec.name!r}: learned codecs take uint8 (H, W, 3) images, got {spec}"
                )
            if tuple(spec.shape[:2]) != net.image_size:
                raise ValueError(
                    f"view {spec.name!r} of shape {spec.shape} does not match the network's "
                    f"image size {net.image_size}"
                )
        if (
            net.view_names != self.view_names
            or net.joint != self.joint
            or net.latent_names != self.stream_names
        ):
            raise ValueError(
                f"{type(self).__name__}: network views {list(net.view_names)} (joint={net.joint}) "
                f"do not match codec views {list(self.view_names)} (joint={self.joint})"
            )
        self.device = resolve_device(device)
        self.net = net.to(self.device).eval()
        self.net.requires_grad_(False)
        #: Run the networks once for all N view sets of :meth:`compress_batch` and
        #: :meth:`decompress_batch` (default: on CUDA). On CPU each view set gets its own pass: a
        #: batched pass rounds its floats differently from N single ones (its latents are not
        #: bit-identical: benchmarks/loop_speed.py), and a table must not depend on how many envs
        #: ran together.
        self.batch_networks: bool = self.device.type != "cpu"

    @property
    def latent_dims(self) -> dict[str, int]:
        """Latent size per latent group."""
        return dict(self.net.latent_dims)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, 3)`` of every view."""
        return (*self.net.image_size, 3)

    # -- the transform --------------------------------------------------------------------------

    def latents(self, views: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Encode uint8 views ``{view: (N, H, W, 3)}`` to latents ``{group: (N, d)}`` (float64)."""
        with _inference(self.device):
            x = {
                v: torch.as_tensor(np.asarray(views[v]), device=self.device)
                .permute(0, 3, 1, 2)
                .float()
                .div_(255.0)
                for v in self.view_names
            }
            z = self.net.encode(x)
        return {k: t.double().cpu().numpy() for k, t in z.items()}

    def compress_batch(
        self,
        views: Sequence[ViewSet],
        budget_bits: Sequence[int],
        allocations: Sequence[Allocation] | None = None,
    ) -> list[Payload]:
        """Compress N view sets; with :attr:`batch_networks`, the encoders run once for all N.

        The rate search, the residual layer and the entropy coding stay per view set. Without
        :attr:`batch_networks` (the CPU default) the bytes are exactly those of N :meth:`compress`
        calls; with it, up to the float rounding of a batched forward pass.
        """
        if not self.batch_networks or len(views) < 2:
            return super().compress_batch(views, budget_bits, allocations)
        allocations = _batch_allocations(views, budget_bits, allocations)
        budgets = [self._check_input(v, b) for v, b in zip(views, budget_bits, strict=True)]
        z = self.latents({n: np.stack([np.asarray(v[n]) for v in views]) for n in self.view_names})
        model = self.latent_model
        ranks = dict(zip(self.stream_names, model.ranks, strict=True))
        out = []
        for i, (v, b, a) in enumerate(zip(views, budgets, allocations, strict=True)):
            coeffs = model.encode({k: z[k][i] for k in self.stream_names}, dims=ranks)
            latent = [coeffs[n] for n in self.stream_names]
            out.append(self._check_output(self._compress_with(v, b, a, latent), b))
        return out

    def decompress_batch(self, payloads: Sequence[Payload]) -> list[dict[str, np.ndarray]]:
        """Decode N payloads; with :attr:`batch_networks`, the decoder runs once for all frames."""
        if not self.batch_networks or len(payloads) < 2:
            return super().decompress_batch(payloads)
        out: list[dict[str, np.ndarray]] = [{} for _ in payloads]
        frames = []
        for i, payload in enumerate(payloads):
            self._check_session(payload)
            if not payload.is_empty:
                frames.append((i, self._frame_coefficients(payload)))
        if frames:
            n = len(self.stream_names)
            latents = [
                self.latent_model.decode(dict(zip(self.stream_names, c[:n], strict=True))) for _, c in frames
            ]
            stacked = {k: np.stack([z[k] for z in latents]) for k in self.stream_names}
            decoded = self._decode_latents(stacked)
            for j, (i, coeffs) in enumerate(frames):
                out[i] = self._views(coeffs, [decoded[v][j] for v in self.view_names])
        return out

    def _latents(self, vectors: list[np.ndarray]) -> dict[str, np.ndarray]:
        views = {
            spec.name: np.asarray(v, dtype=np.float32).reshape(1, *spec.shape)
            for spec, v in zip(self.views, vectors, strict=True)
        }
        return {k: z[0] for k, z in self.latents(views).items()}

    def _views_from_latents(self, latents: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        decoded = self._decode_latents({k: np.asarray(latents[k]).reshape(1, -1) for k in self.stream_names})
        return [decoded[v][0] for v in self.view_names]

    def _decode_latents(self, latents: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Latents ``{group: (B, d)}`` -> flattened views ``{view: (B, H * W * 3)}`` in [0, 255] (float64)."""
        with _inference(self.device):
            z = {
                k: torch.as_tensor(latents[k], dtype=torch.float32, device=self.device)
                for k in self.stream_names
            }
            x = self.net.decode(z)
            return {
                v: x[v].permute(0, 2, 3, 1).mul(255.0).double().cpu().numpy().reshape(len(x[v]), -1)
                for v in self.view_names
            }

    # -- persistence ----------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The checkpoint's JSON metadata: the base's plus the network architecture."""
        return {**super().metadata(), "arch": self.net.config(), "latent_dims": self.latent_dims}

    def state(self) -> dict[str, Any]:
        """Network weights (float16 where exact, see :func:`round_to_float16`) and the latent model."""
        state = super().state()
        for k, v in self.net.state_dict().items():
            v = v.detach().cpu()
            half = v.half() if v.is_floating_point() else None
            state[f"net.{k}"] = half if half is not None and torch.equal(half.float(), v) else v.clone()
        return state

    @classmethod
    def _from_parts(
        cls: type[SelfNeural],
        ckpt: Checkpoint,
        latent_model: DPCA,
        views: list[ViewSpec],
        device: str | torch.device = "auto",
    ) -> SelfNeural:
        meta = ckpt.metadata
        # Shapes first: only an architecture the file's arrays confirm is built (a crafted
        # ``arch`` could otherwise ask for gigabytes before load_state_dict notices).
        check_network_arrays(ckpt)
        net = LatentAutoencoder(**meta["arch"])
        net.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in ckpt.tensors("net.").items()}
        )
        return cls(
            net,
            latent_model,
            views,
            env_id=meta["env_id"],
            family=meta["family"],
            device=device,
            variant=ckpt.kind.split("/", 1)[1],
            train_config=meta.get("train_config"),
            metrics=meta.get("metrics"),
        )

    def __getstate__(self) -> dict[str, Any]:
        # Pickle arrays and metadata, not live modules: subprocess workers rebuild the codec.
        state = {k: v.numpy() if hasattr(v, "numpy") else v for k, v in self.state().items()}
        return {
            "state": state,
            "metadata": self.metadata(),
            "variant": self.variant,
            "device": str(self.device),
        }

    def __setstate__(self, pickled: dict[str, Any]) -> None:
        device = pickled["device"]
        if device.startswith("cuda") and not torch.cuda.is_available():
            device = "cpu"
        ckpt = Checkpoint(
            kind=f"codec/{pickled['variant']}", metadata=pickled["metadata"], state=pickled["state"]
        )
        self.__dict__.update(type(self).from_checkpoint(ckpt, device=device).__dict__)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(variant={self.variant!r}, env_id={self.env_id!r}, views={self.view_shapes}, "
            f"latent_dims={self.latent_dims}, device={str(self.device)!r})"
        )

    # -- training -------------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        frames: Mapping[str, np.ndarray],
        *,
        variant: str | None = None,
        env_id: str = "",
        episode_index: np.ndarray | None = None,
        task_model: Any = None,
        task_model_path: str | os.PathLike[str] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        progress: bool = True,
        **fields: Any,
    ) -> NeuralLatentCodec:
        """Train on frames with :func:`bwgym.codecs.train.train_codec`.

        Args:
            frames: ``{view: uint8 (N, H, W, 3)}``.
            variant: the registered name to train (its recipe is the default config).
            env_id: the env the frames come from.
            episode_index: episode of each row, for a validation split by episode.
            task_model: the frozen task model (required when the recipe's ``lambda_task > 0``).
            task_model_path: its file, recorded with its sha256.
            log_dir: TensorBoard folder.
            progress: show a progress bar.
            **fields: :class:`~bwgym.codecs.train.TrainConfig` fields to override.
        """
        from bwgym.codecs.train import TrainConfig, _file_record, train_codec

        config = TrainConfig.for_variant(variant or cls.name, env_id=env_id, **fields)
        if config.lambda_task > 0 and task_model_path is not None:
            config = replace(config, agent=_file_record(task_model_path))
        return train_codec(
            config, frames, episode_index, agent=task_model, log_dir=log_dir, progress=progress
        )

    @classmethod
    def build_network(
        cls,
        view_names: Sequence[str],
        image_size: Sequence[int],
        latent_dim: int,
        channels: Sequence[int] = DEFAULT_CHANNELS,
    ) -> LatentAutoencoder:
        """Build a fresh network: ``latent_dim`` per view, or ``latent_dim * K`` joint features."""
        if cls.joint:
            dims = {JOINT: int(latent_dim) * len(view_names)}
        else:
            dims = {str(v): int(latent_dim) for v in view_names}
        return LatentAutoencoder(view_names, image_size, dims, joint=cls.joint, channels=channels)

    @classmethod
    def training_projection(
        cls, latent_dims: Mapping[str, int], m_min: int, m_max: int, momentum: float = 0.1
    ) -> nn.Module:
        """Return the random-dimension projection used in training (Alg. 1, pooled over groups)."""
        return PooledProjection(latent_dims, m_min, m_max, momentum)

    @classmethod
    def fit_latent_model(cls, latents: Mapping[str, np.ndarray]) -> DPCA:
        """Fit the inference latent model on training latents ``{group: (N, d)}`` (all components)."""
        return DPCA.fit(latents)


@neural_codec("dae", 6, "distributed autoencoder, equal split: the NDPCA paper's lower-bound baseline")
class DAECodec(NeuralLatentCodec):
    """Distributed autoencoder with an equal split: the NDPCA paper's lower-bound baseline.

    One encoder per view (as NDPCA) and a joint decoder; each view's latents are projected on that
    view's own principal components, and every view sends as many components as the view with the
    most significant ones (at the frame's step), so both get the same number whatever their
    importance (the residual layer likewise). Trained with :class:`EqualSplitProjection`.
    """

    name = "dae"

    def _dims(
        self, steps: np.ndarray, offsets: Sequence[int | None], split: int, excess: int = 0
    ) -> list[int]:
        """Equal split: every view sends as many components as the most significant view (per layer)."""
        dims = super()._dims(steps, offsets, split, excess)
        if split:
            return dims
        for residual in (False, True):
            members = [i for i, g in enumerate(self._groups) if g.residual == residual]
            if members:
                top = max(dims[i] for i in members)
                for i in members:
                    dims[i] = min(top, self._groups[i].sigma.size)
        return dims

    @classmethod
    def training_projection(
        cls, latent_dims: Mapping[str, int], m_min: int, m_max: int, momentum: float = 0.1
    ) -> nn.Module:
        """Each view on its own top components, equal numbers per view."""
        return EqualSplitProjection(latent_dims, momentum)


@neural_codec("jae", 7, "joint autoencoder: one encoder over all views (the non-distributed reference)")
class JAECodec(NeuralLatentCodec):
    """Joint autoencoder: one encoder over all views (the non-distributed reference).

    Its encoder needs every view at once, so it cannot run on separate sensors; it bounds what a
    distributed codec of the same size can do. Its latent is projected on one joint PCA basis and
    sent as one stream (``allocation`` is meaningless and ignored).
    """

    name = "jae"
    joint = True
