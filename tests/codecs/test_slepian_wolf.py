"""Slepian-Wolf block code of the Wyner-Ziv indices: exact round trip, detected failures, real bytes."""

import numpy as np
import pytest
from side_information import N, correlated_source

from bwgym.codecs.core.protocol import PayloadError
from bwgym.codecs.multiterminal.slepian_wolf import (
    SlepianWolfFailure,
    SlepianWolfIndexCoder,
    decode_syndrome,
    parity_check,
    syndrome,
)


@pytest.fixture(scope="module")
def source():
    return correlated_source(11)


@pytest.fixture(scope="module")
def top(wyner_ziv, source):
    """The highest rate point's coder, indices and payload."""
    x, _ = source
    j = wyner_ziv.n_rates - 1
    coder = SlepianWolfIndexCoder(wyner_ziv, j)
    u = wyner_ziv.encode_indices(x, j)
    return coder, u, coder.encode(u, x)


def test_parity_check_is_deterministic_and_simple():
    a, b = parity_check(500, 120, seed=3), parity_check(500, 120, seed=3)
    assert np.array_equal(a.var, b.var) and np.array_equal(a.chk, b.chk)
    assert not np.array_equal(a.chk, parity_check(500, 120, seed=4).chk)
    key = a.var * a.m + a.chk
    assert np.unique(key).size == key.size  # no repeated edge
    assert np.all(np.bincount(a.var, minlength=a.n) >= 2)
    degrees = np.bincount(a.chk, minlength=a.m)
    assert degrees.max() - degrees.min() <= 2


def test_bp_recovers_bits_from_syndrome():
    rng = np.random.default_rng(0)
    n = 2000
    bits = (rng.random(n) < 0.5).astype(np.uint8)
    # a BSC(0.05) view of the bits: H = 0.286 bit per bit, syndrome of 0.4 n
    flips = rng.random(n) < 0.05
    llr = np.where(bits ^ flips, -1.0, 1.0) * np.log(0.95 / 0.05)
    code = parity_check(n, 800, seed=1)
    out, ok = decode_syndrome(code, syndrome(code, bits), llr)
    assert ok and np.array_equal(out, bits)


@pytest.mark.parametrize("rate_idx", [0, 3])
def test_exact_round_trip_with_the_right_side_information(wyner_ziv, source, rate_idx):
    x, y = source
    coder = SlepianWolfIndexCoder(wyner_ziv, rate_idx)
    u = wyner_ziv.encode_indices(x, rate_idx)
    data = coder.encode(u, x)
    assert np.array_equal(coder.decode(data, y), u)


def test_natural_labelling_round_trips(wyner_ziv, source):
    x, y = source
    coder = SlepianWolfIndexCoder(wyner_ziv, 1, labelling="natural")
    u = wyner_ziv.encode_indices(x, 1)
    assert np.array_equal(coder.decode(coder.encode(u, x), y), u)


def test_wrong_side_information_is_a_detected_failure(wyner_ziv, source, top):
    coder, u, data = top
    rng = np.random.default_rng(5)
    for y_wrong in (rng.standard_normal(N), source[1] + 0.3 * rng.standard_normal(N)):
        with pytest.raises(SlepianWolfFailure):
            coder.decode(data, y_wrong)


def test_corrupted_syndrome_is_detected(source, top):
    coder, u, data = top
    bad = bytearray(data)
    bad[len(data) // 2] ^= 0x10
    try:
        out = coder.decode(bytes(bad), source[1])
    except SlepianWolfFailure:
        return
    raise AssertionError(f"a corrupted syndrome decoded to indices ({np.sum(out != u)} wrong)")


def test_malformed_payloads_raise_clear_errors(wyner_ziv, source, top):
    coder, _, data = top
    y = source[1]
    with pytest.raises(PayloadError, match="announces"):
        coder.decode(data[:-1], y)
    with pytest.raises(PayloadError, match="announces"):
        coder.decode(data + b"\0", y)
    with pytest.raises(PayloadError, match="magic"):
        coder.decode(b"XX" + data[2:], y)
    with pytest.raises(PayloadError, match="too short"):
        coder.decode(data[:5], y)
    with pytest.raises(PayloadError, match="truncated"):
        coder.decode(data[:8], y)
    with pytest.raises(PayloadError, match="rate"):
        SlepianWolfIndexCoder(wyner_ziv, 0).decode(data, y)
    with pytest.raises(ValueError, match="side information"):
        coder.decode(data, y[:-1])


def test_real_rate_is_below_the_one_shot_range_code_at_the_top_rate(wyner_ziv, source, top):
    x, _ = source
    coder, _, data = top
    one_shot = wyner_ziv.compress_at({"x": x}, coder.rate_idx).nbits
    assert 8 * len(data) < 0.92 * one_shot
