"""Run a scenario's episodes and leave a results folder that survives interruption.

Layout of a run folder (DESIGN.md)::

    config.yaml        the resolved scenario
    episodes.parquet   one row per episode (written when the run finishes)
    steps.parquet      one row per step of every episode (same)
    summary.csv        success rate with its Wilson interval, bandwidth, bits, PSNR, drops
    plots/*.png        see :mod:`bwgym.scenarios.plots`
    tensorboard/       per-episode scalars and the scenario as text
    parts/             one file per finished episode, written atomically the moment it ends:
                       what ``--resume`` and :func:`read_episodes` read

Episode ``i`` always uses seed ``run.seed + i`` (env, link offset, loss, agent), so a run gives the
same table on one worker, on a process pool or on a Dask cluster, and a resumed run equals an
uninterrupted one.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures import as_completed as futures_as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from bwgym.agents.base import EpisodeResult, rollout
from bwgym.common.files import atomic_write_text
from bwgym.common.stats import wilson_interval
from bwgym.scenarios.config import (
    ConfigError,
    Scenario,
    read_scenario_file,
    scenario_from_dict,
    scenario_to_dict,
)

__all__ = [
    "MAX_WORKERS_PER_CORE",
    "RunResult",
    "WorkerDiedError",
    "check_workers",
    "episode_seeds",
    "run_episodes",
    "run_scenario",
    "run_scenarios",
    "summarize",
    "wilson_interval",
]

#: Most worker processes a run or sweep starts per CPU core: each worker holds ~450 MB (MuJoCo,
#: torch, a codec and an agent), and workers beyond the cores only queue while their memory adds up.
MAX_WORKERS_PER_CORE = 4


class WorkerDiedError(RuntimeError):
    """A worker process ended without a result (killed, e.g. by the kernel's out-of-memory killer)."""


def _cpu_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_workers(workers: int, what: str = "run.workers") -> None:
    """Raise :class:`ConfigError` unless ``1 <= workers <=`` :data:`MAX_WORKERS_PER_CORE` x cores here."""
    cores = _cpu_cores()
    top = MAX_WORKERS_PER_CORE * cores
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= top:
        raise ConfigError(
            f"{what}: invalid value {workers!r}; expected an integer in [1, {top}] "
            f"({MAX_WORKERS_PER_CORE} per core on {cores} cores, MAX_WORKERS_PER_CORE): each worker "
            f"is a process of ~450 MB"
        )


def episode_seeds(scenario: Scenario) -> list[int]:
    """The seed of every episode of the scenario, in episode order."""
    return [scenario.run.seed + i for i in range(scenario.run.episodes)]


# ------------------------------------------------------------------------------ one episode
_WORKER_CACHE: dict[str, tuple[Any, Any]] = {}


def _cached(kind: str, scenario: Scenario, build: Callable[[], tuple[Any, Any]]) -> tuple[Any, Any]:
    """The worker's env (or vector env) and agent(s) of ``scenario``, built on first use."""
    key = kind + yaml.safe_dump(scenario_to_dict(scenario), sort_keys=True)
    if key not in _WORKER_CACHE:
        for env, _ in _WORKER_CACHE.values():  # one scenario per process at a time
            env.close()
        _WORKER_CACHE.clear()
        _WORKER_CACHE[key] = build()
    return _WORKER_CACHE[key]


def _env_and_agent(scenario: Scenario) -> tuple[Any, Any]:
    from bwgym.scenarios.factory import make_agent, make_env

    def build() -> tuple[Any, Any]:
        env = make_env(scenario)
        return env, make_agent(scenario, env)

    return _cached("", scenario, build)


def _step_row(info: dict[str, Any], step: int, reward: float) -> dict[str, Any]:
    row: dict[str, Any] = {
        "step": step,
        "reward": float(reward),
        "is_success": bool(info.get("is_success", False)),
    }
    for key in ("bandwidth_bps", "budget_bits", "bits_sent_total", "lost", "over_budget"):
        if key in info:
            row[key] = info[key]
    for key in ("bits_sent", "allocation", "dropped", "distortion", "components"):
        for view, value in info.get(key, {}).items():
            row[f"{key}.{view}"] = value
    return row


def _run_one(scenario: Scenario, episode: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    env, agent = _env_and_agent(scenario)
    seed = scenario.run.seed + episode
    steps: list[dict[str, Any]] = []
    result = rollout(
        env, agent, seed, on_step=lambda i, _obs, _a, reward, info: steps.append(_step_row(info, i, reward))
    )
    return _episode_row(scenario, episode, result, steps)


def _episode_row(
    scenario: Scenario, episode: int, result: EpisodeResult, steps: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The episode's row of ``episodes.parquet`` and its step rows (kept when ``run.record_steps``)."""
    seed = scenario.run.seed + episode
    frame = pd.DataFrame(steps)
    row: dict[str, Any] = {
        "scenario": scenario.name,
        "episode": episode,
        "seed": seed,
        "success": result.success,
        "return": result.ret,
        "steps": result.steps,
        "codec": scenario.codec.name,
        "agent": scenario.agent.name,
    }
    if "bandwidth_bps" in frame:
        row["mean_bandwidth_bps"] = float(frame.bandwidth_bps.mean())
        row["min_bandwidth_bps"] = float(frame.bandwidth_bps.min())
        row["mean_budget_bits"] = float(frame.budget_bits.mean())
        row["mean_bits_sent"] = float(frame.bits_sent_total.mean())
        for column in frame.columns:
            if column.startswith("bits_sent."):
                row[f"mean_{column}"] = float(frame[column].mean())
            elif column.startswith("components."):
                row[f"mean_{column}"] = float(frame[column].mean())
            elif column.startswith("dropped."):
                row[f"drop_rate.{column.split('.', 1)[1]}"] = float(frame[column].mean())
            elif column.startswith("distortion."):
                finite = frame[column].replace(np.inf, np.nan)
                row[f"mean_psnr_db.{column.split('.', 1)[1]}"] = (
                    float(finite.mean()) if finite.notna().any() else math.inf
                )
    for record in steps:
        record.update(scenario=scenario.name, episode=episode, seed=seed)
    return row, (steps if scenario.run.record_steps else [])


def _vector_env_and_agents(scenario: Scenario) -> tuple[Any, list[Any]]:
    from bwgym.scenarios.factory import make_agent, make_vector_env

    def build() -> tuple[Any, list[Any]]:
        venv = make_vector_env(scenario)
        first = make_agent(scenario, venv.envs[0])
        if getattr(first, "memoryless", False):  # one network for all envs: less memory, warmer caches
            return venv, [first] * venv.num_envs
        return venv, [first] + [make_agent(scenario, env) for env in venv.envs[1:]]

    return _cached("vector:", scenario, build)


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
            steps.append(_step_row(result.info, 0, 0.0))

    start(list(range(venv.num_envs)))
    while any(slot is not None for slot in slots):
        active = np.array([slot is not None for slot in slots])
        obs, rewards, terminations, truncations, _ = venv.step(
            _act_all(agents, obs, active, venv.single_action_space), active
        )
        ended = []
        for i in np.flatnonzero(active):
            episode, result, steps = slots[i]
            info = venv.env_infos[i]
            result.ret += float(rewards[i])
            result.steps += 1
            result.info = info
            steps.append(_step_row(info, result.steps, float(rewards[i])))
            if terminations[i] or truncations[i]:
                result.success = bool(info.get("is_success", False))
                out[episode] = _episode_row(scenario, episode, result, steps)
                slots[i] = None
                ended.append(int(i))
        start(ended)
    return [out[e] for e in episodes]


def _act_all(agents: list[Any], obs: dict[str, np.ndarray], active: np.ndarray, space: Any) -> np.ndarray:
    """Each active env's action (zeros for the others).

    One memoryless agent whose network runs off the CPU acts on the whole batch at once; on CPU
    each env gets its own call, since a batched forward pass rounds differently and the table must
    not depend on ``run.num_envs``.
    """
    first = agents[0]
    device = getattr(getattr(first, "device", None), "type", "cpu")
    if all(a is first for a in agents) and hasattr(first, "act_batch") and device != "cpu":
        actions = np.asarray(first.act_batch(obs))
        actions[~active] = 0
        return actions
    zero = np.zeros(space.shape, space.dtype)
    return np.stack(
        [agents[i].act({k: v[i] for k, v in obs.items()}) if active[i] else zero for i in range(len(agents))]
    )


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


def _init_worker(parent_pid: int | None = None) -> None:
    # One thread per worker process: torch and BLAS would otherwise oversubscribe the cores.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    os.environ.setdefault("MUJOCO_GL", "egl")
    if parent_pid is not None:
        die_with_parent(parent_pid)


def die_with_parent(parent_pid: int) -> None:
    """End this process when ``parent_pid`` ends, even by ``kill -9`` (no orphaned workers).

    Linux delivers SIGKILL on the parent's death (``prctl(PR_SET_PDEATHSIG)``); elsewhere a daemon
    thread polls the parent once a second.
    """
    import signal
    import sys
    import threading

    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except OSError:
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="bwgym-parent-watch").start()


class InlineExecutor(Executor):
    """Runs each submitted call at once in this process (one worker, no pickling)."""

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:  # noqa: D102
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001  (re-raised by future.result())
            future.set_exception(exc)
        return future


def make_executor(workers: int) -> Executor:
    """An inline executor for one worker, else a process pool of spawned workers."""
    if workers <= 1:
        return InlineExecutor()
    import multiprocessing

    # spawn, not fork: a forked child inherits the parent's OpenGL/EGL state and can hang.
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(os.getpid(),),
    )


def as_completed(futures: Iterable[Any]) -> Iterable[Any]:
    """``as_completed`` for concurrent.futures and Dask futures alike."""
    futures = list(futures)
    if futures and not isinstance(futures[0], Future):
        from distributed import as_completed as dask_as_completed

        return dask_as_completed(futures, loop=futures[0].client.loop)  # works without a default client
    return futures_as_completed(futures)


# ------------------------------------------------------------------------------ run folder
def _atomic_parquet(frame: pd.DataFrame, path: Path) -> None:
    from bwgym.common.files import atomic_write

    atomic_write(path, lambda f: frame.to_parquet(f, index=False))


def _atomic_text(text: str, path: Path) -> None:
    atomic_write_text(path, text)


#: Marks a sweep folder (sweep.yaml) and a run folder (config.yaml): neither may be used as the other.
SWEEP_MARKER = "sweep.yaml"


def lock_folder(out_dir: Path, what: str) -> Any:
    """Hold an exclusive lock on ``out_dir/.lock`` until the returned file is closed.

    Raises:
        ConfigError: another process is writing into ``out_dir``.
    """
    import fcntl

    out_dir.mkdir(parents=True, exist_ok=True)
    handle = open(out_dir / ".lock", "a+")  # noqa: SIM115  (held open for the whole run)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError(
            f"{out_dir} is being written by {owner}; wait for it to finish or use another --out"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{what} (pid {os.getpid()})")
    handle.flush()
    return handle


def summarize(episodes: pd.DataFrame) -> pd.DataFrame:
    """One row per scenario: success rate and its 95 % Wilson interval, bandwidth, bits, PSNR, drops."""
    rows = []
    for name, group in episodes.groupby("scenario", sort=False):
        k, n = int(group.success.sum()), len(group)
        low, high = wilson_interval(k, n)
        row = {
            "scenario": name,
            "codec": group.codec.iloc[0],
            "agent": group.agent.iloc[0],
            "episodes": n,
            "success_rate": k / n,
            "success_ci_low": low,
            "success_ci_high": high,
            "mean_return": group["return"].mean(),
            "mean_steps": group.steps.mean(),
        }
        for column in group.columns:
            if column.startswith(
                (
                    "mean_bandwidth",
                    "min_bandwidth",
                    "mean_budget",
                    "mean_bits",
                    "drop_rate",
                    "mean_psnr",
                    "mean_components",
                    "mean_action_error",
                )
            ):
                row[column] = group[column].replace(np.inf, np.nan).mean()
        rows.append(row)
    return pd.DataFrame(rows)


def _comparable(scenario: Scenario) -> dict[str, Any]:
    # The worker count does not change the table, so a run may resume on another one.
    # Nor does the number of envs stepped together (episode i keeps seed run.seed + i).
    data = scenario_to_dict(scenario)
    data["run"] = {k: v for k, v in data["run"].items() if k not in ("workers", "num_envs")}
    return data


@dataclass(frozen=True)
class RunResult:
    """Where a run left its files, and its tables."""

    out_dir: Path
    episodes: pd.DataFrame
    summary: pd.DataFrame


def check_run_folder(scenario: Scenario, out_dir: Path, resume: bool) -> None:
    """Refuse a folder that holds a sweep, another run, or this run without ``resume``."""
    config_path = out_dir / "config.yaml"
    if (out_dir / SWEEP_MARKER).exists():
        raise ConfigError(f"{out_dir} holds a sweep; give the run its own --out")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file; expected a folder")
    if config_path.exists():
        try:
            # The scenario file's bounded reader (size, UTF-8, no aliases, depth, nodes, duplicate
            # keys): a run folder received from someone else is as untrusted as a scenario file.
            previous = scenario_from_dict(read_scenario_file(config_path))
        except ConfigError as exc:
            raise ConfigError(f"{out_dir} holds a damaged config.yaml ({exc}); use a new --out") from None
        if not resume:
            raise ConfigError(
                f"{out_dir} already holds a run of scenario {previous.name!r}; pass --resume to continue it "
                f"or --out with a new folder"
            )
        if _comparable(previous) != _comparable(scenario):
            raise ConfigError(
                f"{out_dir} holds a run of another configuration (scenario {previous.name!r}); "
                f"--resume needs the same scenario and settings; use a new --out"
            )


def _prepare_folder(scenario: Scenario, out_dir: Path, resume: bool) -> set[int]:
    config_path = out_dir / "config.yaml"
    text = yaml.safe_dump(scenario_to_dict(scenario), sort_keys=False)
    check_run_folder(scenario, out_dir, resume)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "parts").mkdir(exist_ok=True)
    _atomic_text(text, config_path)
    return {int(p.stem.split("_")[1]) for p in (out_dir / "parts").glob("episode_*.parquet")}


