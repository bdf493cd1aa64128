"""BandwidthLimited: drop/hold, latency, loss, determinism, outages and the env checkers."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from bwgym.codecs.core.protocol import Payload
from bwgym.codecs.image.standard import JpegCodec, PngCodec, RawCodec
from bwgym.envs.allocators import FixedAllocator
from bwgym.envs.bandwidth import BandwidthLimited, psnr
from bwgym.traces.generators import constant
from bwgym.traces.trace import BandwidthTrace

SIZE = 40  # >= 36 so SB3's image checks stay quiet
DT = 0.04
RAW_VIEW_BITS = 8 * SIZE * SIZE * 3  # 38,400
RAW_BOTH_BITS = 8 * (8 + 2 * 2) + 2 * RAW_VIEW_BITS  # container + 2-byte length prefixes


ENV_ID = "bwgym_test/TwoCams-v0"


class TwoCams(gym.Env):
    """Two uint8 cameras and a proprio vector; frames depend only on the seed and the step.

    Pixel ``[0, 0, 0]`` of each camera is the step number, pixel ``[0, 0, 1]`` a seed-drawn byte.
    """

    metadata = {"render_modes": []}

    def __init__(self, max_steps: int = 30) -> None:
        self.observation_space = spaces.Dict(
            {
                "arm": spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8),
                "side": spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8),
                "proprio": spaces.Box(-1.0, 1.0, (3,), np.float32),
            }
        )
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.dt = DT
        self.max_steps = max_steps
        self._t = 0
        self._tag = 0
        y, x = np.mgrid[0:SIZE, 0:SIZE]
        self._base = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1).astype(np.int64)

    def _obs(self) -> dict[str, np.ndarray]:
        arm = (self._base + 3 * self._t + self._tag) % 256
        side = (self._base[::-1] + 5 * self._t + 2 * self._tag) % 256
        obs = {"arm": arm.astype(np.uint8), "side": side.astype(np.uint8)}
        for cam in obs.values():
            cam[0, 0, 0] = self._t
            cam[0, 0, 1] = self._tag
        obs["proprio"] = np.array([self._t / 100, self._tag / 255, -0.5], dtype=np.float32)
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        self._tag = int(self.np_random.integers(0, 256))
        return self._obs(), {"is_success": False}

    def step(self, action):
        self._t += 1
        return self._obs(), 0.0, False, self._t >= self.max_steps, {"is_success": False}


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=TwoCams)


def wrap(codec_cls=RawCodec, bps=10e6, make=False, **kwargs) -> BandwidthLimited:
    env = gym.make(ENV_ID) if make else TwoCams()
    codec = codec_cls.from_observation_space(env.observation_space)
    trace = kwargs.pop("trace", None) or constant(bps, duration_s=10.0)
    return BandwidthLimited(env, codec, trace, **kwargs)


def true_frames(seed: int, n: int) -> list[dict[str, np.ndarray]]:
    env = TwoCams()
    out = [env.reset(seed=seed)[0]]
    for _ in range(n):
        out.append(env.step(env.action_space.sample())[0])
    return out


def rollout(env: gym.Env, seed: int, n: int, **reset_kwargs):
    obs, info = env.reset(seed=seed, **reset_kwargs)
    observations, infos = [obs], [info]
    for _ in range(n):
        obs, _, _, _, info = env.step(np.zeros(2, np.float32))
        observations.append(obs)
        infos.append(info)
    return observations, infos


def test_fat_link_delivers_every_frame_exactly():
    env = wrap(RawCodec, bps=10e6)
    truth = true_frames(3, 5)
    observations, infos = rollout(env, 3, 5)
    for obs, info, true in zip(observations, infos, truth, strict=False):
        for key in ("arm", "side", "proprio"):
            np.testing.assert_array_equal(obs[key], true[key])
        assert info["dropped"] == {"arm": False, "side": False}
        assert info["distortion"] == {"arm": math.inf, "side": math.inf}
        assert info["frame_age_steps"] == {"arm": 0, "side": 0}
        assert info["budget_bits"] == round(10e6 * DT)
        assert info["bandwidth_bps"] == pytest.approx(10e6)
        assert info["bits_sent"] == {"arm": RAW_VIEW_BITS, "side": RAW_VIEW_BITS}
        assert info["bits_sent_total"] == RAW_BOTH_BITS
        assert info["allocation"] == {"arm": 0.5, "side": 0.5}
        assert info["lost"] is False and info["over_budget"] is False
        assert info["is_success"] is False  # the env's own keys survive


def test_info_keys_have_documented_types():
    env = wrap(JpegCodec, bps=400e3)
    for info in rollout(env, 0, 2)[1]:
        assert isinstance(info["bandwidth_bps"], float)
        assert isinstance(info["budget_bits"], int)
        assert isinstance(info["bits_sent_total"], int)
        assert isinstance(info["lost"], bool) and isinstance(info["over_budget"], bool)
        for key, kind in [
            ("bits_sent", int),
            ("allocation", float),
            ("dropped", bool),
            ("distortion", float),
            ("frame_age_steps", int),
        ]:
            assert list(info[key]) == ["arm", "side"]
            assert all(type(v) is kind for v in info[key].values()), key
        assert info["bits_sent_total"] <= info["budget_bits"]
        assert info["bits_sent_total"] >= sum(info["bits_sent"].values())


def test_over_budget_holds_the_last_frame_and_starts_from_zeros():
    # 0.2 s at 10 Mbit/s (raw fits), then 0.2 s at 500 kbit/s (raw never fits), looping.
    trace = BandwidthTrace([0.0, 0.2], [10e6, 500e3], duration_s=0.4)
    env = wrap(RawCodec, trace=trace)
    truth = true_frames(1, 9)

    observations, infos = rollout(env, 1, 9, options={"trace_start_s": 0.0})
    for t in range(5):  # delivered
        np.testing.assert_array_equal(observations[t]["arm"], truth[t]["arm"])
        assert not any(infos[t]["dropped"].values())
    for t in range(5, 10):  # held: the step-4 frame, ever older
        np.testing.assert_array_equal(observations[t]["arm"], truth[4]["arm"])
        np.testing.assert_array_equal(observations[t]["side"], truth[4]["side"])
        np.testing.assert_array_equal(observations[t]["proprio"], truth[t]["proprio"])  # not charged
        assert infos[t]["dropped"] == {"arm": True, "side": True}
        assert infos[t]["frame_age_steps"] == {"arm": t - 4, "side": t - 4}
        assert infos[t]["bits_sent_total"] == 0  # the codec sends nothing that cannot fit
        assert math.isfinite(infos[t]["distortion"]["arm"])

    # Starting in the thin stretch: nothing was ever delivered, so the agent sees zeros.
    obs, info = env.reset(seed=1, options={"trace_start_s": 0.2})
    assert not obs["arm"].any() and not obs["side"].any()
    assert info["dropped"] == {"arm": True, "side": True}
    assert info["frame_age_steps"] == {"arm": -1, "side": -1}
    assert info["distortion"]["arm"] == pytest.approx(psnr(np.zeros_like(truth[0]["arm"]), truth[0]["arm"]))


class GreedyRaw(RawCodec):
    """Ignores the budget: always sends every view raw (to exercise the link's over-budget path)."""

    def compress(self, views, budget_bits, allocation=None):
        return Payload("raw", tuple(np.ascontiguousarray(views[n]).tobytes() for n in self.view_names))


def test_payload_over_budget_is_not_delivered():
    env = TwoCams()
    trace = BandwidthTrace([0.0, 0.12], [10e6, 100e3], duration_s=0.24)
    wrapped = BandwidthLimited(env, GreedyRaw.from_observation_space(env.observation_space), trace)
    truth = true_frames(2, 4)
    observations, infos = rollout(wrapped, 2, 4, options={"trace_start_s": 0.0})
    assert [i["over_budget"] for i in infos] == [False, False, False, True, True]
    np.testing.assert_array_equal(observations[4]["arm"], truth[2]["arm"])
    assert infos[4]["dropped"] == {"arm": True, "side": True}
    assert infos[4]["bits_sent_total"] == 0  # not transmitted: nothing charged
    assert infos[4]["bits_sent"] == {"arm": 0, "side": 0}
    assert infos[2]["bits_sent_total"] == RAW_BOTH_BITS


@pytest.mark.parametrize("k", [1, 3])
def test_latency_shows_frames_k_steps_old(k):
    env = wrap(RawCodec, bps=10e6, latency_steps=k)
    truth = true_frames(4, 8)
    observations, infos = rollout(env, 4, 8)
    for t in range(k):
        assert not observations[t]["arm"].any()
        assert infos[t]["dropped"]["arm"] and infos[t]["frame_age_steps"]["arm"] == -1
    for t in range(k, 9):
        np.testing.assert_array_equal(observations[t]["arm"], truth[t - k]["arm"])
        np.testing.assert_array_equal(observations[t]["side"], truth[t - k]["side"])
        assert observations[t]["arm"][0, 0, 0] == t - k
        assert infos[t]["frame_age_steps"] == {"arm": k, "side": k}
        assert infos[t]["dropped"] == {"arm": False, "side": False}


def test_loss_is_seeded():
    def lost(seed):
        env = wrap(RawCodec, bps=10e6, loss_prob=0.5)
        observations, infos = rollout(env, seed, 40)
        for _obs, info in zip(observations, infos, strict=False):
            assert info["dropped"]["arm"] == (info["lost"] or info["frame_age_steps"]["arm"] != 0)
        return [info["lost"] for info in infos]

    a, b, c = lost(11), lost(11), lost(12)
    assert a == b
    assert a != c
    assert 5 < sum(a) < 36


def test_lost_frame_is_held():
    env = wrap(RawCodec, bps=10e6, loss_prob=0.5)
    observations, infos = rollout(env, 5, 40)
    held = [t for t in range(1, 41) if infos[t]["lost"] and not infos[t - 1]["lost"]]
    assert held
    for t in held:
        np.testing.assert_array_equal(observations[t]["arm"], observations[t - 1]["arm"])
        assert infos[t]["dropped"]["arm"]


def assert_same(a, b):
    if isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), (a, b)


