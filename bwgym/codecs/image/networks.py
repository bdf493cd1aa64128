"""The networks of the learned image codecs: the per-view (or joint) autoencoder and its projections.

:class:`LatentAutoencoder` holds the transforms ``g_a`` / ``g_s`` (CompressAI's separation): a
patch convolution and stride-2 convolutions per view (or one trunk over all views for the joint
codec), and one joint decoder ``D(z_1, ..., z_K) -> (x_1, ..., x_K)``. :class:`EqualSplitProjection`
and the pooled projection are the random-dimension projections of training (NDPCA paper, Alg. 1).
The codec classes that wrap them are in :mod:`bwgym.codecs.image.neural`; training is
:mod:`bwgym.codecs.train`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bwgym.codecs.core.dpca import DPCAProjection
from bwgym.codecs.core.latent import JOINT
from bwgym.common.arch import ArchCheck, conv_stack_shapes
from bwgym.common.checkpoint import Checkpoint

__all__ = [
    "DEFAULT_CHANNELS",
    "PATCH",
    "EqualSplitProjection",
    "LatentAutoencoder",
    "PooledProjection",
    "ProjectionOutput",
    "check_network_arrays",
    "round_to_float16",
]

#: Output channels of the encoder's patch convolution and its 3x3 stride-2 convolutions (the
#: decoder mirrors them): 84x84 -> 21x21x32 -> 11x11x32 -> 6x6x32.
DEFAULT_CHANNELS = (32, 32, 32)


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


class PooledProjection(nn.Module):
    """Algorithm 1 over all latent groups at once (NDPCA; JAE with its single group)."""

    def __init__(self, latent_dims: Mapping[str, int], m_min: int, m_max: int, momentum: float) -> None:
        super().__init__()
        self.projection = DPCAProjection(dict(latent_dims), m_min=m_min, m_max=m_max, momentum=momentum)

    def forward(self, z: Mapping[str, Tensor], m: int, coeff_fn: Callable | None = None) -> ProjectionOutput:
        """Project the views on the top ``m`` pooled components and reconstruct."""
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
