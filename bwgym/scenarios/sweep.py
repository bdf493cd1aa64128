"""Sweeps: the cross product of scenario settings, on a local process pool or a Dask cluster.

A grid names dotted scenario keys and their values::

    bwgym sweep fleet_lte_jpeg --grid trace.scale=0.01,0.03,0.1 --grid codec.name=jpeg,raw

Each grid point is a scenario of its own, named after the base scenario and its values
(``fleet_lte_jpeg__trace.scale=0.01__codec.name=jpeg``), with its own run folder under the sweep
folder, so ``--resume`` continues every point where it stopped::

    <sweep folder>/
      sweep.yaml          the base scenario, the grid and the overrides
      sweep.parquet/.csv  one summary row per grid point (grid values as columns)
      plots/success_vs_<key>.png
      <point name>/       a run folder (see :mod:`bwgym.scenarios.runner`); its plots only
                          with ``--point-plots`` (they take seconds per point)

All points' episode batches go to ONE executor through the same ``submit``/``as_completed`` code
(:func:`bwgym.scenarios.runner.run_scenarios`): a local ``ProcessPoolExecutor`` or a Dask
``distributed.Client`` (:func:`open_executor`). Episode ``i`` of a point always uses seed
``run.seed + i``, so the table does not depend on where the episodes ran.

Example:
    >>> parse_grid(["trace.scale=0.01,0.1", "codec.name=jpeg,raw"])
    {'trace.scale': [0.01, 0.1], 'codec.name': ['jpeg', 'raw']}
    >>> point_name("base", {"trace.scale": 0.01, "codec.name": "jpeg"})
    'base__trace.scale=0.01__codec.name=jpeg'

"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import itertools
import logging
import math
import os
import time
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from bwgym.common.files import atomic_write_text
from bwgym.scenarios.config import ConfigError, Scenario, load_scenario, parse_yaml
from bwgym.scenarios.run_folder import (
    SWEEP_MARKER,
    RunResult,
    _init_worker,
    atomic_parquet,
    check_run_folder,
    lock_folder,
)
from bwgym.scenarios.runner import run_scenarios

__all__ = [
    "MAX_SWEEP_POINTS",
    "ClusterError",
    "SweepPoint",
    "SweepResult",
    "check_key",
    "default_sweep_dir",
    "expand_grid",
    "open_executor",
    "parse_grid",
    "parse_value",
    "plot_sweep",
    "point_name",
    "run_sweep",
    "setup_dask_workers",
]

#: Keys whose values change the bandwidth the link offers: their plots put the link budget on x.
BANDWIDTH_KEYS = ("trace.", "link.step_seconds")
#: The summary columns printed by ``bwgym sweep`` after the grid values.
TABLE_COLUMNS = (
    "success_rate",
    "success_ci_low",
    "success_ci_high",
    "mean_budget_bits",
    "mean_bits_sent",
    "mean_bandwidth_bps",
    "episodes",
)

#: Most grid points one sweep may have: each is a scenario validated up front and a run folder.
MAX_SWEEP_POINTS = 1_000


class ClusterError(RuntimeError):
    """The executor cannot be had: Dask is not installed, or the cluster cannot be reached."""


@dataclass(frozen=True)
class SweepPoint:
    """One grid point: its values (``{dotted key: value}``) and the scenario they make."""

    values: dict[str, Any]
    scenario: Scenario


@dataclass(frozen=True)
class SweepResult:
    """Where a sweep left its files, its table and each point's run."""

    out_dir: Path
    table: pd.DataFrame
    runs: list[RunResult]
    plots: list[Path]


# ------------------------------------------------------------------------------ the grid
def parse_value(text: str, key: str = "value", flag: str = "--grid") -> Any:
    """Read one command-line value (of ``--grid`` or ``--set``) as bounded scenario YAML.

    The value goes through :func:`bwgym.scenarios.config.parse_yaml`, the scenario file's loader:
    aliases, nesting deeper than ``MAX_SCENARIO_DEPTH``, more than ``MAX_SCENARIO_NODES`` nodes
    and duplicate keys are refused before anything is built (a 500-byte alias bomb on the command
    line would otherwise expand to gigabytes), and ``1e-2``-style numbers are floats.

    Args:
        text: the value as typed.
        key: the dotted key it is for, named in errors.
        flag: the flag it came with, named in errors.

    Example:
        >>> parse_value("0.01"), parse_value("1e-2"), parse_value("jpeg"), parse_value("true")
        (0.01, 0.01, 'jpeg', True)

    Raises:
        ConfigError: one line naming ``flag``, ``key``, the problem and the bound.
    """
    try:
        return parse_yaml(text, f"{flag} {key}")
    except ConfigError as exc:
        raise ConfigError(f"{exc}; quote a string value, e.g. {flag} {key}='\"...\"'") from None


