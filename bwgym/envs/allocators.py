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
* :class:`FixedAllocator` (``"fixed"``) - fixed weights per view, normalised;
* :class:`ProportionalAllocator` (``"proportional"``) - shares proportional to each view's
  current latent energy (:func:`view_energy`);
* :class:`OracleAllocator` (``"oracle"``) - a reference that runs the task agent at the sender:
  every step it tries a grid of splits through the codec and keeps the one whose decoded views
  make the task agent act most like it does on the true views;
* :class:`LookaheadOracleAllocator` (``"oracle_lookahead"``) - the oracle scoring each split by
  the least summed distance over a k-step rollout of the env, the link and the agent (pruned);
* :class:`LearnedAllocator` (``"learned"``) - a policy (e.g. SB3's, trained on
  ``bwgym/AllocateBandwidth-v0``) acting on :class:`AllocationObserver`'s observation; loading
  one from a checkpoint lives a layer up (:func:`bwgym.agents.allocation.load_learned_allocator`);
* :func:`make_allocator` - builds one from a name, a dict of weights, or an instance.

Each registers itself in :data:`bwgym.common.registry.ALLOCATORS` (``bwgym allocators`` lists
them with their options). :func:`action_to_split` is the one mapping from a policy's action (a
``Box(-1, 1, (K,))`` vector) onto the simplex, shared by the allocation env and
:class:`LearnedAllocator`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from bwgym.common.registry import ALLOCATORS, BuildContext, InputError, register_allocator

__all__ = [
    "Allocator",
    "AllocationObserver",
    "CodecAllocator",
    "FixedAllocator",
    "LearnedAllocator",
    "LookaheadOracleAllocator",
    "OracleAllocator",
    "ProportionalAllocator",
    "UniformAllocator",
    "action_to_split",
    "make_allocator",
    "simplex_grid",
    "view_energy",
]


@register_allocator("dpca", description="the codec's own split (DPCA's singular values for latent codecs)")
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


@register_allocator("uniform", description="an equal share per view")
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


@register_allocator("fixed", description="fixed shares per view: weights {view: weight}", uses=("weights",))
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

    @classmethod
    def from_context(cls, context: BuildContext, options: None) -> FixedAllocator:
        """The scenario's ``weights`` over the codec's views."""
        if not context.weights:
            raise InputError("weights", "required for allocator 'fixed', e.g. {arm: 0.7, side: 0.3}")
        views = getattr(context.codec, "view_names", None)
        return cls(context.weights, views=views)


def view_energy(views: Mapping[str, np.ndarray], codec: Any = None) -> dict[str, float]:
    """Energy of each view, as a sender can compute it before sending.

    With a latent codec (one that has ``coefficients(views)`` with one stream per view, e.g.
    NDPCA), the sum of the squares of the view's latent coefficients in its DPCA components;
    otherwise the sum of squared deviations of the view's values from their mean (pixel energy).

    Example:
        >>> import numpy as np
        >>> view_energy({"a": np.array([0.0, 2.0]), "b": np.zeros(2)})
        {'a': 2.0, 'b': 0.0}
    """
    coeffs = _coefficients(views, codec)
    if coeffs is not None:
        return {name: float(np.sum(np.square(coeffs[name]))) for name in views}
    out = {}
    for name, view in views.items():
        x = np.asarray(view, dtype=np.float64)
        out[name] = float(np.sum(np.square(x - x.mean()))) if x.size else 0.0
    return out


def _coefficients(views: Mapping[str, np.ndarray], codec: Any) -> dict[str, np.ndarray] | None:
    """The codec's latent coefficients per view, or None when it has none per view."""
    coefficients = getattr(codec, "coefficients", None)
    if coefficients is None or tuple(getattr(codec, "stream_names", ())) != tuple(views):
        return None
    coeffs = coefficients(views)
    return {name: np.asarray(coeffs[name], dtype=np.float64).ravel() for name in views}


@register_allocator("proportional", description="shares proportional to each view's current latent energy")
class ProportionalAllocator:
    """Each view's share is proportional to its current energy (:func:`view_energy`).

    A view whose frame carries more latent energy (more, or larger, DPCA coefficients) gets more
    of the link. All energies zero (or not finite): an equal split.

    Args:
        codec: the codec on the link; with a latent codec the energy is in its DPCA components,
            without one (or with an image codec) it is the pixel energy.

    Example:
        >>> import numpy as np
        >>> ProportionalAllocator()({"a": np.array([0.0, 3.0]), "b": np.array([0.0, 1.0])}, 100, {})
        {'a': 0.9, 'b': 0.1}
    """

    def __init__(self, codec: Any = None) -> None:
        self.codec = codec

    def __call__(
        self, views: Mapping[str, np.ndarray], budget_bits: int, info: Mapping[str, Any]
    ) -> dict[str, float]:
        """Shares proportional to :func:`view_energy`."""
        if not views:
            raise ValueError("expected at least one view to allocate to, got none")
        energy = view_energy(views, self.codec)
        total = sum(energy.values())
        if not (math.isfinite(total) and total > 0):
            return {name: 1.0 / len(views) for name in views}
        return {name: round(e / total, 12) for name, e in energy.items()}

    def reset(self) -> None:
        """Stateless: nothing to do."""

    def __repr__(self) -> str:
        return f"ProportionalAllocator(codec={getattr(self.codec, 'name', None)!r})"

    @classmethod
    def from_context(cls, context: BuildContext, options: None) -> ProportionalAllocator:
        """Energies in the scenario codec's latents (pixels without a codec)."""
        return cls(context.codec)


