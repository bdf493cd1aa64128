"""Steps per second of LocateLift against bare MuJoCo on the same MJCF, and with worker processes.

    python benchmarks/env_speed.py [--steps 600]

Rows, all measured in one run with random actions:
- ``physics only``: the scene's 10 physics steps per control step, no rendering;
- ``bare mujoco``: physics plus one ``mujoco.Renderer`` rendering both cameras (the limit);
- ``LocateLift``: ``gymnasium.make("bwgym/LocateLift-v0")``, the env as agents see it;
- ``make_vec async, N workers``: total env steps/s over N worker processes.
"""

from __future__ import annotations

import time

import gymnasium as gym
import mujoco
from report import machine_line, script_parser, write_section  # noqa: E402  (run as a script)

import bwgym  # noqa: F401  (first: it selects the headless GL backend before mujoco loads)
from bwgym.envs.lift import LocateLiftEnv

CAMERAS = ("arm", "side")


def bare_mujoco(size: int, steps: int, render: bool) -> float:
    model = mujoco.MjModel.from_xml_string(LocateLiftEnv._load_xml(None, 0))
    data = mujoco.MjData(model)
    renderer = mujoco.Renderer(model, size, size) if render else None
    if renderer is not None:
        for flag in (
            mujoco.mjtRndFlag.mjRND_SHADOW,
            mujoco.mjtRndFlag.mjRND_REFLECTION,
            mujoco.mjtRndFlag.mjRND_SKYBOX,
        ):
            renderer.scene.flags[flag] = False
    mujoco.mj_forward(model, data)
    start = time.perf_counter()
    for _ in range(steps):
        mujoco.mj_step(model, data, nstep=10)
        if renderer is not None:
            for cam in CAMERAS:
                renderer.update_scene(data, camera=cam)
                renderer.render()
    rate = steps / (time.perf_counter() - start)
    if renderer is not None:
        renderer.close()
    return rate


def env_rate(size: int, steps: int) -> float:
    env = gym.make("bwgym/LocateLift-v0", image_size=size)
    env.reset(seed=0)
    env.action_space.seed(0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def vec_rate(size: int, steps: int, workers: int) -> float:
    envs = gym.make_vec(
        "bwgym/LocateLift-v0",
        num_envs=workers,
        vectorization_mode="async",
        vector_kwargs={"context": "spawn"},
        image_size=size,
    )
    envs.reset(seed=0)
    envs.action_space.seed(0)
    envs.step(envs.action_space.sample())  # workers' renderers are created lazily: warm up
    start = time.perf_counter()
    for _ in range(steps // workers):
        envs.step(envs.action_space.sample())
    rate = (steps // workers) * workers / (time.perf_counter() - start)
    envs.close()
    return rate


def size_row(size: int, steps: int) -> str:
    """Measure every rate at ``size`` x ``size`` pixels; return the table row."""
    physics = bare_mujoco(size, steps * 3, render=False)
    bare = bare_mujoco(size, steps, render=True)
    env = env_rate(size, steps)
    one = vec_rate(size, steps, 1)
    two = vec_rate(size, steps, 2)
    return (
        f"| {size}x{size} | {physics:,.0f} | {bare:,.0f} | {env:,.0f} | {env / bare:.2f} | "
        f"{one:,.0f} | {two:,.0f} | {two / one:.2f} |"
    )


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--steps", type=int, default=600)
    args = parser.parse_args()
    lines = [
        "## LocateLift speed",
        "",
        f"Command: `python benchmarks/env_speed.py --steps {args.steps}`. {machine_line()}",
        "Two cameras (arm, side); steps/s (one step = 0.04 s of simulation = 10 physics steps).",
        "",
        "| image | physics only | bare mujoco (limit) | LocateLift | LocateLift / bare | make_vec, 1 worker | make_vec, 2 workers | 2 / 1 workers |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size in (64, 84, 112):
        row = size_row(size, args.steps)
        print(row, flush=True)
        lines.append(row)
    lines += [
        "",
        "Reference: robosuite's Lift with two 84 px cameras ran ~11 steps/s on this machine kind (issue 2).",
    ]
    write_section("env_speed", "\n".join(lines))
    print("wrote BENCHMARKS.md")


if __name__ == "__main__":
    main()
