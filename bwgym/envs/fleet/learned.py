"""The ``learned`` fleet allocator: a small scorer trained to divide the shared link.

* :class:`FleetObserver` - what a network scheduler knows before each step (the shared budget's
  history, and per member: active, age of its last delivered frame, recent drops, progress through
  its episode, the share it had and how much of it its codec filled); the observation of
  ``bwgym/AllocateFleet-v0`` (:mod:`bwgym.envs.fleet_allocation`), so a policy trained there sees
  the same numbers inside a scenario;
* :func:`scores_to_shares` - one score per member to shares (a softmax over the active members);
  :func:`action_to_shares` and :func:`scores_to_action` - the same through ``AllocateFleet-v0``'s
  bounded action, so a scorer and a policy acting in the env divide alike;
* :class:`FleetScorer` - ``w2 . tanh(W1 [f_i, g] + b1) + b2`` per member, the same weights for
  every member, so a scorer trained on one fleet size divides any other;
* :class:`FleetErrorModel` - each member's action error at a budget, predicted from the same
  features (fitted to the fleet oracle's candidate scores);
* :class:`LearnedFleetAllocator` (``learned``) - runs either from its checkpoint (written by
  ``bwgym train allocator --fleet``, :func:`bwgym.scenarios.fleet.distill_fleet_allocator`): an
  error model divides the link as the oracle does on its predicted errors.
"""

from __future__ import annotations

import collections
import math
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from bwgym.common.registry import BuildContext, InputError, register_fleet_allocator
from bwgym.envs.fleet.allocators import least_total, oracle_ladder
from bwgym.envs.fleet.wrapper import FleetState, equal_shares

__all__ = [
    "POLICY_FILE",
    "SCORE_SCALE",
    "FleetErrorModel",
    "FleetObserver",
    "FleetScorer",
    "LearnedFleetAllocator",
    "action_to_shares",
    "bits_per_member",
    "division_by_errors",
    "scores_to_action",
    "scores_to_shares",
    "serve_top",
]

#: The scorer's file in a training run folder (what a ``learned`` fleet allocator's checkpoint may name).
POLICY_FILE = "fleet_policy.ckpt"

#: An action of +-1 is a score of +-SCORE_SCALE: shares from e^-8 to 1 of the largest.
SCORE_SCALE = 4.0
#: Checkpoint kind of a trained scorer.
SCORER_KIND = "fleet_allocator/scorer"


