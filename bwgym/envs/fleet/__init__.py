"""Fleets: many robots or sensor groups sharing one uplink, and the policies that divide it.

* :class:`FleetBandwidthLimited` - N :class:`~bwgym.envs.bandwidth.BandwidthLimited` members behind
  one shared link (:mod:`bwgym.envs.fleet.wrapper`);
* fleet allocators (:mod:`bwgym.envs.fleet.allocators`), registered in
  :data:`~bwgym.common.registry.FLEET_ALLOCATORS`: ``equal``, ``proportional``, ``max_min_fair``,
  ``state``, ``oracle``, and ``learned`` (:mod:`bwgym.envs.fleet.learned`: the oracle's division
  on action errors a model predicts from what the scheduler observes, fitted to the oracle's
  candidate scores on ``bwgym/AllocateFleet-v0``, :mod:`bwgym.envs.fleet_allocation`).
"""

from __future__ import annotations

from bwgym.envs.fleet.allocators import (
    EqualShare,
    FleetOracle,
    FleetOracleOptions,
    MaxMinFair,
    ProportionalShare,
    StateRule,
    StateRuleOptions,
    least_total,
    oracle_ladder,
    water_fill,
)
from bwgym.envs.fleet.learned import (
    POLICY_FILE,
    FleetErrorModel,
    FleetObserver,
    FleetScorer,
    LearnedFleetAllocator,
    action_to_shares,
    division_by_errors,
    scores_to_action,
    scores_to_shares,
)
from bwgym.envs.fleet.wrapper import (
    MAX_FLEET_MEMBERS,
    FleetAllocator,
    FleetBandwidthLimited,
    FleetState,
    MemberLink,
    check_shares,
    divide_budget,
    equal_shares,
    make_fleet_allocator,
)

__all__ = [
    "MAX_FLEET_MEMBERS",
    "POLICY_FILE",
    "EqualShare",
    "FleetAllocator",
    "FleetErrorModel",
    "FleetBandwidthLimited",
    "FleetOracle",
    "FleetObserver",
    "FleetOracleOptions",
    "FleetScorer",
    "FleetState",
    "LearnedFleetAllocator",
    "MaxMinFair",
    "MemberLink",
    "ProportionalShare",
    "StateRule",
    "StateRuleOptions",
    "action_to_shares",
    "check_shares",
    "divide_budget",
    "division_by_errors",
    "equal_shares",
    "least_total",
    "make_fleet_allocator",
    "oracle_ladder",
    "scores_to_action",
    "scores_to_shares",
    "water_fill",
]
