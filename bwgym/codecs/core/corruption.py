"""Bit errors on the wire, and the share of them a codec's payloads detect.

The link model never corrupts bytes (a payload is delivered whole or lost); these helpers are for
measuring what a receiver would do on a channel that does, as the tests and
``benchmarks/codec_curves.py`` do for the lean frame's CRC-8::

    rng = np.random.default_rng(0)
    rate = detection_rate(codec, [codec.compress(views, 400).to_bytes()], "burst", 1_000, rng)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bwgym.codecs.core.protocol import Codec, Payload, PayloadError

__all__ = ["ERROR_KINDS", "corrupt_bits", "detection_rate"]

#: ``single`` and ``double``: that many bits flipped at random places; ``burst``: 2-16 consecutive
#: bits whose first and last are flipped and those between flipped at random.
ERROR_KINDS = ("single", "double", "burst")


def corrupt_bits(wire: bytes, kind: str, rng: np.random.Generator) -> bytes:
    """``wire`` with one random error of ``kind`` (one of :data:`ERROR_KINDS`)."""
    if kind not in ERROR_KINDS:
        raise ValueError(f"unknown error kind {kind!r}; expected one of {ERROR_KINDS}")
    bits, out = 8 * len(wire), bytearray(wire)
    if bits == 0:
        raise ValueError("cannot corrupt an empty payload (it is never sent)")

    def flip(i: int) -> None:
        out[i // 8] ^= 0x80 >> (i % 8)

    if kind == "single":
        flip(int(rng.integers(bits)))
    elif kind == "double":
        for i in rng.choice(bits, 2, replace=False):
            flip(int(i))
    else:
        length = int(rng.integers(2, 17))
        start = int(rng.integers(0, max(bits - length, 0) + 1))
        for i in range(start, min(bits, start + length)):
            if i in (start, start + length - 1) or rng.random() < 0.5:
                flip(i)
    return bytes(out)


def detection_rate(
    codec: Codec, wires: Sequence[bytes], kind: str, trials: int, rng: np.random.Generator
) -> float:
    """Share of ``trials`` corrupted copies of ``wires`` (cycled) that raise :class:`PayloadError`.

    A copy counts as detected when parsing or decoding it raises; one that decodes to anything is
    an undetected error.
    """
    session = getattr(codec, "session", None)
    detected = 0
    for t in range(trials):
        bad = corrupt_bits(wires[t % len(wires)], kind, rng)
        try:
            codec.decompress(Payload.from_bytes(bad, codec=codec.name, session=session))
        except PayloadError:
            detected += 1
    return detected / trials
