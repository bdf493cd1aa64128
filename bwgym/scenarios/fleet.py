"""Fleet scenarios: N robots (or sensor groups) behind one shared link, run in rounds.

A scenario with a ``fleet:`` section runs :class:`~bwgym.envs.fleet.FleetBandwidthLimited`::

    trace: {source: lte_drive}          # the shared uplink, not scaled per member
    fleet:
      members: 16
      allocator: {name: max_min_fair}   # a registered fleet allocator and its options
      links: {3: {loss_prob: 0.2}}      # per-member link extras (else the scenario's link)

**Rounds.** ``run.episodes`` counts fleet episodes (rounds). Round ``r`` starts every member
together (the shared clock where member 0's seeded draw puts it); member ``i`` plays member-episode
``e = r * N + i`` with seed ``run.seed + e`` (its seed list: ``run.seed + i``, ``+ N``, ``+ 2N``, ...).
A member whose episode ends stops sending and frees its share for the others until the round's
last member ends. Rounds are independent, so a fleet run is reproducible on any number of workers
and ``--resume`` continues it round by round, like any run; a fleet of one member is the
single-robot scenario, row for row.

**Run folder** (besides the usual ``episodes.parquet``, one row per member-episode with ``member``
and ``round``, ``steps.parquet`` with ``fleet_share``, ``summary.csv``, ``plots/``, ``tensorboard/``):

==========================  =====================================================================
``fleet.parquet``           one row per (round, step, member): ``active``, ``share``,
                            ``budget_bits`` (the member's), ``bits_sent``, ``held``, and the
                            shared link's ``link_budget_bits`` and ``link_bandwidth_bps``
``fleet_members.csv``       per member: episodes, success rate with its Wilson interval, bits
                            sent, mean share, held rate (active steps it sent nothing)
``summary.csv``             adds ``members``, ``fleet_allocator``, ``jain_bits`` and
                            ``jain_success`` (Jain's fairness index of the members' bits and
                            success rates), ``bits_per_success``, ``held_rate``
``plots/fleet_shares.png``  each member's share over the first rounds (stacked) against the
                            shared budget, and each member's success rate
==========================  =====================================================================
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pandas is imported where tables are made: the scenario parser imports this module
    import pandas as pd

__all__ = [
    "distill_fleet_allocator",
    "fleet_summary",
    "jain_index",
    "make_allocate_fleet_env",
    "make_fleet",
    "member_scenario",
    "run_fleet_rounds",
    "run_fleets",
]


def member_scenario(scenario: Any, member: int) -> Any:
    """The scenario as member ``member`` runs it: its link extras applied, no ``fleet`` section."""
    extra = scenario.fleet.links.get(str(member))
    link = scenario.link
    if extra is not None:
        changes = {k: v for k, v in dataclasses.asdict(extra).items() if v is not None}
        link = dataclasses.replace(link, **changes)
    return dataclasses.replace(scenario, link=link, fleet=None)


def make_fleet(scenario: Any) -> Any:
    """The scenario's fleet: its members (one stateless codec shared by all) behind one link."""
    from bwgym.common.device import resolve_device
    from bwgym.common.registry import FLEET_ALLOCATORS, BuildContext
    from bwgym.envs.fleet import FleetBandwidthLimited
    from bwgym.scenarios.config import ConfigError
    from bwgym.scenarios.factory import build_part, make_agent, make_env, make_trace

    n = scenario.fleet.members
    first = make_env(member_scenario(scenario, 0))
    shared = first.codec if first.codec.stateless else None
    members = [first] + [make_env(member_scenario(scenario, i), shared) for i in range(1, n)]
    cfg = scenario.fleet.allocator
    context = BuildContext(
        env=first,
        env_id=scenario.env.id,
        codec=first.codec,
        checkpoint=cfg.checkpoint or None,
        device=resolve_device(scenario.run.device),
        make_agent=lambda: make_agent(scenario, first),
    )
    try:
        allocator = build_part("fleet.allocator", FLEET_ALLOCATORS, cfg.name, context, cfg.kwargs)
        return FleetBandwidthLimited(members, make_trace(scenario), allocator, allocator_name=cfg.name)
    except (TypeError, ValueError) as exc:
        for member in members:
            member.close()
        raise exc if isinstance(exc, ConfigError) else ConfigError(f"fleet: {exc}") from None


