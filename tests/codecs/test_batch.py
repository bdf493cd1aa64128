"""Batched compress/decompress and the fast rate search of the latent codecs."""

from __future__ import annotations

import numpy as np
import pytest
from golden_wire import ENV_ID, frames

from bwgym.codecs import make_codec
from bwgym.codecs.core.latent import _SLACK_BITS, _FrameSearch
from bwgym.codecs.core.protocol import FRAME_OVERHEAD_BITS, Payload

VIEWS = {"arm": (84, 84, 3), "side": (84, 84, 3)}


@pytest.fixture(scope="module")
def ndpca():
    return make_codec("ndpca", VIEWS, env_id=ENV_ID)


@pytest.fixture(scope="module")
def views():
    return frames()[:8]


def test_compress_batch_gives_the_bytes_of_single_calls(ndpca, views):
    budgets = [24, 115, 300, 1024, 5000, 16384, 0, 90]
    splits = [None, {"arm": 0.8, "side": 0.2}, None, {"arm": 0.3, "side": 0.7}, None, None, None, None]
    batch = ndpca.compress_batch(views, budgets, splits)
    single = [ndpca.compress(v, b, a) for v, b, a in zip(views, budgets, splits, strict=True)]
    assert [p.to_bytes() for p in batch] == [p.to_bytes() for p in single]
    decoded = ndpca.decompress_batch(batch)
    for payload, out in zip(single, decoded, strict=True):
        expected = ndpca.decompress(payload)
        assert out.keys() == expected.keys()
        assert all(np.array_equal(out[k], expected[k]) for k in out)


def test_batched_networks_path_fits_and_decodes(views):
    """The CUDA path (one network pass for all N), run on CPU: valid frames within every budget."""
    codec = make_codec("ndpca", VIEWS, env_id=ENV_ID)
    codec.batch_networks = True
    budgets = [32, 115, 600, 4000, 16384, 10, 200, 2000]
    payloads = codec.compress_batch(views, budgets)
    assert all(p.nbits <= b for p, b in zip(payloads, budgets, strict=True))
    assert payloads[5].is_empty and not payloads[0].is_empty
    wire = [Payload.from_bytes(p.to_bytes(), codec="ndpca", session=codec.session) for p in payloads]
    decoded = codec.decompress_batch(wire)
    single = [codec.decompress(p) for p in wire]
    for a, b in zip(decoded, single, strict=True):
        assert a.keys() == b.keys()
        # the same frames; the pixels up to the float rounding of a batched decoder pass
        assert all(np.abs(a[k].astype(int) - b[k].astype(int)).max() <= 1 for k in a)
    with pytest.raises(ValueError, match="one budget"):
        codec.compress_batch(views[:2], [100])


@pytest.mark.parametrize("name", ["ndpca", "dae", "linear_dpca"])
def test_latent_size_prediction_is_a_lower_bound_and_frames_fit(name, views):
    """Property: over random frames and budgets, the one-shot latent prediction never exceeds the
    frame's own prediction (so it never rules out a header that fits), and no frame exceeds its budget."""
    codec = make_codec(name, VIEWS, env_id=ENV_ID)
    rng = np.random.default_rng(0)
    headers = tuple(range(codec._h_limit() + 1))
    for trial in range(12):
        v = views[trial % len(views)]
        if trial % 3 == 2:  # frames far from the training data too
            v = {k: rng.integers(0, 256, x.shape, dtype=np.uint8) for k, x in v.items()}
        search = _FrameSearch(codec, v)
        lower = search.latent_bits(headers, 0).sum(axis=1)
        for h in rng.choice(len(headers), 12, replace=False):
            assert lower[h] <= search.coded(headers[h], 0).bits.sum() + 1e-9
        for budget in rng.integers(0, 20_000, 6):
            payload = codec.compress(v, int(budget))
            assert payload.nbits <= budget
            if budget >= FRAME_OVERHEAD_BITS + 32 and trial % 3 != 2:
                assert not payload.is_empty
        # the frame chosen is the largest whose real encoding fits: one header finer does not
        budget = 700
        payload = codec.compress(v, budget)
        if not payload.is_empty and payload.meta[0] < headers[-1]:
            finer = codec._frame(search, payload.meta[0] + 1, 0, codec.session)
            predicted = float(search.coded(payload.meta[0] + 1, 0).bits.sum()) + _SLACK_BITS
            assert finer.nbits > budget or predicted > budget - FRAME_OVERHEAD_BITS
