"""Fleet allocators: how the shared link's budget is divided among a fleet's members each step.

Every one is registered in :data:`~bwgym.common.registry.FLEET_ALLOCATORS` (``fleet.allocator.name``
in a scenario; ``FLEET_ALLOCATORS.entries()`` lists them with their options) and divides among the
active members only, so a member whose episode ended frees its share:

* ``equal`` - the same share for every active member;
* ``proportional`` - shares proportional to each member's request (the bits its codec would send
  of this step's views given the whole link);
* ``max_min_fair`` - max-min fairness over the requests (water-filling: no member can get more
  without one that has less getting less); what a request does not use is split equally;
* ``state`` - shares proportional to a need a sender can know: the age of the member's last
  delivered frame, its recent drops and its task phase (an info key such as ``grasped``); with
  ``top_k`` only the k neediest members share the step (a round robin when the link cannot feed
  everyone);
* ``oracle`` - a reference that runs the task agent at the sender: it scores each member's action
  error (L2 against its action on the true views, as the view oracle
  :class:`~bwgym.envs.allocators.OracleAllocator` does) on a ladder of budgets, and keeps the
  division of the budget into ``units`` parts with the least total error (or equal shares when
  those score no worse);
* ``learned`` - a scorer trained on ``bwgym/AllocateFleet-v0`` (:mod:`bwgym.envs.fleet.learned`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bwgym.common.registry import BuildContext, register_fleet_allocator
from bwgym.envs.fleet.wrapper import FleetState, equal_shares

__all__ = [
    "EqualShare",
    "FleetOracle",
    "FleetOracleOptions",
    "MaxMinFair",
    "ProportionalShare",
    "StateRule",
    "StateRuleOptions",
    "least_total",
    "oracle_ladder",
    "water_fill",
]


class _Stateless:
    def reset(self) -> None:
        """Stateless: nothing to do."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@register_fleet_allocator("equal", description="the same share for every active member")
class EqualShare(_Stateless):
    """``1 / k`` of the link for each of the ``k`` active members."""

    def __call__(self, state: FleetState) -> np.ndarray:
        """Equal shares over the active members."""
        return equal_shares(state.active)


@register_fleet_allocator(
    "proportional",
    description="shares proportional to each member's request (its codec's bits given the whole link)",
)
class ProportionalShare(_Stateless):
    """Each active member's share is its request over the sum of requests (equal when all are 0)."""

    def __call__(self, state: FleetState) -> np.ndarray:
        """Shares proportional to :meth:`FleetState.requests`."""
        requests = np.where(state.active, state.requests(), 0.0)
        total = float(requests.sum())
        return requests / total if total > 0 else equal_shares(state.active)


def water_fill(capacity: float, demands: Sequence[float]) -> np.ndarray:
    """Max-min fair amounts of ``capacity`` for ``demands``: each gets its demand or the common level.

    Example:
        >>> water_fill(10, [2, 8, 8]).tolist()
        [2.0, 4.0, 4.0]
        >>> water_fill(10, [1, 2]).tolist()
        [1.0, 2.0]
    """
    demands = np.asarray(demands, dtype=np.float64)
    out = np.zeros_like(demands)
    left, todo = float(capacity), len(demands)
    for i in np.argsort(demands, kind="stable"):
        level = left / todo
        out[i] = min(float(demands[i]), level)
        left -= out[i]
        todo -= 1
    return out


@register_fleet_allocator(
    "max_min_fair", description="max-min fair shares of the requests; what they leave is split equally"
)
class MaxMinFair(_Stateless):
    """Water-filling over the active members' requests; the surplus is split equally among them.

    A member whose request is below the common level gets its request; the others share the rest
    equally. When every request fits, what is left goes equally to all active members (a codec
    uses only what it needs).
    """

    def __call__(self, state: FleetState) -> np.ndarray:
        """Max-min fair shares of :meth:`FleetState.requests`."""
        budget = state.budget_bits
        active = state.active
        if budget <= 0 or not active.any():
            return equal_shares(active)
        idx = np.flatnonzero(active)
        amounts = np.zeros(state.num_members)
        amounts[idx] = water_fill(budget, state.requests()[idx])
        amounts[idx] += max(0.0, budget - float(amounts.sum())) / len(idx)
        shares = amounts / budget
        total = float(shares.sum())
        return shares / total if total > 1.0 else shares


