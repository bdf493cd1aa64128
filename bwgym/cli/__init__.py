"""The ``bwgym`` command: run scenarios and sweeps, train agents and codecs, inspect traces."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bwgym.cli import agents as agent_commands
from bwgym.cli import allocation as allocation_commands
from bwgym.cli import codecs as codec_commands
from bwgym.cli import latent_agent as latent_agent_commands
from bwgym.cli import models as model_commands
from bwgym.cli import registry as registry_commands
from bwgym.cli import scenarios as scenario_commands
from bwgym.cli import zoo as zoo_commands
from bwgym.cli.args import (
    DEFAULT_ENV,
    MAX_DEMO_EPISODES,
    MAX_SEED,
    OneLineParser,
    add_count_options,
    add_run_options,
    bounded_float,
    bounded_int,
    check_env_id,
)
from bwgym.scenarios.sections import MAX_TRACE_SCALE
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

    check_env_id("--env", args.env, expert=True)  # before the folder: the expert drives LocateLift only
    out = Path(args.out) / time.strftime("%Y%m%d-%H%M%S")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a file; expected a folder")
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


#: Scenario keys that hold a file path: on the command line it is relative to the working directory.
PATH_KEYS = (
    "trace.source",
    "codec.checkpoint",
    "agent.checkpoint",
    "allocator.checkpoint",
    "fleet.allocator.checkpoint",
)


def path_from_cwd(key: str, value: Any, flag: str) -> Any:
    """A path given on the command line for scenario key ``key``, made absolute against the cwd.

    Inside a scenario file paths are relative to the file; the README promises command-line paths
    relative to the working directory, so they are resolved here, before the scenario sees them.
    A ``trace.source`` without a suffix or a folder may be a library trace name and stays as it is.

    Raises:
        ConfigError: the path does not exist (named as the user wrote it).
    """
    from bwgym.scenarios.config import ConfigError

    if not isinstance(value, str) or not value:
        return value
    path = Path(value).expanduser()
    if path.exists():
        return str(path.resolve())
    if key == "trace.source" and not path.suffix and "/" not in value and os.sep not in value:
        return value  # a library trace name, checked by the scenario loader
    raise ConfigError(
        f"{flag}: {value!r} does not exist (paths on the command line are relative to the working "
        f"directory, {Path.cwd()})"
    )


def _paths_from_cwd(key: str, value: Any, flag: str) -> Any:
    """``value`` of ``key`` with every path key at or below it resolved against the cwd.

    ``--set allocator.checkpoint=x`` and ``--set 'allocator={name: learned, checkpoint: x}'`` name
    the same file.
    """
    if key in PATH_KEYS:
        return path_from_cwd(key, value, f"{flag} {key}")
    if isinstance(value, dict):
        nested = {k: v for k, v in value.items() if isinstance(k, str)}
        for k, v in nested.items():
            if any(p == f"{key}.{k}" or p.startswith(f"{key}.{k}.") for p in PATH_KEYS):
                value = {**value, k: _paths_from_cwd(f"{key}.{k}", v, flag)}
    return value


def parse_overrides(pairs: Sequence[str], flag: str = "--set") -> dict[str, Any]:
    """``KEY=VALUE`` strings as ``{dotted key: value}``; values read as bounded YAML, ``1e7`` as a number.

    Values go through the scenario file's bounded loader (:func:`bwgym.scenarios.sweep.parse_value`:
    no aliases, bounded depth, nodes and size, no duplicate keys), so a value cannot ask for more
    than a scenario file could. Paths (:data:`PATH_KEYS`) are resolved against the working
    directory (:func:`path_from_cwd`).

    Raises:
        ConfigError: a pair without ``=`` or key, a value that is not YAML or breaks a bound, a
            missing path.
    """
    from bwgym.scenarios.config import ConfigError
    from bwgym.scenarios.sweep import parse_value

    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{flag} expects key=value (e.g. run.episodes=5), got {pair!r}")
        overrides[key] = _paths_from_cwd(key, parse_value(value, key, flag), flag)
    return overrides


def run_overrides(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """``--set`` pairs (:func:`parse_overrides`) plus ``run.<name>`` for each of ``names`` given as a flag."""
    overrides = parse_overrides(args.set)
    for name in names:
        if getattr(args, name) is not None:
            overrides[f"run.{name}"] = getattr(args, name)
    return overrides


def _cmd_run(args: argparse.Namespace) -> int:
    """Run a scenario and print its summary and where its files are."""
    from bwgym.scenarios.config import ConfigError, load_scenario
    from bwgym.scenarios.run_folder import WorkerDiedError, default_out_dir
    from bwgym.scenarios.runner import run_scenario

    command = getattr(args, "command_name", "run")
    try:
        overrides = run_overrides(args, ("episodes", "seed", "workers", "num_envs", "device"))
        if args.resume and not args.out:
            raise ConfigError("--resume needs --out naming the run folder to continue")
        scenario = load_scenario(args.scenario, overrides)
        out = Path(args.out) if args.out else default_out_dir(scenario)
        if args.video:  # refused before the run, not after it
            from bwgym.scenarios.video import check_video

            check_video(scenario)
        result = run_scenario(scenario, out, resume=args.resume)
    except ConfigError as exc:
        print(_one_line(f"bwgym {command}: {exc}"), file=sys.stderr)
        return 2
    except WorkerDiedError as exc:
        print(_one_line(f"bwgym {command}: {exc}"), file=sys.stderr)
        return 1
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

    try:
        trace = {
            "source": path_from_cwd("trace.source", args.trace, "--trace"),
            "scale": args.scale,
        }
        args.codec_checkpoint = path_from_cwd("codec.checkpoint", args.codec_checkpoint, "--codec-checkpoint")
        args.agent_checkpoint = path_from_cwd("agent.checkpoint", args.agent_checkpoint, "--agent-checkpoint")
    except ConfigError as exc:
        print(_one_line(f"bwgym evaluate: {exc}"), file=sys.stderr)
        return 2
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
            "num_envs": args.num_envs or 1,
            "device": args.device or "auto",
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
            print(_one_line(f"bwgym evaluate: {exc}"), file=sys.stderr)
            return 2
        args.scenario, args.set, args.command_name = str(path), [], "evaluate"
        args.episodes = args.seed = args.workers = args.num_envs = args.device = None
        return _cmd_run(args)


def _cmd_scenarios(args: argparse.Namespace) -> int:
    """List the shipped scenarios, one line each, with the mean bits per step they offer."""
    from bwgym.scenarios.config import library_scenarios, load_scenario
    from bwgym.scenarios.factory import make_trace

    names = library_scenarios()
    width = max(map(len, names), default=8) + 1
    rows = []
    for name in names:
        s = load_scenario(name)
        step_s = s.link.step_seconds or 0.04
        if s.receivers:  # each stream has its own link and trace: `bwgym run` reports them
            budget = f"{len(s.links)} links"
        elif s.codec.name == "none":
            budget = "unlimited"
        else:
            budget = f"{make_trace(s).mean_bps * step_s:,.0f} bits/step"
        rows.append(
            f"{name:{width}s} {s.codec.name:12s} {s.agent.name:7s} {budget:>17s}  {s.description.strip()[:80]}"
        )
    print(f"{'scenario':{width}s} {'codec':12s} {'agent':7s} {'mean budget':>17s}  description")
    print("\n".join(rows))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``bwgym`` command."""
    parser = OneLineParser(prog="bwgym", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    expert = sub.add_parser(
        "expert", help="run the scripted expert on LocateLift and write a table and views"
    )
    expert.add_argument("--env", default=DEFAULT_ENV, help="a LocateLift id (default: %(default)s)")
    expert.add_argument(
        "--episodes",
        type=bounded_int("--episodes", 1, MAX_DEMO_EPISODES, "MAX_DEMO_EPISODES"),
        default=20,
        help="episodes to run (default: %(default)s)",
    )
    expert.add_argument(
        "--seed", type=bounded_int("--seed", 0, MAX_SEED - MAX_DEMO_EPISODES), default=0, help="first seed"
    )
    expert.add_argument(
        "--noise-std", type=bounded_float("--noise-std", 0.0, 10.0), default=0.0, help="action noise std"
    )
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
    evaluate.add_argument(
        "--scale",
        type=bounded_float("--scale", 0.0, MAX_TRACE_SCALE, low_open=True, why="MAX_TRACE_SCALE"),
        default=1.0,
        help="multiply the trace's rates",
    )
    add_count_options(evaluate, episodes=100, seed=0, workers=1)
    evaluate.add_argument("--no-steps", action="store_true", help="do not write steps.parquet")
    evaluate.add_argument("--name", help="run name (default from agent, codec and trace)")
    evaluate.add_argument("--out", help="run folder")
    evaluate.add_argument("--resume", action="store_true")
    evaluate.add_argument("--video", action="store_true", help=argparse.SUPPRESS)
    evaluate.set_defaults(func=_cmd_evaluate)

    scenarios = sub.add_parser("scenarios", help="list the shipped scenarios")
    scenarios.set_defaults(func=_cmd_scenarios)
    registry_commands.register(sub)

    trace_commands.register(sub)
    train_sub = zoo_commands.register(sub)  # `bwgym zoo` and `bwgym train [--all]`
    agent_commands.register(sub, train_sub)
    codec_commands.register(sub, train_sub)
    allocation_commands.register(train_sub)
    model_commands.register(train_sub)
    latent_agent_commands.register(train_sub)
    scenario_commands.register(sub)
    return parser


def _one_line(text: str) -> str:
    """``text`` on one line: newlines from hostile values or file names escaped."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status.

    Bad input (a scenario, a flag, a file, a checkpoint) ends in one line on stderr naming the
    problem and exit status 2, never a traceback; set ``BWGYM_DEBUG=1`` to see the traceback.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a refused flag (2, its one line already printed)
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return int(args.func(args) or 0)
    except (
        ValueError,
        TypeError,
        OSError,
        KeyError,
        EOFError,
    ) as exc:  # ConfigError, CheckpointError, TraceFormatError...
        if os.environ.get("BWGYM_DEBUG"):
            raise
        command = " ".join(part for part in ("bwgym", args.command, getattr(args, "what", None)) if part)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"{command}: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
