"""Allocation policies compared on traces the learned policy never trained on.

    python benchmarks/allocation.py --learned runs/alloc_s0 --learned runs/alloc_s1 \\
        --episodes 100 --budgets 200,300,500 --families lora_narrowband,gilbert_elliott --workers 2

The BC agent acts on LocateLift views (``--env``, v1 by default) sent through task-aware NDPCA; per
trace family and mean budget (bits per 0.04 s step; the trace is scaled to it), every allocator
runs the same seeded episodes (episode i: seed i, which also draws the trace offset), so the
comparison is paired. Families: library traces in real formats (``lora_narrowband`` CSV,
``satellite`` Sabre JSON, ``walk_100kbps`` Mahimahi, ...) and generators the training family does
not use (``gilbert_elliott``, ``pensieve_markov``, drawn with held-out seeds). Allocators:
``dpca`` (the codec's own split), ``uniform``, ``proportional``, ``oracle`` (grid of 5 splits per
step, closest action to the clean-view one), ``oracle+dpca`` (the same grid plus the codec's own
split), with ``--lookahead K[:KEEP],...`` ``oracle_kK`` (the same grid scored by the least summed
distance over a K-step rollout of env, link and agent, ``--lookahead-keep`` candidates expanded
per step; ``oracle_kK_keepKEEP`` with another number), every ``--learned`` checkpoint (one per training
seed) and every ``--content`` scorer (``bwgym train allocator --content``; ``shipped``: the
shipped one), which ``--only-new`` runs alone beside its references ``dpca`` and ``uniform``. The
oracles run ``--oracle-episodes`` (the one-step oracle decodes every split of its grid each
step, ~6x the cost of the others; the lookahead one ``1 + keep`` times that at K = 2). With an oracle and
a content scorer in the run, the tables add the scorer's success as a fraction of each oracle's
on the oracle's episodes. Cells (family x budget x allocator) run in ``--workers`` processes. Reported: success rate with its 95 % Wilson interval, and for learned policies how often
they handed the split to the codec, and per allocator how far the failed episodes got
(:data:`~bwgym.agents.content_allocation.PHASES`: the furthest task phase an episode reached, from
the true state). Writes ``<out>/allocation.csv``, ``<out>/allocation.md``, a
plot of one learned episode (``<out>/allocation_episode.png``: the split against the budget and
the task phase) and, with ``--write``, the ``allocation`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
from report import pyplot, save_figure, script_parser  # noqa: E402  (run as a script)

import bwgym  # noqa: F401  (first: headless GL before mujoco)

DOCS = Path(__file__).resolve().parent.parent / "docs"
STEP_S = 0.04
ENV_ID = "bwgym/LocateLift-v1"
GENERATED = {
    "gilbert_elliott": {"good_bps": 10e3, "bad_bps": 1e3, "duration_s": 60.0},
    "pensieve_markov": {"min_bps": 1e3, "max_bps": 20e3, "duration_s": 60.0},
}
#: Seeds of generated held-out traces: far from any seed a training family draws (< 2**31).
HELD_OUT_SEED = 2**40 + 17
#: The sections of BENCHMARKS.md this script writes (``--section``) and their headings.
SECTIONS = {
    "allocation": "Allocation policies on held-out traces",
    "allocation_content": "Content-aware allocation on held-out traces",
}


def family_trace(family: str, bits_per_step: float):
    """The family's trace scaled to ``bits_per_step`` on average."""
    from bwgym.traces import generate, load_trace

    if family in GENERATED:
        trace = generate(family, seed=HELD_OUT_SEED, **GENERATED[family])
    else:
        trace = load_trace(family)
    return trace.scale(bits_per_step / STEP_S / trace.mean_bps)


