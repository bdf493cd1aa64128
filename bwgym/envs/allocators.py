"""Bandwidth allocation policies: how a step's bit budget is split over the views.

An allocator is called once per env step, before the codec, with the views about to be sent, the
step's budget and a dict of context (:class:`~bwgym.envs.bandwidth.BandwidthLimited` passes the
link state, see its docs), and returns the fraction of the budget each view gets, or None to let
the codec split the budget itself::

    allocator = make_allocator({"arm": 3, "side": 1})
    allocator(views, budget_bits=20_000, info={})     # {'arm': 0.75, 'side': 0.25}

* :class:`CodecAllocator` (``"dpca"``) - the codec's own split: DPCA's pooled singular values for
  the latent codecs, an equal split for the image codecs;
* :class:`UniformAllocator` (``"uniform"``) - the same share for every view, which every codec
  honours (for a latent codec, each view buys as many components as its share pays for);
* :class:`FixedAllocator` - fixed weights per view, normalised;
* :func:`make_allocator` - builds one from a name, a dict of weights, or an instance.

Learned allocators implement the same :class:`Allocator` protocol.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "ALLOCATORS",
    "Allocator",
    "CodecAllocator",
    "FixedAllocator",
    "UniformAllocator",
    "make_allocator",
]


class CodecAllocator:
    """The codec's own split (``"dpca"``): no fractions are imposed.

    A latent codec then allocates components by its latent model (DPCA's pooled singular values,
    NDPCA paper Sec. 4); an image codec splits equally.

    Example:
        >>> CodecAllocator()({"arm": None, "side": None}, budget_bits=1000, info={}) is None
        True
    """

    def __call__(self, views: Mapping[str, np.ndarray], budget_bits: int, info: Mapping[str, Any]) -> None:
        """None: the codec decides."""
        return None

    def reset(self) -> None:
        """Stateless: nothing to do."""

    def __repr__(self) -> str:
        return "CodecAllocator()"


@runtime_checkable
class Allocator(Protocol):
    """Splits a step's bit budget over views.

    ``__call__`` returns one non-negative fraction per view name of ``views``, summing to 1 (a
    view with fraction 0 is not sent), or None: the codec splits the budget itself. ``reset`` is
    called at the start of every episode, so a stateful policy can clear its memory.
    """

    def __call__(
        self, views: Mapping[str, np.ndarray], budget_bits: int, info: Mapping[str, Any]
    ) -> dict[str, float] | None:
        """The fraction of ``budget_bits`` per view name (None: the codec's own split)."""
        ...

    def reset(self) -> None:
        """Forget any per-episode state."""
        ...


class UniformAllocator:
    """Every view gets ``1 / n_views`` of the budget.

    Example:
        >>> UniformAllocator()({"arm": None, "side": None}, budget_bits=1000, info={})
        {'arm': 0.5, 'side': 0.5}
    """

    def __call__(
        self, views: Mapping[str, np.ndarray], budget_bits: int, info: Mapping[str, Any]
    ) -> dict[str, float]:
        """Equal fractions over ``views``."""
        if not views:
            raise ValueError("expected at least one view to allocate to, got none")
        share = 1.0 / len(views)
        return {name: share for name in views}

    def reset(self) -> None:
        """Stateless: nothing to do."""

    def __repr__(self) -> str:
        return "UniformAllocator()"


class FixedAllocator:
    """Fixed, normalised weights per view; a view absent from ``weights`` gets 0 (is not sent).

    Args:
        weights: non-negative finite weight per view name, not all zero (normalised to sum to 1).
        views: when given, the view names the allocator will be called with; a weight for another
            name is an error now rather than at the first call.

    Raises:
        TypeError: ``weights`` is not a mapping of names to numbers.
        ValueError: a negative, NaN or infinite weight, all weights zero, or an unknown view.

    Example:
        >>> FixedAllocator({"arm": 3, "side": 1})({"arm": None, "side": None}, 1000, {})
        {'arm': 0.75, 'side': 0.25}
        >>> FixedAllocator({"arm": 1, "sdie": 1}, views=["arm", "side"])
        Traceback (most recent call last):
            ...
        ValueError: FixedAllocator weights name unknown views ['sdie']; expected names among ['arm', 'side']
    """

    def __init__(self, weights: Mapping[str, float], views: Sequence[str] | None = None) -> None:
        if not isinstance(weights, Mapping):
            raise TypeError(
                f"weights is expected to be a dict of view name -> weight, got {type(weights).__name__}"
            )
        clean: dict[str, float] = {}
        for name, w in weights.items():
            if not isinstance(name, str):
                raise TypeError(f"weight keys are expected to be view names (str), got {name!r}")
            if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)):
                raise TypeError(f"weight of view {name!r} is expected to be a number, got {w!r}")
            if not math.isfinite(float(w)) or float(w) < 0:
                raise ValueError(f"weight of view {name!r} is expected to be finite and >= 0, got {w!r}")
            clean[name] = float(w)
        total = sum(clean.values())
        if total <= 0:
            raise ValueError(f"expected at least one positive weight, got {dict(weights)}")
        self.weights: dict[str, float] = {k: v / total for k, v in clean.items()}
        if views is not None:
            self._check_names(views)

    def _check_names(self, views: Sequence[str] | Mapping[str, Any]) -> None:
        unknown = sorted(set(self.weights) - set(views))
        if unknown:
            raise ValueError(
                f"FixedAllocator weights name unknown views {unknown}; expected names among {sorted(views)}"
            )

    def __call__(
        self, views: Mapping[str, np.ndarray], budget_bits: int, info: Mapping[str, Any]
    ) -> dict[str, float]:
        """The normalised weights, 0 for a view without one.

        Raises:
            ValueError: ``weights`` names a view that is not in ``views``.
        """
        self._check_names(views)
        return {name: self.weights.get(name, 0.0) for name in views}

    def reset(self) -> None:
        """Stateless: nothing to do."""

    def __repr__(self) -> str:
        return f"FixedAllocator({self.weights!r})"


#: Allocators a scenario can name without arguments.
ALLOCATORS: dict[str, type] = {"dpca": CodecAllocator, "uniform": UniformAllocator}


def make_allocator(
    spec: str | Mapping[str, float] | Allocator, views: Sequence[str] | None = None
) -> Allocator:
    """Build an allocator from a name of :data:`ALLOCATORS`, a dict of weights, or an instance.

    Args:
        spec: ``"dpca"`` or ``"uniform"``; ``{view: weight}`` (a :class:`FixedAllocator`); or any
            object with ``__call__(views, budget_bits, info)`` and ``reset()``, returned as is.
        views: the view names it will be called with, to validate a dict of weights now.

    Raises:
        ValueError: an unknown name or bad weights.
        TypeError: ``spec`` is none of the above.

    Example:
        >>> make_allocator("uniform")
        UniformAllocator()
        >>> make_allocator({"arm": 1, "side": 0})
        FixedAllocator({'arm': 1.0, 'side': 0.0})
    """
    if isinstance(spec, str):
        if spec in ALLOCATORS:
            return ALLOCATORS[spec]()
        raise ValueError(
            f"unknown allocator {spec!r}; expected one of {sorted(ALLOCATORS)}, a dict of weights or an Allocator"
        )
    if isinstance(spec, Mapping):
        return FixedAllocator(spec, views=views)
    if isinstance(spec, Allocator):
        return spec
    raise TypeError(
        f"allocator is expected to be one of {sorted(ALLOCATORS)}, a dict of weights or an Allocator "
        f"(callable with reset()), got {type(spec).__name__}"
    )