def simplex_grid(n_views: int, levels: int = 4) -> list[tuple[float, ...]]:
    """Every split of ``n_views`` shares in steps of ``1 / levels`` (the corners included).

    Example:
        >>> simplex_grid(2, 4)
        [(0.0, 1.0), (0.25, 0.75), (0.5, 0.5), (0.75, 0.25), (1.0, 0.0)]
        >>> len(simplex_grid(3, 4)), simplex_grid(1)
        (15, [(1.0,)])
    """
    if isinstance(n_views, bool) or not isinstance(n_views, (int, np.integer)) or n_views < 1:
        raise ValueError(f"n_views is expected to be an integer >= 1, got {n_views!r}")
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or not 1 <= levels <= 64:
        raise ValueError(f"levels is expected to be an integer in [1, 64], got {levels!r}")

    def parts(k: int, total: int) -> list[tuple[int, ...]]:
        if k == 1:
            return [(total,)]
        return [(i, *rest) for i in range(total + 1) for rest in parts(k - 1, total - i)]

    return [tuple(p / levels for p in split) for split in parts(int(n_views), int(levels))]


@dataclasses.dataclass(frozen=True)
class OracleOptions:
    """Options of the oracle allocator (``allocator.kwargs``)."""

    levels: int = 4
    """Grid steps per unit share (:func:`simplex_grid`)."""
    include_codec_split: bool = False
    """Also try the codec's own split."""
    explore: float = 0.0
    """Probability of sending a random grid split instead (for data collection)."""
    seed: int | None = None
    """Seed of the exploration draws."""


