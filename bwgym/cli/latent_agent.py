"""``bwgym train latent-agent``: behaviour cloning + DAgger of an MLP on a scenario's received latent code.

::

    bwgym train latent-agent --scenario lora_ndpca --out runs/latent.ckpt [--bc-out runs/latent_bc.ckpt]

The scenario's link is switched to ``observation: latent`` (its codec must be a latent codec); the
expert's demonstrations and the DAgger rounds run through it (:func:`bwgym.agents.latent_bc.train_latent_bc`),
then the selected agent (and with ``--bc-out`` the behaviour-cloning one) plays ``--eval-episodes``
held-out episodes from ``--eval-seed``. The checkpoint's JSON sidecar records the command, the
training history and those success rates with their Wilson intervals.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from bwgym.cli.args import (
    MAX_DEMO_EPISODES,
    MAX_SEED,
    add_options,
    add_torch_options,
    float_option,
    int_option,
    key_value,
)
from bwgym.cli.models import checkpoint_out, folder_out

__all__ = ["cmd_train_latent_agent", "cmd_train_latent_ppo", "latent_scenario", "register"]

#: Most DAgger rounds, hidden units per layer, and history steps the command accepts.
MAX_DAGGER_ROUNDS = 100
MAX_HIDDEN_UNITS = 4096
MAX_HISTORY_STEPS = 16


def latent_scenario(name: str) -> Any:
    """The library scenario (or YAML file) ``name`` with its link observation switched to ``latent``."""
    from bwgym.scenarios.config import load_scenario

    scenario = load_scenario(name)
    return dataclasses.replace(scenario, link=dataclasses.replace(scenario.link, observation="latent"))


def _hidden(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated hidden layer sizes, e.g. ``256,256``."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or not all(1 <= s <= MAX_HIDDEN_UNITS for s in sizes) or len(sizes) > 8:
        raise argparse.ArgumentTypeError(
            f"expected 1 to 8 comma-separated sizes in [1, {MAX_HIDDEN_UNITS}], got {text!r}"
        )
    return sizes


#: The options :func:`_command` spells out, in order.
_RECORDED = (
    "scenario",
    "demo_episodes",
    "noise_std",
    "dagger_rounds",
    "dagger_episodes",
    "epochs",
    "dagger_epochs",
    "hidden",
    "history_steps",
    "seed",
    "eval_episodes",
    "eval_seed",
    "device",
    "threads",
    "log_dir",
    "bc_out",
    "out",
)


def _command(
    args: argparse.Namespace, subcommand: str = "latent-agent", recorded: tuple[str, ...] = _RECORDED
) -> str:
    """The ``bwgym train <subcommand>`` command line (every ``recorded`` option) that reproduces ``args``."""
    parts = ["bwgym", "train", subcommand]
    for name in recorded:
        value = getattr(args, name)
        if value is not None:
            text = ",".join(str(v) for v in value) if name == "hidden" else str(value)
            parts += [f"--{name.replace('_', '-')}", text]
    return shlex.join(parts)


def _evaluate(scenario: Any, agent: Any, seeds: range) -> dict[str, Any]:
    """Success of ``agent`` on ``seeds`` of ``scenario``, with its 95 % Wilson interval."""
    from bwgym.common.stats import wilson_interval
    from bwgym.scenarios.factory import count_successes

    wins = count_successes(scenario, seeds, agent)
    low, high = wilson_interval(wins, len(seeds))
    return dict(
        episodes=len(seeds),
        seeds=f"{seeds[0]}..{seeds[-1]}",
        successes=wins,
        success_rate=wins / len(seeds),
        success_ci95_wilson=[round(low, 4), round(high, 4)],
    )


def cmd_train_latent_agent(args: argparse.Namespace) -> int:
    """Train the latent agent of ``--scenario``, evaluate it on held-out seeds, write ``--out`` and its sidecar."""
    import torch

    from bwgym.agents.latent_bc import LatentBCAgent, LatentTraining, train_latent_bc
    from bwgym.common.checkpoint import sidecar_path
    from bwgym.common.files import atomic_write_text
    from bwgym.scenarios.config import ConfigError
    from bwgym.scenarios.factory import make_env, validate

    torch.set_num_threads(args.threads)
    command = _command(args)
    try:
        scenario = latent_scenario(args.scenario)
        make_env(scenario).close()  # a codec that is not latent is refused before any training
        training = LatentTraining(
            demo_episodes=args.demo_episodes,
            demo_noise_std=args.noise_std,
            dagger_rounds=args.dagger_rounds,
            dagger_episodes=args.dagger_episodes,
            epochs=args.epochs,
            dagger_epochs=args.dagger_epochs,
            hidden=args.hidden,
            history_steps=args.history_steps,
            seed=args.seed,
        )
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"bwgym: error: {err}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    agent = train_latent_bc(
        functools.partial(make_env, scenario),
        None,
        training,
        bc_out_path=args.bc_out,
        log_dir=args.log_dir,
        describe=dict(scenario=args.scenario),
        device=args.device,
    )
    result: dict[str, Any] = dict(command=command, train_seconds=round(time.perf_counter() - start, 1))
    seeds = range(args.eval_seed, args.eval_seed + args.eval_episodes)
    if args.eval_episodes:
        result["eval"] = _evaluate(scenario, agent, seeds)
        if args.bc_out is not None:
            bc = LatentBCAgent.load(args.bc_out)
            result["eval_bc"] = _evaluate(scenario, bc, seeds)
            bc.extra_meta = dict(eval=result["eval_bc"], command=command)
            bc.save(args.bc_out)
        print(f"latent agent on {args.scenario}: {json.dumps(result['eval'])}")
    agent.extra_meta = dict(result)
    agent.save(args.out)
    report = dict(
        result,
        checkpoint=Path(args.out).name,
        code=agent.code_spec,
        arch=agent.arch,
        train_config=agent.train_config,
    )
    atomic_write_text(sidecar_path(args.out), json.dumps(report, indent=1) + "\n")
    validate(
        dataclasses.replace(
            scenario, agent=dataclasses.replace(scenario.agent, name="latent_bc", checkpoint=str(args.out))
        )
    )
    print(f"agent: {args.out}")
    return 0


#: The options of ``bwgym train latent-ppo`` its recorded command spells out, in order.
_RECORDED_PPO = ("scenario", "prior", "seed", "eval_episodes", "eval_seed", "threads", "run_dir", "out")


def cmd_train_latent_ppo(args: argparse.Namespace) -> int:
    """Fine-tune a latent agent with PPO on ``--scenario``; evaluate it and its prior; write ``--out`` and its sidecar."""
    import torch

    from bwgym.agents.latent_bc import LatentBCAgent
    from bwgym.agents.latent_rl import LatentPPO, train_latent_ppo
    from bwgym.common.checkpoint import sidecar_path
    from bwgym.common.files import atomic_write_text
    from bwgym.common.plain_data import from_plain
    from bwgym.envs.latent_views import find_latent_views
    from bwgym.scenarios.config import ConfigError
    from bwgym.scenarios.factory import make_env

    torch.set_num_threads(args.threads)
    settings = dict(args.ppo)
    command = (
        _command(args, "latent-ppo", _RECORDED_PPO)
        + "".join(f" --ppo {k}={v}" for k, v in settings.items())
        + (" --resume" if args.resume else "")
    )
    try:
        scenario = latent_scenario(args.scenario)
        config = from_plain(LatentPPO, dict(settings, seed=args.seed), "--ppo")
        prior = LatentBCAgent.load(args.prior)
        env = make_env(scenario)
        try:
            prior.check_code(find_latent_views(env).code_spec(), scenario.env.id, where=f"prior {args.prior}")
        finally:
            env.close()
        agent = train_latent_ppo(
            functools.partial(make_env, scenario), prior, args.run_dir, config, resume=args.resume
        )
    except (ConfigError, ValueError, FileNotFoundError) as err:  # CheckpointError is a ValueError
        print(f"bwgym: error: {err}", file=sys.stderr)
        return 2
    result: dict[str, Any] = dict(command=command, train_seconds=agent.extra_meta["train_seconds"])
    if args.eval_episodes:
        seeds = range(args.eval_seed, args.eval_seed + args.eval_episodes)
        result["eval"], result["eval_prior"] = (
            _evaluate(scenario, agent, seeds),
            _evaluate(scenario, prior, seeds),
        )
        print(
            f"PPO agent on {args.scenario}: {json.dumps(result['eval'])}; prior: {json.dumps(result['eval_prior'])}"
        )
    agent.extra_meta = dict(agent.extra_meta, **result)
    agent.save(args.out)
    report = dict(
        result, checkpoint=Path(args.out).name, prior=Path(args.prior).name, curve=agent.extra_meta["curve"]
    )
    atomic_write_text(sidecar_path(args.out), json.dumps(report, indent=1) + "\n")
    print(f"agent: {args.out}")
    return 0


#: The held-out evaluation of both commands.
_EVAL_OPTIONS = (
    int_option("--eval-episodes", 0, MAX_DEMO_EPISODES, 100, "held-out evaluation episodes, 0 for none"),
    int_option("--eval-seed", 0, MAX_SEED - MAX_DEMO_EPISODES, 10_000, "env seed of the first of them"),
)


def register(train_subparsers: Any) -> None:
    """Add ``latent-agent`` and ``latent-ppo`` to ``bwgym train``."""
    _register_ppo(train_subparsers)
    p = train_subparsers.add_parser(
        "latent-agent",
        help="train an MLP agent on a scenario's received latent code (BC + DAgger)",
        description="Behaviour cloning of the scripted expert on the latent code the scenario's receiver "
        "holds (link observation 'latent'), then DAgger rounds; evaluation on held-out seeds.",
    )
    p.add_argument("--scenario", required=True, help="library scenario or YAML file with a latent codec")
    p.add_argument("--out", type=checkpoint_out, required=True, help="checkpoint to write (.ckpt)")
    p.add_argument("--bc-out", type=checkpoint_out, default=None, help="also write the agent before DAgger")
    p.add_argument("--log-dir", default=None, help="TensorBoard folder (default: none)")
    p.add_argument("--hidden", type=_hidden, default=(256, 256), help="MLP hidden sizes (default: 256,256)")
    add_options(
        p,
        [
            int_option("--demo-episodes", 2, MAX_DEMO_EPISODES, 200, "expert episodes through the link"),
            float_option("--noise-std", 0.0, 10.0, 0.1, "the expert's action noise in them"),
            int_option("--dagger-rounds", 0, MAX_DAGGER_ROUNDS, 6, "DAgger rounds after BC"),
            int_option("--dagger-episodes", 1, MAX_DEMO_EPISODES, 80, "policy episodes per round"),
            int_option("--epochs", 1, 100_000, 60, "maximum epochs of the first fit"),
            int_option("--dagger-epochs", 1, 100_000, 40, "maximum epochs per round"),
            int_option("--history-steps", 0, MAX_HISTORY_STEPS, 3, "past codes and own actions in the input"),
            int_option("--seed", 0, MAX_SEED, 0, "seed of initialisation, split and batch order"),
            *_EVAL_OPTIONS,
        ],
    )
    add_torch_options(p)
    p.set_defaults(func=cmd_train_latent_agent)


def _register_ppo(train_subparsers: Any) -> None:
    p = train_subparsers.add_parser(
        "latent-ppo",
        help="fine-tune a latent agent with PPO on a scenario's received code (KL toward the prior)",
        description="PPO from a latent agent (its network is the actor) on the scenario's own reward, "
        "with critic warm-up and an annealed KL term toward the prior (bwgym.agents.latent_rl); "
        "periodic checkpoints in --run-dir, --resume continues a killed run; evaluation on held-out seeds.",
    )
    p.add_argument("--scenario", required=True, help="library scenario or YAML file with a latent codec")
    p.add_argument("--prior", required=True, help="the latent agent to start from (.ckpt)")
    p.add_argument(
        "--run-dir", type=folder_out, required=True, help="run folder: state.ckpt, curve.csv, tensorboard/"
    )
    p.add_argument("--out", type=checkpoint_out, required=True, help="the trained agent to write (.ckpt)")
    p.add_argument("--resume", action="store_true", help="continue from --run-dir/state.ckpt")
    p.add_argument(
        "--ppo",
        action="append",
        default=[],
        type=key_value,
        metavar="KEY=VALUE",
        help="a field of bwgym.agents.latent_rl.LatentPPO, e.g. --ppo total_steps=200000 --ppo actor_lr=1e-4",
    )
    add_options(
        p,
        [
            int_option("--seed", 0, MAX_SEED, 0, "seed of the noise, the critic and the minibatch order"),
            *_EVAL_OPTIONS,
        ],
    )
    add_torch_options(p, device=False)  # small MLPs stepped with the envs: CPU
    p.set_defaults(func=cmd_train_latent_ppo)
