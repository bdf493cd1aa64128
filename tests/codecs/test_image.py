"""RawCodec, JpegCodec and PngCodec: budgets, round trips, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from bwgym.codecs.core.protocol import Payload, PayloadError, ViewSpec
from bwgym.codecs.image.standard import (
    JpegCodec,
    PngCodec,
    RawCodec,
    header_bits,
    image_view_specs,
)

H = W = 84
SPECS = (ViewSpec("arm", (H, W, 3)), ViewSpec("side", (H, W, 3)))
RAW_BITS_ONE_VIEW = 8 * H * W * 3


def scene(seed: int, shape=(H, W, 3)) -> np.ndarray:
    """A rendered-looking frame: smooth gradient background, a few flat blobs, a little noise."""
    rng = np.random.default_rng(seed)
    h, w, c = shape
    y, x = np.mgrid[0:h, 0:w]
    img = np.empty(shape, dtype=np.float64)
    for ch in range(c):
        img[..., ch] = 60 + 80 * (x / w) + 40 * (y / h) * (ch + 1) / c
    for _ in range(4):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(4, 14)
        img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.integers(0, 256, c)
    img += rng.normal(0, 3, shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def views(seed: int = 0) -> dict[str, np.ndarray]:
    return {"arm": scene(seed), "side": scene(seed + 100)}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


CODECS = [RawCodec(SPECS), JpegCodec(SPECS), PngCodec(SPECS)]
# fmt: off
BUDGETS = [0, 1, 79, 80, 81, 500, 2_000, 5_000, 8_000, 10_000, 12_000, 15_000, 20_000, 30_000,
           50_000, 100_000, 169_000, 169_399, 169_400, 169_480, 338_000, 338_799, 338_800, 338_801,
           400_000, 1_000_000]
# fmt: on


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@pytest.mark.parametrize("budget", BUDGETS)
def test_payload_never_exceeds_budget(codec, budget):
    payload = codec.compress(views(1), budget)
    assert payload.nbits <= budget
    assert len(payload.to_bytes()) * 8 == payload.nbits
    decoded = codec.decompress(Payload.from_bytes(payload.to_bytes(), codec=codec.name))
    sent = {name for name, s in zip(codec.view_names, payload.streams, strict=False) if s}
    assert set(decoded) == sent
    for arr in decoded.values():
        assert arr.shape == (H, W, 3) and arr.dtype == np.uint8
        assert arr.flags.writeable


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_payload_is_empty_below_header(codec):
    assert codec.compress(views(), header_bits(2)).is_empty
    assert codec.compress(views(), 0).nbits == 0
    assert codec.decompress(Payload.empty(codec.name)) == {}


def test_raw_sent_exactly_when_it_fits_whole():
    codec = RawCodec(SPECS)
    # 8 bytes of container + per view: 3-byte length prefix + 21168 bytes.
    both = header_bits(2) + 2 * (RAW_BITS_ONE_VIEW + 16)
    assert both == 338_800
    full = codec.compress(views(), both)
    assert full.nbits == both
    assert all(full.streams)
    out = codec.decompress(Payload.from_bytes(full.to_bytes(), codec="raw"))
    for name, arr in views().items():
        np.testing.assert_array_equal(out[name], arr)
    # One bit short: the uniform split leaves each view one bit short of its raw size, and a
    # view's unused share is not handed to another one, so nothing is sent.
    assert codec.compress(views(), both - 1).is_empty
    # Everything to the arm view: the arm fits on about half the budget, the side never.
    arm_only = codec.compress(views(), both // 2 + 100, allocation={"arm": 1.0, "side": 0.0})
    assert arm_only.streams[0] and not arm_only.streams[1]


def test_raw_codec_carries_any_dtype():
    specs = [ViewSpec("proprio", (7,), "float32"), ViewSpec("cam", (4, 4, 3))]
    codec = RawCodec(specs)
    obs = {"proprio": np.linspace(-1, 1, 7, dtype=np.float32), "cam": np.full((4, 4, 3), 9, np.uint8)}
    payload = codec.compress(obs, 10_000)
    out = codec.decompress(Payload.from_bytes(payload.to_bytes(), codec="raw"))
    assert out["proprio"].dtype == np.float32
    np.testing.assert_array_equal(out["proprio"], obs["proprio"])
    np.testing.assert_array_equal(out["cam"], obs["cam"])


def test_png_is_lossless():
    codec = PngCodec(SPECS)
    payload = codec.compress(views(2), 1_000_000)
    out = codec.decompress(Payload.from_bytes(payload.to_bytes(), codec="png"))
    for name, arr in views(2).items():
        np.testing.assert_array_equal(out[name], arr)


def test_jpeg_quality_is_highest_that_fits_and_monotone_in_budget():
    codec = JpegCodec(SPECS)
    img = scene(3)
    sizes = {q: len(JpegCodec.encode_at(img, q)) for q in range(1, 96)}
    qualities = []
    for share in range(4_000, 80_000, 1_500):
        q, stream = codec.fit(img, share)
        # cost = bytes + extra length-prefix bytes beyond the first one
        fitting = [k for k in sizes if 8 * (sizes[k] + (1 if sizes[k] >= 128 else 0)) <= share]
        assert q == (max(fitting) if fitting else None), share
        assert (stream == b"") == (q is None)
        qualities.append(-1 if q is None else q)
    assert qualities == sorted(qualities)
    assert qualities[0] == -1 and qualities[-1] == 95


def test_jpeg_distortion_falls_with_budget():
    codec = JpegCodec(SPECS)
    obs = views(4)
    last = -np.inf
    for budget in (14_000, 20_000, 30_000, 50_000, 100_000):
        payload = codec.compress(obs, budget)
        assert all(payload.streams), budget
        out = codec.decompress(Payload.from_bytes(payload.to_bytes(), codec="jpeg"))
        quality = min(psnr(out[k], obs[k]) for k in obs)
        assert quality >= last - 0.2  # bisection picks the highest fitting quality per view
        last = quality
    assert last > 30


def test_jpeg_allocation_shifts_quality():
    codec = JpegCodec(SPECS)
    obs = {"arm": scene(5), "side": scene(5)}  # same image in both views
    payload = codec.compress(obs, 32_000, allocation={"arm": 3.0, "side": 1.0})
    arm, side = payload.stream_bits
    assert arm > side > 0
    payload = codec.compress(obs, 24_000, allocation={"arm": 1.0, "side": 0.0})
    assert payload.streams[0] and payload.streams[1] == b""
    out = codec.decompress(payload)
    assert set(out) == {"arm"}


def test_grayscale_views_round_trip():
    specs = [ViewSpec("depth", (40, 40, 1))]
    img = scene(6, (40, 40, 1))
    for codec in (JpegCodec(specs), PngCodec(specs)):
        payload = codec.compress({"depth": img}, 200_000)
        out = codec.decompress(Payload.from_bytes(payload.to_bytes(), codec=codec.name))["depth"]
        assert out.shape == (40, 40, 1)
        assert psnr(out, img) > 35


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_corrupt_bytes_raise_payload_error(codec):
    wire = bytearray(codec.compress(views(), 400_000).to_bytes())
    for pos in (0, 7, len(wire) // 2, len(wire) - 1):
        bad = bytearray(wire)
        bad[pos] ^= 0x41
        with pytest.raises(PayloadError):
            codec.decompress(Payload.from_bytes(bytes(bad), codec=codec.name))
    with pytest.raises(PayloadError):
        Payload.from_bytes(bytes(wire[:-5]), codec=codec.name)
    # A valid container around streams that are not what the codec wrote.
    with pytest.raises(PayloadError):
        codec.decompress(Payload(codec.name, (b"not an image at all", b"")))
    with pytest.raises(PayloadError, match="expects 2 streams"):
        codec.decompress(Payload(codec.name, (b"x",)))
    other = "png" if codec.name != "png" else "jpeg"
    with pytest.raises(PayloadError, match="expected"):
        codec.decompress(Payload(other, (b"x", b"")))
    with pytest.raises(PayloadError):
        Payload.from_bytes(wire, codec=other)


def test_truncated_jpeg_stream_raises_payload_error():
    codec = JpegCodec(SPECS)
    stream = codec.compress(views(), 400_000).streams[0]
    with pytest.raises(PayloadError, match="arm"):
        codec.decompress(Payload("jpeg", (stream[: len(stream) // 2], b"")))


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_wrong_views_raise_value_error_naming_the_spec(codec):
    good = views()
    with pytest.raises(ValueError, match=r"expects views \['arm', 'side'\]"):
        codec.compress({"arm": good["arm"], "top": good["side"]}, 10_000)
    with pytest.raises(ValueError, match=r"view 'side': expected uint8 array of shape \(84, 84, 3\)"):
        codec.compress({"arm": good["arm"], "side": good["side"][:64]}, 10_000)
    with pytest.raises(ValueError, match="expected uint8"):
        codec.compress({"arm": good["arm"], "side": good["side"].astype(np.float32)}, 10_000)
    with pytest.raises(ValueError, match="budget_bits"):
        codec.compress(good, -1)
    with pytest.raises(ValueError, match="allocation lacks views"):
        codec.compress(good, 10_000, allocation={"arm": 1.0})


def test_view_specs_are_normalised():
    codec = RawCodec([ViewSpec("cam", [4, 4, 3], np.uint8)])
    assert codec.views == (ViewSpec("cam", (4, 4, 3), "uint8"),)
    codec.compress({"cam": np.zeros((4, 4, 3), np.uint8)}, 1_000)


def test_constructor_validation():
    with pytest.raises(TypeError, match="ViewSpec"):
        RawCodec([("cam", (4, 4, 3))])
    with pytest.raises(ValueError, match=r"expected uint8 of shape \(H, W, 1\|3\)"):
        JpegCodec([ViewSpec("proprio", (7,), "float32")])
    with pytest.raises(ValueError, match="unique"):
        PngCodec([SPECS[0], SPECS[0]])
    with pytest.raises(ValueError, match="at least one"):
        RawCodec([])
    with pytest.raises(ValueError, match="min_quality"):
        JpegCodec(SPECS, min_quality=50, max_quality=40)
    with pytest.raises(ValueError, match="max_quality"):
        JpegCodec(SPECS, max_quality=100)
    with pytest.raises(TypeError, match="int"):
        JpegCodec(SPECS, min_quality=1.5)
    with pytest.raises(ValueError, match="compress_level"):
        PngCodec(SPECS, compress_level=11)


def test_from_observation_space_takes_image_views_only():
    space = spaces.Dict(
        {
            "arm": spaces.Box(0, 255, (H, W, 3), np.uint8),
            "proprio": spaces.Box(-np.inf, np.inf, (9,), np.float32),
            "side": spaces.Box(0, 255, (H, W, 3), np.uint8),
            "mask": spaces.Box(0, 1, (H, W), np.uint8),
        }
    )
    for cls in (RawCodec, JpegCodec, PngCodec):
        codec = cls.from_observation_space(space)
        assert codec.views == SPECS
    assert JpegCodec.from_observation_space(space, max_quality=80).max_quality == 80
    with pytest.raises(TypeError, match="Dict"):
        image_view_specs(spaces.Box(0, 255, (H, W, 3), np.uint8))
    with pytest.raises(ValueError, match="at least one uint8"):
        image_view_specs(spaces.Dict({"proprio": space["proprio"]}))


def test_compress_is_deterministic():
    codec = JpegCodec(SPECS)
    assert codec.compress(views(7), 17_000).to_bytes() == codec.compress(views(7), 17_000).to_bytes()


def test_compress_drops_the_largest_view_of_a_codec_that_overshoots():
    class Sloppy(RawCodec):
        def encode_view(self, spec, array, share_bits):  # ignores its share
            return np.ascontiguousarray(array).tobytes()

    codec = Sloppy([ViewSpec("big", (20, 20, 3)), ViewSpec("small", (4, 4, 3))])
    obs = {"big": np.ones((20, 20, 3), np.uint8), "small": np.ones((4, 4, 3), np.uint8)}
    payload = codec.compress(obs, 1_000)
    assert payload.nbits <= 1_000
    assert payload.streams[0] == b"" and len(payload.streams[1]) == 48
    assert codec.compress(obs, 100).is_empty


def test_jpeg_stream_of_another_size_is_a_payload_error():
    codec = JpegCodec(SPECS)
    small = JpegCodec.encode_at(scene(8, (40, 84, 3)), 50)
    with pytest.raises(PayloadError, match=r"expected a 84x84 image with 3 components, the stream holds 40x"):
        codec.decompress(Payload("jpeg", (small, b"")))


def test_jpeg_bytes_are_exactly_what_pillow_saves():
    import io

    from PIL import Image

    img = scene(9)
    for q in (1, 13, 50, 77, 95):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=q)
        assert JpegCodec.encode_at(img, q) == buf.getvalue()