def check_key(key: str) -> None:
    """Raise :class:`ConfigError` unless ``key`` is a dotted path of a scenario setting.

    Keys inside free-form mappings (``env.kwargs.image_size``, ``trace.params.good_bps``) are
    accepted as they are; the scenario check after the override judges their values.
    """
    node: Any = Scenario
    parts = key.split(".")
    for depth, part in enumerate(parts):
        where = ".".join(parts[:depth]) or "scenario"
        if dataclasses.is_dataclass(node):
            names = [f.name for f in dataclasses.fields(node)]
            if part not in names:
                near = difflib.get_close_matches(part, names, n=1)
                hint = f" Did you mean {'.'.join([*parts[:depth], near[0]])!r}?" if near else ""
                raise ConfigError(
                    f"--grid {key}: unknown key {part!r} in {where}.{hint} Allowed keys: {', '.join(names)}"
                )
            node = typing.get_type_hints(node)[part]
            section = [a for a in typing.get_args(node) if a is not type(None)]
            if len(section) == 1 and dataclasses.is_dataclass(section[0]):  # an optional section: fleet
                node = section[0]
        elif typing.get_origin(node) is dict:
            return
        else:
            raise ConfigError(f"--grid {key}: {where} is a single value, not a section")
    if dataclasses.is_dataclass(node):
        names = ", ".join(f"{key}.{f.name}" for f in dataclasses.fields(node))
        raise ConfigError(f"--grid {key}: is a section; name one of its keys: {names}")


def parse_grid(specs: Sequence[str]) -> dict[str, list[Any]]:
    """Parse ``key=v1,v2`` strings into ``{key: [v1, v2]}`` (values read by :func:`parse_value`).

    Raises:
        ConfigError: a spec without ``=`` or values, an unknown key, a key given twice, a value
            given twice, or the key ``name`` (points are named after their values).

    """
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--grid expects key=value1,value2 (e.g. trace.scale=0.01,0.1), got {spec!r}")
        texts = [v.strip() for v in values.split(",")]
        if not values.strip() or any(not t for t in texts):
            raise ConfigError(f"--grid {key}: empty value in {spec!r}; give values separated by commas")
        if key in grid:
            raise ConfigError(f"--grid {key}: given twice; list all its values in one --grid")
        if key == "name":
            raise ConfigError("--grid name: grid points are named after their values; sweep another key")
        check_key(key)
        parsed = [parse_value(t, key) for t in texts]
        if len({_format(v) for v in parsed}) != len(parsed):
            raise ConfigError(f"--grid {key}: a value appears twice in {spec!r}")
        grid[key] = parsed
        _check_points(grid)  # before parsing more values: a 1000 x 1000 grid stops at its second key
    if not grid:
        raise ConfigError("a sweep needs at least one --grid key=value1,value2")
    return grid


def _check_points(grid: Mapping[str, Sequence[Any]]) -> None:
    """Refuse a grid of more than :data:`MAX_SWEEP_POINTS` points."""
    points = math.prod(len(values) for values in grid.values())
    if points > MAX_SWEEP_POINTS:
        sizes = " x ".join(str(len(values)) for values in grid.values())
        raise ConfigError(
            f"--grid: {sizes} = {points:,} grid points, more than the {MAX_SWEEP_POINTS:,} a sweep may run "
            f"(MAX_SWEEP_POINTS); give fewer values or split the sweep"
        )


