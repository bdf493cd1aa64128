"""Uniform and fixed allocators, and make_allocator."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bwgym.envs.allocators import Allocator, FixedAllocator, UniformAllocator, make_allocator

VIEWS = {"arm": np.zeros((4, 4, 3), np.uint8), "side": np.zeros((4, 4, 3), np.uint8)}


def test_uniform_splits_evenly():
    alloc = UniformAllocator()
    assert alloc(VIEWS, 1000, {}) == {"arm": 0.5, "side": 0.5}
    three = {**VIEWS, "top": VIEWS["arm"]}
    out = alloc(three, 0, {})
    assert list(out) == ["arm", "side", "top"]
    assert math.isclose(sum(out.values()), 1.0)
    alloc.reset()
    with pytest.raises(ValueError, match="at least one view"):
        alloc({}, 1000, {})


def test_fixed_normalises_and_zero_fills():
    alloc = FixedAllocator({"arm": 3, "side": 1})
    assert alloc(VIEWS, 1000, {}) == {"arm": 0.75, "side": 0.25}
    assert FixedAllocator({"arm": 2.0})(VIEWS, 1000, {}) == {"arm": 1.0, "side": 0.0}
    alloc.reset()


@pytest.mark.parametrize(
    ("weights", "error", "match"),
    [
        ({"arm": -1, "side": 1}, ValueError, "finite and >= 0"),
        ({"arm": float("nan")}, ValueError, "finite and >= 0"),
        ({"arm": float("inf")}, ValueError, "finite and >= 0"),
        ({"arm": 0, "side": 0}, ValueError, "at least one positive weight"),
        ({}, ValueError, "at least one positive weight"),
        ({"arm": "1"}, TypeError, "number"),
        ({"arm": True}, TypeError, "number"),
        ({1: 1.0}, TypeError, "view names"),
        ([("arm", 1.0)], TypeError, "dict of view name"),
    ],
)
def test_fixed_rejects_bad_weights(weights, error, match):
    with pytest.raises(error, match=match):
        FixedAllocator(weights)


def test_fixed_rejects_unknown_views():
    with pytest.raises(ValueError, match=r"unknown views \['top'\]; expected names among \['arm', 'side'\]"):
        FixedAllocator({"arm": 1, "top": 1}, views=["arm", "side"])
    alloc = FixedAllocator({"arm": 1, "top": 1})
    with pytest.raises(ValueError, match="unknown views"):
        alloc(VIEWS, 1000, {})


def test_make_allocator():
    assert isinstance(make_allocator("uniform"), UniformAllocator)
    fixed = make_allocator({"arm": 1, "side": 3}, views=["arm", "side"])
    assert isinstance(fixed, FixedAllocator)
    assert fixed(VIEWS, 10, {}) == {"arm": 0.25, "side": 0.75}
    with pytest.raises(ValueError, match="unknown views"):
        make_allocator({"arm": 1, "sdie": 3}, views=["arm", "side"])
    with pytest.raises(ValueError, match="unknown allocator 'learnt'"):
        make_allocator("learnt")
    with pytest.raises(TypeError, match="got int"):
        make_allocator(3)  # type: ignore[arg-type]

    class Greedy:
        def __call__(self, views, budget_bits, info):
            return {name: float(i == 0) for i, name in enumerate(views)}

        def reset(self):
            pass

    greedy = Greedy()
    assert isinstance(greedy, Allocator)
    assert make_allocator(greedy) is greedy
    assert isinstance(UniformAllocator(), Allocator) and isinstance(fixed, Allocator)
