"""The lean per-step frame of the latent codecs: overhead, sessions, corruption, the rate range.

A linear DPCA codec with its residual layer, fitted in a second on synthetic two-camera frames,
stands for the whole LatentCodec family here (the frame code is shared); the learned codecs get
the same checks in ``test_autoencoders.py`` and, for the shipped checkpoints, in
``test_shipped_range.py``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from budget_sweep import sweep_budgets  # noqa: E402

from bwgym.codecs.core.corruption import corrupt_bits, detection_rate
from bwgym.codecs.core.protocol import (
    FRAME_OVERHEAD_BITS,
    SESSION_BYTES,
    Payload,
    PayloadError,
    Session,
    crc8,
)
from bwgym.codecs.image.linear import LinearDPCACodec, PCACodec

SIZE = 24
BUDGETS = [
    0,
    8,
    15,
    16,
    24,
    32,
    48,
    64,
    100,
    160,
    250,
    400,
    640,
    1000,
    1600,
    2500,
    4000,
    6400,
    10_000,
    16_000,
]


def _frames(n: int, seed: int) -> dict[str, np.ndarray]:
    """Two cameras on one textured scene with a moving square: enough detail for 16 kbit."""
    rng = np.random.default_rng(seed)
    texture = np.random.default_rng(99).integers(0, 60, (SIZE, SIZE, 3))
    out = {}
    for v, (lo, hi) in {"arm": (30, 200), "side": (60, 160)}.items():
        frames = np.empty((n, SIZE, SIZE, 3), np.uint8)
        for i in range(n):
            img = lo + texture + rng.normal(0, 6, (SIZE, SIZE, 3))
            y, x = rng.integers(0, SIZE - 6, 2)
            img[y : y + 6, x : x + 6] = (hi, 40, 40)
            frames[i] = np.clip(img, 0, 255).astype(np.uint8)
        out[v] = frames
    return out


@pytest.fixture(scope="module")
def codecs() -> dict[str, LinearDPCACodec | PCACodec]:
    train = _frames(120, seed=0)
    return {
        "linear_dpca": LinearDPCACodec.fit(train, max_components=16, downsample=2, env_id="bwgym/Test-v0"),
        "pca": PCACodec.fit(train, max_components=24, downsample=2, env_id="bwgym/Test-v0"),
    }


@pytest.fixture(scope="module")
def views() -> list[dict[str, np.ndarray]]:
    frames = _frames(3, seed=1)
    return [{k: v[i] for k, v in frames.items()} for i in range(3)]


@pytest.mark.parametrize("name", ["linear_dpca", "pca"])
def test_per_step_overhead_is_16_bits(name: str, codecs, views) -> None:
    codec = codecs[name]
    for obs in views:
        for budget in BUDGETS:
            payload = codec.compress(obs, budget)
            assert payload.nbits <= budget
            if payload.is_empty:
                assert budget < 24 and payload.nbits == 0
                continue
            assert payload.is_lean and payload.overhead_bits == FRAME_OVERHEAD_BITS
            assert sum(payload.stream_bits) == payload.nbits - FRAME_OVERHEAD_BITS
            assert len(payload.stream_bits) == len(codec.stream_names)
    assert FRAME_OVERHEAD_BITS <= 16
    assert codec.session.nbits == 8 * SESSION_BYTES == 88


@pytest.mark.parametrize("name", ["linear_dpca", "pca"])
def test_payload_size_is_monotone_in_the_budget_and_spans_the_range(name: str, codecs, views) -> None:
    codec = codecs[name]
    for obs in views:
        psnrs = []
        for payload in sweep_budgets(codec, obs, BUDGETS):
            if not payload.is_empty:
                out = codec.decompress(payload)
                mse = np.mean([np.mean((out[k].astype(float) - obs[k]) ** 2) for k in obs])
                psnrs.append(10 * np.log10(255**2 / max(mse, 1e-9)))
        assert codec.compress(obs, 16_000).nbits > 8000
        # quality rises over the whole range (a little slack for the coarse-step frames)
        assert all(b >= a - 0.3 for a, b in zip(psnrs, psnrs[1:], strict=False)), psnrs
        assert psnrs[-1] > psnrs[len(psnrs) // 2] + 3 > psnrs[0] + 6, psnrs


def test_session_header_round_trip_and_mismatches(codecs, views) -> None:
    codec, other = codecs["linear_dpca"], codecs["pca"]
    session = codec.session
    wire = session.to_bytes()
    assert len(wire) == SESSION_BYTES and Session.from_bytes(wire) == session
    assert session.codec == "linear_dpca" and session.n_streams == 2 and session.split == 0
    for bit in range(8 * len(wire)):
        flipped = bytearray(wire)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(PayloadError):
            Session.from_bytes(bytes(flipped))
    with pytest.raises(PayloadError, match="truncated"):
        Session.from_bytes(wire[:-1])
    payload = codec.compress(views[0], 600)
    frame = payload.to_bytes()
    # never received a session: parse refuses, naming what is missing
    with pytest.raises(PayloadError, match="no session header was received"):
        Payload.from_bytes(frame, codec="linear_dpca")
    with pytest.raises(PayloadError, match="no session"):
        codec.decompress(Payload("linear_dpca", payload.streams, payload.meta))
    # another checkpoint of the same codec: another fingerprint
    refit = LinearDPCACodec.fit(_frames(60, seed=5), max_components=16, downsample=2, env_id="bwgym/Test-v0")
    assert refit.session.fingerprint != session.fingerprint
    with pytest.raises(PayloadError, match="another session"):
        Payload.from_bytes(frame, session=refit.session)
    with pytest.raises(PayloadError, match="session mismatch") as err:
        refit.decompress(payload)
    assert session.fingerprint.hex() in str(err.value) and refit.session.fingerprint.hex() in str(err.value)
    # another codec's session
    with pytest.raises(PayloadError, match="session mismatch"):
        Payload.from_bytes(frame, codec="linear_dpca", session=other.session)
    # the explicit-split session is another session too
    split = codec.compress(views[0], 600, allocation={"arm": 0.7, "side": 0.3})
    assert split.session.split == 1 and split.session != session
    with pytest.raises(PayloadError, match="another session"):
        Payload.from_bytes(split.to_bytes(), session=session)
    assert codec.decompress(Payload.from_bytes(split.to_bytes(), session=split.session)).keys() == {
        "arm",
        "side",
    }


def test_corruption_is_detected(codecs, views) -> None:
    codec = codecs["linear_dpca"]
    frames = [codec.compress(obs, b).to_bytes() for obs in views for b in (40, 300, 3000)]
    for wire in frames:  # every single-bit error, exhaustively (CRC-8 with the factor x + 1)
        for bit in range(8 * len(wire)):
            bad = bytearray(wire)
            bad[bit // 8] ^= 1 << (bit % 8)
            with pytest.raises(PayloadError):
                codec.decompress(Payload.from_bytes(bytes(bad), session=codec.session))
    rng = np.random.default_rng(0)
    assert detection_rate(codec, frames, "single", 300, rng) == 1.0
    assert detection_rate(codec, frames, "double", 600, rng) >= 0.99
    assert detection_rate(codec, frames, "burst", 600, rng) >= 0.99
    with pytest.raises(ValueError, match="unknown error kind"):
        corrupt_bits(frames[0], "triple", rng)


def test_crc8_detects_every_odd_weight_error_and_short_burst() -> None:
    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, 40, dtype=np.uint8).tobytes()
    ref = crc8(data)
    for start in range(0, 8 * len(data) - 8, 5):
        for pattern in (0b1, 0b111, 0b10101, 0b11111111, 0b10000001):
            bad = int.from_bytes(data, "big") ^ (pattern << start)
            assert crc8(bad.to_bytes(len(data), "big")) != ref


class _Replay(gym.Env):
    """Replays recorded frames as observations, one per step, truncating after the last."""

    action_space = gym.spaces.Discrete(2)
    dt = 0.04

    def __init__(self, frames: dict[str, np.ndarray]) -> None:
        self.frames = frames
        self.observation_space = gym.spaces.Dict(
            {v: gym.spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8) for v in frames}
        )

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return {v: f[0] for v, f in self.frames.items()}, {}

    def step(self, action):
        self.t += 1
        last = len(next(iter(self.frames.values()))) - 1
        return {v: f[self.t] for v, f in self.frames.items()}, 0.0, False, self.t >= last, {}


def test_wrapper_charges_the_session_at_the_first_step(codecs) -> None:
    from bwgym.envs.bandwidth import BandwidthLimited
    from bwgym.traces.generators import constant

    frames = _frames(8, seed=2)

    codec = codecs["linear_dpca"]
    env = BandwidthLimited(_Replay(frames), codec, constant(5_000, duration_s=10.0))  # 200 bits per step
    obs, info = env.reset(seed=0)
    assert info["session_bits"] == 88 and info["bits_sent_total"] <= 200
    assert info["bits_sent_total"] == 88 + 16 + sum(info["bits_sent"].values())
    assert not any(info["dropped"].values())
    obs, *_, info = env.step(0)
    assert info["session_bits"] == 0 and info["bits_sent_total"] == 16 + sum(info["bits_sent"].values())
    assert not any(info["dropped"].values())
    env.reset(seed=1)  # every episode opens its session again
    # Too narrow for the session header and a frame: the header goes alone, in fragments that use
    # the whole budget, and frames follow once the receiver holds it whole.
    narrow = BandwidthLimited(_Replay(frames), codec, constant(1_500, duration_s=10.0))  # 60 bits per step
    _, info = narrow.reset(seed=0)
    infos = [info] + [narrow.step(0)[-1] for _ in range(4)]
    assert [i["session_bits"] for i in infos[:2]] == [56, 32] and all(
        i["session_bits"] == 0 for i in infos[2:]
    )
    assert infos[0]["bits_sent_total"] == 56 and all(infos[0]["dropped"].values())
    assert all(i["bits_sent_total"] <= 60 for i in infos)
    assert not all(infos[2]["dropped"].values())  # the first whole frame decodes


def test_wrapper_resends_a_lost_session_and_survives_latency(codecs) -> None:
    from bwgym.envs.bandwidth import BandwidthLimited
    from bwgym.traces.generators import constant

    frames = _frames(30, seed=4)

    for allocator in ("dpca", "uniform"):
        env = BandwidthLimited(
            _Replay(frames),
            codecs["linear_dpca"],
            constant(25_000, duration_s=10.0),
            allocator=allocator,
            latency_steps=2,
            loss_prob=0.5,
        )
        for seed in range(2):
            _, info = env.reset(seed=seed)
            infos = [info]
            for _ in range(29):
                infos.append(env.step(0)[-1])
            sent = [i["session_bits"] > 0 for i in infos]
            lost = [i["lost"] for i in infos]
            # the header rides on every transmission until one carrying it is not lost, then never again
            first_ok = next(t for t in range(30) if sent[t] and not lost[t])
            assert all(sent[: first_ok + 1]) and not any(sent[first_ok + 1 :])
            # frames arrive (two steps late) and decode under the session that came before them
            assert any(not i["dropped"]["arm"] for i in infos[first_ok + 2 :])