def test_seeded_episodes_are_identical():
    rng = np.random.default_rng(0)
    trace = BandwidthTrace(np.arange(50) * 0.1, rng.uniform(0, 1.2e6, 50), duration_s=5.0)

    def episode(seed):
        env = wrap(JpegCodec, trace=trace, latency_steps=1, loss_prob=0.2)
        out = rollout(env, seed, 15)
        # a second episode without a seed continues the seeded stream deterministically
        return out, rollout(env, None, 15)

    first, second = episode(7), episode(7)
    for x, y in zip(first[0][1] + first[1][1], second[0][1] + second[1][1], strict=False):
        assert_same(x, y)
    for x, y in zip(first[0][0] + first[1][0], second[0][0] + second[1][0], strict=False):
        assert_same(x, y)
    other = episode(8)
    assert [i["bandwidth_bps"] for i in other[0][1]] != [i["bandwidth_bps"] for i in first[0][1]]


def test_reset_offset_is_seeded_and_spans_the_trace():
    trace = BandwidthTrace(np.arange(100) * 0.1, np.arange(100) * 1e4 + 1e4, duration_s=10.0)
    env = wrap(RawCodec, trace=trace)
    rates = [env.reset(seed=s)[1]["bandwidth_bps"] for s in range(30)]
    assert rates == [env.reset(seed=s)[1]["bandwidth_bps"] for s in range(30)]
    assert len(set(rates)) > 15
    assert env.reset(seed=0, options={"trace_start_s": 2.05})[1]["bandwidth_bps"] == 2.1e5


