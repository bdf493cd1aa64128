"""A fleet: N :class:`~bwgym.envs.bandwidth.BandwidthLimited` members behind one shared link.

Each step the fleet's link carries ``B`` bits (the shared trace, not scaled per member). A fleet
allocator divides them among the members (a share each, ``>= 0``, summing to at most 1); each
member's own allocator then splits its budget over its views, as a single robot's does::

    shared link (trace) --B bits--> fleet allocator --shares--> divide --b_i bits--> member i:
        view allocator --> codec (one batched call for all members of a stateless codec)
        --> member i's own link (its latency and losses, budget b_i) --> decoder --> agent i

The sum of the members' bits never exceeds ``B`` on any step: each member's budget is an integer
share of ``B`` and its link refuses a payload over it; a member whose codec cannot fit its share
sends nothing and holds its frames (``held`` in :attr:`FleetBandwidthLimited.fleet_info`).
Members whose episode ended are not stepped (``active``) and get no share, so their bits go to
the others.

Integer budgets: ``divide_budget`` hands out ``floor`` of each member's exact share plus a carry
of the fractions it was owed (largest remainders first), so over many steps a member receives its
shares of the link within one bit, and every step's budgets sum to at most ``B``. (A member of an
equal-share fleet of N therefore sees, step by step, the budget of a single robot on the trace
scaled by ``1/N`` within 2 bits, and the same total within 1 bit; exact equality on every step
would break the bound: two steps of 1.9 and 0.2 bits give a fleet of two 1 bit but each scaled
robot 1 bit too.)
"""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from bwgym.codecs.core.protocol import Payload
from bwgym.envs.bandwidth import BandwidthLimited, ObsDict, VectorBandwidthLimited
from bwgym.traces.link import Link
from bwgym.traces.trace import BandwidthTrace

__all__ = [
    "MAX_FLEET_MEMBERS",
    "FleetAllocator",
    "FleetBandwidthLimited",
    "FleetState",
    "MemberLink",
    "check_shares",
    "divide_budget",
    "equal_shares",
    "make_fleet_allocator",
]

#: Most members one fleet may have: each LocateLift member holds a MuJoCo scene and its renderer
#: (~40 MB), and the fleet steps them in one process.
MAX_FLEET_MEMBERS = 64
#: Steps of each member's history of drops that :class:`FleetState` reports the rate of.
DROP_HISTORY_STEPS = 10


class MemberLink(Link):
    """A member's own link behind the shared one: its budget is the share the fleet assigns it.

    Latency and losses are the member's own (a radio per robot behind one uplink); the budget of
    the next :meth:`transmit` is set by :meth:`assign` and falls back to 0 after it, so a member
    stepped outside the fleet's division sends nothing.
    """

    def __init__(
        self, trace: BandwidthTrace, step_seconds: float, latency_steps: int = 0, loss_prob: float = 0.0
    ) -> None:
        super().__init__(trace, step_seconds, latency_steps=latency_steps, loss_prob=loss_prob)
        self._assigned: tuple[int, float] = (0, 0.0)

    def assign(self, budget_bits: int, bandwidth_bps: float) -> None:
        """Set the next step's budget (bits) and the rate reported for it (bit/s)."""
        self._assigned = (int(budget_bits), float(bandwidth_bps))

    def _peek(self) -> tuple[int, float]:
        return self._assigned

    def transmit(self, item: Any, nbits: int) -> Any:
        """:meth:`Link.transmit` under the assigned budget; the next step has none until assigned."""
        result = super().transmit(item, nbits)
        self._assigned = (0, 0.0)
        return result


