"""Read and write bandwidth traces in the formats people already have.

========== =========================== ==================================================================
format     typical file                 layout and how bwgym reads it
========== =========================== ==================================================================
mahimahi   ``*.mahimahi``, ``*.up``     One integer millisecond timestamp per line, each a delivery
                                        opportunity for one 1500-byte packet; the last timestamp is the
                                        loop period. A packet at ``t`` ms is counted in the millisecond
                                        ``[t - 1, t)`` (it has arrived by ``t``), then counts are summed
                                        into bins of ``bin_ms`` (default 500 ms) and turned into a rate.
                                        Resolution: one packet (12,000 bits) per bin.
cooked     ``*.cooked`` (Pensieve)      ``time_s Mbps`` per line, whitespace separated. As in Pensieve's
                                        simulator, the rate on line ``i`` holds over
                                        ``[time[i-1], time[i])``: the first line only marks time 0 (its
                                        rate is unused) and the last line marks the end. Times are
                                        re-based so the first is 0.
hsdpa      ``*.hsdpa`` (Norway HSDPA,   Six whitespace columns: unix time (s), time (ms), latitude,
           Ghent 4G logs)               longitude, bytes received, elapsed ms. Row ``i`` is a segment of
                                        ``elapsed`` ms at ``bytes * 8 / elapsed`` bit/s; segments follow
                                        each other. Resolution: 1 ms and 1 byte.
csv        ``*.csv``                    Header naming the units: ``time_s`` (or ``time_ms``) and one of
                                        ``bps``, ``kbps``, ``mbps``, ``bytes_per_s``. Each row's rate
                                        holds until the next row; a last row with an empty rate only marks
                                        the end (bwgym always writes one). Lumos5G files (a
                                        ``Throughput`` column in Mbit/s, no time column) are read as one
                                        row per second.
sabre      ``*.json`` (Sabre)           ``[{"duration_ms": .., "bandwidth_kbps": .., "latency_ms": ..}]``,
                                        segments one after the other; latency is written (``latency_ms``)
                                        but not read: bwgym models latency in :class:`~bwgym.traces.Link`.
========== =========================== ==================================================================

``load_trace(path)`` picks the format from the file extension, else from the content (a ``[``
starts Sabre JSON, a header row means CSV, and 1, 2 or 6 numeric columns mean Mahimahi, cooked
or HSDPA). ``path`` may also name a trace of the shipped library (``load_trace("lte_drive")``).

Malformed files raise :class:`TraceFormatError`, whose message names the file, the line and what
was expected.
"""

from __future__ import annotations

import bisect
import csv
import difflib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bwgym.traces.trace import BandwidthTrace

__all__ = [
    "FORMATS",
    "LIBRARY_DIR",
    "MAHIMAHI_BIN_MS",
    "MAHIMAHI_PACKET_BITS",
    "TraceFormatError",
    "detect_format",
    "format_for_path",
    "library_path",
    "list_library",
    "load_trace",
    "resolve_trace_path",
    "save_trace",
]

FORMATS: tuple[str, ...] = ("mahimahi", "cooked", "hsdpa", "csv", "sabre")
"""Names accepted by ``format=``."""

MAHIMAHI_PACKET_BITS = 1500 * 8
"""Bits per Mahimahi delivery opportunity (one MTU-sized packet)."""

MAHIMAHI_BIN_MS = 500
"""Default bin width, in ms, used to turn Mahimahi packet timestamps into a rate.

Half a second smooths single packets at low rates (100 kbit/s is ~8 packets/s, so 40 ms bins
would alternate between 0 and 300 kbit/s) while keeping sub-second variation of cellular traces.
Pass ``bin_ms=1`` to read the packet schedule exactly."""

LIBRARY_DIR = Path(__file__).resolve().parent / "library"
"""Folder of the shipped traces (regenerate with ``python -m bwgym.traces.make_library``)."""

_EXTENSIONS = {
    ".mahimahi": "mahimahi",
    ".mm": "mahimahi",
    ".up": "mahimahi",
    ".down": "mahimahi",
    ".cooked": "cooked",
    ".hsdpa": "hsdpa",
    ".csv": "csv",
    ".json": "sabre",
}

