"""The ``bwgym traces`` sub-command: show, convert, plot, generate, list, formats, generators.

``bwgym/cli.py`` calls :func:`register` with its sub-parsers; each sub-command stores its handler
as ``args.func``, a function ``(args) -> int`` (the process exit code)::

    bwgym traces list
    bwgym traces show lte_drive my_trace.csv
    bwgym traces convert lte_drive lte.mahimahi
    bwgym traces plot satellite --out satellite.png
    bwgym traces generate gilbert_elliott --out ge.csv --seed 3 --param good_bps=5e5
    bwgym traces formats
    bwgym traces generators

Errors in the user's input (a bad flag, a malformed, missing or unreadable file, an unknown
generator or parameter, an unwritable output, a size beyond the limits of :mod:`bwgym.traces`)
print one line to stderr, ``bwgym traces <sub>: <what is wrong>, expected <what>``, and return
exit code 2 instead of a traceback. :func:`main` runs the sub-command in-process
(``python -m bwgym.traces.commands show lte_drive``).
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from bwgym.common.files import atomic_write_bytes
from bwgym.common.registry import TRACE_FORMATS, TRACE_GENERATORS, Entry
from bwgym.traces.formats import (
    MAHIMAHI_BIN_MS,
    detect_format,
    library_path,
    list_library,
    load_trace,
    output_format,
    resolve_trace_path,
    save_trace,
)
from bwgym.traces.generators import MAX_SEED, generate, takes_seed
from bwgym.traces.trace import MAX_TIME_S, BandwidthTrace

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_STEP_S",
    "MAX_PLOT_SEGMENTS",
    "cmd_convert",
    "cmd_formats",
    "cmd_generate",
    "cmd_generators",
    "cmd_list",
    "cmd_plot",
    "cmd_show",
    "main",
    "entry_table",
    "register",
    "trace_stats",
]

DEFAULT_STEP_S = 0.04
"""Env step used for the "bits per step" column (LocateLift's control period)."""

MAX_PLOT_SEGMENTS = 1_000_000
"""Most segments ``bwgym traces plot`` draws per trace (matplotlib needs ~1 KB per vertex);
plot a part of a longer trace with ``--until-s``."""

Handler = Callable[[argparse.Namespace], int]

# What a handler may raise on bad input; anything else is a bug and keeps its traceback.
_USER_ERRORS = (ValueError, TypeError, OSError, ArithmeticError, RecursionError, MemoryError)


def _one_line(text: str) -> str:
    """``text`` on one line: newlines (from hostile file names or values) escaped."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _fail(command: str, message: str) -> int:
    """Print ``bwgym traces <command>: <message>`` as one line on stderr; return exit code 2."""
    print(_one_line(f"bwgym traces {command}: {message}"), file=sys.stderr)
    return 2


def _describe(err: BaseException) -> str:
    if isinstance(err, MemoryError):
        return "out of memory, expected a smaller input"
    if isinstance(err, RecursionError):
        return "input nested too deeply, expected a flat value"
    if isinstance(err, OSError) and err.strerror:
        where = f": {err.filename}" if err.filename else ""
        text = f"{err.strerror}{where}"
        return text if "expected" in text else f"{text}, expected a readable input and a writable output"
    text = str(err) or type(err).__name__
    return text if "expected" in text else f"{text}, expected valid input (see --help)"


def _friendly(name: str) -> Callable[[Handler], Handler]:
    """Turn user-input errors into one line on stderr and exit code 2."""

    def wrap(fn: Handler) -> Handler:
        @functools.wraps(fn)
        def run(args: argparse.Namespace) -> int:
            try:
                return fn(args)
            except _USER_ERRORS as err:
                return _fail(name, _describe(err))

        return run

    return wrap


class _SubcommandParser(argparse.ArgumentParser):
    """A parser whose errors are one line, ``bwgym traces <sub>: <problem>, expected <usage>``."""

    def error(self, message: str) -> NoReturn:
        usage = " ".join(self.format_usage().split()).removeprefix("usage: ")
        if "expected" not in message:
            message = f"{message}, expected {usage}"
        _fail(self.prog.split()[-1], message)
        self.exit(2)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        # A leaf sub-command has no further parser that could want left-over arguments: refuse
        # them here, on one line, rather than leave them to the top-level parser's usage dump.
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def _traces_error(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    usage = " ".join(parser.format_usage().split()).removeprefix("usage: ")
    print(_one_line(f"bwgym traces: {message}, expected {usage}"), file=sys.stderr)
    parser.exit(2)


def _number(flag: str, low: float, low_open: bool, high: float | None = None) -> Callable[[str], float]:
    """Build an argparse ``type`` for a finite float in a range, with a message naming ``flag``."""
    bound = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        ok = math.isfinite(value) and (value > low if low_open else value >= low)
        if not ok or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text!r} is not valid, expected a finite number {bound}")
        return value

    parse.__name__ = flag  # argparse names the type in some messages
    return parse


def _integer(flag: str, low: int, high: int) -> Callable[[str], int]:
    """Build an argparse ``type`` for an integer in ``[low, high]``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not valid, expected an integer in [{low}, {high}]")
        return value

    parse.__name__ = flag
    return parse


def trace_stats(trace: BandwidthTrace, step_s: float = DEFAULT_STEP_S) -> dict[str, Any]:
    """Summary statistics of a trace, one row of ``bwgym traces show``.

    Args:
        trace: The trace.
        step_s: Env step in seconds for the ``bits_per_step`` column.

    Returns:
        ``name``, ``segments``, ``duration_s``, ``mean_bps``, ``min_bps``, ``max_bps``,
        ``bits_per_step`` (mean bits per step) and ``outage_frac`` (share of time at 0 bit/s).

    """
    return {
        "name": trace.name,
        "segments": len(trace),
        "duration_s": trace.duration_s,
        "mean_bps": trace.mean_bps,
        "min_bps": trace.min_bps,
        "max_bps": trace.max_bps,
        "bits_per_step": trace.mean_bps * step_s,
        "outage_frac": trace.outage_fraction,
    }


def _table(rows: Sequence[dict[str, Any]]) -> str:
    import pandas as pd

    frame: pd.DataFrame = pd.DataFrame(list(rows))
    return frame.to_string(index=False, float_format=lambda x: f"{x:.6g}")


def _load(source: str, fmt: str | None, bin_ms: int) -> tuple[BandwidthTrace, str]:
    path = resolve_trace_path(source)
    detected = fmt or detect_format(path)
    return load_trace(path, detected, bin_ms=bin_ms), detected


def _unit(unit: str | None, fmt: str) -> dict[str, str]:
    """The writing options of ``--unit``; refused for formats whose unit is fixed, rather than ignored."""
    if unit is None:
        return {}
    takers = [e.name for e in TRACE_FORMATS.entries() if "unit" in (r[0] for r in e.option_rows())]
    if fmt not in takers:
        raise ValueError(
            f"--unit {unit} applies to {', '.join(takers)} output only; {fmt} has a fixed unit, "
            f"expected no --unit or an output in {', '.join(takers)}"
        )
    return {"unit": unit}


@_friendly("show")
def cmd_show(args: argparse.Namespace) -> int:
    """Print a statistics table of one or more traces (files or library names)."""
    rows = []
    for source in args.traces:
        trace, fmt = _load(source, args.format, args.bin_ms)
        stats = trace_stats(trace, args.step_s)
        rows.append({"name": stats.pop("name"), "format": fmt, **stats})
    print(_table(rows))
    return 0


@_friendly("convert")
def cmd_convert(args: argparse.Namespace) -> int:
    """Convert a trace file (or library trace) to another format."""
    to = output_format(args.dst, args.to, "--to")
    options = _unit(args.unit, to)
    trace, fmt = _load(args.src, args.from_format, args.bin_ms)
    out = save_trace(trace, args.dst, to, **options)
    print(
        f"wrote {out} ({to}, from {fmt}): {len(trace)} segments, "
        f"{trace.duration_s:g} s, mean {trace.mean_bps:.6g} bit/s"
    )
    return 0


def _rate_unit(max_bps: float) -> tuple[float, str]:
    if max_bps >= 1e6:
        return 1e6, "Mbit/s"
    if max_bps >= 1e3:
        return 1e3, "kbit/s"
    return 1.0, "bit/s"


@_friendly("plot")
def cmd_plot(args: argparse.Namespace) -> int:
    """Plot the rate of one or more traces over time to a PNG."""
    import numpy as np

    # The Agg canvas directly, not pyplot: no global backend switch inside a library.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    traces = [_load(source, args.format, args.bin_ms)[0] for source in args.traces]
    if args.until_s is not None:
        traces = [t.slice(0.0, args.until_s) for t in traces]
    for trace in traces:
        if len(trace) > MAX_PLOT_SEGMENTS:
            raise ValueError(
                f"{trace.name!r} has {len(trace):,} segments to draw, more than MAX_PLOT_SEGMENTS="
                f"{MAX_PLOT_SEGMENTS:,}, expected a shorter span: pass --until-s"
            )
    scale, unit = _rate_unit(max(t.max_bps for t in traces))
    figure = Figure(figsize=(8, 3.5), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    for trace in traces:
        rates = np.append(trace.bps, trace.bps[-1]) / scale
        ax.step(trace.edges_s, rates, where="post", label=f"{trace.name} (mean {trace.mean_bps / scale:.3g})")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"rate ({unit})")
    if args.log:
        ax.set_yscale("symlog", linthresh=max(min(t.mean_bps for t in traces) / scale / 100, 1e-9))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    figure.tight_layout()
    png = io.BytesIO()
    figure.savefig(png, format="png")
    try:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(args.out, png.getvalue())
    except OSError as err:
        raise OSError(
            err.errno, f"cannot write {args.out} ({err.strerror or err}), expected a writable file path"
        ) from None
    print(f"wrote {args.out}")
    return 0


def _parse_param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key.isidentifier():
        raise ValueError(f"--param {text!r} is not KEY=VALUE, expected e.g. --param good_bps=5e5")
    try:
        parsed = json.loads(value)  # numbers, true/false, lists such as [[0, 1e6], [5, 2e4]]
    except json.JSONDecodeError:
        parsed = value
    except RecursionError:
        raise ValueError(
            f"--param {key}: the value is nested too deeply, expected a number or a list"
        ) from None
    except ValueError as err:  # e.g. an integer beyond Python's digit limit
        raise ValueError(f"--param {key}: {err}, expected a number") from None
    return key, parsed


@_friendly("generate")
def cmd_generate(args: argparse.Namespace) -> int:
    """Generate a synthetic trace and write it (format from ``--format`` or the extension)."""
    params: dict[str, Any] = {}
    for text in args.param:
        key, value = _parse_param(text)
        if key in params:
            raise ValueError(f"--param {key} is given twice, expected each parameter once")
        params[key] = value
    fmt = output_format(args.out, args.format, "--format")
    options = _unit(args.unit, fmt)
    if args.duration_s is not None:
        params.setdefault("duration_s", args.duration_s)
    params.setdefault("seed", args.seed)  # generate() ignores it for deterministic kinds
    if args.name is not None:
        params.setdefault("name", args.name)
    trace = generate(args.kind, **params)
    out = save_trace(trace, args.out, fmt, **options)
    print(
        f"wrote {out}: {args.kind}, {len(trace)} segments, {trace.duration_s:g} s, "
        f"mean {trace.mean_bps:.6g} bit/s"
    )
    return 0


@_friendly("list")
def cmd_list(args: argparse.Namespace) -> int:
    """List the shipped library traces with their statistics."""
    rows = []
    for name in list_library():
        path = library_path(name)
        trace, fmt = _load(str(path), None, MAHIMAHI_BIN_MS)
        stats = trace_stats(trace, args.step_s)
        rows.append(
            {
                "name": name,
                "file": path.name,
                "format": fmt,
                "duration_s": stats["duration_s"],
                "mean_bps": stats["mean_bps"],
                "min_bps": stats["min_bps"],
                "max_bps": stats["max_bps"],
                "bits_per_step": stats["bits_per_step"],
                "outage_frac": stats["outage_frac"],
            }
        )
    print(_table(rows) if rows else "the trace library is empty")
    return 0


def entry_table(entries: Sequence[Entry], columns: Mapping[str, Callable[[Entry], str]]) -> str:
    """A plain aligned table of registry entries: one row per option, the entry's columns on its first.

    Args:
        entries: The entries, in the order to print.
        columns: Extra columns between ``name`` and ``description``: header -> value of an entry.

    Returns:
        Lines ``name  <columns>  description  option  type  default`` (``-`` for an entry without
        options), without trailing spaces.

    """
    rows = [["name", *columns, "description", "option", "type", "default"]]
    for entry in entries:
        first = [entry.name, *(value(entry) for value in columns.values()), entry.description]
        for i, option in enumerate(entry.option_rows() or [("-", "", "")]):
            rows.append([*(first if i == 0 else [""] * len(first)), *option])
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


@_friendly("formats")
def cmd_formats(args: argparse.Namespace) -> int:
    """List the registered trace file formats: extensions, whether they write, options."""
    columns = {
        "extensions": lambda e: " ".join(e.target.extensions) or "-",
        "writes": lambda e: "yes" if e.target().writes else "no",
    }
    print(entry_table(TRACE_FORMATS.entries(), columns))
    return 0


@_friendly("generators")
def cmd_generators(args: argparse.Namespace) -> int:
    """List the registered trace generators: whether they take a seed, options."""
    print(
        entry_table(TRACE_GENERATORS.entries(), {"seeded": lambda e: "yes" if takes_seed(e.name) else "no"})
    )
    return 0


def _reading_options(p: argparse.ArgumentParser, flag: str = "--format") -> None:
    p.add_argument(
        flag,
        dest="format" if flag == "--format" else "from_format",
        default=None,
        metavar="FORMAT",
        help="input format (see `bwgym traces formats`; default: from the extension or content)",
    )
    p.add_argument(
        "--bin-ms",
        type=_integer("--bin-ms", 1, 10**9),
        default=MAHIMAHI_BIN_MS,
        help=f"Mahimahi input: bin width in ms for the rate (default {MAHIMAHI_BIN_MS})",
    )


def _writing_options(p: argparse.ArgumentParser, flag: str = "--format") -> None:
    p.add_argument(
        flag,
        default=None,
        metavar="FORMAT",
        help="output format (see `bwgym traces formats`; default: from the extension)",
    )
    p.add_argument(
        "--unit",
        default=None,
        help="CSV output: rate unit, one of bps, kbps, mbps, bytes_per_s (default bps)",
    )


def _step_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--step-s",
        type=_number("--step-s", 0.0, True, MAX_TIME_S),
        default=DEFAULT_STEP_S,
        help=f"env step in seconds for the bits_per_step column (default {DEFAULT_STEP_S})",
    )