@dataclass(frozen=True)
class StateRuleOptions:
    """Options of the ``state`` fleet allocator: a member's need is ``1 + `` the weighted terms.

    Attributes:
        age_weight: weight of the member's frame age (``min(age, max_age_steps) / max_age_steps``;
            a view never delivered counts as ``max_age_steps``).
        drop_weight: weight of the member's recent drop rate.
        phase_key: an env info key (a bool or a number in [0, 1]) marking the task phase to favour,
            e.g. ``grasped`` on LocateLift; empty: no phase term.
        phase_weight: weight of that phase value.
        max_age_steps: frame ages at or above this count fully.
        top_k: 0: every active member gets a share in proportion to its need; k: only the k
            neediest active members share the step (ties: the lower index).
    """

    age_weight: float = 1.0
    drop_weight: float = 1.0
    phase_key: str = ""
    phase_weight: float = 0.0
    max_age_steps: int = 10
    top_k: int = 0

    def __post_init__(self) -> None:
        for name in ("age_weight", "drop_weight", "phase_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} is expected to be finite and >= 0, got {value!r}")
        if not 1 <= self.max_age_steps <= 100_000:
            raise ValueError(f"max_age_steps is expected in [1, 100000], got {self.max_age_steps!r}")
        if self.top_k < 0:
            raise ValueError(f"top_k is expected to be >= 0 (0: every active member), got {self.top_k!r}")


@register_fleet_allocator(
    "state",
    description="shares by a need the sender knows: frame age, recent drops, task phase (top_k: the neediest only)",
    options=StateRuleOptions,
)
class StateRule(_Stateless):
    """Shares proportional to each active member's need (see :class:`StateRuleOptions`).

    Example:
        >>> import numpy as np
        >>> from bwgym.envs.fleet.wrapper import FleetState
        >>> state = FleetState(800, 2e4, 3, np.array([True, True, False]), [{}, {}, None],
        ...                    np.array([0, 10, 0]), np.zeros(3), np.zeros(3, int), 50, [{}, {}, {}])
        >>> StateRule(StateRuleOptions(drop_weight=0.0))(state).tolist()
        [0.3333333333333333, 0.6666666666666666, 0.0]
    """

    def __init__(self, options: StateRuleOptions | None = None) -> None:
        self.options = options or StateRuleOptions()

    @classmethod
    def from_context(cls, context: BuildContext, options: StateRuleOptions | None) -> StateRule:
        """The registry's builder: the options alone."""
        return cls(options)

    def needs(self, state: FleetState) -> np.ndarray:
        """Each member's need (0 for an inactive one)."""
        o = self.options
        ages = np.where(state.frame_age_steps < 0, o.max_age_steps, state.frame_age_steps)
        need = 1.0 + o.age_weight * np.minimum(ages, o.max_age_steps) / o.max_age_steps
        need = need + o.drop_weight * state.drop_rate
        if o.phase_key:
            phase = [float(np.clip(float(info.get(o.phase_key, 0.0)), 0.0, 1.0)) for info in state.env_infos]
            need = need + o.phase_weight * np.asarray(phase)
        return np.where(state.active, need, 0.0)

    def __call__(self, state: FleetState) -> np.ndarray:
        """Shares proportional to :meth:`needs` (of the ``top_k`` neediest when set)."""
        need = self.needs(state)
        k = self.options.top_k
        if k and np.count_nonzero(need) > k:
            order = sorted(np.flatnonzero(need), key=lambda i: (-need[i], i))
            keep = np.zeros(len(need), dtype=bool)
            keep[order[:k]] = True
            need = np.where(keep, need, 0.0)
        total = float(need.sum())
        return need / total if total > 0 else equal_shares(state.active)

    def __repr__(self) -> str:
        return f"StateRule({self.options})"


@dataclass(frozen=True)
class FleetOracleOptions:
    """Options of the ``oracle`` fleet allocator.

    Attributes:
        units: the budget is divided in this many equal parts; each member is scored at 0, 1, 2,
            4, ... parts up to all of them, and the division with the least total error is kept.
    """

    units: int = 8

    def __post_init__(self) -> None:
        if not 1 <= self.units <= 64:
            raise ValueError(f"units is expected to be an integer in [1, 64], got {self.units!r}")


