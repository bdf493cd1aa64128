"""Trace file formats: fixtures with known means, round trips, detection and malformed input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bwgym.traces import (
    MAHIMAHI_PACKET_BITS,
    TRACE_FORMATS,
    BandwidthTrace,
    TraceFormatError,
    detect_format,
    load_trace,
    save_trace,
)
from bwgym.traces.generators import gilbert_elliott, lognormal_walk

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize(
    ("file_name", "fmt", "mean_bps", "duration_s"),
    [
        # 10 packets of 1500 bytes per 1000 ms period.
        ("fixture.mahimahi", "mahimahi", 10 * 12000 / 1.0, 1.0),
        # Rates hold since the previous line: 2 Mbit/s on [0, 1), 4 Mbit/s on [1, 3).
        ("fixture.cooked", "cooked", (2e6 * 1 + 4e6 * 2) / 3, 3.0),
        # (125000 + 0 + 250000) bytes over 1 + 1 + 2 s.
        ("fixture.hsdpa", "hsdpa", 375000 * 8 / 4.0, 4.0),
        # 100 kbit/s for 2 s, 50 kbit/s for 1 s.
        ("fixture.csv", "csv", (200e3 + 50e3) / 3, 3.0),
        # Lumos5G: Throughput in Mbit/s, one row per second.
        ("fixture_lumos.csv", "csv", 15.5e6, 2.0),
        # 500 kbit/s for 1 s, 100 kbit/s for 3 s.
        ("fixture.sabre.json", "sabre", (500e3 + 300e3) / 4, 4.0),
    ],
)
def test_fixture_known_mean(file_name: str, fmt: str, mean_bps: float, duration_s: float) -> None:
    path = DATA / file_name
    assert detect_format(path) == fmt
    trace = load_trace(path)
    assert trace.mean_bps == pytest.approx(mean_bps, rel=1e-12)
    assert trace.duration_s == pytest.approx(duration_s)
    assert trace.name == file_name.split(".")[0]


def test_fixture_details() -> None:
    cooked = load_trace(DATA / "fixture.cooked")
    np.testing.assert_allclose(cooked.bps, [2e6, 4e6])  # the first line's 5.0 only marks time 0
    hsdpa = load_trace(DATA / "fixture.hsdpa")
    np.testing.assert_allclose(hsdpa.bps, [1e6, 0.0, 1e6])
    mm = load_trace(DATA / "fixture.mahimahi", bin_ms=100)
    np.testing.assert_allclose(mm.bps, [120e3] * 10)


@pytest.mark.parametrize("file_name", ["fixture.mahimahi", "fixture.cooked", "fixture.hsdpa", "fixture.csv"])
def test_detection_by_content(tmp_path: Path, file_name: str) -> None:
    bare = tmp_path / "no_extension"
    bare.write_text((DATA / file_name).read_text())
    assert load_trace(bare) == load_trace(DATA / file_name, name="no_extension")


def test_detection_of_sabre_by_content(tmp_path: Path) -> None:
    bare = tmp_path / "trace.txt"
    bare.write_text((DATA / "fixture.sabre.json").read_text())
    assert detect_format(bare) == "sabre"


def _varied_trace() -> BandwidthTrace:
    # Irregular segments, an outage and non-integer rates: the hard case for every writer.
    return BandwidthTrace(
        [0.0, 0.25, 1.0, 1.75, 3.0, 4.5], [123456.789, 0.0, 2.5e6, 777.5, 1e5], name="varied"
    )


@pytest.mark.parametrize("fmt", ["cooked", "csv", "sabre"])
def test_round_trip_exact(tmp_path: Path, fmt: str) -> None:
    trace = _varied_trace()
    path = save_trace(trace, tmp_path / "t.trace", fmt)
    again = load_trace(path, fmt, name="varied")
    np.testing.assert_allclose(again.edges_s, trace.edges_s, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(again.bps, trace.bps, rtol=1e-12)
    # Writing what was read gives the same file.
    assert save_trace(again, tmp_path / "t2.trace", fmt).read_text() == path.read_text()


@pytest.mark.parametrize("unit", ["bps", "kbps", "mbps", "bytes_per_s"])
def test_csv_units(tmp_path: Path, unit: str) -> None:
    trace = _varied_trace()
    path = save_trace(trace, tmp_path / "t.csv", unit=unit)
    assert path.read_text().splitlines()[0] == f"time_s,{unit}"
    np.testing.assert_allclose(load_trace(path).bps, trace.bps, rtol=1e-12)


def test_hsdpa_round_trip_to_ms_and_bytes(tmp_path: Path) -> None:
    trace = _varied_trace()
    path = save_trace(trace, tmp_path / "t.hsdpa")
    again = load_trace(path)
    np.testing.assert_allclose(again.edges_s, trace.edges_s)  # edges are whole ms here
    # Cumulative bytes are rounded, so each edge is within half a byte (4 bits).
    cum = np.asarray(trace.cumulative_bits(trace.edges_s))
    assert np.max(np.abs(again.cumulative_edges_bits - cum)) <= 4.0
    # A file read from HSDPA writes back identically.
    assert save_trace(again, tmp_path / "t2.hsdpa").read_text() == path.read_text()


def test_hsdpa_fixture_round_trip(tmp_path: Path) -> None:
    trace = load_trace(DATA / "fixture.hsdpa")
    again = load_trace(save_trace(trace, tmp_path / "t.hsdpa"))
    np.testing.assert_array_equal(again.edges_s, trace.edges_s)
    np.testing.assert_array_equal(again.bps, trace.bps)


def test_mahimahi_file_round_trip_is_exact_at_1ms(tmp_path: Path) -> None:
    stamps = [0, 3, 3, 3, 10, 11, 40, 40, 41, 97, 100]
    source = tmp_path / "src.mahimahi"
    source.write_text("\n".join(map(str, stamps)) + "\n")
    trace = load_trace(source, bin_ms=1)
    assert trace.total_bits == pytest.approx(len(stamps) * MAHIMAHI_PACKET_BITS)
    out = save_trace(trace, tmp_path / "out.mahimahi")
    # Only the packet stamped 0 moves: it has arrived by the end of millisecond 1.
    assert out.read_text().split() == ["1"] + [str(s) for s in stamps[1:]]


@pytest.mark.parametrize("bin_ms", [1, 40, 500])
def test_mahimahi_round_trip_per_bin(tmp_path: Path, bin_ms: int) -> None:
    trace = lognormal_walk(300e3, 0.6, 30e3, 3e6, duration_s=20.0, dt_s=0.25, seed=4)
    first = load_trace(save_trace(trace, tmp_path / "a.mahimahi"), bin_ms=bin_ms)
    # The cumulative count tracks the trace to within one packet at every bin edge, except near
    # the end, where the last packet is pinned to the loop period (and the remainder dropped).
    error = np.abs(first.cumulative_edges_bits - np.asarray(trace.cumulative_bits(first.edges_s)))
    stamps = np.loadtxt(tmp_path / "a.mahimahi", dtype=int)
    before_last = first.edges_s <= stamps[-2] / 1000
    assert np.max(error[before_last]) <= MAHIMAHI_PACKET_BITS + 1e-6
    assert np.max(error) <= 2 * MAHIMAHI_PACKET_BITS
    # Reading back what was written gives the same per-bin counts (the format's resolution).
    second = load_trace(save_trace(first, tmp_path / "b.mahimahi"), bin_ms=bin_ms)
    np.testing.assert_array_equal(second.edges_s, first.edges_s)
    np.testing.assert_allclose(second.bps, first.bps, rtol=1e-12)


def test_mahimahi_rejects_a_trace_below_one_packet(tmp_path: Path) -> None:
    tiny = BandwidthTrace([0.0], [100.0], duration_s=10.0)
    with pytest.raises(ValueError, match="1500-byte packet"):
        save_trace(tiny, tmp_path / "t.mahimahi")


def test_sabre_latency_written(tmp_path: Path) -> None:
    path = save_trace(gilbert_elliott(duration_s=2.0, seed=0), tmp_path / "t.json", latency_ms=35)
    assert '"latency_ms": 35' in path.read_text()


def test_load_options() -> None:
    trace = load_trace(DATA / "fixture.csv", name="mine", loop=False)
    assert trace.name == "mine" and trace.loop is False


def test_save_needs_a_format(tmp_path: Path) -> None:
    with pytest.raises(TraceFormatError, match="format="):
        save_trace(_varied_trace(), tmp_path / "t.unknown")


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match="no_such_trace"):
        load_trace("no_such_trace.csv")


# ------------------------------------------------------------------------------------------ malformed
MALFORMED = [
    # (file name, content, format, line, words the message must contain)
    ("empty.cooked", "", "cooked", 1, "empty"),
    ("empty.mahimahi", "\n\n", "mahimahi", 1, "empty"),
    ("empty.hsdpa", "", "hsdpa", 1, "empty"),
    ("empty.csv", "", "csv", 1, "empty"),
    ("empty.json", "", "sabre", 1, "empty"),
    ("empty_list.json", "[]", "sabre", 1, "empty list"),
    ("nondigit.cooked", "0 1\n1 abc\n", "cooked", 2, "'abc' is not a number"),
    ("nondigit.mahimahi", "1\n2\nx3\n", "mahimahi", 3, "not a number"),
    ("fraction.mahimahi", "1\n2.5\n", "mahimahi", 2, "timestamp '2.5'"),
    ("nondigit.hsdpa", "1 1000 0 0 abc 1000\n", "hsdpa", 1, "bytes received 'abc'"),
    ("nondigit.csv", "time_s,bps\n0,1\n1,x\n", "csv", 3, "'x' is not a number"),
    ("negative.cooked", "0 1\n1 -3\n", "cooked", 2, "-3"),
    ("nan.cooked", "0 1\n1 nan\n", "cooked", 2, "nan"),
    ("inf.cooked", "0 1\n1 1\n2 inf\n", "cooked", 3, "inf"),
    ("negative.csv", "time_s,mbps\n0,1\n1,-2\n2,\n", "csv", 3, "-2"),
    ("nan.csv", "time_s,bps\n0,nan\n1,\n", "csv", 2, "nan"),
    ("negative.hsdpa", "1 1000 0 0 -5 1000\n", "hsdpa", 1, "bytes received"),
    ("zero_elapsed.hsdpa", "1 1000 0 0 5 0\n", "hsdpa", 1, "elapsed ms"),
    (
        "negative.json",
        '[\n{"duration_ms": 1000, "bandwidth_kbps": 1},\n{"duration_ms": 1000, "bandwidth_kbps": -1}\n]',
        "sabre",
        3,
        "bandwidth_kbps is -1",
    ),
    (
        "missing_key.json",
        '[\n{"duration_ms": 1000, "bandwidth_kbps": 1},\n{"duration_ms": 1000}\n]',
        "sabre",
        3,
        "bandwidth_kbps is missing",
    ),
    ("bad_json.json", '[\n{"duration_ms": 1000,\n', "sabre", 3, "invalid JSON"),
    ("not_list.json", '{"duration_ms": 1}', "sabre", 1, "dict"),
    ("backwards.mahimahi", "1\n5\n3\n", "mahimahi", 3, "goes backwards"),
    ("backwards.cooked", "0 1\n2 1\n1 1\n", "cooked", 3, "goes backwards"),
    ("repeat.cooked", "0 1\n1 1\n1 1\n", "cooked", 3, "repeats"),
    ("backwards.hsdpa", "5 5000 0 0 1 1000\n4 4000 0 0 1 1000\n", "hsdpa", 2, "goes backwards"),
    ("backwards.csv", "time_s,bps\n0,1\n2,1\n1,1\n", "csv", 4, "goes backwards"),
    ("zero_period.mahimahi", "0\n0\n", "mahimahi", 2, "loop period"),
    ("fields.cooked", "0 1\n1 2 3\n", "cooked", 2, "3 fields"),
    ("fields.hsdpa", "1 2 3 4 5\n", "hsdpa", 1, "5 fields"),
    ("one_line.cooked", "0 1\n", "cooked", 1, "only one line"),
    ("no_unit.csv", "time,bandwidth\n0,1\n", "csv", 1, "names no rate column"),
    ("no_header.csv", "0,1\n1,2\n", "csv", 1, "no header"),
    ("no_time.csv", "bps\n1\n", "csv", 1, "no time column"),
    ("single_row.csv", "time_s,bps\n0,1\n", "csv", 2, "single row"),
    ("short_row.csv", "time_s,flag,bps\n0,a,1\n1,b\n", "csv", 3, "2 fields"),
]


@pytest.mark.parametrize(
    ("file_name", "content", "fmt", "line", "words"), MALFORMED, ids=[m[0] for m in MALFORMED]
)
def test_malformed(tmp_path: Path, file_name: str, content: str, fmt: str, line: int, words: str) -> None:
    path = tmp_path / file_name
    path.write_text(content)
    with pytest.raises(TraceFormatError) as info:
        load_trace(path, fmt)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert str(path) in message
    assert f"line {line}:" in message
    assert words in message
    assert "expected" in message
    assert info.value.line == line


def test_unknown_format_name(tmp_path: Path) -> None:
    with pytest.raises(
        TraceFormatError, match=r"unknown format 'cooked2'.*did you mean 'cooked'.*expected one of"
    ):
        load_trace(DATA / "fixture.cooked", "cooked2")
    with pytest.raises(TraceFormatError, match="unknown format 'xml'"):
        save_trace(_varied_trace(), tmp_path / "t.csv", "xml")


def test_undetectable_format(tmp_path: Path) -> None:
    path = tmp_path / "three_columns"
    path.write_text("0 1 2\n1 2 3\n")
    with pytest.raises(TraceFormatError, match=r"line 1: cannot detect the format.*pass format="):
        load_trace(path)
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    with pytest.raises(TraceFormatError, match="empty"):
        load_trace(empty)


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "blob.csv"
    path.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(TraceFormatError, match="UTF-8"):
        load_trace(path)


def test_every_format_is_covered() -> None:
    assert {"mahimahi", "cooked", "hsdpa", "csv", "sabre"} <= set(TRACE_FORMATS.names())
