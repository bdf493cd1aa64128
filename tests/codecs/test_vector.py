"""Vector codecs: scalar quantisation and predictive coding against the receiver's Kalman prediction."""

import gymnasium as gym
import numpy as np
import pytest

import bwgym  # noqa: F401
from bwgym.codecs import make_codec
from bwgym.codecs.base import Payload, PayloadError, ViewSpec
from bwgym.codecs.vector import PredictiveCodec, ScalarCodec
from bwgym.envs.views import link_views


def _env(preset="ar1", k=4):
    env = gym.make("bwgym/SensorNetwork-v0", preset=preset, n_sensors=k, horizon=200)
    return env, link_views(env), env.unwrapped.model


def _wire(payload, name):
    return Payload.from_bytes(payload.to_bytes(), codec=name)


def _episode(codec, env, budget, steps=120, seed=0, drop=(), allocation=None):
    """Send ``steps`` steps; return decoded squared errors, payload bits and decoded dicts."""
    obs, _ = env.reset(seed=seed)
    errors, bits, decoded_all = [], [], []
    for t in range(steps):
        payload = codec.compress(obs, budget, allocation)
        assert payload.nbits <= budget and payload.nbits == 8 * len(payload.to_bytes())
        bits.append(payload.nbits)
        decoded = {} if (payload.is_empty or t in drop) else codec.decompress(_wire(payload, codec.name))
        decoded_all.append(decoded)
        errors += [float(np.sum((decoded[k] - obs[k]) ** 2)) for k in decoded]
        obs, *_ = env.step(env.action_space.sample())
    return np.array(errors), np.array(bits), decoded_all


@pytest.mark.parametrize("name", ["scalar", "predictive"])
def test_round_trip_real_bytes_and_rate_monotone(name):
    env, views, model = _env()
    results = []
    for budget in (150, 180, 240, 400):
        codec = make_codec(name, views, system=model)
        # equal shares: predictive's own split stops spending bits that no longer help the fusion
        even = {v.name: 1.0 for v in views}
        errors, bits, decoded = _episode(codec, env, budget, steps=60, allocation=even)
        assert len(errors) > 0 and all(d.dtype == np.float32 for dd in decoded for d in dd.values())
        results.append((bits.mean(), errors.mean()))
    rates, distortions = zip(*results, strict=True)
    assert all(a <= b for a, b in zip(rates, rates[1:], strict=False)), rates
    assert all(a >= b for a, b in zip(distortions, distortions[1:], strict=False)), distortions
    assert distortions[-1] < 1e-3 * distortions[0]


def test_empty_payload_when_nothing_fits():
    env, views, model = _env()
    obs, _ = env.reset(seed=0)
    for name in ("scalar", "predictive"):
        codec = make_codec(name, views, system=model)
        payload = codec.compress(obs, 40)
        assert payload.is_empty and payload.nbits == 0 and codec.decompress(payload) == {}


@pytest.mark.parametrize("body", [12, 24])
def test_predictive_beats_scalar_at_equal_body_bits(body):
    env, views, model = _env()
    scalar = make_codec("scalar", views, system=model)
    pred = make_codec("predictive", views, system=model)
    # equal bits for the measurements: each codec's own container header on top
    k = len(views)
    scalar_header = Payload("scalar", (b"",), bytes(k)).nbits  # one rate byte per view
    pred_header = Payload("predictive", (b"",), bytes(4 + k)).nbits  # + flags, step, frame
    even = {v.name: 1.0 for v in views}  # the same split for both: compare measurement errors
    scalar_err, _, _ = _episode(scalar, env, scalar_header + body, allocation=even)
    pred_err, _, _ = _episode(pred, env, pred_header + body, allocation=even)
    assert pred_err.mean() < 0.7 * scalar_err.mean()


