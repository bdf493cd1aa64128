"""The ``bwgym`` command: run scenarios and sweeps, train agents and codecs, inspect traces."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bwgym.cli import agents as agent_commands
from bwgym.cli import allocation as allocation_commands
from bwgym.cli import codecs as codec_commands
from bwgym.cli import scenarios as scenario_commands
from bwgym.cli.args import DEFAULT_ENV, add_run_options
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
    from bwgym.agents.base import rollout
    from bwgym.agents.expert import LiftExpert

    out = Path(args.out) / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    env = gym.make(args.env)
    expert = LiftExpert(env, noise_std=args.noise_std, seed=args.seed)
    rows, strips = [], []
    seen: list[tuple[float, dict]] = []  # (clock, observation) after the reset and each step so far

    def on_step(step: int, obs: dict, *_: object) -> None:
        seen[step:] = [(time.perf_counter(), obs)]

    for episode in tqdm(range(args.episodes), desc="expert episodes", unit="ep"):
        seed = args.seed + episode
        result = rollout(env, expert, seed, on_step=on_step)
        (start, first), (end, obs) = seen[0], seen[-1]
        rows.append(
            dict(
                episode=episode,
                seed=seed,
                success=result.success,
                steps=result.steps,
                ret=result.ret,
                steps_per_s=result.steps / (end - start),
            )
        )
        if episode < 4:
            views = env.unwrapped.cameras
            strips.append(
                np.concatenate(
                    [
                        np.concatenate([first[v] for v in views], 1),
                        np.concatenate([obs[v] for v in views], 1),
                    ],
                    0,
                )
            )
    env.close()
    episodes = pd.DataFrame(rows)
    episodes.to_csv(out / "episodes.csv", index=False)
    summary = pd.DataFrame(
        [
            dict(
                env=args.env,
                episodes=len(episodes),
                success_rate=episodes.success.mean(),
                mean_steps=episodes.steps.mean(),
                steps_per_s=episodes.steps_per_s.mean(),
            )
        ]
    )
    summary.to_csv(out / "summary.csv", index=False)
    picture = np.concatenate(strips, 1)
    Image.fromarray(picture).save(out / "views.png")
    print(summary.to_string(index=False))
    print(
        f"\nepisodes: {out / 'episodes.csv'}\nsummary:  {out / 'summary.csv'}\n"
        f"views:    {out / 'views.png'} (per episode: first frame above, last below; views side by side)"
    )
    return 0


def _parse_overrides(pairs: Sequence[str]) -> dict:
    import yaml

    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set expects key=value (e.g. run.episodes=5), got {pair!r}")
        key, value = pair.split("=", 1)
        overrides[key] = yaml.safe_load(value)
    return overrides


def _cmd_run(args: argparse.Namespace) -> int:
    """Run a scenario and print its summary and where its files are."""
    from bwgym.scenarios.config import ConfigError, load_scenario
    from bwgym.scenarios.runner import default_out_dir, run_scenario

    overrides = _parse_overrides(args.set)
    for key, value in (
        ("run.episodes", args.episodes),
        ("run.seed", args.seed),
        ("run.workers", args.workers),
    ):
        if value is not None:
            overrides[key] = value
    try:
        scenario = load_scenario(args.scenario, overrides)
        out = Path(args.out) if args.out else default_out_dir(scenario)
        if args.resume and not args.out:
            raise ConfigError("--resume needs --out naming the run folder to continue")
        result = run_scenario(scenario, out, resume=args.resume)
    except ConfigError as exc:
        print(f"bwgym run: {exc}", file=sys.stderr)
        return 2
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(result.summary.T.to_string(header=False))
    print(f"\nrun folder: {result.out_dir}")
    for name in ("episodes.parquet", "steps.parquet", "summary.csv"):
        print(f"  {name:18s} {result.out_dir / name}")
    for plot in sorted((result.out_dir / "plots").glob("*.png")):
        print(f"  {'plots/' + plot.name:18s} {plot}")
    if args.video:
        from bwgym.scenarios.video import write_episode_video

        video = write_episode_video(scenario, result.out_dir / "plots" / "episode_000.gif", episode=0)
        print(f"  {'plots/' + video.name:18s} {video}")
    print(f"  {'tensorboard/':18s} tensorboard --logdir {result.out_dir / 'tensorboard'}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate an agent under a codec and a trace: a scenario built from flags, run like `bwgym run`."""
    from bwgym.scenarios.config import ConfigError, scenario_from_dict

    def from_cwd(path: str | None) -> str | None:
        # Paths on the command line are relative to the working directory (inside a scenario file
        # they are relative to that file, and this scenario is written to a temporary folder).
        return str(Path(path).resolve()) if path and Path(path).exists() else path

    trace = {"source": from_cwd(args.trace), "scale": args.scale}
    args.codec_checkpoint, args.agent_checkpoint = (
        from_cwd(args.codec_checkpoint),
        from_cwd(args.agent_checkpoint),
    )
    data = {
        "name": args.name or f"eval_{args.agent}_{args.codec}_{Path(args.trace).stem}",
        "description": "built by `bwgym evaluate`",
        "env": {"id": args.env},
        "trace": trace,
        "codec": {"name": args.codec, "checkpoint": args.codec_checkpoint},
        "agent": {"name": args.agent, "checkpoint": args.agent_checkpoint},
        "run": {
            "episodes": args.episodes,
            "seed": args.seed,
            "workers": args.workers,
            "record_steps": not args.no_steps,
        },
    }
    import tempfile

    import yaml

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{data['name']}.yaml"
        try:
            scenario_from_dict(data)  # fail on bad flags before writing anything
            path.write_text(yaml.safe_dump(data))
        except ConfigError as exc:
            print(f"bwgym evaluate: {exc}", file=sys.stderr)
            return 2
        args.scenario, args.set = str(path), []
        args.episodes = args.seed = args.workers = None
        return _cmd_run(args)