def _consolidate(out_dir: Path, pattern: str) -> pd.DataFrame:
    parts = sorted((out_dir / "parts").glob(pattern))
    frames = [pd.read_parquet(p) for p in parts]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_episodes(run_dir: str | Path) -> pd.DataFrame:
    """The table of every finished episode of a run folder, finished or interrupted.

    A finished run has ``episodes.parquet``; a killed one has only its ``parts/`` (one file per
    finished episode), which this consolidates the same way, sorted by episode.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "parts").is_dir() and not (run_dir / "episodes.parquet").is_file():
        raise FileNotFoundError(f"{run_dir} is not a bwgym run folder (no parts/ and no episodes.parquet)")
    episodes = _consolidate(run_dir, "episode_*.parquet")
    if episodes.empty and (run_dir / "episodes.parquet").is_file():
        return pd.read_parquet(run_dir / "episodes.parquet")
    return episodes.sort_values("episode", ignore_index=True) if not episodes.empty else episodes


class _Run:
    """One run folder being filled: its scenario, the episodes still to run, its TensorBoard writer."""

    def __init__(self, scenario: Scenario, out_dir: str | Path, resume: bool) -> None:
        self.scenario = scenario
        self.out_dir = Path(out_dir)
        self.data = scenario_to_dict(scenario)
        self.lock = lock_folder(self.out_dir, f"bwgym run {scenario.name}")
        try:
            done = _prepare_folder(scenario, self.out_dir, resume)
        except BaseException:
            self.lock.close()
            raise
        self.done = len(done)
        self.n_todo = scenario.run.episodes - len(done)
        # A generator, not a list: a run of millions of episodes streams through the executor.
        self.todo = (e for e in range(scenario.run.episodes) if e not in done)
        self.successes = (
            int(_consolidate(self.out_dir, "episode_*.parquet").get("success", pd.Series(dtype=bool)).sum())
            if done
            else 0
        )
        self.writer = None

    def open(self) -> None:
        self.writer = _tensorboard(self.out_dir, self.scenario)

    def record(self, row: dict[str, Any], steps: list[dict[str, Any]]) -> None:
        """Write one finished episode (atomically) and its TensorBoard scalars."""
        out_dir, episode = self.out_dir, row["episode"]
        _atomic_parquet(pd.DataFrame(steps), out_dir / "parts" / f"steps_{episode:05d}.parquet")
        _atomic_parquet(pd.DataFrame([row]), out_dir / "parts" / f"episode_{episode:05d}.parquet")
        self.successes += row["success"]
        writer = self.writer
        if writer is not None:
            writer.add_scalar("eval/success", float(row["success"]), episode)
            writer.add_scalar("eval/return", row["return"], episode)
            for key, value in row.items():
                if key.startswith(("mean_bandwidth", "mean_bits_sent")):
                    writer.add_scalar(f"bw/{key}", value, episode)
                elif key.startswith("mean_psnr") and math.isfinite(value):
                    writer.add_scalar(f"codec/{key}", value, episode)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def release(self) -> None:
        """Let other processes write into the folder again."""
        self.lock.close()

    def finish(self, plots: bool) -> RunResult:
        """Consolidate the parts into the run's tables (and plots)."""
        out_dir = self.out_dir
        episodes = read_episodes(out_dir)
        _atomic_parquet(episodes, out_dir / "episodes.parquet")
        steps = _consolidate(out_dir, "steps_*.parquet")
        if not steps.empty:
            steps = steps.sort_values(["episode", "step"], ignore_index=True)
            _atomic_parquet(steps, out_dir / "steps.parquet")
        summary = summarize(episodes)
        _atomic_text(summary.to_csv(index=False), out_dir / "summary.csv")
        if plots:
            from bwgym.scenarios import plots as plotting

            plotting.plot_run(out_dir, self.scenario)
        self.release()
        return RunResult(out_dir, episodes, summary)


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
    from tqdm import tqdm

    if any(s.fleet is not None for s, _ in runs):  # fleets run round by round (bwgym.scenarios.fleet)
        from bwgym.scenarios.fleet import run_fleets

        return run_fleets(runs, resume, executor, workers, progress, plots, desc)
    if executor is None:  # a pool of our own: bound the processes it starts before anything else
        check_workers(
            workers if workers is not None else max((s.run.workers for s, _ in runs), default=1),
            "run.workers" if workers is None else "workers",
        )
    folders = [Path(out).resolve() for _, out in runs]
    if len(set(folders)) != len(folders):
        raise ConfigError("two runs share one output folder; give each run its own folder")
    datas = [yaml.safe_dump(scenario_to_dict(s), sort_keys=True) for s, _ in runs]
    if len(set(datas)) != len(datas):
        raise ConfigError("the same scenario appears twice among the runs; run it once")
    from bwgym.scenarios.factory import validate

    for scenario, out in runs:  # refuse a folder or a part that cannot run before anything is written
        check_run_folder(scenario, Path(out), resume)
        if scenario.receivers:
            from bwgym.scenarios.two_receivers.scenario import validate_receivers

            validate_receivers(scenario)
        else:
            validate(scenario)
    states: list[_Run] = []
    try:
        for scenario, out in runs:
            states.append(_Run(scenario, out, resume))
    except BaseException:
        for state in states:
            state.release()
        raise
    workers = max(1, workers if workers is not None else max((s.run.workers for s, _ in runs), default=1))
    total_todo = sum(r.n_todo for r in states)
    batch = max(1, min(8, math.ceil(total_todo / (workers * 4)))) if workers > 1 else 1
    # vector runs step run.num_envs envs at once: give each batch enough episodes to fill them
    batch = max(
        batch, 2 * max(s.run.num_envs for s, _ in runs) if any(s.run.num_envs > 1 for s, _ in runs) else 1
    )
    own_executor = executor is None
    executor = executor or make_executor(workers)
    if desc is None:
        desc = runs[0][0].name if len(runs) == 1 else f"{len(runs)} scenarios"
    finished = sum(r.done for r in states)
    bar = tqdm(
        total=sum(r.scenario.run.episodes for r in states),
        initial=finished,
        desc=desc,
        unit="ep",
        disable=not progress,
    )
    successes = sum(r.successes for r in states)

    def batches() -> Iterator[tuple[_Run, list[int]]]:
        for state in states:
            while chunk := list(itertools.islice(state.todo, batch)):
                yield state, chunk

    try:
        for state in states:
            state.open()
        work = batches()
        pending: dict[Any, _Run] = {}
        in_flight = max(2, 2 * workers)  # bounded: memory does not grow with the number of episodes
        for state, chunk in itertools.islice(work, in_flight):
            pending[executor.submit(run_episodes, state.data, chunk)] = state
        while pending:
            future = next(iter(as_completed(list(pending))))
            state = pending.pop(future)
            for row, steps in _result(future):
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
    except BaseException:
        for state in states:
            state.close()
            state.release()
        raise
    finally:
        bar.close()
        if own_executor and hasattr(executor, "shutdown"):
            executor.shutdown(cancel_futures=True)
    for state in states:
        state.close()
    return [state.finish(plots) for state in states]


def _result(future: Any) -> Any:
    """``future.result()``, with a dead worker process reported as :class:`WorkerDiedError`."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        return future.result()
    except BrokenProcessPool:
        raise WorkerDiedError(
            "a worker process died without finishing its episodes (killed, probably out of memory: "
            "each worker holds ~450 MB; use fewer --workers); the finished episodes are on disk and "
            "`--resume` with the same --out completes it"
        ) from None


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


def _tensorboard(out_dir: Path, scenario: Scenario):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency; keep runs going without it all the same
        return None
    writer = SummaryWriter(str(out_dir / "tensorboard"))
    text = yaml.safe_dump(scenario_to_dict(scenario), sort_keys=False)
    writer.add_text("scenario", "```\n" + text + "\n```")
    return writer


def default_out_dir(scenario: Scenario, root: str | Path = "runs") -> Path:
    """``runs/<scenario>/<YYYYmmdd-HHMMSS>``."""
    return Path(root) / scenario.name / time.strftime("%Y%m%d-%H%M%S")