@dataclass
class FleetState:
    """What a fleet allocator sees before each step (index ``i``: member ``i``).

    Attributes:
        budget_bits: bits the shared link carries this step.
        bandwidth_bps: the shared link's rate over this step.
        step: steps of the shared link since the fleet's last full reset.
        active: which members send this step (a member whose episode ended does not).
        views: each active member's true views about to be sent (None for the others).
        frame_age_steps: per member, the age of its oldest view at the receiver before this step
            (-1: a view shows nothing yet); the sender knows it from the link's acknowledgements.
        drop_rate: per member, the fraction of its last :data:`DROP_HISTORY_STEPS` steps on which a
            view was not refreshed (0 before any).
        episode_steps: per member, steps into its current episode.
        max_episode_steps: the members' episode length limit (None: unknown).
        env_infos: each member's env info of this step (task phase, e.g. ``grasped``).
        fleet: the fleet (for allocators that need the members: requests, the oracle).
    """

    budget_bits: int
    bandwidth_bps: float
    step: int
    active: np.ndarray
    views: list[Mapping[str, np.ndarray] | None]
    frame_age_steps: np.ndarray
    drop_rate: np.ndarray
    episode_steps: np.ndarray
    max_episode_steps: int | None
    env_infos: list[Mapping[str, Any]]
    fleet: Any = None
    _requests: np.ndarray | None = field(default=None, repr=False)

    @property
    def num_members(self) -> int:
        """N, the fleet's members (active or not)."""
        return len(self.active)

    def requests(self) -> np.ndarray:
        """Bits each active member's codec would send of this step's views given the whole budget (0: inactive).

        Computed on first use (one batched compress for a shared stateless codec) and cached.
        """
        if self._requests is None:
            self._requests = self.fleet.request_bits(self.views, self.budget_bits)
        return self._requests


@runtime_checkable
class FleetAllocator(Protocol):
    """Divides the shared link among a fleet's members.

    ``__call__`` returns one share per member: finite, ``>= 0``, summing to at most 1 (what is left
    is not sent); an inactive member's share is ignored (taken as 0). ``reset`` is called when the
    whole fleet is reset.
    """

    def __call__(self, state: FleetState) -> Sequence[float] | np.ndarray:
        """One share of ``state.budget_bits`` per member."""
        ...

    def reset(self) -> None:
        """Forget any per-run state."""
        ...


def _fmt(values: np.ndarray) -> str:
    shown = ", ".join(f"{v:.4g}" for v in values[:16])
    return f"[{shown}{', ...' if len(values) > 16 else ''}]"


def check_shares(shares: Any, num_members: int, name: str = "fleet allocator") -> np.ndarray:
    """``shares`` as a float array of ``num_members`` finite values ``>= 0`` summing to at most 1.

    Raises:
        ValueError: one line naming ``name``, the member and the values: a wrong count, a share
            that is negative or not finite, or shares summing above 1.

    Example:
        >>> check_shares([0.5, 0.25], 2)
        array([0.5 , 0.25])
        >>> check_shares([0.5, -0.1], 2)
        Traceback (most recent call last):
            ...
        ValueError: fleet allocator: member 1 has share -0.1 (shares [0.5, -0.1]); shares must be finite and >= 0
    """
    try:
        values = np.asarray(shares, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected {num_members} numeric shares, got {shares!r:.200}") from None
    if values.size != num_members:
        raise ValueError(f"{name}: expected one share per member ({num_members}), got {values.size}")
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{name}: member {i} has share {values[i]:.4g} (shares {_fmt(values)}); "
            "shares must be finite and >= 0"
        )
    total = float(values.sum())
    if total > 1.0 + 1e-9:
        i = int(np.argmax(values))
        raise ValueError(
            f"{name}: shares sum to {total:.6g} > 1 (largest: member {i} with {values[i]:.4g}; "
            f"shares {_fmt(values)}); divide at most the whole link"
        )
    return values


