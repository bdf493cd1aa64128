"""The ``bwgym collect`` and ``bwgym train agent`` sub-commands.

``bwgym/cli.py`` calls :func:`register` with its top-level sub-parsers and the sub-parsers of
``bwgym train``; each sub-command stores its handler as ``args.func``, a function
``(args) -> int`` (the process exit code)::

    bwgym collect --env bwgym/LocateLift-v0 --episodes 200 --noise-std 0.1 --out data/lift_demos
    bwgym train agent --algo bc --env bwgym/LocateLift-v0 --episodes 200 --out runs/bc/bc.ckpt
    bwgym train agent --algo bc --demos data/lift_demos --out runs/bc/bc.ckpt --eval-episodes 100

``train agent`` collects demonstrations first when ``--demos`` names no finished dataset (into
that folder, or a temporary one deleted afterwards), trains, evaluates on ``--eval-episodes``
seeded episodes and writes the sidecar ``<out stem>.json`` next to the checkpoint (success rate,
command, config).
Errors in the user's input print one line to stderr and return exit code 2.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bwgym.cli.args import (
    MAX_DEMO_EPISODES,
    MAX_N_ENVS,
    MAX_SEED,
    add_demo_options,
    add_env_options,
    add_options,
    add_torch_options,
    check_device,
    check_env_id,
    check_rl_kwargs,
    float_option,
    int_option,
    key_value,
    max_processes,
    parse_env_kwargs,
    values,
)

__all__ = ["cmd_collect", "cmd_train_agent", "register"]

#: Algorithms ``bwgym train agent`` accepts: behaviour cloning, or stable-baselines3 PPO/SAC.
ALGOS = ("bc", "ppo", "sac")
#: Most env steps (``--total-timesteps``, and the step counts of evaluations and checkpoints).
MAX_TIMESTEPS = 10**9
#: Most epochs of one BC or DAgger fit (``--epochs``, ``--patience``, ``--dagger-epochs``).
MAX_EPOCHS = 100_000
#: Largest minibatch (``--batch-size``): a batch of 84 px views is ~40 kB a sample.
MAX_BATCH_SIZE = 65_536
#: Largest random shift of the augmentation (``--shift-px``), in pixels.
MAX_SHIFT_PX = 64
#: Most DAgger rounds (``--dagger-rounds``).
MAX_DAGGER_ROUNDS = 1_000


def _max_n_envs() -> int:
    """``--n-envs``: :data:`~bwgym.cli.args.MAX_N_ENVS`, and no more processes than the cores allow."""
    return min(MAX_N_ENVS, max_processes())


def remove_if_created(folder: Path, existed: bool) -> None:
    """Remove ``folder`` after a refused command, if the command created it and it holds no model.

    Some checks can only run once training is set up (SB3's, a codec's); a refusal then must not
    leave an empty run folder behind, but it never deletes a checkpoint (``*.zip``, ``*.ckpt``).
    """
    import shutil

    if existed or not folder.is_dir():
        return
    if any(p.suffix in (".zip", ".ckpt") for p in folder.rglob("*")):
        return
    shutil.rmtree(folder, ignore_errors=True)


def _train_command(args: argparse.Namespace) -> str:
    """Spell out the ``bwgym train agent`` command line (every option) that reproduces ``args``."""
    parts = ["bwgym", "train", "agent"]
    for name in (
        "algo",
        "env",
        "scenario",
        "bc_init",
        "episodes",
        "noise_std",
        "env_kwargs",
        "demos",
        "epochs",
        "batch_size",
        "lr",
        "val_fraction",
        "patience",
        "shift_px",
        "dagger_rounds",
        "dagger_episodes",
        "dagger_epochs",
        "seed",
        "eval_episodes",
        "eval_seed",
        "device",
        "threads",
        "out",
    ):
        value = getattr(args, name, None)
        if value is not None:
            parts += [f"--{name.replace('_', '-')}", str(value)]
    if getattr(args, "proprio", False):
        parts.append("--proprio")
    return " ".join(shlex.quote(p) for p in parts)


def _wilson(successes: int, n: int, z: float = 1.959964) -> list[float]:
    """Wilson score interval of a success rate (95 % by default), as [low, high]."""
    if n == 0:
        return [0.0, 1.0]
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def _fail(message: str) -> int:
    print(f"bwgym: error: {message}", file=sys.stderr)
    return 2


def cmd_collect(args: argparse.Namespace) -> int:
    """Record expert demonstrations into ``args.out`` (see :func:`bwgym.agents.demos.collect_demos`)."""
    from bwgym.agents.demos import DemoDataset, collect_demos

    try:
        check_env_id("--env", args.env, expert=True)  # collection runs the LocateLift expert
        path = collect_demos(
            args.out,
            env_id=args.env,
            episodes=args.episodes,
            noise_std=args.noise_std,
            seed=args.seed,
            env_kwargs=parse_env_kwargs(args.env_kwargs),
            only_successful=not args.keep_failures,
            overwrite=args.overwrite,
        )
    except (ValueError, FileExistsError, RuntimeError) as err:
        return _fail(str(err))
    dataset = DemoDataset(path)
    size = sum(f.stat().st_size for f in path.iterdir()) / 1e6
    print(
        f"{dataset!r}\nexpert success while collecting: {dataset.meta['expert_success_rate']:.3f} "
        f"({dataset.meta['attempts']} attempts); {size:.1f} MB on disk"
    )
    return 0


def _scenario(name: str, env_id: str, env_kwargs: dict[str, Any]) -> Any:
    """The scenario ``name`` with ``env_id`` and extra ``env_kwargs`` (its codec and link as they are)."""
    import dataclasses

    from bwgym.scenarios.config import load_scenario

    s = load_scenario(name)
    return dataclasses.replace(
        s, env=dataclasses.replace(s.env, id=env_id, kwargs={**s.env.kwargs, **env_kwargs})
    )


def _train_rl(args: argparse.Namespace) -> int:
    """``--algo ppo|sac``: stock stable-baselines3 through :func:`bwgym.agents.rl.train_rl`."""
    import torch

    from bwgym.agents.rl import RLConfig, train_rl

    if Path(args.out).is_file() or Path(args.out).suffix:
        return _fail(f"--out must name a folder for --algo {args.algo} (it gets policy.ckpt), got {args.out}")
    try:  # everything the user gave, before train_rl creates --out
        env_kwargs = {"reward_type": "dense", **parse_env_kwargs(args.env_kwargs)}
        check_env_id("--env", args.env)
        check_device(args.device)
        check_rl_kwargs(args.algo, args.rl_kwarg)
        _check_rl_paths(args)
    except ValueError as err:
        return _fail(str(err))
    if args.threads:
        torch.set_num_threads(args.threads)
    config = RLConfig(
        env_id=args.env,
        env_kwargs=env_kwargs,
        eval_episodes=max(1, min(args.eval_episodes, 20)),
        eval_freq_steps=args.eval_freq,
        checkpoint_freq_steps=args.checkpoint_freq,
        hyperparams=dict(args.rl_kwarg),
        out_dir=args.out,
        vec=args.vec,
        **values(
            args,
            "algo",
            "scenario",
            "total_timesteps",
            "n_envs",
            "seed",
            "bc_demos",
            "bc_init",
            "initial_noise_std",
            "critic_warmup_steps",
            "resume",
            "device",
        ),
    )
    env_factory = vector_factory = None
    if args.vec == "vector" and not args.scenario:
        return _fail("--vec vector: needs --scenario (the vector env is the scenario's, its codec batched)")
    if args.scenario:
        from bwgym.scenarios.config import ConfigError
        from bwgym.scenarios.factory import make_env, make_vector_env

        try:
            scenario = _scenario(args.scenario, args.env, env_kwargs)  # refused before training starts
        except ConfigError as err:
            return _fail(str(err))
        env_factory = functools.partial(make_env, scenario)
        vector_factory = functools.partial(make_vector_env, scenario)
    existed = Path(args.out).exists()
    try:
        train_rl(config, env_factory=env_factory, vector_factory=vector_factory)
    except ValueError as err:
        remove_if_created(Path(args.out), existed)
        return _fail(str(err))
    print(f"wrote {Path(args.out) / 'policy.ckpt'}; evaluations in {Path(args.out) / 'eval'}")
    return 0


def _check_rl_paths(args: argparse.Namespace) -> None:
    """The files an RL run reads, checked before it creates ``--out``."""
    if args.bc_init not in (None, "shipped") and not Path(args.bc_init).is_file():
        raise ValueError(f"--bc-init: {args.bc_init!r} is not a file; give 'shipped' or a BC .ckpt")
    if args.bc_demos is not None and not (Path(args.bc_demos) / "meta.json").is_file():
        raise ValueError(f"--bc-demos: {args.bc_demos!r} is not a dataset written by `bwgym collect`")
    if args.resume and not Path(args.out).is_dir():
        raise ValueError(f"--resume: {args.out!r} holds no run to continue; drop --resume to start one")
    if args.algo != "ppo" and args.bc_demos:
        raise ValueError(f"--bc-demos warm-starts PPO only; use --algo ppo (got --algo {args.algo})")


def _log_dir(args: argparse.Namespace, out: Path) -> Path:
    """``--log-dir``, else ``runs/train_agent/<out stem>-<time>``.

    Not next to the checkpoint: ``--out`` may point into the package (a shipped agent).
    """
    if args.log_dir:
        return Path(args.log_dir)
    return Path("runs") / "train_agent" / f"{out.stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def _save_with_report(agent: Any, out: Path, result: dict[str, Any], **extra: Any) -> Path:
    """Save ``agent`` to ``out`` with ``result`` in its metadata; write and return its JSON sidecar."""
    from bwgym.common.checkpoint import sidecar_path

    agent.extra_meta = dict(result)
    agent.save(out)
    report = dict(
        result,
        checkpoint=out.name,
        spec=agent.spec,
        arch=agent.arch,
        train_config=agent.train_config,
        **extra,
    )
    path = sidecar_path(out)
    path.write_text(json.dumps(report, indent=1) + "\n")
    return path


def _evaluate_decoded(args: argparse.Namespace, agent: Any, names: list[str], scenarios: list[Any]) -> Any:
    """Success of ``agent`` on each scenario's decoded views (one dict, or a list for several)."""
    from bwgym.scenarios.factory import count_successes

    evals = []
    seeds = range(args.eval_seed, args.eval_seed + args.eval_episodes)
    for name, scenario in zip(names, scenarios, strict=True):
        wins = count_successes(scenario, seeds, agent)
        evals.append(
            dict(
                episodes=args.eval_episodes,
                seeds=f"{seeds[0]}..{seeds[-1]}",
                success_rate=wins / args.eval_episodes,
                success_ci95_wilson=_wilson(wins, args.eval_episodes),
                views=f"decoded ({name})",
            )
        )
        print(f"success rate on {name}: {wins / args.eval_episodes:.3f} over {args.eval_episodes} episodes")
    return evals[0] if len(evals) == 1 else evals


