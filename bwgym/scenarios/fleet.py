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
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pandas is imported where tables are made: the scenario parser imports this module
    import pandas as pd

__all__ = [
    "collect_fleet_oracle_data",
    "distill_fleet_allocator",
    "evaluate_fleet_error_model",
    "fit_fleet_error_model",
    "fleet_summary",
    "jain_index",
    "make_allocate_fleet_env",
    "make_fleet",
    "member_scenario",
    "run_fleet_rounds",
    "run_fleets",
    "search_fleet_allocator",
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


#: The recorded oracle data in a training run folder (``--distill-data`` fits it again).
DISTILL_DATA = "fleet_distill.npz"
#: Fleet allocators that may drive the fleet while the oracle labels (``behaviour``).
BEHAVIOURS = ("oracle", "scenario", "equal")


class _Labeller:
    """The teacher of ``AllocateFleet-v0`` while recording: the oracle scores every step, ``behaviour`` divides."""

    def __init__(self, oracle: Any) -> None:
        self.oracle, self.behaviour = oracle, oracle

    def reset(self) -> None:
        self.oracle.reset()
        if self.behaviour is not self.oracle:
            self.behaviour.reset()

    def __call__(self, state: Any) -> np.ndarray:
        shares = self.oracle(state)
        return shares if self.behaviour is self.oracle else self.behaviour(state)


def collect_fleet_oracle_data(
    scenario: Any,
    rounds: int,
    seed: int = 0,
    units: int = 8,
    history_steps: int = 8,
    behaviour: Sequence[str] = ("oracle", "scenario"),
) -> dict[str, np.ndarray]:
    """The fleet oracle's candidate scores on ``rounds`` rounds of the scenario's fleet.

    Round ``r`` (seed ``seed + r`` of ``bwgym/AllocateFleet-v0``) is divided by
    ``behaviour[r % len(behaviour)]`` (``oracle``; ``scenario``: the scenario's fleet allocator;
    ``equal``) while the oracle scores every step, so the data covers the states a learned
    allocator meets besides the oracle's own. One row per (step, active member): ``inputs`` (the
    observation before the step, :meth:`~bwgym.envs.fleet.FleetScorer.inputs`), ``bits`` and
    ``errors`` (the oracle's candidate budgets: its ladder, then the equal share, and the member's
    action distance at each), ``served`` (whether the oracle gave it bits), ``round``, ``step``
    and ``member``.
    """
    from bwgym.envs.fleet import FleetOracle, FleetOracleOptions, FleetScorer, make_fleet_allocator
    from bwgym.scenarios.factory import make_agent

    unknown = sorted(set(behaviour) - set(BEHAVIOURS))
    if unknown or not behaviour:
        raise ValueError(f"behaviour {list(behaviour)}: expected names from {list(BEHAVIOURS)}")
    env = make_allocate_fleet_env(scenario, history_steps=history_steps)
    rows: dict[str, list[Any]] = {
        k: [] for k in ("inputs", "bits", "errors", "served", "round", "step", "member")
    }
    try:
        oracle = FleetOracle(make_agent(scenario, env.fleet.envs[0]), FleetOracleOptions(units))
        cfg = scenario.fleet.allocator
        drivers = {
            "oracle": oracle,
            "scenario": oracle
            if cfg.name == "oracle"
            else make_fleet_allocator(cfg.name, options=cfg.kwargs),
            "equal": make_fleet_allocator("equal"),
        }
        labeller = _Labeller(oracle)
        env.gate.teacher = labeller
        for r in range(rounds):
            labeller.behaviour = drivers[behaviour[r % len(behaviour)]]
            obs, _ = env.reset(seed=seed + r)
            done, step = False, 0
            while not done:
                x = FleetScorer.inputs(obs)
                obs, _, done, _, _ = env.step(np.zeros(env.action_space.shape, np.float32))
                step += 1
                candidates = oracle.last_candidates
                if not candidates:
                    continue
                for j, i in enumerate(candidates["members"]):
                    errors = candidates["errors"][:, j]
                    rows["inputs"].append(x[i])
                    rows["bits"].append(candidates["bits"])
                    rows["errors"].append(errors)
                    rows["served"].append(bool(candidates["served"][j]))
                    rows["round"].append(r)
                    rows["step"].append(step)
                    rows["member"].append(int(i))
        spec = env.observer.spec()
    finally:
        env.close()
    data = {k: np.asarray(v) for k, v in rows.items()}
    data["spec"] = np.array(json.dumps(spec))
    data["units"] = np.array(units)
    return data


def fit_fleet_error_model(
    data: dict[str, np.ndarray],
    hidden: int = 64,
    epochs: int = 60,
    seed: int = 0,
    rounds: np.ndarray | None = None,
) -> Any:
    """A :class:`~bwgym.envs.fleet.FleetErrorModel` fitted (MSE, Adam, seeded) to the rows of ``rounds`` (all: None)."""
    import torch

    from bwgym.envs.fleet import FleetErrorModel

    keep = np.ones(len(data["round"]), bool) if rounds is None else np.isin(data["round"], rounds)
    inputs = FleetErrorModel.design(data["inputs"][keep], data["bits"][keep])
    targets = data["errors"][keep].reshape(-1, 1)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    xt = torch.as_tensor(inputs, dtype=torch.float32)
    yt = torch.as_tensor(targets, dtype=torch.float32)
    net = torch.nn.Sequential(
        torch.nn.Linear(xt.shape[1], hidden),
        torch.nn.Tanh(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.Tanh(),
        torch.nn.Linear(hidden, 1),
    )
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, max(1, epochs))
    batch = 1024
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(xt), batch):
            pick = order[start : start + batch]
            loss = torch.nn.functional.mse_loss(net(xt[pick]), yt[pick])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        schedule.step()
    layers = [
        (layer.weight.detach().numpy().copy(), layer.bias.detach().numpy().copy())
        for layer in net
        if isinstance(layer, torch.nn.Linear)
    ]
    return FleetErrorModel(layers, json.loads(str(data["spec"])), int(data["units"]))


