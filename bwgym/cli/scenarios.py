"""The ``bwgym sweep`` and ``bwgym bench`` sub-commands.

:mod:`bwgym.cli` calls :func:`register` with its sub-parsers; each sub-command stores its handler
as ``args.func``, a function ``(args) -> int`` (the process exit code)::

    bwgym sweep fleet_lte_jpeg --grid trace.scale=0.03,0.1,0.3 --grid codec.name=jpeg,raw
    bwgym sweep my.yaml --grid trace.scale=0.1,1 --cluster local:4
    bwgym sweep my.yaml --grid trace.scale=0.1,1 --cluster tcp://scheduler:8786
    bwgym bench --only sweep_speed

Errors in the user's input (a bad grid, an unknown key, Dask missing, a cluster out of reach)
print one line to stderr and return exit code 2 instead of a traceback. Heavy imports happen
inside the handlers, so ``bwgym --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bwgym.cli.args import add_bench_options, add_run_options, bounded_float

__all__ = ["MAX_CONNECT_TIMEOUT_S", "cmd_bench", "cmd_sweep", "find_benchmarks", "register"]

#: Longest wait for a Dask scheduler (``--connect-timeout``): an hour.
MAX_CONNECT_TIMEOUT_S = 3600.0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run a sweep and print its table and where its files are."""
    import yaml

    from bwgym.cli import PATH_KEYS, path_from_cwd, run_overrides
    from bwgym.scenarios import sweep
    from bwgym.scenarios.config import ConfigError
    from bwgym.scenarios.run_folder import WorkerDiedError

    try:
        overrides = run_overrides(args, ("episodes", "seed", "num_envs", "device"))  # workers size the pool
        if args.cluster is not None and args.workers is not None:
            raise ConfigError(
                "--workers sizes the local process pool; with --cluster the cluster's workers "
                "run the sweep (use --cluster local:N for N local Dask workers)"
            )
        if args.resume and not args.out:
            raise ConfigError("--resume needs --out naming the sweep folder to continue")
        try:
            grid = sweep.parse_grid(args.grid)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise ConfigError(f"--grid: a value is not valid YAML ({problem}); quote it") from None
        for key in PATH_KEYS:  # paths on the command line are relative to the working directory
            if key in grid:
                grid[key] = [path_from_cwd(key, value, f"--grid {key}") for value in grid[key]]
        out = Path(args.out) if args.out else sweep.default_sweep_dir(args.scenario)
        result = sweep.run_sweep(
            args.scenario,
            grid,
            out,
            overrides=overrides,
            workers=args.workers,
            cluster=args.cluster,
            connect_timeout_s=args.connect_timeout,
            resume=args.resume,
            progress=not args.quiet,
            point_plots=args.point_plots,
        )
    except (ConfigError, sweep.ClusterError) as exc:
        print(f"bwgym sweep: {exc}".replace("\n", "\\n"), file=sys.stderr)
        return 2
    except WorkerDiedError as exc:
        print(f"bwgym sweep: {exc}", file=sys.stderr)
        return 1
    import pandas as pd

    columns = [*grid, *(c for c in sweep.TABLE_COLUMNS if c in result.table)]
    with pd.option_context(
        "display.width", 200, "display.max_columns", 30, "display.float_format", "{:,.3g}".format
    ):
        print(result.table[columns].to_string(index=False))
    print(f"\nsweep folder: {result.out_dir}")
    for name in ("sweep.parquet", "sweep.csv", "sweep.yaml"):
        print(f"  {name:36s} {result.out_dir / name}")
    for plot in result.plots:
        print(f"  {'plots/' + plot.name:36s} {plot}")
    print(f"  {'<point>/':36s} one run folder per grid point ({len(result.runs)})")
    return 0


def find_benchmarks() -> Path:
    """Find the ``benchmarks/`` folder of the source checkout this package runs from.

    Raises:
        FileNotFoundError: bwgym is installed without its source tree.

    """
    folder = Path(__file__).resolve().parents[2] / "benchmarks"
    if not (folder / "run_all.py").is_file():
        raise FileNotFoundError(
            f"bwgym bench runs the scripts in a source checkout's benchmarks/ folder; none at {folder} "
            f"(clone the repository and `pip install -e .` it)"
        )
    return folder


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark scripts (``benchmarks/run_all.py``), which rewrite BENCHMARKS.md."""
    try:
        folder = find_benchmarks()
    except FileNotFoundError as exc:
        print(f"bwgym bench: {exc}", file=sys.stderr)
        return 2
    spec = importlib.util.spec_from_file_location("bwgym_benchmarks_run_all", folder / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    argv = [f"--only={name}" for name in args.only] + (["--list"] if args.list else [])
    if args.timeout is not None:
        argv.append(f"--timeout={args.timeout}")
    return int(module.main(argv))


def _add_command(
    subparsers: Any, name: str, func: Callable[[argparse.Namespace], int], **texts: str
) -> argparse.ArgumentParser:
    """Add the sub-command ``name`` (``help`` and ``description`` in ``texts``) that runs ``func``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(name, **texts)
    parser.set_defaults(func=func)
    return parser


def register(subparsers: Any) -> None:
    """Add the ``sweep`` and ``bench`` sub-commands to an ``argparse`` sub-parsers object."""
    sweep = _add_command(
        subparsers,
        "sweep",
        cmd_sweep,
        help="run the cross product of scenario settings (local pool or Dask cluster)",
        description="Run every combination of --grid values of a scenario; each grid point gets its own run "
        "folder under the sweep folder, and one table (sweep.parquet/.csv) compares them. All points' "
        "episodes share one executor: a local process pool, or a Dask cluster with --cluster.",
    )
    add_run_options(
        sweep, "sweep", "sweep folder (default runs/<scenario>/sweep-<stamp>)", per=" per grid point"
    )
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a dotted scenario key and its values, e.g. trace.scale=0.01,0.1 or codec.name=jpeg,raw "
        "(repeatable: the cross product is run)",
    )
    sweep.add_argument(
        "--cluster",
        metavar="ADDRESS|local:N",
        help="run on Dask: a scheduler address (tcp://host:8786) or local:N to start N local "
        "workers (needs pip install 'bwgym[cluster]')",
    )
    sweep.add_argument(
        "--connect-timeout",
        type=bounded_float("--connect-timeout", 0.0, MAX_CONNECT_TIMEOUT_S, low_open=True),
        default=5.0,
        metavar="S",
        help="seconds to try to reach the --cluster scheduler (default 5)",
    )
    sweep.add_argument(
        "--point-plots",
        action="store_true",
        help="also draw every grid point's run plots (<point>/plots/*.png; seconds per point)",
    )
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")

    bench = _add_command(
        subparsers,
        "bench",
        cmd_bench,
        help="run the benchmark scripts and rewrite BENCHMARKS.md",
        description="Run every benchmarks/*.py script (each in its own process, continuing past failures); "
        "each rewrites its section of BENCHMARKS.md.",
    )
    add_bench_options(bench)
