"""Fixtures the codec tests share."""

import pytest
from side_information import N


@pytest.fixture(scope="module")
def wyner_ziv():
    """The shipped Wyner-Ziv codec on blocks of ``N`` samples, one per test module (it holds side information)."""
    from bwgym.codecs.multiterminal.wyner_ziv import WynerZivCodec

    return WynerZivCodec.load(block_size=N)
