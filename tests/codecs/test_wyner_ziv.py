"""The learned Wyner-Ziv codec (paper 001): real bytes, rates, side information, binning, checkpoint."""

import math

import numpy as np
import pytest
from side_information import N, correlated_source

from bwgym.codecs import make_codec
from bwgym.codecs.bounds import rate_distortion_gaussian, wyner_ziv_gaussian
from bwgym.codecs.core.protocol import Payload, PayloadError, ViewSpec
from bwgym.codecs.multiterminal.wyner_ziv import WynerZivCodec, WynerZivConfig
from bwgym.codecs.sensor.predictive import ScalarCodec


@pytest.fixture(scope="module")
def source():
    return correlated_source(7)


def _points(codec, x, y):
    out = []
    for j in range(codec.n_rates):
        payload = codec.compress_at({"x": x}, j)
        wire = Payload.from_bytes(payload.to_bytes(), codec="wyner_ziv")
        xh = codec.decode(wire, y)
        out.append((payload.nbits / N, float(np.mean((x - xh) ** 2))))
    return out


def test_round_trip_and_rates_are_monotone(wyner_ziv, source):
    x, y = source
    points = _points(wyner_ziv, x, y)
    rates, dists = zip(*points, strict=True)
    assert all(a < b for a, b in zip(rates, rates[1:], strict=False)), rates
    assert all(a > b for a, b in zip(dists, dists[1:], strict=False)), dists
    cond = wyner_ziv.config.conditional_var
    for rate, d in points:
        # real bits can never beat the Wyner-Ziv bound; the side information must be used
        assert rate >= wyner_ziv_gaussian(cond, d) - 0.02
        assert rate < rate_distortion_gaussian(1.0, d)


def test_real_bits_match_the_entropy_model(wyner_ziv, source):
    x, _ = source
    for j in range(wyner_ziv.n_rates):
        u = wyner_ziv.encode_indices(x, j)
        ideal = -np.log2(wyner_ziv.frequencies[j][u] / 2**24).sum()
        payload = wyner_ziv.compress_at({"x": x}, j)
        assert 8 * len(payload.streams[0]) <= ideal + 40
        assert payload.nbits == 8 * len(payload.to_bytes())


def test_beats_scalar_quantisation_at_every_rate(wyner_ziv, source):
    x, y = source
    scalar = ScalarCodec.from_views([ViewSpec("x", (N,), "float32")], scale=1.0)
    base = []
    for b in range(1, 9):
        payload = scalar.compress({"x": x}, b * N + 200)
        base.append((payload.nbits / N, float(np.mean((scalar.decompress(payload)["x"] - x) ** 2))))
    for rate, d in _points(wyner_ziv, x, y):
        if rate < base[0][0]:
            assert d < base[0][1]  # fewer bits than the scalar codec's coarsest point, lower error
            continue
        d_scalar = math.exp(np.interp(rate, [r for r, _ in base], np.log([e for _, e in base])))
        assert d < d_scalar, (rate, d, d_scalar)


def test_the_encoder_bins(wyner_ziv):
    """At a fine rate point the same index labels cells far apart along x (several sigma_N)."""
    cfg = wyner_ziv.config
    table = wyner_ziv.tables[-1]
    xc = cfg.centres
    runs = np.flatnonzero(np.diff(table)) + 1
    starts = xc[np.concatenate([[0], runs])]
    labels = table[np.concatenate([[0], runs])]
    central = np.abs(starts) < 2
    reused = [lab for lab in np.unique(labels[central]) if np.sum(labels[central] == lab) >= 3]
    assert len(reused) >= 3
    for lab in reused[:3]:
        gaps = np.diff(starts[central & (labels == lab)])
        assert gaps.min() > 2 * math.sqrt(cfg.noise_var)


def test_compress_picks_the_finest_rate_that_fits(wyner_ziv, source):
    x, _ = source
    sizes = [wyner_ziv.compress_at({"x": x}, j).nbits for j in range(wyner_ziv.n_rates)]
    for j, size in enumerate(sizes):
        payload = wyner_ziv.compress({"x": x}, size)
        assert payload.meta[2] == j and payload.nbits <= size
    assert wyner_ziv.compress({"x": x}, min(sizes) - 1).is_empty


def test_side_information_is_required_and_checked(source):
    x, y = source
    codec = WynerZivCodec.load(block_size=N)
    payload = codec.compress_at({"x": x}, 1)
    with pytest.raises(ValueError, match="side information"):
        codec.decompress(payload)
    with pytest.raises(ValueError, match="expected"):
        codec.set_side_information({"x": y[:10]})
    with pytest.raises(ValueError, match="shape"):
        codec.compress({"x": x[:10]}, 10_000)
    bad = Payload("wyner_ziv", payload.streams, b"\0\0" + payload.meta[2:])
    codec.set_side_information({"x": y})
    with pytest.raises(PayloadError, match="model"):
        codec.decompress(bad)


def test_make_codec_and_a_tiny_training_round_trip(tmp_path):
    codec = make_codec("wyner_ziv", [ViewSpec("x", (5,), "float32")], block_size=5)
    assert codec.views[0].shape == (5,)
    tiny = WynerZivCodec.learn(
        tmp_path / "wz.ckpt", dx=0.02, half_range=4.0, n_labels=8, distortions=(3e-3,), iterations=5
    )
    again = WynerZivCodec.load(tmp_path / "wz.ckpt")
    assert np.array_equal(tiny.tables, again.tables) and np.array_equal(tiny.frequencies, again.frequencies)
    with pytest.raises(ValueError, match="distortions"):
        WynerZivConfig(distortions=(0.5,))