def make_allocate_fleet_env(scenario: Any, teacher: Any = None, **kwargs: Any) -> Any:
    """``bwgym/AllocateFleet-v0`` on the scenario's fleet and agents (:class:`~bwgym.envs.fleet_allocation.AllocateFleetEnv`).

    Args:
        scenario: a fleet scenario.
        teacher: a fleet allocator that divides the link instead of the action (demonstrations).
        **kwargs: the env's other arguments (``traces``, ``success_bonus``, ``history_steps``).
    """
    from bwgym.envs.fleet_allocation import AllocateFleetEnv

    fleet, agents = _build_fleet_and_agents(scenario)
    return AllocateFleetEnv(fleet, agents, teacher=teacher, **kwargs)


def distill_fleet_allocator(
    scenario: Any,
    out: str | Path,
    rounds: int = 4,
    epochs: int = 300,
    seed: int = 0,
    history_steps: int = 8,
    units: int = 8,
    hidden: int = 32,
) -> Path:
    """Fit a :class:`~bwgym.envs.fleet.FleetScorer` to the fleet oracle's divisions; write ``out/fleet_policy.ckpt``.

    Runs ``rounds`` rounds of ``bwgym/AllocateFleet-v0`` on the scenario's fleet with the oracle
    (:class:`~bwgym.envs.fleet.FleetOracle`, ``units`` parts) dividing the link, records each step's
    observation and the oracle's shares, and fits the scorer (cross-entropy of its softmax over the
    active members against the oracle's shares; Adam, full batch, ``epochs`` steps, seeded). The
    checkpoint records the observer's spec and this configuration; a scenario runs it as
    ``fleet: {allocator: {name: learned, checkpoint: OUT}}``.

    Raises:
        ValueError: not a fleet scenario, or an argument out of range.
    """
    import torch

    from bwgym.envs.fleet import POLICY_FILE, FleetOracle, FleetOracleOptions, FleetScorer
    from bwgym.scenarios.factory import make_agent

    if scenario.fleet is None:
        raise ValueError(f"scenario {scenario.name!r} has no fleet: section; give a fleet scenario")
    for label, value, low, high in (
        ("rounds", rounds, 1, 100_000),
        ("epochs", epochs, 1, 1_000_000),
        ("hidden", hidden, 1, 1024),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{label} is expected to be an integer in [{low}, {high}], got {value!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env = make_allocate_fleet_env(scenario, history_steps=history_steps)
    try:
        env.gate.teacher = FleetOracle(make_agent(scenario, env.fleet.envs[0]), FleetOracleOptions(units))
        inputs, targets, masks = [], [], []
        for r in range(rounds):
            obs, _ = env.reset(seed=seed + r)
            done = False
            while not done:
                active = obs["members"][:, 0] > 0.5
                next_obs, _, done, _, info = env.step(np.zeros(env.action_space.shape, np.float32))
                shares = np.where(active, info["shares"], 0.0)
                if shares.sum() > 0:
                    inputs.append(FleetScorer.inputs(obs))
                    targets.append(shares / shares.sum())
                    masks.append(active)
                obs = next_obs
        spec = env.observer.spec()
    finally:
        env.close()
    torch.manual_seed(seed)
    x = torch.as_tensor(np.stack(inputs), dtype=torch.float32)
    y = torch.as_tensor(np.stack(targets), dtype=torch.float32)
    mask = torch.as_tensor(np.stack(masks))
    net = torch.nn.Sequential(
        torch.nn.Linear(x.shape[-1], hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1)
    )
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(epochs):
        scores = net(x).squeeze(-1).masked_fill(~mask, -1e9)
        loss = -(y * torch.log_softmax(scores, dim=-1)).sum(-1).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    first, last = net[0], net[2]
    weights = {
        "w1": first.weight.detach().numpy(),
        "b1": first.bias.detach().numpy(),
        "w2": last.weight.detach().numpy().reshape(-1),
        "b2": last.bias.detach().numpy(),
    }
    config = {
        "scenario": scenario.name,
        "members": scenario.fleet.members,
        "rounds": rounds,
        "steps": len(inputs),
        "epochs": epochs,
        "seed": seed,
        "units": units,
        "hidden": hidden,
        "final_loss": float(loss.detach()),
    }
    return Path(FleetScorer(weights, spec).save(out / POLICY_FILE, config))


# ------------------------------------------------------------------------------ one round
def _build_fleet_and_agents(scenario: Any) -> tuple[Any, list[Any]]:
    """The scenario's fleet and one agent per member (one instance for all when it is memoryless)."""
    from bwgym.scenarios.factory import make_agent

    fleet = make_fleet(scenario)
    first = make_agent(scenario, fleet.envs[0])
    if getattr(first, "memoryless", False):
        return fleet, [first] * fleet.num_envs
    return fleet, [first] + [make_agent(scenario, env) for env in fleet.envs[1:]]


def _fleet_and_agents(scenario: Any) -> tuple[Any, list[Any]]:
    from bwgym.scenarios.run_folder import worker_cache

    return worker_cache("fleet:", scenario, lambda: _build_fleet_and_agents(scenario))


def _fleet_rows(fleet: Any, r: int, step: int) -> list[dict[str, Any]]:
    info = fleet.fleet_info
    return [
        {
            "round": r,
            "step": step,
            "member": i,
            "active": bool(info["active"][i]),
            "share": float(info["shares"][i]),
            "budget_bits": int(info["budgets"][i]),
            "bits_sent": int(info["bits_sent"][i]),
            "held": bool(info["held"][i]),
            "link_budget_bits": int(info["budget_bits"]),
            "link_bandwidth_bps": float(info["bandwidth_bps"]),
        }
        for i in range(fleet.num_envs)
    ]


def _run_round(scenario: Any, r: int) -> tuple[int, list[dict], list[dict], list[dict]]:
    """Round ``r``: every member's episode; its episode rows, step rows and fleet rows."""
    import pandas as pd

    from bwgym.agents.base import EpisodeResult
    from bwgym.scenarios.run_folder import act_all, episode_row, step_row

    fleet, agents = _fleet_and_agents(scenario)
    n = fleet.num_envs
    episodes = [r * n + i for i in range(n)]
    seeds = [scenario.run.seed + e for e in episodes]
    obs, _ = fleet.reset(seed=seeds)
    results, steps = [], []
    for i in range(n):
        if hasattr(agents[i], "reset"):
            agents[i].reset(seeds[i])
        results.append(EpisodeResult(info=fleet.env_infos[i]))
        steps.append(
            [step_row(fleet.env_infos[i], 0, 0.0) | {"fleet_share": fleet.env_infos[i]["fleet_share"]}]
        )
    fleet_rows = _fleet_rows(fleet, r, 0)
    active = np.ones(n, dtype=bool)
    rows: list[dict[str, Any]] = [{} for _ in range(n)]
    step = 0
    while active.any():
        actions = act_all(agents, obs, active, fleet.single_action_space)
        obs, rewards, terminations, truncations, _ = fleet.step(actions, active)
        step += 1
        fleet_rows += _fleet_rows(fleet, r, step)
        for i in np.flatnonzero(active):
            result, info = results[i], fleet.env_infos[i]
            result.ret += float(rewards[i])
            result.steps += 1
            result.info = info
            steps[i].append(
                step_row(info, result.steps, float(rewards[i])) | {"fleet_share": info["fleet_share"]}
            )
            if terminations[i] or truncations[i]:
                result.success = bool(info.get("is_success", False))
                active[i] = False
    frame = pd.DataFrame(fleet_rows)
    for i in range(n):
        member = frame[(frame.member == i) & frame.active]
        row, kept = episode_row(scenario, episodes[i], results[i], steps[i])
        row.update(
            member=i,
            round=r,
            fleet_allocator=scenario.fleet.allocator.name,
            mean_fleet_share=float(member.share.mean()),
            held_rate=float(member.held.mean()),
        )
        rows[i] = row
        steps[i] = kept
    return r, rows, [s for member_steps in steps for s in member_steps], fleet_rows


def run_fleet_rounds(
    scenario_data: dict[str, Any], rounds: Sequence[int]
) -> list[tuple[int, list, list, list]]:
    """Run rounds of a fleet scenario (the unit of work sent to a worker); plain data in, rows out."""
    from bwgym.scenarios.config import scenario_from_dict

    scenario = scenario_from_dict(scenario_data)
    return [_run_round(scenario, r) for r in rounds]


# ------------------------------------------------------------------------------ metrics
def jain_index(values: Sequence[float]) -> float:
    """Jain's fairness index ``(sum x)^2 / (n * sum x^2)``: 1 when all are equal, ``1/n`` when one has all.

    All zero counts as fair (1.0).

    Example:
        >>> jain_index([1, 1, 1, 1]), jain_index([4, 0, 0, 0])
        (1.0, 0.25)
    """
    x = np.asarray(values, dtype=np.float64)
    square = float(np.sum(x * x))
    return 1.0 if x.size == 0 or square == 0 else float(x.sum() ** 2 / (x.size * square))


def fleet_members(episodes: pd.DataFrame, fleet_steps: pd.DataFrame) -> pd.DataFrame:
    """Per member: episodes, success rate with its Wilson interval, bits sent, mean share, held rate."""
    import pandas as pd

    from bwgym.common.stats import wilson_interval

    rows = []
    for member, group in episodes.groupby("member", sort=True):
        k, n = int(group.success.sum()), len(group)
        low, high = wilson_interval(k, n)
        own = fleet_steps[(fleet_steps.member == member) & fleet_steps.active]
        rows.append(
            {
                "member": int(member),
                "episodes": n,
                "success_rate": k / n,
                "success_ci_low": low,
                "success_ci_high": high,
                "bits_sent": int(own.bits_sent.sum()),
                "mean_share": float(own.share.mean()) if len(own) else 0.0,
                "held_rate": float(own.held.mean()) if len(own) else 0.0,
            }
        )
    return pd.DataFrame(rows)


def fleet_summary(scenario: Any, episodes: pd.DataFrame, fleet_steps: pd.DataFrame) -> pd.DataFrame:
    """The run's ``summary.csv`` row with the fleet's columns (see the module docstring)."""
    from bwgym.scenarios.run_folder import summarize

    summary = summarize(episodes)
    members = fleet_members(episodes, fleet_steps)
    successes = int(episodes.success.sum())
    bits = int(fleet_steps.bits_sent.sum())
    active = fleet_steps[fleet_steps.active]
    summary["members"] = scenario.fleet.members
    summary["fleet_allocator"] = scenario.fleet.allocator.name
    summary["jain_bits"] = jain_index(members.bits_sent)
    summary["jain_success"] = jain_index(members.success_rate)
    summary["bits_per_success"] = bits / successes if successes else math.inf
    summary["held_rate"] = float(active.held.mean()) if len(active) else 0.0
    return summary


def plot_fleet(out_dir: Path, fleet_steps: pd.DataFrame, members: pd.DataFrame, max_rounds: int = 3) -> Path:
    """``plots/fleet_shares.png``: shares over the first rounds against the shared budget; success per member."""
    from bwgym.scenarios.plots import _figure

    fig = _figure(figsize=(10, 3.4))
    ax1, ax3 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.6, 1]})
    first = fleet_steps[fleet_steps["round"] < fleet_steps["round"].min() + max_rounds]
    shares = first.pivot_table(index=["round", "step"], columns="member", values="share").fillna(0.0)
    t = np.arange(len(shares))
    ax1.stackplot(t, shares.to_numpy().T, labels=[f"member {m}" for m in shares.columns], alpha=0.85)
    ax1.set(
        xlabel="fleet step (rounds back to back)",
        ylabel="share of the link",
        ylim=(0, 1),
        xlim=(0, max(1, len(t) - 1)),
    )
    budget = first.groupby(["round", "step"]).link_budget_bits.first()
    ax2 = ax1.twinx()
    ax2.plot(t, budget.to_numpy(), color="black", linewidth=0.8, label="shared budget")
    ax2.set(ylabel="shared budget (bits per step)", ylim=(0, None))
    if len(shares.columns) <= 8:
        ax1.legend(loc="upper left", fontsize=6, ncols=2)
    for start in np.flatnonzero(np.diff(shares.index.get_level_values("round").to_numpy())) + 1:
        ax1.axvline(start, color="grey", linestyle=":", linewidth=0.8)
    rate = members.success_rate.to_numpy()
    err = [rate - members.success_ci_low.to_numpy(), members.success_ci_high.to_numpy() - rate]
    ax3.bar(members.member, rate, color="tab:blue")
    ax3.errorbar(members.member, rate, yerr=np.maximum(err, 0), fmt="none", color="black", capsize=2)
    ax3.set(xlabel="member", ylabel="success rate", ylim=(0, 1))
    fig.tight_layout()
    path = out_dir / "plots" / "fleet_shares.png"
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


