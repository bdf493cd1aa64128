import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import bwgym  # noqa: F401
from bwgym.agents.expert import LiftExpert
from bwgym.envs.lift import CAMERAS, LocateLiftEnv

ENV_ID = "bwgym/LocateLift-v0"


def yellow_pixels(image: np.ndarray) -> int:
    r, g, b = (image[..., i].astype(int) for i in range(3))
    return int(((r > 170) & (g > 140) & (b < 90) & (r - b > 120)).sum())


@pytest.mark.parametrize("env_id", [ENV_ID, "bwgym/LocateLift-v1"])
def test_gymnasium_check_env_passes_without_warnings(env_id):
    env = gym.make(env_id, render_mode="rgb_array").unwrapped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=False)
    assert [str(w.message) for w in caught] == []
    env.close()


def test_sb3_check_env_passes_without_warnings():
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make(ENV_ID, proprio=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(env, warn=True)
    assert [str(w.message) for w in caught] == []


def test_spaces_and_default_views():
    env = gym.make(ENV_ID)
    obs, info = env.reset(seed=0)
    assert set(obs) == {"arm", "side"}
    for view in ("arm", "side"):
        assert obs[view].shape == (84, 84, 3) and obs[view].dtype == np.uint8
    assert info["is_success"] is False
    assert env.action_space.shape == (4,)
    assert env.unwrapped.dt == pytest.approx(0.04)
    assert env.spec.max_episode_steps == 50


def test_configurable_cameras_size_and_proprio():
    env = gym.make(ENV_ID, cameras=CAMERAS, image_size=(48, 64), proprio=True)
    obs, _ = env.reset(seed=3)
    assert set(obs) == set(CAMERAS) | {"proprio"}
    assert obs["top"].shape == (48, 64, 3)
    assert obs["proprio"].shape == (7,) and obs["proprio"].dtype == np.float32
    assert env.observation_space.contains(obs)


def test_same_seed_same_observations_and_trajectory():
    a, b = gym.make(ENV_ID), gym.make(ENV_ID)
    obs_a, _ = a.reset(seed=11)
    obs_b, _ = b.reset(seed=11)
    for view in obs_a:
        assert obs_a[view].tobytes() == obs_b[view].tobytes()
    actions = np.random.default_rng(0).uniform(-1, 1, size=(30, 4)).astype(np.float32)
    for action in actions:
        step_a, step_b = a.step(action), b.step(action)
        for view in step_a[0]:
            assert step_a[0][view].tobytes() == step_b[0][view].tobytes()
        assert step_a[1:4] == step_b[1:4]
    other, _ = b.reset(seed=12)
    assert other["side"].tobytes() != obs_a["side"].tobytes()


def test_pickle_round_trip_rebuilds_the_env():
    env = LocateLiftEnv(image_size=32, n_distractors=2)
    clone = pickle.loads(pickle.dumps(env))
    assert clone.image_size == (32, 32) and clone.n_distractors == 2
    o1, _ = env.reset(seed=5)
    o2, _ = clone.reset(seed=5)
    assert o1["side"].tobytes() == o2["side"].tobytes()


def test_brick_is_visible_in_side_view_at_reset():
    env = gym.make(ENV_ID)
    for seed in range(25):
        obs, _ = env.reset(seed=seed)
        assert yellow_pixels(obs["side"]) >= 8, f"seed {seed}: brick not visible in the side view"


def test_brick_is_visible_in_arm_view_above_it():
    env = gym.make(ENV_ID)
    expert = LiftExpert(env)
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        expert.reset()
        sim = env.unwrapped
        for _ in range(50):
            if np.linalg.norm(sim.gripper_pos[:2] - sim.brick_pos[:2]) < 0.015:
                break
            obs, *_ = env.step(expert.act(obs))
        assert yellow_pixels(obs["arm"]) >= 100, f"seed {seed}: brick not visible in the arm view"


def test_distractors_are_not_yellow():
    env = gym.make(ENV_ID, n_distractors=3, cameras=("top",))
    env.reset(seed=0)
    sim = env.unwrapped
    # Hide the brick below the table: no yellow may remain.
    sim.data.qpos[sim._ids.brick_qpos + 2] = -0.3
    import mujoco

    mujoco.mj_forward(sim.model, sim.data)
    assert yellow_pixels(sim._get_obs()["top"]) == 0


def test_dense_reward_is_the_sum_of_its_terms():
    env = gym.make(ENV_ID, reward_type="dense")
    expert = LiftExpert(env)
    env.reset(seed=2)
    rewards = []
    for _ in range(30):
        _, reward, terminated, truncated, info = env.step(expert.act())
        terms = [v for k, v in info.items() if k.startswith("reward_")]
        assert len(terms) == 3 and reward == pytest.approx(sum(terms))
        rewards.append(reward)
        if terminated or truncated:
            break
    assert info["is_success"] and rewards[-1] > rewards[0]


def test_out_of_range_actions_are_clipped():
    a, b = gym.make(ENV_ID), gym.make(ENV_ID)
    a.reset(seed=4)
    b.reset(seed=4)
    oa = a.step(np.array([5.0, -7.0, 3.0, 9.0]))[0]
    ob = b.step(np.array([1.0, -1.0, 1.0, 1.0]))[0]
    assert oa["side"].tobytes() == ob["side"].tobytes()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(cameras=("arm", "wrist")), "cameras must be distinct names from"),
        (dict(cameras=()), "at least one of"),
        (dict(image_size=8), "between 16 and 512"),
        (dict(image_size=1024), "between 16 and 512"),
        (dict(reward_type="shaped"), "'sparse' or 'dense'"),
        (dict(n_distractors=4), "between 0 and 3"),
        (dict(render_mode="human"), "render_mode"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LocateLiftEnv(**kwargs)


def test_missing_xml_file_raises():
    with pytest.raises(OSError, match="does not exist"):
        LocateLiftEnv(xml_file="/nonexistent/scene.xml")


@pytest.mark.parametrize("action", [[np.nan, 0, 0, 0], [0, np.inf, 0, 0]])
def test_non_finite_action_raises(action):
    env = gym.make(ENV_ID)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array(action))


def test_wrong_action_shape_raises():
    env = LocateLiftEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="Expected \\(4,\\)"):
        env.step(np.zeros(3))


def test_render_returns_views_side_by_side():
    env = gym.make(ENV_ID, render_mode="rgb_array", image_size=32)
    env.reset(seed=0)
    assert env.render().shape == (32, 64, 3)


@pytest.mark.slow
def test_expert_succeeds_on_100_seeded_episodes():
    env = gym.make(ENV_ID)
    expert = LiftExpert(env, noise_std=0.1, seed=0)
    successes = 0
    for seed in range(100):
        obs, info = env.reset(seed=seed)
        expert.reset()
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(expert.act(obs))
            done = terminated or truncated
        successes += info["is_success"]
    assert successes >= 95


@pytest.mark.slow
def test_random_policy_rarely_succeeds():
    env = gym.make(ENV_ID, image_size=16)
    env.action_space.seed(0)
    successes = 0
    for seed in range(40):
        env.reset(seed=seed)
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(env.action_space.sample())
            done = terminated or truncated
        successes += info["is_success"]
    assert successes / 40 < 0.05
