"""Agents where bandwidth is scarce: clean-trained BC, DAgger on pixels, DAgger on latents and RL from it.

    python benchmarks/latent_rl.py --episodes 100 --write

At ``lora_ndpca`` (~115 bits per step) and ``narrowband_ndpca`` (~316), on the same seeded episodes
for every row (seeds from ``--seed``: none of them a demonstration, DAgger, RL training or RL
evaluation seed), the success rate with its 95 % Wilson interval of each agent the project ships
for these links, with paired McNemar tests of the RL agent against its own prior. Then the same
pair on a trace family neither trained on (``walk_100kbps``, Mahimahi, scaled to ``lora_ndpca``'s
mean budget). The learning curve of the shipped RL agent (its periodic evaluations, recorded in
its checkpoint) goes to ``docs/latent_rl.png``. With ``--write`` it writes the ``latent_rl``
section of BENCHMARKS.md.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from report import machine_line, script_parser, write_section  # noqa: E402  (run as a script)

import bwgym  # noqa: F401  (first: headless GL before mujoco)

AGENTS = Path(bwgym.__file__).resolve().parent / "agents" / "checkpoints"
RL_AGENT = AGENTS / "latent_ppo_locate_lift_v1_lora_ndpca.ckpt"
NARROWBAND_LATENT = AGENTS / "latent_bc_locate_lift_v1_narrowband_ndpca.ckpt"
#: ``walk_100kbps`` scaled to ``lora_ndpca``'s mean budget (126 bits per step).
HELD_OUT_FAMILY = {"trace.source": "walk_100kbps", "trace.scale": 0.0366}


def rows_of(budget: str) -> list[tuple[str, str, dict]]:
    """(label, library scenario, overrides) of the agents compared at ``budget``."""
    pixel_dagger = str(AGENTS / "bc_locate_lift_v1_narrowband_ndpca.ckpt")
    pixel_ppo = str(AGENTS / "ppo_locate_lift_v1_narrowband_ndpca.ckpt")
    latent = {"link.observation": "latent", "agent.name": "latent_bc"}
    if budget == "lora_ndpca":
        return [
            ("clean-trained BC, decoded pixels", "lora_ndpca", {}),
            ("BC + DAgger, decoded pixels (trained at narrowband_ndpca)", "lora_ndpca", {"agent.checkpoint": pixel_dagger}),
            ("PPO, decoded pixels (trained at narrowband_ndpca)", "lora_ndpca", {"agent.name": "sb3", "agent.checkpoint": pixel_ppo}),
            ("BC + DAgger, received code (the RL prior)", "lora_ndpca_latent", {}),
            ("PPO from it, received code", "lora_ndpca_latent_rl", {}),
        ]  # fmt: skip
    rows = [
        ("clean-trained BC, decoded pixels", "narrowband_ndpca", {}),
        ("BC + DAgger, decoded pixels", "narrowband_ndpca_dagger", {}),
        ("PPO from it, decoded pixels", "narrowband_ndpca_ppo", {}),
    ]
    if NARROWBAND_LATENT.is_file():
        rows.append(
            (
                "BC + DAgger, received code",
                "narrowband_ndpca",
                {**latent, "agent.checkpoint": str(NARROWBAND_LATENT)},
            )
        )
    rows += [
        ("BC + DAgger, received code (trained at lora_ndpca)", "narrowband_ndpca", latent),
        ("PPO, received code (trained at lora_ndpca)", "narrowband_ndpca", {**latent, "agent.checkpoint": str(RL_AGENT)}),
    ]  # fmt: skip
    return rows


def outcomes(name: str, overrides: dict, seeds: list[int]) -> list[bool]:
    """Each episode's success of library scenario ``name`` with ``overrides`` on ``seeds``."""
    from bwgym.agents.base import rollout
    from bwgym.scenarios.config import load_scenario
    from bwgym.scenarios.factory import make_agent, make_env

    scenario = load_scenario(name, overrides)
    env = make_env(scenario)
    try:
        agent = make_agent(scenario, env)
        return [bool(rollout(env, agent, seed=s).success) for s in seeds]
    finally:
        env.close()


