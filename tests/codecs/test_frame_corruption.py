"""How many random corruptions of real NDPCA lean frames the frame's CRC-8 misses, and the CRC-32 option.

The corpus: the shipped ``ndpca`` codec's lean frames of the stored LocateLift-v1 frames
(``data/golden_frames.npz``) at six budgets, each corrupted at random (fixed seed) by one of
:data:`KINDS`. A corrupted frame counts as *detected* when parsing or decoding it raises
:class:`~bwgym.codecs.core.protocol.PayloadError`, and as *undetected* when it decodes to anything (no
timing is measured). The frame's CRC-8 catches every error it guarantees to (single bits, bursts
of up to 8 bits) and misses about 1 in 256 of the rest; with ``check="crc32"`` on both ends
(:meth:`~bwgym.codecs.core.protocol.Payload.to_bytes`) the same corpus gives no undetected corruption.

Print the table (the numbers quoted in :mod:`bwgym.codecs.core.protocol`)::

    .venv/bin/python tests/codecs/test_frame_corruption.py [TRIALS_PER_KIND]
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from bwgym.codecs.core.corruption import corrupt_bits
from bwgym.codecs.core.protocol import CHECK_BITS, Codec, Payload, PayloadError

DATA = Path(__file__).parent / "data"
ENV_ID = "bwgym/LocateLift-v1"
#: Budgets of the corpus's frames (bits): from a few components to every component.
BUDGETS_BITS = (64, 128, 256, 512, 1024, 4096)
#: The seed of every corruption draw (the rates below are of this corpus).
SEED = 2026
#: Corruptions per kind in the test (the script's default is larger).
TRIALS_PER_KIND = 5_000


def _random_bytes(wire: bytes, rng: np.random.Generator) -> bytes:
    """2 to 8 bytes at random places replaced by other random values (a garbled stretch of a packet)."""
    out = bytearray(wire)
    for i in rng.choice(len(out), min(len(out), int(rng.integers(2, 9))), replace=False):
        out[i] ^= int(rng.integers(1, 256))  # a nonzero xor: the byte really changes
    return bytes(out)


def _random_bits(wire: bytes, rng: np.random.Generator) -> bytes:
    """3 to 16 bits flipped at random places (more than any CRC-8 guarantee covers)."""
    out = bytearray(wire)
    for i in rng.choice(8 * len(out), min(8 * len(out), int(rng.integers(3, 17))), replace=False):
        out[i // 8] ^= 0x80 >> (i % 8)
    return bytes(out)


def _one_byte(wire: bytes, rng: np.random.Generator) -> bytes:
    """One byte replaced by another value (a burst of at most 8 bits: CRC-8 always detects it)."""
    out = bytearray(wire)
    out[int(rng.integers(len(out)))] ^= int(rng.integers(1, 256))
    return bytes(out)


#: Kind -> corruption of one wire: single bit, two bits, a 2-16 bit burst
#: (:func:`bwgym.codecs.core.corruption.corrupt_bits`), one byte, 2-8 bytes, 3-16 bits.
KINDS: dict[str, Callable[[bytes, np.random.Generator], bytes]] = {
    "single": lambda w, rng: corrupt_bits(w, "single", rng),
    "double": lambda w, rng: corrupt_bits(w, "double", rng),
    "burst": lambda w, rng: corrupt_bits(w, "burst", rng),
    "byte": _one_byte,
    "bytes": _random_bytes,
    "bits": _random_bits,
}


@dataclass
class Counts:
    """Outcomes of corrupted frames.

    ``by_check``: refused by the frame's check (CRC-8, or the CRC-32 option) while parsing;
    ``by_decoder``: passed the check but refused while decoding (the header byte names no rate,
    the range-coder body does not end where the frame does); ``wrong``: decoded to other values;
    ``same``: decoded to the clean frame's values.
    """

    by_check: int = 0
    by_decoder: int = 0
    wrong: int = 0
    same: int = 0

    @property
    def trials(self) -> int:
        """Corrupted frames tried."""
        return self.by_check + self.by_decoder + self.wrong + self.same

    @property
    def passed_check(self) -> int:
        """Corrupted frames the check let through."""
        return self.trials - self.by_check

    @property
    def undetected(self) -> int:
        """Corrupted frames that decoded without an error."""
        return self.wrong + self.same

    def add(self, other: Counts) -> None:
        """Add ``other``'s outcomes to these."""
        self.by_check += other.by_check
        self.by_decoder += other.by_decoder
        self.wrong += other.wrong
        self.same += other.same


