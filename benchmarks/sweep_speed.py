"""Sweep throughput (episodes per second): 1 and 2 local workers, and a Dask LocalCluster of 2.

    python benchmarks/sweep_speed.py [--episodes 10] [--image-size 84]

One sweep (LocateLift, random agent, a Gilbert-Elliott link; grid trace.scale x codec.name = 4
points), run three times in this one process, each into a fresh folder, through
``bwgym.scenarios.sweep.run_sweep``:

- ``local, 1 worker``: episodes run in this process (no pool);
- ``local, 2 workers``: a spawned ``ProcessPoolExecutor``;
- ``Dask LocalCluster, 2 workers``: scheduler and 2 single-threaded worker processes on 127.0.0.1.

Each row times start-up (creating the executor), run and shut-down separately, and the
script checks that the three sweep tables are identical.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml
from report import machine_line, write_section  # noqa: E402  (run as a script)

import bwgym  # noqa: F401  (first: it selects the headless GL backend before mujoco loads)
from bwgym.scenarios.sweep import open_executor, run_sweep

GRID = {"trace.scale": [0.1, 1.0], "codec.name": ["jpeg", "raw"]}


def scenario_file(folder: Path, episodes: int, image_size: int) -> Path:
    data = {
        "name": "sweep_speed",
        "env": {"id": "bwgym/LocateLift-v0", "kwargs": {"image_size": image_size}},
        "trace": {
            "source": None,
            "generator": "gilbert_elliott",
            "params": {"good_bps": 2_000_000.0, "bad_bps": 50_000.0, "duration_s": 60.0, "seed": 1},
        },
        "codec": {"name": "jpeg"},
        "agent": {"name": "random"},
        "run": {"episodes": episodes, "seed": 0},
    }
    path = folder / "sweep_speed.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def timed_sweep(path: Path, out: Path, cluster: str | None, workers: int | None):
    """Run the sweep as `bwgym sweep` does; return its table and the start-up, run and shut-down seconds."""
    stack = contextlib.ExitStack()
    t0 = time.perf_counter()
    executor, n = stack.enter_context(open_executor(cluster, workers))
    t1 = time.perf_counter()
    try:
        result = run_sweep(path, GRID, out, executor=executor, workers=n, progress=False, plots=False)
        t2 = time.perf_counter()
    finally:
        stack.close()
    return result.table, t1 - t0, t2 - t1, time.perf_counter() - t2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=10, help="episodes per grid point")
    parser.add_argument("--image-size", type=int, default=84)
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    rows, tables = [], []
    setups = [("local, 1 worker (in process)", None, 1), ("local, 2 workers (process pool)", None, 2)]
    if importlib.util.find_spec("distributed") is not None:
        setups.append(("Dask LocalCluster, 2 workers", "local:2", None))
    else:
        print("Dask is not installed (pip install 'bwgym[cluster]'): no Dask row", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = scenario_file(folder, args.episodes, args.image_size)
        total = args.episodes * len(GRID["trace.scale"]) * len(GRID["codec.name"])
        for i, (label, cluster, workers) in enumerate(setups):
            table, startup, run, shutdown = timed_sweep(path, folder / str(i), cluster, workers)
            rows.append((label, startup, run, shutdown))
            tables.append(table)
            print(
                f"{label}: {total} episodes, start-up {startup:.1f} s, run {run:.1f} s, "
                f"shut-down {shutdown:.1f} s",
                flush=True,
            )

    identical = all(t.equals(tables[0]) for t in tables[1:])
    base = total / (rows[0][1] + rows[0][2])
    lines = [
        "## Sweep throughput",
        "",
        f"Command: `python benchmarks/sweep_speed.py --episodes {args.episodes} "
        f"--image-size {args.image_size}`. {machine_line()}",
        f"One sweep of 4 grid points (trace.scale 0.1, 1 x codec.name jpeg, raw) x {args.episodes} episodes "
        f"= {total} episodes (LocateLift {args.image_size} px, random agent, 50 steps each, "
        "Gilbert-Elliott link), run three times in one process as `bwgym sweep` runs it "
        "(`open_executor` + `run_sweep`: one `submit`/`as_completed` code path).",
        "",
        "| executor | start-up s | run s | episodes/s (start-up + run) | vs 1 worker | episodes/s (run only) "
        "| shut-down s |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, startup, run, shutdown in rows:
        rate = total / (startup + run)
        lines.append(
            f"| {label} | {startup:.1f} | {run:.1f} | {rate:.2f} | {rate / base:.2f} | {total / run:.2f} "
            f"| {shutdown:.1f} |"
        )
    lines += [
        "",
        f"Sweep tables identical across the executors: {'yes' if identical else 'NO'}. "
        "`start-up` is creating the executor (the Dask scheduler and its worker processes; a process "
        "pool spawns its workers lazily, inside `run`); `run` includes each worker importing bwgym, "
        "MuJoCo and torch and building each point's env; `shut-down` waits for the worker processes to "
        "exit (torch makes that slow).",
        f"Load average (1 min) before / after the run: {load_before:.1f} / {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores; with other work on the machine, extra workers gain less or lose.",
    ]
    write_section("sweep_speed", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
