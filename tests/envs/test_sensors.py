import math
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import bwgym  # noqa: F401
from bwgym.common.kalman import (
    KalmanFilter,
    RiccatiError,
    discrete_lyapunov,
    kalman_steady_state,
    lqr_gain,
    solve_dare,
)
from bwgym.envs.sensors import SensorNetworkEnv

ENV_ID = "bwgym/SensorNetwork-v0"
CONFIGS = [
    dict(preset="ar1"),
    dict(preset="cv2d", n_sensors=3),
    dict(preset="ar1", mode="control"),
    dict(preset="cv2d", n_sensors=2, mode="control"),
]


# ------------------------------------------------------------------ Riccati / Kalman / LQR (closed forms)
def scalar_filter_riccati(a: float, q: float, r: float) -> float:
    """Predicted steady-state variance of x' = a x + w, y = x + v: root of P^2 + (r(1-a^2) - q) P - qr."""
    b = r * (1 - a * a) - q
    return (-b + math.sqrt(b * b + 4 * q * r)) / 2


def scalar_lqr_riccati(a: float, b: float, q: float, r: float) -> float:
    """Cost-to-go of x' = a x + b u, cost q x^2 + r u^2: root of b^2 X^2 + (r(1-a^2) - q b^2) X - q r = 0."""
    c = r * (1 - a * a) - q * b * b
    return (-c + math.sqrt(c * c + 4 * b * b * q * r)) / (2 * b * b)


@pytest.mark.parametrize(
    ("a", "q", "r"), [(0.95, 0.0975, 0.1), (0.5, 1.0, 2.0), (1.2, 0.3, 0.5), (1.0, 0.01, 1.0)]
)
def test_scalar_kalman_steady_state_is_the_closed_form(a, q, r):
    P_pred, P_filt, K = kalman_steady_state([[a]], [[1.0]], [[q]], [[r]])
    expected = scalar_filter_riccati(a, q, r)
    assert P_pred[0, 0] == pytest.approx(expected, rel=1e-10)
    assert K[0, 0] == pytest.approx(expected / (expected + r), rel=1e-10)
    assert P_filt[0, 0] == pytest.approx(expected * r / (expected + r), rel=1e-10)


@pytest.mark.parametrize(
    ("a", "b", "q", "r"), [(0.95, 1.0, 1.0, 0.1), (1.5, 0.5, 1.0, 1.0), (0.0, 1.0, 2.0, 3.0)]
)
def test_scalar_lqr_is_the_closed_form(a, b, q, r):
    L, X = lqr_gain([[a]], [[b]], [[q]], [[r]])
    expected = scalar_lqr_riccati(a, b, q, r)
    assert X[0, 0] == pytest.approx(expected, rel=1e-10)
    assert L[0, 0] == pytest.approx(b * expected * a / (r + b * b * expected), rel=1e-10)


def test_matrix_dare_satisfies_its_equation():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(4, 4))
    B = rng.normal(size=(4, 2))
    Q, R = np.eye(4), np.eye(2)
    X = solve_dare(A, B, Q, R)
    residual = A.T @ X @ A - A.T @ X @ B @ np.linalg.solve(R + B.T @ X @ B, B.T @ X @ A) + Q - X
    assert np.abs(residual).max() < 1e-8 * np.abs(X).max()


def test_unstabilisable_system_raises_riccati_error():
    with pytest.raises(RiccatiError, match="stabilisable"):
        solve_dare([[1.5]], [[0.0]], [[1.0]], [[1.0]])


def test_discrete_lyapunov_scalar_and_unstable():
    assert discrete_lyapunov([[0.9]], [[0.19]])[0, 0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="stable A"):
        discrete_lyapunov([[1.1]], [[1.0]])


