"""The ``bwgym`` command: ``bwgym expert | traces ...`` (``bwgym --help`` lists them)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bwgym.traces import commands as trace_commands

__all__ = ["main"]


def _cmd_expert(args: argparse.Namespace) -> int:
    """Run the scripted expert on LocateLift, print a success table, write a table and a PNG."""
    import gymnasium as gym
    import numpy as np
    import pandas as pd
    from PIL import Image
    from tqdm import tqdm

    import bwgym  # noqa: F401  (registers the envs)
    from bwgym.agents.expert import LiftExpert

    out = Path(args.out) / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    env = gym.make(args.env)
    expert = LiftExpert(env, noise_std=args.noise_std, seed=args.seed)
    rows, strips = [], []
    for episode in tqdm(range(args.episodes), desc="expert episodes", unit="ep"):
        seed = args.seed + episode
        obs, info = env.reset(seed=seed)
        expert.reset(seed=seed)
        first, ret, steps = obs, 0.0, 0
        start = time.perf_counter()
        terminated = truncated = False
        while not (terminated or truncated):
            obs, reward, terminated, truncated, info = env.step(expert.act(obs))
            ret += reward
            steps += 1
        rows.append(
            dict(episode=episode, seed=seed, success=bool(info["is_success"]), steps=steps, ret=ret,
                 steps_per_s=steps / (time.perf_counter() - start))
        )
        if episode < 4:
            views = env.unwrapped.cameras
            strips.append(np.concatenate([np.concatenate([first[v] for v in views], 1),
                                          np.concatenate([obs[v] for v in views], 1)], 0))
    env.close()
    episodes = pd.DataFrame(rows)
    episodes.to_csv(out / "episodes.csv", index=False)
    summary = pd.DataFrame(
        [dict(env=args.env, episodes=len(episodes), success_rate=episodes.success.mean(),
              mean_steps=episodes.steps.mean(), steps_per_s=episodes.steps_per_s.mean())])
    summary.to_csv(out / "summary.csv", index=False)
    picture = np.concatenate(strips, 1)
    Image.fromarray(picture).save(out / "views.png")
    print(summary.to_string(index=False))
    print(f"\nepisodes: {out / 'episodes.csv'}\nsummary:  {out / 'summary.csv'}\n"
          f"views:    {out / 'views.png'} (per episode: first frame above, last below; views side by side)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``bwgym`` command."""
    parser = argparse.ArgumentParser(prog="bwgym", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    expert = sub.add_parser("expert", help="run the scripted expert on LocateLift and write a table and views")
    expert.add_argument("--env", default="bwgym/LocateLift-v0")
    expert.add_argument("--episodes", type=int, default=20)
    expert.add_argument("--seed", type=int, default=0)
    expert.add_argument("--noise-std", type=float, default=0.0)
    expert.add_argument("--out", default="runs/expert")
    expert.set_defaults(func=_cmd_expert)

    trace_commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