def measure(
    codec: Codec,
    wires: Sequence[bytes],
    clean: Sequence[dict[str, np.ndarray]],
    kind: str,
    trials: int,
    rng: np.random.Generator,
    check: str | None = None,
) -> Counts:
    """Corrupt ``trials`` copies of ``wires`` (cycled) by ``kind`` and count what the receiver does.

    ``wires`` are sent as ``Payload.to_bytes(check=check)``; ``clean`` holds each wire's decoded
    views, to tell an undetected corruption that changed the values from one that did not.
    """
    counts = Counts()
    for t in range(trials):
        i = t % len(wires)
        bad = KINDS[kind](wires[i], rng)
        try:
            payload = Payload.from_bytes(bad, session=codec.session, check=check)
        except PayloadError:
            counts.by_check += 1
            continue
        try:
            decoded = codec.decompress(payload)
        except PayloadError:
            counts.by_decoder += 1
            continue
        if all(np.array_equal(decoded[k], clean[i][k]) for k in clean[i]):
            counts.same += 1
        else:
            counts.wrong += 1
    return counts


def corpus(check: str | None = None) -> tuple[Codec, list[bytes], list[dict[str, np.ndarray]]]:
    """The shipped NDPCA codec, its frames' wire bytes (sent with ``check``) and their clean decodes."""
    import gymnasium as gym

    import bwgym  # noqa: F401  (registers the envs)
    from bwgym.codecs import make_codec

    env = gym.make(ENV_ID)
    try:
        codec = make_codec("ndpca", env.observation_space, env_id=ENV_ID)
    finally:
        env.close()
    with np.load(DATA / "golden_frames.npz") as data:
        frames = [{k: data[k][i] for k in ("arm", "side")} for i in range(len(data["arm"]))]
    payloads = [codec.compress(views, budget) for views in frames for budget in BUDGETS_BITS]
    payloads = [p for p in payloads if not p.is_empty]
    clean = [codec.decompress(p) for p in payloads]
    return codec, [p.to_bytes(check=check) for p in payloads], clean


@pytest.fixture(scope="module")
def ndpca() -> tuple[Codec, list[bytes], list[dict[str, np.ndarray]]]:
    return corpus()


def test_the_corpus_is_real_lean_frames(ndpca) -> None:
    codec, wires, _ = ndpca
    assert codec.session is not None and len(wires) >= 50
    assert min(len(w) for w in wires) >= 3 and max(len(w) for w in wires) > 100


def test_crc8_detects_what_it_guarantees_and_misses_about_1_in_256_of_the_rest(ndpca) -> None:
    codec, wires, clean = ndpca
    rng = np.random.default_rng(SEED)
    counts = {kind: measure(codec, wires, clean, kind, TRIALS_PER_KIND, rng) for kind in KINDS}
    # Single bits (odd weight: the polynomial has the factor x + 1) and bursts of <= 8 bits.
    assert counts["single"].undetected == 0 and counts["byte"].undetected == 0
    many = [counts[k] for k in ("bytes", "bits")]
    passed = sum(c.passed_check for c in many) / sum(c.trials for c in many)
    assert 1 / 1024 < passed < 4 / 256, f"CRC-8 let {passed:.4%} through (about 1/256 = 0.39% expected)"
    # The decoder's own consistency checks catch some of those; the rest decode to wrong values.
    assert 0 < sum(c.undetected for c in counts.values()) <= sum(c.passed_check for c in counts.values())


