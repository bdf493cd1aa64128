"""Learned latent codecs (NDPCA, DAE, JAE) behind the codec protocol: budgets, bytes, checkpoints.

The codecs are trained for a few steps on 32x32 LocateLift frames: their quality is poor, but every
property tested here (budgets, exact bytes, round trips, errors) must hold for any weights.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from budget_sweep import sweep_budgets  # noqa: E402
from tiny_agent import SIZE, TinyAgent, collect_lift_frames, tiny_agent, tiny_config  # noqa: E402,F401

import bwgym  # noqa: F401  (registers the envs; before mujoco)
from bwgym.codecs import load_codec
from bwgym.codecs.core.dpca import DPCA
from bwgym.codecs.core.latent import JOINT
from bwgym.codecs.core.protocol import Payload, PayloadError
from bwgym.codecs.image.ndpca import NDPCACodec
from bwgym.codecs.image.networks import EqualSplitProjection, LatentAutoencoder, round_to_float16
from bwgym.codecs.image.neural import DAECodec, JAECodec, NeuralLatentCodec
from bwgym.codecs.train import train_codec
from bwgym.common.checkpoint import load_checkpoint

ENV_ID = "bwgym/LocateLift-v0"
BUDGETS = [0, 10, 50, 80, 120, 200, 400, 1000, 5000, 20_000, 100_000]
NAMES = ["ndpca", "dae", "jae"]


@pytest.fixture(scope="session")
def lift_frames(tmp_path_factory) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Expert frames of 6 LocateLift episodes at 32x32."""
    return collect_lift_frames(tmp_path_factory, episodes=6, seed=0)


@pytest.fixture(scope="module")
def codecs(lift_frames) -> dict[str, NeuralLatentCodec]:
    frames, episodes = lift_frames
    out = {}
    for name in NAMES:
        out[name] = train_codec(
            tiny_config(name, steps=25), frames, episodes, agent=tiny_agent(), progress=False
        )
    return out


