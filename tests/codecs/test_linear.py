"""LinearDPCACodec and PCACodec: budgets, round trips, determinism, checkpoints, bad input."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest

from bwgym.codecs import load_codec, make_codec
from bwgym.codecs.core.dpca import DPCA
from bwgym.codecs.core.latent import JOINT
from bwgym.codecs.core.protocol import Payload, PayloadError, ViewSpec
from bwgym.codecs.image.linear import LinearDPCACodec, PCACodec

SIZE = 32
BUDGETS = [0, 10, 50, 200, 1000, 10_000, 100_000]


def _frames(n: int, seed: int) -> dict[str, np.ndarray]:
    """Two cameras on one scene: a red square on a circle-ish path, seen close (arm) and far (side)."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi, n)
    radius = rng.uniform(0.3, 1.0, n)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    arm = np.empty((n, SIZE, SIZE, 3), np.uint8)
    side = np.empty_like(arm)
    arm[:] = np.stack([40 + 3 * yy, 60 + 2 * xx, np.full_like(yy, 90)], -1)
    side[:] = (90, 80, 60)
    for i in range(n):
        cy, cx = 12 + 9 * radius[i] * np.sin(angle[i]), 12 + 9 * radius[i] * np.cos(angle[i])
        y, x = int(round(cy)), int(round(cx))
        arm[i, y : y + 8, x : x + 8] = (230, 40, 40)
        sy, sx = int(round(14 + 4 * radius[i] * np.sin(angle[i]))), int(round(14 + 4 * np.cos(angle[i])))
        side[i, sy : sy + 4, sx : sx + 4] = (220, 220, 30)
        side[i, 28:30, : int(4 + 24 * radius[i])] = (20, 160, 20)  # a gauge only the side camera sees
    return {"arm": arm, "side": side}


