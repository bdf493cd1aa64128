"""BandwidthLimited(observation="latent"): the held code is what the wire bytes carry, drops hold it."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from bwgym.codecs.core.protocol import Payload
from bwgym.codecs.image.linear import LinearDPCACodec, PCACodec
from bwgym.codecs.image.standard import RawCodec
from bwgym.envs.bandwidth import BandwidthLimited, VectorBandwidthLimited
from bwgym.envs.latent_views import AGE_KEY, find_latent_views
from bwgym.traces.generators import constant
from bwgym.traces.trace import BandwidthTrace

SIZE, DT = 16, 0.04


class Blobs(gym.Env):
    """Two uint8 cameras showing a bright square at a seeded random place that moves, and a proprio vector."""

    metadata = {"render_modes": []}

    def __init__(self, max_steps: int = 40) -> None:
        self.observation_space = spaces.Dict(
            {
                "arm": spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8),
                "side": spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8),
                "proprio": spaces.Box(-1.0, 1.0, (2,), np.float32),
            }
        )
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.dt, self.max_steps, self._t, self._xy = DT, max_steps, 0, np.zeros(2, int)

    def _obs(self) -> dict[str, np.ndarray]:
        x, y = (self._xy + self._t) % (SIZE - 4)
        arm = np.full((SIZE, SIZE, 3), 20, np.uint8)
        arm[y : y + 4, x : x + 4] = 230
        side = np.full((SIZE, SIZE, 3), 40, np.uint8)
        side[x : x + 4, :] = 200
        return {"arm": arm, "side": side, "proprio": np.array([self._t / 100, -0.5], np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t, self._xy = 0, self.np_random.integers(0, SIZE - 4, 2)
        return self._obs(), {"is_success": False}

    def step(self, action):
        self._t += 1
        return self._obs(), 0.0, False, self._t >= self.max_steps, {"is_success": False}


ENV_ID = "bwgym_test/Blobs-v0"
if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=Blobs)


def _frames(n: int = 60) -> dict[str, np.ndarray]:
    env, out = Blobs(), {"arm": [], "side": []}
    for seed in range(n // 10):
        obs, _ = env.reset(seed=seed)
        for _ in range(10):
            for k in out:
                out[k].append(obs[k])
            obs = env.step(None)[0]
    return {k: np.stack(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def dpca() -> LinearDPCACodec:
    return LinearDPCACodec.train(_frames(), max_components=12, downsample=4, residual=False)


#: 0.2 s at 6 kbit/s (~240 bits a step), 0.12 s of outage, looping: frames, then held code.
OUTAGE = BandwidthTrace([0.0, 0.2, 0.32], [6_000.0, 0.0, 6_000.0], name="outage")


def _wrap(codec, trace=OUTAGE, make=False, **kwargs) -> BandwidthLimited:
    return BandwidthLimited(gym.make(ENV_ID) if make else Blobs(), codec, trace, **kwargs)


def _record_wire(env: BandwidthLimited) -> list[list[tuple[int, bytes]]]:
    """Spy on the link: per step, the (send step, frame bytes) items it delivered."""
    log: list[list[tuple[int, bytes]]] = []
    transmit = env.link.transmit

    def spy(item, nbits):
        result = transmit(item, nbits)
        log.append([(d.step, d.item[2]) for d in result.delivered if d.item[2]])
        return result

    env.link.transmit = spy
    return log


def _play(env, seed: int, steps: int):
    obs, info = env.reset(seed=seed)
    out = [(obs, info)]
    for _ in range(steps):
        obs, _, _, _, info = env.step(np.zeros(2, np.float32))
        out.append((obs, info))
    return out


@pytest.mark.parametrize("loss_prob", [0.0, 0.3])
def test_the_observation_is_the_code_the_delivered_wire_bytes_carry(dpca, loss_prob) -> None:
    env = _wrap(dpca, loss_prob=loss_prob, latency_steps=1, observation="latent")
    wire = _record_wire(env)
    played = _play(env, seed=4, steps=30)
    held = {s: np.zeros(12, np.float32) for s in ("arm", "side")}
    held_step = -1
    for t, ((obs, info), delivered) in enumerate(zip(played, wire, strict=True)):
        for sent, data in delivered:  # rebuilt from the bytes alone, as a receiver would
            coeffs = dpca.decoded_coefficients(
                Payload.from_bytes(data, codec=dpca.name, session=dpca.session)
            )
            held = {s: c.astype(np.float32) for s, c in coeffs.items()}
            held_step = sent
        for s in ("arm", "side"):
            np.testing.assert_array_equal(obs[s], held[s])
        age = t - held_step if held_step >= 0 else -1
        np.testing.assert_array_equal(obs[AGE_KEY], [age, age])
        assert info["frame_age_steps"] == {"arm": age, "side": age}
        np.testing.assert_array_equal(obs["proprio"], np.float32([t / 100, -0.5]))
        assert info["distortion"] == {}
    ages = [int(o[AGE_KEY][0]) for o, _ in played]
    assert max(ages) >= 3 and 1 in ages, f"the outage and the latency must show in the ages: {ages}"
    sent = [n for _, i in played for n in i["components"].values()]
    assert any(0 < n < 12 for n in sent), "some components sent, not all: the zeros beyond them are tested"
    if loss_prob:
        assert any(i["lost"] for _, i in played)


def test_latent_and_pixel_receivers_hold_the_same_frames(dpca) -> None:
    """The option changes what the agent gets, not the wire: bits, drops and ages are the pixel run's."""
    latent = _play(_wrap(dpca, loss_prob=0.2, observation="latent"), seed=2, steps=25)
    pixels = _play(_wrap(dpca, loss_prob=0.2), seed=2, steps=25)
    for (lo, li), (po, pi) in zip(latent, pixels, strict=True):
        for key in ("bits_sent_total", "dropped", "frame_age_steps", "components", "lost"):
            assert li[key] == pi[key], key
        shown = dpca.decode_coefficients({s: lo[s] for s in ("arm", "side")})
        if li["frame_age_steps"]["arm"] >= 0:  # the decoder run on the held code gives the shown frame
            for v in ("arm", "side"):
                assert np.abs(shown[v].astype(int) - po[v]).max() <= 1  # float32 code, one rounding