def plot_curve(path: Path) -> Path:
    """The shipped RL agent's learning curve (evaluation success against env steps, the prior as a line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bwgym.agents.latent_bc import LatentBCAgent

    curve = LatentBCAgent.load(RL_AGENT).extra_meta["curve"]
    steps = [0] + [r["env_steps"] for r in curve]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot(
        steps,
        [curve[0]["prior_eval_success"]] + [r["eval_success"] for r in curve],
        "o-",
        label="PPO, evaluation",
    )
    train = [(r["env_steps"], r["train_success"]) for r in curve if r["train_success"] is not None]
    ax.plot(*zip(*train, strict=True), ".--", alpha=0.6, label="PPO, training episodes (with noise)")
    ax.axhline(curve[0]["prior_eval_success"], color="grey", ls=":", label="prior (BC + DAgger)")
    ax.set(xlabel="env steps", ylabel="success rate", ylim=(0, 1), title="latent PPO at lora_ndpca")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    import torch

    from bwgym.common.stats import paired_difference, wilson_interval

    parser = script_parser(__doc__)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20_000, help="first episode seed")
    parser.add_argument("--workers", type=int, default=2, help="rows run in parallel (spawned processes)")
    parser.add_argument("--write", action="store_true", help="write the section of BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = list(range(args.seed, args.seed + args.episodes))

    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(
        args.workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=torch.set_num_threads,
        initargs=(1,),
    )

    held_rows = [
        ("BC + DAgger, received code (the RL prior)", "lora_ndpca_latent", HELD_OUT_FAMILY),
        ("PPO from it, received code", "lora_ndpca_latent_rl", HELD_OUT_FAMILY),
    ]
    sections = {"lora": rows_of("lora_ndpca"), "narrowband": rows_of("narrowband_ndpca"), "held": held_rows}
    jobs = {  # every row queued at once, so both workers stay busy
        (key, label): pool.submit(outcomes, name, overrides, seeds)
        for key, rows in sections.items()
        for label, name, overrides in rows
    }

    def table(key: str) -> tuple[str, dict[str, list[bool]]]:
        lines = ["| agent | scenario | success | 95 % Wilson |", "|---|---|---|---|"]
        results = {}
        for label, name, overrides in sections[key]:
            results[label] = won = jobs[key, label].result()
            low, high = wilson_interval(sum(won), len(won))
            shown = f"`{name}`" + "".join(f" `{k}={Path(str(v)).name}`" for k, v in overrides.items())
            lines.append(f"| {label} | {shown} | {sum(won) / len(won):.2f} | [{low:.2f}, {high:.2f}] |")
            print(lines[-1], flush=True)
        return "\n".join(lines), results

    def paired(rl: list[bool], prior: list[bool]) -> str:
        d = paired_difference(rl, prior)
        return (
            f"PPO minus its prior, paired: {d['difference']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}], "
            f"McNemar p = {d['p_value']:.2g} ({d['a_only']} episodes won only by PPO, {d['b_only']} only by the prior)"
        )

    lora_table, lora = table("lora")
    narrow_table, _ = table("narrowband")
    held_table, held = table("held")
    pool.shutdown()
    plot = plot_curve(Path(__file__).resolve().parents[1] / "docs" / "latent_rl.png")
    from bwgym.agents.latent_bc import LatentBCAgent

    rl = LatentBCAgent.load(RL_AGENT)
    command = "python benchmarks/latent_rl.py " + shlex.join(sys.argv[1:])
    body = f"""## Agents where bandwidth is scarce: RL from the latent agent (issue 27)

Command: `{command}`. {machine_line()} CPU, torch on one thread.

Episode seeds {seeds[0]}..{seeds[-1]}, the same for every row. The RL agent
(`{RL_AGENT.name}`, scenario `lora_ndpca_latent_rl`) is PPO from the shipped latent agent
(`bwgym.agents.latent_rl`: the prior's network as the actor, an annealed KL term toward it, critic
warm-up), {rl.train_config["rl"]["env_steps"]:,} env steps at `lora_ndpca` in {rl.extra_meta["train_seconds"] / 60:.0f} min
({rl.train_config["rl"].get("workers", 1)} rollout processes on the 2 cores, shared with other jobs); its command is in `bwgym zoo`.

`lora_ndpca` (~115 bits per step, the LoRa trace):

{lora_table}

{paired(lora["PPO from it, received code"], lora["BC + DAgger, received code (the RL prior)"])}.

`narrowband_ndpca` (~316 bits per step, the same trace x 2.6):

{narrow_table}

On a trace family neither agent trained on (`walk_100kbps`, scaled to 126 bits per step):

{held_table}

{paired(held["PPO from it, received code"], held["BC + DAgger, received code (the RL prior)"])}.

Learning curve (evaluation: the deterministic actor on 60 fixed episodes, seeds from
`bwgym.agents.latent_rl.EVAL_SEED_BASE`; the dotted line is the prior on them):

![latent PPO learning curve](docs/{plot.name})
"""
    print(body)
    if args.write:
        write_section("latent_rl", body)


if __name__ == "__main__":
    main()