def _psnr(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    mse = np.mean([np.mean((a[k].astype(float) - b[k].astype(float)) ** 2) for k in a])
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


@pytest.fixture(scope="module")
def train() -> dict[str, np.ndarray]:
    return _frames(200, seed=0)


@pytest.fixture(scope="module")
def test_views() -> list[dict[str, np.ndarray]]:
    frames = _frames(3, seed=1)
    return [{k: v[i] for k, v in frames.items()} for i in range(3)]


@pytest.fixture(scope="module")
def codecs(train: dict[str, np.ndarray]) -> dict[str, LinearDPCACodec | PCACodec]:
    return {
        "linear_dpca": LinearDPCACodec.fit(train, max_components=64, env_id="bwgym/Test-v0"),
        "pca": PCACodec.fit(train, max_components=128, env_id="bwgym/Test-v0"),
    }


@pytest.mark.parametrize("name", ["linear_dpca", "pca"])
def test_budget_sweep_fits_and_quality_grows(name: str, codecs, test_views) -> None:
    codec = codecs[name]
    for views in test_views:
        psnrs = []
        for budget in BUDGETS:
            payload = codec.compress(views, budget)
            assert payload.nbits <= budget
            assert payload.codec == name
            if budget < 16:  # below the smallest lean frame (header byte + CRC-8): nothing is sent
                assert payload.is_empty and payload.to_bytes() == b""
                assert codec.decompress(payload) == {}
                continue
            assert not payload.is_empty and payload.nbits - sum(payload.stream_bits) == 16
            decoded = codec.decompress(
                Payload.from_bytes(payload.to_bytes(), codec=name, session=codec.session)
            )
            assert set(decoded) == set(views)
            assert all(decoded[k].dtype == np.uint8 and decoded[k].shape == views[k].shape for k in views)
            psnrs.append(_psnr(views, decoded))
        assert all(b >= a - 0.5 for a, b in zip(psnrs, psnrs[1:], strict=False)), psnrs
        assert psnrs[-1] > psnrs[0] + 1, psnrs  # saturates once every fitted component is sent


@pytest.mark.parametrize("name", ["linear_dpca", "pca"])
def test_round_trip_and_determinism(name: str, codecs, test_views) -> None:
    codec = codecs[name]
    views = test_views[0]
    payload = codec.compress(views, 2_000)
    wire = payload.to_bytes()
    assert codec.compress({k: v.copy() for k, v in views.items()}, 2_000).to_bytes() == wire
    direct = codec.decompress(payload)
    parsed = codec.decompress(Payload.from_bytes(wire, session=codec.session))
    assert all(np.array_equal(direct[k], parsed[k]) for k in views)


def test_codec_pickles_for_subprocess_envs(codecs, test_views) -> None:
    codec = codecs["linear_dpca"]
    payload = codec.compress(test_views[0], 1_500)
    clone = pickle.loads(pickle.dumps(codec))
    assert clone.compress(test_views[0], 1_500).to_bytes() == payload.to_bytes()


def test_dpca_header_reports_allocation_per_view(codecs, test_views) -> None:
    codec = codecs["linear_dpca"]
    payload = codec.compress(test_views[0], 1_000)
    step_idx, dims = codec.read_header(payload)
    assert len(payload.meta) == 1 and len(payload.streams) == 1 and payload.session.split == 0
    # every component whose scale is at least a quarter of the step, in DPCA order per view
    for name, sigma in zip(codec.stream_names, codec.latent_model.sigma_idx, strict=True):
        assert dims[name] == int(np.sum(sigma >= max(step_idx, 0) - 16))
    assert all((n == 0) == (b == 0) for n, b in zip(dims.values(), payload.stream_bits, strict=True))
    assert sum(payload.stream_bits) == 8 * len(payload.streams[0])


def test_view_with_no_components_decodes_to_its_mean(codecs, test_views) -> None:
    codec = codecs["linear_dpca"]
    views = test_views[1]
    payload = codec.compress(views, 10_000, allocation={"arm": 1.0, "side": 0.0})
    assert payload.nbits <= 10_000
    decoded = codec.decompress(payload)
    mean_side = np.clip(np.rint(codec.latent_model.means[1]), 0, 255).astype(np.uint8).reshape(SIZE, SIZE, 3)
    assert set(decoded) == {"arm", "side"}
    assert np.array_equal(decoded["side"], mean_side)
    assert payload.stream_bits[1] == 0 and payload.session.split == 1
    split = codec.compress(views, 10_000, allocation={"arm": 0.5, "side": 0.5})
    assert split.nbits <= 10_000 and all(split.stream_bits)


def test_save_load_round_trip_and_spec_checks(codecs, test_views, tmp_path) -> None:
    specs = [ViewSpec("arm", (SIZE, SIZE, 3)), ViewSpec("side", (SIZE, SIZE, 3))]
    for name, codec in codecs.items():
        path = tmp_path / f"{name}.ckpt"
        codec.save(path)
        loaded = type(codec).load(path)
        loaded.check_spec(env_id="bwgym/Test-v0", views={"arm": (SIZE, SIZE, 3), "side": (SIZE, SIZE, 3)})
        by_name = make_codec(name, specs, env_id="bwgym/Test-v0", checkpoint=path)
        assert type(load_codec(path)) is type(codec) is type(by_name)
        assert loaded.views == codec.views and loaded.env_id == codec.env_id
        payload = codec.compress(test_views[2], 3_000)
        assert loaded.compress(test_views[2], 3_000).to_bytes() == payload.to_bytes()
        assert by_name.compress(test_views[2], 3_000).to_bytes() == payload.to_bytes()
        a, b = codec.decompress(payload), loaded.decompress(payload)
        assert all(np.array_equal(a[k], b[k]) for k in a)
        with pytest.raises(ValueError) as err:
            loaded.check_spec(env_id="bwgym/LocateLift-v0")
        assert "bwgym/Test-v0" in str(err.value) and "bwgym/LocateLift-v0" in str(err.value)
        with pytest.raises(ValueError) as err:
            make_codec(name, specs, env_id="bwgym/LocateLift-v0", checkpoint=path)
        assert "bwgym/Test-v0" in str(err.value) and "bwgym/LocateLift-v0" in str(err.value)
        with pytest.raises(ValueError) as err:
            loaded.check_spec(views=[ViewSpec("arm", (84, 84, 3)), ViewSpec("side", (84, 84, 3))])
        # both shapes named (the one checkpoint format writes them as JSON lists)
        assert re.search(r"[(\[]32, 32, 3[)\]]", str(err.value)), str(err.value)
        assert re.search(r"[(\[]84, 84, 3[)\]]", str(err.value)), str(err.value)
        with pytest.raises(ValueError, match="'wrist'"):
            loaded.check_spec(views={"arm": (SIZE, SIZE, 3), "wrist": (SIZE, SIZE, 3)})
    with pytest.raises(ValueError, match="checkpoint of 'codec/pca'"):
        LinearDPCACodec.load(tmp_path / "pca.ckpt")


def test_latent_model_is_always_dpca(codecs) -> None:
    """Joint PCA is DPCA with one stream named "joint"; the distributed codec has one per view."""
    dist, joint = codecs["linear_dpca"], codecs["pca"]
    assert isinstance(dist.latent_model, DPCA) and isinstance(joint.latent_model, DPCA)
    assert dist.stream_names == ("arm", "side") and joint.stream_names == (JOINT,)
    assert dist.latent_model.ranks == (64, 64) and joint.latent_model.ranks == (128,)


def test_bad_views_raise_value_error(codecs, test_views) -> None:
    codec = codecs["linear_dpca"]
    views = test_views[0]
    with pytest.raises(ValueError, match="expects views"):
        codec.compress({"arm": views["arm"]}, 1_000)
    with pytest.raises(ValueError, match="expects views"):
        codec.compress({"arm": views["arm"], "wrist": views["side"]}, 1_000)
    with pytest.raises(ValueError, match="shape"):
        codec.compress({"arm": views["arm"][:16], "side": views["side"]}, 1_000)
    with pytest.raises(ValueError, match="uint8"):
        codec.compress({"arm": views["arm"].astype(np.float32), "side": views["side"]}, 1_000)
    with pytest.raises(ValueError, match="budget_bits"):
        codec.compress(views, -1)


def test_corrupt_payloads_raise_payload_error(codecs, test_views) -> None:
    codec = codecs["linear_dpca"]
    session = codec.session
    payload = codec.compress(test_views[0], 1_000)
    wire = payload.to_bytes()
    for bit in range(8 * len(wire)):  # every single-bit error
        flipped = bytearray(wire)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(PayloadError):
            codec.decompress(Payload.from_bytes(bytes(flipped), session=session))
    with pytest.raises(PayloadError):
        codec.decompress(Payload.from_bytes(wire[:-3], session=session))
    # well-formed frames with a header or body the model cannot have
    for bad in [
        Payload("linear_dpca", payload.streams, bytes([255]), session),
        Payload("linear_dpca", (payload.streams[0] + b"\x07",), payload.meta, session),
    ]:
        with pytest.raises(PayloadError):
            codec.decompress(Payload.from_bytes(bad.to_bytes(), session=session))
    with pytest.raises(PayloadError, match="session mismatch"):
        codecs["pca"].decompress(
            Payload(
                "pca",
                payload.streams,
                payload.meta,
                codecs["pca"].session.__class__("pca", session.fingerprint, 1, 0),
            )
        )
    with pytest.raises(PayloadError, match="no session"):
        codec.decompress(Payload.from_bytes(wire, codec="linear_dpca"))


def test_float_vector_views_and_downsampling(train) -> None:
    rng = np.random.default_rng(5)
    latent = rng.standard_normal((200, 3))
    vectors = {
        "imu": (latent @ rng.standard_normal((3, 12))).astype(np.float32),
        "gps": latent[:, :2].astype(np.float32),
    }
    codec = LinearDPCACodec.fit(vectors, max_components=8)
    assert codec.views == (ViewSpec("imu", (12,), "float32"), ViewSpec("gps", (2,), "float32"))
    sample = {k: v[0] for k, v in vectors.items()}
    payload = codec.compress(sample, 600)
    assert payload.nbits <= 600
    decoded = codec.decompress(payload)
    assert decoded["imu"].dtype == np.float32 and decoded["imu"].shape == (12,)
    assert np.allclose(decoded["imu"], sample["imu"], atol=0.05 * np.abs(sample["imu"]).max())

    small = LinearDPCACodec.fit(train, max_components=16, downsample=4)
    assert small.latent_model.dims == (8 * 8 * 3, 8 * 8 * 3)
    views = {k: v[0] for k, v in train.items()}
    payload = small.compress(views, 2_000)
    assert payload.nbits <= 2_000
    assert small.decompress(payload)["arm"].shape == (SIZE, SIZE, 3)
    with pytest.raises(ValueError, match="multiples of downsample=5"):
        LinearDPCACodec.fit(train, downsample=5)