def _format(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return yaml.safe_dump(value).split("\n")[0]  # true / false / null
    if isinstance(value, float):
        return repr(value)
    return str(value)


def point_name(base: str, values: Mapping[str, Any]) -> str:
    """``<base>__<key>=<value>__...`` in grid order; ``/`` in values becomes ``-``."""
    parts = [
        f"{key}={_format(value)}".replace("/", "-").replace(os.sep, "-") for key, value in values.items()
    ]
    return "__".join([base, *parts])


def expand_grid(
    scenario: str | Path,
    grid: Mapping[str, Sequence[Any]],
    overrides: Mapping[str, Any] | None = None,
) -> list[SweepPoint]:
    """Every point of the cross product of ``grid``, each validated as a scenario of its own.

    Args:
        scenario: the base scenario: a library name or a YAML path.
        grid: ``{dotted key: values}``; the last key varies fastest.
        overrides: settings applied to every point (e.g. ``{"run.episodes": 5}``).

    Raises:
        ConfigError: an unknown key, a bad value (naming the key and the valid choices), or a key
            both in ``grid`` and ``overrides``.

    """
    overrides = dict(overrides or {})
    _check_points(grid)
    for key in grid:
        check_key(key)
        if key in overrides:
            raise ConfigError(f"--grid {key}: also set as an override; give it in one place")
    base = load_scenario(scenario, overrides)
    points = []
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo, strict=True))
        loaded = load_scenario(scenario, {**overrides, **values})
        points.append(SweepPoint(values, dataclasses.replace(loaded, name=point_name(base.name, values))))
    names = [p.scenario.name for p in points]
    if len(set(names)) != len(names):
        raise ConfigError(f"two grid points get the same folder name ({names}); use values without '/'")
    return points


def default_sweep_dir(scenario: str | Path, root: str | Path = "runs") -> Path:
    """``runs/<scenario>/sweep-<YYYYmmdd-HHMMSS>``."""
    return Path(root) / load_scenario(scenario).name / time.strftime("sweep-%Y%m%d-%H%M%S")


# ------------------------------------------------------------------------------ executors
def setup_dask_workers(client: Any) -> None:
    """Give every worker of a Dask client, present and future, the pool workers' setup.

    Registers a worker plugin that sets ``OMP_NUM_THREADS=1`` (and MKL/OpenBLAS) and
    ``MUJOCO_GL=egl`` where unset, as :func:`bwgym.scenarios.run_folder.make_executor` does for its
    processes. :func:`open_executor` and :func:`run_sweep` call it; calling it again is harmless.
    """
    register = getattr(client, "register_plugin", None) or client.register_worker_plugin
    register(_dask_worker_plugin())


def _dask_worker_plugin() -> Any:
    from distributed.diagnostics.plugin import WorkerPlugin

    class BwgymWorkerSetup(WorkerPlugin):
        name = "bwgym-worker-setup"

        def setup(self, worker: Any) -> None:
            _init_worker()
            import sys

            if "torch" in sys.modules:  # imported before the plugin ran: the variable came too late
                sys.modules["torch"].set_num_threads(1)

    return BwgymWorkerSetup()


def _connect(address: str, timeout_s: float) -> Any:
    from distributed import Client

    # The client logs each failed attempt before raising; the one line we print says it all.
    quiet = [logging.getLogger(n) for n in ("distributed", "distributed.client", "distributed.comm")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.CRITICAL)
    try:
        return Client(address, timeout=f"{timeout_s}s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {address} within {timeout_s:g} s "
            f"({type(exc).__name__}); is it running and reachable?"
        ) from None
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)