def test_kalman_filter_skips_missing_sensors():
    kf_all = KalmanFilter([[0.9]], None, [[0.19]], [[[1.0]], [[1.0]]], [[[0.5]], [[0.1]]], [0.0], [[1.0]])
    kf_one = KalmanFilter([[0.9]], None, [[0.19]], [[[1.0]]], [[[0.5]]], [0.0], [[1.0]])
    kf_all.update({0: np.array([0.7])})  # sensor 1 dropped
    kf_one.update({0: np.array([0.7])})
    np.testing.assert_allclose(kf_all.mean, kf_one.mean)
    np.testing.assert_allclose(kf_all.cov, kf_one.cov)
    before = kf_all.mean.copy(), kf_all.cov.copy()
    kf_all.update({})  # nothing arrived: the prediction stands
    np.testing.assert_array_equal(kf_all.mean, before[0])
    kf_all.predict()
    assert kf_all.cov[0, 0] == pytest.approx(0.81 * before[1][0, 0] + 0.19)


# ------------------------------------------------------------------ env contract
@pytest.mark.parametrize("kwargs", CONFIGS)
def test_gymnasium_check_env_passes_without_warnings(kwargs):
    env = gym.make(ENV_ID, **kwargs).unwrapped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("kwargs", CONFIGS)