def _add_show(sub: Any) -> None:
    show = sub.add_parser("show", help="statistics table of traces")
    show.add_argument("traces", nargs="+", metavar="PATH_OR_NAME")
    _reading_options(show)
    _step_option(show)
    show.set_defaults(func=cmd_show)


def _add_convert(sub: Any) -> None:
    convert = sub.add_parser("convert", help="convert a trace to another format")
    convert.add_argument("src", metavar="SRC", help="trace file or library name")
    convert.add_argument("dst", metavar="DST", help="output file")
    _reading_options(convert, "--from")
    _writing_options(convert, "--to")
    convert.set_defaults(func=cmd_convert)


def _add_plot(sub: Any) -> None:
    plot = sub.add_parser("plot", help="PNG of the rate over time")
    plot.add_argument("traces", nargs="+", metavar="PATH_OR_NAME")
    plot.add_argument("--out", required=True, metavar="PNG", help="output image")
    plot.add_argument(
        "--until-s",
        type=_number("--until-s", 0.0, True, MAX_TIME_S),
        default=None,
        help="plot only [0, UNTIL_S) (loops past the end)",
    )
    plot.add_argument("--log", action="store_true", help="logarithmic rate axis")
    _reading_options(plot)
    plot.set_defaults(func=cmd_plot)


