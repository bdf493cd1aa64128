"""Vector codecs: scalar quantisation and predictive coding against the receiver's Kalman prediction.

Format change (lean frames): both codecs used to send a container-v1 payload per step (~100-170
bits of headers, one rate byte per view); they now send lean frames under a session (16 bits of
overhead per step, rates implied by one header byte), so the budgets and header checks below
were rewritten once for that format.
"""

import gymnasium as gym
import numpy as np
import pytest

import bwgym  # noqa: F401
from bwgym.codecs import make_codec
from bwgym.codecs.core.protocol import FRAME_OVERHEAD_BITS, Payload, PayloadError, Session, ViewSpec
from bwgym.codecs.sensor.predictive import PredictiveCodec, ScalarCodec
from bwgym.envs.views import link_views


def _env(preset="ar1", k=4):
    env = gym.make("bwgym/SensorNetwork-v0", preset=preset, n_sensors=k, horizon=200)
    return env, link_views(env), env.unwrapped.model


def _wire(payload, name):
    return Payload.from_bytes(payload.to_bytes(), codec=name, session=payload.session)


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
    for budget in (40, 64, 120, 260):
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
        payload = codec.compress(obs, FRAME_OVERHEAD_BITS + 7)  # no room for a body byte
        assert payload.is_empty and payload.nbits == 0 and codec.decompress(payload) == {}
        assert payload.session == codec.session


@pytest.mark.parametrize("body", [16, 24])
def test_predictive_beats_scalar_at_equal_body_bits(body):
    env, views, model = _env()
    scalar = make_codec("scalar", views, system=model)
    pred = make_codec("predictive", views, system=model)
    # equal bits: the same 16-bit frame overhead on top of the body
    even = {v.name: 1.0 for v in views}  # the same split for both: compare measurement errors
    scalar_err, _, _ = _episode(scalar, env, FRAME_OVERHEAD_BITS + body, allocation=even)
    pred_err, _, _ = _episode(pred, env, FRAME_OVERHEAD_BITS + body, allocation=even)
    assert pred_err.mean() < 0.7 * scalar_err.mean()
    # each codec's own split in one body byte (an explicit split spends ~10 bits naming the rates)
    scalar_err, _, _ = _episode(scalar, env, FRAME_OVERHEAD_BITS + 8)
    pred_err, _, _ = _episode(pred, env, FRAME_OVERHEAD_BITS + 8)
    assert len(pred_err) and pred_err.mean() < 0.7 * scalar_err.mean()


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
    assert not lost.meta[0] & 0x80  # an ordinary frame
    codec.acknowledge(False)
    obs, *_ = env.step(env.action_space.sample())
    key = codec.compress(obs, 300)
    assert key.meta[0] & 0x80 and len(key.streams) == 1
    decoded = codec.decompress(_wire(key, "predictive"))
    assert set(decoded) == set(codec.view_names) and codec.receiver_synced
    assert max(abs(float(decoded[k][0] - obs[k][0])) for k in decoded) < 0.05


def test_after_an_acknowledged_drop_only_key_frames_go_out():
    env, views, model = _env("cv2d", 4)  # a 4-D state: a key frame does not fit in one byte
    codec = PredictiveCodec.from_views(views, system=model, key_interval=0)
    obs, _ = env.reset(seed=1)
    for _ in range(3):
        codec.decompress(_wire(codec.compress(obs, 300), "predictive"))
        obs, *_ = env.step(env.action_space.sample())
    codec.compress(obs, 300)
    codec.acknowledge(False)  # that one was lost
    for budget in (24, 300):
        obs, *_ = env.step(env.action_space.sample())
        frame = codec.compress(obs, budget)
        assert frame.is_empty if budget == 24 else frame.meta[0] & 0x80, budget
    assert codec.decompress(_wire(frame, "predictive")) and codec.receiver_synced


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


def test_corrupt_or_foreign_frames_are_payload_errors():
    env, views, model = _env()
    obs, _ = env.reset(seed=0)
    codec = make_codec("predictive", views, system=model)
    payload = codec.compress(obs, 400)
    wire = payload.to_bytes()
    assert payload.overhead_bits == FRAME_OVERHEAD_BITS and payload.is_lean
    for i in range(len(wire)):  # every single-bit flip fails the CRC-8
        bad = bytearray(wire)
        bad[i] ^= 1 << (i % 8)
        with pytest.raises(PayloadError):
            Payload.from_bytes(bytes(bad), codec="predictive", session=codec.session)
    with pytest.raises(PayloadError, match="truncated|checksum"):
        Payload.from_bytes(wire[:-1], codec="predictive", session=codec.session)
    with pytest.raises(PayloadError, match="session"):
        Payload.from_bytes(wire, codec="predictive")  # no session header received
    with pytest.raises(PayloadError, match="no session"):
        codec.decompress(Payload("predictive", payload.streams, payload.meta))
    scalar = make_codec("scalar", views, system=model)
    with pytest.raises(PayloadError):
        scalar.decompress(payload)
    other = make_codec("predictive", views, system=_other_model(model))
    with pytest.raises(PayloadError, match="session mismatch"):
        other.decompress(payload)
    header = make_codec("scalar", views, system=model)
    frame = header.compress(obs, 100)
    with pytest.raises(PayloadError, match="corrupt"):  # a header beyond the finest rate
        header.decompress(Payload("scalar", frame.streams, bytes((250,)), frame.session))


def _other_model(model):
    import dataclasses

    return dataclasses.replace(model, R=tuple(2.0 * r for r in model.R))


def test_session_identifies_codec_model_and_split():
    env, views, model = _env()
    a, b = make_codec("scalar", views, system=model), make_codec("scalar", views, system=model)
    assert a.session == b.session and isinstance(a.session, Session) and a.session.n_streams == 1
    assert a.session_for({v.name: 1.0 for v in views}).split == 1 and a.session.split == 0
    pred = make_codec("predictive", views, system=model)
    assert (
        pred.session.fingerprint
        != make_codec("predictive", views, system=_other_model(model)).session.fingerprint
    )


def test_lean_frames_cost_16_bits_over_their_body():
    env, views, model = _env(k=8)
    obs, _ = env.reset(seed=0)
    for name in ("scalar", "predictive"):
        codec = make_codec(name, views, system=model)
        payload = codec.compress(obs, 32)  # 8 sensors in 32 bits: impossible in the old container
        assert 24 <= payload.nbits <= 32 and payload.nbits - sum(payload.stream_bits) == FRAME_OVERHEAD_BITS
        assert codec.decompress(_wire(payload, name))


def test_predictive_own_split_favours_the_precise_sensors():
    env, views, model = _env()  # noise variances 0.1 .. 1: sensor_0 is the most precise
    codec = make_codec("predictive", views, system=model, key_interval=0)
    obs, _ = env.reset(seed=0)
    for budget in (FRAME_OVERHEAD_BITS + 8, 64, 200):
        codec.reset()
        decoded = codec.decompress(_wire(codec.compress(obs, budget), "predictive"))
        steps = codec.last_steps
        assert "sensor_0" in decoded, budget
        assert "sensor_3" not in decoded or steps["sensor_0"] < steps["sensor_3"], (budget, steps)
    uniform = make_codec("predictive", views, system=model, key_interval=0)
    even = uniform.compress(obs, 400, allocation={v.name: 1.0 for v in views})
    uniform.decompress(_wire(even, "predictive"))
    rel = [np.log2(uniform.last_steps[v.name]) for v in views]
    assert max(rel) - min(rel) < 1.5  # equal shares: (nearly) equal steps