def test_sb3_check_env_passes_without_warnings(kwargs):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make(ENV_ID, **kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(env, warn=True)
    assert [str(w.message) for w in caught] == []


def test_spaces_views_and_link_views():
    env = gym.make(ENV_ID, preset="cv2d", n_sensors=8).unwrapped
    assert env.link_views == tuple(f"sensor_{k}" for k in range(8))
    assert list(env.observation_space.spaces) == list(env.link_views)
    for space in env.observation_space.spaces.values():
        assert space.shape == (2,) and space.dtype == np.float32
    assert env.action_space.shape == (4,) and env.action_space.dtype == np.float32
    assert (env.action_space.low == -1).all() and (env.action_space.high == 1).all()
    obs, info = env.reset(seed=0)
    assert info == {"is_success": False}
    assert all(v.dtype == np.float32 and v.shape == (2,) for v in obs.values())
    control = gym.make(ENV_ID, preset="cv2d", mode="control").unwrapped
    assert control.action_space.shape == (2,)


def test_per_sensor_c_matrices_give_their_own_view_shapes():
    C = [np.array([[1.0, 0, 0, 0]]), np.eye(4)[:2], np.eye(4)]
    env = SensorNetworkEnv(preset="cv2d", n_sensors=3, C=C, sensor_noise_variances=[0.1, 0.2, 0.3])
    assert [env.observation_space[k].shape for k in env.link_views] == [(1,), (2,), (4,)]
    assert env.model.noise_variances == (0.1, 0.2, 0.3)
    obs, _ = env.reset(seed=1)
    assert env.observation_space.contains(obs)


def rollout(env, seed, policy, steps=None):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for _ in range(steps or env.horizon):
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        out.append((obs, reward, terminated, truncated, info))
        if truncated:
            break
    return out


def assert_same(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    else:
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs", CONFIGS)
def test_same_seed_same_episode_other_seed_other_episode(kwargs):
    env1, env2 = SensorNetworkEnv(horizon=300, **kwargs), SensorNetworkEnv(horizon=300, **kwargs)
    env1.action_space.seed(3)
    env2.action_space.seed(3)
    a = rollout(env1, 7, lambda _: env1.action_space.sample())
    b = rollout(env2, 7, lambda _: env2.action_space.sample())
    assert_same(a, b)
    c = rollout(env1, 8, lambda _: np.zeros(env1.action_space.shape, np.float32), steps=5)
    assert not np.array_equal(a[0]["sensor_0"], c[0]["sensor_0"])


def test_episode_does_not_depend_on_the_horizon_across_chunks():
    # 300 steps cross the env's internal 256-step blocks; a longer horizon draws the same noise
    short = SensorNetworkEnv(preset="cv2d", n_sensors=2, horizon=300)
    long = SensorNetworkEnv(preset="cv2d", n_sensors=2, horizon=700)
    zero = np.zeros(4, np.float32)
    a = rollout(short, 5, lambda _: zero)
    b = rollout(long, 5, lambda _: zero, steps=300)
    assert_same(a[:-1], b[:-1])
    assert a[-1][3] and not b[-1][3]  # truncated at the horizon
    assert_same(a[-1][0], b[-1][0])


def test_truncates_at_horizon_and_never_terminates():
    env = gym.make(ENV_ID, horizon=7)
    out = rollout(env, 0, lambda _: np.zeros(1, np.float32), steps=50)
    assert len(out) == 8
    assert [step[3] for step in out[1:]] == [False] * 6 + [True]
    assert not any(step[2] for step in out[1:])
    with pytest.raises(gym.error.ResetNeeded):
        env.unwrapped.step(np.zeros(1, np.float32))


def test_pickle_round_trip():
    env = SensorNetworkEnv(preset="cv2d", n_sensors=3, mode="control")
    clone = pickle.loads(pickle.dumps(env))
    assert_same(
        rollout(env, 2, lambda _: np.zeros(2, np.float32), 20),
        rollout(clone, 2, lambda _: np.zeros(2, np.float32), 20),
    )


# ------------------------------------------------------------------ references are exact
def kalman_agent(env):
    """The fusion node an agent would run: Kalman filter on the (float32) views it receives."""
    kf = env.model.kalman_filter()

    def act(obs):
        kf.update({k: obs[name] for k, name in enumerate(env.link_views)})
        if env.mode == "estimate":
            value = kf.mean.copy()
        else:
            value = -env.lqr_gain @ kf.mean
        kf.predict(value if env.mode == "control" else None)
        return env.to_action(value)

    return act


@pytest.mark.parametrize("kwargs", [dict(preset="ar1", n_sensors=4), dict(preset="cv2d", n_sensors=3)])
def test_estimate_mode_kalman_agent_matches_the_reference(kwargs):
    env = SensorNetworkEnv(horizon=600, action_scale=1e4, **kwargs)
    out = rollout(env, 11, kalman_agent(env))
    for _, reward, _, _, info in out[1:]:
        assert -reward == pytest.approx(info["squared_error"])
        # the agent sees float32 views, the reference float64 measurements
        assert info["squared_error"] == pytest.approx(info["kalman_squared_error"], rel=1e-3, abs=1e-8)
        assert info["is_success"]
    errors = np.array([step[4]["kalman_squared_error"] for step in out[1:]])
    mse = np.array([step[4]["kalman_mse"] for step in out[1:]])
    assert errors.mean() == pytest.approx(mse[100:].mean(), rel=0.2)  # 600 samples: ~6 % std


@pytest.mark.parametrize("kwargs", [dict(preset="ar1", n_sensors=2), dict(preset="cv2d", n_sensors=3)])
def test_control_mode_kalman_lqr_agent_matches_the_lqg_twin(kwargs):
    env = SensorNetworkEnv(mode="control", horizon=400, action_scale=1e4, **kwargs)
    out = rollout(env, 4, kalman_agent(env))
    for *_, info in out[1:]:
        assert info["lqr_cost"] == pytest.approx(info["lqg_cost"], rel=1e-3, abs=1e-6)
        assert info["is_success"]
    lazy = rollout(env, 4, lambda _: np.zeros(env.action_space.shape, np.float32))
    assert not lazy[-1][4]["is_success"]
    # the Kalman reference does not depend on what the agent did
    assert [s[4]["kalman_squared_error"] for s in out[1:]] == [s[4]["kalman_squared_error"] for s in lazy[1:]]


def test_scalar_env_kalman_mse_reaches_the_closed_form():
    # K scalar sensors y_k = x + v_k act as one sensor of noise 1 / sum(1 / r_k)
    noise = [0.2, 0.5, 1.0]
    env = SensorNetworkEnv(preset="ar1", n_sensors=3, sensor_noise_variances=noise, horizon=400)
    r = 1.0 / sum(1.0 / v for v in noise)
    P = scalar_filter_riccati(0.95, 1 - 0.95**2, r)
    out = rollout(env, 0, lambda _: np.zeros(1, np.float32))
    assert out[-1][4]["kalman_mse"] == pytest.approx(P * r / (P + r), rel=1e-9)
    assert out[1][4]["kalman_mse"] == pytest.approx(1.0 * r / (1.0 + r), rel=1e-9)  # prior variance 1


def test_state_follows_the_dynamics():
    env = SensorNetworkEnv(preset="ar1", n_sensors=1, horizon=3000)
    env.reset(seed=0)
    states = []
    for _ in range(3000):
        states.append(env.state[0])
        env.step(np.zeros(1, np.float32))
    x = np.array(states)
    residual = x[1:] - 0.95 * x[:-1]
    assert residual.var() == pytest.approx(1 - 0.95**2, rel=0.1)
    assert x.var() == pytest.approx(1.0, rel=0.3)


def test_actions_are_scaled_and_clipped():
    env = SensorNetworkEnv(preset="ar1", action_scale=2.0)
    env.reset(seed=0)
    x = env.state
    _, reward, *_ = env.step(np.array([5.0], np.float32))  # clipped to 1 -> estimate 2.0
    assert -reward == pytest.approx(float((2.0 - x[0]) ** 2))
    np.testing.assert_allclose(env.from_action(env.to_action(np.array([1.5]))), [1.5], rtol=1e-6)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(sensor_noise_variances=[0.1, 0.0, 0.2, 0.3]), "sensor_noise_variances must all be positive"),
        (dict(sensor_noise_variances=-1.0), "sensor_noise_variances must all be positive"),
        (dict(sensor_noise_variances=[0.1, 0.2]), "n_sensors = 4"),
        (dict(process_noise_cov=0.0), "process_noise_cov: noise variances must be positive"),
        (
            dict(preset="cv2d", process_noise_cov=-np.eye(4)),
            "process_noise_cov must be positive semidefinite",
        ),
        (dict(A=np.ones((2, 3))), "A must be square"),
        (dict(preset="cv2d", B=np.ones((3, 2))), r"B must have shape \(4x\?\)"),
        (dict(preset="cv2d", C=np.ones((2, 3))), r"C must have shape \(\?x4\)"),
        (dict(preset="cv2d", n_sensors=2, C=[np.eye(4)[:2], np.ones((2, 5))]), r"C\[1\] must have shape"),
        (dict(n_sensors=2, C=[[[1.0]], [[1.0]], [[1.0]]]), "n_sensors = 2 matrices"),
        (dict(initial_mean=[0.0, 1.0]), "initial_mean must be 1 finite"),
        (dict(A=[[1.5]], horizon=200), r"spectral radius 1.5.*horizon must be <= 85"),
        (dict(A=[[1e20]]), "no horizon fits"),
        (dict(mode="control", A=[[1.2]], B=[[0.0]], horizon=20), "A, B: no LQR gain stabilises"),
        (dict(mode="control", control_cost=0.0), "control_cost"),
        (dict(mode="nope"), "mode must be one of"),
        (dict(preset="nope"), "preset must be one of"),
        (dict(n_sensors=0), r"n_sensors must be an integer in \[1, 1024\]"),
        (dict(n_sensors=10**7), "MAX_SENSORS"),
        (dict(horizon=0), r"horizon must be an integer in \[1, 1,000,000\]"),
        (dict(horizon=10**12), "MAX_HORIZON"),
        (dict(preset="cv2d", n_sensors=1024, C=np.eye(4)), "MAX_MEASUREMENT_DIMS"),
        (
            dict(
                A=np.eye(65) * 0.5,
                B=np.ones((65, 1)),
                C=np.ones((1, 65)),
                process_noise_cov=1.0,
                initial_mean=np.zeros(65),
                initial_cov=1.0,
            ),
            "MAX_STATE_DIM",
        ),
        (dict(horizon=999_999, preset="cv2d", n_sensors=64), "MAX_FILTER_BYTES"),
        (dict(success_factor=0.5), "success_factor must be"),
        (dict(action_scale=-1.0), "action_scale must be positive"),
        (dict(render_mode="rgb_array"), "does not render"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SensorNetworkEnv(**kwargs)


def test_bad_actions_raise():
    env = SensorNetworkEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="Action dimension mismatch"):
        env.step(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan], np.float32))
