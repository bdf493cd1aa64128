"""Statistics of the result tables: paired differences of success."""

from __future__ import annotations

import doctest
import math

import pytest

import bwgym.common.stats as stats
from bwgym.common.stats import paired_difference


def test_examples_run():
    assert doctest.testmod(stats).failed == 0


def test_paired_difference_counts_only_discordant_episodes():
    a = [1] * 40 + [0] * 10 + [1] * 12 + [0] * 38  # 52 successes
    b = [1] * 40 + [0] * 10 + [0] * 12 + [0] * 38  # 40 successes, all shared with a
    d = paired_difference(a, b)
    assert d["difference"] == pytest.approx(0.12)
    assert (d["a_only"], d["b_only"]) == (12, 0)
    assert d["p_value"] == pytest.approx(2 * 0.5**12)  # McNemar exact: 12 of 12 discordant one way
    assert d["low"] > 0 and d["high"] < 0.2
    flipped = paired_difference(b, a)
    assert flipped["difference"] == pytest.approx(-0.12) and flipped["p_value"] == d["p_value"]


def test_equal_outcomes_are_no_evidence():
    d = paired_difference([1, 0, 1, 1], [1, 0, 1, 1])
    assert d["difference"] == 0 and d["p_value"] == 1.0 and d["low"] == d["high"] == 0


def test_balanced_discordance_is_not_significant():
    d = paired_difference([1, 0] * 10, [0, 1] * 10)
    assert d["difference"] == 0 and math.isclose(d["p_value"], 1.0) and d["low"] < 0 < d["high"]


def test_unpaired_lengths_are_refused():
    with pytest.raises(ValueError, match="same episodes"):
        paired_difference([1, 0], [1])
