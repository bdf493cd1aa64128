"""The run folder and the machinery of a run: workers, executors, atomic tables, resume.

Layout of a run folder (DESIGN.md)::

    config.yaml        the resolved scenario
    episodes.parquet   one row per episode (written when the run finishes)
    steps.parquet      one row per step of every episode (same)
    summary.csv        success rate with its Wilson interval, bandwidth, bits, PSNR, drops
    plots/*.png        see :mod:`bwgym.scenarios.plots`
    tensorboard/       per-episode scalars and the scenario as text
    parts/             one file per finished episode, written atomically the moment it ends:
                       what ``--resume`` and :func:`read_episodes` read

Every kind of run (single envs and vector envs in :mod:`bwgym.scenarios.runner`, fleets in
:mod:`bwgym.scenarios.fleet`, several receivers in :mod:`bwgym.scenarios.two_receivers.scenario`)
fills its folder through :class:`RunFolder` and the row helpers here, so their tables read alike.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures import as_completed as futures_as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from bwgym.agents.base import EpisodeResult
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
    "SWEEP_MARKER",
    "InlineExecutor",
    "RunFolder",
    "RunResult",
    "WorkerDiedError",
    "act_all",
    "as_completed",
    "atomic_parquet",
    "check_run_folder",
    "check_workers",
    "default_out_dir",
    "die_with_parent",
    "episode_row",
    "lock_folder",
    "make_executor",
    "read_episodes",
    "step_row",
    "summarize",
    "worker_cache",
    "worker_result",
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


_WORKER_CACHE: dict[str, tuple[Any, Any]] = {}


def worker_cache(kind: str, scenario: Scenario, build: Callable[[], tuple[Any, Any]]) -> tuple[Any, Any]:
    """The worker's env (or vector env) and agent(s) of ``scenario``, built on first use."""
    key = kind + yaml.safe_dump(scenario_to_dict(scenario), sort_keys=True)
    if key not in _WORKER_CACHE:
        for env, _ in _WORKER_CACHE.values():  # one scenario per process at a time
            env.close()
        _WORKER_CACHE.clear()
        _WORKER_CACHE[key] = build()
    return _WORKER_CACHE[key]


def step_row(info: dict[str, Any], step: int, reward: float) -> dict[str, Any]:
    """One row of ``steps.parquet`` from a step's ``info``."""
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


def episode_row(
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


def act_all(agents: list[Any], obs: dict[str, np.ndarray], active: np.ndarray, space: Any) -> np.ndarray:
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
def atomic_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` so that a reader sees the old file or the whole new one."""
    from bwgym.common.files import atomic_write

    atomic_write(path, lambda f: frame.to_parquet(f, index=False))


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


def comparable_config(scenario: Scenario) -> dict[str, Any]:
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
        if comparable_config(previous) != comparable_config(scenario):
            raise ConfigError(
                f"{out_dir} holds a run of another configuration (scenario {previous.name!r}); "
                f"--resume needs the same scenario and settings; use a new --out"
            )


def prepare_folder(scenario: Scenario, out_dir: Path, resume: bool) -> set[int]:
    config_path = out_dir / "config.yaml"
    text = yaml.safe_dump(scenario_to_dict(scenario), sort_keys=False)
    check_run_folder(scenario, out_dir, resume)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "parts").mkdir(exist_ok=True)
    atomic_write_text(config_path, text)
    return {int(p.stem.split("_")[1]) for p in (out_dir / "parts").glob("episode_*.parquet")}


def consolidate_parts(out_dir: Path, pattern: str) -> pd.DataFrame:
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
    episodes = consolidate_parts(run_dir, "episode_*.parquet")
    if episodes.empty and (run_dir / "episodes.parquet").is_file():
        return pd.read_parquet(run_dir / "episodes.parquet")
    return episodes.sort_values("episode", ignore_index=True) if not episodes.empty else episodes


class RunFolder:
    """One run folder being filled: its scenario, the episodes still to run, its TensorBoard writer."""

    def __init__(self, scenario: Scenario, out_dir: str | Path, resume: bool) -> None:
        self.scenario = scenario
        self.out_dir = Path(out_dir)
        self.data = scenario_to_dict(scenario)
        self.lock = lock_folder(self.out_dir, f"bwgym run {scenario.name}")
        try:
            done = prepare_folder(scenario, self.out_dir, resume)
        except BaseException:
            self.lock.close()
            raise
        self.done = len(done)
        self.n_todo = scenario.run.episodes - len(done)
        # A generator, not a list: a run of millions of episodes streams through the executor.
        self.todo = (e for e in range(scenario.run.episodes) if e not in done)
        self.successes = (
            int(
                consolidate_parts(self.out_dir, "episode_*.parquet")
                .get("success", pd.Series(dtype=bool))
                .sum()
            )
            if done
            else 0
        )
        self.writer = None

    def open(self) -> None:
        """Start its TensorBoard writer (in the process that records its episodes)."""
        self.writer = tensorboard_writer(self.out_dir, self.scenario)

    def record(self, row: dict[str, Any], steps: list[dict[str, Any]]) -> None:
        """Write one finished episode (atomically) and its TensorBoard scalars."""
        out_dir, episode = self.out_dir, row["episode"]
        atomic_parquet(pd.DataFrame(steps), out_dir / "parts" / f"steps_{episode:05d}.parquet")
        atomic_parquet(pd.DataFrame([row]), out_dir / "parts" / f"episode_{episode:05d}.parquet")
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
        """Close its TensorBoard writer."""
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
        atomic_parquet(episodes, out_dir / "episodes.parquet")
        steps = consolidate_parts(out_dir, "steps_*.parquet")
        if not steps.empty:
            steps = steps.sort_values(["episode", "step"], ignore_index=True)
            atomic_parquet(steps, out_dir / "steps.parquet")
        summary = summarize(episodes)
        atomic_write_text(out_dir / "summary.csv", summary.to_csv(index=False))
        if plots:
            from bwgym.scenarios import plots as plotting

            plotting.plot_run(out_dir, self.scenario)
        self.release()
        return RunResult(out_dir, episodes, summary)


def worker_result(future: Any) -> Any:
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


def tensorboard_writer(out_dir: Path, scenario: Scenario):
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
