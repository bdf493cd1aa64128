"""Fleets: success of each fleet allocator on held-out traces, and the fleet loop's speed.

    python benchmarks/fleet.py --members 8 --rounds 13 --levels 60,120,240 \\
        --families walk_100kbps,gilbert_elliott \\
        --learned bwgym/agents/checkpoints/fleet_allocator_ndpca_locate_lift_v1.ckpt \\
        --sweep-members 2,4,8,12,16 --workers 1

**Success.** A fleet of ``--members`` LocateLift-v1 robots (the ``fleet_narrowband_ndpca``
scenario: task-aware NDPCA, the BC agent) shares one link. Per trace family and level (bits per
robot per 0.04 s step under an equal split; the shared trace is scaled to ``level * members`` on
average), every fleet allocator runs the same ``--rounds`` rounds (member-episode e: seed e, so the
comparison is paired: ``members * rounds`` member-episodes per cell, 104 at the defaults). The
families are held out from ``bwgym train allocator --fleet`` (which runs the scenario's
``lora_narrowband``): a real trace (``walk_100kbps``, Mahimahi) and a generator it never sees
(``gilbert_elliott``, drawn with a held-out seed). Allocators: ``equal``, ``proportional``,
``max_min_fair``, ``state`` (top 6 of 8: the scenario's), ``oracle`` (``--oracle-rounds`` rounds:
it scores ~6 divisions per step) and ``learned`` (with ``--learned``: a checkpoint of ``bwgym
train allocator --fleet``, e.g. the shipped one). Reported: success with its
95 % Wilson interval, Jain's fairness of bits, bits per success; then the paired difference of
each allocator against ``equal`` and against the best classical rule of the cell (the highest of
equal, proportional, max_min_fair and state; McNemar's exact p).

**Sweep over N** (``--sweep-members``): fleets of N robots on one fixed link (``--sweep-family``
at ``--sweep-bits`` bits per step in all, so each robot's equal share is that over N), at least
``--sweep-episodes`` member-episodes per cell: where success collapses as the fleet grows.

**Speed.** Member-steps per second of ``fleet_lte_jpeg`` (JPEG, BC, equal shares) at N = 4, 8 and
16 members (one batched codec call per step, the agent called per member on CPU) against one
robot's single-env loop (the same scenario without its fleet, at 1/N of the link): the ratio is
what N robots cost stepped as one fleet against N separate loops.

Writes ``<out>/fleet.csv``, ``<out>/fleet.md`` and, without ``--no-write``, the ``fleet`` section of
BENCHMARKS.md.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import bwgym  # noqa: F401  (first: headless GL before mujoco)

STEP_S = 0.04
SCENARIO = "fleet_narrowband_ndpca"
GENERATED = {"gilbert_elliott": {"good_bps": 10e3, "bad_bps": 1e3, "duration_s": 60.0}}
#: Seed of generated held-out traces: far from any seed a training run draws.
HELD_OUT_SEED = 2**40 + 25
CLASSICAL = ("equal", "proportional", "max_min_fair", "state")


def trace_overrides(family: str, shared_bits_per_step: float) -> dict:
    """Scenario overrides putting the shared link on ``family`` at ``shared_bits_per_step`` on average."""
    from bwgym.traces import generate, load_trace

    if family in GENERATED:
        params = {**GENERATED[family], "seed": HELD_OUT_SEED}
        mean = generate(family, **params).mean_bps
        trace = {"source": None, "generator": family, "params": params}
    else:
        mean = load_trace(family).mean_bps
        trace = {"source": family, "generator": None, "params": {}}
    return {"trace": {**trace, "scale": shared_bits_per_step / STEP_S / mean}}


def allocator_spec(name: str, learned: str | None) -> dict:
    """The ``fleet.allocator`` section of one column."""
    if name == "state":
        return {"name": "state", "kwargs": {"top_k": 6}}
    if name == "learned":
        return {"name": "learned", "checkpoint": str(Path(learned).resolve())}
    return {"name": name, "kwargs": {}}


def run_cell(
    family: str,
    level: float,
    allocator: str,
    args,
    out: Path,
    members: int | None = None,
    rounds: int | None = None,
) -> dict:
    """One (family, level, allocator) cell: its member-episodes' outcomes and the fleet's metrics.

    ``members`` and ``rounds`` default to ``--members`` and ``--rounds`` (``--oracle-rounds``).
    """
    from bwgym.scenarios.config import load_scenario
    from bwgym.scenarios.runner import run_scenario

    n = members or args.members
    rounds = rounds or (args.oracle_rounds if allocator == "oracle" else args.rounds)
    overrides = {
        **trace_overrides(family, level * n),
        "fleet.members": n,
        "fleet.allocator": allocator_spec(allocator, args.learned),
        "run.episodes": rounds,
        "run.seed": args.seed,
        "run.workers": args.workers,
        "run.record_steps": False,
    }
    folder = out / "runs" / (f"{family}_{level:g}_{allocator}" + (f"_n{n}" if members else ""))
    result = run_scenario(
        load_scenario(SCENARIO, overrides), folder, resume=folder.exists(), progress=False, plots=False
    )
    summary = result.summary.iloc[0]
    episodes = result.episodes.sort_values("episode")
    return {
        "family": family,
        "members": n,
        "bits_per_robot": level,
        "allocator": allocator,
        "episodes": len(episodes),
        "success_rate": float(summary.success_rate),
        "success_ci_low": float(summary.success_ci_low),
        "success_ci_high": float(summary.success_ci_high),
        "jain_bits": float(summary.jain_bits),
        "bits_per_success": float(summary.bits_per_success),
        "held_rate": float(summary.held_rate),
        "outcomes": "".join("1" if s else "0" for s in episodes.success),
    }


def paired_lines(table: pd.DataFrame, reference: str) -> list[str]:
    """Markdown rows: each allocator minus ``reference`` on the same member-episodes."""
    from bwgym.common.stats import paired_difference

    lines = []
    for (family, level), group in table.groupby(["family", "bits_per_robot"], sort=False):
        if reference == "best classical":
            classical = group[group.allocator.isin(CLASSICAL)]
            ref_name = classical.sort_values("success_rate", ascending=False, kind="stable").allocator.iloc[0]
            if ref_name == "equal":  # those rows are in the table against equal already
                continue
        else:
            ref_name = reference
        ref = group[group.allocator == ref_name].outcomes.iloc[0]
        for _, row in group.iterrows():
            if row.allocator == ref_name:
                continue
            n = min(len(row.outcomes), len(ref))
            d = paired_difference([c == "1" for c in row.outcomes[:n]], [c == "1" for c in ref[:n]])
            lines.append(
                f"| {family} | {level:g} | {row.allocator} - {ref_name} | {d['difference']:+.3f} "
                f"[{d['low']:+.3f}, {d['high']:+.3f}] | {d['a_only']}/{d['b_only']} | {d['p_value']:.3g} | {n} |"
            )
    return lines


def sweep_table(args, out: Path) -> str:
    """Markdown: success of ``--sweep-allocators`` as the fleet grows on one fixed link (``--sweep-bits``)."""
    sizes = [int(v) for v in args.sweep_members.split(",") if v]
    if not sizes:
        return ""
    rows = []
    for n in sizes:
        for allocator in [a for a in args.sweep_allocators.split(",") if a]:
            if allocator == "learned" and not args.learned:
                continue
            rounds = max(1, math.ceil(args.sweep_episodes / n))
            row = run_cell(
                args.sweep_family, args.sweep_bits / n, allocator, args, out, members=n, rounds=rounds
            )
            rows.append(row)
            print(f"sweep N={n} {allocator}: {row['success_rate']:.2f} ({row['episodes']})", flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(out / "fleet_sweep.csv", index=False)
    return "\n".join(
        [
            "| members | bits per robot | allocator | member-episodes | success [95 % CI] | held |",
            "|---|---|---|---|---|---|",
        ]
        + [
            f"| {r.members} | {r.bits_per_robot:.0f} | {r.allocator} | {r.episodes} | {r.success_rate:.2f} "
            f"[{r.success_ci_low:.2f}, {r.success_ci_high:.2f}] | {r.held_rate:.2f} |"
            for r in table.itertuples()
        ]
    )


def speed_row(members: int, steps: int) -> dict:
    """Member-steps per second of a fleet of ``members`` against one robot's single-env loop."""
    from bwgym.agents.base import rollout
    from bwgym.scenarios.config import load_scenario
    from bwgym.scenarios.factory import make_agent, make_env
    from bwgym.scenarios.fleet import make_fleet
    from bwgym.scenarios.run_folder import act_all

    scenario = load_scenario("fleet_lte_jpeg", {"fleet.members": members})
    fleet = make_fleet(scenario)
    agent = make_agent(scenario, fleet.envs[0])
    agents = [agent] * members
    obs, _ = fleet.reset(seed=list(range(members)))
    active = np.ones(members, dtype=bool)
    fleet.step(act_all(agents, obs, active, fleet.single_action_space), active)  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        obs, *_ = fleet.step(act_all(agents, obs, active, fleet.single_action_space), active)
    fleet_rate = members * steps / (time.perf_counter() - start)
    fleet.close()

    single = load_scenario("fleet_lte_jpeg", {"fleet": None, "trace.scale": 1 / members})
    env = make_env(single)
    agent = make_agent(single, env)
    rollout(env, agent, 0, max_steps=5)  # warm-up
    done_steps, start = 0, time.perf_counter()
    seed = 0
    while done_steps < steps:
        done_steps += rollout(env, agent, seed, max_steps=steps - done_steps).steps
        seed += 1
    single_rate = done_steps / (time.perf_counter() - start)
    env.close()
    return {"members": members, "fleet_member_steps_per_s": fleet_rate, "single_env_steps_per_s": single_rate}


