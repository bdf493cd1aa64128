"""Quantisation and the entropy coder: exact round trips, real bits vs the model, bit-exactness."""

from __future__ import annotations

import hashlib

import constriction
import numpy as np
import pytest
import torch

from bwgym.codecs.core import entropy
from bwgym.codecs.core.entropy import (
    MAX_ABS_SYMBOL,
    MAX_SCALE_INDEX,
    MIN_SCALE_INDEX,
    GaussianEntropyCoder,
    LaplaceEntropyCoder,
    choose_step_index,
    dequantize,
    get_coder,
    quantize,
    quantize_noise,
    quantize_ste,
    quantize_symbols,
    rate_bits,
    scale_from_index,
    scale_index,
)
from bwgym.codecs.core.protocol import Payload, PayloadError

FAMILIES = ["gaussian", "laplace"]


def _draw(family: str, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    scale = scale_from_index(idx)
    if family == "gaussian":
        values = rng.standard_normal(idx.shape) * scale
    else:
        values = rng.laplace(size=idx.shape) * scale / np.sqrt(2.0)
    return np.rint(values).astype(np.int64)


# -- bit-exactness: the fixed-point models and the bytes are the same on every machine ----------

# sha256 of every table's integer frequencies, and the stream of one fixed message. They only
# change when the model definition changes, and then old payloads no longer decode: bump
# FORMAT_VERSION in base.py together with these.
GOLDEN_TABLES = {
    "gaussian": "f83a866716474b3d96e1778b9ed36b84e9e2f14dd84afa47b491b05071d1691d",
    "laplace": "2b55f3491f5d861115cefd59b99e564bbc3279dac0e5f0bca893202b7056d214",
}
GOLDEN_STREAM = {"gaussian": "9284a016c33bbf8cf17cc2f6e958", "laplace": "9e4bab323fc98dca2e7cac78e13e"}
GOLDEN_SYMBOLS = np.array([0, 1, -1, 3, -7, 20, 0, 0, 5, 123456789, -2])
GOLDEN_IDX = np.array([0, 0, 4, 8, 16, 24, -8, -30, 70, 10, 200], dtype=np.int32)


@pytest.mark.parametrize("family", FAMILIES)
def test_tables_and_stream_match_golden(family: str) -> None:
    coder = get_coder(family)
    digest = hashlib.sha256()
    for p in coder.tables.probabilities:
        freq = p * 2**24
        assert np.array_equal(freq, np.rint(freq)) and freq.min() >= 1 and freq.sum() == 2**24
        digest.update(freq.astype("<i8").tobytes())
    assert digest.hexdigest() == GOLDEN_TABLES[family]
    data = coder.encode(GOLDEN_SYMBOLS, GOLDEN_IDX)
    assert data.hex() == GOLDEN_STREAM[family]
    assert np.array_equal(coder.decode(data, GOLDEN_IDX), GOLDEN_SYMBOLS)


@pytest.mark.parametrize("family", FAMILIES)
def test_same_input_gives_identical_bytes(family: str) -> None:
    rng = np.random.default_rng(1)
    idx = rng.integers(-10, 80, 500).astype(np.int32)
    x = _draw(family, idx, rng)
    first = get_coder(family).encode(x, idx)
    fresh = (GaussianEntropyCoder if family == "gaussian" else LaplaceEntropyCoder)()
    assert fresh.encode(x.copy(), idx.copy()) == first


# -- round trips and rate -----------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip_any_value(family: str) -> None:
    coder = get_coder(family)
    rng = np.random.default_rng(2)
    for n in [1, 2, 7, 64, 1000]:
        idx = rng.integers(MIN_SCALE_INDEX - 20, 160, n).astype(np.int32)  # below, inside, split range
        x = _draw(family, idx, rng)
        data = coder.encode(x, idx)
        assert np.array_equal(coder.decode(data, idx), x)
    # out-of-support values take the escape path; extremes of the allowed range included
    idx = np.array([MIN_SCALE_INDEX, 0, 0, 40, 41, MAX_SCALE_INDEX, 8, 8], dtype=np.int32)
    x = np.array([5, 10**6, -(10**6), -(2**30), 2**31 - 2, -MAX_ABS_SYMBOL, MAX_ABS_SYMBOL, 0])
    data = coder.encode(x, idx)
    assert np.array_equal(coder.decode(data, idx), x)
    # shapes are kept; an empty message is empty bytes
    idx2 = np.zeros((3, 4), dtype=np.int32)
    x2 = np.arange(12).reshape(3, 4) - 6
    assert coder.decode(coder.encode(x2, idx2), idx2).shape == (3, 4)
    assert coder.encode(np.zeros(0, np.int64), np.zeros(0, np.int32)) == b""
    assert coder.decode(b"", np.zeros(0, np.int32)).size == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_bits_emitted_match_estimate(family: str) -> None:
    coder = get_coder(family)
    rng = np.random.default_rng(3)
    idx = rng.integers(-16, 100, 4000).astype(np.int32)
    x = _draw(family, idx, rng)
    x[::997] = 10**7  # a few escapes
    estimate = coder.estimate_bits(x, idx)
    actual = 8 * len(coder.encode(x, idx))
    assert abs(actual - estimate) <= 0.02 * estimate + 32, (actual, estimate)
    # the estimate is the model's code length, so on model-distributed data it is near the entropy
    clean = _draw(family, idx, rng)
    assert coder.estimate_bits(clean, idx) == pytest.approx(coder.expected_bits(idx).sum(), rel=0.03)


def test_short_messages_cost_a_few_bits_over_the_estimate() -> None:
    # the stream is cut to the shortest string in the coder's interval: no 32-bit word granularity
    coder = get_coder("gaussian")
    rng = np.random.default_rng(4)
    overhead = []
    for _ in range(100):
        idx = rng.integers(0, 40, int(rng.integers(1, 30))).astype(np.int32)
        x = _draw("gaussian", idx, rng)
        overhead.append(8 * len(coder.encode(x, idx)) - coder.estimate_bits(x, idx))
    assert np.mean(overhead) < 6 and max(overhead) <= 16


def test_scale_index_must_be_integer_and_lengths_match() -> None:
    coder = get_coder("gaussian")
    with pytest.raises(TypeError, match="scale_index"):
        coder.encode(np.array([1, 2]), np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match="integers"):
        coder.encode(np.array([1.5]), np.array([1], dtype=np.int32))
    with pytest.raises(ValueError, match="2 symbols but 3"):
        coder.encode(np.array([1, 2]), np.array([1, 2, 3], dtype=np.int32))
    for bad in [2**31, -(2**31), 2**62]:
        with pytest.raises(ValueError, match="2\\*\\*31 - 1"):
            coder.encode(np.array([bad]), np.array([0], dtype=np.int32))
    assert quantize_symbols(np.array([1e12, -1e12]), 1.0).tolist() == [MAX_ABS_SYMBOL, -MAX_ABS_SYMBOL]
    with pytest.raises(ValueError, match="unknown entropy model"):
        get_coder("cauchy")


# -- malformed bytes ------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_stream_is_the_shortest_that_decodes(family: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # reference: no shorter cut of the flushed range-coder stream (its prefix, or prefix + 1, at
    # each length: the only candidates in the coder's interval) decodes to the message
    coder = get_coder(family)
    flushed, carries = [], []
    real = entropy._shortest_stream

    def spy(encoder: object) -> bytes:
        _, (lower, range_) = encoder.pos()
        carries.append(lower + range_ > 1 << 64)
        flushed.append(encoder.get_compressed().astype(">u4").tobytes().rstrip(b"\0"))
        return real(encoder)

    def decodes(candidate: bytes, idx: np.ndarray, x: np.ndarray) -> bool:
        try:
            return bool(np.array_equal(coder.decode(candidate, idx), x))
        except PayloadError:
            return False

    monkeypatch.setattr(entropy, "_shortest_stream", spy)
    rng = np.random.default_rng(8)
    for _ in range(200):
        idx = rng.integers(-16, 90, int(rng.choice([1, 3, 10, 60]))).astype(np.int32)
        x = _draw(family, idx, rng)
        data = coder.encode(x, idx)
        assert decodes(data, idx, x) and len(data) <= len(flushed[-1])
        for k in range(len(data)):
            prefix = int.from_bytes(flushed[-1][:k], "big")
            for value in (prefix, prefix + 1):
                if value < 1 << (8 * k):
                    assert not decodes(value.to_bytes(k, "big").rstrip(b"\0"), idx, x)
    assert any(carries)  # the range coder's carry case (final interval across 2**64) is covered


def test_malformed_streams_raise_payload_error() -> None:
    coder = get_coder("gaussian")
    rng = np.random.default_rng(5)
    idx = rng.integers(0, 40, 20).astype(np.int32)
    data = coder.encode(_draw("gaussian", idx, rng), idx)
    for bad in [data + b"\x00", b"\x00"]:  # the coder never emits a trailing zero byte
        with pytest.raises(PayloadError, match="zero byte"):
            coder.decode(bad, idx)
    with pytest.raises(PayloadError, match="empty message"):
        coder.decode(b"\x01", np.zeros(0, np.int32))
    # an escape longer than any symbol within MAX_ABS_SYMBOL needs, or one that overshoots it
    row = 0 - MIN_SCALE_INDEX
    escape = 2 * int(coder.tables.half_width[row]) + 1
    uniform = constriction.stream.model.Uniform
    for length, rest, match in [(40, 0, "escape length"), (31, 2**30 - 1, "out of range")]:
        encoder = constriction.stream.queue.RangeEncoder()
        encoder.encode(
            np.array([escape], np.int32),
            constriction.stream.model.Categorical(coder.tables.probabilities[row], perfect=False),
        )
        encoder.encode(np.array([0], np.int32), uniform(2))
        encoder.encode(np.array([length - 1], np.int32), uniform(64))
        encoder.encode(np.array([rest >> 14], np.int32), uniform(2**16))  # 30 bits: 16 + 14
        encoder.encode(np.array([rest & (2**14 - 1)], np.int32), uniform(2**14))
        stream = encoder.get_compressed().astype(">u4").tobytes().rstrip(b"\0")
        with pytest.raises(PayloadError, match=match):
            coder.decode(stream, np.zeros(1, np.int32))


def test_garbage_never_crashes() -> None:
    # an entropy code has almost no redundancy: corrupt streams mostly decode to other symbols,
    # and the Payload CRC is what rejects them (next test)
    coder = get_coder("laplace")
    rng = np.random.default_rng(6)
    for _ in range(150):
        n = int(rng.integers(1, 40))
        idx = rng.integers(-8, 60, n).astype(np.int32)
        data = coder.encode(_draw("laplace", idx, rng), idx)
        garbage = rng.integers(1, 256, int(rng.integers(1, 12)), dtype=np.uint8).tobytes()
        for bit in rng.integers(0, 8 * max(len(data), 1), 4):
            flipped = bytearray(data or b"\x00")
            flipped[bit // 8] ^= 1 << (bit % 8)
            for bad in [bytes(flipped), garbage, data + garbage]:
                try:
                    out = coder.decode(bad, idx)
                except PayloadError:
                    continue
                assert out.shape == idx.shape and out.dtype == np.int64
                assert np.abs(out).max() <= MAX_ABS_SYMBOL


def test_payload_crc_catches_every_flip_and_truncation_of_a_stream() -> None:
    coder = get_coder("gaussian")
    idx = np.arange(-8, 56, 2, dtype=np.int32)
    x = _draw("gaussian", idx, np.random.default_rng(7))
    wire = Payload("linear_dpca", (coder.encode(x, idx),), b"\x00").to_bytes()
    for bit in range(8 * len(wire)):
        flipped = bytearray(wire)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(PayloadError):
            Payload.from_bytes(bytes(flipped))
    for cut in range(1, len(wire)):
        with pytest.raises(PayloadError):
            Payload.from_bytes(wire[:cut])


# -- quantisation -------------------------------------------------------------------------------


def test_quantize_ste_rounds_forward_and_passes_gradient() -> None:
    x = torch.tensor([-1.26, -0.2, 0.49, 0.51, 3.7], requires_grad=True)
    y = quantize_ste(x, 0.5)
    assert torch.allclose(y, torch.tensor([-1.5, 0.0, 0.5, 0.5, 3.5]))
    (y * torch.arange(5.0)).sum().backward()
    assert torch.equal(x.grad, torch.arange(5.0))
    assert torch.allclose(quantize(x, 0.5, mode="round"), y)
    with pytest.raises(ValueError, match="mode"):
        quantize(x, 1.0, mode="bogus")


def test_quantize_noise_is_within_half_a_step() -> None:
    x = torch.zeros(10_000)
    y = quantize_noise(x, 2.0, generator=torch.Generator().manual_seed(0))
    assert y.min() >= -1.0 and y.max() < 1.0 and abs(float(y.mean())) < 0.05
    assert torch.equal(quantize(x, 2.0, "noise", torch.Generator().manual_seed(0)), y)


def test_numpy_quantisation_and_scale_grid() -> None:
    sym = quantize_symbols(np.array([0.74, -0.76, 2.5, 3.5]), 0.5)
    assert sym.dtype == np.int64 and sym.tolist() == [1, -2, 5, 7]
    assert np.allclose(dequantize(sym, 0.5), [0.5, -1.0, 2.5, 3.5])
    with pytest.raises(ValueError, match="non-finite"):
        quantize_symbols(np.array([np.nan]), 1.0)
    idx = np.arange(-32, 100)
    assert np.array_equal(scale_index(scale_from_index(idx)), idx)
    assert scale_index(np.array([0.0, -1.0, 1e-30, 1e30])).tolist() == [
        MIN_SCALE_INDEX,
        MIN_SCALE_INDEX,
        MIN_SCALE_INDEX,
        MAX_SCALE_INDEX,
    ]


@pytest.mark.parametrize("family", FAMILIES)
def test_rate_bits_tracks_the_coder(family: str) -> None:
    coder = get_coder(family)
    idx = np.repeat(np.arange(0, 40, 4, dtype=np.int32), 7)  # inside the table range
    x = np.tile(np.arange(-3, 4), len(idx) // 7) * np.rint(scale_from_index(idx)).astype(np.int64)
    torch_bits = rate_bits(torch.tensor(x, dtype=torch.float64), torch.tensor(scale_from_index(idx)), family)
    table_bits = coder.symbol_bits(x, idx)
    assert np.allclose(torch_bits.numpy(), table_bits, atol=0.05)
    y = torch.tensor([0.3, 2.0], requires_grad=True)
    rate_bits(y, 1.0, family).sum().backward()
    assert torch.isfinite(y.grad).all()


def test_choose_step_index_is_finest_fitting_step() -> None:
    sigma_idx = np.array([60, 44, 30, 12, 0, -10], dtype=np.int32)
    coder = get_coder("gaussian")
    for budget in [5.0, 40.0, 100.0]:
        k = choose_step_index(sigma_idx, budget, coder)
        assert (
            coder.expected_bits(sigma_idx - k).sum() <= budget < coder.expected_bits(sigma_idx - k + 1).sum()
        )
        k_rel = choose_step_index(sigma_idx, budget, "gaussian", relative=True)
        rate = coder.expected_bits(np.full(6, -k_rel, np.int32)).sum()
        assert rate <= budget < coder.expected_bits(np.full(6, -k_rel + 1, np.int32)).sum()
    assert choose_step_index(sigma_idx, 1e-9, coder) is None