@register_fleet_allocator(
    "oracle",
    description="per step the division (in `units` parts, or equal) with the least total action error",
    options=FleetOracleOptions,
)
class FleetOracle:
    """Per step, the division of the link whose decoded views move the members' actions least.

    For each active member it codes this step's views at each budget of a ladder (0, 1, 2, 4, ...
    ``units`` parts of the shared budget, and the equal share) with the codec's own split, shows the
    task agent what the member's receiver would then display (held frames where nothing arrives),
    and scores the L2 distance of the agent's action to its action on the true views. A dynamic
    programme over the members then picks the parts per member (summing to at most ``units``) with
    the least total distance; equal shares win when they score no worse. It sees nothing of the
    future and ignores session headers and link losses: an upper reference for a one-step
    criterion, which a sender holding the frozen agent could run at
    ``(2 + len(ladder)) * k`` agent calls and ``(1 + len(ladder)) * k`` encodes per step.
    :attr:`last_scores` holds the two totals of the last step.

    Args:
        agent: the frozen, memoryless task agent (``act(obs)``; ``act_batch`` is used when present).
        options: :class:`FleetOracleOptions`.
    """

    def __init__(self, agent: Any, options: FleetOracleOptions | None = None) -> None:
        if not callable(getattr(agent, "act", None)):
            raise TypeError(f"agent is expected to have act(obs), got {type(agent).__name__}")
        self.agent = agent
        self.options = options or FleetOracleOptions()
        units = self.options.units
        self.ladder: list[int] = oracle_ladder(units)
        self.last_scores: dict[str, float] = {}
        #: The last step's candidate scores: ``members`` (the active indices), ``bits`` (per
        #: candidate budget: the ladder's, then the equal share), ``errors`` (candidates x
        #: members: each member's action distance at that budget) and ``served`` (who got bits);
        #: what a learned allocator fits.
        self.last_candidates: dict[str, np.ndarray] = {}

    @classmethod
    def from_context(cls, context: BuildContext, options: FleetOracleOptions | None) -> FleetOracle:
        """The registry's builder: a fresh instance of the scenario's agent."""
        if context.make_agent is None:
            raise ValueError(
                "the fleet oracle runs the task agent: build it with a context that has make_agent"
            )
        return cls(context.make_agent(), options)

    def reset(self) -> None:
        """Forget the last step's scores."""
        self.last_scores = {}
        self.last_candidates = {}

    def _actions(self, observations: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
        if hasattr(self.agent, "act_batch") and len(observations) > 1:
            stacked = {k: np.stack([o[k] for o in observations]) for k in observations[0]}
            return [np.asarray(a, dtype=np.float64) for a in self.agent.act_batch(stacked)]
        return [np.asarray(self.agent.act(o), dtype=np.float64) for o in observations]

    def _errors(self, state: FleetState, idx: list[int], budgets: list[int]) -> np.ndarray:
        """Each member's action distance when it is sent ``budgets`` bits (0: it holds its frames)."""
        fleet = state.fleet
        views = [state.views[i] for i in idx]
        send = [j for j, b in enumerate(budgets) if b > 0]
        decoded: list[dict[str, np.ndarray]] = [{} for _ in idx]
        if send:
            members = [idx[j] for j in send]
            payloads = fleet.compress_members(members, [views[j] for j in send], [budgets[j] for j in send])
            for j, d in zip(send, fleet.decompress_members(members, payloads), strict=True):
                decoded[j] = d  # {} when even the codec's lowest rate did not fit: the member holds
        shown = [{**views[j], **fleet.shown_views(i), **decoded[j]} for j, i in enumerate(idx)]
        actions = self._actions(shown)
        return np.array([float(np.linalg.norm(a - c)) for a, c in zip(actions, self._clean, strict=True)])

    def __call__(self, state: FleetState) -> np.ndarray:
        """The division with the least total action distance (equal shares on a tie)."""
        idx = [int(i) for i in np.flatnonzero(state.active)]
        equal = equal_shares(state.active)
        budget = int(state.budget_bits)
        self.last_scores, self.last_candidates = {}, {}
        if not idx or budget <= 0:
            return equal
        units = self.options.units
        self._clean = self._actions([dict(state.views[i]) for i in idx])
        errors = {u: self._errors(state, idx, [budget * u // units] * len(idx)) for u in self.ladder}
        equal_errors = self._errors(state, idx, [budget // len(idx)] * len(idx))
        equal_error = float(equal_errors.sum())
        parts, best = least_total(errors, self.ladder, units)
        self.last_scores = {"equal": equal_error, "division": best}
        self.last_candidates = {
            "members": np.asarray(idx, dtype=np.int64),
            "bits": np.array([budget * u // units for u in self.ladder] + [budget // len(idx)], np.int64),
            "errors": np.stack([errors[u] for u in self.ladder] + [equal_errors]),
            "served": np.asarray(parts) > 0 if equal_error > best else np.ones(len(idx), bool),
        }
        if equal_error <= best:
            return equal
        shares = np.zeros(state.num_members)
        shares[idx] = np.asarray(parts, dtype=np.float64) / units
        return shares

    def __repr__(self) -> str:
        return f"FleetOracle(units={self.options.units})"


def oracle_ladder(units: int) -> list[int]:
    """The parts of the budget the fleet oracle scores each member at: 0, 1, 2, 4, ... ``units``.

    Example:
        >>> oracle_ladder(8), oracle_ladder(6)
        ([0, 1, 2, 4, 8], [0, 1, 2, 4, 6])
    """
    return sorted({0, units, *(2**j for j in range(units.bit_length()) if 2**j <= units)})


def least_total(errors: dict[int, np.ndarray], ladder: list[int], units: int) -> tuple[list[int], float]:
    """The parts per member (from ``ladder``, summing to at most ``units``) of least total error."""
    k = len(next(iter(errors.values())))
    # cost[m][t]: least error of members m.. with t parts left; the choice that reaches it
    cost = np.zeros((k + 1, units + 1))
    choice = np.zeros((k, units + 1), dtype=np.int64)
    for m in range(k - 1, -1, -1):
        for t in range(units + 1):
            options = [(errors[u][m] + cost[m + 1][t - u], u) for u in ladder if u <= t]
            cost[m][t], choice[m][t] = min(options)
    parts, left = [], units
    for m in range(k):
        parts.append(int(choice[m][left]))
        left -= parts[-1]
    return parts, float(cost[0][units])
