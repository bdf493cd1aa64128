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

Each format is a :class:`TraceFormat` registered in :data:`~bwgym.common.registry.TRACE_FORMATS`
(``bwgym traces formats`` lists them with their options): its reader, its writer, its file
extensions and how its content looks. ``load_trace(path)`` picks the format from the file
extension, else from the content (a ``[`` starts Sabre JSON, a header row means CSV, and 1, 2 or 6
numeric columns mean Mahimahi, cooked or HSDPA). ``path`` may also name a trace of the shipped
library (``load_trace("lte_drive")``). A format of your own, from your own module::

    @register_trace_format("square", description="'seconds bps' pairs, comma separated")
    class Square(TraceFormat):
        extensions = (".square",)
        expected = "'seconds,bps' per line"

        def read(self, path, text, options):
            ...  # return (n + 1 edges in seconds, n rates in bit/s); raise TraceFormatError

Then ``load_trace("x.square")`` reads it, and ``save_trace`` refuses it until it has a ``write``.

Every file is UTF-8 text; a leading byte-order mark is accepted in every format.

Malformed files raise :class:`TraceFormatError`, whose message names the file, the line and what
was expected. So does every other failure to read one (binary content, a directory, no permission,
a name too long), and so do the limits that keep a hostile file from exhausting memory: files
above :data:`MAX_TRACE_FILE_BYTES`, rates above :data:`~bwgym.traces.trace.MAX_BPS` (1 Tbit/s),
times beyond :data:`~bwgym.traces.trace.MAX_TIME_S` and traces of more than
:data:`~bwgym.traces.trace.MAX_TRACE_SAMPLES` segments (a Mahimahi file stamped up to 10^12 ms).
A missing file raises :class:`TraceNotFoundError`, both a ``TraceFormatError`` and a
``FileNotFoundError``.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import io
import json
import math
import os
import re
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bwgym.common.files import atomic_write_text
from bwgym.common.registry import TRACE_FORMATS, Entry, OptionError, UnknownNameError, register_trace_format
from bwgym.traces.trace import MAX_BPS, MAX_TIME_S, MAX_TRACE_SAMPLES, BandwidthTrace, check_samples

__all__ = [
    "LIBRARY_DIR",
    "MAHIMAHI_BIN_MS",
    "MAHIMAHI_PACKET_BITS",
    "MAX_TRACE_FILE_BYTES",
    "CsvOptions",
    "MahimahiOptions",
    "SabreOptions",
    "Segments",
    "TraceFormat",
    "TraceFormatError",
    "TraceNotFoundError",
    "detect_format",
    "format_for_path",
    "library_path",
    "list_library",
    "load_trace",
    "output_format",
    "resolve_trace_path",
    "save_trace",
]

MAHIMAHI_PACKET_BITS = 1500 * 8
"""Bits per Mahimahi delivery opportunity (one MTU-sized packet)."""

MAHIMAHI_BIN_MS = 500
"""Default bin width, in ms, used to turn Mahimahi packet timestamps into a rate.

Half a second smooths single packets at low rates (100 kbit/s is ~8 packets/s, so 40 ms bins
would alternate between 0 and 300 kbit/s) while keeping sub-second variation of cellular traces.
Pass ``bin_ms=1`` to read the packet schedule exactly."""

MAX_TRACE_FILE_BYTES = 64 * 2**20
"""Largest trace file :func:`load_trace` reads, in bytes (64 MiB).

About 8 million Mahimahi packets (an hour at 27 Mbit/s) or 4 million cooked lines; parsing
streams into compact arrays, so reading a file at the limit peaks at a few hundred MB. Bigger
files are refused before they are read, with their size and this limit in the message."""

LIBRARY_DIR = Path(__file__).resolve().parent / "library"
"""Folder of the shipped traces (regenerate with ``python -m bwgym.traces.make_library``)."""

# CSV rate columns (lower-cased header name) -> factor to bits per second.
_CSV_RATE_UNITS = {"bps": 1.0, "kbps": 1e3, "mbps": 1e6, "bytes_per_s": 8.0, "throughput": 1e6}
_CSV_TIME_UNITS = {"time_s": 1.0, "time_ms": 1e-3}
# The units a CSV file is written in (Lumos5G's Throughput column is read only).
_CSV_WRITE_UNITS = tuple(u for u in _CSV_RATE_UNITS if u != "throughput")

Segments = tuple[np.ndarray, np.ndarray]
"""What a reader returns: ``n + 1`` segment edges in seconds (from 0) and ``n`` rates in bit/s."""


class TraceFormatError(ValueError):
    """A trace file (or format name) that bwgym cannot read.

    Every failure of :func:`load_trace` is one: malformed content, a file that is binary, empty,
    too large (:data:`MAX_TRACE_FILE_BYTES`), unreadable (permissions, a directory, a name too
    long) or missing (then a :class:`TraceNotFoundError`, also a ``FileNotFoundError``).

    Attributes:
        path: The file concerned.
        line: 1-based line number of the problem, or ``None`` when it concerns the whole file.

    """

    def __init__(self, path: str | os.PathLike[str], line: int | None, problem: str, expected: str) -> None:
        self.path = str(path)
        self.line = None if line is None else int(line)
        where = f"{self.path}, line {self.line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}; expected {expected}")


class TraceNotFoundError(TraceFormatError, FileNotFoundError):
    """No trace file and no library trace of that name (or the path is not a regular file).

    Both a :class:`TraceFormatError` (so a ``ValueError``) and a ``FileNotFoundError``.
    """