@register_allocator(
    "oracle",
    description="per step the grid split whose decoded views keep the agent's action closest to its clean-view action",
    options=OracleOptions,
)
class OracleAllocator:
    """Per step, the split of a grid whose decoded views best preserve the task agent's action.

    Every step it compresses the true views with each split of the grid (the state is the same
    for all: nothing is stepped, so no simulator copy is needed), decodes each payload, shows the
    task agent what the receiver would then display (views the payload does not refresh hold the
    oracle's own record of the last frame it chose; zeros before the first), and keeps the split
    whose action is closest (L2) to the agent's action on the true views. It is an upper
    reference for a one-step criterion, not for success itself. It sees nothing of the future:
    what it needs is the task agent itself, so a sender holding a copy of the frozen agent (and
    spending ``1 + len(grid)`` encodes, decodes and agent calls per step) could run it; a sender
    without one cannot. With link latency or losses its record of the receiver's frames is
    approximate. ``last_scores`` holds each split's distance of the last
    step, so the oracle is never farther than any split it searched.

    Args:
        agent: the frozen task agent (``act(obs) -> action`` on the link views); it is called
            ``1 + len(grid)`` times per step, so it must be memoryless (pass its own instance).
        codec: the codec on the link (the same as the wrapper's).
        levels: grid resolution, :func:`simplex_grid` (ignored when ``splits`` is given).
        splits: the splits to search instead, each a dict ``{view: share}`` or a tuple in
            ``codec.view_names`` order.
        include_codec_split: also try the codec's own split (``"dpca"``, returned as None when
            it wins), so the oracle is never below ``dpca`` on the same state either.
        explore: probability of sending a split of the search drawn uniformly instead of the best
            (``last_scores`` still holds every split's distance): data collection for a learned
            allocator, which must also see the states a worse split leads to. 0 for the reference.
        seed: seeds the draws of ``explore``.

    Raises:
        ValueError: a split of the wrong length or not on the simplex, or ``explore`` outside [0, 1].
    """

    def __init__(
        self,
        agent: Any,
        codec: Any,
        levels: int = 4,
        splits: Sequence[Mapping[str, float] | Sequence[float]] | None = None,
        include_codec_split: bool = False,
        explore: float = 0.0,
        seed: int | None = None,
    ) -> None:
        if not callable(getattr(agent, "act", None)):
            raise TypeError(f"agent is expected to have act(obs), got {type(agent).__name__}")
        if isinstance(explore, bool) or not isinstance(explore, (int, float)) or not 0.0 <= explore <= 1.0:
            raise ValueError(f"explore is expected to be a probability in [0, 1], got {explore!r}")
        self.explore = float(explore)
        self._rng = np.random.default_rng(seed)
        self.agent = agent
        self.codec = codec
        self.view_names: tuple[str, ...] = tuple(codec.view_names)
        grid = simplex_grid(len(self.view_names), levels) if splits is None else splits
        self.splits: list[tuple[float, ...]] = [self._as_tuple(s) for s in grid]
        if not self.splits:
            raise ValueError("expected at least one split to search")
        self.include_codec_split = bool(include_codec_split)
        #: Distance per split searched at the last step (the key None: the codec's own split).
        self.last_scores: dict[tuple[float, ...] | None, float] = {}
        self._shown: dict[str, np.ndarray] | None = None

    @classmethod
    def from_context(cls, context: BuildContext, options: OracleOptions) -> OracleAllocator:
        """The oracle with its own instance of the scenario's agent."""
        if context.make_agent is None or context.codec is None:
            raise ValueError(
                "allocator 'oracle' needs arguments: build it with OracleAllocator(agent, codec), "
                "or name it in a scenario"
            )
        return cls(context.make_agent(), context.codec, **dataclasses.asdict(options))

    def _as_tuple(self, split: Mapping[str, float] | Sequence[float]) -> tuple[float, ...]:
        values = [split[n] for n in self.view_names] if isinstance(split, Mapping) else list(split)
        arr = np.asarray(values, dtype=np.float64)
        if arr.shape != (len(self.view_names),) or not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise ValueError(
                f"each split is expected to give one finite share >= 0 per view {list(self.view_names)}, "
                f"got {split!r}"
            )
        if arr.sum() <= 0:
            raise ValueError(f"split {split!r} gives every view 0")
        return tuple(float(v) for v in arr / arr.sum())

    def reset(self) -> None:
        """Forget the receiver's frames (a new episode starts from zeros)."""
        self._shown = None
        self.last_scores = {}

    def _decoded(self, views: Mapping[str, np.ndarray], budget_bits: int, split: tuple[float, ...] | None):
        allocation = None if split is None else dict(zip(self.view_names, split, strict=True))
        payload = self.codec.compress(views, int(budget_bits), allocation)
        if payload.is_empty or payload.nbits > budget_bits:
            return {}
        return self.codec.decompress(payload)

    def score(
        self,
        views: Mapping[str, np.ndarray],
        budget_bits: int,
        split: Mapping[str, float] | Sequence[float] | None,
    ) -> float:
        """Distance of the agent's action on ``split``'s decoded views to its action on ``views``.

        ``split`` None: the codec's own split.

        Uses (and does not change) the oracle's record of the receiver's frames.
        """
        shown = self._shown if self._shown is not None else _zeros_like(views)
        clean = np.asarray(self.agent.act(dict(views)), dtype=np.float64)
        decoded = self._decoded(views, budget_bits, None if split is None else self._as_tuple(split))
        action = np.asarray(self.agent.act({**shown, **decoded}), dtype=np.float64)
        return float(np.linalg.norm(action - clean))

    def __call__(
        self, views: Mapping[str, np.ndarray], budget_bits: int, info: Mapping[str, Any]
    ) -> dict[str, float] | None:
        """The searched split whose decoded views move the agent's action least (None: the codec's)."""
        candidates, distances, shown_by = self._score_all(views, budget_bits)
        pick = int(np.argmin(distances))  # the first of equal distances
        if self.explore and self._rng.random() < self.explore:
            pick = int(self._rng.integers(len(candidates)))
        return self._send(candidates[pick], shown_by[pick])

    @property
    def candidates(self) -> list[tuple[float, ...] | None]:
        """The splits searched each step, in order (None: the codec's own split, last)."""
        return [*self.splits, *([None] if self.include_codec_split else [])]

    def _score_all(
        self, views: Mapping[str, np.ndarray], budget_bits: int
    ) -> tuple[list[tuple[float, ...] | None], list[float], list[dict[str, np.ndarray]]]:
        """The step's candidates, their distances and what the receiver would hold after each.

        The distances also go to :attr:`last_scores`; views other than the codec's are refused.
        """
        if set(views) != set(self.view_names):
            raise ValueError(f"expected views {list(self.view_names)}, got {sorted(views)}")
        if self._shown is None:
            self._shown = _zeros_like(views)
        candidates = self.candidates
        distances, shown_by = self._evaluate(views, budget_bits, self._shown)
        self.last_scores = dict(zip(candidates, distances, strict=True))
        return candidates, distances, shown_by

    def _send(self, split: tuple[float, ...] | None, shown: dict[str, np.ndarray]) -> dict[str, float] | None:
        """Record what the receiver holds after ``split``; the split as the wrapper takes it."""
        self._shown = shown
        return None if split is None else dict(zip(self.view_names, split, strict=True))

    def _evaluate(
        self, views: Mapping[str, np.ndarray], budget_bits: int, shown: Mapping[str, np.ndarray]
    ) -> tuple[list[float], list[dict[str, np.ndarray]]]:
        """Each candidate's distance and what the receiver holds after it, from its frames ``shown``.

        Every candidate from one analysis of the views, one batched decode and one batched act.
        """
        clean = np.asarray(self.agent.act(dict(views)), dtype=np.float64)
        candidates = self.candidates
        allocations = [None if s is None else dict(zip(self.view_names, s, strict=True)) for s in candidates]
        payloads = self.codec.compress_splits(views, int(budget_bits), allocations)
        sent = [i for i, p in enumerate(payloads) if not p.is_empty and p.nbits <= budget_bits]
        decoded: list[dict[str, np.ndarray]] = [{} for _ in candidates]
        for i, views_i in zip(sent, self.codec.decompress_batch([payloads[i] for i in sent]), strict=True):
            decoded[i] = views_i
        shown_by = [{**shown, **d} for d in decoded]
        actions = self._act_all(shown_by)
        distances = [float(np.linalg.norm(np.asarray(a, dtype=np.float64) - clean)) for a in actions]
        return distances, shown_by

    def _act_all(self, observations: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """The agent's action on each observation: one ``act_batch`` call when it has one."""
        if hasattr(self.agent, "act_batch") and len(observations) > 1:
            stacked = {k: np.stack([o[k] for o in observations]) for k in observations[0]}
            return list(self.agent.act_batch(stacked))
        return [self.agent.act(o) for o in observations]

    def __repr__(self) -> str:
        extra = " + the codec's" if self.include_codec_split else ""
        return f"OracleAllocator(views={list(self.view_names)}, splits={len(self.splits)}{extra})"


def _zeros_like(views: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: np.zeros_like(np.asarray(view)) for name, view in views.items()}


@dataclasses.dataclass(frozen=True)
class LookaheadOptions:
    """Options of the lookahead oracle (``allocator.kwargs``)."""

    k: int = 2
    """Steps looked ahead, this one included (1: the one-step oracle's choices)."""
    keep: int = 2
    """Candidates expanded at each step but the last (the best by their one-step distance)."""
    levels: int = 4
    """Grid steps per unit share (:func:`simplex_grid`)."""
    include_codec_split: bool = False
    """Also try the codec's own split."""


#: Distance charged per remaining step when a lookahead ends in a failure (the largest an action
#: in ``[-1, 1]^4`` can be from another: the diagonal of the box).
FAILED_STEP_DISTANCE = 4.0


@register_allocator(
    "oracle_lookahead",
    description="per step the grid split whose k-step rollout (env, link, agent) keeps the agent's "
    "actions closest to its clean-view ones, summed",
    options=LookaheadOptions,
)
class LookaheadOracleAllocator(OracleAllocator):
    """The oracle with a k-step lookahead: it rolls the env, the link and the agent forward.

    The one-step oracle (:class:`OracleAllocator`) scores each split by the distance it causes
    now. This one scores a split by the least sum of distances over this step and the next
    ``k - 1``: from a saved state it sends the split through its model of the receiver (the one-step
    oracle's: every frame arrives, the held frames are its own record), lets the agent act on what
    the receiver then holds, steps a copy of the env's state with that action, takes the next
    step's budget from a copy of the link, scores every split of the next step the same way, and so
    on; it sends the first split of the best sequence. Pruned: at every step but the last only the
    ``keep`` best candidates by their one-step distance are expanded (``1 + keep + ... + keep^(k-1)``
    batched evaluations and ``keep + ... + keep^(k-1)`` env steps per step). A rollout that ends the
    episode stops there: a success adds nothing more, any other end
    :data:`FAILED_STEP_DISTANCE` per step left. With ``k = 1`` it makes the one-step oracle's choices.

    Saved and restored around every lookahead (nothing it does shows in the episode): the
    unwrapped env's attributes (its MuJoCo data, arrays, generators and containers are copied for
    each rollout and the originals put back; the model and renderer are shared, a step does not
    change them) and the link (a copy per rollout; the wrapper's is never touched). The codec's
    ``compress_splits`` and ``decompress_batch`` do not change it, and the agent must be memoryless
    (as for the one-step oracle). The env's wrappers (time limit) are not stepped: a rollout past
    the time limit runs on.

    Args:
        agent: the frozen task agent, its own memoryless instance.
        codec: the codec on the link.
        env: the env the link wraps (the bare env: the allocator steps ``env.unwrapped``).
        k: steps looked ahead, this one included (1 to 8).
        keep: candidates expanded at each step but the last (>= 1).
        levels, splits, include_codec_split: the grid, as :class:`OracleAllocator`'s.
        link: the :class:`~bwgym.traces.link.Link` the wrapper sends on (:meth:`bind_link` later);
            without one the lookahead holds this step's budget for the steps ahead.

    Raises:
        ValueError: ``k`` or ``keep`` out of range, or the grid's errors.
        TypeError: ``env`` is not a gymnasium env.
    """

    def __init__(
        self,
        agent: Any,
        codec: Any,
        env: Any,
        k: int = 2,
        keep: int = 2,
        levels: int = 4,
        splits: Sequence[Mapping[str, float] | Sequence[float]] | None = None,
        include_codec_split: bool = False,
        link: Any = None,
    ) -> None:
        super().__init__(agent, codec, levels=levels, splits=splits, include_codec_split=include_codec_split)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= 8:
            raise ValueError(f"k is expected to be an integer in [1, 8] (steps looked ahead), got {k!r}")
        if isinstance(keep, bool) or not isinstance(keep, (int, np.integer)) or keep < 1:
            raise ValueError(f"keep is expected to be an integer >= 1 (candidates expanded), got {keep!r}")
        if not callable(getattr(getattr(env, "unwrapped", None), "step", None)):
            raise TypeError(f"env is expected to be a gymnasium env, got {type(env).__name__}")
        self.k, self.keep, self.env = int(k), int(keep), env
        self.link = link
        #: Each candidate's summed distance over the lookahead at the last step (inf: pruned).
        self.last_totals: dict[tuple[float, ...] | None, float] = {}

    @classmethod
    def from_context(cls, context: BuildContext, options: LookaheadOptions) -> LookaheadOracleAllocator:
        """The lookahead oracle on the scenario's bare env, with its own instance of the agent."""
        if context.make_agent is None or context.codec is None or context.env is None:
            raise ValueError(
                "allocator 'oracle_lookahead' needs arguments: build it with "
                "LookaheadOracleAllocator(agent, codec, env), or name it in a scenario"
            )
        return cls(context.make_agent(), context.codec, context.env, **dataclasses.asdict(options))

    def bind_link(self, link: Any) -> None:
        """Read the steps ahead's budgets from ``link`` (the wrapper's :attr:`link`; only copies are advanced)."""
        self.link = link

    def __call__(
        self, views: Mapping[str, np.ndarray], budget_bits: int, info: Mapping[str, Any]
    ) -> dict[str, float] | None:
        """The first split of the sequence with the least summed distance over the next ``k`` steps."""
        candidates, first, shown_by = self._score_all(views, budget_bits)
        totals = list(first)
        if self.k > 1:
            totals = [math.inf] * len(candidates)
            with _Lookahead(self.env, self.link, budget_bits) as future:
                start = future.save()
                for i in _best(first, self.keep):
                    future.restore(start)
                    totals[i] = first[i] + self._rollout(shown_by[i], future, self.k - 1)
        self.last_totals = dict(zip(candidates, totals, strict=True))
        pick = int(np.argmin(totals))  # the first of equal totals
        return self._send(candidates[pick], shown_by[pick])

    def _rollout(self, shown: dict[str, np.ndarray], future: _Lookahead, steps: int) -> float:
        """The least summed distance of the next ``steps`` steps, the receiver holding ``shown`` now."""
        views, budget_bits, ended = future.step(self.agent.act(dict(shown)))
        if ended is not None:
            return 0.0 if ended else FAILED_STEP_DISTANCE * steps
        views = {name: views[name] for name in self.view_names}
        distances, shown_by = self._evaluate(views, budget_bits, shown)
        if steps == 1:
            return min(distances)
        here = future.save()
        best = math.inf
        for i in _best(distances, self.keep):
            future.restore(here)
            best = min(best, distances[i] + self._rollout(shown_by[i], future, steps - 1))
        return best

    def __repr__(self) -> str:
        extra = " + the codec's" if self.include_codec_split else ""
        return (
            f"LookaheadOracleAllocator(views={list(self.view_names)}, splits={len(self.splits)}{extra}, "
            f"k={self.k}, keep={self.keep})"
        )


def _best(distances: Sequence[float], keep: int) -> list[int]:
    """Indices of the ``keep`` least distances (the first of equal ones first)."""
    return [int(i) for i in np.argsort(np.asarray(distances), kind="stable")[:keep]]


class _Lookahead:
    """Copies of an env's and a link's state to roll forward; the originals are put back on exit.

    ``save()`` returns a state, ``restore(state)`` installs fresh copies of it (so a state can be
    restored any number of times), ``step(action)`` advances the copies one step. On exit the
    env gets back its own attribute objects, untouched.
    """

    def __init__(self, env: Any, link: Any, budget_bits: int) -> None:
        self.env = env.unwrapped
        self.link, self.budget_bits = link, int(budget_bits)
        self._original: dict[str, Any] = {}

    def __enter__(self) -> _Lookahead:
        self._original = dict(vars(self.env))
        return self

    def __exit__(self, *exc: object) -> None:
        self._install(self._original)

    def _install(self, attributes: Mapping[str, Any]) -> None:
        state = vars(self.env)
        for name in [n for n in state if n not in attributes]:
            del state[name]
        state.update(attributes)

    def save(self) -> tuple[dict[str, Any], Any]:
        """The current state (copies: the env and link go on changing)."""
        link = None if self.link is None else copy.deepcopy(self.link, {id(self.link.trace): self.link.trace})
        return {name: _copied(v) for name, v in vars(self.env).items()}, link

    def restore(self, saved: tuple[dict[str, Any], Any]) -> None:
        """Install fresh copies of ``saved``."""
        attributes, link = saved
        self._install({name: _copied(v) for name, v in attributes.items()})
        if link is not None:
            self.link = copy.deepcopy(link, {id(link.trace): link.trace})

    def step(self, action: Any) -> tuple[Mapping[str, np.ndarray], int, bool | None]:
        """Step the env copy with ``action``: its views, the next step's budget, and how it ended.

        The end: None while the episode goes on, True on a success, False on any other end.
        """
        obs, _, terminated, truncated, info = self.env.step(action)
        if self.link is not None:
            self.link.transmit(None, 0)  # the copy's clock moves on; nothing is sent
            self.budget_bits = int(self.link.peek_budget_bits())
        ended = bool(info.get("is_success", False)) if (terminated or truncated) else None
        return obs, self.budget_bits, ended


def _copied(value: Any) -> Any:
    """A copy of what a step may change (MuJoCo data, arrays, generators, containers); others shared."""
    if (
        isinstance(value, (np.ndarray, np.random.Generator, dict, list, set))
        or type(value).__name__ == "MjData"
    ):
        return copy.deepcopy(value)
    return value


#: Why :func:`action_to_split` replaced an action (the keys of the counts in ``info``).
INVALID_ACTION_REASONS = ("non_finite", "out_of_bounds", "all_zero")


def action_to_split(
    action: Any, view_names: Sequence[str], codec_split: bool = False
) -> tuple[dict[str, float] | None, str | None]:
    """Map a policy's action in ``Box(-1, 1, (K,))`` onto the simplex: one share per view.

    Each value ``a`` becomes the weight ``(a + 1) / 2`` (so -1 sends nothing of that view, +1 the
    most), and the weights are normalised. Actions off the box are never passed on as they are:
    a NaN or infinite value gives an equal split (reason ``"non_finite"``), values outside
    ``[-1, 1]`` are clipped (``"out_of_bounds"``), and all weights 0 (every value -1) give an
    equal split (``"all_zero"``).

    With ``codec_split`` the action has ``K + 1`` values and a last value > 0 means "let the codec
    split" (None, the ``"dpca"`` choice); the first ``K`` are then ignored.

    Returns:
        ``(split, reason)``: the shares (finite, >= 0, summing to 1; None for the codec's split)
        and None, or the reason the action was replaced or clipped.

    Raises:
        ValueError: the action does not have one value per view (plus one with ``codec_split``).

    Example:
        >>> action_to_split([1.0, 0.0], ["arm", "side"])
        ({'arm': 0.6666666666666666, 'side': 0.3333333333333333}, None)
        >>> action_to_split([float("nan"), 0.0], ["arm", "side"])
        ({'arm': 0.5, 'side': 0.5}, 'non_finite')
        >>> action_to_split([-1.0, -3.0], ["arm", "side"])
        ({'arm': 0.5, 'side': 0.5}, 'all_zero')
        >>> action_to_split([1.0, 0.0, 0.5], ["arm", "side"], codec_split=True)
        (None, None)
    """
    names = tuple(view_names)
    size = len(names) + int(bool(codec_split))
    try:
        a = np.asarray(action, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise ValueError(f"expected a numeric action of {size} values, got {action!r}") from err
    if a.size != size or not names:
        extra = " plus the codec-split switch" if codec_split else ""
        raise ValueError(
            f"expected an action of {size} values (one per view {list(names)}{extra}), got {a.size}"
        )
    equal = {n: 1.0 / len(names) for n in names}
    if not np.all(np.isfinite(a)):
        return equal, "non_finite"
    reason = None
    if np.any(a < -1.0) or np.any(a > 1.0):
        reason, a = "out_of_bounds", np.clip(a, -1.0, 1.0)
    if codec_split:
        if a[-1] > 0:
            return None, reason
        a = a[:-1]
    weights = (a + 1.0) / 2.0
    total = float(weights.sum())
    if total <= 1e-9:
        return equal, "all_zero"
    return {n: float(w / total) for n, w in zip(names, weights, strict=True)}, reason


class AllocationObserver:
    """What an allocation policy sees each step: only what a sender knows before it sends.

    The observation is a ``Dict`` of float32 boxes, all in ``[0, 2]``:

    ==========  ===========  ==============================================================
    ``budget``  ``(H,)``     ``log2(1 + bits) / 16`` of the last ``H`` step budgets, the
                             current one last (0 before the episode's first step)
    ``views``   ``(K * 5,)`` per view (view-major): share of the total energy (:func:`view_energy`),
                             ``log10(1 + energy) / 10``, the share it was given last step
                             (0 for all when the codec split it),
                             the fraction of last step's latent energy not sent (latent codecs
                             with ``last_allocation``; else 0), frame age
                             ``min(age, max_age) / max_age`` (1 while never shown)
    ``step``    ``(1,)``     step index / ``max_steps``, clipped to 1
    ==========  ===========  ==============================================================

    Usage per step: ``observe(views, budget_bits, context)`` (no side effect but a cache), the
    policy decides, then ``commit(split)`` records the decision; ``reset()`` per episode. The
    ``context`` is :class:`~bwgym.envs.bandwidth.BandwidthLimited`'s allocator context (``step``,
    ``frame_age_steps``), so a policy trained in the allocation env and one running inside a
    scenario see the same numbers. :meth:`spec` is what a checkpoint records and a loader checks.

    Args:
        view_names: the K views, in order (the codec's).
        codec: the codec on the link (latent energies and components sent); None: pixel energies.
        history_steps: H, budgets in the history.
        max_steps: steps of an episode (scales ``step``).
        max_age_steps: frame ages at or above this read 1.
    """

    FEATURES = ("energy_share", "log_energy", "previous_share", "unsent_energy", "frame_age")
    VERSION = 1

    def __init__(
        self,
        view_names: Sequence[str],
        codec: Any = None,
        history_steps: int = 8,
        max_steps: int = 50,
        max_age_steps: int = 10,
    ) -> None:
        names = tuple(str(n) for n in view_names)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"expected distinct view names, at least one, got {list(view_names)}")
        for label, value in (
            ("history_steps", history_steps),
            ("max_steps", max_steps),
            ("max_age_steps", max_age_steps),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, np.integer))
                or not 1 <= value <= 10_000
            ):
                raise ValueError(f"{label} is expected to be an integer in [1, 10000], got {value!r}")
        self.view_names = names
        self.codec = codec
        self.history_steps = int(history_steps)
        self.max_steps = int(max_steps)
        self.max_age_steps = int(max_age_steps)
        latent = (
            getattr(codec, "coefficients", None) is not None
            and tuple(getattr(codec, "stream_names", ())) == names
        )
        self.energy_source = "latent" if latent else "pixels"
        self.reset()

    @property
    def observation_space(self) -> Any:
        """The ``Dict`` space of :meth:`observe`."""
        from gymnasium import spaces

        k, f = len(self.view_names), len(self.FEATURES)
        return spaces.Dict(
            {
                "budget": spaces.Box(0.0, 2.0, (self.history_steps,), np.float32),
                "step": spaces.Box(0.0, 1.0, (1,), np.float32),
                "views": spaces.Box(0.0, 2.0, (k * f,), np.float32),
            }
        )

    def spec(self) -> dict[str, Any]:
        """Plain JSON that identifies the observation (what a trained policy was built for)."""
        return {
            "version": self.VERSION,
            "views": list(self.view_names),
            "n_views": len(self.view_names),
            "history_steps": self.history_steps,
            "max_steps": self.max_steps,
            "max_age_steps": self.max_age_steps,
            "features": list(self.FEATURES),
            "energy": self.energy_source,
        }

    def reset(self) -> None:
        """Start an episode: empty history, no previous split."""
        self._budgets: list[int] = []
        self._previous_split = np.zeros(len(self.view_names))
        self._previous_coeffs: dict[str, np.ndarray] | None = None
        self._pending: tuple[int, dict[str, np.ndarray] | None] | None = None
        self._steps = 0

    def observe(
        self, views: Mapping[str, np.ndarray], budget_bits: int, context: Mapping[str, Any] | None = None
    ) -> dict[str, np.ndarray]:
        """The observation for the step about to be sent (``views``, ``budget_bits``)."""
        context = context or {}
        names = self.view_names
        if set(views) != set(names):
            raise ValueError(f"expected views {list(names)}, got {sorted(views)}")
        coeffs = (
            _coefficients({n: views[n] for n in names}, self.codec)
            if self.energy_source == "latent"
            else None
        )
        if coeffs is not None:
            energy = np.array([float(np.sum(np.square(coeffs[n]))) for n in names])
        else:
            energies = view_energy({n: views[n] for n in names})
            energy = np.array([energies[n] for n in names])
        total = energy.sum()
        share = energy / total if total > 0 and np.isfinite(total) else np.full(len(names), 1.0 / len(names))
        log_energy = np.log10(1.0 + np.maximum(energy, 0.0)) / 10.0

        unsent = np.zeros(len(names))
        # this env's last frame (BandwidthLimited says; a codec may serve several envs)
        sent = context.get("components_sent", getattr(self.codec, "last_allocation", None))
        if self._previous_coeffs is not None and isinstance(sent, Mapping):
            for i, n in enumerate(names):
                c = self._previous_coeffs[n]
                m = int(sent.get(n, 0))
                whole = float(np.sum(np.square(c)))
                unsent[i] = float(np.sum(np.square(c[m:]))) / whole if whole > 0 else 0.0

        ages = context.get("frame_age_steps") or {}
        age = np.array(
            [
                1.0
                if int(ages.get(n, 0)) < 0
                else min(int(ages.get(n, 0)), self.max_age_steps) / self.max_age_steps
                for n in names
            ]
        )
        per_view = np.stack([share, log_energy, self._previous_split, unsent, age], axis=1)

        history = (
            [*self._budgets[-(self.history_steps - 1) :], int(budget_bits)]
            if self.history_steps > 1
            else [int(budget_bits)]
        )
        budget = np.zeros(self.history_steps)
        budget[-len(history) :] = np.log2(1.0 + np.maximum(np.asarray(history, dtype=np.float64), 0.0)) / 16.0
        step = int(context.get("step", self._steps))
        self._pending = (int(budget_bits), coeffs)
        return {
            "budget": np.clip(budget, 0.0, 2.0).astype(np.float32),
            "step": np.array([min(max(step, 0) / self.max_steps, 1.0)], dtype=np.float32),
            "views": np.clip(per_view, 0.0, 2.0).astype(np.float32).ravel(),
        }

    def commit(self, split: Mapping[str, float] | None) -> None:
        """Record the split given to the last observed step (after :meth:`observe`; None: the codec's)."""
        if self._pending is None:
            raise RuntimeError("commit() before observe(): observe the step first")
        budget, coeffs = self._pending
        self._budgets = [*self._budgets[-(self.history_steps - 1) :], budget]
        self._previous_split = np.array([float((split or {}).get(n, 0.0)) for n in self.view_names])
        self._previous_coeffs = coeffs
        self._pending = None
        self._steps += 1