def scores_to_shares(scores: Any, active: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Shares from one score per member: a softmax over the active members, 0 for the others.

    A score that is not finite gives equal shares (reason ``"non_finite"``); no active member
    gives all zeros.

    Example:
        >>> shares, _ = scores_to_shares([0.0, math.log(3.0), 5.0], np.array([True, True, False]))
        >>> shares.round(2).tolist()
        [0.25, 0.75, 0.0]
    """
    active = np.asarray(active, dtype=bool)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.shape != active.shape:
        raise ValueError(f"expected one score per member ({active.size}), got {s.size}")
    if not active.any():
        return np.zeros(active.size), None
    if not np.all(np.isfinite(s[active])):
        return equal_shares(active), "non_finite"
    z = np.where(active, s - s[active].max(), -np.inf)
    w = np.exp(z)
    return w / w.sum(), None


def scores_to_action(scores: Any, active: np.ndarray) -> np.ndarray:
    """The action in ``[-1, 1]`` whose shares (:func:`action_to_shares`) are the softmax of ``scores``.

    Scores are taken relative to the largest active one; those more than ``2 * SCORE_SCALE``
    below it are raised to that floor (a share below ``e^-8`` of the largest).
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    active = np.asarray(active, dtype=bool)
    top = s[active].max() if active.any() and np.all(np.isfinite(s[active])) else 0.0
    return np.clip((s - top) / SCORE_SCALE + 1.0, -1.0, 1.0)


def action_to_shares(action: Any, active: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Shares from an ``AllocateFleet-v0`` action: :func:`scores_to_shares` of ``SCORE_SCALE * action``.

    Values outside ``[-1, 1]`` are clipped (reason ``"out_of_bounds"``); a value that is not
    finite gives equal shares (``"non_finite"``).
    """
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    reason = None
    if np.all(np.isfinite(a)) and (np.any(a < -1.0) or np.any(a > 1.0)):
        a, reason = np.clip(a, -1.0, 1.0), "out_of_bounds"
    shares, invalid = scores_to_shares(SCORE_SCALE * a, active)
    return shares, invalid or reason


class FleetObserver:
    """What a network scheduler knows before a step: a ``Dict`` of float32 boxes in ``[0, 1]``.

    ===========  ==========  ================================================================
    ``budget``   ``(H,)``    ``log2(1 + bits) / 24`` of the last ``H`` shared budgets, this
                             step's last (0 before the round's first)
    ``members``  ``(N, F)``  per member: active; frame age ``min(age, max_age) / max_age`` (1
                             while a view shows nothing); drop rate of its last steps;
                             progress (steps / the episode limit); the share it had last step;
                             the part of last step's budget its codec filled; ``1 / active``;
                             and from its last step's report: the PSNR of the receiver's worst
                             view against the true one (``min(dB, 50) / 50``, 0 unknown), and
                             the task phase (``grasped``; lift ``min(lift_m / 0.08, 1)``)
    ===========  ==========  ================================================================

    The member terms come from what the sender holds after its last step (the link's
    acknowledgements, its own camera and gripper), so ``bwgym/AllocateFleet-v0`` observes them
    before its action and the ``learned`` allocator inside a scenario observes the same numbers.

    Args:
        num_members: N.
        history_steps: H.
        max_age_steps: frame ages at or above this read 1.
    """

    FEATURES = (
        "active",
        "frame_age",
        "drop_rate",
        "progress",
        "previous_share",
        "previous_fill",
        "equal_share",
        "psnr",
        "grasped",
        "lift",
    )
    VERSION = 2
    #: PSNR (dB) that reads 1; lift (m) that reads 1 (LocateLift's success height).
    PSNR_TOP_DB, LIFT_TOP_M = 50.0, 0.08
    #: ``log2(1 + budget bits)`` that reads 1 in ``budget`` (:func:`bits_per_member` reads it back).
    BUDGET_LOG2_TOP = 24.0

    def __init__(self, num_members: int, history_steps: int = 8, max_age_steps: int = 10) -> None:
        for label, value, top in (
            ("num_members", num_members, 10_000),
            ("history_steps", history_steps, 1_024),
            ("max_age_steps", max_age_steps, 10_000),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= top:
                raise ValueError(f"{label} is expected to be an integer in [1, {top}], got {value!r}")
        self.num_members = int(num_members)
        self.history_steps = int(history_steps)
        self.max_age_steps = int(max_age_steps)
        self.reset()

    @property
    def observation_space(self) -> spaces.Dict:
        """The ``Dict`` space of :meth:`observe`."""
        return spaces.Dict(
            {
                "budget": spaces.Box(0.0, 1.0, (self.history_steps,), np.float32),
                "members": spaces.Box(0.0, 1.0, (self.num_members, len(self.FEATURES)), np.float32),
            }
        )

    def spec(self) -> dict[str, Any]:
        """Plain JSON that identifies the observation (what a trained scorer records and a loader checks)."""
        return {
            "version": self.VERSION,
            "history_steps": self.history_steps,
            "max_age_steps": self.max_age_steps,
            "features": list(self.FEATURES),
        }

    def reset(self) -> None:
        """Start a round: no budgets seen."""
        self._budgets: collections.deque[int] = collections.deque(maxlen=self.history_steps)

    def observe(self, state: FleetState) -> dict[str, np.ndarray]:
        """The observation of ``state`` (records its budget in the history)."""
        if state.num_members != self.num_members:
            raise ValueError(
                f"the observer is built for {self.num_members} members, the fleet has {state.num_members}"
            )
        self._budgets.append(int(state.budget_bits))
        budget = np.zeros(self.history_steps)
        history = (
            np.log2(1.0 + np.maximum(np.asarray(self._budgets, dtype=np.float64), 0.0)) / self.BUDGET_LOG2_TOP
        )
        budget[-len(history) :] = history
        active = state.active.astype(np.float64)
        age = np.where(state.frame_age_steps < 0, self.max_age_steps, state.frame_age_steps)
        limit = state.max_episode_steps or 50
        previous = state.fleet.fleet_info if state.fleet is not None else {}
        shares = np.asarray(previous.get("shares", np.zeros(self.num_members)), dtype=np.float64)
        budgets = np.asarray(previous.get("budgets", np.zeros(self.num_members)), dtype=np.float64)
        bits = np.asarray(previous.get("bits_sent", np.zeros(self.num_members)), dtype=np.float64)
        fill = np.divide(bits, budgets, out=np.zeros(self.num_members), where=budgets > 0)
        k = max(1, int(active.sum()))
        reports = self._reports(state)
        members = np.stack(
            [
                active,
                np.minimum(age, self.max_age_steps) / self.max_age_steps,
                state.drop_rate,
                np.minimum(state.episode_steps / limit, 1.0),
                shares,
                fill,
                active / k,
                *reports.T,
            ],
            axis=1,
        )
        return {
            "budget": np.clip(budget, 0.0, 1.0).astype(np.float32),
            "members": np.clip(members, 0.0, 1.0).astype(np.float32),
        }

    def _reports(self, state: FleetState) -> np.ndarray:
        """``(N, 3)``: PSNR, grasped and lift of each member's last finished step (0 when unknown).

        Read from the fleet's last infos (``state.env_infos`` of a send are its raw infos, before
        the receiver's PSNR exists), so an observation before a step and one inside it agree.
        """
        infos = state.fleet.env_infos if state.fleet is not None else state.env_infos
        out = np.zeros((self.num_members, 3))
        for i, info in enumerate(infos):
            psnr = [float(v) for v in (info.get("distortion") or {}).values()]
            if psnr:
                worst = min(psnr)
                out[i, 0] = 1.0 if not math.isfinite(worst) else max(worst, 0.0) / self.PSNR_TOP_DB
            out[i, 1] = float(bool(info.get("grasped", False)))
            out[i, 2] = max(float(info.get("lift_m", 0.0) or 0.0), 0.0) / self.LIFT_TOP_M
        return np.minimum(out, 1.0)


class FleetScorer:
    """A score per member from its features and the shared ones: ``w2 . tanh(W1 [f_i, g] + b1) + b2``.

    The same weights score every member, so a scorer trained on one fleet size divides any other.
    With ``serve_fraction`` the division is not the softmax of the scores: the
    ``ceil(fraction * k)`` best-scored of the ``k`` active members share the step equally
    (:func:`serve_top`), a learned need ranking like the ``state`` rule's ``top_k``. With
    ``serve_mid_bits`` the fraction depends on the bits per active member ``b`` (:meth:`fraction_at`):
    ``1 - (1 - serve_fraction) * sigmoid(serve_slope * ln(b / serve_mid_bits))``, so it tends to
    ``serve_fraction`` when bits are plentiful and to 1 (equal shares) when they are scarce, where
    starving a robot costs more than a thin share does.

    Args:
        weights: ``w1`` (hidden, F + H), ``b1`` (hidden,), ``w2`` (hidden,), ``b2`` (1,).
        spec: the :meth:`FleetObserver.spec` it was trained on.
        serve_fraction: 0: softmax shares; in (0, 1]: the best-scored fraction of the active
            members shares the step (when bits are plentiful, with ``serve_mid_bits``).
        serve_mid_bits: 0: the fraction is ``serve_fraction`` at any budget (checkpoints written
            before the budget term load so); > 0: bits per member where the fraction is halfway
            between ``serve_fraction`` and 1.
        serve_slope: how fast (per unit of ``ln`` bits per member) the fraction moves, >= 0.
    """

    def __init__(
        self,
        weights: dict[str, np.ndarray],
        spec: dict[str, Any],
        serve_fraction: float = 0.0,
        serve_mid_bits: float = 0.0,
        serve_slope: float = 0.0,
    ) -> None:
        if not (math.isfinite(serve_fraction) and 0.0 <= serve_fraction <= 1.0):
            raise ValueError(
                f"serve_fraction is expected in [0, 1] (0: softmax shares), got {serve_fraction!r}"
            )
        for label, value in (("serve_mid_bits", serve_mid_bits), ("serve_slope", serve_slope)):
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(
                    f"{label} is expected to be finite and >= 0 (0: a constant fraction), got {value!r}"
                )
        self.serve_fraction = float(serve_fraction)
        self.serve_mid_bits, self.serve_slope = float(serve_mid_bits), float(serve_slope)
        self.w1 = np.asarray(weights["w1"], dtype=np.float64)
        self.b1 = np.asarray(weights["b1"], dtype=np.float64).reshape(-1)
        self.w2 = np.asarray(weights["w2"], dtype=np.float64).reshape(-1)
        self.b2 = float(np.asarray(weights["b2"], dtype=np.float64).reshape(-1)[0])
        self.spec = dict(spec)
        inputs = len(spec["features"]) + int(spec["history_steps"])
        if self.w1.shape != (self.b1.size, inputs) or self.w2.size != self.b1.size:
            raise ValueError(
                f"scorer weights of shapes {self.w1.shape}, {self.b1.shape}, {self.w2.shape} do not fit "
                f"{inputs} inputs (features + history_steps of its spec)"
            )

    @staticmethod
    def inputs(obs: dict[str, np.ndarray]) -> np.ndarray:
        """``(N, F + H)``: each member's features next to the shared budget history."""
        members = np.asarray(obs["members"], dtype=np.float64)
        budget = np.broadcast_to(
            np.asarray(obs["budget"], dtype=np.float64), (members.shape[0], obs["budget"].size)
        )
        return np.concatenate([members, budget], axis=1)

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """One score per member."""
        return np.tanh(self.inputs(obs) @ self.w1.T + self.b1) @ self.w2 + self.b2

    def fraction_at(self, bits_per_member: float) -> float:
        """The fraction of the active members served at ``bits_per_member`` (``serve_fraction`` without a budget term).

        Example:
            >>> w = {"w1": np.zeros((1, 18)), "b1": [0.0], "w2": [1.0], "b2": [0.0]}
            >>> spec = FleetObserver(2).spec()
            >>> s = FleetScorer(w, spec, serve_fraction=0.5, serve_mid_bits=100.0, serve_slope=4.0)
            >>> [round(s.fraction_at(b), 2) for b in (25.0, 100.0, 400.0)]
            [1.0, 0.75, 0.5]
        """
        if self.serve_mid_bits <= 0.0:
            return self.serve_fraction
        z = self.serve_slope * math.log(max(bits_per_member, 1e-9) / self.serve_mid_bits)
        return 1.0 - (1.0 - self.serve_fraction) / (1.0 + math.exp(-min(max(z, -50.0), 50.0)))

    def division(self, obs: dict[str, np.ndarray], active: np.ndarray) -> np.ndarray:
        """Scores whose softmax is the scorer's division: :func:`serve_top` at :meth:`fraction_at`, or raw scores.

        The bits per member are read from the observation (this step's shared budget over the
        active members), so a search on ``AllocateFleet-v0`` and a scenario divide alike.
        """
        scores = self(obs)
        if self.serve_fraction <= 0.0:
            return scores
        return serve_top(scores, active, self.fraction_at(bits_per_member(obs, active)))

    def save(self, path: Any, config: dict[str, Any] | None = None) -> Any:
        """Write the scorer in the project's checkpoint format."""
        from bwgym.common.checkpoint import save_checkpoint

        state = {"w1": self.w1, "b1": self.b1, "w2": self.w2, "b2": np.array([self.b2])}
        metadata = {
            "env_id": None,
            "observer": self.spec,
            "serve_fraction": self.serve_fraction,
            "serve_mid_bits": self.serve_mid_bits,
            "serve_slope": self.serve_slope,
            "config": config or {},
        }
        return save_checkpoint(path, SCORER_KIND, state, metadata)

    @classmethod
    def load(cls, path: Any) -> FleetScorer:
        """Read a scorer written by :meth:`save`.

        Raises:
            CheckpointError: not a fleet scorer checkpoint.
            ValueError: an observer of another version or weights that do not fit it.
        """
        policy = _load_policy(Path(path))
        if not isinstance(policy, cls):
            raise ValueError(f"{path}: a fleet error model, not a scorer; load it with LearnedFleetAllocator")
        return policy


class FleetErrorModel:
    """Each member's action error at a budget, predicted from what the scheduler observes.

    ``e_i(b) = MLP([f_i, g, log2(1 + b) / 16])``: the member's features ``f_i`` and the shared
    budget history ``g`` (:meth:`FleetScorer.inputs`) beside the bits ``b`` it would get; tanh
    hidden layers, the same weights for every member (so it serves any fleet size). It is fitted
    to the fleet oracle's candidate scores (its members' action distances at each budget of its
    ladder), and :class:`LearnedFleetAllocator` then divides the link as the oracle does, on the
    predicted errors instead of the measured ones.

    Args:
        layers: ``[(w, b), ...]``: weight ``(out, in)`` and bias ``(out,)`` per layer, the last
            with one output.
        spec: the :meth:`FleetObserver.spec` it was trained on.
        units: the oracle's division of the budget (:class:`~bwgym.envs.fleet.FleetOracleOptions`).
    """

    #: Checkpoint kind.
    KIND = "fleet_allocator/error_model"
    #: ``log2(1 + bits)`` of this many bits reads 1.
    BITS_LOG2_TOP = 16.0

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]], spec: dict[str, Any], units: int) -> None:
        self.layers = [
            (np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64).reshape(-1)) for w, b in layers
        ]
        self.spec, self.units = dict(spec), int(units)
        inputs = len(spec["features"]) + int(spec["history_steps"]) + 1
        width = inputs
        for j, (w, b) in enumerate(self.layers):
            if w.shape != (b.size, width):
                raise ValueError(
                    f"error model layer {j} has weights {w.shape} and bias {b.shape}; expected ({b.size}, {width}) "
                    f"({inputs} inputs: features + history_steps of its spec + bits)"
                )
            width = b.size
        if width != 1:
            raise ValueError(f"the error model's last layer has {width} outputs; expected 1")

    def __call__(self, obs: dict[str, np.ndarray], bits: Any) -> np.ndarray:
        """``(N, len(bits))``: each member's predicted action error at each budget in ``bits``."""
        return self.predict(FleetScorer.inputs(obs), bits)

    @classmethod
    def design(cls, inputs: np.ndarray, bits: Any) -> np.ndarray:
        """``(N * M, F + H + 1)``: each row of ``inputs`` beside each of its ``M`` budgets' bit feature.

        ``bits`` is ``(M,)`` (the same budgets for every row) or ``(N, M)``.
        """
        x = np.asarray(inputs, dtype=np.float64)
        bits = np.broadcast_to(np.asarray(bits, dtype=np.float64), (x.shape[0], np.shape(bits)[-1]))
        feature = np.log2(1.0 + np.maximum(bits, 0.0)) / cls.BITS_LOG2_TOP
        return np.concatenate([np.repeat(x, bits.shape[1], axis=0), feature.reshape(-1, 1)], axis=1)

    def predict(self, inputs: np.ndarray, bits: Any) -> np.ndarray:
        """``(N, M)``: predicted errors of scorer inputs (:meth:`FleetScorer.inputs` rows) at ``bits``."""
        h = self.design(inputs, bits)
        for j, (w, b) in enumerate(self.layers):
            h = h @ w.T + b
            if j < len(self.layers) - 1:
                h = np.tanh(h)
        return h.reshape(len(inputs), -1)

    def save(self, path: Any, config: dict[str, Any] | None = None) -> Any:
        """Write the model in the project's checkpoint format."""
        from bwgym.common.checkpoint import save_checkpoint

        state = {f"{k}{j}": v for j, (w, b) in enumerate(self.layers) for k, v in (("w", w), ("b", b))}
        metadata = {"env_id": None, "observer": self.spec, "units": self.units, "config": config or {}}
        return save_checkpoint(path, self.KIND, state, metadata)

    @classmethod
    def from_checkpoint(cls, ckpt: Any) -> FleetErrorModel:
        """The model of a loaded checkpoint (:func:`~bwgym.common.checkpoint.load_checkpoint`)."""
        count = len([k for k in ckpt.state if k.startswith("w")])
        layers = [(ckpt.state[f"w{j}"], ckpt.state[f"b{j}"]) for j in range(count)]
        return cls(layers, ckpt.metadata["observer"], int(ckpt.metadata.get("units", 8)))


