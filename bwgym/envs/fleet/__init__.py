"""Fleets: many robots or sensor groups sharing one uplink, and the policies that divide it.

* :class:`FleetBandwidthLimited` - N :class:`~bwgym.envs.bandwidth.BandwidthLimited` members behind
  one shared link (:mod:`bwgym.envs.fleet.wrapper`);
* fleet allocators (:mod:`bwgym.envs.fleet.allocators`), registered in
  :data:`~bwgym.common.registry.FLEET_ALLOCATORS`: ``equal``, ``proportional``, ``max_min_fair``,
  ``state``, ``oracle``.
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
    water_fill,
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
    "EqualShare",
    "FleetAllocator",
    "FleetBandwidthLimited",
    "FleetOracle",
    "FleetOracleOptions",
    "FleetState",
    "MaxMinFair",
    "MemberLink",
    "ProportionalShare",
    "StateRule",
    "StateRuleOptions",
    "check_shares",
    "divide_budget",
    "equal_shares",
    "make_fleet_allocator",
    "water_fill",
]