def test_zero_bandwidth_stretch_delivers_nothing():
    trace = BandwidthTrace([0.0, 1.0], [0.0, 10e6], duration_s=2.0)
    env = wrap(JpegCodec, trace=trace)
    observations, infos = rollout(env, 0, 10, options={"trace_start_s": 0.0})
    for obs, info in zip(observations, infos, strict=False):
        assert not obs["arm"].any() and not obs["side"].any()
        assert info["budget_bits"] == 0 and info["bandwidth_bps"] == 0.0
        assert info["bits_sent_total"] == 0 and info["bits_sent"] == {"arm": 0, "side": 0}
        assert info["dropped"] == {"arm": True, "side": True}
        assert not info["over_budget"] and not info["lost"]
    # an all-zero trace is valid too
    env = wrap(PngCodec, trace=constant(0.0, duration_s=1.0))
    assert all(not i["bits_sent_total"] for i in rollout(env, 0, 3)[1])


def test_jpeg_under_a_thin_link():
    env = wrap(JpegCodec, bps=500e3)  # 20,000 bits per step
    observations, infos = rollout(env, 0, 5)
    for info in infos:
        assert 0 < info["bits_sent_total"] <= info["budget_bits"] == 20_000
        assert info["dropped"] == {"arm": False, "side": False}
        assert 20 < info["distortion"]["arm"] < math.inf