def _load_policy(path: Path) -> FleetScorer | FleetErrorModel:
    """A scorer or an error model from its checkpoint, its observer checked against this bwgym's."""
    from bwgym.common.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path, kind=(SCORER_KIND, FleetErrorModel.KIND))
    spec = ckpt.metadata.get("observer") or {}
    if spec.get("version") != FleetObserver.VERSION or spec.get("features") != list(FleetObserver.FEATURES):
        raise ValueError(
            f"{path}: a fleet allocator for observer {spec.get('version')!r} with features {spec.get('features')}; "
            f"this bwgym observes version {FleetObserver.VERSION} {list(FleetObserver.FEATURES)}: train it again"
        )
    if ckpt.kind == FleetErrorModel.KIND:
        return FleetErrorModel.from_checkpoint(ckpt)
    meta = ckpt.metadata
    return FleetScorer(
        ckpt.state,
        spec,
        float(meta.get("serve_fraction", 0.0)),
        float(meta.get("serve_mid_bits", 0.0)),  # absent before the budget term: a constant fraction
        float(meta.get("serve_slope", 0.0)),
    )


def bits_per_member(obs: dict[str, np.ndarray], active: np.ndarray) -> float:
    """Bits per active member this step: the shared budget over the active members, read back from a :class:`FleetObserver` observation."""
    top = FleetObserver.BUDGET_LOG2_TOP
    budget_bits = 2.0 ** (top * float(np.asarray(obs["budget"]).reshape(-1)[-1])) - 1.0
    return budget_bits / max(1, int(np.count_nonzero(active)))