def test_predictive_resyncs_after_a_drop_with_periodic_key_frames():
    env, views, model = _env()
    codec = PredictiveCodec.from_views(views, system=model, key_interval=10)
    errors, bits, decoded = _episode(codec, env, 400, steps=40, drop={13})
    # the frame after the drop cannot be decoded: the receiver detects the gap and waits
    assert decoded[14] == {} and all(decoded[t] == {} for t in range(14, 20))
    assert decoded[20] and all(decoded[t] for t in range(20, 40))  # key frame at step 20
    truth_env, *_ = _env()
    obs, _ = truth_env.reset(seed=0)
    for t in range(40):
        if decoded[t]:
            err = max(float(np.max(np.abs(decoded[t][k] - obs[k]))) for k in decoded[t])
            assert err < 1e-2, (t, err)
        obs, *_ = truth_env.step(truth_env.action_space.sample())


def test_predictive_ack_forces_a_key_frame_next_step():
    env, views, model = _env()
    codec = PredictiveCodec.from_views(views, system=model, key_interval=0)
    obs, _ = env.reset(seed=1)
    for _ in range(5):
        codec.decompress(_wire(codec.compress(obs, 300), "predictive"))
        obs, *_ = env.step(env.action_space.sample())
    lost = codec.compress(obs, 300)  # dropped by the link
    assert lost.meta[0] == 0
    codec.acknowledge(False)
    obs, *_ = env.step(env.action_space.sample())
    key = codec.compress(obs, 300)
    assert key.meta[0] == 1 and len(key.streams) == 1
    decoded = codec.decompress(_wire(key, "predictive"))
    assert set(decoded) == set(codec.view_names) and codec.receiver_synced
    assert max(abs(float(decoded[k][0] - obs[k][0])) for k in decoded) < 0.05


def test_without_key_frames_a_drop_stays_undecodable():
    env, views, model = _env()
    codec = PredictiveCodec.from_views(views, system=model, key_interval=0)
    _, _, decoded = _episode(codec, env, 400, steps=20, drop={5})
    assert all(decoded[t] == {} for t in range(6, 20)) and not codec.receiver_synced


def test_cv2d_vector_views_round_trip():
    env, views, model = _env("cv2d", 3)
    assert views[0].shape == (2,)
    codec = make_codec("predictive", views, system=model)
    errors, bits, _ = _episode(codec, env, 300, steps=50)
    assert errors.mean() < 0.05 * float(np.mean(model.noise_variances))


def test_bad_input_is_a_clear_value_error():
    env, views, model = _env()
    obs, _ = env.reset(seed=0)
    codec = make_codec("scalar", views, system=model)
    bad = dict(obs, sensor_0=np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="sensor_0.*shape"):
        codec.compress(bad, 400)
    with pytest.raises(ValueError, match="process model"):
        make_codec("predictive", views)
    with pytest.raises(ValueError, match="one per view"):
        make_codec("predictive", views[:2], system=model)
    with pytest.raises(ValueError, match="1-D float"):
        ScalarCodec.from_views([ViewSpec("cam", (8, 8, 3), "uint8")])
    with pytest.raises(ValueError, match="key_interval"):
        PredictiveCodec.from_views(views, system=model, key_interval=-1)
    with pytest.raises(TypeError, match="unexpected options"):
        make_codec("scalar", views, bogus=1)


def test_corrupt_header_is_a_payload_error():
    env, views, model = _env()
    obs, _ = env.reset(seed=0)
    codec = make_codec("predictive", views, system=model)
    payload = codec.compress(obs, 400)
    with pytest.raises(PayloadError):
        codec.decompress(Payload("predictive", payload.streams, payload.meta[:-1]))
    scalar = make_codec("scalar", views, system=model)
    with pytest.raises(PayloadError):
        scalar.decompress(payload)


def test_predictive_own_split_favours_the_precise_sensors():
    env, views, model = _env()  # noise variances 0.1 .. 1: sensor_0 is the most precise
    codec = make_codec("predictive", views, system=model, key_interval=0)
    obs, _ = env.reset(seed=0)
    payload = codec.compress(obs, Payload("predictive", (b"",), bytes(4 + len(views))).nbits + 8)
    rates = list(payload.meta[4:])
    assert rates[0] != 255 and (rates[3] == 255 or rates[0] > rates[3]), rates
    uniform = make_codec("predictive", views, system=model, key_interval=0)
    even = uniform.compress(obs, 400, allocation={v.name: 1.0 for v in views})
    assert len(set(even.meta[4:])) <= 2  # equal shares: (nearly) equal steps