# ------------------------------------------------------------------------------ run folder
class _FleetRun:
    """One fleet run folder being filled round by round; its folder, lock and writer are any run's."""

    def __init__(self, scenario: Any, out_dir: str | Path, resume: bool) -> None:
        from bwgym.scenarios.run_folder import RunFolder

        self.run = RunFolder(scenario, out_dir, resume)
        self.scenario, self.out_dir, self.data = scenario, self.run.out_dir, self.run.data
        n = scenario.fleet.members
        parts = self.out_dir / "parts"
        finished = {int(p.stem.split("_")[1]) for p in parts.glob("episode_*.parquet")}
        done = {  # a round is done when all its episode rows are written (they are written last)
            r
            for r in range(scenario.run.episodes)
            if all(r * n + i in finished for i in range(n)) and (parts / f"fleet_{r:05d}.parquet").exists()
        }
        self.done = len(done)
        self.todo = (r for r in range(scenario.run.episodes) if r not in done)

    def record(self, r: int, rows: list[dict], steps: list[dict], fleet_rows: list[dict]) -> None:
        """Write one finished round: its step and fleet rows, then its episode rows (which mark it done)."""
        import pandas as pd

        from bwgym.scenarios.run_folder import atomic_parquet

        parts = self.out_dir / "parts"
        frame = pd.DataFrame(steps)
        for row in rows:
            e = row["episode"]
            own = frame[frame.episode == e] if not frame.empty else frame
            atomic_parquet(own.reset_index(drop=True), parts / f"steps_{e:05d}.parquet")
        atomic_parquet(pd.DataFrame(fleet_rows), parts / f"fleet_{r:05d}.parquet")
        for row in rows:
            atomic_parquet(pd.DataFrame([row]), parts / f"episode_{row['episode']:05d}.parquet")
        writer = self.run.writer
        if writer is not None:
            members = pd.DataFrame(rows)
            writer.add_scalar("fleet/success", float(members.success.mean()), r)
            writer.add_scalar("fleet/jain_bits", jain_index(members.mean_bits_sent * members.steps), r)
            writer.add_scalar("fleet/held_rate", float(members.held_rate.mean()), r)

    def finish(self, plots: bool) -> Any:
        """Consolidate the parts into the run's tables, the fleet's tables and plots."""
        from bwgym.common.files import atomic_write_text
        from bwgym.scenarios.run_folder import (
            RunResult,
            atomic_parquet,
            consolidate_parts,
            read_episodes,
        )

        out_dir = self.out_dir
        episodes = read_episodes(out_dir)
        atomic_parquet(episodes, out_dir / "episodes.parquet")
        steps = consolidate_parts(out_dir, "steps_*.parquet")
        if not steps.empty:
            atomic_parquet(
                steps.sort_values(["episode", "step"], ignore_index=True), out_dir / "steps.parquet"
            )
        fleet_steps = consolidate_parts(out_dir, "fleet_*.parquet")
        fleet_steps = fleet_steps.sort_values(["round", "step", "member"], ignore_index=True)
        atomic_parquet(fleet_steps, out_dir / "fleet.parquet")
        members = fleet_members(episodes, fleet_steps)
        atomic_write_text(out_dir / "fleet_members.csv", members.to_csv(index=False))
        summary = fleet_summary(self.scenario, episodes, fleet_steps)
        atomic_write_text(out_dir / "summary.csv", summary.to_csv(index=False))
        if plots:
            from bwgym.scenarios import plots as plotting

            plotting.plot_run(out_dir, self.scenario)
            plot_fleet(out_dir, fleet_steps, members)
        self.run.release()
        return RunResult(out_dir, episodes, summary)