def serve_top(scores: Any, active: np.ndarray, fraction: float) -> np.ndarray:
    """Scores that serve the ``ceil(fraction * k)`` best-scored active members equally: 0 for them, -inf else.

    Ties go to the lower index; ``fraction * k`` less than 1e-6 above a whole number counts as that
    number (rounding).

    Example:
        >>> serve_top([0.3, 2.0, -1.0, 0.5], np.array([True, True, True, False]), 0.5).tolist()
        [0.0, 0.0, -inf, -inf]
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    idx = np.flatnonzero(active)
    out = np.full(s.size, -np.inf)
    keep = max(1, math.ceil(fraction * idx.size - 1e-6)) if idx.size else 0
    order = sorted(idx, key=lambda i: (-s[i], i))
    out[order[:keep]] = 0.0
    return out


@register_fleet_allocator(
    "learned",
    description="a trained fleet policy (bwgym train allocator --fleet): the oracle's division on "
    "predicted action errors, or a softmax of scores",
    uses=("checkpoint",),
)
class LearnedFleetAllocator:
    """A trained policy behind the fleet allocator interface.

    With a :class:`FleetErrorModel` (what ``bwgym train allocator --fleet`` writes) it predicts
    each active member's action error at each budget of the oracle's ladder (0, 1, 2, 4, ...
    ``units`` parts of the shared budget, and the equal share) and keeps the division of least
    predicted total error, equal shares on a tie: the fleet oracle's rule
    (:class:`~bwgym.envs.fleet.FleetOracle`) without running the agent. With a
    :class:`FleetScorer`, the softmax of its scores. Either way the shares go through
    ``AllocateFleet-v0``'s action (:func:`scores_to_action`, :func:`action_to_shares`), so the
    policy divides inside a scenario as it would acting in the env. A round's first send (the
    reset frames) is divided equally and not observed, as in ``bwgym/AllocateFleet-v0``.

    Args:
        policy: the trained model.
    """

    def __init__(self, policy: FleetScorer | FleetErrorModel) -> None:
        self.policy = policy
        self.observer: FleetObserver | None = None
        #: Steps whose scores were not finite (equal shares were sent).
        self.invalid_actions = 0

    @property
    def scorer(self) -> FleetScorer | FleetErrorModel:
        """The policy (the name earlier versions used)."""
        return self.policy

    @classmethod
    def from_context(cls, context: BuildContext, options: None) -> LearnedFleetAllocator:
        """The registry's builder: the policy of the scenario's checkpoint (a file or its run folder)."""
        if not context.checkpoint:
            raise InputError(
                "checkpoint",
                "required for the learned fleet allocator: the folder written by "
                "`bwgym train allocator --fleet` or its fleet_policy.ckpt",
            )
        path = Path(context.checkpoint)
        return cls(_load_policy(path / POLICY_FILE if path.is_dir() else path))

    def reset(self) -> None:
        """Start a round: the observer's history."""
        if self.observer is not None:
            self.observer.reset()

    def scores(self, state: FleetState, obs: dict[str, np.ndarray]) -> np.ndarray:
        """One score per member: the scorer's, or the log of the error model's division."""
        if isinstance(self.policy, FleetScorer):
            return self.policy.division(obs, state.active)
        return np.log(np.maximum(division_by_errors(self.policy, obs, state), 1e-300))

    def __call__(self, state: FleetState) -> np.ndarray:
        """The policy's shares of this step."""
        if state.step == 0:
            return equal_shares(state.active)
        if self.observer is None or self.observer.num_members != state.num_members:
            spec = self.policy.spec
            self.observer = FleetObserver(
                state.num_members, int(spec["history_steps"]), int(spec["max_age_steps"])
            )
        obs = self.observer.observe(state)
        action = scores_to_action(self.scores(state, obs), state.active)
        shares, reason = action_to_shares(action, state.active)  # the env's mapping of an action
        self.invalid_actions += reason is not None
        return shares

    def __repr__(self) -> str:
        return f"LearnedFleetAllocator({type(self.policy).__name__}, history_steps={self.policy.spec['history_steps']})"


def division_by_errors(model: FleetErrorModel, obs: dict[str, np.ndarray], state: FleetState) -> np.ndarray:
    """Shares of least predicted total error (the fleet oracle's rule on ``model``'s errors).

    Zeros for members that get nothing; equal shares when the division predicts no less error.
    """
    idx = np.flatnonzero(state.active)
    budget, units = int(state.budget_bits), model.units
    equal = equal_shares(state.active)
    if not idx.size or budget <= 0:
        return equal
    ladder = oracle_ladder(units)
    bits = [budget * u // units for u in ladder] + [budget // idx.size]
    predicted = model(obs, bits)[idx]
    parts, best = least_total({u: predicted[:, j] for j, u in enumerate(ladder)}, ladder, units)
    if float(predicted[:, -1].sum()) <= best:
        return equal
    shares = np.zeros(state.num_members)
    shares[idx] = np.asarray(parts, dtype=np.float64) / units
    return shares