def main(argv: list[str] | None = None) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from report import machine_line, parse_args, write_section

    args = parse_args(
        __doc__,
        argv,
        [
            ("--members", int, 8, "robots per fleet"),
            ("--rounds", int, 13, "rounds per cell (members x rounds member-episodes)"),
            ("--oracle-rounds", int, 4, "rounds of the oracle's cells (the first rounds of the others')"),
            ("--levels", str, "60,120,240", "bits per robot per step under an equal split"),
            ("--families", str, "walk_100kbps,gilbert_elliott", "held-out trace families"),
            ("--allocators", str, "equal,proportional,max_min_fair,state,oracle", "fleet allocators"),
            ("--learned", str, None, "a scorer from `bwgym train allocator --fleet` (adds `learned`)"),
            ("--seed", int, 100_000, "first member-episode seed"),
            ("--workers", int, 1, "processes per cell (rounds in parallel)"),
            ("--sweep-members", str, "", "fleet sizes of the sweep over N on one link (empty: skip)"),
            ("--sweep-bits", float, 960.0, "the sweep's shared bits per step (its link, for every N)"),
            ("--sweep-family", str, "walk_100kbps", "the sweep's trace family"),
            ("--sweep-allocators", str, "equal,state,learned", "the sweep's fleet allocators"),
            ("--sweep-episodes", int, 48, "member-episodes per sweep cell (rounds: this over N, up)"),
            ("--speed-members", str, "4,8,16", "fleet sizes of the speed table (empty: skip)"),
            ("--speed-steps", int, 60, "fleet steps timed per size"),
            ("--out", str, "runs/bench_fleet", "output folder"),
        ],
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    allocators = [a for a in args.allocators.split(",") if a] + (["learned"] if args.learned else [])
    levels = [float(v) for v in args.levels.split(",") if v]
    families = [f for f in args.families.split(",") if f]
    start = time.perf_counter()
    rows = []
    for family in families:
        for level in levels:
            for allocator in allocators:
                row = run_cell(family, level, allocator, args, out)
                rows.append(row)
                print(
                    f"{family} {level:g} {allocator}: {row['success_rate']:.2f} "
                    f"[{row['success_ci_low']:.2f}, {row['success_ci_high']:.2f}] ({row['episodes']})",
                    flush=True,
                )
    table = pd.DataFrame(rows)
    table.to_csv(out / "fleet.csv", index=False)
    success = "\n".join(
        [
            "| family | bits per robot | allocator | member-episodes | success [95 % CI] | Jain (bits) | bits per success | held |",
            "|---|---|---|---|---|---|---|---|",
        ]
        + [
            f"| {r.family} | {r.bits_per_robot:g} | {r.allocator} | {r.episodes} | {r.success_rate:.2f} "
            f"[{r.success_ci_low:.2f}, {r.success_ci_high:.2f}] | {r.jain_bits:.3f} | {r.bits_per_success:,.0f} | {r.held_rate:.2f} |"
            for r in table.itertuples()
        ]
    )
    paired = "\n".join(
        [
            "| family | bits per robot | difference | success [95 % CI] | discordant | McNemar p | n |",
            "|---|---|---|---|---|---|---|",
        ]
        + paired_lines(table, "equal")
        + paired_lines(table, "best classical")
    )
    sweep_md = sweep_table(args, out)
    speed_sizes = [int(v) for v in args.speed_members.split(",") if v]
    speed = pd.DataFrame([speed_row(n, args.speed_steps) for n in speed_sizes])
    speed_md = ""
    if not speed.empty:
        speed["ratio"] = speed.fleet_member_steps_per_s / speed.single_env_steps_per_s
        speed.to_csv(out / "fleet_speed.csv", index=False)
        speed_md = "\n".join(
            ["| members | fleet member-steps/s | single-env steps/s | ratio |", "|---|---|---|---|"]
            + [
                f"| {r.members} | {r.fleet_member_steps_per_s:.0f} | {r.single_env_steps_per_s:.0f} | {r.ratio:.2f} |"
                for r in speed.itertuples()
            ]
        )
    markdown = (
        success
        + "\n\nPaired differences on the same member-episodes (allocator minus reference; 95 % interval; "
        "discordant pairs a_only/b_only; McNemar's exact p; the oracle on its first rounds):\n\n"
        + paired
        + (
            f"\n\nWhere success collapses: N robots on one link ({args.sweep_family} at "
            f"{args.sweep_bits:g} bits per step in all, {args.sweep_episodes}+ member-episodes per cell):\n\n"
            + sweep_md
            if sweep_md
            else ""
        )
        + (
            "\n\nFleet loop speed (`fleet_lte_jpeg`, JPEG + BC, equal shares):\n\n" + speed_md
            if speed_md
            else ""
        )
    )
    (out / "fleet.md").write_text(markdown + "\n")
    print(markdown)
    print(f"{time.perf_counter() - start:.0f} s; {out / 'fleet.csv'}")
    if not args.no_write:
        command = "python benchmarks/fleet.py " + " ".join(
            [
                f"--members {args.members}",
                f"--rounds {args.rounds}",
                f"--oracle-rounds {args.oracle_rounds}",
                f"--levels {args.levels}",
                f"--families {args.families}",
                f"--allocators {args.allocators}",
            ]
            + ([f"--learned {args.learned}"] if args.learned else [])
            + (
                [
                    f"--sweep-members {args.sweep_members}",
                    f"--sweep-bits {args.sweep_bits:g}",
                    f"--sweep-family {args.sweep_family}",
                    f"--sweep-allocators {args.sweep_allocators}",
                    f"--sweep-episodes {args.sweep_episodes}",
                ]
                if args.sweep_members
                else []
            )
            + [
                f"--workers {args.workers}",
                f"--speed-members {args.speed_members}",
                f"--speed-steps {args.speed_steps}",
            ]
        )
        write_section(
            "fleet",
            "## Fleets: who gets the shared link\n\n"
            f"Command: `{command}`. {machine_line()}\n"
            f"{args.members} LocateLift-v1 robots (`{SCENARIO}`: task-aware NDPCA, BC agent) behind one link on "
            "held-out traces scaled to the level times the fleet size; paired member-episodes per cell.\n\n"
            + markdown,
        )


if __name__ == "__main__":
    main()
