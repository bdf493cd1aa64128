"""``bwgym train allocator``: train a bandwidth allocation policy with PPO on a scenario's parts.

::

    bwgym train allocator --scenario lora_ndpca --total-timesteps 20000 --out runs/allocator
    bwgym run my_scenario.yaml --set allocator.name=learned --set allocator.checkpoint=runs/allocator

The scenario gives the task env, the codec, the task agent (``bc``, its checkpoint or the shipped
one) and the link; the policy trains on a family of generated traces around the scenario's mean
budget (``--train-generator``, ``--train-bits``; every episode a fresh trace) and is evaluated
every ``--eval-freq`` steps on the scenario's own trace, which it never trains on (``eval/`` and
TensorBoard's ``eval/success_rate``). The run folder gets ``policy.ckpt`` (the project's
checkpoint format; a scenario loads it as ``allocator: {name: learned, checkpoint: FOLDER}``),
``config.json``, ``eval/evaluations.npz`` and ``tensorboard/``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from bwgym.cli.args import (
    MAX_DEMO_EPISODES,
    MAX_N_ENVS,
    MAX_SEED,
    add_options,
    add_set_option,
    bounded_int,
    check_device,
    check_rl_kwargs,
    float_option,
    int_option,
    key_value,
    max_processes,
)

__all__ = ["MAX_BITS_PER_STEP", "MAX_HISTORY_STEPS", "cmd_train_allocator", "register"]

#: Most env steps of one training run (``--total-timesteps``, ``--eval-freq``).
MAX_TIMESTEPS = 10**9
#: Largest mean budget of the training traces (``--train-bits``), in bits per step: 1 Gbit.
MAX_BITS_PER_STEP = 1e9
#: Most past budgets the policy sees (``--history-steps``): its observation grows with them.
MAX_HISTORY_STEPS = 1_024
#: Most evaluation episodes per evaluation (``--eval-episodes``).
MAX_EVAL_EPISODES = 10_000
#: Most epochs fitting the policy to the oracle (``--distill-epochs``).
MAX_DISTILL_EPOCHS = 100_000
#: Range of ``--log-std-init``: std from e^-20 to e^2 (actions live in [-1, 1] before the simplex).
LOG_STD_RANGE = (-20.0, 2.0)
#: Largest magnitude of a reward weight (``--success-bonus``, ``--bit-cost``, ``--action-error-weight``).
MAX_REWARD_WEIGHT = 1e6
#: Largest ``--distill-data`` file read (it is a numpy archive of per-step scores): 4 GiB.
MAX_DISTILL_BYTES = 4 << 30
#: Arrays a ``distill.npz`` must hold.
DISTILL_KEYS = ("scores", "episode", "success", "candidates")


def _bits_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH bits per step, got {text!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high <= MAX_BITS_PER_STEP):
        raise argparse.ArgumentTypeError(
            f"expected 0 < LOW <= HIGH <= {MAX_BITS_PER_STEP:g} (MAX_BITS_PER_STEP), got {text!r}"
        )
    return low, high


def _max_n_envs(args: argparse.Namespace) -> int:
    """``--n-envs``: subprocess envs are processes, bounded by the cores; in-process ones by MAX_N_ENVS."""
    return MAX_N_ENVS if args.vec == "dummy" else min(MAX_N_ENVS, max_processes())


def _check_distill_data(path: str) -> None:
    """Refuse a ``--distill-data`` file that is not a readable, non-empty ``distill.npz``."""
    import zipfile

    import numpy as np

    file = Path(path)
    if not file.is_file():
        raise ValueError(f"--distill-data: {path!r} is not a file; give the distill.npz of an earlier run")
    if file.stat().st_size > MAX_DISTILL_BYTES:
        raise ValueError(
            f"--distill-data: {path!r} is {file.stat().st_size:,} bytes, more than {MAX_DISTILL_BYTES:,} "
            "(MAX_DISTILL_BYTES)"
        )
    fix = "give the distill.npz written by `bwgym train allocator --distill-episodes N`"
    if file.stat().st_size == 0:
        raise ValueError(f"--distill-data: {path!r} is empty; {fix}")
    try:
        with np.load(file, allow_pickle=False) as data:
            files = list(getattr(data, "files", []))
            scores = data["scores"] if "scores" in files else None
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, KeyError, AttributeError):
        raise ValueError(f"--distill-data: {path!r} is not a numpy archive (.npz); {fix}") from None
    missing = [k for k in DISTILL_KEYS if k not in files]
    if missing:
        raise ValueError(f"--distill-data: {path!r} lacks the arrays {', '.join(missing)}; {fix}")
    if not isinstance(scores, np.ndarray) or scores.ndim != 2 or not scores.size:
        raise ValueError(f"--distill-data: {path!r} holds no recorded steps; {fix}")


def _check_args(args: argparse.Namespace) -> None:
    """Everything the user gave that can be checked before the run folder exists."""
    from bwgym.traces import generators

    if args.n_envs > _max_n_envs(args):
        raise ValueError(
            f"--n-envs: expected an integer in [1, {_max_n_envs(args)}], got {args.n_envs} "
            f"(--vec {args.vec}: {'MAX_N_ENVS' if args.vec == 'dummy' else 'each env is a process; MAX_PROCESSES_PER_CORE per core'}); "
            "lower --n-envs"
        )
    if args.train_generator not in generators.GENERATORS:
        raise ValueError(
            f"--train-generator: unknown generator {args.train_generator!r}; "
            f"expected one of {', '.join(sorted(generators.GENERATORS))}"
        )
    check_device(args.device)
    check_rl_kwargs("ppo", args.ppo, "--ppo")
    if args.distill_data is not None:
        _check_distill_data(args.distill_data)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {args.out} is a file; expected a folder")


def _fail(message: str) -> int:
    print(f"bwgym train allocator: {message}", file=sys.stderr)
    return 2


def _scenario_parts(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any], float, Any]:
    """``(env kwargs, held-out trace spec, mean bits per step, scenario)`` from the scenario."""
    from bwgym.cli import parse_overrides
    from bwgym.scenarios.config import ConfigError, load_scenario
    from bwgym.scenarios.factory import make_trace
    from bwgym.traces.generators import derive_seed

    s = load_scenario(args.scenario, parse_overrides(args.set))
    if s.codec.name == "none":
        raise ConfigError("codec.name: 'none' sends every view whole; an allocator needs a codec")
    if s.agent.name != "bc":
        raise ConfigError(f"agent.name: the allocation env's task agent must be 'bc', got {s.agent.name!r}")
    step_s = s.link.step_seconds or 0.04
    env_kwargs: dict[str, Any] = {
        "task_env_id": s.env.id,
        "task_env_kwargs": {"reward_type": "dense", **s.env.kwargs},
        "codec": s.codec.name,
        "codec_checkpoint": s.codec.checkpoint,
        "codec_kwargs": dict(s.codec.kwargs),
        "task_agent_checkpoint": s.agent.checkpoint,
        "step_seconds": s.link.step_seconds,
        "latency_steps": s.link.latency_steps,
        "loss_prob": s.link.loss_prob,
        "history_steps": args.history_steps,
        "success_bonus": args.success_bonus,
        "bit_cost": args.bit_cost,
        "action_error_weight": args.action_error_weight,
        "codec_split": args.codec_split,
    }
    if s.trace.generator is not None:
        params = dict(s.trace.params)
        params.setdefault("seed", derive_seed(s.run.seed, "trace", s.trace.generator))
        held_out = {"trace": {"generator": s.trace.generator, "params": params, "scale": s.trace.scale}}
    else:
        held_out = {"trace": {"source": s.trace.source, "format": s.trace.format, "scale": s.trace.scale}}
    mean_bits = make_trace(s).mean_bps * step_s
    return env_kwargs, held_out, mean_bits, s


def _train_config(
    args: argparse.Namespace,
    env_kwargs: dict[str, Any],
    held_out: dict[str, Any],
    mean_bits: float,
    name: str,
) -> Any:
    """The :class:`~bwgym.agents.allocation.AllocatorTrainConfig` the flags and the scenario's parts say."""
    from bwgym.agents.allocation import ALLOCATION_ENV_ID, AllocatorTrainConfig, DistillConfig
    from bwgym.agents.rl import RLConfig

    low, high = args.train_bits or (mean_bits / 2, mean_bits * 2)
    train_traces = {
        "generator": args.train_generator,
        "mean_bits_per_step": [low, high],
        "step_seconds": env_kwargs["step_seconds"] or 0.04,
        "params": {"duration_s": 30.0},
        "seed_offset": 0,
    }
    if args.train_generator == "lognormal_walk":
        train_traces["params"].update(sigma=0.6, correlation_s=2.0, dt_s=0.2)
    hyperparams = {"policy_kwargs": {"log_std_init": args.log_std_init}, **dict(args.ppo)}
    return AllocatorTrainConfig(
        rl=RLConfig(
            algo="ppo",
            env_id=ALLOCATION_ENV_ID,
            env_kwargs=env_kwargs,
            scenario=name,
            total_timesteps=args.total_timesteps,
            n_envs=args.n_envs,
            vec=args.vec,
            seed=args.seed,
            eval_freq_steps=args.eval_freq,
            eval_episodes=args.eval_episodes,
            checkpoint_freq_steps=max(args.eval_freq, args.total_timesteps // 4),
            hyperparams=hyperparams,
            out_dir=args.out,
            device=args.device,
        ),
        train_traces=train_traces,
        eval_traces=held_out,
        distill=DistillConfig(
            episodes=args.distill_episodes,
            explore=args.distill_explore,
            epochs=args.distill_epochs,
            data=args.distill_data,
        ),
    )


def _train_fleet(args: argparse.Namespace) -> int:
    """``--fleet``: fit a fleet scorer to the fleet oracle on the scenario's fleet (:mod:`bwgym.scenarios.fleet`)."""
    from bwgym.cli import parse_overrides
    from bwgym.scenarios.config import load_scenario
    from bwgym.scenarios.fleet import distill_fleet_allocator

    if args.fleet_search:
        return _search_fleet(args)
    try:
        scenario = load_scenario(args.scenario, parse_overrides(args.set))
        rounds = args.distill_episodes or 4
        source = args.distill_data or f"{rounds} rounds"
        print(f"fitting a fleet allocator to the fleet oracle on {scenario.name}: {source}", flush=True)
        path = distill_fleet_allocator(
            scenario,
            args.out,
            rounds,
            args.distill_epochs,
            args.seed,
            args.history_steps,
            data=args.distill_data,
        )
    except (ValueError, FileNotFoundError) as err:  # ConfigError included
        return _fail(str(err))
    from bwgym.common.checkpoint import load_checkpoint

    scores = load_checkpoint(path).metadata["config"].get("held_out_rounds") or {}
    if scores:
        print(
            "held-out rounds, mean action error per member-step: "
            + ", ".join(
                f"{k.removeprefix('error_')} {v:.3f}" for k, v in scores.items() if k.startswith("error_")
            )
            + f"; R^2 {scores['r2']:.2f}, served agreement with the oracle {scores['served_agreement']:.2f}"
        )
    print(f"wrote {path}")
    print(f"use it: --set 'fleet.allocator={{name: learned, checkpoint: {args.out}}}'")
    return 0


def _search_fleet(args: argparse.Namespace) -> int:
    """``--fleet --fleet-search G``: a fleet scorer searched for fleet success (:func:`bwgym.scenarios.fleet.search_fleet_allocator`)."""
    import torch

    from bwgym.cli import parse_overrides
    from bwgym.scenarios.config import load_scenario
    from bwgym.scenarios.fleet import search_fleet_allocator

    torch.set_num_threads(args.threads)
    try:
        scenario = load_scenario(args.scenario, parse_overrides(args.set))
        print(
            f"searching a fleet allocator for fleet success on {scenario.name}: {args.fleet_search} generations "
            f"of {args.fleet_population} candidates x {args.fleet_rounds} rounds",
            flush=True,
        )
        path = search_fleet_allocator(
            scenario,
            args.out,
            generations=args.fleet_search,
            population=args.fleet_population,
            rounds=args.fleet_rounds,
            elite=max(1, args.fleet_population // 3),
            seed=args.seed,
            history_steps=args.history_steps,
            log=lambda line: print(line, flush=True),
        )
    except ValueError as err:  # ConfigError included
        return _fail(str(err))
    print(f"wrote {path}")
    print(f"use it: --set 'fleet.allocator={{name: learned, checkpoint: {args.out}}}'")
    return 0


def _train_content(args: argparse.Namespace) -> int:
    """``--content``: fit a content scorer to the oracle's per-split action errors (:mod:`bwgym.agents.content_allocation`)."""
    try:
        _check_args(args)
        if args.codec_split:
            raise ValueError("--content chooses among explicit splits; drop --codec-split")
        if not (args.distill_episodes or args.distill_data):
            raise ValueError(
                "--content learns from the oracle: give --distill-episodes N or --distill-data NPZ"
            )
        env_kwargs, held_out, mean_bits, scenario = _scenario_parts(args)
    except ValueError as err:  # ConfigError included
        return _fail(str(err))
    import json

    import torch

    from bwgym.agents.content_allocation import ScorerConfig, train_content_allocator

    torch.set_num_threads(args.threads)
    config = _train_config(args, env_kwargs, held_out, mean_bits, scenario.name)
    source = args.distill_data or f"{args.distill_episodes} oracle episodes"
    print(f"fitting a content allocator for {scenario.name}: {source}", flush=True)
    try:
        path = train_content_allocator(
            config, ScorerConfig(epochs=args.distill_epochs), progress=args.progress
        )
    except (ValueError, FileNotFoundError) as err:
        return _fail(str(err))
    report = json.loads((Path(args.out) / "content.json").read_text())
    print(
        f"wrote {path}; cross-validated action error {report['mean_score_content_cross_validated']:.3f} "
        f"(best fixed split {report['mean_score_best_fixed']:.3f}, oracle {report['mean_score_oracle']:.3f}, "
        f"spec-1 ridge {report['mean_score_ridge_spec1_cross_validated']:.3f})"
    )
    print(report.get("phases_markdown", ""))
    print(f"use it: --set allocator.name=content --set allocator.checkpoint={args.out}")
    return 0


def cmd_train_allocator(args: argparse.Namespace) -> int:
    """Train an allocation policy on a scenario's parts; write ``<out>/policy.ckpt``."""
    if args.fleet:
        return _train_fleet(args)
    if args.content:
        return _train_content(args)
    try:
        _check_args(args)
        env_kwargs, held_out, mean_bits, scenario = _scenario_parts(args)
    except ValueError as err:  # ConfigError included
        return _fail(str(err))
    import torch

    from bwgym.agents.allocation import train_allocator
    from bwgym.cli.agents import remove_if_created
    from bwgym.common.checkpoint import load_checkpoint

    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # spawned workers read it when torch loads
    torch.set_num_threads(args.threads)
    config = _train_config(args, env_kwargs, held_out, mean_bits, scenario.name)
    low, high = config.train_traces["mean_bits_per_step"]
    print(
        f"training an allocator for {scenario.name}: {env_kwargs['task_env_id']} + {env_kwargs['codec']}, "
        f"{args.n_envs} envs, train traces {args.train_generator} at {low:.0f}-{high:.0f} bits/step, "
        f"held-out: the scenario's trace ({mean_bits:.0f} bits/step)",
        flush=True,
    )
    start = time.perf_counter()
    existed = Path(args.out).exists()
    try:
        path = train_allocator(config, progress=args.progress)
    except (ValueError, FileNotFoundError) as err:
        remove_if_created(Path(args.out), existed)  # no config.json left by a refused run
        return _fail(str(err))
    evaluation = load_checkpoint(path).metadata["allocation"].get("eval") or {}
    out = Path(args.out)
    print(f"wrote {path} in {time.perf_counter() - start:.0f} s")
    if evaluation:
        print(
            f"last held-out evaluation at {evaluation.get('timesteps')} steps: success rate "
            f"{evaluation.get('success_rate')}, mean reward {evaluation.get('mean_reward')}"
        )
    print(f"evaluations: {out / 'eval' / 'evaluations.npz'}")
    print(f"tensorboard --logdir {out / 'tensorboard'}")
    print(f"use it: --set allocator.name=learned --set allocator.checkpoint={out}")
    return 0


#: ``bwgym train allocator`` options with a bounded value: (flag, type, default, help).
_OPTIONS = (
    int_option("--total-timesteps", 1, MAX_TIMESTEPS, 20_000, "env steps of PPO"),
    int_option("--seed", 0, MAX_SEED - 10_000, 0, "seeds PPO, the envs and the training traces"),
    int_option("--eval-freq", 1, MAX_TIMESTEPS, 5_000, "env steps between evaluations"),
    int_option("--eval-episodes", 1, MAX_EVAL_EPISODES, 10, "episodes per evaluation"),
    int_option("--history-steps", 1, MAX_HISTORY_STEPS, 8, "budgets the policy sees", "MAX_HISTORY_STEPS"),
    float_option("--success-bonus", -MAX_REWARD_WEIGHT, MAX_REWARD_WEIGHT, 1.0, "reward of a success"),
    float_option("--bit-cost", 0.0, MAX_REWARD_WEIGHT, 0.0, "reward subtracted per kbit sent"),
    float_option(
        "--action-error-weight",
        0.0,
        MAX_REWARD_WEIGHT,
        0.0,
        "reward subtracted per unit of the task agent's action error (decoded vs true views)",
    ),
    int_option(
        "--distill-episodes",
        0,
        MAX_DEMO_EPISODES,
        0,
        "warm start: episodes of the oracle whose per-split scores the policy is fitted to before PPO "
        "(0: PPO from scratch; see bwgym.agents.allocation)",
        "MAX_DEMO_EPISODES",
    ),
    float_option(
        "--distill-explore",
        0.0,
        1.0,
        0.3,
        "probability that the oracle sends a random split while its scores are recorded",
        why="it is a probability",
    ),
    int_option("--distill-epochs", 1, MAX_DISTILL_EPOCHS, 30, "epochs fitting the policy"),
    float_option(
        "--log-std-init",
        *LOG_STD_RANGE,
        -0.5,
        "initial log std of PPO's Gaussian actions",
        why="LOG_STD_RANGE",
    ),
    int_option(
        "--threads", 1, max_processes, 1, "torch threads per process", "MAX_PROCESSES_PER_CORE per core"
    ),
)


def register(train_subparsers: Any) -> None:
    """Add ``allocator`` to the sub-parsers of ``bwgym train``."""
    p = train_subparsers.add_parser(
        "allocator", help="train a bandwidth allocation policy (PPO on bwgym/AllocateBandwidth-v0)"
    )
    p.add_argument("--scenario", default="lora_ndpca", help="library name or YAML: env, codec, agent, link")
    add_set_option(p)
    p.add_argument(
        "--n-envs",
        type=bounded_int("--n-envs", 1, MAX_N_ENVS, "MAX_N_ENVS"),
        default=2,
        help=f"training envs (at most {MAX_N_ENVS}; with --vec subproc at most 4 per core)",
    )
    p.add_argument(
        "--vec", choices=("subproc", "dummy"), default="subproc", help="envs in processes or in turn"
    )
    p.add_argument(
        "--train-generator", default="lognormal_walk", help="trace generator of the training family"
    )
    p.add_argument(
        "--train-bits",
        type=_bits_range,
        help="LOW,HIGH mean bits per step (default: 1/2 to 2x the scenario's)",
    )
    add_options(p, _OPTIONS)
    p.add_argument(
        "--codec-split",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="give the policy the choice of the codec's own split (dpca) besides explicit shares "
        "(off by default: each switch between the two sends a new session header, 88 bits)",
    )
    p.add_argument(
        "--distill-data",
        metavar="NPZ",
        help="fit the distill.npz of an earlier run instead of running the oracle again",
    )
    p.add_argument(
        "--ppo",
        action="append",
        default=[],
        type=key_value,
        metavar="KEY=VALUE",
        help="a keyword argument of SB3's PPO (YAML value), e.g. --ppo learning_rate=1e-4",
    )
    p.add_argument(
        "--fleet",
        action="store_true",
        help="a fleet allocator for a fleet scenario: fit to the fleet oracle over --distill-episodes rounds "
        "(or searched for fleet success with --fleet-search)",
    )
    p.add_argument(
        "--fleet-search",
        type=int,
        default=0,
        metavar="G",
        help="with --fleet: G generations of a cross-entropy search for fleet success on AllocateFleet-v0 "
        "instead of fitting the oracle (a need ranking whose served fraction rises to all members as bits "
        "per member fall; traces at 40-260 bits per robot per step)",
    )
    p.add_argument(
        "--fleet-population", type=int, default=10, help="--fleet-search: candidates per generation"
    )
    p.add_argument("--fleet-rounds", type=int, default=3, help="--fleet-search: rounds played per candidate")
    p.add_argument(
        "--content",
        action="store_true",
        help="a content allocator: a scorer of candidate splits fitted to the oracle (--distill-episodes) "
        "instead of a PPO policy (its policy.ckpt)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--progress", action="store_true", help="SB3's progress bar")
    p.add_argument("--out", default="runs/allocator", help="run folder")
    p.set_defaults(func=cmd_train_allocator)
