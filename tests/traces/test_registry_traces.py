"""Trace formats and generators are registry entries: a user adds one from their own file alone."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bwgym.cli import main as bwgym_main
from bwgym.common.registry import (
    TRACE_FORMATS,
    TRACE_GENERATORS,
    DuplicateNameError,
    OptionError,
    UnknownNameError,
    register_trace_format,
    register_trace_generator,
)
from bwgym.traces import (
    BandwidthTrace,
    TraceFormat,
    TraceFormatError,
    detect_format,
    generate,
    load_trace,
    save_trace,
)
from bwgym.traces import generators as generators_module
from bwgym.traces.formats import Segments
from bwgym.traces.generators import DriveSegment, drive, drive_segment


# ------------------------------------------------------------------------------------------ a toy format
@dataclass(frozen=True)
class PairsOptions:
    scale: float = 1.0


class Pairs(TraceFormat):
    """'seconds:bps' per line: each line one segment of that length and rate."""

    extensions = (".pairs",)
    expected = "'seconds:bps' per line (e.g. '2:1000')"
    looks_like = "'seconds:bps' lines"

    def sniff(self, text: str, first_line: str) -> bool:
        return ":" in first_line

    def read(self, path: Path, text: str, options: PairsOptions) -> Segments:
        seconds, rates = [], []
        for number, line in enumerate(text.splitlines(), start=1):
            try:
                duration, bps = (float(field) for field in line.split(":"))
            except ValueError:
                raise TraceFormatError(path, number, f"{line!r} is not seconds:bps", self.expected) from None
            seconds.append(duration)
            rates.append(bps * options.scale)
        return np.concatenate(([0.0], np.cumsum(seconds))), np.array(rates)

    def write(self, trace: BandwidthTrace, path: Path, options: PairsOptions) -> str:
        lengths = np.diff(trace.edges_s)
        return "".join(
            f"{d}:{r / options.scale}\n" for d, r in zip(lengths.tolist(), trace.bps.tolist(), strict=True)
        )


@pytest.fixture
def pairs_format() -> Iterator[str]:
    register_trace_format("pairs", description="seconds:bps per line", options=PairsOptions)(Pairs)
    yield "pairs"
    TRACE_FORMATS.remove("pairs")


def test_a_format_from_a_file_of_its_own(pairs_format: str, tmp_path: Path) -> None:
    path = tmp_path / "two.pairs"
    path.write_text("2:1000\n3:500\n")
    trace = load_trace(path)  # by its extension
    np.testing.assert_array_equal(trace.edges_s, [0.0, 2.0, 5.0])
    np.testing.assert_array_equal(trace.bps, [1000.0, 500.0])
    assert trace.name == "two"
    # Its options come through load_trace's keywords; another format's option is left to it.
    assert load_trace(path, scale=2.0, bin_ms=40).bps.tolist() == [2000.0, 1000.0]
    # By content, and by name on a file without the extension.
    bare = tmp_path / "bare"
    bare.write_text(path.read_text())
    assert detect_format(bare) == "pairs"
    assert load_trace(bare, "pairs") == load_trace(path, name="bare")
    # Writing, and the malformed line named with the format's expectation.
    again = save_trace(trace, tmp_path / "again.pairs", scale=10.0)
    assert load_trace(again, scale=10.0) == trace.replace(name="again")
    path.write_text("2:1000\nnope\n")
    with pytest.raises(TraceFormatError, match=r"line 2: 'nope' is not seconds:bps; expected 'seconds:bps'"):
        load_trace(path)


def test_a_removed_format_is_gone(pairs_format: str, tmp_path: Path) -> None:
    assert "pairs" in TRACE_FORMATS.names()
    TRACE_FORMATS.remove("pairs")
    assert "pairs" not in TRACE_FORMATS.names()
    register_trace_format("pairs", options=PairsOptions)(Pairs)  # the fixture removes it again


def test_a_format_without_a_writer_is_refused_for_saving(tmp_path: Path) -> None:
    @register_trace_format("read_only_pairs", options=PairsOptions)
    class ReadOnly(TraceFormat):
        extensions = (".ro",)

        def read(self, path: Path, text: str, options: PairsOptions) -> Segments:
            return Pairs().read(path, text, options)

    try:
        with pytest.raises(
            TraceFormatError, match=r"the read_only_pairs format only reads; expected format="
        ):
            save_trace(BandwidthTrace([0.0], [1.0], duration_s=1.0), tmp_path / "t.ro")
    finally:
        TRACE_FORMATS.remove("read_only_pairs")


def test_content_two_formats_recognise_is_ambiguous(tmp_path: Path) -> None:
    @register_trace_format("two_columns")
    class TwoColumns(TraceFormat):
        def sniff(self, text: str, first_line: str) -> bool:
            return len(first_line.split()) == 2

    try:
        bare = tmp_path / "bare"
        bare.write_text("0 1\n1 2\n")
        with pytest.raises(TraceFormatError, match=r"several formats \(cooked, two_columns\)"):
            detect_format(bare)
    finally:
        TRACE_FORMATS.remove("two_columns")


# ------------------------------------------------------------------------------------------ a toy generator
@dataclass(frozen=True)
class SquareOptions:
    high_bps: float = 1e6
    low_bps: float = 0.0
    period_s: float = 2.0
    duration_s: float = 10.0


def square(high_bps: float, low_bps: float, period_s: float, duration_s: float) -> BandwidthTrace:
    """An on-off square wave, ``high_bps`` for the first half of each period."""
    starts = np.arange(0.0, duration_s, period_s / 2)
    rates = np.where(np.arange(starts.size) % 2 == 0, high_bps, low_bps)
    return BandwidthTrace(starts, rates, "square", duration_s=duration_s)


def _square_segment(segment: DriveSegment) -> dict[str, Any]:
    return {"high_bps": segment.level_bps, "low_bps": segment.min_bps, "duration_s": segment.duration_s}


@pytest.fixture
def square_generator() -> Iterator[str]:
    register_trace_generator("square", description="on-off square wave", options=SquareOptions)(square)
    drive_segment("square")(_square_segment)
    yield "square"
    TRACE_GENERATORS.remove("square")
    generators_module._DRIVE_SEGMENTS.pop("square")


def test_a_generator_from_a_file_of_its_own(square_generator: str) -> None:
    trace = generate("square", seed=3, high_bps=5e5, duration_s=4)  # a seed is ignored: square takes none
    assert trace.bps.tolist() == [5e5, 0.0, 5e5, 0.0]
    assert trace.duration_s == 4.0
    with pytest.raises(OptionError, match=r"square.hihg_bps: unknown key. Did you mean 'high_bps'\?"):
        generate("square", hihg_bps=1.0)
    with pytest.raises(OptionError, match=r"square.period_s: expected float, got 'long'"):
        generate("square", period_s="long")
    # drive picks it among the registered generators that name their segment.
    driven = drive(duration_s=60.0, min_bps=1e3, max_bps=1e5, kinds=["square"], seed=0)
    assert 1e3 <= driven.min_bps and driven.max_bps <= 1e5
    assert driven == drive(duration_s=60.0, min_bps=1e3, max_bps=1e5, kinds=["square"], seed=0)
    explicit = drive(segments=[("square", 4.0, {"high_bps": 2.0}), ("constant", 1.0, {"bps": 7.0})])
    assert explicit.bps.tolist() == [2.0, 0.0, 2.0, 0.0, 7.0]


def test_drive_refuses_a_generator_without_a_segment(square_generator: str) -> None:
    with pytest.raises(ValueError, match=r"kinds='steps' is out of range; expected kinds among .*square"):
        drive(kinds=["square", "steps"])


# ------------------------------------------------------------------------------------------ names
def test_unknown_names_suggest_the_closest() -> None:
    with pytest.raises(
        TraceFormatError, match=r"unknown format 'cookd' \(did you mean 'cooked'\?\); expected one of"
    ):
        load_trace("lte_drive", "cookd")
    with pytest.raises(UnknownNameError, match=r"unknown trace format 'sabr' \(did you mean 'sabre'\?\)"):
        TRACE_FORMATS.get("sabr")
    with pytest.raises(
        UnknownNameError,
        match=r"unknown trace generator 'lognormal_wlak' \(did you mean 'lognormal_walk'\?\)",
    ):
        generate("lognormal_wlak")
    with pytest.raises(
        OptionError, match=r"unknown trace format option 'bin_mz' \(did you mean 'bin_ms'\?\)"
    ):
        load_trace("walk_100kbps", bin_mz=40)


def test_a_name_taken_by_another_module_is_refused() -> None:
    class OtherCsv(TraceFormat):
        pass

    with pytest.raises(DuplicateNameError) as info:
        register_trace_format("csv")(OtherCsv)
    assert "bwgym.traces.formats" in str(info.value) and __name__ in str(info.value)
    assert TRACE_FORMATS.get("csv").module == "bwgym.traces.formats"

    def constant(bps: float = 1.0) -> BandwidthTrace:
        return BandwidthTrace([0.0], [bps], duration_s=1.0)

    with pytest.raises(DuplicateNameError, match=rf"bwgym.traces.generators .*{__name__}"):
        register_trace_generator("constant")(constant)


def test_the_tables_fill_themselves_in_a_fresh_process() -> None:
    # What scenarios/config.py relies on: lookups without importing bwgym.traces first.
    code = (
        "from bwgym.common.registry import TRACE_FORMATS, TRACE_GENERATORS;"
        "print(TRACE_GENERATORS.get('drive').name, TRACE_FORMATS.get('mahimahi').options.__name__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["drive", "MahimahiOptions"]


# ------------------------------------------------------------------------------------------ listings
def _listing(argv: list[str], capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert bwgym_main(["traces", *argv]) == 0
    return capsys.readouterr().out.splitlines()


def test_formats_listing(pairs_format: str, capsys: pytest.CaptureFixture[str]) -> None:
    lines = _listing(["formats"], capsys)
    assert lines[0].split() == ["name", "extensions", "writes", "description", "option", "type", "default"]
    rows = {line.split()[0]: line.split() for line in lines[1:] if line and not line.startswith(" ")}
    assert set(rows) == set(TRACE_FORMATS.names())
    assert rows["mahimahi"][-3:] == ["bin_ms", "int", "500"]
    assert rows["pairs"][:3] == ["pairs", ".pairs", "yes"] and rows["pairs"][-3:] == ["scale", "float", "1.0"]
    assert rows["cooked"][-1] == "-"  # no options
    assert all(line == line.rstrip() for line in lines)


def test_generators_listing(square_generator: str, capsys: pytest.CaptureFixture[str]) -> None:
    lines = _listing(["generators"], capsys)
    assert lines[0].split() == ["name", "seeded", "description", "option", "type", "default"]
    starts = [line.split()[0] for line in lines[1:] if not line.startswith(" ")]
    assert starts == TRACE_GENERATORS.names()
    constant = next(i for i, line in enumerate(lines) if line.startswith("constant "))
    assert lines[constant].split()[:2] == ["constant", "no"]
    assert lines[constant].split()[-3:] == ["bps", "float", "required"]
    assert lines[constant + 1].split() == ["duration_s", "float", "60.0"]  # its further options
    gilbert = next(line for line in lines if line.startswith("gilbert_elliott "))
    assert gilbert.split()[1] == "yes"
    assert any(line.split()[-3:] == ["period_s", "float", "2.0"] for line in lines)
