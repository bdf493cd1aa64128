"""The Example sections of the traces modules run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["bwgym.traces.trace", "bwgym.traces.generators", "bwgym.traces.link"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
