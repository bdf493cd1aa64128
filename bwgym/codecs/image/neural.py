"""Learned latent codecs: the networks, the shared neural codec base, and the DAE / JAE baselines.

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

Layers (CompressAI's separation): :class:`LatentAutoencoder` holds the transforms ``g_a`` / ``g_s``
(torch); the fitted :class:`~bwgym.codecs.core.dpca.DPCA` is the latent model (one joint stream for
JAE); :mod:`bwgym.codecs.core.entropy` is the entropy model and byte coder. Checkpoints are the
project's one format (:mod:`bwgym.common.checkpoint`); weights are stored as float16 (see
:func:`round_to_float16`).

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
from torch import Tensor, nn

from bwgym.codecs.core.dpca import DPCA, DPCAProjection
from bwgym.codecs.core.latent import JOINT, LatentCodec
from bwgym.codecs.core.protocol import Allocation, Payload, ViewSet, ViewSpec, _batch_allocations
from bwgym.codecs.core.registry import register_codec
from bwgym.common.arch import ArchCheck, conv_stack_shapes
from bwgym.common.checkpoint import Checkpoint
from bwgym.common.device import resolve_device

__all__ = [
    "DEFAULT_CHANNELS",
    "JOINT",
    "PATCH",
    "DAECodec",
    "EqualSplitProjection",
    "JAECodec",
    "LatentAutoencoder",
    "NeuralLatentCodec",
    "ProjectionOutput",
    "resolve_device",
    "round_to_float16",
]

#: Output channels of the encoder's patch convolution and its 3x3 stride-2 convolutions (the
#: decoder mirrors them): 84x84 -> 21x21x32 -> 11x11x32 -> 6x6x32.
DEFAULT_CHANNELS = (32, 32, 32)

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


def round_to_float16(module: nn.Module) -> nn.Module:
    """Round every floating parameter and buffer to float16 precision (kept as float32), in place.

    Checkpoints store weights as float16 (half the size). Rounding *before* the latent model is
    fitted keeps the fitted model exact for the weights that are shipped.
    """
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    return module


# ---------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------


#: Stride (and kernel) of the first convolution: non-overlapping 4x4 patches, the cheapest way to
#: bring 84x84 images down to a size where 3x3 convolutions are affordable on a CPU.
PATCH = 4


def _conv_sizes(size: tuple[int, int], n_layers: int) -> list[tuple[int, int]]:
    """Spatial size after each layer: padded to a multiple of :data:`PATCH`, patchified, then halved.

    The first entry is the padded input size; every 3x3 stride-2 padding-1 convolution after the
    patch layer gives ``ceil(h / 2)``.
    """
    h, w = (-(-size[0] // PATCH) * PATCH, -(-size[1] // PATCH) * PATCH)
    sizes = [(h, w), (h // PATCH, w // PATCH)]
    for _ in range(n_layers - 1):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


class _ConvTrunk(nn.Module):
    """A 4x4 stride-4 patch convolution, then 3x3 stride-2 convolutions, ReLUs: images -> flat features.

    Inputs whose sides are not multiples of :data:`PATCH` are padded (replicating the border).
    """

    def __init__(self, image_size: tuple[int, int], channels: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, channels[0], PATCH, stride=PATCH), nn.ReLU()]
        for in_ch, out_ch in zip(channels[:-1], channels[1:], strict=True):
            layers += [nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1), nn.ReLU()]
        self.convs = nn.Sequential(*layers)
        sizes = _conv_sizes(image_size, len(channels))
        self.pad = (0, sizes[0][1] - image_size[1], 0, sizes[0][0] - image_size[0])
        h, w = sizes[-1]
        self.n_features = int(channels[-1] * h * w)

    def forward(self, x: Tensor) -> Tensor:
        if any(self.pad):
            x = nn.functional.pad(x, self.pad, mode="replicate")
        return self.convs(x - 0.5).flatten(1)


class _ViewDecoder(nn.Module):
    """Joint latent -> one view: linear layer, transposed convolutions, sigmoid.

    The linear layer fills the smallest feature map; 3x3 stride-2 transposed convolutions and a
    last 4x4 stride-4 one bring it back to full size (cropped to the image).
    """

    def __init__(self, latent_dim: int, image_size: tuple[int, int], channels: Sequence[int]) -> None:
        super().__init__()
        sizes = _conv_sizes(image_size, len(channels))
        self.image_size = image_size
        self.start = (int(channels[-1]), *sizes[-1])
        self.linear = nn.Linear(latent_dim, int(np.prod(self.start)))
        layers: list[nn.Module] = []
        rev = list(channels)[::-1]
        for i in range(len(channels) - 1):
            (h_in, w_in), (h_out, w_out) = sizes[-1 - i], sizes[-2 - i]
            pad = (h_out - (2 * h_in - 1), w_out - (2 * w_in - 1))  # 0 or 1: undoes ceil(h / 2)
            layers += [
                nn.ConvTranspose2d(rev[i], rev[i + 1], 3, stride=2, padding=1, output_padding=pad),
                nn.ReLU(),
            ]
        layers.append(nn.ConvTranspose2d(rev[-1], 3, PATCH, stride=PATCH))
        self.deconvs = nn.Sequential(*layers)
        #: Per-pixel logit offset, set to the logit of the training mean image before training
        #: (:meth:`LatentAutoencoder.set_mean_images`): the network starts at the mean image and
        #: learns the deviations from it.
        self.logit_offset = nn.Parameter(torch.zeros(3, *image_size))

    def forward(self, z: Tensor) -> Tensor:
        x = torch.relu(self.linear(z)).view(-1, *self.start)
        x = self.deconvs(x)[..., : self.image_size[0], : self.image_size[1]]
        return torch.sigmoid(x + self.logit_offset)


class LatentAutoencoder(nn.Module):
    r"""Per-view (distributed) or joint CNN encoders and a joint decoder to every view.

    Distributed (``joint=False``, NDPCA and DAE): view ``k`` has its own encoder
    ``E_k: x_k -> z_k`` (``latent_dims[k]`` features) that sees no other view. Joint (``joint=True``,
    JAE): one encoder ``E: (x_1, ..., x_K) -> z`` whose convolutional trunks per view feed one
    linear layer, so its ``latent_dims[JOINT]`` features mix all views. Either way the decoder
    ``D`` maps the concatenated latents to every view, with a sigmoid so images are in [0, 1]::

        x_arm  -> conv x3 -> linear -> z_arm  \\                     / linear -> deconv x3 -> x_arm
                                               > cat (sum d) -> D <
        x_side -> conv x3 -> linear -> z_side /                     \\ linear -> deconv x3 -> x_side

    Args:
        view_names: camera views, in order.
        image_size: (H, W) of every view.
        latent_dims: features per latent group: ``{view: d_k}`` (distributed) or
            ``{"joint": d}`` (joint).
        joint: one encoder over all views instead of one per view.
        channels: output channels of each trunk's 4x4 stride-4 patch convolution, then of its
            3x3 stride-2 convolutions.

    """

    def __init__(
        self,
        view_names: Sequence[str],
        image_size: Sequence[int],
        latent_dims: Mapping[str, int],
        joint: bool = False,
        channels: Sequence[int] = DEFAULT_CHANNELS,
    ) -> None:
        super().__init__()
        self.view_names = tuple(str(v) for v in view_names)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.latent_dims = {str(k): int(v) for k, v in latent_dims.items()}
        self.joint = bool(joint)
        self.channels = tuple(int(c) for c in channels)
        expected = (JOINT,) if self.joint else self.view_names
        if tuple(self.latent_dims) != expected:
            raise ValueError(
                f"latent_dims must have keys {list(expected)} in order, got {list(self.latent_dims)}"
            )
        if any(d < 1 for d in self.latent_dims.values()):
            raise ValueError(f"latent sizes must be >= 1, got {self.latent_dims}")
        self.trunks = nn.ModuleDict({v: _ConvTrunk(self.image_size, self.channels) for v in self.view_names})
        n_feat = {v: t.n_features for v, t in self.trunks.items()}
        if self.joint:
            self.heads = nn.ModuleDict({JOINT: nn.Linear(sum(n_feat.values()), self.latent_dims[JOINT])})
        else:
            self.heads = nn.ModuleDict(
                {v: nn.Linear(n_feat[v], self.latent_dims[v]) for v in self.view_names}
            )
        total = sum(self.latent_dims.values())
        self.decoders = nn.ModuleDict(
            {v: _ViewDecoder(total, self.image_size, self.channels) for v in self.view_names}
        )

    @property
    def latent_names(self) -> tuple[str, ...]:
        """The latent groups, in order: the view names, or ``("joint",)``."""
        return tuple(self.latent_dims)

    def encode(self, views: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Latents ``{group: (B, d)}`` of float views ``{view: (B, 3, H, W)}`` in [0, 1]."""
        if self.joint:
            feats = torch.cat([self.trunks[v](views[v]) for v in self.view_names], dim=1)
            return {JOINT: self.heads[JOINT](feats)}
        return {v: self.heads[v](self.trunks[v](views[v])) for v in self.view_names}

    def decode(self, latents: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Decode latents ``{group: (B, d)}`` to views ``{view: (B, 3, H, W)}`` in [0, 1]."""
        z = torch.cat([latents[n] for n in self.latent_names], dim=1)
        return {v: self.decoders[v](z) for v in self.view_names}

    def forward(self, views: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Reconstruction without any bottleneck other than the latent size."""
        return self.decode(self.encode(views))

    def set_mean_images(self, means: Mapping[str, Tensor]) -> LatentAutoencoder:
        """Start every view's output at its training mean image ``{view: (3, H, W)}`` in [0, 1]."""
        with torch.no_grad():
            for v in self.view_names:
                p = means[v].to(self.decoders[v].logit_offset).clamp(1e-3, 1 - 1e-3)
                self.decoders[v].logit_offset.copy_(torch.log(p) - torch.log1p(-p))
        return self

    def initialise_from(self, other: LatentAutoencoder) -> LatentAutoencoder:
        """Copy the weights of a trained network of the same views, size and channels, in place.

        Trunks and decoders are copied as they are. A joint network initialised from a distributed
        one gets a block-diagonal joint head (view ``k``'s head on view ``k``'s features), so it
        starts as exactly the distributed model; the reverse is not possible and raises.

        Raises:
            ValueError: the networks differ in views, image size, channels or total latent size,
                or ``other`` is joint and this one is not.

        """
        if (other.view_names, other.image_size, other.channels) != (
            self.view_names,
            self.image_size,
            self.channels,
        ):
            raise ValueError(
                f"cannot initialise {self.config()} from {other.config()}: views, image size and "
                "channels must match"
            )
        if sum(other.latent_dims.values()) != sum(self.latent_dims.values()) or (
            other.joint and not self.joint
        ):
            raise ValueError(
                f"cannot initialise latents {self.latent_dims} (joint={self.joint}) from "
                f"{other.latent_dims} (joint={other.joint})"
            )
        with torch.no_grad():
            self.trunks.load_state_dict(other.trunks.state_dict())
            self.decoders.load_state_dict(other.decoders.state_dict())
            if self.joint == other.joint:
                self.heads.load_state_dict(other.heads.state_dict())
            else:
                head = self.heads[JOINT]
                head.weight.zero_()
                row = col = 0
                for v in self.view_names:
                    w, b = other.heads[v].weight, other.heads[v].bias
                    head.weight[row : row + w.shape[0], col : col + w.shape[1]] = w
                    head.bias[row : row + w.shape[0]] = b
                    row, col = row + w.shape[0], col + w.shape[1]
        return self

    def config(self) -> dict[str, Any]:
        """Return the constructor arguments (JSON-able)."""
        return dict(
            view_names=list(self.view_names),
            image_size=list(self.image_size),
            latent_dims=dict(self.latent_dims),
            joint=self.joint,
            channels=list(self.channels),
        )


#: The arguments of :class:`LatentAutoencoder` a checkpoint's ``arch`` may hold.
_ARCH_KEYS = frozenset({"view_names", "image_size", "latent_dims", "joint", "channels"})


def check_network_arrays(ckpt: Checkpoint, prefix: str = "net.") -> None:
    """Refuse a checkpoint whose ``arch`` disagrees with its network arrays, before building anything.

    Computes the ``state_dict`` shapes of the :class:`LatentAutoencoder` that ``arch`` describes
    (integer arithmetic only) and requires exactly those keys and shapes under ``prefix``, so the
    built network takes no more memory than the file's arrays.

    Raises:
        CheckpointError: naming the field or the first array that disagrees.
    """
    check = ArchCheck(ckpt, "codec checkpoint", "bwgym train codec ...")
    arch = check.arch(_ARCH_KEYS, "LatentAutoencoder")
    views = check.view_names(arch)
    image = check.sizes(arch.get("image_size"), "arch.image_size")
    channels = check.sizes(list(arch.get("channels", DEFAULT_CHANNELS)), "arch.channels")
    dims = arch.get("latent_dims")
    if not isinstance(dims, dict):
        raise check.error("arch.latent_dims must be an object")
    check.sizes(list(dims.values()), "arch.latent_dims")
    if len(image) != 2 or not channels:
        raise check.error("needs an (H, W) arch.image_size and >= 1 channel size")
    joint = bool(arch.get("joint", False))
    n_views, n_layers = len(views), len(channels)
    n_expected = n_views * 2 * n_layers + 2 * (1 if joint else n_views) + n_views * (2 * n_layers + 3)
    have = check.arrays(prefix, n_expected, f"{n_views} views, channels {channels[:8]}")
    sizes = _conv_sizes((image[0], image[1]), n_layers)
    n_feat = channels[-1] * sizes[-1][0] * sizes[-1][1]
    total = sum(dims.values())
    expected: dict[str, tuple[int, ...]] = {}
    for v in views:
        expected.update(conv_stack_shapes(f"trunks.{v}.convs.", channels, PATCH))
        expected[f"decoders.{v}.linear.weight"] = (n_feat, total)
        expected[f"decoders.{v}.linear.bias"] = (n_feat,)
        rev = [*channels[::-1], 3]
        for i in range(n_layers):
            kernel = 3 if i < n_layers - 1 else PATCH
            expected[f"decoders.{v}.deconvs.{2 * i}.weight"] = (rev[i], rev[i + 1], kernel, kernel)
            expected[f"decoders.{v}.deconvs.{2 * i}.bias"] = (rev[i + 1],)
        expected[f"decoders.{v}.logit_offset"] = (3, image[0], image[1])
    for name, d in dims.items():
        expected[f"heads.{name}.weight"] = (d, n_feat * (n_views if joint else 1))
        expected[f"heads.{name}.bias"] = (d,)
    described = f"image_size {image}, channels {channels[:8]}, latent_dims {dict(list(dims.items())[:4])}"
    check.shapes(expected, have, prefix, described)


# ---------------------------------------------------------------------------------------------
# Training-time projections
# ---------------------------------------------------------------------------------------------


class ProjectionOutput:
    """Reconstructed latents and the dimensions kept per latent group (training projections)."""

    def __init__(self, z_hat: dict[str, Tensor], dims: dict[str, int]) -> None:
        self.z_hat = z_hat
        self.dims = dims


class _PooledProjection(nn.Module):
    """Algorithm 1 over all latent groups at once (NDPCA; JAE with its single group)."""

    def __init__(self, latent_dims: Mapping[str, int], m_min: int, m_max: int, momentum: float) -> None:
        super().__init__()
        self.projection = DPCAProjection(dict(latent_dims), m_min=m_min, m_max=m_max, momentum=momentum)

    def forward(self, z: Mapping[str, Tensor], m: int, coeff_fn: Callable | None = None) -> ProjectionOutput:
        out = self.projection(dict(z), m=m, coeff_fn=coeff_fn)
        return ProjectionOutput(out.z_hat, dict(zip(self.projection.view_names, out.dims, strict=True)))


class EqualSplitProjection(nn.Module):
    """DAE's training projection: each view projected on its own top ``m_k`` components, ``m_k`` equal.

    ``m`` is split as the inference codec splits it (components alternate between views, so the
    first views get one more when ``m`` is not a multiple of the number of views); each view runs
    Alg. 1 on its own (:class:`~bwgym.codecs.core.dpca.DPCAProjection` with one view).
    """

    def __init__(self, latent_dims: Mapping[str, int], momentum: float = 0.1) -> None:
        super().__init__()
        self.latent_dims = {str(k): int(v) for k, v in latent_dims.items()}
        self.projections = nn.ModuleDict(
            {
                k: DPCAProjection({k: d}, m_min=0, m_max=d, momentum=momentum)
                for k, d in self.latent_dims.items()
            }
        )

    def split(self, m: int) -> dict[str, int]:
        """Components per view at total ``m`` (alternating, capped by each view's size)."""
        order = _interleaved_order(tuple(self.latent_dims.values()))
        counts = np.bincount(order[:m], minlength=len(self.latent_dims))
        return dict(zip(self.latent_dims, (int(c) for c in counts), strict=True))

    def forward(self, z: Mapping[str, Tensor], m: int, coeff_fn: Callable | None = None) -> ProjectionOutput:
        """Project each view on its own top components, ``m`` split equally, and reconstruct."""
        dims = self.split(m)
        z_hat = {}
        for j, (name, proj) in enumerate(self.projections.items()):
            fn = None if coeff_fn is None else (lambda _k, c, var, j=j: coeff_fn(j, c, var))
            z_hat[name] = proj({name: z[name]}, m=dims[name], coeff_fn=fn).z_hat[name]
        return ProjectionOutput(z_hat, dims)


def _interleaved_order(ranks: Sequence[int]) -> np.ndarray:
    """Stream index of each component when streams take turns (equal split), capped by ``ranks``."""
    keys = [(j, k) for k, r in enumerate(ranks) for j in range(r)]
    return np.array([k for _, k in sorted(keys)], dtype=np.int64)


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
        return _PooledProjection(latent_dims, m_min, m_max, momentum)

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