def run_fleets(
    runs: Sequence[tuple[Any, str | Path]],
    resume: bool = False,
    executor: Any = None,
    workers: int | None = None,
    progress: bool = True,
    plots: bool = True,
    desc: str | None = None,
) -> list[Any]:
    """Run fleet scenarios, each into its own run folder (``run_scenarios`` sends its fleets here).

    The fleets run round by round (one round is the unit of work sent to a worker). Returns one
    :class:`~bwgym.scenarios.run_folder.RunResult` per run, in the order of ``runs``.
    """
    from bwgym.scenarios.factory import validate
    from bwgym.scenarios.run_folder import check_run_folder, check_workers, make_executor

    results: dict[int, Any] = {}
    fleets = list(enumerate(runs))
    workers_given = workers
    workers = workers if workers is not None else max(s.run.workers for _, (s, _) in fleets)
    if executor is None:
        check_workers(workers, "run.workers" if workers_given is None else "workers")
    for _, (scenario, out) in fleets:  # refuse what cannot run before anything is written
        check_run_folder(scenario, Path(out), resume)
        validate(member_scenario(scenario, 0))
    own_executor = executor is None
    executor = executor or make_executor(workers)
    try:
        for j, (scenario, out) in fleets:
            state = _FleetRun(scenario, out, resume)
            try:
                state.run.open()
                _run_rounds(state, executor, workers, progress, desc or scenario.name)
            except BaseException:
                state.run.release()
                raise
            finally:
                state.run.close()
            results[j] = state.finish(plots)
    finally:
        if own_executor and hasattr(executor, "shutdown"):
            executor.shutdown(cancel_futures=True)
    return [results[j] for j in range(len(runs))]


def _run_rounds(state: _FleetRun, executor: Any, workers: int, progress: bool, desc: str) -> None:
    """Submit the run's rounds to ``executor`` (at most ``2 * workers`` in flight) and record each as it ends."""
    from tqdm import tqdm

    from bwgym.scenarios.run_folder import as_completed, worker_result

    bar = tqdm(
        total=state.scenario.run.episodes, initial=state.done, desc=desc, unit="round", disable=not progress
    )
    rounds = ([r] for r in state.todo)
    pending = {
        executor.submit(run_fleet_rounds, state.data, chunk)
        for chunk in itertools.islice(rounds, max(2, 2 * workers))
    }
    try:
        while pending:
            future = next(iter(as_completed(list(pending))))
            pending.remove(future)
            for r, rows, steps, fleet_rows in worker_result(future):
                state.record(r, rows, steps, fleet_rows)
                bar.update(1)
            pending.update(
                executor.submit(run_fleet_rounds, state.data, chunk) for chunk in itertools.islice(rounds, 1)
            )
    finally:
        bar.close()