def divide_budget(budget_bits: int, shares: np.ndarray, carry: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer budgets from checked ``shares`` of ``budget_bits``, and the carry of owed fractions.

    Each member is owed ``share * budget_bits + carry``; it gets the floor, and the bits left over
    (up to ``floor`` of everything owed, never more than ``budget_bits``) go one each to the
    largest remainders (ties: the lower member index). A member with share 0 gets 0 and its carry
    is cleared.

    Returns:
        ``(budgets, carry)``: integer bits per member, summing to at most ``budget_bits``, and
        each member's new carry (in (-1, 1)).

    Example:
        >>> import numpy as np
        >>> budgets, carry = divide_budget(10, np.array([0.5, 0.25, 0.25]), np.zeros(3))
        >>> budgets.tolist(), carry.tolist()
        ([5, 3, 2], [0.0, -0.5, 0.5])
    """
    budget_bits = int(budget_bits)
    serve = shares > 0
    owed = np.where(serve, shares * budget_bits + carry, 0.0)
    budgets = np.where(serve, np.maximum(np.floor(owed + 1e-9), 0.0), 0.0)
    total = min(budget_bits, max(0, math.floor(float(owed.sum()) + 1e-9)))
    extra = total - int(budgets.sum())
    if extra > 0:  # the largest remainders get one more bit each
        order = sorted(np.flatnonzero(serve), key=lambda i: (-(owed[i] - budgets[i]), i))
        for i in order[:extra]:
            budgets[i] += 1
    elif extra < 0:  # owed more than the link carries: the smallest remainders give one back
        order = sorted(np.flatnonzero(budgets > 0), key=lambda i: (owed[i] - budgets[i], i))
        for i in order[:-extra]:
            budgets[i] -= 1
    new_carry = np.where(serve, owed - budgets, 0.0)
    return budgets.astype(np.int64), new_carry


def make_fleet_allocator(
    spec: str | FleetAllocator, context: Any = None, options: Mapping[str, Any] | None = None
) -> FleetAllocator:
    """A fleet allocator from a registered name (:data:`~bwgym.common.registry.FLEET_ALLOCATORS`) or an instance.

    Raises:
        UnknownNameError: an unregistered name (with the closest one).
        OptionError: options the allocator does not take.
        TypeError: ``spec`` is neither a name nor a fleet allocator.
    """
    from bwgym.common.registry import FLEET_ALLOCATORS, BuildContext

    if isinstance(spec, str):
        entry = FLEET_ALLOCATORS.get(spec)
        return entry.build(
            context if context is not None else BuildContext(), options, f"fleet allocator {spec!r}"
        )
    if isinstance(spec, FleetAllocator):
        if options:
            raise TypeError(
                f"options are for a fleet allocator given by name, got an instance and {dict(options)}"
            )
        return spec
    raise TypeError(
        f"fleet allocator is expected to be a registered name or an object with __call__(state) and reset(), "
        f"got {type(spec).__name__}"
    )


class FleetBandwidthLimited(VectorBandwidthLimited):
    """N robots (or sensor groups) behind one shared link, their budgets divided each step.

    The members are :class:`~bwgym.envs.bandwidth.BandwidthLimited` envs, each with its own env,
    view allocator, session, held frames and link (latency and losses its own); their links are
    replaced by member links (:class:`MemberLink`) whose budgets the fleet assigns. It is a gymnasium vector env
    (:class:`~bwgym.envs.bandwidth.VectorBandwidthLimited`: observations stacked over the members,
    ``NEXT_STEP`` autoreset, ``step(actions, active)``), so one stateless codec codes every member's
    views in one batched call.

    The shared clock: a full ``reset`` restarts the shared link where the first member's seeded
    draw puts its trace offset (the offset a single robot reset with that seed starts at); every
    member's clock is set to the shared one when its episode starts. A partial reset
    (``reset_mask``) or an autoreset keeps the shared clock running.

    After every step :attr:`fleet_info` holds ``budget_bits``, ``bandwidth_bps`` (the shared link),
    ``shares``, ``budgets`` (bits per member), ``bits_sent`` (per member), ``active`` and ``held``
    (active members that sent nothing: their share was 0 or too small for their codec); each
    member's info also gets ``fleet_share``.

    Args:
        members: the members, 1 to :data:`MAX_FLEET_MEMBERS`, with equal spaces and step lengths.
        trace: the shared link's trace (not scaled per member).
        allocator: a registered fleet allocator name or a :class:`FleetAllocator`.
        allocator_name: the name used in error messages (default: the name, or the class).

    Raises:
        ValueError: no members, more than :data:`MAX_FLEET_MEMBERS`, or members whose step lengths differ.
    """

    def __init__(
        self,
        members: Sequence[BandwidthLimited],
        trace: BandwidthTrace,
        allocator: str | FleetAllocator = "equal",
        allocator_name: str | None = None,
    ) -> None:
        members = list(members)
        if not 1 <= len(members) <= MAX_FLEET_MEMBERS:
            raise ValueError(
                f"a fleet has 1 to {MAX_FLEET_MEMBERS} members (MAX_FLEET_MEMBERS), got {len(members)}"
            )
        super().__init__(members)
        step_seconds = self.envs[0].step_seconds
        for i, member in enumerate(self.envs):
            if member.step_seconds != step_seconds:
                raise ValueError(
                    f"member {i} steps {member.step_seconds:g} s, member 0 {step_seconds:g} s; "
                    "a fleet's members share one link clock: give them one step length"
                )
        self.step_seconds = step_seconds
        self.use_trace(trace)
        self.allocator: FleetAllocator = make_fleet_allocator(allocator)
        self.allocator_name = allocator_name or (
            allocator if isinstance(allocator, str) else type(allocator).__name__
        )
        spec = getattr(self.envs[0].env, "spec", None)
        self.max_episode_steps: int | None = getattr(spec, "max_episode_steps", None)
        n = self.num_envs
        self._carry = np.zeros(n)
        self._episode_steps = np.zeros(n, dtype=np.int64)
        self._drops: list[collections.deque[bool]] = [
            collections.deque(maxlen=DROP_HISTORY_STEPS) for _ in range(n)
        ]
        self._full_reset = False
        #: The last step's division (see the class docstring).
        self.fleet_info: dict[str, Any] = {}

    def use_trace(self, trace: BandwidthTrace) -> None:
        """Put the fleet on another shared trace; call :meth:`reset` next (a new round on it)."""
        self.trace = trace
        self.shared_link = Link(trace, self.step_seconds)
        for member in self.envs:
            member.trace = trace
            member.link = MemberLink(trace, self.step_seconds, member.latency_steps, member.loss_prob)

    @property
    def members(self) -> list[BandwidthLimited]:
        """The members (:attr:`envs`)."""
        return self.envs

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsDict, dict[str, Any]]:
        """Reset the members (all: the shared clock and the fleet allocator too) and send their first frames."""
        mask = (options or {}).get("reset_mask")
        self._full_reset = mask is None or bool(np.all(mask))
        return super().reset(seed=seed, options=options)

    def _send(
        self, indices: list[int], raw: list[tuple[Mapping[str, np.ndarray], dict[str, Any]]]
    ) -> list[tuple[ObsDict, dict[str, Any]]]:
        """Divide the shared budget among ``indices``, then :meth:`VectorBandwidthLimited._send`."""
        n, members = self.num_envs, self.envs
        if self._full_reset and indices:
            self.shared_link.reset(start_s=members[indices[0]].link.time_s)
            self._carry[:] = 0.0
            self.allocator.reset()
            self._full_reset = False
        for i in indices:
            if members[i].link.step_index == 0:  # a new episode: its clock is the shared one
                members[i].link.reset(start_s=self.shared_link.time_s)
                self._episode_steps[i] = 0
                self._drops[i].clear()
                self._carry[i] = 0.0
        active = np.zeros(n, dtype=bool)
        active[indices] = True
        state = self.peek_state(active)
        for i, (obs, info) in zip(indices, raw, strict=True):
            state.views[i] = {name: obs[name] for name in members[i].view_names}
            state.env_infos[i] = info
        budget, bandwidth = state.budget_bits, state.bandwidth_bps
        shares = check_shares(self.allocator(state), n, f"fleet allocator {self.allocator_name!r}")
        shares = np.where(active, shares, 0.0)
        budgets, self._carry = divide_budget(budget, shares, self._carry)
        for i in indices:
            members[i].link.assign(int(budgets[i]), float(shares[i]) * bandwidth)
        out = super()._send(indices, raw)
        bits = np.zeros(n, dtype=np.int64)
        held = np.zeros(n, dtype=bool)
        for i, (_, info) in zip(indices, out, strict=True):
            bits[i] = int(info["bits_sent_total"])
            held[i] = bits[i] == 0
            info["fleet_share"] = float(shares[i])
            self._drops[i].append(any(info["dropped"].values()))
            self._episode_steps[i] += 1
        if int(bits.sum()) > budget:  # each member's link refuses more than its budget: a bug if not
            raise RuntimeError(f"fleet members sent {int(bits.sum())} bits on a shared budget of {budget}")
        self.shared_link.transmit(None, int(bits.sum()))
        self.fleet_info = {
            "budget_bits": budget,
            "bandwidth_bps": bandwidth,
            "shares": shares,
            "budgets": budgets,
            "bits_sent": bits,
            "active": active,
            "held": held,
        }
        return out

    def peek_state(self, active: np.ndarray) -> FleetState:
        """The :class:`FleetState` of the next send for the members ``active``, before they step.

        ``views`` and ``env_infos`` are empty (they come with the step); every other field is what
        the fleet allocator will see, so a scheduler may observe it before deciding.
        """
        members = self.envs
        ages = [max(m._ages(m.link.step_index).values(), key=_age_key) for m in members]
        return FleetState(
            budget_bits=int(self.shared_link.peek_budget_bits()),
            bandwidth_bps=float(self.shared_link.peek_bandwidth_bps()),
            step=self.shared_link.step_index,
            active=np.asarray(active, dtype=bool).copy(),
            views=[None] * self.num_envs,
            frame_age_steps=np.array(ages, dtype=np.int64),
            drop_rate=np.array([float(np.mean(d)) if d else 0.0 for d in self._drops]),
            episode_steps=self._episode_steps.copy(),
            max_episode_steps=self.max_episode_steps,
            env_infos=[{} for _ in members],
            fleet=self,
        )

    def request_bits(self, views: Sequence[Mapping[str, np.ndarray] | None], budget_bits: int) -> np.ndarray:
        """Bits of each member's payload of ``views`` under ``budget_bits`` with its codec's own split (0: None)."""
        indices = [i for i, v in enumerate(views) if v is not None]
        out = np.zeros(len(views))
        payloads = self.compress_members(indices, [views[i] for i in indices], [budget_bits] * len(indices))
        for i, payload in zip(indices, payloads, strict=True):
            out[i] = 0 if payload.is_empty else payload.nbits
        return out

    def compress_members(
        self,
        indices: Sequence[int],
        views: Sequence[Mapping[str, np.ndarray]],
        budgets: Sequence[int],
        allocations: Sequence[Mapping[str, float] | None] | None = None,
    ) -> list[Payload]:
        """Each listed member's codec on its views and budget, outside the link (one batched call when shared)."""
        allocations = list(allocations) if allocations is not None else [None] * len(indices)
        if self.shared_codec is not None:
            return self.shared_codec.compress_batch(list(views), [int(b) for b in budgets], allocations)
        return [
            self.envs[i].codec.compress(v, int(b), a)
            for i, v, b, a in zip(indices, views, budgets, allocations, strict=True)
        ]

    def decompress_members(
        self, indices: Sequence[int], payloads: Sequence[Payload]
    ) -> list[dict[str, np.ndarray]]:
        """Each listed member's codec decoding its payload (``{}`` for an empty one)."""
        keep = [j for j, p in enumerate(payloads) if not p.is_empty]
        out: list[dict[str, np.ndarray]] = [{} for _ in payloads]
        if self.shared_codec is not None:
            decoded = self.shared_codec.decompress_batch([payloads[j] for j in keep]) if keep else []
        else:
            decoded = [self.envs[indices[j]].codec.decompress(payloads[j]) for j in keep]
        for j, views in zip(keep, decoded, strict=True):
            out[j] = dict(views)
        return out

    def shown_views(self, i: int) -> dict[str, np.ndarray]:
        """The frames member ``i``'s receiver shows now (held or zeros)."""
        return dict(self.envs[i]._shown)


def _age_key(age: int) -> float:
    return math.inf if age < 0 else age


def equal_shares(active: np.ndarray) -> np.ndarray:
    """``1 / k`` for each of the ``k`` active members, 0 for the others."""
    k = int(np.count_nonzero(active))
    return np.where(active, 1.0 / k, 0.0) if k else np.zeros(len(active))
