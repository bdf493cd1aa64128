"""Linear codecs on raw pixels: distributed PCA (:class:`LinearDPCACodec`) and joint PCA (:class:`PCACodec`).

No network: each view is (optionally) downsampled, flattened and projected on principal
directions fitted once on training frames (:meth:`LinearDPCACodec.train`); quantisation, the
budget search and the wire format are those of :class:`~bwgym.codecs.core.latent.LatentCodec`.

Example::

    codec = LinearDPCACodec.train(frames, max_components=32, env_id="bwgym/LocateLift-v0")
    payload = codec.compress({"arm": img_a, "side": img_b}, budget_bits=2_000)
    assert payload.nbits <= 2_000
    decoded = codec.decompress(Payload.from_bytes(payload.to_bytes(), session=codec.session))
    codec.save("linear_dpca.ckpt")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np

from bwgym.codecs.core.dpca import DPCA
from bwgym.codecs.core.latent import JOINT, LatentCodec, _to_vectors
from bwgym.codecs.core.protocol import ViewSpec
from bwgym.codecs.core.registry import register_codec

__all__ = ["LinearDPCACodec", "PCACodec"]


_Class = TypeVar("_Class", bound=type)


def _linear_codec(
    name: str, wire_id: int, max_components: int, description: str
) -> Callable[[_Class], _Class]:
    """Register a linear codec fitted on 4x downsampled pixels, shipped as ``<name>_locate_lift.ckpt``."""
    recipe = {"max_components": max_components, "downsample": 4}
    checkpoint = f"{name}_locate_lift.ckpt"
    return register_codec(
        name, wire_id=wire_id, checkpoint=checkpoint, recipe=recipe, description=description
    )


class _LinearCodec(LatentCodec):
    """Fitting shared by the linear codecs: frames -> (downsampled) vectors -> DPCA."""

    @classmethod
    def train(
        cls,
        frames: Mapping[str, np.ndarray],
        *,
        max_components: int | Mapping[str, int] = 64,
        downsample: int = 1,
        env_id: str = "",
        family: str = "gaussian",
        variant: str | None = None,
        residual: bool = True,
        **unused: Any,
    ) -> _LinearCodec:
        """Fit on training frames.

        Args:
            frames: ``{view: (N, H, W, 3) uint8}`` (or ``(N, d)`` float vectors), rows aligned in
                time across views. View specs are taken from these shapes and dtypes.
            max_components: components kept per view (DPCA) or in total (joint PCA); this bounds
                the model size (``H*W*3 / downsample**2`` floats each).
            downsample: block-averaging factor for image views.
            env_id: recorded in the checkpoint.
            family: entropy model family.
            variant: the registered name (default the class's).
            residual: fit the residual layer (a block DCT of the full-resolution pixel residual,
                :meth:`~bwgym.codecs.core.latent.LatentCodec.fit_residual`) for image views, so the
                codec spans every rate.
            **unused: training options of the learned codecs (task model, steps...), ignored.
        """
        specs = []
        for name, arr in frames.items():
            arr = np.asarray(arr)
            if arr.ndim < 2 or arr.shape[0] < 2:
                raise ValueError(f"view {name!r}: frames must be (N, ...) with N >= 2, got shape {arr.shape}")
            specs.append(ViewSpec(str(name), tuple(arr.shape[1:]), str(arr.dtype)))
        vectors = {spec.name: _to_vectors(spec, frames[spec.name], downsample) for spec in specs}
        if cls.joint:
            vectors = {JOINT: np.concatenate(list(vectors.values()), axis=1)}
        model = DPCA.fit(vectors, max_components=max_components)
        config = {
            "max_components": max_components,
            "downsample": downsample,
            "frames": int(len(next(iter(frames.values())))),
            "residual": bool(residual),
        }
        codec = cls(model, specs, downsample, env_id, family, variant=variant, train_config=config)
        if residual and all(len(s.shape) == 3 and s.dtype == "uint8" for s in specs):
            codec.fit_residual(frames)
        return codec

    fit = train


@_linear_codec("linear_dpca", 4, 32, "DPCA on downsampled pixels: the distributed linear baseline")
class LinearDPCACodec(_LinearCodec):
    """DPCA directly on (downsampled) pixels: each view projected on its own principal directions.

    The distributed linear baseline of the NDPCA paper: each view's encoder needs only its own
    frame and the fitted model; the receiver learns from the frame's header byte (the step) how
    many components each view sent. Build with :meth:`train` or load with :func:`bwgym.codecs.load_codec`.
    """

    name = "linear_dpca"


@_linear_codec("pca", 9, 64, "joint PCA over all views' pixels: the non-distributed linear reference")
class PCACodec(_LinearCodec):
    """Joint PCA over all views' pixels: the non-distributed linear reference (one joint stream).

    Its encoder needs every view at once, so it bounds what any distributed linear codec can do
    at the same rate (Lemma 3.1). It is DPCA with one stream; ``allocation`` cannot split it.
    """

    name = "pca"
    joint = True