class LearnedAllocator:
    """A trained policy behind the :class:`Allocator` interface.

    Each step it builds :class:`AllocationObserver`'s observation from the views about to be sent
    and the link context, asks the policy for an action and maps it onto the simplex with
    :func:`action_to_split` (an action off the box is replaced, never passed on: counted in
    :attr:`invalid_actions`). Load a trained one with
    :func:`bwgym.agents.allocation.load_learned_allocator`.

    Args:
        policy: anything with ``act(obs) -> action`` (e.g. :class:`bwgym.agents.rl.RLAgent`),
            deterministic; ``reset()`` is called per episode when it has one.
        observer: builds the observation; its spec must be the one the policy was trained on.
        codec_split: the policy's action has a last "let the codec split" value
            (:func:`action_to_split`).
    """

    def __init__(self, policy: Any, observer: AllocationObserver, codec_split: bool = False) -> None:
        if not callable(getattr(policy, "act", None)):
            raise TypeError(f"policy is expected to have act(obs), got {type(policy).__name__}")
        self.policy = policy
        self.observer = observer
        self.codec_split = bool(codec_split)
        self.invalid_actions: dict[str, int] = dict.fromkeys(INVALID_ACTION_REASONS, 0)

    def __call__(
        self, views: Mapping[str, np.ndarray], budget_bits: int, info: Mapping[str, Any]
    ) -> dict[str, float] | None:
        """The policy's split for this step (None: it chose the codec's own split)."""
        obs = self.observer.observe(views, budget_bits, info)
        split, reason = action_to_split(self.policy.act(obs), self.observer.view_names, self.codec_split)
        if reason is not None:
            self.invalid_actions[reason] += 1
        self.observer.commit(split)
        return split

    def reset(self) -> None:
        """Start an episode (the observer's history; the policy's, when it has one)."""
        self.observer.reset()
        reset = getattr(self.policy, "reset", None)
        if callable(reset):
            reset()

    def __repr__(self) -> str:
        return f"LearnedAllocator(views={list(self.observer.view_names)})"