class TraceFormat:
    """A trace file format: its reader, optionally its writer, and how to recognise its files.

    Subclass it, set the class attributes, and register the class with
    ``@register_trace_format(name, description=..., options=<frozen dataclass or None>)``. Every
    use makes a fresh instance, so a format keeps no state between files. ``options`` is the
    registered options dataclass, filled from ``load_trace``'s and ``save_trace``'s keywords (None
    when the format takes none).

    Attributes:
        extensions: Lower-case file suffixes, dot included, that imply the format.
        expected: One line on the layout; it ends the message of every error about a malformed file.
        looks_like: What :meth:`sniff` recognises, for the message when no format does ("" if it
            never sniffs).

    """

    extensions: ClassVar[tuple[str, ...]] = ()
    expected: ClassVar[str] = "a trace file"
    looks_like: ClassVar[str] = ""

    def read(self, path: Path, text: str, options: Any) -> Segments:
        """The segments of the file at ``path`` whose UTF-8 content is ``text``.

        Raises:
            TraceFormatError: Malformed content, naming the line and :attr:`expected`.

        """
        raise NotImplementedError(f"{type(self).__name__} does not read")

    def write(self, trace: BandwidthTrace, path: Path, options: Any) -> str:
        """The text of ``trace`` in this format (``path`` is for messages). Optional.

        Raises:
            ValueError: The trace cannot be written in this format.

        """
        raise NotImplementedError(f"{type(self).__name__} does not write")

    def sniff(self, text: str, first_line: str) -> bool:
        """Whether content detection should pick this format. Optional.

        Args:
            text: The whole file.
            first_line: Its first line that is neither blank nor a ``#`` comment, stripped.

        """
        return False

    @property
    def writes(self) -> bool:
        """Whether the format has a writer."""
        return type(self).write is not TraceFormat.write


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
    close = difflib.get_close_matches(str(name), names, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise FileNotFoundError(
        f"no library trace named {_clip(repr(name))}.{hint} Library traces: {', '.join(names)}"
    )


def resolve_trace_path(source: str | os.PathLike[str]) -> Path:
    """Turn a file path or a library name into an existing path.

    Raises:
        TraceNotFoundError: Neither a file nor a library trace, or not a regular file (a
            directory, a device); also a ``FileNotFoundError``.
        TraceFormatError: ``source`` is not a path, or the path cannot be looked at (a name too
            long, a folder without permission).

    """
    expected = "a trace file or a library trace name (see `bwgym traces list`)"
    if not isinstance(source, (str, os.PathLike)):
        raise TraceFormatError(_clip(repr(source)), None, f"not a path ({type(source).__name__})", expected)
    if str(source) == "":
        raise TraceNotFoundError("''", None, "an empty path", expected)
    path = Path(source)
    try:
        if path.is_file():
            return path
        exists = path.exists()
    except OSError as err:
        raise TraceFormatError(path, None, f"cannot look at the path ({_strerror(err)})", expected) from None
    if exists:
        kind = "a directory" if path.is_dir() else "not a regular file"
        raise TraceNotFoundError(path, None, f"is {kind}", expected)
    try:
        return library_path(str(source))
    except FileNotFoundError as err:
        raise TraceNotFoundError(path, None, f"no such file, and {err}", expected) from None


# ---------------------------------------------------------------------------------------- helpers
def _strerror(err: OSError) -> str:
    return err.strerror or type(err).__name__


def _clip(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters, so a hostile value cannot flood a message."""
    return text if len(text) <= limit else f"{text[: limit - 20]}...({len(text):,} characters)"


def _read_text(path: Path) -> str:
    """Read the file's UTF-8 text, a leading BOM dropped, at most :data:`MAX_TRACE_FILE_BYTES`."""
    too_large = (
        f"a trace file of at most {MAX_TRACE_FILE_BYTES:,} bytes "
        "(bwgym.traces.MAX_TRACE_FILE_BYTES); resample it more coarsely or split it"
    )
    try:
        size = path.stat().st_size
        if size > MAX_TRACE_FILE_BYTES:
            raise TraceFormatError(path, None, f"the file is {size:,} bytes", too_large)
        with open(path, "rb") as f:
            data = f.read(MAX_TRACE_FILE_BYTES + 1)  # a file growing, or one that lies about its size
    except OSError as err:
        raise TraceFormatError(
            path, None, f"cannot read the file ({_strerror(err)})", "a readable trace file"
        ) from None
    if len(data) > MAX_TRACE_FILE_BYTES:
        raise TraceFormatError(
            path, None, f"the file has more than {MAX_TRACE_FILE_BYTES:,} bytes", too_large
        )
    try:
        text = data.decode("utf-8-sig")  # drops a leading byte-order mark
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise TraceFormatError(
            path, line, f"not a UTF-8 text file ({err.reason} at byte {err.start})", "a text trace file"
        ) from None
    nul = text.find("\x00")
    if nul >= 0:
        raise TraceFormatError(
            path, text.count("\n", 0, nul) + 1, "a NUL character: a binary file", "a text trace file"
        )
    return text


def _iter_data_lines(text: str) -> Iterator[tuple[int, str]]:
    """Non-blank, non-comment lines as (1-based line number, stripped line), read lazily."""
    for number, line in enumerate(io.StringIO(text, newline=None), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield number, stripped


def _empty_error(path: Path, expected: str) -> TraceFormatError:
    return TraceFormatError(path, 1, "the file is empty (no data lines)", expected)


def _numeric_table(
    path: Path, expected: str, text: str, labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Parse whitespace-separated numeric rows with one column per label.

    Returns:
        (line numbers, ``(rows, len(labels))`` float64 values). Parsing streams into compact
        arrays, so memory stays a few bytes per number whatever the file.

    """
    k = len(labels)
    numbers, values = array("q"), array("d")
    for number, line in _iter_data_lines(text):
        fields = line.split()
        if len(fields) != k:
            raise TraceFormatError(
                path, number, f"found {len(fields)} fields ({_clip(' '.join(fields))!r})", expected
            )
        for label, field in zip(labels, fields, strict=True):
            try:
                values.append(float(field))
            except ValueError:
                raise TraceFormatError(
                    path, number, f"{label} {_clip(field)!r} is not a number", expected
                ) from None
        numbers.append(number)
    if not numbers:
        raise _empty_error(path, expected)
    return np.array(numbers, dtype=np.int64), np.array(values, dtype=np.float64).reshape(-1, k)


def _first_bad(mask: np.ndarray) -> int | None:
    bad = np.flatnonzero(mask)
    return int(bad[0]) if bad.size else None


def _check_rates(
    path: Path, expected: str, lines: Sequence[int], values: np.ndarray, label: str, to_bps: float = 1.0
) -> None:
    """Refuse non-finite, negative or absurd (> :data:`MAX_BPS`) rates, naming the line."""
    with np.errstate(over="ignore", invalid="ignore"):
        bps = values * to_bps
    i = _first_bad(~np.isfinite(bps) | (bps < 0) | (bps > MAX_BPS))
    if i is not None:
        absurd = bool(np.isfinite(bps[i]) and bps[i] > MAX_BPS)
        problem = f"{label} is {_num(values[i])}" + (f" ({bps[i]:.4g} bit/s)" if absurd else "")
        raise TraceFormatError(
            path,
            lines[i],
            problem,
            f"a finite rate >= 0 (0 is an outage) and <= MAX_BPS={MAX_BPS:g} bit/s; {expected}",
        )


def _check_increasing(
    path: Path,
    expected: str,
    lines: Sequence[int],
    times: np.ndarray,
    label: str,
    strict: bool,
    to_s: float = 1.0,
) -> None:
    """Refuse non-finite, absurd (beyond :data:`MAX_TIME_S`) or unordered times, naming the line."""
    i = _first_bad(~np.isfinite(times) | (np.abs(times) * to_s > MAX_TIME_S))
    if i is not None:
        raise TraceFormatError(
            path,
            lines[i],
            f"{label} is {_num(times[i])}",
            f"a finite {label} of at most MAX_TIME_S={MAX_TIME_S:g} s in magnitude; {expected}",
        )
    steps = np.diff(times)
    i = _first_bad(steps <= 0 if strict else steps < 0)
    if i is not None:
        how = "goes backwards" if steps[i] < 0 else "repeats"
        raise TraceFormatError(
            path,
            lines[i + 1],
            f"{label} {how} ({_num(times[i + 1])} after {_num(times[i])} on line {lines[i]})",
            f"{'strictly increasing' if strict else 'non-decreasing'} {label}s",
        )


def _check_duration(path: Path, lines: Sequence[int], edges_s: np.ndarray, label: str) -> None:
    """Refuse cumulative durations beyond :data:`MAX_TIME_S`, naming the line that crosses it."""
    i = _first_bad(~(edges_s[1:] <= MAX_TIME_S))
    if i is not None:
        raise TraceFormatError(
            path,
            lines[i],
            f"the trace reaches {edges_s[i + 1]:.4g} s at this {label}",
            f"a trace lasting at most MAX_TIME_S={MAX_TIME_S:g} s",
        )


def _num(x: float) -> str:
    """Shortest text that reads back as exactly ``x`` (integers without a decimal point)."""
    x = float(x)
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


# ---------------------------------------------------------------------------------------- detection
def _all_numbers(fields: Sequence[str]) -> bool:
    try:
        [float(f) for f in fields]
    except ValueError:
        return False
    return True


def _count_numbers(line: str) -> int | None:
    """How many whitespace-separated numbers ``line`` holds, or None when a field is not one."""
    fields = line.split()
    return len(fields) if _all_numbers(fields) else None


def _is_json(text: str) -> bool:
    return re.match(r"\s*[\[{]", text) is not None


def format_for_path(path: str | os.PathLike[str]) -> str | None:
    """Return the format implied by a file's extension, or ``None`` when it implies none.

    Raises:
        TraceFormatError: Two registered formats claim the extension.

    """
    suffix = Path(path).suffix.lower()
    claims = [e.name for e in TRACE_FORMATS.entries() if suffix and suffix in e.target.extensions]
    if len(claims) > 1:
        raise TraceFormatError(
            path,
            None,
            f"the extension {suffix!r} is claimed by {' and '.join(claims)}",
            "format= one of them",
        )
    return claims[0] if claims else None


def detect_format(path: str | os.PathLike[str], text: str | None = None) -> str:
    """Detect the format of a trace file, from its extension or else its content.

    Args:
        path: The file.
        text: Its content, when already read.

    Raises:
        TraceFormatError: Empty, unreadable or binary file, or a content that no format (or more than
            one) recognises.

    """
    path = Path(path)
    by_extension = format_for_path(path)
    if by_extension is not None:
        return by_extension
    if text is None:
        text = _read_text(path)
    names = TRACE_FORMATS.names()
    if not text.strip():
        raise TraceFormatError(path, 1, "the file is empty", f"one of the formats {', '.join(names)}")
    first = next(_iter_data_lines(text), None)
    if first is None:
        raise TraceFormatError(
            path, 1, "the file has only comments", f"one of the formats {', '.join(names)}"
        )
    number, line = first
    found = [e.name for e in TRACE_FORMATS.entries() if e.target().sniff(text, line)]
    if len(found) == 1:
        return found[0]
    if found:
        problem = f"the content looks like several formats ({', '.join(found)})"
        raise TraceFormatError(path, number, problem, f"format= one of {', '.join(found)}")
    count = _count_numbers(line)
    seen = f"{count} whitespace-separated numbers" if count is not None else f"the line {_clip(line)!r}"
    layouts = [f"{e.target.looks_like} ({e.name})" for e in TRACE_FORMATS.entries() if e.target.looks_like]
    raise TraceFormatError(
        path,
        number,
        f"cannot detect the format from {seen}",
        f"{', '.join(layouts)}; or pass format= one of {', '.join(names)}",
    )


def _format_entry(fmt: Any, path: str | os.PathLike[str]) -> Entry:
    """The registered format named ``fmt``; an unknown name is a :class:`TraceFormatError` about ``path``."""
    try:
        return TRACE_FORMATS.get(fmt)
    except UnknownNameError:
        names = TRACE_FORMATS.names()
        close = difflib.get_close_matches(str(fmt), names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TraceFormatError(
            path, None, f"unknown format {_clip(repr(fmt))}{hint}", f"one of {', '.join(names)}"
        ) from None


def _option_names(entry: Entry) -> set[str]:
    return {f.name for f in dataclasses.fields(entry.options)} if entry.options is not None else set()


def _format_options(entry: Entry, values: Mapping[str, Any]) -> Any:
    """The format's options from ``values``, leaving out the options of other formats.

    One call of ``load_trace`` may carry the options of whichever format the file turns out to
    be (``bin_ms`` for Mahimahi): an option another registered format takes is not this one's
    business. An option no format takes is an error.
    """
    own = _option_names(entry)
    every = set().union(*(_option_names(e) for e in TRACE_FORMATS.entries()))
    for key in values:
        if key not in every:
            close = difflib.get_close_matches(str(key), sorted(every), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise OptionError(f"unknown trace format option {key!r}{hint}; options: {sorted(every)}")
    mine = {key: value for key, value in values.items() if key in own}
    return entry.make_options(mine, where=f"trace format {entry.name!r}")


# ---------------------------------------------------------------------------------------- formats
@dataclass(frozen=True)
class MahimahiOptions:
    """Options of the Mahimahi format."""

    bin_ms: int = MAHIMAHI_BIN_MS
    """Reading: the bin width in ms over which packets are counted into a rate."""

    def __post_init__(self) -> None:
        if not 1 <= self.bin_ms <= 10**9:
            raise ValueError(
                f"expected bin_ms to be an integer in [1, 10^9] ms, got {_clip(repr(self.bin_ms))}"
            )


@register_trace_format(
    "mahimahi",
    description="Mahimahi packet schedule: one millisecond timestamp per 1500-byte packet",
    options=MahimahiOptions,
)
class Mahimahi(TraceFormat):
    """Mahimahi: a line per delivery opportunity; the last timestamp is the loop period."""

    extensions = (".mahimahi", ".mm", ".up", ".down")
    expected = "one integer millisecond timestamp per line, non-decreasing (e.g. '12')"
    looks_like = "1 number per line"

    def sniff(self, text: str, first_line: str) -> bool:
        """One number per line."""
        return _count_numbers(first_line) == 1

    def read(self, path: Path, text: str, options: MahimahiOptions) -> Segments:
        """Packets counted into bins of ``options.bin_ms``."""
        bin_ms = options.bin_ms
        lines, table = _numeric_table(path, self.expected, text, ("timestamp",))
        stamps = table[:, 0]
        i = _first_bad(~np.isfinite(stamps) | (stamps != np.round(stamps)) | (stamps < 0))
        if i is not None:
            raise TraceFormatError(path, lines[i], f"timestamp {_num(stamps[i])!r}", self.expected)
        _check_increasing(path, self.expected, lines, stamps, "timestamp", strict=False, to_s=1e-3)
        ms = stamps.astype(np.int64)
        period_ms = int(ms[-1])
        if period_ms <= 0:
            raise TraceFormatError(
                path, lines[-1], "the last timestamp (the loop period) is 0", "a last timestamp > 0 ms"
            )
        n_bins = -(-period_ms // bin_ms)
        if n_bins > MAX_TRACE_SAMPLES:
            raise TraceFormatError(
                path,
                lines[-1],
                f"the loop period of {period_ms:,} ms would need {n_bins:,} bins of {bin_ms} ms, more than "
                f"the limit MAX_TRACE_SAMPLES={MAX_TRACE_SAMPLES:,} (bwgym.traces.MAX_TRACE_SAMPLES)",
                f"a last timestamp of at most {MAX_TRACE_SAMPLES * bin_ms:,} ms at bin_ms={bin_ms}, "
                "or a larger bin_ms",
            )
        edges_ms = np.append(np.arange(n_bins, dtype=np.int64) * bin_ms, period_ms)
        # A packet stamped t has arrived by t ms: it belongs to the millisecond [t - 1, t).
        slots = np.maximum(ms - 1, 0)
        counts = np.bincount(slots // bin_ms, minlength=n_bins)[:n_bins]
        rates = counts * MAHIMAHI_PACKET_BITS / (np.diff(edges_ms) / 1000.0)
        i = _first_bad(rates > MAX_BPS)
        if i is not None:
            raise TraceFormatError(
                path,
                None,
                f"{int(counts[i]):,} packets in the bin starting at {int(edges_ms[i]):,} ms make "
                f"{rates[i]:.4g} bit/s",
                f"rates <= MAX_BPS={MAX_BPS:g} bit/s (fewer packets per ms, or a larger bin_ms)",
            )
        return edges_ms / 1000.0, rates

    def write(self, trace: BandwidthTrace, path: Path, options: MahimahiOptions) -> str:
        """Packet k at the first millisecond by which the trace has carried k packets."""
        period_ms = round(trace.duration_s * 1000)
        if period_ms <= 0:
            raise ValueError(
                f"{path}: expected a trace lasting >= 1 ms for mahimahi, got {trace.duration_s} s"
            )
        check_samples(period_ms + 1, f"writing {path} as mahimahi (one sample per ms)")
        check_samples(
            math.floor(trace.total_bits / MAHIMAHI_PACKET_BITS + 1e-9),
            f"writing {path} as mahimahi (one line per 1500-byte packet)",
        )
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


@register_trace_format("cooked", description="Pensieve's cooked traces: 'time_s Mbps' per line")
class Cooked(TraceFormat):
    """Pensieve "cooked": the rate on line i holds over [time[i-1], time[i])."""

    extensions = (".cooked",)
    expected = "'time_s Mbps' per line, whitespace separated (e.g. '1.0 4.25')"
    looks_like = "2 numbers per line"

    def sniff(self, text: str, first_line: str) -> bool:
        """Two numbers per line."""
        return _count_numbers(first_line) == 2

    def read(self, path: Path, text: str, options: None) -> Segments:
        """Times re-based to 0; the first line's rate is unused."""
        lines, table = _numeric_table(path, self.expected, text, ("time", "rate"))
        times, mbps = table[:, 0], table[:, 1]
        _check_rates(path, self.expected, lines, mbps, "the rate (Mbit/s)", 1e6)
        _check_increasing(path, self.expected, lines, times, "time", strict=True)
        if len(lines) < 2:
            raise TraceFormatError(
                path,
                lines[0],
                "only one line: a cooked trace needs two times to span an interval",
                self.expected,
            )
        edges = times - times[0]
        _check_duration(path, lines, edges, "time")
        return edges, mbps[1:] * 1e6

    def write(self, trace: BandwidthTrace, path: Path, options: None) -> str:
        """A first line at time 0 (repeating the first rate), then each segment's end and rate."""
        edges, rates = trace.edges_s, trace.bps
        lines = [f"{_num(edges[0])} {_num(rates[0] / 1e6)}"]
        lines += [f"{_num(t)} {_num(r / 1e6)}" for t, r in zip(edges[1:], rates, strict=True)]
        return "\n".join(lines) + "\n"


@register_trace_format("hsdpa", description="Norway HSDPA / Ghent 4G logs: bytes received per elapsed ms")
class Hsdpa(TraceFormat):
    """Six columns: unix time (s), time (ms), latitude, longitude, bytes received, elapsed ms."""

    extensions = (".hsdpa",)
    expected = (
        "6 whitespace columns: unix_time_s time_ms latitude longitude bytes elapsed_ms "
        "(e.g. '1284372000 1000 59.9 10.7 125000 1000')"
    )
    looks_like = "6 numbers per line"

    def sniff(self, text: str, first_line: str) -> bool:
        """Six numbers per line."""
        return _count_numbers(first_line) == 6

    def read(self, path: Path, text: str, options: None) -> Segments:
        """Row i is a segment of ``elapsed`` ms at ``bytes * 8 / elapsed`` bit/s."""
        labels = ("unix time", "time (ms)", "latitude", "longitude", "bytes received", "elapsed ms")
        lines, table = _numeric_table(path, self.expected, text, labels)
        _check_increasing(path, self.expected, lines, table[:, 0], "unix time", strict=False)
        _check_increasing(path, self.expected, lines, table[:, 1], "time (ms)", strict=False, to_s=1e-3)
        nbytes, elapsed_ms = table[:, 4], table[:, 5]
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
        with np.errstate(over="ignore"):
            edges = np.concatenate(([0.0], np.cumsum(elapsed_ms))) / 1000.0
            rates = nbytes * 8000.0 / elapsed_ms
        _check_duration(path, lines, edges, "row")
        _check_rates(path, self.expected, lines, rates, "the rate (bytes received * 8 / elapsed seconds)")
        return edges, rates

    def write(self, trace: BandwidthTrace, path: Path, options: None) -> str:
        """Whole milliseconds and whole bytes (cumulative counts rounded, so no byte is lost)."""
        base_unix_s = 0
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


_CSV_EXPECTED = "a header naming the units (time_s and one of bps, kbps, mbps, bytes_per_s), then numbers"


def _csv_fields(path: Path, number: int, line: str) -> list[str]:
    try:
        return [f.strip() for f in next(csv.reader([line]))]
    except csv.Error as err:  # e.g. a field beyond csv's field size limit
        raise TraceFormatError(path, number, f"not a readable CSV row ({err})", _CSV_EXPECTED) from None


def _csv_number(path: Path, number: int, value: str, label: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise TraceFormatError(
            path, number, f"{_clip(label)} {_clip(value)!r} is not a number", _CSV_EXPECTED
        ) from None


def _csv_columns(path: Path, header_line: int, header: list[str]) -> tuple[int, int | None]:
    """The rate column and the time column (None for Lumos5G's files) named by the header."""
    shown = _clip(",".join(header))
    names = [h.lower() for h in header]
    if _all_numbers(header):
        raise TraceFormatError(path, header_line, f"no header row (first row is {shown!r})", _CSV_EXPECTED)
    rate_name = next((u for u in _CSV_RATE_UNITS if u in names), None)
    if rate_name is None:
        raise TraceFormatError(
            path,
            header_line,
            f"the header {shown!r} names no rate column with units",
            "a rate column named bps, kbps, mbps or bytes_per_s (or Lumos5G's Throughput, Mbit/s); "
            "rename the column to say its unit",
        )
    time_name = next((u for u in _CSV_TIME_UNITS if u in names), None)
    if time_name is None and rate_name != "throughput":
        raise TraceFormatError(
            path, header_line, f"the header {shown!r} has no time column", "a time_s (or time_ms) column"
        )
    return names.index(rate_name), (names.index(time_name) if time_name is not None else None)


def _csv_rows(
    path: Path, rows: Iterator[tuple[int, str]], header: list[str], rate_col: int, time_col: int | None
) -> tuple[array, array, array, bool]:
    """Line numbers, times and rates of the data rows, and whether the last row only marks the end."""
    needed = max(rate_col, time_col if time_col is not None else 0) + 1
    numbers, times, rates = array("q"), array("d"), array("d")
    empty_rate: int | None = None  # line of a row with an empty rate (only the last row may have one)
    for number, line in rows:
        if empty_rate is not None:
            _csv_number(path, empty_rate, "", header[rate_col])  # an empty rate before the last row
        fields = _csv_fields(path, number, line)
        if len(fields) < needed:
            raise TraceFormatError(
                path, number, f"found {len(fields)} fields where the header has {len(header)}", _CSV_EXPECTED
            )
        numbers.append(number)
        if time_col is not None:
            times.append(_csv_number(path, number, fields[time_col], header[time_col]))
            if fields[rate_col] == "":
                # A last row with an empty rate only marks the end time (bwgym writes one).
                empty_rate = number
                continue
        rates.append(_csv_number(path, number, fields[rate_col], header[rate_col]))
    return numbers, times, rates, empty_rate is not None


def _csv_edges(
    path: Path, lines: np.ndarray, times: array, label: str, n_rates: int, end_only: bool
) -> np.ndarray:
    """Segment edges in seconds from the time column; without an end row the last row lasts as the one before."""
    to_s = _CSV_TIME_UNITS[label.lower()]
    column = np.array(times, dtype=np.float64)
    _check_increasing(path, _CSV_EXPECTED, lines, column, label, strict=True, to_s=to_s)
    edges = (column - column[0]) * to_s
    if not end_only:
        if n_rates < 2:
            raise TraceFormatError(
                path,
                lines[-1],
                "a single row: its duration is unknown",
                "a second row, or an end row with the end time and an empty rate (e.g. '10.0,')",
            )
        edges = np.append(edges, 2 * edges[-1] - edges[-2])
    _check_duration(path, lines, edges, "row")
    return edges


@dataclass(frozen=True)
class CsvOptions:
    """Options of the CSV format."""

    unit: str = "bps"
    """Writing: the rate column's unit, one of bps, kbps, mbps, bytes_per_s (reading takes the header's)."""

    def __post_init__(self) -> None:
        if self.unit.lower() not in _CSV_WRITE_UNITS:
            raise ValueError(
                f"expected unit one of {', '.join(_CSV_WRITE_UNITS)}, got {_clip(repr(self.unit))}"
            )


@register_trace_format(
    "csv", description="CSV with the units in the header (time_s, bps/kbps/mbps); Lumos5G", options=CsvOptions
)
class Csv(TraceFormat):
    """CSV: each row's rate holds until the next row; a last row with an empty rate marks the end."""

    extensions = (".csv",)
    expected = _CSV_EXPECTED
    looks_like = "a header row naming the units"

    def sniff(self, text: str, first_line: str) -> bool:
        """Not JSON, and commas or a header naming a column this reader knows."""
        known = {*_CSV_RATE_UNITS, *_CSV_TIME_UNITS}
        named = any(field.strip(",").lower() in known for field in first_line.split())
        return not _is_json(text) and ("," in first_line or named)

    def read(self, path: Path, text: str, options: CsvOptions) -> Segments:
        """Rows of the header's time and rate columns; Lumos5G's Throughput is one row per second."""
        rows = _iter_data_lines(text)
        first = next(rows, None)
        if first is None:
            raise _empty_error(path, self.expected)
        # One record per physical line, so every error names its line (no multi-line quoted fields).
        header_line = first[0]
        header = _csv_fields(path, *first)
        rate_col, time_col = _csv_columns(path, header_line, header)
        numbers, times, rates, end_only = _csv_rows(path, rows, header, rate_col, time_col)
        if not numbers:
            raise TraceFormatError(path, header_line, "a header but no data rows", self.expected)
        lines = np.array(numbers, dtype=np.int64)
        if not rates:
            raise TraceFormatError(path, lines[-1], "an end row but no rate rows", self.expected)
        values = np.array(rates, dtype=np.float64)
        to_bps = _CSV_RATE_UNITS[header[rate_col].lower()]
        _check_rates(path, self.expected, lines, values, header[rate_col], to_bps)
        if time_col is None:
            # Lumos5G logs one throughput sample per second and has no time column.
            return np.arange(values.size + 1, dtype=np.float64), values * to_bps
        return _csv_edges(path, lines, times, header[time_col], values.size, end_only), values * to_bps

    def write(self, trace: BandwidthTrace, path: Path, options: CsvOptions) -> str:
        """``time_s,<unit>`` rows and an end row with an empty rate."""
        key = options.unit.lower()
        scale = _CSV_RATE_UNITS[key]
        lines = [f"time_s,{key}"]
        lines += [f"{_num(t)},{_num(r / scale)}" for t, r in zip(trace.times_s, trace.bps, strict=True)]
        lines.append(f"{_num(trace.duration_s)},")
        return "\n".join(lines) + "\n"


def _json_entry_lines(text: str) -> list[int]:
    """1-based line of each element of the top-level JSON list (for error messages)."""
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    line, counted = 1, 0
    starts = []
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return starts
        line += text.count("\n", counted, pos)
        counted = pos
        starts.append(line)
        _, pos = decoder.raw_decode(text, pos)


@dataclass(frozen=True)
class SabreOptions:
    """Options of the Sabre format."""

    latency_ms: float = 0.0
    """Writing: the ``latency_ms`` of every entry (bwgym models latency in the Link, and does not read it)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.latency_ms) and self.latency_ms >= 0):
            raise ValueError(f"expected a finite latency_ms >= 0, got {self.latency_ms}")


@register_trace_format(
    "sabre",
    description="Sabre's JSON list of {duration_ms, bandwidth_kbps, latency_ms}",
    options=SabreOptions,
)
class Sabre(TraceFormat):
    """Sabre JSON: segments one after the other."""

    extensions = (".json",)
    expected = 'a JSON list of {"duration_ms": .., "bandwidth_kbps": .., "latency_ms": ..}'
    looks_like = "a JSON list"

    def sniff(self, text: str, first_line: str) -> bool:
        """A JSON list (or object, which reading then refuses with its line)."""
        return _is_json(text)

    def read(self, path: Path, text: str, options: SabreOptions) -> Segments:
        """Entries of ``duration_ms`` at ``bandwidth_kbps``."""
        if not text.strip():
            raise _empty_error(path, self.expected)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise TraceFormatError(path, err.lineno, f"invalid JSON ({err.msg})", self.expected) from None
        except RecursionError:
            raise TraceFormatError(path, None, "JSON nested too deeply to read", self.expected) from None
        except ValueError as err:  # e.g. an integer beyond Python's digit limit
            raise TraceFormatError(path, None, f"invalid JSON ({_clip(str(err))})", self.expected) from None
        if not isinstance(data, list):
            raise TraceFormatError(path, 1, f"top-level JSON is a {type(data).__name__}", self.expected)
        if not data:
            raise TraceFormatError(path, 1, "an empty list", self.expected)
        if len(data) > MAX_TRACE_SAMPLES:
            raise TraceFormatError(
                path,
                None,
                f"{len(data):,} entries, more than the limit MAX_TRACE_SAMPLES={MAX_TRACE_SAMPLES:,}",
                "a shorter trace",
            )
        lines = _json_entry_lines(text)
        durations, rates = [], []
        for number, entry in zip(lines, data, strict=True):
            if not isinstance(entry, dict):
                raise TraceFormatError(
                    path, number, f"an entry that is a {type(entry).__name__}", self.expected
                )
            values = []
            for key in ("duration_ms", "bandwidth_kbps"):
                value = entry.get(key)
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    shown = "missing" if key not in entry else _clip(repr(value))
                    raise TraceFormatError(
                        path, number, f"{key} is {shown}", f"a number for {key}; {self.expected}"
                    )
                try:
                    values.append(float(value))
                except OverflowError:
                    raise TraceFormatError(
                        path, number, f"{key} is an integer of {len(str(value))} digits", f"a finite {key}"
                    ) from None
            durations.append(values[0])
            rates.append(values[1])
        dur = np.array(durations)
        i = _first_bad(~np.isfinite(dur) | (dur <= 0))
        if i is not None:
            raise TraceFormatError(
                path, lines[i], f"duration_ms is {_num(dur[i])}", "a finite duration_ms > 0"
            )
        kbps = np.array(rates)
        _check_rates(path, self.expected, lines, kbps, "bandwidth_kbps", 1e3)
        with np.errstate(over="ignore"):
            edges = np.concatenate(([0.0], np.cumsum(dur))) / 1000.0
        _check_duration(path, lines, edges, "entry")
        return edges, kbps * 1e3

    def write(self, trace: BandwidthTrace, path: Path, options: SabreOptions) -> str:
        """One entry per segment."""
        latency_ms = options.latency_ms
        durations_ms = np.diff(trace.edges_s) * 1000.0
        entries = [
            f'{{"duration_ms": {_num(d)}, "bandwidth_kbps": {_num(r / 1e3)}, "latency_ms": {_num(latency_ms)}}}'
            for d, r in zip(durations_ms, trace.bps, strict=True)
        ]
        return "[\n" + ",\n".join(entries) + "\n]\n"


# ---------------------------------------------------------------------------------------- load and save
def load_trace(
    source: str | os.PathLike[str],
    format: str | None = None,  # noqa: A002 - the public name the issue asks for
    *,
    name: str | None = None,
    loop: bool = True,
    **options: Any,
) -> BandwidthTrace:
    """Load a trace from a file or from the shipped library.

    A UTF-8 byte-order mark at the start of the file is accepted in every format. Files larger
    than :data:`MAX_TRACE_FILE_BYTES`, rates above :data:`MAX_BPS`, times beyond
    :data:`MAX_TIME_S` and traces of more than :data:`MAX_TRACE_SAMPLES` segments are refused.

    Args:
        source: A file path, or a library name such as ``"lte_drive"`` (see :func:`list_library`).
        format: A registered format (``bwgym traces formats``); detected from the extension or
            content when ``None``.
        name: Name of the trace; defaults to the file name up to its first dot.
        loop: ``loop`` flag of the trace.
        **options: The format's options, e.g. ``bin_ms`` (Mahimahi: the bin width in ms over which
            packets are counted into a rate). Options of other formats are ignored, so that one
            call serves whichever format the file turns out to be.

    Raises:
        TraceNotFoundError: ``source`` is neither a file nor a library trace (it is also a
            ``FileNotFoundError``).
        TraceFormatError: Anything else wrong with the file: unknown format name, undetectable
            format, malformed, binary, unreadable or too large content; the message names the
            file and, where there is one, the line.
        OptionError: An option no format takes, or a bad value (``bin_ms`` not an integer in
            ``[1, 10^9]``); a ``ValueError``.

    """
    path = resolve_trace_path(source)
    if format is not None:
        _format_entry(format, path)  # an unknown name before the file is read
    text = _read_text(path)
    entry = _format_entry(detect_format(path, text) if format is None else format, path)
    edges, rates = entry.target().read(path, text, _format_options(entry, options))
    label = path.name.split(".", 1)[0] if name is None else name
    try:
        return BandwidthTrace(edges, rates, label, loop=loop)
    except ValueError as err:  # a limit of BandwidthTrace no reader checks with a line number
        raise TraceFormatError(path, None, str(err), f"a {entry.name} trace within bwgym's limits") from None


def output_format(
    path: str | os.PathLike[str],
    format: str | None = None,  # noqa: A002 - the public name of save_trace
    flag: str = "format=",
) -> str:
    """The format to write ``path`` in: ``format`` or the one its extension implies, checked to write.

    Args:
        path: The file to write.
        format: A registered format, or None to take the extension's.
        flag: How the caller names ``format`` in messages (``"--to"`` on the command line).

    Raises:
        TraceFormatError: An unknown format name, no format and an extension that implies none,
            or a format that only reads.

    """
    names = TRACE_FORMATS.names()
    if format is None:
        format = format_for_path(path)  # noqa: A001
        if format is None:
            extensions = sorted({x for e in TRACE_FORMATS.entries() for x in e.target.extensions})
            raise TraceFormatError(
                path,
                None,
                f"cannot tell the format from the extension {Path(path).suffix!r}",
                f"{flag} one of {', '.join(names)}, or an extension among {', '.join(extensions)}",
            )
    entry = _format_entry(format, path)
    if not entry.target().writes:
        writers = [e.name for e in TRACE_FORMATS.entries() if e.target().writes]
        raise TraceFormatError(
            path, None, f"the {entry.name} format only reads", f"{flag} one of {', '.join(writers)}"
        )
    return entry.name


def save_trace(
    trace: BandwidthTrace,
    path: str | os.PathLike[str],
    format: str | None = None,  # noqa: A002 - the public name the issue asks for
    **options: Any,
) -> Path:
    """Write a trace atomically; the parent folder is created when missing.

    Args:
        trace: The trace.
        path: Destination file.
        format: A registered format that writes; taken from the extension when ``None``.
        **options: The format's options, e.g. ``unit`` (CSV: the rate column, one of ``bps``,
            ``kbps``, ``mbps``, ``bytes_per_s``) or ``latency_ms`` (Sabre: written in every
            entry). Options of other formats are ignored.

    Returns:
        The path written.

    Raises:
        TraceFormatError: Unknown format name, no format given and none implied by the extension,
            or a format that only reads.
        OptionError: An option no format takes, or a bad value (a ``ValueError``).
        ValueError: The trace cannot be written in that format (e.g. less than one Mahimahi packet),
            or the file would exceed :data:`MAX_TRACE_FILE_BYTES` (``load_trace`` would refuse it).
        OSError: The file cannot be written; the message names it.

    """
    path = Path(path)
    entry = TRACE_FORMATS.get(output_format(path, format))
    if not isinstance(trace, BandwidthTrace):
        raise TypeError(f"expected a BandwidthTrace, got {type(trace).__name__}")
    text = entry.target().write(trace, path, _format_options(entry, options))
    if len(text) > MAX_TRACE_FILE_BYTES:
        raise ValueError(
            f"{path}: the {entry.name} file would be {len(text):,} bytes, more than load_trace reads "
            f"(MAX_TRACE_FILE_BYTES={MAX_TRACE_FILE_BYTES:,}); expected a shorter trace "
            "or a more compact format"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    except OSError as err:
        message = f"cannot write {path} ({_strerror(err)}); expected a writable file path"
        raise (type(err)(err.errno, message) if err.errno else OSError(message)) from None
    return path
