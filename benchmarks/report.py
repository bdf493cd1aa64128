"""Write one benchmark's section of BENCHMARKS.md, leaving the other sections as they are."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
HEADER = (
    "# Benchmarks\n\n"
    "Every number here was written by a script in `benchmarks/`, with the command that produced it.\n"
    "Speeds are ratios against a baseline measured in the same run, on the machine named in each\n"
    "section; absolute numbers move with the machine and its load, ratios much less.\n"
)


def machine_line() -> str:
    """One line naming the machine, the code version and the time of the run."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=BENCHMARKS_MD.parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return (
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"commit {commit}, {time.strftime('%Y-%m-%d %H:%M')}."
    )


def parse_args(doc: str, argv: list[str] | None, options: list[tuple[str, type, object, str]]):
    """Parse a benchmark's ``options`` (flag, type, default, help) plus ``--no-write``."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    for flag, kind, default, text in options:
        parser.add_argument(flag, type=kind, default=default, help=text)
    parser.add_argument("--no-write", action="store_true", help="print, do not write BENCHMARKS.md")
    return parser.parse_args(argv)


def script_parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser whose help is the benchmark's docstring, as written."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend: benchmarks draw files, never windows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, title: str, **title_options: Any) -> None:
    """Title ``fig``, lay it out, write it to ``path`` at 110 dpi and close it."""
    fig.suptitle(title, **title_options)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section between ``<!-- name:start -->`` and ``<!-- name:end -->``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}\n"
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else HEADER
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    tmp = BENCHMARKS_MD.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(BENCHMARKS_MD)
