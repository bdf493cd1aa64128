"""Sender-side features of every candidate split: observation spec v2 of the allocation policies.

The spec-1 observation (:class:`~bwgym.envs.allocators.AllocationObserver`) summarises the views
a sender is about to send (energies, ages, budgets). It cannot see what a split *does* to this
frame: which view's quantisation happens to land badly, which view changed since the receiver's
frame. :class:`CandidateObserver` (spec 2) encodes the frame at every candidate split, as the
sender itself can (one analysis for all, :meth:`~bwgym.codecs.core.protocol.Codec.compress_splits`),
decodes each payload as the receiver would, and measures per candidate and view what the
receiver would lose, beside what it already holds::

    observer = CandidateObserver(codec)                  # a latent codec (NDPCA, DPCA)
    candidates = observer.observe(views, budget_bits, context)
    pick = ...                                           # a scorer on candidates.observation
    observer.commit(candidates.splits[pick])

Everything is built from the sender's inputs: its own views, the budget, its own encodes and
decodes, and the link context a sender has (step index, the receiver's frame ages that the
link's acknowledgements give, components of its last frame). It never reads the env's ``info``
(the true state) and holds no task agent; the tests check both.

The sender's record of the receiver's frames follows the acknowledgements: the frame of step
``s`` is what the receiver holds of a view once the context's ``frame_age_steps`` says the view
was captured at step ``s``. While the session header is still in flight (the first step or two
of an episode at ~100-300 bits per step) the frame actually sent is smaller than the candidate
encoded at the whole budget, so the record is approximate there (as is the oracle's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bwgym.envs.allocators import AllocationObserver, simplex_grid

__all__ = ["CandidateObserver", "CandidateSet", "held_frame_steps"]

#: Pixel differences are divided by this before they become features (an RMS of 64 reads 1).
PIXEL_SCALE = 64.0


@dataclass(frozen=True)
class CandidateSet:
    """One step's candidates at the sender.

    Attributes:
        splits: the candidate splits, one share per view (the observer's order).
        observation: the spec-2 observation: the spec-1 keys (``budget``, ``step``, ``views``)
            and ``candidates`` (C x F features, :attr:`CandidateObserver.FEATURES` per view then
            :attr:`CandidateObserver.PER_CANDIDATE`), ``code`` (the sender's latent code, the
            views' components concatenated) and ``candidate_codes`` (C x code: what the receiver
            would hold after each candidate; the held code for a candidate that sends nothing).
        fits: per candidate, whether its payload is non-empty and within the budget.
        payload_bits: per candidate, the bits of its payload (0 when empty).
    """

    splits: tuple[tuple[float, ...], ...]
    observation: dict[str, np.ndarray]
    fits: np.ndarray
    payload_bits: np.ndarray


def held_frame_steps(context: Mapping[str, Any], view_names: Sequence[str]) -> dict[str, int | None]:
    """The step whose frame the receiver holds per view, from the link context (None: nothing yet).

    ``frame_age_steps`` is counted from the context's ``step``; an age of -1 (or no context) is None.
    """
    step = context.get("step")
    ages = context.get("frame_age_steps") or {}
    out: dict[str, int | None] = {}
    for name in view_names:
        age = ages.get(name)
        out[name] = None if step is None or age is None or int(age) < 0 else int(step) - int(age)
    return out


class CandidateObserver:
    """Observation spec 2: spec 1 plus, per candidate split, what each view would lose.

    Per candidate and view (view-major, :attr:`FEATURES`):

    ===================  ==========================================================================
    ``share``            the view's share of the split
    ``components_sent``  latent components of the view in the candidate's payload / the view's rank
    ``unsent_energy``    the fraction of the view's latent energy in components the payload drops
                         (1 when nothing fits)
    ``code_error``       ``|z - z_held|^2 / |z|^2`` of the view's code ``z`` and the code the
                         receiver would hold after the candidate (quantisation included), <= 2
    ``pixel_error``      RMS of the receiver's frame after the candidate minus the sender's frame,
                         / 64, <= 2
    ``held_change``      RMS of the sender's frame minus the frame the receiver holds now, / 64
                         (the change since the receiver's frame; the same for every candidate)
    ``frame_age``        the receiver's frame age, ``min(age, max_age) / max_age`` (1: never shown)
    ``missed``           1 when the frame the sender committed last step has not reached the
                         receiver (lost, over budget or in flight)
    ``error_grid``       ``G x G`` mean absolute error of the receiver's frame after the candidate,
                         per image cell (row-major), / 64, <= 2: where in the view the error is
    ===================  ==========================================================================

    and per candidate (:attr:`PER_CANDIDATE`): ``fits`` (1 when the payload is non-empty and within
    the budget) and ``bits_used`` (payload bits / budget).

    Args:
        codec: a latent codec with one stream per view (``coefficients``, ``compress_splits``,
            ``decoded_coefficients``; NDPCA, DPCA).
        splits: the candidate splits, one share per view each; default :func:`simplex_grid`.
        levels: grid steps of the default candidates.
        history_steps, max_steps, max_age_steps: as :class:`AllocationObserver` (spec 1, whose
            observation this one extends).
        error_grid: ``G``, cells per image side of ``error_grid`` (1 to 8).

    Raises:
        TypeError: the codec is not a latent codec with one stream per view.
        ValueError: a split of the wrong length or off the simplex, or an argument out of range.
    """

    VERSION = 2
    FEATURES = (
        "share",
        "components_sent",
        "unsent_energy",
        "code_error",
        "pixel_error",
        "held_change",
        "frame_age",
        "missed",
    )
    PER_CANDIDATE = ("fits", "bits_used")

    def __init__(
        self,
        codec: Any,
        splits: Sequence[Sequence[float]] | None = None,
        levels: int = 4,
        history_steps: int = 8,
        max_steps: int = 50,
        max_age_steps: int = 10,
        error_grid: int = 3,
    ) -> None:
        names = tuple(getattr(codec, "view_names", ()))
        if (
            not all(callable(getattr(codec, a, None)) for a in ("coefficients", "decoded_coefficients"))
            or tuple(getattr(codec, "stream_names", ())) != names
        ):
            raise TypeError(
                f"candidate features need a latent codec with one stream per view (coefficients per view, "
                f"e.g. ndpca), got {getattr(codec, 'name', type(codec).__name__)!r}; use allocator "
                "'learned' or 'uniform' with this codec"
            )
        if (
            isinstance(error_grid, bool)
            or not isinstance(error_grid, (int, np.integer))
            or not 1 <= error_grid <= 8
        ):
            raise ValueError(f"error_grid is expected to be an integer in [1, 8], got {error_grid!r}")
        self.codec = codec
        self.view_names = names
        self.context = AllocationObserver(names, codec, history_steps, max_steps, max_age_steps)
        grid = simplex_grid(len(names), levels) if splits is None else splits
        self.splits: tuple[tuple[float, ...], ...] = tuple(self._as_split(s) for s in grid)
        if not self.splits:
            raise ValueError("expected at least one candidate split")
        self.error_grid = int(error_grid)
        self.ranks = tuple(int(r) for r in codec.latent_model.ranks)
        self.reset()

    def _as_split(self, split: Sequence[float]) -> tuple[float, ...]:
        arr = np.asarray(list(split), dtype=np.float64)
        if (
            arr.shape != (len(self.view_names),)
            or not np.all(np.isfinite(arr))
            or np.any(arr < 0)
            or arr.sum() <= 0
        ):
            raise ValueError(
                f"each candidate split is expected to give one finite share >= 0 per view "
                f"{list(self.view_names)}, not all 0, got {list(split)!r}"
            )
        return tuple(float(v) for v in arr / arr.sum())

    # -- the spec ---------------------------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        """Names of the ``candidates`` columns: per view (view-major), then per candidate."""
        cells = [f"error_grid_{i}" for i in range(self.error_grid**2)]
        per_view = [f"{v}.{f}" for v in self.view_names for f in (*self.FEATURES, *cells)]
        return per_view + list(self.PER_CANDIDATE)

    def spec(self) -> dict[str, Any]:
        """Plain JSON that identifies the observation: spec 1's fields, version 2, the candidates."""
        return {
            **self.context.spec(),
            "version": self.VERSION,
            "candidates": [list(s) for s in self.splits],
            "candidate_features": self.feature_names,
            "error_grid": self.error_grid,
            "code_size": list(self.ranks),
        }

    @property
    def observation_space(self) -> Any:
        """The ``Dict`` space of the observation (spec 1's keys plus the candidate keys)."""
        from gymnasium import spaces

        c, f, n = len(self.splits), len(self.feature_names), sum(self.ranks)
        return spaces.Dict(
            {
                **self.context.observation_space.spaces,
                "candidates": spaces.Box(0.0, 2.0, (c, f), np.float32),
                "code": spaces.Box(-np.inf, np.inf, (n,), np.float32),
                "candidate_codes": spaces.Box(-np.inf, np.inf, (c, n), np.float32),
            }
        )

    # -- per episode and per step ---------------------------------------------------------------------
    def reset(self) -> None:
        """Start an episode: the receiver holds zeros, nothing is pending."""
        self.context.reset()
        self._held_code = {n: np.zeros(r) for n, r in zip(self.view_names, self.ranks, strict=True)}
        self._held_frame: dict[str, np.ndarray] | None = None
        self._held_step: dict[str, int | None] = dict.fromkeys(self.view_names)
        #: step -> (frames, codes) committed then, until an acknowledgement says what arrived
        self._pending: dict[int, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = {}
        self._last_committed: int | None = None
        self._step = 0
        self._current: (
            tuple[int, list[dict[str, np.ndarray]], list[dict[str, np.ndarray]], np.ndarray] | None
        ) = None

    def _follow_receiver(self, context: Mapping[str, Any]) -> tuple[int, np.ndarray]:
        """Update the record of the receiver's frames from the context; ``(step, missed per view)``."""
        step = int(context.get("step", self._step))
        if "frame_age_steps" in context:
            held = held_frame_steps(context, self.view_names)
        else:  # no link context: every committed frame arrived
            held = {n: self._last_committed for n in self.view_names}
        for name, s in held.items():
            if s is not None and s != self._held_step[name] and s in self._pending:
                frames, codes = self._pending[s]
                self._held_frame[name] = frames[name]
                self._held_code[name] = codes[name]
                self._held_step[name] = s
        missed = np.array(
            [
                float(self._last_committed is not None and held[n] != self._last_committed)
                for n in self.view_names
            ]
        )
        oldest = min((s for s in self._held_step.values() if s is not None), default=None)
        self._pending = {s: v for s, v in self._pending.items() if oldest is None or s >= oldest}
        return step, missed

    def observe(
        self, views: Mapping[str, np.ndarray], budget_bits: int, context: Mapping[str, Any] | None = None
    ) -> CandidateSet:
        """Encode ``views`` at every candidate split and measure each (no side effect but a cache).

        ``context`` is :class:`~bwgym.envs.bandwidth.BandwidthLimited`'s allocator context (its
        ``step``, ``frame_age_steps`` and ``components_sent``; ``env_info`` is never read).
        """
        context = context or {}
        names, codec = self.view_names, self.codec
        if set(views) != set(names):
            raise ValueError(f"expected views {list(names)}, got {sorted(views)}")
        if self._held_frame is None:
            self._held_frame = {n: np.zeros_like(np.asarray(views[n])) for n in names}
        step, missed = self._follow_receiver(context)
        spec1 = self.context.observe(views, budget_bits, context)
        budget = int(budget_bits)
        code = {n: np.asarray(c, np.float64).ravel() for n, c in codec.coefficients(dict(views)).items()}
        allocations = [dict(zip(names, s, strict=True)) for s in self.splits]
        payloads = codec.compress_splits(dict(views), budget, allocations)
        fits = np.array([not p.is_empty and p.nbits <= budget for p in payloads])
        decoded = iter(codec.decompress_batch([p for p, ok in zip(payloads, fits, strict=True) if ok]))
        frames: list[dict[str, np.ndarray]] = []
        codes: list[dict[str, np.ndarray]] = []
        for payload, ok in zip(payloads, fits, strict=True):
            if ok:
                frames.append(dict(next(decoded)))
                codes.append(
                    {n: np.asarray(c, np.float64) for n, c in codec.decoded_coefficients(payload).items()}
                )
            else:  # nothing reaches the receiver: it keeps what it holds
                frames.append(dict(self._held_frame))
                codes.append(dict(self._held_code))
        ages = spec1["views"].reshape(len(names), -1)[:, AllocationObserver.FEATURES.index("frame_age")]
        held_change = [self._rms(views[n], self._held_frame[n]) for n in names]
        rows = []
        for split, payload, ok, frame, held in zip(self.splits, payloads, fits, frames, codes, strict=True):
            sent = codec.allocation_of(payload) if ok else dict.fromkeys(names, 0)
            row: list[float] = []
            for i, n in enumerate(names):
                z, energy = code[n], float(np.sum(np.square(code[n])))
                m = int(sent.get(n, 0))
                unsent = float(np.sum(np.square(z[m:]))) / energy if energy > 0 else 0.0
                error = float(np.sum(np.square(z - held[n]))) / energy if energy > 0 else 0.0
                row += [
                    split[i],
                    m / self.ranks[i],
                    unsent if ok else 1.0,
                    error,
                    self._rms(views[n], frame[n]),
                    held_change[i],
                    float(ages[i]),
                    missed[i],
                    *self._error_grid(views[n], frame[n]),
                ]
            row += [float(ok), payload.nbits / budget if ok and budget > 0 else 0.0]
            rows.append(row)
        self._current = (step, frames, codes, fits)
        observation = {
            **spec1,
            "candidates": np.clip(np.asarray(rows, np.float64), 0.0, 2.0).astype(np.float32),
            "code": np.concatenate([code[n] for n in names]).astype(np.float32),
            "candidate_codes": np.stack([np.concatenate([c[n] for n in names]) for c in codes]).astype(
                np.float32
            ),
        }
        bits = np.array([p.nbits if ok else 0 for p, ok in zip(payloads, fits, strict=True)], np.int64)
        return CandidateSet(self.splits, observation, fits, bits)

    def commit(self, split: Mapping[str, float] | Sequence[float] | int | None) -> None:
        """Record the candidate sent for the last observed step: its index, its split, or None (nothing).

        Raises:
            RuntimeError: before :meth:`observe`.
            ValueError: a split that is none of the candidates.
        """
        if self._current is None:
            raise RuntimeError("commit() before observe(): observe the step first")
        step, frames, codes, fits = self._current
        index = self._index(split)
        shares = None if index is None else dict(zip(self.view_names, self.splits[index], strict=True))
        self.context.commit(shares)
        if index is not None and fits[index]:
            self._pending[step] = (frames[index], codes[index])
            self._last_committed = step
        self._current = None
        self._step = step + 1

    def _index(self, split: Mapping[str, float] | Sequence[float] | int | None) -> int | None:
        if split is None or isinstance(split, (int, np.integer)):
            return None if split is None else int(split)
        values = [split[n] for n in self.view_names] if isinstance(split, Mapping) else list(split)
        target = np.asarray(self._as_split(values))
        for i, s in enumerate(self.splits):
            if np.allclose(s, target, atol=1e-9):
                return i
        raise ValueError(f"split {split!r} is none of the candidates {[list(s) for s in self.splits]}")

    # -- measures ---------------------------------------------------------------------------------------
    @staticmethod
    def _rms(a: np.ndarray, b: np.ndarray) -> float:
        diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
        return float(np.sqrt(np.mean(np.square(diff)))) / PIXEL_SCALE if diff.size else 0.0

    def _error_grid(self, a: np.ndarray, b: np.ndarray) -> list[float]:
        """Mean absolute error per cell of a ``G x G`` grid over the image (flat arrays: in G*G chunks)."""
        g = self.error_grid
        diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
        if diff.ndim < 2:
            chunks = np.array_split(diff.ravel(), g * g)
            return [float(c.mean()) / PIXEL_SCALE if c.size else 0.0 for c in chunks]
        rows = np.array_split(np.arange(diff.shape[0]), g)
        cols = np.array_split(np.arange(diff.shape[1]), g)
        return [
            float(diff[np.ix_(r, c)].mean()) / PIXEL_SCALE if r.size and c.size else 0.0
            for r in rows
            for c in cols
        ]

    def __repr__(self) -> str:
        return f"CandidateObserver(views={list(self.view_names)}, candidates={len(self.splits)})"