def build_allocator(
    name: str,
    codec,
    learned: list[str],
    levels: int,
    env_id: str,
    agent_checkpoint: str | None,
    content: list[str] = (),
    env=None,
    lookahead_keep: int = 2,
):
    """One allocator of the comparison by its column name (``env``, ``lookahead_keep``: the bare env
    and the candidates expanded per step of a lookahead oracle ``oracle_kK``)."""
    from bwgym.agents.allocation import default_task_agent, load_learned_allocator
    from bwgym.agents.content_allocation import load_content_allocator
    from bwgym.envs.allocators import LookaheadOracleAllocator, OracleAllocator, ProportionalAllocator

    if name in ("dpca", "uniform"):
        return name
    if name == "proportional":
        return ProportionalAllocator(codec)
    if name.startswith("oracle_k"):
        agent = default_task_agent(env_id, agent_checkpoint)
        k, keep = lookahead_parameters(name, lookahead_keep)
        return LookaheadOracleAllocator(agent, codec, env, k=k, keep=keep, levels=levels)
    if name in ("oracle", "oracle+dpca"):
        agent = default_task_agent(env_id, agent_checkpoint)
        return OracleAllocator(agent, codec, levels=levels, include_codec_split=name == "oracle+dpca")
    if name.startswith("content"):
        path = content[0 if name == "content" else int(name.removeprefix("content_"))]
        return load_content_allocator(None if path == "shipped" else path, codec, env_id=env_id)
    index = 0 if name == "learned" else int(name.removeprefix("learned_"))
    return load_learned_allocator(learned[index], codec)


def lookahead_parameters(name: str, default_keep: int) -> tuple[int, int]:
    """``(k, keep)`` of a lookahead oracle's column ``oracle_kK`` (``default_keep``) or ``oracle_kK_keepN``."""
    k, _, keep = name.removeprefix("oracle_k").partition("_keep")
    return int(k), int(keep) if keep else default_keep


def lookahead_columns(spec: str, default_keep: int) -> list[str]:
    """The columns of ``--lookahead`` (``K[:KEEP],...``): ``oracle_kK``, or ``oracle_kK_keepKEEP`` for
    another KEEP than ``default_keep``."""
    columns = []
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        k, _, keep = entry.partition(":")
        suffix = f"_keep{int(keep)}" if keep and int(keep) != default_keep else ""
        columns.append(f"oracle_k{int(k)}{suffix}")
    return columns


def _numbered(prefix: str, paths: list[str]) -> list[str]:
    return [f"{prefix}_{i}" for i in range(len(paths))] if len(paths) > 1 else [prefix] * bool(paths)


def allocator_names(
    learned: list[str], content: list[str] = (), only_new: bool = False, lookahead: list[str] = ()
) -> list[str]:
    """The columns: references, oracles (the one-step ones, then the ``lookahead`` columns), learned
    policies, content scorers (``only_new``: the references and the scorers)."""
    if only_new:
        return ["dpca", "uniform", *_numbered("content", list(content))]
    names = ["dpca", "uniform", "proportional", "oracle", "oracle+dpca", *lookahead]
    return names + _numbered("learned", learned) + _numbered("content", list(content))


_WORKER: dict = {}