def test_fixed_allocation_starves_a_view():
    env = wrap(JpegCodec, bps=400e3, allocator={"arm": 1.0})
    observations, infos = rollout(env, 0, 3)
    for obs, info in zip(observations, infos, strict=False):
        assert info["allocation"] == {"arm": 1.0, "side": 0.0}
        assert info["bits_sent"]["side"] == 0 and info["bits_sent"]["arm"] > 0
        assert info["dropped"] == {"arm": False, "side": True}
        assert not obs["side"].any()
    env = wrap(JpegCodec, allocator=FixedAllocator({"arm": 3, "side": 1}))
    assert env.reset(seed=0)[1]["requested_allocation"] == {"arm": 0.75, "side": 0.25}


def test_bad_allocator_output_is_an_error():
    env = wrap(RawCodec, allocator=lambda_allocator({"arm": 1.0}))
    with pytest.raises(ValueError, match="one fraction per view"):
        env.reset(seed=0)
    env = wrap(RawCodec, allocator=lambda_allocator({"arm": -1.0, "side": 1.0}))
    with pytest.raises(ValueError, match="finite, >= 0"):
        env.reset(seed=0)


def lambda_allocator(out):
    class Const:
        def __call__(self, views, budget_bits, info):
            keys = {"step", "time_s", "bandwidth_bps", "budget_bits", "frame_age_steps", "env_info"}
            assert set(info) >= keys
            return dict(out)

        def reset(self):
            pass

    return Const()


def test_constructor_validation():
    env = TwoCams()
    codec = RawCodec.from_observation_space(env.observation_space)
    trace = constant(1e6, duration_s=1.0)
    with pytest.raises(TypeError, match="Dict observation space, got Box"):
        BandwidthLimited(gym.make("CartPole-v1"), codec, trace, step_seconds=0.02)
    with pytest.raises(TypeError, match="Codec"):
        BandwidthLimited(env, "jpeg", trace)
    other = RawCodec.from_observation_space(
        spaces.Dict({"arm": spaces.Box(0, 255, (SIZE + 1, SIZE, 3), np.uint8)})
    )
    with pytest.raises(ValueError, match=r"codec view 'arm' expects uint8\(41, 40, 3\)"):
        BandwidthLimited(env, other, trace)
    missing = RawCodec.from_observation_space(spaces.Dict({"top": spaces.Box(0, 255, (4, 4, 3), np.uint8)}))
    with pytest.raises(ValueError, match="'top' is not in the observation space"):
        BandwidthLimited(env, missing, trace)
    with pytest.raises(TypeError, match="BandwidthTrace"):
        BandwidthLimited(env, codec, 3.0)
    with pytest.raises(TypeError, match="latency_steps is expected to be an int, got float"):
        BandwidthLimited(env, codec, trace, latency_steps=1.0)
    with pytest.raises(ValueError, match="latency_steps is expected to be >= 0, got -1"):
        BandwidthLimited(env, codec, trace, latency_steps=-1)
    with pytest.raises(ValueError, match=r"loss_prob is expected to be in \[0, 1\), got 1.5"):
        BandwidthLimited(env, codec, trace, loss_prob=1.5)
    with pytest.raises(ValueError, match="step_seconds is expected to be finite and > 0"):
        BandwidthLimited(env, codec, trace, step_seconds=0.0)
    with pytest.raises(ValueError, match="unknown views"):
        BandwidthLimited(env, codec, trace, allocator={"top": 1.0})
    del env.dt
    with pytest.raises(ValueError, match="pass step_seconds"):
        BandwidthLimited(env, codec, trace)
    assert BandwidthLimited(env, codec, trace, step_seconds=0.1).step_seconds == 0.1
    with pytest.raises(ValueError, match="trace_start_s"):
        wrap().reset(options={"trace_start_s": -1.0})