def evaluate_fleet_error_model(
    model: Any, data: dict[str, np.ndarray], rounds: np.ndarray
) -> dict[str, float]:
    """One-step scores of ``model`` on the recorded ``rounds`` (held out from its fit).

    ``r2``: of its predicted errors; ``error_equal`` / ``error_learned`` / ``error_oracle``: the
    members' mean measured action distance per step under equal shares, under the division the
    model picks (the oracle's rule on its predictions) and under the oracle's; ``served_agreement``:
    the fraction of member-steps where the model and the oracle agree on who gets bits.
    """
    from bwgym.envs.fleet import least_total, oracle_ladder

    keep = np.isin(data["round"], rounds)
    errors = data["errors"][keep]
    predicted = model.predict(data["inputs"][keep], data["bits"][keep])
    residual = float(np.mean((predicted - errors) ** 2))
    r2 = 1.0 - residual / max(float(np.var(errors)), 1e-12)
    ladder = oracle_ladder(model.units)
    totals = {"equal": 0.0, "learned": 0.0, "oracle": 0.0}
    agree, count = 0, 0
    steps = np.stack([data["round"][keep], data["step"][keep]], axis=1)
    served = data["served"][keep]
    for key in np.unique(steps, axis=0):
        rows = np.flatnonzero((steps == key).all(axis=1))
        true, guess = errors[rows], predicted[rows]
        totals["equal"] += float(true[:, -1].sum())
        parts, best = least_total({u: true[:, j] for j, u in enumerate(ladder)}, ladder, model.units)
        totals["oracle"] += min(best, float(true[:, -1].sum()))
        parts, best = least_total({u: guess[:, j] for j, u in enumerate(ladder)}, ladder, model.units)
        if float(guess[:, -1].sum()) <= best:
            totals["learned"] += float(true[:, -1].sum())
            chosen = np.ones(len(rows), bool)
        else:
            totals["learned"] += float(sum(true[m, ladder.index(p)] for m, p in enumerate(parts)))
            chosen = np.asarray(parts) > 0
        agree += int((chosen == served[rows]).sum())
        count += len(rows)
    return {
        "r2": r2,
        **{f"error_{k}": v / max(count, 1) for k, v in totals.items()},
        "served_agreement": agree / max(count, 1),
    }