def run_cell(cell: dict) -> dict:
    """One (family, budget, allocator) cell, in a worker process that keeps its env, codec and agent."""
    import gymnasium as gym
    import torch

    from bwgym.agents.allocation import default_task_agent
    from bwgym.codecs import make_codec
    from bwgym.common.stats import wilson_interval
    from bwgym.envs.views import link_views

    torch.set_num_threads(1)
    key = (cell["env"], cell["codec_checkpoint"], cell["agent_checkpoint"])
    if _WORKER.get("key") != key:
        base_env = gym.make(cell["env"])
        codec = make_codec(
            "ndpca", link_views(base_env), env_id=cell["env"], checkpoint=cell["codec_checkpoint"]
        )
        _WORKER.update(
            key=key,
            env=base_env,
            codec=codec,
            agent=default_task_agent(cell["env"], cell["agent_checkpoint"]),
        )
    codec = _WORKER["codec"]
    allocator = build_allocator(
        cell["allocator"],
        codec,
        cell["learned"],
        cell["levels"],
        cell["env"],
        cell["agent_checkpoint"],
        cell["content"],
        env=_WORKER["env"],
        lookahead_keep=cell["lookahead_keep"],
    )
    t0 = time.perf_counter()
    trace = family_trace(cell["family"], cell["bits"])
    outcomes, codec_share, trail, phases = run_point(
        _WORKER["env"], codec, _WORKER["agent"], trace, allocator, cell["episodes"], cell["record"]
    )
    wins = sum(outcomes)
    lo, hi = wilson_interval(wins, cell["episodes"])
    return dict(
        family=cell["family"],
        bits_per_step=cell["bits"],
        allocator=cell["allocator"],
        episodes=cell["episodes"],
        successes=wins,
        success_rate=wins / cell["episodes"],
        ci_low=lo,
        ci_high=hi,
        codec_split_share=codec_share,
        outcomes="".join(str(int(o)) for o in outcomes),
        phases="".join(str(p) for p in phases),
        seconds=round(time.perf_counter() - t0, 1),
        trail=trail,
    )


def run_point(base_env, codec, agent, trace, allocator, episodes: int, record: bool = False):
    """Outcomes, the share of codec splits, one recorded episode (``record``: the first success, else
    episode 0) and the furthest task phase of every episode."""
    from bwgym.agents.base import rollout
    from bwgym.agents.content_allocation import task_phase
    from bwgym.envs.bandwidth import BandwidthLimited

    env = BandwidthLimited(base_env, codec, trace, allocator=allocator)
    if hasattr(allocator, "bind_link"):  # the lookahead oracle reads the budgets ahead from the link
        allocator.bind_link(env.link)
    outcomes, codec_choices, steps, trail, furthest, current = [], 0, 0, [], [], []

    def on_step(step, obs, action, reward, info):
        nonlocal codec_choices, steps
        steps += 1
        phase = int(task_phase(base_env)["phase"])
        furthest[-1] = max(furthest[-1], phase)
        codec_choices += info.get("requested_allocation") is None
        if record:
            current.append(
                dict(
                    budget=info["budget_bits"],
                    split=info.get("requested_allocation"),
                    phase=phase,
                    episode=episode,
                )
            )

    for episode in range(episodes):
        furthest.append(0)
        current.clear()
        outcomes.append(bool(rollout(env, agent, seed=episode, on_step=on_step).success))
        if record and (episode == 0 or (outcomes[-1] and not any(outcomes[:-1]))):
            trail = list(current)
    return outcomes, codec_choices / max(steps, 1), trail, furthest


def failure_phases(table, names: list[str]) -> str:
    """Markdown: per point and allocator (in ``names`` order), the failed episodes by the furthest task phase they reached."""
    from bwgym.agents.content_allocation import PHASES

    header = (
        "| family | bits_per_step | allocator | failed | "
        + " | ".join(f"stopped in {p}" for p in PHASES)
        + " |"
    )
    lines = [header, "|" + "---|" * (len(PHASES) + 4)]
    order = {name: i for i, name in enumerate(names)}
    ranked = table.assign(rank=[order.get(a, len(order)) for a in table.allocator])
    for row in ranked.sort_values(["family", "bits_per_step", "rank"]).itertuples():
        failed = [int(p) for p, o in zip(row.phases, row.outcomes, strict=True) if o == "0"]
        counts = [failed.count(i) for i in range(len(PHASES))]
        lines.append(
            f"| {row.family} | {row.bits_per_step:.0f} | {row.allocator} | {len(failed)}/{len(row.outcomes)} | "
            + " | ".join(str(c) for c in counts)
            + " |"
        )
    return "\n".join(lines)