def _cmd_scenarios(args: argparse.Namespace) -> int:
    """List the shipped scenarios, one line each, with the mean bits per step they offer."""
    from bwgym.scenarios.config import library_scenarios, load_scenario
    from bwgym.scenarios.factory import make_trace

    rows = []
    for name in library_scenarios():
        s = load_scenario(name)
        step_s = s.link.step_seconds or 0.04
        budget = "unlimited" if s.codec.name == "none" else f"{make_trace(s).mean_bps * step_s:,.0f}"
        rows.append(
            f"{name:28s} {s.codec.name:12s} {s.agent.name:7s} {budget:>10s} bits/step  "
            f"{s.description.strip()[:80]}"
        )
    print(f"{'scenario':28s} {'codec':12s} {'agent':7s} {'mean budget':>20s}  description")
    print("\n".join(rows))
    return 0


def _cmd_codecs(args: argparse.Namespace) -> int:
    """List the registered codecs: name, wire format, shipped checkpoint, description."""
    from bwgym.codecs import codec_entry, codec_names

    print(f"{'codec':16s} {'wire':12s} {'shipped checkpoint':34s} description")
    for name in codec_names():
        e = codec_entry(name)
        print(f"{name:16s} {e.wire_name:12s} {e.checkpoint or '-':34s} {e.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``bwgym`` command."""
    parser = argparse.ArgumentParser(prog="bwgym", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    expert = sub.add_parser(
        "expert", help="run the scripted expert on LocateLift and write a table and views"
    )
    expert.add_argument("--env", default=DEFAULT_ENV)
    expert.add_argument("--episodes", type=int, default=20)
    expert.add_argument("--seed", type=int, default=0)
    expert.add_argument("--noise-std", type=float, default=0.0)
    expert.add_argument("--out", default="runs/expert")
    expert.set_defaults(func=_cmd_expert)

    run = sub.add_parser("run", help="run a scenario (a library name or a YAML file)")
    add_run_options(run, "run", "run folder (default runs/<scenario>/<stamp>)")
    run.add_argument("--video", action="store_true", help="also write plots/episode_000.gif of episode 0")
    run.set_defaults(func=_cmd_run)

    evaluate = sub.add_parser(
        "evaluate", help="evaluate an agent under a codec and a trace (success with CIs)"
    )
    evaluate.add_argument("--env", default=DEFAULT_ENV)
    evaluate.add_argument("--agent", default="bc", help="bc, sb3, expert or random")
    evaluate.add_argument("--agent-checkpoint", help="checkpoint of the agent (default: the shipped one)")
    evaluate.add_argument("--codec", default="jpeg")
    evaluate.add_argument("--codec-checkpoint")
    evaluate.add_argument("--trace", default="lte_drive", help="library trace name or file")
    evaluate.add_argument("--scale", type=float, default=1.0, help="multiply the trace's rates")
    evaluate.add_argument("--episodes", type=int, default=100)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--workers", type=int, default=1)
    evaluate.add_argument("--no-steps", action="store_true", help="do not write steps.parquet")
    evaluate.add_argument("--name", help="run name (default from agent, codec and trace)")
    evaluate.add_argument("--out", help="run folder")
    evaluate.add_argument("--resume", action="store_true")
    evaluate.add_argument("--video", action="store_true", help=argparse.SUPPRESS)
    evaluate.set_defaults(func=_cmd_evaluate)

    scenarios = sub.add_parser("scenarios", help="list the shipped scenarios")
    scenarios.set_defaults(func=_cmd_scenarios)
    codecs = sub.add_parser("codecs", help="list the registered codecs")
    codecs.set_defaults(func=_cmd_codecs)

    trace_commands.register(sub)
    train = sub.add_parser("train", help="train an agent or a codec")
    train_sub = train.add_subparsers(dest="what", required=True)
    agent_commands.register(sub, train_sub)
    codec_commands.register(sub, train_sub)
    allocation_commands.register(train_sub)
    scenario_commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status.

    Bad input (a scenario, a flag, a file, a checkpoint) ends in one line on stderr naming the
    problem and exit status 2, never a traceback; set ``BWGYM_DEBUG=1`` to see the traceback.
    """
    import os

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (
        ValueError,
        TypeError,
        OSError,
        KeyError,
    ) as exc:  # ConfigError, CheckpointError, TraceFormatError...
        if os.environ.get("BWGYM_DEBUG"):
            raise
        command = " ".join(part for part in ("bwgym", args.command, getattr(args, "what", None)) if part)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"{command}: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