def _check_training(scenario: Any, bounds: Sequence[tuple[str, Any, int, int]]) -> None:
    """Refuse a scenario without a fleet, or an argument ``(label, value, low, high)`` out of range."""
    if scenario.fleet is None:
        raise ValueError(f"scenario {scenario.name!r} has no fleet: section; give a fleet scenario")
    for label, value, low, high in bounds:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{label} is expected to be an integer in [{low}, {high}], got {value!r}")


def distill_fleet_allocator(
    scenario: Any,
    out: str | Path,
    rounds: int = 4,
    epochs: int = 60,
    seed: int = 0,
    history_steps: int = 8,
    units: int = 8,
    hidden: int = 64,
    data: str | Path | None = None,
    behaviour: Sequence[str] = ("oracle", "scenario"),
) -> Path:
    """Fit a :class:`~bwgym.envs.fleet.FleetErrorModel` to the fleet oracle's candidate scores; write ``out/fleet_policy.ckpt``.

    Records ``rounds`` rounds of the oracle's scores (:func:`collect_fleet_oracle_data`, written to
    ``out/fleet_distill.npz``; or reads ``data``, such a file), fits the model on the first 80 % of
    the rounds and scores it on the rest (:func:`evaluate_fleet_error_model`), then fits it on all
    rounds. The checkpoint records the observer's spec, this configuration and the held-out
    scores; a scenario runs it as ``fleet: {allocator: {name: learned, checkpoint: OUT}}``.

    Raises:
        ValueError: not a fleet scenario, or an argument out of range.
    """
    from bwgym.envs.fleet import POLICY_FILE

    _check_training(
        scenario,
        (("rounds", rounds, 1, 100_000), ("epochs", epochs, 1, 1_000_000), ("hidden", hidden, 1, 1024)),
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if data is not None:
        with np.load(data, allow_pickle=False) as stored:
            recorded = {k: stored[k] for k in stored.files}
    else:
        recorded = collect_fleet_oracle_data(scenario, rounds, seed, units, history_steps, behaviour)
        np.savez_compressed(out / DISTILL_DATA, **recorded)
    seen = np.unique(recorded["round"])
    cut = max(1, int(round(0.8 * len(seen))))
    held_out = (
        evaluate_fleet_error_model(
            fit_fleet_error_model(recorded, hidden, epochs, seed, seen[:cut]), recorded, seen[cut:]
        )
        if len(seen) > 1
        else {}
    )
    model = fit_fleet_error_model(recorded, hidden, epochs, seed)
    config = {
        "scenario": scenario.name,
        "members": scenario.fleet.members,
        "rounds": int(len(seen)),
        "rows": int(len(recorded["round"])),
        "behaviour": list(behaviour),
        "data": str(data) if data is not None else DISTILL_DATA,
        "epochs": epochs,
        "seed": seed,
        "units": int(recorded["units"]),
        "hidden": hidden,
        "held_out_rounds": held_out,
    }
    return Path(model.save(out / POLICY_FILE, config))


#: Member features a searched scorer weighs (:class:`~bwgym.envs.fleet.FleetObserver`'s names).
SEARCH_FEATURES = (
    "frame_age",
    "drop_rate",
    "progress",
    "previous_share",
    "previous_fill",
    "psnr",
    "grasped",
    "lift",
)


def search_scorer(theta: np.ndarray, spec: dict[str, Any]) -> Any:
    """The :class:`~bwgym.envs.fleet.FleetScorer` of search parameters ``theta``.

    A learned need ``theta[:8] . f_i`` over :data:`SEARCH_FEATURES` ranks the active members and
    the best fraction of them share the step equally: the ``state`` rule's form (need = frame age
    + drops, top 6 of 8) with every weight and the fraction learned. The fraction depends on the
    bits per active member (:meth:`~bwgym.envs.fleet.FleetScorer.fraction_at`): ``theta[8]``
    (clipped to [0.25, 1]) when bits are plentiful, rising to 1 (equal shares) below
    ``exp(theta[9])`` bits per member (clipped to [5, 5000]) at slope ``|theta[10]|``. A
    ``theta`` of 9 values (the first search's form) has a constant fraction.
    """
    from bwgym.envs.fleet import FleetScorer

    features = list(spec["features"])
    w1 = np.zeros((1, len(features) + int(spec["history_steps"])))
    for k, name in enumerate(SEARCH_FEATURES):
        w1[0, features.index(name)] = theta[k]
    weights = {"w1": w1, "b1": [0.0], "w2": [1.0], "b2": [0.0]}
    fraction = float(np.clip(theta[len(SEARCH_FEATURES)], 0.25, 1.0))
    if len(theta) <= len(SEARCH_FEATURES) + 1:
        return FleetScorer(weights, spec, fraction)
    mid_bits = float(np.exp(np.clip(theta[-2], math.log(5.0), math.log(5000.0))))
    return FleetScorer(weights, spec, fraction, mid_bits, float(abs(theta[-1])))


#: Where the search's budget term starts: the fraction halfway to 1 at 100 bits per member, slope 3.
SERVE_MID_BITS_START, SERVE_SLOPE_START = 100.0, 3.0


def state_rule_theta() -> np.ndarray:
    """Search parameters that divide as the ``state`` rule with ``top_k`` 6 does for 8 members.

    With plentiful bits: the budget term (:data:`SERVE_MID_BITS_START`) serves more members
    below about 200 bits per member.
    """
    theta = np.zeros(len(SEARCH_FEATURES) + 3)
    theta[SEARCH_FEATURES.index("frame_age")] = theta[SEARCH_FEATURES.index("drop_rate")] = 1.0
    theta[len(SEARCH_FEATURES)] = 0.75
    theta[-2:] = math.log(SERVE_MID_BITS_START), SERVE_SLOPE_START
    return theta


#: Bits per robot per step the search's training traces are drawn from (the benchmark's 60-240 inside).
TRAINING_BITS_PER_ROBOT = (40.0, 260.0)


def training_traces(scenario: Any, bits_per_robot: tuple[float, float] = TRAINING_BITS_PER_ROBOT) -> Any:
    """A trace family for training a fleet allocator: ``rng -> trace`` at a drawn level per robot.

    Half the rounds run the scenario's own trace (its source), half a log-normal walk; either is
    scaled so its mean is the drawn bits per robot per step times the fleet size. Neither is a
    family the fleet benchmark holds out (``walk_100kbps``, ``gilbert_elliott``).
    """
    from bwgym.scenarios.factory import make_trace
    from bwgym.traces import generate

    own = make_trace(dataclasses.replace(scenario, trace=dataclasses.replace(scenario.trace, scale=1.0)))
    n, step_s = scenario.fleet.members, 0.04

    def draw(rng: np.random.Generator) -> Any:
        mean_bps = float(rng.uniform(*bits_per_robot)) * n / step_s
        if rng.random() < 0.5:
            return own.scale(mean_bps / own.mean_bps)
        seed = int(rng.integers(0, 2**31 - 1))
        return generate("lognormal_walk", mean_bps=mean_bps, duration_s=120.0, seed=seed)

    return draw


def search_fleet_allocator(
    scenario: Any,
    out: str | Path,
    generations: int = 8,
    population: int = 10,
    rounds: int = 3,
    elite: int = 3,
    seed: int = 0,
    history_steps: int = 8,
    log: Any = print,
) -> Path:
    """Train a fleet allocator for fleet success on ``bwgym/AllocateFleet-v0`` by the cross-entropy method.

    The policy is :func:`search_scorer` (the best-ranked fraction of the members by a learned
    need share the step). Each generation draws ``population`` parameter vectors from a diagonal
    Gaussian (the first is its mean), plays each for the same ``rounds`` rounds (the same member
    seeds and traces, :func:`training_traces`, so candidates are compared on equal terms), and
    refits the Gaussian to the ``elite`` with the most member successes (task reward breaks ties).
    The mean starts at the ``state`` rule (:func:`state_rule_theta`; weights spread 0.5, the
    fraction 0.1, the budget term's log midpoint 0.5 and slope 1). Candidates divide as the
    ``learned`` allocator does (:meth:`~bwgym.envs.fleet.FleetScorer.division`). Writes ``out/fleet_policy.ckpt`` (the last mean) and ``out/search.csv`` (every
    candidate's score).
    """
    from bwgym.envs.fleet import POLICY_FILE, scores_to_action

    _check_training(
        scenario,
        (
            ("generations", generations, 1, 10_000),
            ("population", population, 2, 1_000),
            ("rounds", rounds, 1, 10_000),
            ("elite", elite, 1, population),
        ),
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    mean = state_rule_theta()
    size = mean.size
    std = np.full(size, 0.5)
    std[len(SEARCH_FEATURES)], std[-1] = 0.1, 1.0
    records = []
    env = make_allocate_fleet_env(scenario, traces=training_traces(scenario), history_steps=history_steps)
    try:
        spec = env.observer.spec()
        for g in range(generations):
            candidates = [mean] + [mean + std * rng.standard_normal(size) for _ in range(population - 1)]
            scores = []
            for c, theta in enumerate(candidates):
                scorer = search_scorer(theta, spec)
                successes, reward = 0, 0.0
                for r in range(rounds):
                    obs, _ = env.reset(seed=10_000_000 + seed * 100_000 + g * rounds + r)
                    done = False
                    while not done:
                        active = obs["members"][:, 0] > 0.5
                        division = scorer.division(obs, active)  # what `learned` sends, fraction included
                        obs, step_reward, done, _, info = env.step(scores_to_action(division, active))
                        successes += info["successes"]
                        reward += float(step_reward)
                scores.append((successes, reward))
                records.append(
                    {"generation": g, "candidate": c, "successes": successes, "reward": reward}
                    | {f"theta_{k}": float(v) for k, v in enumerate(theta)}
                )
            order = sorted(range(population), key=lambda c: scores[c], reverse=True)[:elite]
            best = np.stack([candidates[c] for c in order])
            mean, std = best.mean(axis=0), np.maximum(best.std(axis=0), 0.05)
            log(
                f"generation {g}: mean successes {np.mean([s for s, _ in scores]):.1f}, "
                f"the mean's {scores[0][0]}, best {scores[order[0]][0]} of {rounds * env.fleet.num_envs}"
            )
    finally:
        env.close()
    import pandas as pd

    pd.DataFrame(records).to_csv(out / "search.csv", index=False)
    config = {
        "scenario": scenario.name,
        "members": scenario.fleet.members,
        "method": "cross-entropy search on AllocateFleet-v0 (fleet success)",
        "generations": generations,
        "population": population,
        "rounds": rounds,
        "elite": elite,
        "seed": seed,
        "features": list(SEARCH_FEATURES),
        "theta": mean.tolist(),
        "training_bits_per_robot": list(TRAINING_BITS_PER_ROBOT),
    }
    return Path(search_scorer(mean, spec).save(out / POLICY_FILE, config))


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