def run_cells(cells: list[dict], workers: int, out: Path):
    """Run the cells in ``workers`` processes: the table (a row per cell) and the recorded episodes."""
    import multiprocessing

    import pandas as pd

    rows, trails = [], {}
    context = multiprocessing.get_context("spawn")  # forked children would share the EGL context
    with context.Pool(max(1, workers), maxtasksperchild=None) as pool:
        for row in pool.imap_unordered(run_cell, cells):
            trail = row.pop("trail")
            if trail:
                trails[(row["allocator"], row["family"], row["bits_per_step"])] = trail
            rows.append(row)
            print(
                f"{row['family']:16s} {row['bits_per_step']:5.0f} {row['allocator']:12s} "
                f"{row['success_rate']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}] "
                f"codec split {row['codec_split_share']:.2f}  {row['seconds']:.0f} s",
                flush=True,
            )
            pd.DataFrame(rows).to_csv(out / "allocation.csv", index=False)  # finished cells survive a stop
    return pd.DataFrame(rows), trails


def paired_table(table, names: list[str], reference: str = "dpca") -> str:
    """Markdown: each allocator's success minus ``reference``'s on the same episodes (the first n of both)."""
    from bwgym.common.stats import paired_difference

    lines = []
    for (family, bits), group in table.groupby(["family", "bits_per_step"]):
        ref = group[group.allocator == reference]
        if ref.empty:
            continue
        cells = [family, f"{bits:.0f}"]
        for name in names:
            row = group[group.allocator == name]
            if name == reference or row.empty:
                continue
            a, b = row.outcomes.iloc[0], ref.outcomes.iloc[0]
            n = min(len(a), len(b))
            d = paired_difference([c == "1" for c in a[:n]], [c == "1" for c in b[:n]])
            cells.append(
                f"{d['difference']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}] p={d['p_value']:.2g} (n={n})"
            )
        lines.append("| " + " | ".join(cells) + " |")
    others = [n for n in names if n != reference and n in set(table.allocator)]
    header = "| family | bits_per_step | " + " | ".join(others) + " |"
    return "\n".join([header, "|" + "---|" * (len(others) + 2), *lines])


