"""Run a scenario's episodes and leave a results folder that survives interruption.

The run folder's layout and the machinery that fills it (workers, executors, atomic tables,
resume) are :mod:`bwgym.scenarios.run_folder`; this module plays the episodes.

Episode ``i`` always uses seed ``run.seed + i`` (env, link offset, loss, agent), so a run gives the
same table on one worker, on a process pool or on a Dask cluster, and a resumed run equals an
uninterrupted one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bwgym.agents.base import EpisodeResult, rollout
from bwgym.scenarios.config import ConfigError, Scenario, scenario_from_dict, scenario_to_dict
from bwgym.scenarios.run_folder import (
    RunFolder,
    RunResult,
    act_all,
    as_completed,
    check_run_folder,
    check_workers,
    episode_row,
    make_executor,
    step_row,
    worker_cache,
    worker_result,
)

__all__ = [
    "episode_seeds",
    "run_episodes",
    "run_scenario",
    "run_scenarios",
]


def episode_seeds(scenario: Scenario) -> list[int]:
    """The seed of every episode of the scenario, in episode order."""
    return [scenario.run.seed + i for i in range(scenario.run.episodes)]


# ------------------------------------------------------------------------------ one episode


def _env_and_agent(scenario: Scenario) -> tuple[Any, Any]:
    from bwgym.scenarios.factory import make_agent, make_env

    def build() -> tuple[Any, Any]:
        env = make_env(scenario)
        return env, make_agent(scenario, env)

    return worker_cache("", scenario, build)


def _run_one(scenario: Scenario, episode: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    env, agent = _env_and_agent(scenario)
    seed = scenario.run.seed + episode
    steps: list[dict[str, Any]] = []
    result = rollout(
        env, agent, seed, on_step=lambda i, _obs, _a, reward, info: steps.append(step_row(info, i, reward))
    )
    return episode_row(scenario, episode, result, steps)


def _vector_env_and_agents(scenario: Scenario) -> tuple[Any, list[Any]]:
    from bwgym.scenarios.factory import make_agent, make_vector_env

    def build() -> tuple[Any, list[Any]]:
        venv = make_vector_env(scenario)
        first = make_agent(scenario, venv.envs[0])
        if getattr(first, "memoryless", False):  # one network for all envs: less memory, warmer caches
            return venv, [first] * venv.num_envs
        return venv, [first] + [make_agent(scenario, env) for env in venv.envs[1:]]

    return worker_cache("vector:", scenario, build)


def _run_vector(scenario: Scenario, episodes: Sequence[int]) -> list[tuple[dict, list[dict]]]:
    """Episodes on ``run.num_envs`` envs stepped together; the rows :func:`_run_one` gives for each.

    Each env plays the next episode of the list as soon as its last one ends, reset with that
    episode's seed; its agent resets with the same seed, as in :func:`~bwgym.agents.base.rollout`.
    """
    venv, agents = _vector_env_and_agents(scenario)
    todo = list(episodes)[::-1]
    slots: list[tuple[int, EpisodeResult, list[dict[str, Any]]] | None] = [None] * venv.num_envs
    out: dict[int, tuple[dict, list[dict]]] = {}
    obs: dict[str, np.ndarray] = {}

    def start(free: list[int]) -> None:
        nonlocal obs
        mask = np.zeros(venv.num_envs, dtype=bool)
        seeds: list[int | None] = [None] * venv.num_envs
        for i in free:
            if todo:
                episode = todo.pop()
                slots[i], mask[i], seeds[i] = (
                    (episode, EpisodeResult(), []),
                    True,
                    scenario.run.seed + episode,
                )
        if not mask.any():
            return
        obs, _ = venv.reset(seed=seeds, options={"reset_mask": mask})
        for i in np.flatnonzero(mask):
            episode, result, steps = slots[i]
            if hasattr(agents[i], "reset"):
                agents[i].reset(seeds[i])
            result.info = venv.env_infos[i]
            steps.append(step_row(result.info, 0, 0.0))

    start(list(range(venv.num_envs)))
    while any(slot is not None for slot in slots):
        active = np.array([slot is not None for slot in slots])
        obs, rewards, terminations, truncations, _ = venv.step(
            act_all(agents, obs, active, venv.single_action_space), active
        )
        ended = []
        for i in np.flatnonzero(active):
            episode, result, steps = slots[i]
            info = venv.env_infos[i]
            result.ret += float(rewards[i])
            result.steps += 1
            result.info = info
            steps.append(step_row(info, result.steps, float(rewards[i])))
            if terminations[i] or truncations[i]:
                result.success = bool(info.get("is_success", False))
                out[episode] = episode_row(scenario, episode, result, steps)
                slots[i] = None
                ended.append(int(i))
        start(ended)
    return [out[e] for e in episodes]


def run_episodes(scenario_data: dict[str, Any], episodes: Sequence[int]) -> list[tuple[dict, list[dict]]]:
    """Run a batch of episodes of one scenario (the unit of work sent to a worker).

    Takes plain data, not a :class:`Scenario`, so that every executor can ship it. With
    ``run.num_envs > 1`` and a codec, the episodes run on that many envs stepped together
    (:class:`~bwgym.envs.bandwidth.VectorBandwidthLimited`): the same rows as one env at a time.
    """
    scenario = scenario_from_dict(scenario_data)
    if scenario.receivers:  # several receivers: their own episode loop
        from bwgym.scenarios.two_receivers.scenario import run_receiver_episodes

        return run_receiver_episodes(scenario, episodes)
    if scenario.run.num_envs > 1 and scenario.codec.name != "none" and len(episodes) > 1:
        return _run_vector(scenario, episodes)
    return [_run_one(scenario, e) for e in episodes]


def run_scenarios(
    runs: Sequence[tuple[Scenario, str | Path]],
    resume: bool = False,
    executor: Executor | Any | None = None,
    workers: int | None = None,
    progress: bool = True,
    plots: bool = True,
    desc: str | None = None,
) -> list[RunResult]:
    """Run several scenarios, each into its own run folder, through one executor.

    Every folder is checked (and created) before anything runs; then the episode batches of all
    runs are submitted to the one executor, in run order, and each finished batch is written to
    its run folder as it completes (``submit``/``as_completed``; the same code for a process pool
    and a Dask ``Client``).

    Args:
        runs: ``(scenario, out_dir)`` pairs; each folder must be new, or hold the same scenario
            with ``resume=True``.
        resume: continue the runs in their folders, skipping finished episodes.
        executor: anything with ``submit`` (a process pool, a Dask ``Client``); default: a pool of
            ``workers`` processes, shut down at the end.
        workers: how many workers the executor has (sets the batch size); default: the largest
            ``run.workers`` of the scenarios.
        progress: show one progress bar over all episodes.
        plots: draw each run's ``plots/*.png`` at the end.
        desc: the progress bar's label (default: the scenario's name, or ``"N scenarios"``).

    Returns:
        One :class:`RunResult` per run, in the order of ``runs``.

    Raises:
        ConfigError: a folder holds another run (see :func:`run_scenario`), a folder or a
            scenario appears twice, or more workers than :func:`check_workers` allows.
        WorkerDiedError: a worker process died (e.g. out of memory); ``resume=True`` continues.

    """
    if any(s.fleet is not None for s, _ in runs):  # fleets run round by round (bwgym.scenarios.fleet)
        return _run_with_fleets(runs, resume, executor, workers, progress, plots, desc)
    if executor is None:  # a pool of our own: bound the processes it starts before anything else
        check_workers(
            workers if workers is not None else max((s.run.workers for s, _ in runs), default=1),
            "run.workers" if workers is None else "workers",
        )
    _refuse_what_cannot_run(runs, resume)
    states = _open_folders(runs, resume)
    workers = max(1, workers if workers is not None else max((s.run.workers for s, _ in runs), default=1))
    own_executor = executor is None
    executor = executor or make_executor(workers)
    if desc is None:
        desc = runs[0][0].name if len(runs) == 1 else f"{len(runs)} scenarios"
    try:
        _play(states, executor, workers, _batch_size(states, workers), progress, desc)
    except BaseException:
        for state in states:
            state.close()
            state.release()
        raise
    finally:
        if own_executor and hasattr(executor, "shutdown"):
            executor.shutdown(cancel_futures=True)
    for state in states:
        state.close()
    return [state.finish(plots) for state in states]


def _run_with_fleets(
    runs: Sequence[tuple[Scenario, str | Path]], resume: bool, executor: Any, workers: int | None, *rest: Any
) -> list[RunResult]:
    """The fleets through :func:`~bwgym.scenarios.fleet.run_fleets`, the other runs as usual."""
    from bwgym.scenarios.fleet import run_fleets

    fleets = [j for j, (s, _) in enumerate(runs) if s.fleet is not None]
    others = [j for j in range(len(runs)) if j not in fleets]
    done = run_fleets([runs[j] for j in fleets], resume, executor, workers, *rest)
    results = dict(zip(fleets, done, strict=True))
    if others:
        done = run_scenarios([runs[j] for j in others], resume, executor, workers, *rest)
        results.update(zip(others, done, strict=True))
    return [results[j] for j in range(len(runs))]


def _refuse_what_cannot_run(runs: Sequence[tuple[Scenario, str | Path]], resume: bool) -> None:
    """Before anything is written: refuse shared folders, repeated scenarios, and what cannot run."""
    from bwgym.scenarios.factory import validate

    folders = [Path(out).resolve() for _, out in runs]
    if len(set(folders)) != len(folders):
        raise ConfigError("two runs share one output folder; give each run its own folder")
    datas = [yaml.safe_dump(scenario_to_dict(s), sort_keys=True) for s, _ in runs]
    if len(set(datas)) != len(datas):
        raise ConfigError("the same scenario appears twice among the runs; run it once")
    for scenario, out in runs:
        check_run_folder(scenario, Path(out), resume)
        if scenario.receivers:
            from bwgym.scenarios.two_receivers.scenario import validate_receivers

            validate_receivers(scenario)
        else:
            validate(scenario)


def _open_folders(runs: Sequence[tuple[Scenario, str | Path]], resume: bool) -> list[RunFolder]:
    """Lock and prepare every run folder; on a failure, release the ones already locked."""
    states: list[RunFolder] = []
    try:
        for scenario, out in runs:
            states.append(RunFolder(scenario, out, resume))
    except BaseException:
        for state in states:
            state.release()
        raise
    return states


def _batch_size(states: Sequence[RunFolder], workers: int) -> int:
    """Episodes per unit of work: enough to keep ``workers`` busy and to fill a run's vector env."""
    total_todo = sum(r.n_todo for r in states)
    batch = max(1, min(8, math.ceil(total_todo / (workers * 4)))) if workers > 1 else 1
    num_envs = max(r.scenario.run.num_envs for r in states)
    return max(batch, 2 * num_envs) if num_envs > 1 else batch


