"""`bwgym traces` sub-commands, driven through a local argparse parser built with `register`."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bwgym.traces import list_library, load_trace
from bwgym.traces.commands import register

DATA = Path(__file__).parent / "data"


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bwgym")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["traces", *argv])
    return args.func(args)


def test_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["show", str(DATA / "fixture.csv"), "satellite"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header == [
        "name",
        "format",
        "segments",
        "duration_s",
        "mean_bps",
        "min_bps",
        "max_bps",
        "bits_per_step",
        "outage_frac",
    ]
    assert "fixture" in out and "satellite" in out and "sabre" in out
    assert "83333.3" in out  # the fixture's mean
    assert "3333.33" in out  # its mean bits per 0.04 s step


def test_show_reports_errors_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.cooked"
    bad.write_text("0 1\n1 x\n")
    assert run(["show", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bwgym traces show: ") and "line 2" in err and len(err.splitlines()) == 1
    assert run(["show", "no_such_trace"]) == 2


def test_convert(tmp_path: Path) -> None:
    dst = tmp_path / "out" / "lte.mahimahi"
    assert run(["convert", "lte_drive", str(dst)]) == 0
    assert load_trace(dst).mean_bps == pytest.approx(load_trace("lte_drive").mean_bps, rel=1e-3)
    explicit = tmp_path / "fixture.txt"
    assert run(["convert", str(DATA / "fixture.cooked"), str(explicit), "--to", "csv", "--unit", "mbps"]) == 0
    assert explicit.read_text().startswith("time_s,mbps\n")
    assert load_trace(explicit, "csv").mean_bps == pytest.approx(load_trace(DATA / "fixture.cooked").mean_bps)


def test_plot(tmp_path: Path) -> None:
    out = tmp_path / "plots" / "trace.png"
    assert (
        run(
            [
                "plot",
                "gilbert_elliott_bursty",
                str(DATA / "fixture.sabre.json"),
                "--out",
                str(out),
                "--until-s",
                "10",
                "--log",
            ]
        )
        == 0
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_generate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ge.csv"
    argv = [
        "generate",
        "gilbert_elliott",
        "--out",
        str(out),
        "--seed",
        "3",
        "--duration-s",
        "20",
        "--param",
        "good_bps=5e5",
        "--param",
        "bad-bps=0",
        "--param",
        "dt_s=0.04",
    ]
    assert run(argv) == 0
    trace = load_trace(out)
    assert trace.duration_s == pytest.approx(20.0)
    assert trace.max_bps == 5e5 and trace.min_bps == 0.0
    again = tmp_path / "again.csv"
    assert run(argv[:3] + [str(again)] + argv[4:]) == 0
    assert again.read_text() == out.read_text()
    schedule = tmp_path / "steps.json"
    assert (
        run(
            [
                "generate",
                "steps",
                "--out",
                str(schedule),
                "--duration-s",
                "10",
                "--param",
                "schedule=[[0, 1e6], [5, 2e4]]",
            ]
        )
        == 0
    )
    assert load_trace(schedule).bps_at(6.0) == 2e4
    capsys.readouterr()
    assert run(["generate", "constant", "--out", str(tmp_path / "c.csv"), "--param", "bsp=5"]) == 2
    assert "Did you mean 'bps'" in capsys.readouterr().err


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["list"]) == 0
    out = capsys.readouterr().out
    for name in list_library():
        assert name in out
