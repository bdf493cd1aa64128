"""The fast compress path writes the very bytes of the plain search (golden hashes from before it)."""

from __future__ import annotations

import json

import pytest
from golden_wire import CODECS, GOLDEN, wire_hashes


@pytest.mark.slow
def test_wire_bytes_match_the_golden_hashes():
    golden = json.loads(GOLDEN.read_text())
    now = wire_hashes()
    for name in CODECS:
        assert now[name]["fingerprint"] == golden[name]["fingerprint"], (
            f"shipped {name} checkpoint changed: rerun `python tests/codecs/golden_wire.py --write`"
        )
        assert now[name]["sha256"] == golden[name]["sha256"], f"{name}: wire bytes changed"