def test_crc32_check_leaves_no_corruption_undetected(ndpca) -> None:
    codec, _, clean = ndpca
    _, wires, _ = corpus(check="crc32")
    rng = np.random.default_rng(SEED)
    for kind in KINDS:
        counts = measure(codec, wires, clean, kind, TRIALS_PER_KIND, rng, check="crc32")
        assert counts.undetected == 0, f"{kind}: {counts}"


def test_the_check_is_off_by_default_and_adds_its_bits_when_on(ndpca) -> None:
    codec, wires, clean = ndpca
    payload = Payload.from_bytes(wires[0], session=codec.session)
    assert payload.to_bytes() == payload.to_bytes(check=None) == wires[0]  # the default wire is unchanged
    checked = payload.to_bytes(check="crc32")
    assert len(checked) * 8 == payload.nbits + CHECK_BITS["crc32"] and checked.startswith(wires[0])
    back = Payload.from_bytes(checked, session=codec.session, check="crc32")
    assert back.to_bytes() == wires[0]
    decoded = codec.decompress(back)
    assert all(np.array_equal(decoded[k], clean[0][k]) for k in clean[0])
    empty = Payload.empty(codec.name, codec.session)
    assert (
        empty.to_bytes(check="crc32") == b""
        and Payload.from_bytes(b"", session=codec.session, check="crc32").is_empty
    )


@pytest.mark.parametrize(
    "data, words",
    [(b"\x01\x02", "shorter than its 4-byte crc32"), (b"\x00" * 12, "crc32 check mismatch")],
    ids=["truncated", "mismatch"],
)
def test_a_bad_crc32_trailer_is_a_payload_error(ndpca, data: bytes, words: str) -> None:
    codec = ndpca[0]
    with pytest.raises(PayloadError, match=words):
        Payload.from_bytes(data, session=codec.session, check="crc32")


def test_a_checked_frame_under_another_session_is_refused(ndpca) -> None:
    import dataclasses

    codec, wires, _ = ndpca
    checked = Payload.from_bytes(wires[0], session=codec.session).to_bytes(check="crc32")
    other = dataclasses.replace(codec.session, fingerprint=bytes(4))
    with pytest.raises(PayloadError, match="another session"):
        Payload.from_bytes(checked, session=other, check="crc32")


def test_an_unknown_check_is_refused(ndpca) -> None:
    codec, wires, _ = ndpca
    payload = Payload.from_bytes(wires[0], session=codec.session)
    with pytest.raises(ValueError, match="crc32"):
        payload.to_bytes(check="md5")
    with pytest.raises(ValueError, match="crc32"):
        Payload.from_bytes(wires[0], session=codec.session, check="crc16")


def test_container_v1_payloads_take_the_check_too() -> None:
    payload = Payload("jpeg", (b"abc", b""), b"\x05")
    checked = payload.to_bytes(check="crc32")
    assert Payload.from_bytes(checked, check="crc32") == payload
    bad = bytearray(checked)
    bad[3] ^= 0xFF  # the codec id: caught by the CRC-32 before the container is read
    with pytest.raises(PayloadError, match="crc32 check mismatch"):
        Payload.from_bytes(bytes(bad), check="crc32")


if __name__ == "__main__":
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 5_000
    for check in (None, "crc32"):
        codec, wires, clean = corpus(check)
        rng = np.random.default_rng(SEED)
        total = Counts()
        sizes = f"{min(map(len, wires))}-{max(map(len, wires))} bytes"
        print(f"check={check}: {len(wires)} NDPCA lean frames of {sizes}, seed {SEED}")
        print(
            f"{'kind':7} {'trials':>7} {'by check':>9} {'by decoder':>10} {'wrong':>6} {'same':>5} {'passed check':>13} {'undetected':>11}"
        )
        for kind in [*KINDS, "all"]:
            if kind == "all":
                c = total
            else:
                c = measure(codec, wires, clean, kind, trials, rng, check)
                total.add(c)
            print(
                f"{kind:7} {c.trials:7} {c.by_check:9} {c.by_decoder:10} {c.wrong:6} {c.same:5} "
                f"{c.passed_check / c.trials:13.4%} {c.undetected / c.trials:11.4%}"
            )
