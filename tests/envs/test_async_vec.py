"""`gymnasium.make_vec(..., "async")` works for every bwgym id, in a parent that already stepped an env.

Forked workers used to wait forever on a futex: Mesa's llvmpipe rasteriser threads (LocateLift,
once the parent had rendered) and torch's OpenMP pool (AllocateBandwidth, whose task agent runs on
torch) do not survive fork. Each case runs in its own interpreter with a timeout, so that a
deadlock fails the test instead of blocking the suite, and a fresh process is the only honest
"parent": the test runner itself may or may not have rendered or used torch already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest

import bwgym  # noqa: F401  (registers the envs)
from bwgym.envs.rendering import MultiCameraRenderer

#: A worker that hangs fails its case after this long (a healthy case takes seconds).
TIMEOUT_S = float(os.environ.get("BWGYM_TEST_VEC_TIMEOUT_S", 150))
BWGYM_IDS = sorted(env_id for env_id in gym.registry if env_id.startswith("bwgym/"))

#: Run in a fresh interpreter: step one env in the parent (its renderer, its torch agent, plus a
#: torch matmul to be sure the OpenMP pool runs), then async and sync vector envs of the same seeds.
SCRIPT = textwrap.dedent(
    """
    import json, sys
    import gymnasium as gym
    import numpy as np
    import bwgym

    env_id, steps = sys.argv[1], 3
    env = gym.make(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(2):
        env.step(env.action_space.sample())
    if "torch" in sys.modules:
        import torch

        torch.ones(512, 512) @ torch.ones(512, 512)
    env.close()

    def flat(obs):
        if isinstance(obs, dict):
            return np.concatenate([np.asarray(obs[k], np.float64).ravel() for k in sorted(obs)])
        return np.asarray(obs, np.float64).ravel()

    def run(mode):
        vec = gym.make_vec(env_id, num_envs=2, vectorization_mode=mode)
        obs, _ = vec.reset(seed=[11, 12])
        trail = [flat(obs)]
        rng = np.random.default_rng(5)
        space = vec.single_action_space
        for _ in range(steps):
            actions = np.stack([rng.uniform(space.low, space.high).astype(space.dtype) for _ in range(2)])
            obs, reward, *_ = vec.step(actions)
            trail += [flat(obs), np.asarray(reward, np.float64)]
        vec.close()
        return np.concatenate(trail)

    a, s = run("async"), run("sync")
    print(json.dumps({"n": int(a.size), "max_diff": float(np.max(np.abs(a - s))) if a.size == s.size else None}))
    """
)


@pytest.mark.parametrize("env_id", BWGYM_IDS)
def test_make_vec_async_after_parent_stepped(env_id: str, tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LP_NUM_THREADS"}  # the package's default
    try:
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, env_id],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            cwd=tmp_path,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"make_vec({env_id!r}, vectorization_mode='async') hung: {(exc.stderr or '')[-2000:]}")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["max_diff"] is not None, "async and sync gave observations of different sizes"
    # Same seeds, same actions: the same observations and rewards (images exactly, floats to 1e-6:
    # a torch agent on one thread in a worker may round differently from two in the parent).
    assert result["max_diff"] <= 1e-6, result


def test_every_id_is_covered() -> None:
    assert {"bwgym/LocateLift-v0", "bwgym/LocateLift-v1", "bwgym/AllocateBandwidth-v0"} <= set(BWGYM_IDS)


def test_threaded_llvmpipe_parent_refuses_in_child_instead_of_hanging(tmp_path) -> None:
    # The user asked for rasteriser threads: a forked child cannot render, and says so.
    script = textwrap.dedent(
        """
        import os, sys
        import gymnasium as gym
        import bwgym
        from bwgym.envs import rendering

        env = gym.make("bwgym/LocateLift-v1")
        env.reset(seed=0)
        if "llvmpipe" not in rendering._FIRST_CONTEXT[1]:
            print("not llvmpipe"); sys.exit(0)
        pid = os.fork()
        if pid == 0:
            try:
                gym.make("bwgym/LocateLift-v1").reset(seed=0)
            except rendering.RenderingUnavailableError as exc:
                os._exit(3 if "spawn" in str(exc) else 4)
            os._exit(5)
        os._exit(os.waitpid(pid, 0)[1] >> 8)
        """
    )
    env = dict(os.environ, LP_NUM_THREADS="2")
    try:
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
        )
    except subprocess.TimeoutExpired:
        pytest.fail("a child forked after a threaded llvmpipe context hung instead of refusing")
    if done.stdout.strip() == "not llvmpipe":
        pytest.skip("the GL backend here is not Mesa's llvmpipe")
    assert done.returncode == 3, done.stderr[-2000:]


def test_renderer_made_before_fork_renders_in_child(tmp_path) -> None:
    # An env object inherited across a fork: its renderer leaves the parent's context alone.
    script = textwrap.dedent(
        """
        import os
        import gymnasium as gym
        import numpy as np
        import bwgym

        env = gym.make("bwgym/LocateLift-v1")
        first, _ = env.reset(seed=3)
        pid = os.fork()
        if pid == 0:
            again, _ = env.reset(seed=3)
            env.close()
            os._exit(0 if all(np.array_equal(first[k], again[k]) for k in first) else 4)
        code = os.waitpid(pid, 0)[1] >> 8
        again, _ = env.reset(seed=3)  # the parent's context still works after the child closed
        os._exit(code or (0 if all(np.array_equal(first[k], again[k]) for k in first) else 6))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "LP_NUM_THREADS"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
        )
    except subprocess.TimeoutExpired:
        pytest.fail("an env made before a fork hung when the child rendered")
    assert done.returncode == 0, done.stderr[-2000:]


def test_renderer_makes_no_context_before_the_first_render() -> None:
    import mujoco

    model = mujoco.MjModel.from_xml_string(
        '<mujoco><worldbody><camera name="c" pos="0 0 1"/><geom size=".1"/></worldbody></mujoco>'
    )
    renderer = MultiCameraRenderer(model, ["c"], 8, 8)
    assert renderer._renderer is None  # built lazily, in the process that renders
    frame = renderer.render(mujoco.MjData(model))["c"]
    assert frame.shape == (8, 8, 3) and frame.dtype == np.uint8
    renderer.close()
    renderer.close()


@pytest.mark.parametrize("value", [-1, -0.5, float("nan"), float("inf")])
@pytest.mark.parametrize("name", ["action_error_weight", "bit_cost"])
def test_allocation_env_refuses_negative_or_nonfinite_weights(name: str, value: float) -> None:
    from bwgym.envs.allocation import AllocateBandwidthEnv

    class Agent:
        def act(self, obs):  # never called: the arguments are refused first
            raise AssertionError

    with pytest.raises(ValueError, match=name) as info:
        AllocateBandwidthEnv(Agent(), **{name: value})
    assert "\n" not in str(info.value)
