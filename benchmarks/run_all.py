"""Run every benchmark script in this folder, each in its own process; `bwgym bench` calls this.

    python benchmarks/run_all.py [--only NAME ...] [--list] [--timeout S]

Every ``benchmarks/*.py`` except this file and ``report.py`` is a benchmark; each writes its own
section of BENCHMARKS.md. A failing (or timed-out) script does not stop the others: the summary at
the end names it, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bwgym.cli.args import add_bench_options

HERE = Path(__file__).resolve().parent
NOT_BENCHMARKS = {"run_all", "report"}


def discover() -> list[Path]:
    """The benchmark scripts, by name."""
    return sorted(p for p in HERE.glob("*.py") if p.stem not in NOT_BENCHMARKS and not p.stem.startswith("_"))


def run_one(script: Path, timeout_s: float | None = None) -> tuple[int | None, float]:
    """Run one script (output streamed to ours); return its exit code (None: timed out) and seconds."""
    env = dict(os.environ)
    env.setdefault("MUJOCO_GL", "egl")
    start = time.perf_counter()
    try:
        code = subprocess.run(
            [sys.executable, str(script)], cwd=HERE.parent, env=env, timeout=timeout_s
        ).returncode
    except subprocess.TimeoutExpired:
        code = None
    return code, time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bench_options(parser)  # the options of `bwgym bench`
    args = parser.parse_args(argv)

    scripts = discover()
    names = [p.stem for p in scripts]
    if args.list:
        print("\n".join(names))
        return 0
    unknown = [n for n in args.only if n not in names]
    if unknown:
        print(
            f"bwgym bench: unknown benchmark {', '.join(map(repr, unknown))}; available: {', '.join(names)}",
            file=sys.stderr,
        )
        return 2
    if args.only:
        scripts = [p for p in scripts if p.stem in args.only]

    results = []
    for script in scripts:
        print(f"=== {script.stem} ({script.relative_to(HERE.parent)})", flush=True)
        code, seconds = run_one(script, args.timeout)
        results.append((script.stem, code, seconds))
        print(flush=True)

    print("=== summary")
    failed = []
    for name, code, seconds in results:
        status = "ok" if code == 0 else ("TIMED OUT" if code is None else f"FAILED (exit code {code})")
        if code != 0:
            failed.append(name)
        print(f"  {name:24s} {status:24s} {seconds:7.1f} s")
    print(f"BENCHMARKS.md: {HERE.parent / 'BENCHMARKS.md'}")
    if failed:
        print(f"{len(failed)} of {len(results)} benchmarks failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