def make_allocator(
    spec: str | Mapping[str, float] | Allocator, views: Sequence[str] | None = None
) -> Allocator:
    """Build an allocator from a registered name, a dict of weights, or an instance.

    Args:
        spec: a name of :data:`~bwgym.common.registry.ALLOCATORS` that needs nothing from a
            scenario (``"dpca"``, ``"uniform"``, ``"proportional"`` on pixel energies: pass a
            :class:`ProportionalAllocator` built with the codec for latent energies);
            ``{view: weight}`` (a :class:`FixedAllocator`); or any object with
            ``__call__(views, budget_bits, info)`` and ``reset()``, returned as is.
        views: the view names it will be called with, to validate a dict of weights now.

    Raises:
        ValueError: an unknown name (with the registered ones), a name that needs a scenario's
            parts (``"oracle"``, ``"learned"``) or bad weights.
        TypeError: ``spec`` is none of the above.

    Example:
        >>> make_allocator("uniform")
        UniformAllocator()
        >>> make_allocator({"arm": 1, "side": 0})
        FixedAllocator({'arm': 1.0, 'side': 0.0})
    """
    if isinstance(spec, str):
        return ALLOCATORS.get(spec).build(BuildContext(), where=f"allocator {spec!r}")
    if isinstance(spec, Mapping):
        return FixedAllocator(spec, views=views)
    if isinstance(spec, Allocator):
        return spec
    raise TypeError(
        f"allocator is expected to be a registered name ({', '.join(ALLOCATORS.names())}), a dict of "
        f"weights or an Allocator (callable with reset()), got {type(spec).__name__}"
    )