_EXPECTED = {
    "mahimahi": "one integer millisecond timestamp per line, non-decreasing (e.g. '12')",
    "cooked": "'time_s Mbps' per line, whitespace separated (e.g. '1.0 4.25')",
    "hsdpa": (
        "6 whitespace columns: unix_time_s time_ms latitude longitude bytes elapsed_ms "
        "(e.g. '1284372000 1000 59.9 10.7 125000 1000')"
    ),
    "csv": "a header naming the units (time_s and one of bps, kbps, mbps, bytes_per_s), then numbers",
    "sabre": 'a JSON list of {"duration_ms": .., "bandwidth_kbps": .., "latency_ms": ..}',
}

# CSV rate columns (lower-cased header name) -> factor to bits per second.
_CSV_RATE_UNITS = {"bps": 1.0, "kbps": 1e3, "mbps": 1e6, "bytes_per_s": 8.0, "throughput": 1e6}
_CSV_TIME_UNITS = {"time_s": 1.0, "time_ms": 1e-3}


class TraceFormatError(ValueError):
    """A trace file (or format name) that bwgym cannot read.

    Attributes:
        path: The file concerned.
        line: 1-based line number of the problem, or ``None`` when it concerns the whole file.

    """

    def __init__(self, path: str | os.PathLike[str], line: int | None, problem: str, expected: str) -> None:
        self.path = str(path)
        self.line = line
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}; expected {expected}")


# ---------------------------------------------------------------------------------------- library
def list_library() -> list[str]:
    """Names of the shipped traces (file names up to their first dot), sorted."""
    if not LIBRARY_DIR.is_dir():
        return []
    return sorted(
        p.name.split(".", 1)[0] for p in LIBRARY_DIR.iterdir() if p.is_file() and not p.name.startswith(".")
    )