@pytest.fixture(scope="module")
def views(lift_frames) -> list[dict[str, np.ndarray]]:
    frames, _ = lift_frames
    rows = [0, len(frames["arm"]) // 2, len(frames["arm"]) - 1]
    return [{k: v[i] for k, v in frames.items()} for i in rows]


def _latent_error(codec: NeuralLatentCodec, obs: dict[str, np.ndarray], payload: Payload) -> float:
    coeffs, decoded = codec.coefficients(obs), codec.decoded_coefficients(payload)
    return float(sum(np.sum((coeffs[n] - decoded[n]) ** 2) for n in codec.stream_names))


@pytest.mark.parametrize("name", NAMES)
def test_budget_sweep_fits_and_error_falls(name: str, codecs, views) -> None:
    codec = codecs[name]
    for obs in views:
        errors = []
        for payload in sweep_budgets(codec, obs, BUDGETS):
            if payload.is_empty:
                assert sum(codec.allocation_of(payload).values()) == 0
                assert codec.decompress(payload) == {}
                continue
            decoded = codec.decompress(payload)
            assert set(decoded) == {"arm", "side"}
            assert all(d.dtype == np.uint8 and d.shape == (SIZE, SIZE, 3) for d in decoded.values())
            errors.append(_latent_error(codec, obs, payload))
        assert codec.compress(obs, 0).is_empty
        # more bits, less latent distortion (the search is coarse to fine, so only overall)
        assert errors[-1] <= errors[0], errors
        assert errors[-1] <= 0.05 * errors[0] or errors[-1] < 1e-6, errors


@pytest.mark.parametrize("name", NAMES)
def test_wire_round_trip_and_determinism(name: str, codecs, views) -> None:
    codec = codecs[name]
    for obs in views:
        payload = codec.compress(obs, 500)
        again = codec.compress(obs, 500)
        assert payload.to_bytes() == again.to_bytes()
        received = Payload.from_bytes(payload.to_bytes(), codec=name, session=codec.session)
        direct, wired = codec.decompress(payload), codec.decompress(received)
        for k in direct:
            np.testing.assert_array_equal(direct[k], wired[k])


@pytest.mark.parametrize("name", NAMES)
def test_emitted_bytes_match_model_rate(name: str, codecs, views) -> None:
    codec = codecs[name]
    for obs in views:
        for budget in (150, 600, 3000, 20_000):
            payload = codec.compress(obs, budget)
            if payload.is_empty:
                continue
            estimate = codec.estimate_bits(obs, payload)
            body_bits = sum(payload.stream_bits)
            # within 2 % of the model's ideal length, plus byte alignment and the coder's flush
            assert body_bits <= 1.02 * estimate + 16, (budget, body_bits, estimate)
            assert body_bits >= 0.98 * estimate - 8, (budget, body_bits, estimate)
            assert payload.nbits - body_bits == 16  # the lean frame's header byte and CRC-8


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_round_trip_same_bytes(name: str, codecs, views, tmp_path) -> None:
    codec = codecs[name]
    path = codec.save(tmp_path / f"{name}.ckpt")
    loaded = load_codec(path, device="cpu")
    loaded.check_spec(env_id=ENV_ID, views={"arm": (SIZE, SIZE, 3), "side": (SIZE, SIZE, 3)})
    assert type(loaded) is type(codec)
    assert loaded.train_config == codec.train_config
    for obs in views:
        a, b = codec.compress(obs, 700), loaded.compress(obs, 700)
        assert a.to_bytes() == b.to_bytes()
        for k, v in codec.decompress(a).items():
            np.testing.assert_array_equal(v, loaded.decompress(b)[k])
    # the one checkpoint format: kind codec/<name>, plain-JSON metadata, library versions, arrays
    ckpt = load_checkpoint(path, kind=f"codec/{name}")
    meta = ckpt.metadata
    assert json.loads(json.dumps(meta)) == meta
    for key in ("codec", "env_id", "views", "arch", "latent_dims", "train_config"):
        assert key in meta
    assert meta["views"] == {v: {"shape": [SIZE, SIZE, 3], "dtype": "uint8"} for v in ("arm", "side")}
    assert "bwgym" in ckpt.versions
    net = {k: v for k, v in ckpt.state.items() if k.startswith("net.")}
    assert net and all(v.dtype in (np.float16, np.int64) for v in net.values())
    assert any(k.startswith("latent_model.") for k in ckpt.state)


def test_decoder_in_fresh_process_reproduces_reconstruction(codecs, views, tmp_path) -> None:
    """Each codec's checkpoint and wire bytes alone reproduce the encoder side's decoding, exactly."""
    sent = {}
    for name, codec in codecs.items():
        codec.save(tmp_path / f"{name}.ckpt")
        for i, (obs, budget) in enumerate(zip(views, (300, 1000, 5000), strict=True)):
            sent[name, i] = codec.compress(obs, budget)
            (tmp_path / f"{name}_{i}.bin").write_bytes(sent[name, i].to_bytes())
    script = (
        "import glob, os, numpy as np, torch\n"
        "torch.set_num_threads(1)\n"
        "import bwgym\n"
        "from bwgym.codecs.core.protocol import Payload\n"
        "from bwgym.codecs import load_codec\n"
        f"root = {str(tmp_path)!r}\n"
        "out = {}\n"
        "for path in sorted(glob.glob(root + '/*.ckpt')):\n"
        "    name = os.path.basename(path)[:-5]\n"
        "    codec = load_codec(path, device='cpu')\n"
        "    for wire in sorted(glob.glob(f'{root}/{name}_*.bin')):\n"
        "        d = codec.decompress(Payload.from_bytes(open(wire, 'rb').read(), session=codec.session))\n"
        "        out.update({os.path.basename(wire)[:-4] + '_' + k: v for k, v in d.items()})\n"
        "np.savez(root + '/out.npz', **out)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    with np.load(tmp_path / "out.npz") as remote:
        assert len(remote.files) == 2 * len(sent)
        for (name, i), payload in sent.items():
            for k, v in codecs[name].decompress(payload).items():
                np.testing.assert_array_equal(remote[f"{name}_{i}_{k}"], v)


@pytest.mark.parametrize("name", NAMES)
def test_corrupt_payloads_raise_payload_error(name: str, codecs, views) -> None:
    codec = codecs[name]
    session = codec.session
    payload = codec.compress(views[1], 800)
    wire = payload.to_bytes()
    for cut in (1, 3, len(wire) // 2, len(wire) - 1):
        with pytest.raises(PayloadError):
            codec.decompress(Payload.from_bytes(wire[:cut], session=session))
    for bit in range(8 * len(wire)):  # every single-bit error
        flipped = bytearray(wire)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(PayloadError):
            codec.decompress(Payload.from_bytes(bytes(flipped), session=session))
    # well-formed frames (valid CRC) with an impossible header or a body that is not canonical
    with pytest.raises(PayloadError, match="header"):
        codec.decompress(Payload(name, payload.streams, bytes([255]), session))
    with pytest.raises(PayloadError):
        codec.decompress(Payload(name, (payload.streams[0] + b"\x01",), payload.meta, session))
    with pytest.raises(PayloadError):
        codec.decompress(Payload("jpeg", (b"x",)))
    # no session, or another codec's session
    with pytest.raises(PayloadError, match="no session"):
        Payload.from_bytes(wire, codec=name)
    with pytest.raises(PayloadError, match="no session"):
        codec.decompress(Payload(name, payload.streams, payload.meta))
    # the same codec from another checkpoint: another fingerprint, so another session
    clone = pickle.loads(pickle.dumps(codec))
    clone.latent_model.means[0] = clone.latent_model.means[0] + 1.0
    clone.__dict__.pop("_fingerprint", None)
    assert clone.session != session
    with pytest.raises(PayloadError, match="session mismatch") as err:
        clone.decompress(payload)
    assert session.fingerprint.hex() in str(err.value) and clone.session.fingerprint.hex() in str(err.value)
    with pytest.raises(PayloadError, match="another session"):
        Payload.from_bytes(wire, session=clone.session)


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_for_other_spec_raises_value_error(name: str, codecs, tmp_path) -> None:
    from bwgym.codecs import make_codec
    from bwgym.codecs.core.protocol import ViewSpec

    path = codecs[name].save(tmp_path / f"{name}.ckpt")
    cls = type(codecs[name])
    with pytest.raises(ValueError, match="bwgym/Other-v0") as err:
        cls.load(path).check_spec(env_id="bwgym/Other-v0")
    assert ENV_ID in str(err.value)
    small = [ViewSpec("arm", (SIZE, SIZE, 3)), ViewSpec("side", (SIZE, SIZE, 3))]
    with pytest.raises(ValueError, match="bwgym/Other-v0") as err:
        make_codec(name, small, env_id="bwgym/Other-v0", checkpoint=path, device="cpu")
    assert ENV_ID in str(err.value)
    loaded = load_codec(path)
    with pytest.raises(ValueError, match="front"):
        loaded.check_spec(views={"arm": (SIZE, SIZE, 3), "front": (SIZE, SIZE, 3)})
    with pytest.raises(ValueError, match="84") as err:
        loaded.check_spec(views={"arm": (84, 84, 3), "side": (84, 84, 3)})
    assert str(SIZE) in str(err.value)  # both sides named
    big = [ViewSpec("arm", (84, 84, 3)), ViewSpec("side", (84, 84, 3))]
    with pytest.raises(ValueError, match=r"[(\[]84, 84, 3[)\]]"):
        make_codec(name, big, env_id=ENV_ID, checkpoint=path, device="cpu")
    other = NDPCACodec if cls is not NDPCACodec else DAECodec
    with pytest.raises(ValueError, match=f"checkpoint of 'codec/{name}'"):
        other.load(path)
    other_name = "ndpca" if name != "ndpca" else "dae"
    with pytest.raises(ValueError, match=f"codec/{name}") as err:
        make_codec(other_name, small, checkpoint=path)
    assert f"codec/{other_name}" in str(err.value)
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a"):
        load_codec(tmp_path / "junk.ckpt")


@pytest.mark.parametrize("name", NAMES)
def test_codec_pickles_for_subprocess_workers(name: str, codecs, views) -> None:
    codec = codecs[name]
    clone = pickle.loads(pickle.dumps(codec))
    a, b = codec.compress(views[0], 600), clone.compress(views[0], 600)
    assert a.to_bytes() == b.to_bytes()


@pytest.mark.parametrize("name", NAMES)
def test_bad_views_raise_value_error(name: str, codecs, views) -> None:
    codec = codecs[name]
    with pytest.raises(ValueError, match="expects views"):
        codec.compress({"arm": views[0]["arm"]}, 500)
    with pytest.raises(ValueError, match="shape"):
        codec.compress({"arm": views[0]["arm"][:16], "side": views[0]["side"]}, 500)
    with pytest.raises(ValueError, match="budget_bits"):
        codec.compress(views[0], -1)


def test_dae_splits_components_equally(codecs, views) -> None:
    codec = codecs["dae"]
    for budget in (150, 400, 2000):
        codec.compress(views[1], budget)
        dims = codec.last_allocation
        assert abs(dims["arm"] - dims["side"]) <= 1
        assert dims["arm"] >= dims["side"]  # the first view gets the odd component


def test_jae_sends_one_joint_stream(codecs, views) -> None:
    codec = codecs["jae"]
    payload = codec.compress(views[1], 400)
    assert len(payload.streams) == 1
    assert list(codec.last_allocation) == [JOINT]
    assert codec.net.joint and codec.latent_dims == {JOINT: 16}


def test_allocation_imposes_a_split_when_given(codecs, views) -> None:
    """Every latent codec honours the allocator's split when given one (``follow_allocation`` is gone).

    Before the restructuring a codec ignored ``allocation`` unless built with
    ``follow_allocation=True``; now the split is an input every codec honours, and without one
    DPCA chooses.
    """
    for name in ("ndpca", "dae"):
        codec = codecs[name]
        payload = codec.compress(views[1], 2000, allocation={"arm": 1.0, "side": 0.0})
        assert codec.last_allocation["side"] == 0, name
        assert codec.allocation_of(payload) == codec.last_allocation
        assert payload.stream_bits[1] == 0 and payload.stream_bits[0] > 0 and payload.session.split == 1
        other = codec.compress(views[1], 2000, allocation={"arm": 0.0, "side": 1.0})
        assert codec.last_allocation["arm"] == 0, name
        assert other.stream_bits[0] == 0 and other.stream_bits[1] > 0
        # an equal request lands nearer to equal than either extreme
        half = codec.compress(views[1], 2000, allocation={"arm": 0.5, "side": 0.5})
        assert 0 < half.stream_bits[0] < sum(half.stream_bits)
    codec = codecs["ndpca"]
    own = codec.compress(views[1], 2000)  # no allocation: DPCA's own split
    assert own.session.split == 0 and all(b > 0 for b in own.stream_bits)
    jae = codecs["jae"]  # one joint stream: nothing to split, the allocation changes nothing
    a = jae.compress(views[1], 2000, allocation={"arm": 1.0, "side": 0.0})
    assert a.to_bytes() == jae.compress(views[1], 2000).to_bytes()


def test_network_shapes_padding_and_float16_rounding() -> None:
    for size in ((32, 32), (30, 30), (84, 84), (64, 48)):
        net = LatentAutoencoder(["a", "b"], size, {"a": 4, "b": 5}, channels=(4, 8, 8))
        x = {v: torch.rand(2, 3, *size) for v in "ab"}
        z = net.encode(x)
        assert z["a"].shape == (2, 4) and z["b"].shape == (2, 5)
        out = net.decode(z)
        assert out["a"].shape == (2, 3, *size)
        assert float(out["b"].detach().min()) >= 0 and float(out["b"].detach().max()) <= 1
    round_to_float16(net)
    for p in net.parameters():
        assert torch.equal(p, p.half().float())
    with pytest.raises(ValueError, match="latent_dims"):
        LatentAutoencoder(["a", "b"], (32, 32), {"a": 4})


def test_joint_network_starts_as_the_distributed_one() -> None:
    torch.manual_seed(0)
    dist = LatentAutoencoder(["a", "b"], (32, 32), {"a": 4, "b": 4}, channels=(4, 8, 8))
    joint = LatentAutoencoder(["a", "b"], (32, 32), {JOINT: 8}, joint=True, channels=(4, 8, 8))
    joint.initialise_from(dist)
    x = {v: torch.rand(3, 3, 32, 32) for v in "ab"}
    zd, zj = dist.encode(x), joint.encode(x)
    torch.testing.assert_close(torch.cat([zd["a"], zd["b"]], 1), zj[JOINT])
    torch.testing.assert_close(dist.decode(zd)["b"], joint.decode(zj)["b"])
    with pytest.raises(ValueError, match="cannot initialise"):
        dist.initialise_from(joint)


def test_equal_split_projection_matches_inference_order() -> None:
    proj = EqualSplitProjection({"arm": 3, "side": 5})
    assert proj.split(0) == {"arm": 0, "side": 0}
    assert proj.split(3) == {"arm": 2, "side": 1}
    assert proj.split(8) == {"arm": 3, "side": 5}
    out = proj({"arm": torch.randn(16, 3), "side": torch.randn(16, 5)}, m=4)
    assert out.dims == {"arm": 2, "side": 2}
    assert out.z_hat["side"].shape == (16, 5)


def test_jae_and_dae_classes(codecs) -> None:
    assert DAECodec.name == "dae" and not DAECodec.joint
    assert JAECodec.name == "jae" and JAECodec.joint
    # the latent model is always a DPCA; the joint reference is DPCA with one stream "joint"
    jae, dae = codecs["jae"], codecs["dae"]
    assert isinstance(jae.latent_model, DPCA) and isinstance(dae.latent_model, DPCA)
    assert jae.stream_names == (JOINT,) and dae.stream_names == ("arm", "side")
