"""RL on decoded views against its BC prior: BC-initialised PPO on a low-budget NDPCA scenario.

    python benchmarks/rl_decoded.py --run runs/ppo_bc --episodes 100 --write

``--run`` is a folder written by ``bwgym train agent --algo ppo|sac --bc-init ... --scenario S``
(its ``policy.ckpt`` and ``eval/evaluations.npz``). On the run's scenario, with the same seeded
episodes for every row (seeds from ``--seed``, none of them a training, DAgger or evaluation seed
of the run), it measures the success rate with 95 % Wilson intervals of: the shipped
(clean-trained) BC agent on the decoded views; the RL agent's prior when it is another BC
checkpoint (e.g. one fine-tuned by DAgger on these views, ``--prior`` names it as shipped when
the run read a copy); the RL agent; and the BC agent on uncompressed views (the ceiling), the
prior too when it was fine-tuned (what tuning for one budget costs on clean views). It plots
the run's periodic evaluations (success against env steps, the BC levels as lines) to
``docs/rl_decoded.png`` and, with ``--write``, the ``rl_decoded`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
from report import pyplot, save_figure, script_parser  # noqa: E402  (run as a script)

import bwgym  # noqa: F401  (first: headless GL before mujoco)

DOCS = Path(__file__).resolve().parent.parent / "docs"


def success_rate(scenario, agent_cfg, seeds: list[int]) -> tuple[int, float]:
    """Successes of ``agent_cfg`` on ``scenario`` over ``seeds`` and seconds taken."""
    from bwgym.scenarios.factory import count_successes

    start = time.perf_counter()
    wins = count_successes(dataclasses.replace(scenario, agent=agent_cfg), seeds)
    return wins, time.perf_counter() - start


def plot_curve(evaluations: Path, levels: dict[str, float], path: Path, title: str) -> None:
    plt = pyplot()
    data = np.load(evaluations)
    steps = data["timesteps"]
    success = data["successes"].mean(axis=1) if data["successes"].size else np.full(len(steps), np.nan)
    returns = data["results"].mean(axis=1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    axes[0].plot(steps, success, "o-", label="RL (periodic evaluation)")
    for (label, level), style in zip(levels.items(), ("--", ":"), strict=False):
        axes[0].axhline(level, color="k", ls=style, label=f"{label} ({level:.2f}, held-out seeds)")
    axes[0].set_xlabel("env steps")
    axes[0].set_ylabel("success rate")
    axes[0].set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=7, loc="lower left")
    axes[1].plot(steps, returns, "o-")
    axes[1].set_xlabel("env steps")
    axes[1].set_ylabel("mean return")
    save_figure(fig, path, title, fontsize=9)


def main() -> None:
    import torch

    from bwgym.common.checkpoint import load_checkpoint
    from bwgym.common.stats import wilson_interval
    from bwgym.scenarios.config import AgentConfig, load_scenario

    parser = script_parser(__doc__)
    parser.add_argument("--run", required=True, help="a `bwgym train agent --algo ppo|sac` folder")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=50_000, help="first episode seed")
    parser.add_argument(
        "--prior",
        default=None,
        help="the BC prior's checkpoint as shipped, when the run read a copy (default: the run's bc_init)",
    )
    parser.add_argument("--write", action="store_true", help="write the section of BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(1)

    run = Path(args.run)
    meta = load_checkpoint(run / "policy.ckpt").metadata
    config = meta["config"]
    if args.prior:
        config["bc_init"] = args.prior
    scenario = load_scenario(config["scenario"])
    seeds = list(range(args.seed, args.seed + args.episodes))
    uncompressed = load_scenario("uncompressed")
    agents = [
        ("BC, decoded views", scenario, AgentConfig(name="bc")),
        ("RL, decoded views", scenario, AgentConfig(name="sb3", checkpoint=str(run.resolve()))),
        ("BC, uncompressed views", uncompressed, AgentConfig(name="bc")),
    ]
    if config["bc_init"] != "shipped":  # a prior fine-tuned on decoded views (DAgger), and its cost
        prior = AgentConfig(name="bc", checkpoint=str(Path(config["bc_init"]).resolve()))
        agents.insert(1, ("BC + DAgger on decoded views (the RL prior)", scenario, prior))
        agents.append(("BC + DAgger, uncompressed views", uncompressed, prior))
    rows = []
    for label, scen, agent_cfg in agents:
        wins, seconds = success_rate(scen, agent_cfg, seeds)
        lo, hi = wilson_interval(wins, args.episodes)
        rows.append((label, wins, lo, hi))
        print(f"{label:24s} {wins / args.episodes:.2f} [{lo:.2f}, {hi:.2f}]  {seconds:.0f} s", flush=True)
    DOCS.mkdir(exist_ok=True)
    plot_curve(
        run / "eval" / "evaluations.npz",
        {
            label: wins / args.episodes
            for label, wins, _, _ in rows
            if label.startswith("BC") and "decoded" in label
        },
        DOCS / "rl_decoded.png",
        f"{config['algo'].upper()} from BC on {config['scenario']} (periodic evaluations, "
        f"{config['eval_episodes']} episodes each)",
    )
    table = ["| agent | success | 95 % interval (Wilson) |", "|---|---|---|"] + [
        f"| {label} | {wins / args.episodes:.2f} ({wins}/{args.episodes}) | {lo:.2f}-{hi:.2f} |"
        for label, wins, lo, hi in rows
    ]
    print("\n".join(table))
    if args.write:
        from report import machine_line, write_section  # noqa: E402  (run as a script)

        options = " ".join(f"--rl-kwarg {k}={v}" for k, v in sorted(config["hyperparams"].items()))
        write_section(
            "rl_decoded",
            "## RL on decoded views: BC-initialised "
            f"{config['algo'].upper()} against its BC prior\n\n"
            "Command: `python benchmarks/rl_decoded.py --run RUN"
            + (f" --prior {args.prior}" if args.prior else "")
            + f" --episodes {args.episodes} --write`. "
            f"{machine_line()}\n"
            f"RUN trained by `bwgym train agent --algo {config['algo']} --env {config['env_id']} --scenario "
            f'{config["scenario"]} --bc-init {config["bc_init"]} --env-kwargs \'{{"reward_type": '
            f'"{config["env_kwargs"].get("reward_type")}"}}\' --total-timesteps {config["total_timesteps"]} '
            f"--critic-warmup-steps {config['critic_warmup_steps']} --initial-noise-std "
            f"{config['initial_noise_std']} {options} --seed {config['seed']}` "
            f"({meta['num_timesteps']:,} env steps). Episodes: seeds {args.seed}.."
            f"{args.seed + args.episodes - 1}, the same for every row.\n\n"
            + "\n".join(table)
            + "\n\n![learning curve](docs/rl_decoded.png)",
        )


if __name__ == "__main__":
    main()