def library_path(name: str) -> Path:
    """Path of a shipped trace.

    Args:
        name: Its name (``"lte_drive"``) or file name (``"lte_drive.cooked"``).

    Raises:
        FileNotFoundError: No such trace; the message suggests near names and lists the library.

    """
    if LIBRARY_DIR.is_dir():
        for p in sorted(LIBRARY_DIR.iterdir()):
            if p.is_file() and name in (p.name, p.name.split(".", 1)[0]):
                return p
    names = list_library()
    close = difflib.get_close_matches(name, names, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise FileNotFoundError(f"no library trace named {name!r}.{hint} Library traces: {', '.join(names)}")


def resolve_trace_path(source: str | os.PathLike[str]) -> Path:
    """Turn a file path or a library name into an existing path.

    Raises:
        FileNotFoundError: Neither a file nor a library trace.

    """
    path = Path(source)
    if path.is_file():
        return path
    if path.exists():
        raise FileNotFoundError(f"{path}: is not a file; expected a trace file or a library trace name")
    try:
        return library_path(str(source))
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{source}: no such file, and {err}") from None


# ---------------------------------------------------------------------------------------- helpers
def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise TraceFormatError(
            path, None, f"not a UTF-8 text file ({err.reason})", "a text trace file"
        ) from None


def _data_lines(text: str) -> list[tuple[int, list[str]]]:
    """Non-blank, non-comment lines as (1-based line number, whitespace-split fields)."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            rows.append((number, stripped.split()))
    return rows


def _empty_error(path: Path, fmt: str) -> TraceFormatError:
    return TraceFormatError(path, 1, "the file is empty (no data lines)", _EXPECTED[fmt])


def _column(
    path: Path, fmt: str, rows: Sequence[tuple[int, Sequence[str]]], col: int, label: str
) -> np.ndarray:
    """Parse column ``col`` of ``rows`` as floats, naming the first bad line on failure."""
    values = [fields[col] for _, fields in rows]
    try:
        return np.array(values, dtype=np.float64)
    except ValueError:
        for (number, _), value in zip(rows, values, strict=True):
            try:
                float(value)
            except ValueError:
                raise TraceFormatError(
                    path, number, f"{label} {value!r} is not a number", _EXPECTED[fmt]
                ) from None
        raise  # pragma: no cover - numpy and float() agree on what parses


def _check_field_count(path: Path, fmt: str, rows: Sequence[tuple[int, Sequence[str]]], count: int) -> None:
    for number, fields in rows:
        if len(fields) != count:
            raise TraceFormatError(
                path, number, f"found {len(fields)} fields ({' '.join(fields)!r})", _EXPECTED[fmt]
            )


def _first_bad(mask: np.ndarray) -> int | None:
    bad = np.flatnonzero(mask)
    return int(bad[0]) if bad.size else None


def _check_rates(path: Path, fmt: str, lines: Sequence[int], rates: np.ndarray, label: str) -> None:
    i = _first_bad(~np.isfinite(rates) | (rates < 0))
    if i is not None:
        raise TraceFormatError(
            path,
            lines[i],
            f"{label} is {_num(rates[i])}",
            f"a finite rate >= 0 (0 is an outage); {_EXPECTED[fmt]}",
        )


def _check_increasing(
    path: Path, fmt: str, lines: Sequence[int], times: np.ndarray, label: str, strict: bool
) -> None:
    steps = np.diff(times)
    i = _first_bad(~np.isfinite(times))
    if i is not None:
        raise TraceFormatError(
            path, lines[i], f"{label} is {_num(times[i])}", f"a finite number; {_EXPECTED[fmt]}"
        )
    i = _first_bad(steps <= 0 if strict else steps < 0)
    if i is not None:
        how = "goes backwards" if steps[i] < 0 else "repeats"
        raise TraceFormatError(
            path,
            lines[i + 1],
            f"{label} {how} ({_num(times[i + 1])} after {_num(times[i])} on line {lines[i]})",
            f"{'strictly increasing' if strict else 'non-decreasing'} {label}s",
        )


def _num(x: float) -> str:
    """Shortest text that reads back as exactly ``x`` (integers without a decimal point)."""
    x = float(x)
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


# ---------------------------------------------------------------------------------------- detection
def format_for_path(path: str | os.PathLike[str]) -> str | None:
    """Return the format implied by a file's extension, or ``None`` when it implies none."""
    return _EXTENSIONS.get(Path(path).suffix.lower())


def detect_format(path: str | os.PathLike[str], text: str | None = None) -> str:
    """Detect the format of a trace file, from its extension or else its content.

    Args:
        path: The file.
        text: Its content, when already read.

    Raises:
        TraceFormatError: Empty file, or a content that matches no format.

    """
    path = Path(path)
    by_extension = format_for_path(path)
    if by_extension is not None:
        return by_extension
    if text is None:
        text = _read_text(path)
    stripped = text.lstrip()
    if not stripped:
        raise TraceFormatError(path, 1, "the file is empty", f"one of the formats {', '.join(FORMATS)}")
    if stripped[0] in "[{":
        return "sabre"
    rows = _data_lines(text)
    if not rows:
        raise TraceFormatError(
            path, 1, "the file has only comments", f"one of the formats {', '.join(FORMATS)}"
        )
    number, fields = rows[0]
    first_line = text.splitlines()[number - 1]
    if "," in first_line:
        return "csv"
    try:
        [float(f) for f in fields]
    except ValueError:
        return "csv"  # a header row
    by_count = {1: "mahimahi", 2: "cooked", 6: "hsdpa"}
    if len(fields) in by_count:
        return by_count[len(fields)]
    raise TraceFormatError(
        path,
        number,
        f"cannot detect the format from {len(fields)} whitespace-separated numbers",
        "1 (mahimahi), 2 (cooked) or 6 (hsdpa) columns, a CSV header or a JSON list; "
        f"or pass format= one of {', '.join(FORMATS)}",
    )


def _check_format_name(fmt: str, path: str | os.PathLike[str]) -> str:
    if fmt not in FORMATS:
        close = difflib.get_close_matches(str(fmt), FORMATS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TraceFormatError(path, None, f"unknown format {fmt!r}{hint}", f"one of {', '.join(FORMATS)}")
    return fmt


# ---------------------------------------------------------------------------------------- readers
Segments = tuple[np.ndarray, np.ndarray]  # (n + 1 edges in seconds, n rates in bps)


def _read_mahimahi(path: Path, text: str, bin_ms: int) -> Segments:
    rows = _data_lines(text)
    if not rows:
        raise _empty_error(path, "mahimahi")
    _check_field_count(path, "mahimahi", rows, 1)
    lines = [n for n, _ in rows]
    stamps = _column(path, "mahimahi", rows, 0, "timestamp")
    i = _first_bad(~np.isfinite(stamps) | (stamps != np.round(stamps)) | (stamps < 0))
    if i is not None:
        raise TraceFormatError(path, lines[i], f"timestamp {rows[i][1][0]!r}", _EXPECTED["mahimahi"])
    _check_increasing(path, "mahimahi", lines, stamps, "timestamp", strict=False)
    ms = stamps.astype(np.int64)
    period_ms = int(ms[-1])
    if period_ms <= 0:
        raise TraceFormatError(
            path, lines[-1], "the last timestamp (the loop period) is 0", "a last timestamp > 0 ms"
        )
    n_bins = -(-period_ms // bin_ms)
    edges_ms = np.append(np.arange(n_bins, dtype=np.int64) * bin_ms, period_ms)
    # A packet stamped t has arrived by t ms: it belongs to the millisecond [t - 1, t).
    slots = np.maximum(ms - 1, 0)
    counts = np.bincount(slots // bin_ms, minlength=n_bins)[:n_bins]
    rates = counts * MAHIMAHI_PACKET_BITS / (np.diff(edges_ms) / 1000.0)
    return edges_ms / 1000.0, rates


def _read_cooked(path: Path, text: str) -> Segments:
    rows = _data_lines(text)
    if not rows:
        raise _empty_error(path, "cooked")
    _check_field_count(path, "cooked", rows, 2)
    lines = [n for n, _ in rows]
    times = _column(path, "cooked", rows, 0, "time")
    mbps = _column(path, "cooked", rows, 1, "rate")
    _check_rates(path, "cooked", lines, mbps, "the rate (Mbit/s)")
    _check_increasing(path, "cooked", lines, times, "time", strict=True)
    if len(rows) < 2:
        raise TraceFormatError(
            path,
            lines[0],
            "only one line: a cooked trace needs two times to span an interval",
            _EXPECTED["cooked"],
        )
    return times - times[0], mbps[1:] * 1e6


def _read_hsdpa(path: Path, text: str) -> Segments:
    rows = _data_lines(text)
    if not rows:
        raise _empty_error(path, "hsdpa")
    _check_field_count(path, "hsdpa", rows, 6)
    lines = [n for n, _ in rows]
    labels = ("unix time", "time (ms)", "latitude", "longitude", "bytes received", "elapsed ms")
    cols = [_column(path, "hsdpa", rows, c, labels[c]) for c in range(6)]
    _check_increasing(path, "hsdpa", lines, cols[0], "unix time", strict=False)
    _check_increasing(path, "hsdpa", lines, cols[1], "time (ms)", strict=False)
    nbytes, elapsed_ms = cols[4], cols[5]
    i = _first_bad(~np.isfinite(nbytes) | (nbytes < 0))
    if i is not None:
        raise TraceFormatError(
            path, lines[i], f"bytes received is {_num(nbytes[i])}", "a finite byte count >= 0"
        )
    i = _first_bad(~np.isfinite(elapsed_ms) | (elapsed_ms <= 0))
    if i is not None:
        raise TraceFormatError(
            path, lines[i], f"elapsed ms is {_num(elapsed_ms[i])}", "a finite duration > 0 ms"
        )
    edges = np.concatenate(([0.0], np.cumsum(elapsed_ms))) / 1000.0
    return edges, nbytes * 8000.0 / elapsed_ms


def _read_csv(path: Path, text: str) -> Segments:
    numbered = [
        (number, line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not numbered:
        raise _empty_error(path, "csv")
    # One record per physical line, so every error names its line (no multi-line quoted fields).
    parsed = [(number, [f.strip() for f in next(csv.reader([line]))]) for number, line in numbered]
    header_line, header = parsed[0]
    names = [h.lower() for h in header]
    try:
        [float(h) for h in header]
        numeric_header = True
    except ValueError:
        numeric_header = False
    if numeric_header:
        raise TraceFormatError(
            path, header_line, f"no header row (first row is {','.join(header)!r})", _EXPECTED["csv"]
        )
    rate_name = next((u for u in _CSV_RATE_UNITS if u in names), None)
    if rate_name is None:
        raise TraceFormatError(
            path,
            header_line,
            f"the header {','.join(header)!r} names no rate column with units",
            "a rate column named bps, kbps, mbps or bytes_per_s (or Lumos5G's Throughput, Mbit/s); "
            "rename the column to say its unit",
        )
    time_name = next((u for u in _CSV_TIME_UNITS if u in names), None)
    if time_name is None and rate_name != "throughput":
        raise TraceFormatError(
            path,
            header_line,
            f"the header {','.join(header)!r} has no time column",
            "a time_s (or time_ms) column",
        )
    body = parsed[1:]
    if not body:
        raise TraceFormatError(path, header_line, "a header but no data rows", _EXPECTED["csv"])
    rate_col = names.index(rate_name)
    time_col = names.index(time_name) if time_name is not None else None
    needed = max(rate_col, time_col if time_col is not None else 0) + 1
    for number, fields in body:
        if len(fields) < needed:
            raise TraceFormatError(
                path,
                number,
                f"found {len(fields)} fields where the header has {len(header)}",
                _EXPECTED["csv"],
            )
    lines = [n for n, _ in body]
    # A last row with an empty rate only marks the end time (bwgym writes one).
    end_only = time_col is not None and body[-1][1][rate_col] == ""
    rate_rows = body[:-1] if end_only else body
    if not rate_rows:
        raise TraceFormatError(path, lines[-1], "an end row but no rate rows", _EXPECTED["csv"])
    rates = (
        _column(path, "csv", [(n, [f[rate_col]]) for n, f in rate_rows], 0, header[rate_col])
        * _CSV_RATE_UNITS[rate_name]
    )
    _check_rates(path, "csv", lines, rates, f"{header[rate_col]}")
    if time_col is None:
        # Lumos5G logs one throughput sample per second and has no time column.
        return np.arange(rates.size + 1, dtype=np.float64), rates
    times = (
        _column(path, "csv", [(n, [f[time_col]]) for n, f in body], 0, header[time_col])
        * _CSV_TIME_UNITS[time_name]
    )
    _check_increasing(path, "csv", lines, times, header[time_col], strict=True)
    times = times - times[0]
    if end_only:
        return times, rates
    if rates.size < 2:
        raise TraceFormatError(
            path,
            lines[-1],
            "a single row: its duration is unknown",
            "a second row, or an end row with the end time and an empty rate (e.g. '10.0,')",
        )
    return np.append(times, 2 * times[-1] - times[-2]), rates


def _json_entry_lines(text: str) -> list[int]:
    """1-based line of each element of the top-level JSON list (for error messages)."""
    newlines = [i for i, c in enumerate(text) if c == "\n"]
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    starts = []
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return starts
        starts.append(bisect.bisect_right(newlines, pos - 1) + 1)
        _, pos = decoder.raw_decode(text, pos)


def _read_sabre(path: Path, text: str) -> Segments:
    if not text.strip():
        raise _empty_error(path, "sabre")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise TraceFormatError(path, err.lineno, f"invalid JSON ({err.msg})", _EXPECTED["sabre"]) from None
    if not isinstance(data, list):
        raise TraceFormatError(path, 1, f"top-level JSON is a {type(data).__name__}", _EXPECTED["sabre"])
    if not data:
        raise TraceFormatError(path, 1, "an empty list", _EXPECTED["sabre"])
    lines = _json_entry_lines(text)
    durations, rates = [], []
    for number, entry in zip(lines, data, strict=True):
        if not isinstance(entry, dict):
            raise TraceFormatError(
                path, number, f"an entry that is a {type(entry).__name__}", _EXPECTED["sabre"]
            )
        values = []
        for key in ("duration_ms", "bandwidth_kbps"):
            value = entry.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                shown = "missing" if key not in entry else repr(value)
                raise TraceFormatError(
                    path, number, f"{key} is {shown}", f"a number for {key}; {_EXPECTED['sabre']}"
                )
            values.append(float(value))
        durations.append(values[0])
        rates.append(values[1])
    dur = np.array(durations)
    i = _first_bad(~np.isfinite(dur) | (dur <= 0))
    if i is not None:
        raise TraceFormatError(path, lines[i], f"duration_ms is {_num(dur[i])}", "a finite duration_ms > 0")
    kbps = np.array(rates)
    _check_rates(path, "sabre", lines, kbps, "bandwidth_kbps")
    return np.concatenate(([0.0], np.cumsum(dur))) / 1000.0, kbps * 1e3


def load_trace(
    source: str | os.PathLike[str],
    format: str | None = None,  # noqa: A002 - the public name the issue asks for
    *,
    name: str | None = None,
    loop: bool = True,
    bin_ms: int = MAHIMAHI_BIN_MS,
) -> BandwidthTrace:
    """Load a trace from a file or from the shipped library.

    Args:
        source: A file path, or a library name such as ``"lte_drive"`` (see :func:`list_library`).
        format: One of :data:`FORMATS`; detected from the extension or content when ``None``.
        name: Name of the trace; defaults to the file name up to its first dot.
        loop: ``loop`` flag of the trace.
        bin_ms: Mahimahi only: bin width in ms over which packets are counted into a rate.

    Raises:
        FileNotFoundError: ``source`` is neither a file nor a library trace.
        TraceFormatError: Unknown format name, undetectable format, or malformed content.

    """
    path = resolve_trace_path(source)
    text = _read_text(path)
    fmt = detect_format(path, text) if format is None else _check_format_name(format, path)
    if fmt == "mahimahi":
        if isinstance(bin_ms, bool) or not isinstance(bin_ms, (int, np.integer)) or bin_ms <= 0:
            raise ValueError(f"expected bin_ms to be a positive integer, got {bin_ms!r}")
        edges, rates = _read_mahimahi(path, text, int(bin_ms))
    elif fmt == "cooked":
        edges, rates = _read_cooked(path, text)
    elif fmt == "hsdpa":
        edges, rates = _read_hsdpa(path, text)
    elif fmt == "csv":
        edges, rates = _read_csv(path, text)
    else:
        edges, rates = _read_sabre(path, text)
    label = path.name.split(".", 1)[0] if name is None else name
    return BandwidthTrace(edges, rates, label, loop=loop)


# ---------------------------------------------------------------------------------------- writers
def _write_mahimahi(trace: BandwidthTrace, path: Path) -> str:
    period_ms = round(trace.duration_s * 1000)
    if period_ms <= 0:
        raise ValueError(f"{path}: expected a trace lasting >= 1 ms for mahimahi, got {trace.duration_s} s")
    cum = np.asarray(trace.cumulative_bits(np.arange(period_ms + 1) / 1000.0))
    n_packets = math.floor(cum[-1] / MAHIMAHI_PACKET_BITS + 1e-9)
    if n_packets == 0:
        raise ValueError(
            f"{path}: expected at least one 1500-byte packet per loop for mahimahi, got {cum[-1]:g} bits "
            f"in {trace.duration_s:g} s; use a longer trace or another format"
        )
    targets = MAHIMAHI_PACKET_BITS * np.arange(1, n_packets + 1, dtype=np.float64)
    # Packet k goes out at the first millisecond by which the trace has carried k packets;
    # the tolerance absorbs float error where a target falls exactly on a millisecond.
    tolerance = 1e-9 * max(cum[-1], 1.0)
    stamps = np.searchsorted(cum, targets - tolerance, side="left")
    # Mahimahi loops at its last timestamp: pin the last packet to the period end.
    stamps[-1] = period_ms
    return "\n".join(map(str, stamps.tolist())) + "\n"


def _write_cooked(trace: BandwidthTrace) -> str:
    edges, rates = trace.edges_s, trace.bps
    lines = [f"{_num(edges[0])} {_num(rates[0] / 1e6)}"]
    lines += [f"{_num(t)} {_num(r / 1e6)}" for t, r in zip(edges[1:], rates, strict=True)]
    return "\n".join(lines) + "\n"


def _write_hsdpa(trace: BandwidthTrace, base_unix_s: int = 0) -> str:
    edges_ms = np.unique(np.round(trace.edges_s * 1000.0).astype(np.int64))
    if edges_ms.size < 2:
        raise ValueError(f"expected a trace lasting >= 1 ms for hsdpa, got {trace.duration_s} s")
    cum_bytes = np.round(np.asarray(trace.cumulative_bits(edges_ms / 1000.0)) / 8.0).astype(np.int64)
    cum_bytes[0] = 0
    nbytes, elapsed = np.diff(cum_bytes), np.diff(edges_ms)
    ends = edges_ms[1:]
    return "".join(
        f"{base_unix_s + e // 1000} {e} 0.0 0.0 {b} {d}\n"
        for e, b, d in zip(ends.tolist(), nbytes.tolist(), elapsed.tolist(), strict=True)
    )


def _write_csv(trace: BandwidthTrace, unit: str) -> str:
    key = unit.lower()
    if key not in _CSV_RATE_UNITS or key == "throughput":
        raise ValueError(f"expected unit one of bps, kbps, mbps, bytes_per_s, got {unit!r}")
    scale = _CSV_RATE_UNITS[key]
    lines = [f"time_s,{key}"]
    lines += [f"{_num(t)},{_num(r / scale)}" for t, r in zip(trace.times_s, trace.bps, strict=True)]
    lines.append(f"{_num(trace.duration_s)},")
    return "\n".join(lines) + "\n"


def _write_sabre(trace: BandwidthTrace, latency_ms: float) -> str:
    durations_ms = np.diff(trace.edges_s) * 1000.0
    entries = [
        f'{{"duration_ms": {_num(d)}, "bandwidth_kbps": {_num(r / 1e3)}, "latency_ms": {_num(latency_ms)}}}'
        for d, r in zip(durations_ms, trace.bps, strict=True)
    ]
    return "[\n" + ",\n".join(entries) + "\n]\n"


def save_trace(
    trace: BandwidthTrace,
    path: str | os.PathLike[str],
    format: str | None = None,  # noqa: A002 - the public name the issue asks for
    *,
    unit: str = "bps",
    latency_ms: float = 0.0,
) -> Path:
    """Write a trace; the parent folder is created when missing.

    Args:
        trace: The trace.
        path: Destination file.
        format: One of :data:`FORMATS`; taken from the extension when ``None``.
        unit: CSV only: rate column, one of ``bps``, ``kbps``, ``mbps``, ``bytes_per_s``.
        latency_ms: Sabre only: the ``latency_ms`` written in every entry.

    Returns:
        The path written.

    Raises:
        TraceFormatError: Unknown format name, or no format given and none implied by the extension.
        ValueError: The trace cannot be written in that format (e.g. less than one Mahimahi packet).

    """
    path = Path(path)
    if format is None:
        fmt = format_for_path(path)
        if fmt is None:
            raise TraceFormatError(
                path,
                None,
                f"cannot tell the format from the extension {path.suffix!r}",
                f"format= one of {', '.join(FORMATS)}, "
                f"or an extension among {', '.join(sorted(_EXTENSIONS))}",
            )
    else:
        fmt = _check_format_name(format, path)
    if fmt == "mahimahi":
        text = _write_mahimahi(trace, path)
    elif fmt == "cooked":
        text = _write_cooked(trace)
    elif fmt == "hsdpa":
        text = _write_hsdpa(trace)
    elif fmt == "csv":
        text = _write_csv(trace, unit)
    else:
        if not (math.isfinite(latency_ms) and latency_ms >= 0):
            raise ValueError(f"expected a finite latency_ms >= 0, got {latency_ms}")
        text = _write_sabre(trace, latency_ms)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