def _add_generate(sub: Any) -> None:
    gen = sub.add_parser("generate", help="write a synthetic trace")
    gen.add_argument("kind", metavar="KIND", help="a generator (see `bwgym traces generators`)")
    gen.add_argument("--out", required=True, metavar="PATH", help="output file (format from its extension)")
    gen.add_argument(
        "--seed", type=_integer("--seed", 0, MAX_SEED), default=0, help="random seed (default 0)"
    )
    gen.add_argument(
        "--duration-s",
        type=_number("--duration-s", 0.0, True, MAX_TIME_S),
        default=None,
        help="length in seconds (default: the generator's)",
    )
    gen.add_argument("--name", default=None, help="trace name")
    gen.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="generator option, value as JSON (repeatable), e.g. --param good_bps=5e5",
    )
    _writing_options(gen)
    gen.set_defaults(func=cmd_generate)


def _add_listings(sub: Any) -> None:
    lib = sub.add_parser("list", help="the shipped trace library")
    _step_option(lib)
    lib.set_defaults(func=cmd_list)
    formats = sub.add_parser("formats", help="the trace file formats and their options")
    formats.set_defaults(func=cmd_formats)
    generators = sub.add_parser("generators", help="the trace generators and their options")
    generators.set_defaults(func=cmd_generators)


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``traces`` sub-command to an ``argparse`` sub-parsers object.

    Args:
        subparsers: What ``ArgumentParser.add_subparsers()`` returned.

    Returns:
        The ``traces`` parser. Each leaf sets ``args.func``, a handler ``(args) -> int``.

    """
    parser = subparsers.add_parser(
        "traces",
        help="inspect, convert, plot and generate bandwidth traces",
        description="Inspect, convert, plot and generate bandwidth traces. Traces are files (see "
        "`bwgym traces formats`) or library names (see `bwgym traces list`).",
    )
    # One-line errors, for the `traces` parser itself and for each of its sub-commands.
    parser.error = functools.partial(_traces_error, parser)  # type: ignore[method-assign]
    sub = parser.add_subparsers(
        dest="traces_command", metavar="COMMAND", required=True, parser_class=_SubcommandParser
    )
    for add in (_add_show, _add_convert, _add_plot, _add_generate, _add_listings):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bwgym traces <argv...>`` in-process and return its exit code (2 on bad input).

    Args:
        argv: The arguments after ``traces``, e.g. ``["show", "lte_drive"]``; default
            ``sys.argv[1:]``.

    """
    parser = argparse.ArgumentParser(prog="bwgym")
    register(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(["traces", *(sys.argv[1:] if argv is None else argv)])
    except SystemExit as exit_:  # --help (0) or a refused flag (2, its line already printed)
        return exit_.code if isinstance(exit_.code, int) else 2
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