def test_trace_from_path(tmp_path):
    from bwgym.traces import save_trace

    path = tmp_path / "slow.csv"
    save_trace(constant(250e3, duration_s=5.0), path, "csv")
    env = wrap(RawCodec, trace=str(path))
    assert env.trace.mean_bps == pytest.approx(250e3)
    assert env.reset(seed=0)[1]["budget_bits"] == 10_000


def test_trace_from_library_name():
    from bwgym.traces import list_library, load_trace

    name = list_library()[0]
    env = wrap(JpegCodec, trace=name)
    assert env.trace == load_trace(name)
    assert env.reset(seed=0)[1]["budget_bits"] >= 0


def test_pickle_round_trip_continues_identically():
    import pickle

    env = wrap(JpegCodec, bps=700e3, latency_steps=1, loss_prob=0.2)
    rollout(env, 3, 4)
    copy = pickle.loads(pickle.dumps(env))
    a, b = rollout(env, None, 6), rollout(copy, None, 6)
    for x, y in zip(a[0] + a[1], b[0] + b[1], strict=False):
        assert_same(x, y)


def test_constructor_args_are_recorded():
    env = wrap(JpegCodec, make=True, latency_steps=2, loss_prob=0.1)
    assert env._saved_kwargs["latency_steps"] == 2
    assert env._saved_kwargs["loss_prob"] == 0.1
    assert env.observation_space == env.env.observation_space
    rebuilt = gym.make(env.spec)  # the spec records the wrapper and its arguments
    assert isinstance(rebuilt, BandwidthLimited) and rebuilt.latency_steps == 2
    a, b = rollout(env, 5, 4), rollout(rebuilt, 5, 4)
    for x, y in zip(a[0] + a[1], b[0] + b[1], strict=False):
        assert_same(x, y)


def _only_unwrapped_warning(caught):
    return [w for w in caught if "different from the unwrapped version" not in str(w.message)]


@pytest.mark.parametrize("codec_cls", [RawCodec, JpegCodec])
@pytest.mark.parametrize("latency", [0, 2])
def test_check_env_passes(codec_cls, latency):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = wrap(codec_cls, bps=600e3, make=True, latency_steps=latency, loss_prob=0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)  # warns (only) that the env is wrapped: that is the point here
        sb3_check_env(env, warn=True)
    assert not _only_unwrapped_warning(caught), [str(w.message) for w in caught]


@pytest.mark.slow
def test_locate_lift_wrapped_passes_checkers():
    pytest.importorskip("mujoco")
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    import bwgym  # noqa: F401

    base = gym.make("bwgym/LocateLift-v0")
    codec = JpegCodec.from_observation_space(base.observation_space)
    env = BandwidthLimited(base, codec, constant(500e3, duration_s=60.0), latency_steps=1)
    assert env.step_seconds == base.unwrapped.dt
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
        sb3_check_env(env, warn=True)
    assert not _only_unwrapped_warning(caught), [str(w.message) for w in caught]
    obs, info = env.reset(seed=0)
    assert set(info["distortion"]) == {"arm", "side"}
    env.close()