@contextlib.contextmanager
def open_executor(
    cluster: str | None = None,
    workers: int | None = None,
    connect_timeout_s: float = 5.0,
) -> Iterator[tuple[Any, int]]:
    """Open the executor a sweep submits to; yield it with its worker count and close it on exit.

    Args:
        cluster: None for a local process pool; ``"local:N"`` to start a Dask ``LocalCluster``
            of N single-threaded worker processes on 127.0.0.1 (closed on exit); otherwise the
            address of a running Dask scheduler (``tcp://host:8786``).
        workers: processes of the local pool (default: all cores); 1 runs in this process.
        connect_timeout_s: how long to try to reach a scheduler.

    Yields:
        ``(executor, workers)``: a ``ProcessPoolExecutor``-like object or a Dask ``Client``.

    Raises:
        ClusterError: Dask is not installed, ``local:N`` is malformed, or the scheduler cannot
            be reached.

    """
    if cluster is None:
        from bwgym.scenarios.run_folder import make_executor

        n = max(1, workers or os.cpu_count() or 1)
        executor = make_executor(n)
        try:
            yield executor, n
        finally:
            if hasattr(executor, "shutdown"):
                executor.shutdown(cancel_futures=True)
        return

    try:
        import distributed
    except ImportError:
        raise ClusterError("--cluster needs Dask: pip install 'bwgym[cluster]'") from None

    with contextlib.ExitStack() as stack:
        if cluster.startswith("local:"):
            count = cluster.split(":", 1)[1]
            if not count.isdigit() or int(count) < 1:
                raise ClusterError(f"--cluster {cluster}: expected local:N with N >= 1 workers, e.g. local:2")
            from bwgym.scenarios.run_folder import check_workers

            try:  # N local processes: the same bound as a local pool
                check_workers(int(count), f"--cluster {cluster}")
            except ConfigError as exc:
                raise ClusterError(str(exc)) from None
            local = distributed.LocalCluster(
                n_workers=int(count),
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            stack.callback(local.close)
            client = distributed.Client(local, set_as_default=False)
        else:
            client = _connect(cluster, connect_timeout_s)
        stack.callback(client.close)
        setup_dask_workers(client)
        yield client, max(1, sum(client.nthreads().values()))


# ------------------------------------------------------------------------------ the sweep
def run_sweep(
    scenario: str | Path,
    grid: Mapping[str, Sequence[Any]],
    out_dir: str | Path,
    overrides: Mapping[str, Any] | None = None,
    executor: Any | None = None,
    workers: int | None = None,
    cluster: str | None = None,
    connect_timeout_s: float = 5.0,
    resume: bool = False,
    progress: bool = True,
    plots: bool = True,
    point_plots: bool = False,
) -> SweepResult:
    """Run every grid point of a scenario through one executor and write the sweep folder.

    The grid, every point's scenario and the folders are checked before any executor starts.

    Args:
        scenario: the base scenario: a library name or a YAML path.
        grid: ``{dotted key: values}`` (see :func:`parse_grid`).
        out_dir: the sweep folder; each point runs in ``out_dir/<point name>``.
        overrides: settings applied to every point (e.g. ``{"run.episodes": 5}``).
        executor: anything with ``submit`` (a process pool, a Dask ``Client``), left open; default:
            one from :func:`open_executor` (``cluster``, ``workers``), closed at the end.
        workers: the local pool's processes (default: all cores); with ``executor``, how many
            workers it has (sets the batch size).
        cluster: ``"local:N"`` or a Dask scheduler address (see :func:`open_executor`).
        connect_timeout_s: how long to try to reach the ``cluster`` scheduler.
        resume: continue the sweep in ``out_dir``, skipping every point's finished episodes.
        progress: show a progress bar over all episodes.
        plots: draw the sweep's ``plots/success_vs_<key>.png``.
        point_plots: also draw every point's run plots (``<point>/plots/*.png``; a few seconds
            per point).

    Returns:
        The sweep's folder, its table (one row per point), each point's run and the sweep plots.

    Raises:
        ConfigError: a bad grid or scenario, more than :data:`MAX_SWEEP_POINTS` points or more
            workers than :func:`bwgym.scenarios.run_folder.check_workers` allows, or a folder holding
            another sweep or run.
        ClusterError: see :func:`open_executor`.
        WorkerDiedError: a worker process died (e.g. out of memory); ``resume=True`` continues.

    """
    out_dir = Path(out_dir)
    if executor is None and cluster is None and workers is not None:
        from bwgym.scenarios.run_folder import check_workers

        check_workers(workers, "--workers")  # before any scenario is loaded or process started
    points = expand_grid(scenario, grid, overrides)
    base = load_scenario(scenario, dict(overrides or {}))
    _check_folders(out_dir, points, resume)
    record = {
        "scenario": str(scenario),
        "base": base.name,
        "grid": {k: list(v) for k, v in grid.items()},
        "overrides": dict(overrides or {}),
    }
    runs = [(p.scenario, out_dir / p.scenario.name) for p in points]

    with contextlib.ExitStack() as stack:
        if executor is None:
            executor, workers = stack.enter_context(open_executor(cluster, workers, connect_timeout_s))
            where = f"Dask {cluster}, {workers} workers" if cluster else f"{workers} local workers"
        else:
            where = f"{workers or 1} workers"
            if type(executor).__module__.startswith("distributed"):
                setup_dask_workers(executor)
        stack.enter_context(lock_folder(out_dir, f"bwgym sweep {base.name}"))
        atomic_write_text(out_dir / SWEEP_MARKER, yaml.safe_dump(record, sort_keys=False))
        results = run_scenarios(
            runs,
            resume=resume,
            executor=executor,
            workers=workers,
            progress=progress,
            plots=point_plots,
            desc=f"sweep {base.name} ({len(points)} points, {where})",
        )
    table = _table(points, results)
    atomic_parquet(table, out_dir / "sweep.parquet")
    atomic_write_text(out_dir / "sweep.csv", table.to_csv(index=False))
    written = plot_sweep(table, list(grid), out_dir / "plots", title=base.name) if plots else []
    return SweepResult(out_dir, table, results, written)


def _check_folders(out_dir: Path, points: Sequence[SweepPoint], resume: bool) -> None:
    """Refuse a folder holding a run or another sweep, or a point folder holding another configuration."""
    if (out_dir / "config.yaml").exists():
        raise ConfigError(f"{out_dir} holds a run, not a sweep; give the sweep its own --out")
    if (out_dir / SWEEP_MARKER).exists() and not resume:
        raise ConfigError(
            f"{out_dir} already holds a sweep; pass --resume to continue it or --out with a new folder"
        )
    for point in points:
        check_run_folder(point.scenario, out_dir / point.scenario.name, resume)


def _table(points: Sequence[SweepPoint], results: Sequence[RunResult]) -> pd.DataFrame:
    rows = []
    for point, result in zip(points, results, strict=True):
        summary = result.summary.iloc[0].to_dict()
        rows.append({**point.values, **summary})
    table = pd.DataFrame(rows)
    for key in points[0].values:
        kinds = {type(p.values[key]) for p in points}
        if not (kinds <= {int, float} or (len(kinds) == 1 and kinds <= {str, bool})):
            table[key] = [_format(p.values[key]) for p in points]  # one type per column for Parquet
    return table


def plot_sweep(
    table: pd.DataFrame, keys: Sequence[str], plots_dir: str | Path, title: str = ""
) -> list[Path]:
    """Success rate (Wilson intervals) of every grid point, one ``success_vs_<key>.png`` per x key.

    The x axis of a key that changes the bandwidth (``trace.*``, ``link.step_seconds``) is the mean
    link budget in bits per step; of another numeric key, its value. The remaining keys make the
    lines. A grid of categorical keys only (``codec.name=jpeg,raw``) gets one plot per key with
    the mean bits sent per step on x and one line per value.
    """
    from bwgym.scenarios.plots import plot_success_vs_bandwidth

    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    has = {c: c in table and table[c].notna().all() for c in ("mean_budget_bits", "mean_bits_sent")}
    numeric = {
        k: pd.api.types.is_numeric_dtype(table[k]) and not pd.api.types.is_bool_dtype(table[k]) for k in keys
    }
    plans: list[tuple[str, str, str, list[str]]] = []  # (file key, x column, x label, group keys)
    for key in keys:
        others = [k for k in keys if k != key]
        if key.startswith(BANDWIDTH_KEYS) and has["mean_budget_bits"]:
            plans.append(
                (key, "mean_budget_bits", f"link budget, mean bits per step (varying {key})", others)
            )
        elif numeric[key]:
            plans.append((key, key, key, others))
    if not plans and has["mean_bits_sent"]:
        plans = [(key, "mean_bits_sent", "bits sent, mean per step", [key]) for key in keys]
    written = []
    for key, x, xlabel, group_keys in plans:
        frame = table.copy()
        if group_keys:
            frame["_group"] = [
                ", ".join(f"{k}={_format(row[k])}" for k in group_keys) for _, row in frame.iterrows()
            ]
        else:
            frame["_group"] = title or "sweep"
        if not all(math.isfinite(float(v)) for v in frame[x]):
            continue
        path = plots_dir / f"success_vs_{key}.png"
        written.append(plot_success_vs_bandwidth(frame, x, path, group="_group", xlabel=xlabel, title=title))
    return written