def _play(
    states: Sequence[RunFolder], executor: Any, workers: int, batch: int, progress: bool, desc: str
) -> None:
    """Submit every run's episodes in batches and record each batch in its folder as it completes.

    At most ``2 * workers`` batches are in flight, so memory does not grow with the episodes; one
    progress bar counts the episodes of all runs.
    """
    from tqdm import tqdm

    finished = sum(r.done for r in states)
    successes = sum(r.successes for r in states)
    bar = tqdm(
        total=sum(r.scenario.run.episodes for r in states),
        initial=finished,
        desc=desc,
        unit="ep",
        disable=not progress,
    )

    def batches() -> Iterator[tuple[RunFolder, list[int]]]:
        for state in states:
            while chunk := list(itertools.islice(state.todo, batch)):
                yield state, chunk

    work = batches()
    try:
        for state in states:
            state.open()
        pending: dict[Any, RunFolder] = {}
        for state, chunk in itertools.islice(work, max(2, 2 * workers)):
            pending[executor.submit(run_episodes, state.data, chunk)] = state
        while pending:
            future = next(iter(as_completed(list(pending))))
            state = pending.pop(future)
            for row, steps in worker_result(future):
                state.record(row, steps)
                finished += 1
                successes += row["success"]
                postfix = {"success": f"{successes / finished:.2f}"}
                if "mean_bandwidth_bps" in row:
                    postfix["kbps"] = f"{row['mean_bandwidth_bps'] / 1e3:.1f}"
                bar.set_postfix(postfix)
                bar.update(1)
            for next_state, chunk in itertools.islice(work, 1):
                pending[executor.submit(run_episodes, next_state.data, chunk)] = next_state
    finally:
        bar.close()


def run_scenario(
    scenario: Scenario,
    out_dir: str | Path,
    resume: bool = False,
    executor: Executor | Any | None = None,
    progress: bool = True,
    plots: bool = True,
) -> RunResult:
    """Run every episode of ``scenario`` not yet in ``out_dir`` and write the run folder.

    Args:
        scenario: the resolved scenario (``run.workers`` sets the pool when ``executor`` is None).
        out_dir: the run folder; it must be new, or hold the same scenario with ``resume=True``.
        resume: continue a run in ``out_dir``, skipping its finished episodes.
        executor: anything with ``submit`` (a process pool, a Dask ``Client``); default from workers.
        progress: show a progress bar.
        plots: draw ``plots/*.png`` at the end.
    """
    return run_scenarios(
        [(scenario, out_dir)], resume=resume, executor=executor, progress=progress, plots=plots
    )[0]