def _finetune_bc(args: argparse.Namespace, out: Path) -> int:
    """``--algo bc --scenario S``: DAgger from ``--bc-init`` on the decoded views of the scenario."""
    from bwgym.agents.bc import BCAgent
    from bwgym.agents.dagger import finetune_bc
    from bwgym.scenarios.config import ConfigError
    from bwgym.scenarios.factory import make_env

    start = time.perf_counter()
    names = [name.strip() for name in args.scenario.split(",")]
    try:
        env_kwargs = parse_env_kwargs(args.env_kwargs)
        scenarios = [_scenario(name, args.env, env_kwargs) for name in names]  # refused before any run
        if args.bc_init in (None, "shipped"):
            agent = BCAgent.load_shipped(args.env, device=args.device)
        else:
            agent = BCAgent.load(args.bc_init, env_id=args.env, device=args.device)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        return _fail(str(err))
    log_dir = _log_dir(args, out)
    existed = log_dir.exists()
    try:
        finetune_bc(
            agent,
            [functools.partial(make_env, scenario) for scenario in scenarios],
            rounds=args.dagger_rounds or 4,
            episodes=args.dagger_episodes,
            val_episodes=max(1, args.dagger_episodes // 2),
            epochs=args.dagger_epochs or args.epochs,
            log_dir=log_dir,
            augment_shift_px=args.shift_px,
            describe=dict(scenario=args.scenario, bc_init=args.bc_init or "shipped"),
            **values(args, "batch_size", "lr", "seed", "patience"),
        )
    except ValueError as err:
        remove_if_created(log_dir, existed)
        return _fail(str(err))
    result: dict[str, Any] = dict(
        command=_train_command(args), train_seconds=round(time.perf_counter() - start, 1)
    )
    if args.eval_episodes > 0:
        result["eval"] = _evaluate_decoded(args, agent, names, scenarios)
    report = _save_with_report(agent, out, result)
    print(f"agent:  {out}\nreport: {report}\nlogs:   {log_dir}")
    return 0


def _fit_bc(args: argparse.Namespace, env_kwargs: dict[str, Any], out: Path) -> tuple[Any, Path]:
    """Collect demonstrations (unless ``--demos`` holds finished ones) and train BC on them.

    Returns the agent and its TensorBoard folder; a refused training removes the folder it made.
    """
    from bwgym.agents.bc_training import train_bc
    from bwgym.agents.demos import DemoDataset, collect_demos

    with tempfile.TemporaryDirectory(prefix="bwgym-demos-") as tmp:
        demos = Path(args.demos) if args.demos else Path(tmp) / "demos"
        if not (demos / "meta.json").is_file():
            print(f"collecting {args.episodes} expert episodes into {demos}", file=sys.stderr)
            collect_demos(
                demos,
                env_id=args.env,
                episodes=args.episodes,
                noise_std=args.noise_std,
                seed=args.seed,
                env_kwargs=env_kwargs,
            )
        dataset = DemoDataset(demos, env_id=args.env)
        log_dir = _log_dir(args, out)
        existed = log_dir.exists()
        try:
            agent = train_bc(
                dataset,
                None,
                log_dir=log_dir,
                augment_shift_px=args.shift_px,
                use_proprio=args.proprio,
                **values(args, "epochs", "batch_size", "lr", "val_fraction", "seed", "device", "patience"),
                **values(args, "dagger_rounds", "dagger_episodes", "dagger_epochs"),
            )
        except ValueError:
            remove_if_created(log_dir, existed)
            raise
    if not args.demos:
        agent.train_config["dataset"] = "temporary folder collected by this command (deleted)"
    return agent, log_dir


def _evaluate_clean(args: argparse.Namespace, agent: Any, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Success of ``agent`` on ``--eval-episodes`` seeded episodes with uncompressed views."""
    from bwgym.agents.evaluation import evaluate_agent

    table = evaluate_agent(
        agent,
        args.env,
        episodes=args.eval_episodes,
        seed=args.eval_seed,
        env_kwargs={**env_kwargs, **agent.env_kwargs()},
    )
    result = dict(
        episodes=len(table),
        seeds=f"{args.eval_seed}..{args.eval_seed + len(table) - 1}",
        success_rate=float(table.success.mean()),
        success_ci95_wilson=_wilson(int(table.success.sum()), len(table)),
        mean_steps=float(table.steps.mean()),
        views="uncompressed",
        image_shape=list(agent.image_shape),
    )
    print(
        f"success rate {result['success_rate']:.3f} over {result['episodes']} episodes (seeds "
        f"{result['seeds']}), mean steps {result['mean_steps']:.1f}"
    )
    return result


def _train_bc(args: argparse.Namespace, out: Path) -> int:
    """``--algo bc`` without a scenario: BC on expert demonstrations, evaluated on clean views."""
    import torch

    start = time.perf_counter()
    try:
        env_kwargs = parse_env_kwargs(args.env_kwargs)
        if args.proprio:
            env_kwargs.setdefault("proprio", True)
        agent, log_dir = _fit_bc(args, env_kwargs, out)
    except (ValueError, FileExistsError, RuntimeError) as err:
        return _fail(str(err))
    result: dict[str, Any] = dict(
        command=_train_command(args), collect_and_train_seconds=round(time.perf_counter() - start, 1)
    )
    if args.eval_episodes > 0:
        result["eval"] = _evaluate_clean(args, agent, env_kwargs)
    parameters = sum(p.numel() for p in agent.parameters())
    report = _save_with_report(
        agent, out, result, parameters=parameters, torch_threads=torch.get_num_threads()
    )
    print(
        f"agent:  {out}\nreport: {report}\nlogs:   {log_dir} (tensorboard --logdir {log_dir})\n"
        f"took {time.perf_counter() - start:.0f} s"
    )
    return 0


def cmd_train_agent(args: argparse.Namespace) -> int:
    """Train an agent (``--algo bc``), evaluate it and write ``<out>`` and its sidecar ``<out stem>.json``.

    With ``--scenario``, ``--algo bc`` fine-tunes ``--bc-init`` (default: the shipped agent) by
    DAgger on that scenario's decoded views (:func:`bwgym.agents.dagger.finetune_bc`).
    """
    if args.algo != "bc":
        return _train_rl(args)
    rl_only = [
        f
        for f, v in (("--rl-kwarg", args.rl_kwarg), ("--bc-demos", args.bc_demos), ("--resume", args.resume))
        if v
    ]
    if rl_only:
        return _fail(f"{', '.join(rl_only)} apply to --algo ppo or sac only, not --algo bc")
    try:  # everything the user gave, before any folder is created
        finished = bool(args.demos) and (Path(args.demos) / "meta.json").is_file()
        check_env_id("--env", args.env, expert=not args.scenario and not finished)
        check_device(args.device)
    except ValueError as err:
        return _fail(str(err))
    out = Path(args.out)
    if out.suffix != ".ckpt":
        return _fail(f"--out must name a .ckpt file, got {out}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return _finetune_bc(args, out) if args.scenario else _train_bc(args, out)


#: ``bwgym train agent`` options: (flag, type, default, help).
_TRAINING_OPTIONS = (
    int_option("--total-timesteps", 1, MAX_TIMESTEPS, 20_000, "RL: env steps"),
    int_option(
        "--n-envs",
        1,
        _max_n_envs,
        1,
        "RL: parallel envs in subprocesses",
        "each env is a process (MAX_N_ENVS, MAX_PROCESSES_PER_CORE)",
    ),
    int_option("--eval-freq", 1, MAX_TIMESTEPS, 5_000, "RL: env steps between evaluations"),
    int_option(
        "--checkpoint-freq",
        1,
        MAX_TIMESTEPS,
        10_000,
        "RL: env steps between checkpoints (what --resume reads)",
    ),
    float_option(
        "--initial-noise-std",
        0.0,
        10.0,
        0.1,
        "RL with --bc-init: exploration noise (std before tanh)",
        low_open=True,
    ),
    int_option(
        "--critic-warmup-steps",
        0,
        MAX_TIMESTEPS,
        0,
        "RL: env steps with the actor frozen while the critic learns",
    ),
    int_option("--epochs", 1, MAX_EPOCHS, 25, "maximum epochs"),
    int_option("--batch-size", 1, MAX_BATCH_SIZE, 64, "steps per gradient step"),
    float_option("--lr", 0.0, 1.0, 1e-3, "Adam learning rate", low_open=True),
    float_option("--val-fraction", 0.0, 1.0, 0.1, "held-out episodes", high_open=True),
    int_option("--patience", 1, MAX_EPOCHS, 8, "early-stopping patience in epochs"),
    int_option("--shift-px", 0, MAX_SHIFT_PX, 4, "random-shift augmentation in pixels"),
    int_option("--dagger-rounds", 0, MAX_DAGGER_ROUNDS, 0, "DAgger rounds after BC"),
    int_option("--dagger-episodes", 1, MAX_DEMO_EPISODES, 50, "policy episodes per round"),
    int_option("--dagger-epochs", 1, MAX_EPOCHS, None, "max epochs per round (default: --epochs)"),
    int_option("--eval-episodes", 0, MAX_DEMO_EPISODES, 100, "evaluation episodes, 0 for none"),
    int_option(
        "--eval-seed",
        0,
        MAX_SEED - MAX_DEMO_EPISODES,
        10_000,
        "env seed of the first evaluation episode (default: %(default)s, disjoint from the demonstrations')",
    ),
)


#: ``bwgym train agent`` options that name a file or folder (default None): (flag, help).
_PATH_OPTIONS = (
    (
        "--scenario",
        "train on decoded views of this scenario's codec/trace (bc: DAgger from --bc-init; several, "
        "comma-separated, take turns)",
    ),
    ("--bc-demos", "RL (ppo): warm-start by BC on this demonstration folder"),
    (
        "--bc-init",
        "RL: the actor is this BC agent's network ('shipped' or a .ckpt; see bwgym.agents.bc_prior); "
        "bc with --scenario: the agent to fine-tune",
    ),
    ("--demos", "demonstration folder: used if finished, else collected into (default: a temp dir)"),
    ("--log-dir", "TensorBoard folder (default: runs/train_agent/<out stem>-<time>)"),
)


def register(subparsers: Any, train_subparsers: Any) -> None:
    """Add ``collect`` to the top-level sub-parsers and ``agent`` to those of ``bwgym train``.

    Args:
        subparsers: the result of the ``bwgym`` parser's ``add_subparsers()``.
        train_subparsers: the result of the ``train`` parser's ``add_subparsers()``.

    """
    collect = subparsers.add_parser(
        "collect",
        help="record scripted-expert demonstrations into a lossless on-disk dataset",
        description="Record expert episodes (one compressed .npz per episode plus meta.json). With "
        "--noise-std the executed actions are noisy and the labels the expert's clean actions.",
    )
    add_env_options(collect)
    add_demo_options(collect, 200, "episodes to store")
    collect.add_argument("--keep-failures", action="store_true", help="store failed episodes too")
    collect.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    collect.add_argument("--out", required=True, help="dataset folder to write")
    collect.set_defaults(func=cmd_collect)

    agent = train_subparsers.add_parser(
        "agent",
        help="train an agent (behaviour cloning, or PPO/SAC with stable-baselines3)",
        description="Train a BC agent from expert demonstrations (collected first unless --demos names a "
        "dataset), evaluate it on clean views and write the checkpoint and a JSON report.",
    )
    agent.add_argument(
        "--algo",
        choices=ALGOS,
        default="bc",
        help="bc, or ppo/sac (stable-baselines3; --out is then a folder) (default: %(default)s)",
    )
    for flag, text in _PATH_OPTIONS:
        agent.add_argument(flag, default=None, help=text)
    agent.add_argument(
        "--resume", action="store_true", help="RL: continue from the newest checkpoint in --out"
    )
    agent.add_argument(
        "--rl-kwarg",
        action="append",
        default=[],
        type=key_value,
        metavar="KEY=VALUE",
        help="RL: a keyword argument of SB3's PPO/SAC (YAML value), e.g. --rl-kwarg learning_rate=1e-5",
    )
    add_env_options(agent, kwargs_help="JSON object of env arguments for collection")
    agent.add_argument(
        "--out",
        required=True,
        help="BC: checkpoint to write (.ckpt), its report goes to <out stem>.json; RL: a folder",
    )
    add_demo_options(agent, 200, "demonstrations to collect", seed_help="seed of collection and training")
    agent.add_argument(
        "--proprio", action="store_true", help="feed the proprio vector too (collect with proprio)"
    )
    add_options(agent, _TRAINING_OPTIONS)
    agent.add_argument(
        "--vec",
        choices=("subproc", "vector"),
        default="subproc",
        help="RL with --n-envs > 1: envs in subprocesses, or (with --scenario) one vector env in this "
        "process whose codec calls are batched (on CUDA, one network pass for all envs)",
    )
    add_torch_options(agent)
    agent.set_defaults(func=cmd_train_agent)