def oracle_ratio_table(table, names: list[str]) -> str:
    """Markdown: per point and content scorer, its success as a fraction of each oracle's, on the
    oracle's episodes (the first n of the scorer's); empty without both."""
    oracles = [n for n in names if n.startswith("oracle") and n in set(table.allocator)]
    scorers = [n for n in names if n.startswith("content") and n in set(table.allocator)]
    if not oracles or not scorers:
        return ""
    lines = [
        "| family | bits_per_step | scorer | " + " | ".join(f"/ {o}" for o in oracles) + " |",
        "|" + "---|" * (len(oracles) + 3),
    ]
    for (family, bits), group in table.groupby(["family", "bits_per_step"]):
        outcomes = {row.allocator: row.outcomes for row in group.itertuples()}
        for scorer in [s for s in scorers if s in outcomes]:
            cells = []
            for oracle in oracles:
                if oracle not in outcomes:
                    cells.append("")
                    continue
                n = min(len(outcomes[oracle]), len(outcomes[scorer]))
                won = outcomes[oracle][:n].count("1"), outcomes[scorer][:n].count("1")
                ratio = f"{won[1] / won[0]:.2f}" if won[0] else "n/a"
                cells.append(f"{ratio} ({won[1]}/{won[0]}, n={n})")
            lines.append(f"| {family} | {bits:.0f} | {scorer} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gap_phases(table, names: list[str]) -> str:
    """Markdown: per point, content scorer and oracle, the paired episodes only the oracle won, by the
    furthest task phase the scorer reached in them, beside those only the scorer won; empty without both."""
    from bwgym.agents.content_allocation import PHASES

    oracles = [n for n in names if n.startswith("oracle") and n in set(table.allocator)]
    scorers = [n for n in names if n.startswith("content") and n in set(table.allocator)]
    if not oracles or not scorers:
        return ""
    lines = [
        "| family | bits_per_step | scorer | oracle | n | only the oracle won | "
        + " | ".join(f"in {p}" for p in PHASES)
        + " | only the scorer won |",
        "|" + "---|" * (len(PHASES) + 7),
    ]
    for (family, bits), group in table.groupby(["family", "bits_per_step"]):
        rows = {row.allocator: row for row in group.itertuples()}
        for scorer in [s for s in scorers if s in rows]:
            for oracle in [o for o in oracles if o in rows]:
                n = min(len(rows[oracle].outcomes), len(rows[scorer].outcomes))
                pairs = list(zip(rows[oracle].outcomes[:n], rows[scorer].outcomes[:n], strict=True))
                lost = [int(rows[scorer].phases[i]) for i, (o, c) in enumerate(pairs) if (o, c) == ("1", "0")]
                won = sum((o, c) == ("0", "1") for o, c in pairs)
                lines.append(
                    f"| {family} | {bits:.0f} | {scorer} | {oracle} | {n} | {len(lost)} | "
                    + " | ".join(str(lost.count(i)) for i in range(len(PHASES)))
                    + f" | {won} |"
                )
    return "\n".join(lines)


def plot_episode(trail, path: Path, title: str) -> None:
    from bwgym.agents.content_allocation import PHASES

    plt = pyplot()
    t = np.arange(len(trail))
    budget = [r["budget"] for r in trail]
    arm = [np.nan if r["split"] is None else r["split"].get("arm", np.nan) for r in trail]
    codec = [r["split"] is None for r in trail]
    phase = [r["phase"] for r in trail]
    fig, axes = plt.subplots(3, 1, figsize=(8, 6), sharex=True)
    axes[0].step(t, budget, where="post")
    axes[0].set_ylabel("budget (bits/step)")
    axes[1].plot(t, arm, "o-", label="arm share (explicit split)")
    axes[1].plot(t[codec], np.full(int(np.sum(codec)), 0.5), "x", label="codec's own split")
    axes[1].set_ylim(-0.05, 1.05)
    axes[1].set_ylabel("split")
    axes[1].legend(loc="lower right", fontsize=8)
    axes[2].step(t, phase, where="post")
    axes[2].set_yticks(range(len(PHASES)), PHASES)
    axes[2].set_xlabel("step")
    save_figure(fig, path, title)


def main() -> None:
    import pandas as pd

    parser = script_parser(__doc__)
    parser.add_argument("--learned", action="append", default=[], help="a `bwgym train allocator` folder")
    parser.add_argument(
        "--content",
        action="append",
        default=[],
        help="a `bwgym train allocator --content` folder, or `shipped` (the shipped scorer)",
    )
    parser.add_argument(
        "--only-new",
        action="store_true",
        help="run only the --content scorers and their references dpca and uniform (no oracles, no learned)",
    )
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument(
        "--oracle-episodes", type=int, default=None, help="episodes of the oracles (default: --episodes)"
    )
    parser.add_argument("--budgets", default="200,300,500", help="mean bits per step, comma-separated")
    parser.add_argument("--families", default="lora_narrowband,gilbert_elliott")
    parser.add_argument(
        "--points", default=None, help="FAMILY:BITS,... instead of every family at every budget"
    )
    parser.add_argument("--allocators", default=None, help="subset to run, comma-separated")
    parser.add_argument("--oracle-levels", type=int, default=4)
    parser.add_argument(
        "--lookahead",
        default="",
        metavar="K[:KEEP],...",
        help="also run lookahead oracles, K steps ahead, expanding KEEP (--lookahead-keep) candidates per "
        "step (K = 1 makes the one-step oracle's choices)",
    )
    parser.add_argument(
        "--lookahead-keep", type=int, default=2, help="candidates a lookahead oracle expands per step"
    )
    parser.add_argument("--env", default=ENV_ID, help="task env id")
    parser.add_argument("--codec-checkpoint", help="NDPCA checkpoint (default: the shipped one)")
    parser.add_argument("--agent-checkpoint", help="BC checkpoint (default: the shipped one of --env)")
    parser.add_argument("--workers", type=int, default=1, help="processes running cells")
    parser.add_argument("--out", default="runs/allocation_benchmark")
    parser.add_argument("--write", action="store_true", help="write the section of BENCHMARKS.md")
    parser.add_argument(
        "--section",
        default="allocation",
        choices=sorted(SECTIONS),
        help="the section of BENCHMARKS.md --write writes (allocation_content: the content allocator's runs)",
    )
    parser.add_argument(
        "--from-csv",
        metavar="CSV",
        help="make the tables from the allocation.csv of a finished run instead of running (its --out "
        "folder's episode figure is reused); give the run's other options for the section's command",
    )
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lookahead = lookahead_columns(args.lookahead, args.lookahead_keep)
    names = allocator_names(args.learned, args.content, args.only_new, lookahead=lookahead)
    if args.allocators:
        names = [n for n in names if n in args.allocators.split(",")]
    budgets = [float(b) for b in args.budgets.split(",")]
    points = [(f, b) for f in args.families.split(",") for b in budgets]
    if args.points:
        points = [(p.split(":")[0], float(p.split(":")[1])) for p in args.points.split(",")]
    cells = []
    for family, bits in points:
        for name in names:
            oracle = name.startswith("oracle")
            cells.append(
                dict(
                    family=family,
                    bits=bits,
                    allocator=name,
                    episodes=(args.oracle_episodes or args.episodes) if oracle else args.episodes,
                    record=name.startswith(("learned", "content")),
                    learned=list(args.learned),
                    content=list(args.content),
                    levels=args.oracle_levels,
                    lookahead_keep=args.lookahead_keep,
                    env=args.env,
                    codec_checkpoint=args.codec_checkpoint,
                    agent_checkpoint=args.agent_checkpoint,
                )
            )
    # relative cost per episode; a lookahead oracle evaluates 1 + keep + ... + keep^(K-1) grids per step
    cost = {
        name: 6 * sum(keep**j for j in range(k))
        for name, (k, keep) in ((n, lookahead_parameters(n, args.lookahead_keep)) for n in lookahead)
    }
    cost.update(oracle=6, content=3)
    cells.sort(
        key=lambda c: (
            -c["episodes"] * cost.get(c["allocator"], cost.get(c["allocator"].split("_")[0].split("+")[0], 1))
        )
    )  # longest first
    start = time.perf_counter()
    if args.from_csv:
        table, trails = pd.read_csv(args.from_csv, dtype={"outcomes": str, "phases": str}), {}
    else:
        table, trails = run_cells(cells, args.workers, out)
    table = table.sort_values(["family", "bits_per_step"])
    table.to_csv(out / "allocation.csv", index=False)
    cells_md = table.assign(
        cell=[f"{r.success_rate:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]" for r in table.itertuples()]
    ).pivot_table(index=["family", "bits_per_step"], columns="allocator", values="cell", aggfunc="first")
    cells_md = cells_md[[c for c in names if c in cells_md.columns]]
    flat = cells_md.reset_index()
    markdown = "\n".join(
        ["| " + " | ".join(map(str, flat.columns)) + " |", "|" + "---|" * len(flat.columns)]
        + ["| " + " | ".join(str(v) for v in row) + " |" for row in flat.itertuples(index=False)]
    )
    lookaheads = [n for n in names if n.startswith("oracle_k")]
    # the codec's split, the simple rule to beat, and the one-step oracle beside the lookahead ones
    for reference in ("dpca", "uniform", *(["oracle"] * bool(lookaheads))):
        if reference not in set(table.allocator):
            continue
        others = {"dpca": names, "uniform": [n for n in names if n != "dpca"], "oracle": lookaheads}[
            reference
        ]
        markdown += (
            f"\n\nPaired difference to `{reference}` on the same episodes (success rate of the "
            f"allocator minus {reference}'s; 95 % interval; McNemar's exact p; the oracles on their "
            "first n episodes):\n\n" + paired_table(table, others, reference)
        )
    markdown += (
        "\n\nFailed episodes by the furthest task phase they reached (true state; "
        "`bwgym.agents.content_allocation.task_phase`):\n\n" + failure_phases(table, names)
    )
    ratios = oracle_ratio_table(table, names)
    if ratios:
        markdown += (
            "\n\nContent scorers' success as a fraction of each oracle's, on the oracle's episodes "
            "(successes of the scorer / of the oracle on the same n episodes):\n\n" + ratios
        )
    gaps = gap_phases(table, names)
    if gaps:
        markdown += (
            "\n\nWhere the success gap to each oracle lives: paired episodes that only the oracle "
            "won, by the furthest task phase the scorer reached in them (`in <phase>`, true state), and those only "
            "the scorer won:\n\n" + gaps
        )
    (out / "allocation.md").write_text(markdown + "\n")
    print(markdown)
    if trails:
        shown = {k: v for k, v in trails.items() if k[0].startswith("content")} or trails
        (name, family, bits), trail = sorted(shown.items(), key=lambda kv: (kv[0][2], kv[0][1]))[
            len(shown) // 2
        ]
        plot_episode(
            trail,
            out / "allocation_episode.png",
            f"{name} on {family} at {bits:.0f} bits/step, episode {trail[0]['episode'] if trail else 0}",
        )
    print(f"{time.perf_counter() - start:.0f} s; {out / 'allocation.csv'}")
    if args.write:
        from report import machine_line, write_section  # noqa: E402  (run as a script)

        command = "python benchmarks/allocation.py " + " ".join(
            [f"--learned {p}" for p in args.learned]
            + [f"--content {p}" for p in args.content]
            + (["--only-new"] if args.only_new else [])
            + [f"--episodes {args.episodes}"]
            + ([f"--oracle-episodes {args.oracle_episodes}"] if args.oracle_episodes else [])
            + (
                [f"--points {args.points}"]
                if args.points
                else [f"--budgets {args.budgets}", f"--families {args.families}"]
            )
            + ([f"--allocators {args.allocators}"] if args.allocators else [])
            + (
                [f"--lookahead {args.lookahead}", f"--lookahead-keep {args.lookahead_keep}"]
                if args.lookahead
                else []
            )
            + [f"--workers {args.workers}"]
            + ([f"--section {args.section}"] if args.section != "allocation" else [])
            + ([f"--from-csv {args.from_csv}"] if args.from_csv else [])
        )
        learned = table[table.allocator.str.startswith("learned")]
        notes = (
            f"Oracles: {args.oracle_episodes} episodes per point (the first of the same seeds). "
            if args.oracle_episodes
            else ""
        )
        if len(learned):
            notes += (
                "Learned policies handed the split to the codec in "
                f"{learned.codec_split_share.mean():.0%} of steps (mean over points). "
            )
        figure = ""
        if (out / "allocation_episode.png").is_file():
            DOCS.mkdir(exist_ok=True)
            shutil.copyfile(out / "allocation_episode.png", DOCS / f"{args.section}_episode.png")
            figure = f"\n\n![one episode of the policy](docs/{args.section}_episode.png)"
        write_section(
            args.section,
            f"## {SECTIONS[args.section]}\n\n"
            f"Command: `{command}`. {machine_line()}\n"
            f"BC agent and task-aware NDPCA on {args.env}; traces scaled to the mean budget; "
            f"paired episodes per point (episode i: seed i). Success rate [95 % Wilson interval]. "
            f"{notes}\n\n" + markdown + figure,
        )


if __name__ == "__main__":
    main()