def test_the_observation_space_passes_both_checkers(dpca) -> None:
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = _wrap(
        dpca, constant(6_000, duration_s=5.0), True, latency_steps=1, loss_prob=0.1, observation="latent"
    )
    assert set(env.observation_space.spaces) == {"arm", "side", AGE_KEY, "proprio"}
    assert env.observation_space["arm"].shape == (12,)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)  # warns (only) that the env is wrapped
        sb3_check_env(env, warn=True)
    assert [str(w.message) for w in caught if "unwrapped" not in str(w.message)] == []
    low, high = env.observation_space["arm"].low, env.observation_space["arm"].high
    assert np.all(np.isfinite(low)) and np.all(high == -low) and high[0] >= 2**31
    assert find_latent_views(gym.wrappers.TimeLimit(env, 10)) is env.latent_views


def test_a_joint_codec_holds_one_joint_code(dpca) -> None:
    pca = PCACodec.train(_frames(), max_components=10, downsample=4, residual=False)
    env = _wrap(pca, trace=constant(6_000, duration_s=5.0), observation="latent")
    obs, _ = env.reset(seed=1)
    assert set(obs) == {"joint", AGE_KEY, "proprio"} and obs["joint"].shape == (10,)
    obs, *_ = env.step(np.zeros(2, np.float32))
    assert np.any(obs["joint"]) and obs[AGE_KEY].tolist() == [0.0]
    assert env.latent_views.code_spec()["streams"] == {"joint": 10}


def test_vector_envs_give_each_env_its_own_held_code(dpca) -> None:
    singles = [_play(_wrap(dpca, loss_prob=0.3, observation="latent"), seed=s, steps=12) for s in (7, 8)]
    venv = VectorBandwidthLimited([_wrap(dpca, loss_prob=0.3, observation="latent") for _ in range(2)])
    obs, _ = venv.reset(seed=7)
    for t in range(13):
        for i in range(2):
            for key in ("arm", "side", AGE_KEY):
                np.testing.assert_array_equal(obs[key][i], singles[i][t][0][key])
        obs, *_ = venv.step(np.zeros((2, 2), np.float32))


def test_other_codecs_and_observations_are_refused(dpca) -> None:
    raw = RawCodec.from_observation_space(Blobs().observation_space)
    with pytest.raises(TypeError, match=r"needs a latent codec .* got 'raw'"):
        _wrap(raw, observation="latent")
    with pytest.raises(ValueError, match=r"one of \['pixels', 'latent'\], got 'voxels'"):
        _wrap(dpca, observation="voxels")
