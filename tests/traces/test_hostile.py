"""Hostile input to the traces layer: every bad file, parameter and flag is refused cleanly.

Loaders raise :class:`TraceFormatError` naming the file (and line); generators raise ``ValueError``
naming the parameter and its value; ``bwgym traces ...`` prints one line and exits 2. Sizes that
would exhaust memory are refused with the number needed and the limit.
"""

from __future__ import annotations

import builtins
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bwgym.common.registry import OptionError, UnknownNameError
from bwgym.traces import (
    MAX_BPS,
    MAX_TRACE_FILE_BYTES,
    MAX_TRACE_SAMPLES,
    BandwidthTrace,
    TraceFormatError,
    TraceNotFoundError,
    derive_seed,
    generate,
    load_trace,
    save_trace,
)
from bwgym.traces import formats as formats_module
from bwgym.traces.commands import main
from bwgym.traces.generators import constant, lognormal_walk

DATA = Path(__file__).parent / "data"
BOM = "\ufeff"

# ------------------------------------------------------------------------------------------ loaders
# (id, file name, content (str, or bytes written as is), format or None, line or None, words)
BAD_FILES: list[tuple[str, str, str | bytes, str | None, int | None, str]] = [
    # Beyond what the parsers of the standard library accept.
    ("csv_field_limit", "t.csv", "time_s,bps\n0," + "9" * 200_000 + "\n1,\n", "csv", 2, "field"),
    (
        "json_400_digit_duration",
        "t.json",
        '[{"duration_ms": 1' + "0" * 400 + ', "bandwidth_kbps": 1}]',
        "sabre",
        1,
        "digits",
    ),
    (
        "json_400_digit_rate",
        "t.json",
        '[\n{"duration_ms": 1, "bandwidth_kbps": 9' + "9" * 400 + "}\n]",
        "sabre",
        2,
        "digits",
    ),
    (
        "json_5000_digit_int",
        "t.json",
        '[{"duration_ms": ' + "7" * 5000 + ', "bandwidth_kbps": 1}]',
        "sabre",
        None,
        "invalid JSON",
    ),
    ("json_deeply_nested", "t.json", "[" * 200_000 + "]" * 200_000, "sabre", None, "nested"),
    (
        "json_nested_in_entry",
        "t.json",
        '[{"duration_ms": ' + "[" * 200_000 + "]" * 200_000 + "}]",
        "sabre",
        None,
        "nested",
    ),
    # Binary and empty content.
    ("binary", "t.csv", bytes(range(256)), None, 2, "UTF-8"),
    ("binary_later_line", "t.cooked", b"0 1\n1 2\n\xff\xfe\n", "cooked", 3, "UTF-8"),
    ("nul_bytes", "t.cooked", "0 1\n1\x00 2\n", "cooked", 2, "NUL"),
    ("empty_detected", "t.trace", "", None, 1, "empty"),
    ("empty_mahimahi", "t.mahimahi", "", "mahimahi", 1, "empty"),
    ("empty_cooked", "t.cooked", BOM, "cooked", 1, "empty"),
    ("empty_hsdpa", "t.hsdpa", "\n \n", "hsdpa", 1, "empty"),
    ("empty_csv", "t.csv", "# only a comment\n", "csv", 1, "empty"),
    ("empty_sabre", "t.json", "   ", "sabre", 1, "empty"),
    # Non-finite rates.
    ("inf_rate_cooked", "t.cooked", "0 1\n1 inf\n", "cooked", 2, "inf"),
    ("nan_rate_csv", "t.csv", "time_s,kbps\n0,nan\n1,\n", "csv", 2, "nan"),
    ("infinity_rate_sabre", "t.json", '[{"duration_ms": 5, "bandwidth_kbps": Infinity}]', "sabre", 1, "inf"),
    ("nan_rate_sabre", "t.json", '[\n{"duration_ms": 5, "bandwidth_kbps": NaN}]', "sabre", 2, "nan"),
    ("inf_bytes_hsdpa", "t.hsdpa", "1 1000 0 0 inf 1000\n", "hsdpa", 1, "bytes received"),
    # Absurd rates (> MAX_BPS = 1e12 bit/s).
    ("absurd_rate_cooked", "t.cooked", "0 1\n1 2e6\n", "cooked", 2, "2e+12 bit/s"),
    ("absurd_rate_csv", "t.csv", "time_s,bps\n0,5\n1,1e300\n2,\n", "csv", 3, "1e+300"),
    ("absurd_rate_sabre", "t.json", '[{"duration_ms": 5, "bandwidth_kbps": 1e300}]', "sabre", 1, "MAX_BPS"),
    ("absurd_rate_hsdpa", "t.hsdpa", "1 1000 0 0 1e300 1000\n", "hsdpa", 1, "MAX_BPS"),
    ("absurd_rate_lumos", "t.csv", "Throughput\n1e7\n", "csv", 2, "MAX_BPS"),
    ("absurd_rate_mahimahi", "t.mahimahi", "1\n" * 100_000, "mahimahi", None, "MAX_BPS"),
    # Non-finite or absurd times.
    ("inf_time_cooked", "t.cooked", "0 1\ninf 2\n", "cooked", 2, "time is inf"),
    ("absurd_time_cooked", "t.cooked", "0 1\n1e300 2\n", "cooked", 2, "MAX_TIME_S"),
    ("nan_time_csv", "t.csv", "time_s,bps\n0,1\nnan,\n", "csv", 3, "nan"),
    ("absurd_time_csv_ms", "t.csv", "time_ms,bps\n0,1\n1e20,\n", "csv", 3, "MAX_TIME_S"),
    ("absurd_stamp_mahimahi", "t.mahimahi", "1\n2\n1" + "0" * 20 + "\n", "mahimahi", 3, "MAX_TIME_S"),
    ("absurd_unix_time_hsdpa", "t.hsdpa", "1e300 1000 0 0 5 1000\n", "hsdpa", 1, "unix time"),
    ("absurd_elapsed_hsdpa", "t.hsdpa", "1 1000 0 0 5 1e300\n", "hsdpa", 1, "MAX_TIME_S"),
    (
        "absurd_duration_sabre",
        "t.json",
        '[\n{"duration_ms": 1, "bandwidth_kbps": 1},\n{"duration_ms": 1e300, "bandwidth_kbps": 1}]',
        "sabre",
        3,
        "MAX_TIME_S",
    ),
    # Sizes that would exhaust memory.
    ("mahimahi_1e12_ms", "t.mahimahi", "1\n1000000000000\n", "mahimahi", 2, "MAX_TRACE_SAMPLES"),
    # A BOM does not hide a malformed line.
    ("bom_then_garbage", "t.cooked", BOM + "0 1\n1 x\n", "cooked", 2, "not a number"),
]


def _write(path: Path, content: str | bytes) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")


@pytest.mark.parametrize(
    ("case", "name", "content", "fmt", "line", "words"), BAD_FILES, ids=[c[0] for c in BAD_FILES]
)
def test_bad_file(
    tmp_path: Path, case: str, name: str, content: str | bytes, fmt: str | None, line: int | None, words: str
) -> None:
    path = tmp_path / name
    _write(path, content)
    with pytest.raises(TraceFormatError) as info:
        load_trace(path, fmt)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert str(path) in message and info.value.path == str(path)
    assert info.value.line == line, message
    if line is not None:
        assert f"line {line}:" in message
    assert words in message, message
    assert "expected" in message
    assert len(message) < 1000  # a hostile value is clipped, not echoed whole


def test_mahimahi_huge_period_names_the_bins_and_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "huge.mahimahi"
    path.write_text("1\n1000000000000\n")
    with pytest.raises(TraceFormatError, match=r"2,000,000,000 bins of 500 ms.*MAX_TRACE_SAMPLES=10,000,000"):
        load_trace(path)


# (id, setup(tmp_path) -> source, exception type, words)
def _long_name(tmp_path: Path) -> Any:
    return tmp_path / ("x" * 300 + ".csv")


def _directory(tmp_path: Path) -> Any:
    (tmp_path / "dir.csv").mkdir()
    return tmp_path / "dir.csv"


def _missing(tmp_path: Path) -> Any:
    return tmp_path / "missing.cooked"


def _too_large(tmp_path: Path) -> Any:
    path = tmp_path / "big.mahimahi"
    with open(path, "wb") as f:  # sparse: no disk space used
        f.truncate(MAX_TRACE_FILE_BYTES + 1)
    return path


def _not_a_path(tmp_path: Path) -> Any:
    return 12345


def _empty_path(tmp_path: Path) -> Any:
    return ""


def _device(tmp_path: Path) -> Any:
    return "/dev/null"


BAD_SOURCES: list[tuple[str, Callable[[Path], Any], type[Exception], str]] = [
    ("name_too_long", _long_name, TraceFormatError, "cannot look at the path"),
    ("directory", _directory, TraceNotFoundError, "is a directory"),
    ("missing", _missing, TraceNotFoundError, "no such file"),
    ("too_large", _too_large, TraceFormatError, "MAX_TRACE_FILE_BYTES"),
    ("not_a_path", _not_a_path, TraceFormatError, "not a path"),
    ("empty_path", _empty_path, TraceNotFoundError, "empty path"),
    ("device", _device, TraceNotFoundError, "not a regular file"),
]


@pytest.mark.parametrize(("case", "setup", "kind", "words"), BAD_SOURCES, ids=[c[0] for c in BAD_SOURCES])
def test_bad_source(
    tmp_path: Path, case: str, setup: Callable[[Path], Any], kind: type[Exception], words: str
) -> None:
    source = setup(tmp_path)
    with pytest.raises(kind) as info:
        load_trace(source)
    assert isinstance(info.value, TraceFormatError)
    assert words in str(info.value) and "expected" in str(info.value)
    if isinstance(source, Path):
        assert str(source) in str(info.value)


def test_missing_file_is_also_a_file_not_found_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_trace(tmp_path / "nope.csv")


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.cooked"
    path.write_text("0 1\n1 2\n")

    def denied(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied", str(path))

    # Root reads any file whatever its mode, so refuse the open itself.
    monkeypatch.setattr(formats_module, "open", denied, raising=False)
    with pytest.raises(TraceFormatError, match=r"locked.cooked: cannot read the file \(Permission denied\)"):
        load_trace(path)
    monkeypatch.setattr(formats_module, "open", builtins.open, raising=False)
    assert len(load_trace(path)) == 1


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files of any mode")
def test_permission_denied_for_real(tmp_path: Path) -> None:
    path = tmp_path / "locked.cooked"
    path.write_text("0 1\n1 2\n")
    path.chmod(0)
    with pytest.raises(TraceFormatError, match="cannot read the file"):
        load_trace(path)


@pytest.mark.parametrize("bin_ms", [0, -5, 2.5, True, 10**30])
def test_bad_bin_ms(bin_ms: Any) -> None:
    with pytest.raises(ValueError, match="bin_ms"):
        load_trace(DATA / "fixture.mahimahi", bin_ms=bin_ms)


# ------------------------------------------------------------------------------------------ BOM
@pytest.mark.parametrize(
    ("file_name", "fmt"),
    [
        ("fixture.mahimahi", "mahimahi"),
        ("fixture.cooked", "cooked"),
        ("fixture.hsdpa", "hsdpa"),
        ("fixture.csv", "csv"),
        ("fixture_lumos.csv", "csv"),
        ("fixture.sabre.json", "sabre"),
    ],
)
def test_bom_is_accepted_in_every_format(tmp_path: Path, file_name: str, fmt: str) -> None:
    plain = load_trace(DATA / file_name)
    text = (DATA / file_name).read_text(encoding="utf-8")
    with_bom = tmp_path / file_name
    with_bom.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert load_trace(with_bom, name=plain.name) == plain
    detected = tmp_path / "no_extension"  # detection by content sees past the BOM too
    detected.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert load_trace(detected, name=plain.name) == plain


# ------------------------------------------------------------------------------------------ limits
def test_trace_limits() -> None:
    with pytest.raises(ValueError, match="MAX_BPS"):
        BandwidthTrace([0.0], [2e12], duration_s=1.0)
    with pytest.raises(ValueError, match="MAX_BPS"):
        constant(1e9, 10.0).scale(1e4)
    with pytest.raises(ValueError, match="MAX_TIME_S"):
        BandwidthTrace([0.0], [1.0], duration_s=1e13)
    with pytest.raises(ValueError, match=r"would need 750,000,060 samples.*MAX_TRACE_SAMPLES=10,000,000"):
        load_trace("lte_drive").slice(0.0, 1e9)
    with pytest.raises(ValueError, match="numeric"):
        BandwidthTrace(["a", "b"], [1.0])


def test_save_limits_and_unwritable_outputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="MAX_TRACE_SAMPLES"):
        save_trace(constant(1e6, 1e5), tmp_path / "long.mahimahi")  # 10^8 ms
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(OSError, match=r"cannot write .*a_file.*expected a writable file path"):
        save_trace(constant(1e6, 1.0), blocker / "t.csv")
    assert not list(tmp_path.glob("**/*.tmp"))


# ------------------------------------------------------------------------------------------ generators
# (id, kind, params, words the message must contain: the parameter and its value)
BAD_PARAMS: list[tuple[str, str, dict[str, Any], str]] = [
    ("negative_rate", "constant", {"bps": -1.0}, "bps=-1.0"),
    ("nan_rate", "constant", {"bps": float("nan")}, "bps=nan"),
    ("inf_rate", "constant", {"bps": float("inf")}, "bps=inf"),
    ("absurd_rate", "constant", {"bps": 1e13}, "MAX_BPS"),
    (
        "huge_int_rate",
        "constant",
        {"bps": 10**400},
        "constant.bps: expected float, got 1000",
    ),
    ("string_rate", "constant", {"bps": "fast"}, "bps: expected float, got 'fast'"),
    ("bool_rate", "constant", {"bps": True}, "bps: expected float, got True"),
    ("zero_duration", "constant", {"bps": 1.0, "duration_s": 0.0}, "duration_s=0.0"),
    ("negative_duration", "gilbert_elliott", {"duration_s": -3.0}, "duration_s=-3.0"),
    ("inf_duration", "lognormal_walk", {"duration_s": float("inf")}, "duration_s=inf"),
    ("duration_1e12_ge", "gilbert_elliott", {"duration_s": 1e12}, "1e+13 samples"),
    ("duration_1e12_walk", "lognormal_walk", {"duration_s": 1e12}, "MAX_TRACE_SAMPLES=10,000,000"),
    ("duration_1e12_markov", "pensieve_markov", {"duration_s": 1e12}, "MAX_TRACE_SAMPLES"),
    ("duration_1e12_drive", "drive", {"duration_s": 1e12}, "MAX_TRACE_SAMPLES"),
    ("tiny_dt", "gilbert_elliott", {"dt_s": 1e-9}, "MAX_TRACE_SAMPLES"),
    ("prob_above_1", "gilbert_elliott", {"p_good_to_bad": 1.5}, "p_good_to_bad=1.5"),
    ("prob_below_0", "gilbert_elliott", {"p_bad_to_good": -0.1}, "p_bad_to_good=-0.1"),
    ("prob_nan", "gilbert_elliott", {"p_bad_to_good": float("nan")}, "p_bad_to_good=nan"),
    ("huge_sigma", "lognormal_walk", {"sigma": 1e200}, "sigma=1e+200"),
    ("too_many_states", "pensieve_markov", {"n_states": 10**6}, "MAX_MARKOV_STATES"),
    ("fractional_states", "pensieve_markov", {"n_states": 2.5}, "n_states: expected int, got 2.5"),
    ("negative_seed", "gilbert_elliott", {"seed": -1}, "seed=-1"),
    ("float_seed", "lognormal_walk", {"seed": 1.5}, "seed=1.5"),
    ("string_seed", "pensieve_markov", {"seed": "abc"}, "seed='abc'"),
    ("huge_seed", "drive", {"seed": 2**70}, "seed=1180591620717411303424"),
    ("seed_for_constant_checked", "constant", {"bps": 1.0, "seed": -4}, "seed=-4"),
    ("loop_string", "constant", {"bps": 1.0, "loop": "no"}, "loop: expected bool, got 'no'"),
    ("name_number", "constant", {"bps": 1.0, "name": 5}, "name: expected str, got 5"),
    ("kinds_string", "drive", {"kinds": "constant"}, "drive.kinds: expected list, got 'constant'"),
    ("too_many_segments", "drive", {"duration_s": 1e5, "mean_segment_s": 1.0}, "MAX_DRIVE_SEGMENTS"),
    (
        "segment_duration_twice",
        "drive",
        {"segments": [["constant", 5.0, {"bps": 1, "duration_s": 2}]]},
        "segments[0] params",
    ),
    (
        "segment_bad_rate",
        "drive",
        {"segments": [["constant", 5.0, {"bps": -2}]]},
        "segments[0]: constant: bps=-2",
    ),
    ("schedule_not_list", "steps", {"schedule": 5, "duration_s": 10}, "steps.schedule: expected list"),
    ("schedule_late_start", "steps", {"schedule": [[1, 5.0]], "duration_s": 10}, "schedule[0] time=1"),
    (
        "schedule_nan_rate",
        "steps",
        {"schedule": [[0, float("nan")]], "duration_s": 10},
        "schedule[0] bps=nan",
    ),
    ("unknown_param", "constant", {"bps": 1.0, "bsp": 5}, "constant.bsp: unknown key. Did you mean 'bps'?"),
    ("unknown_kind", "warp", {}, "unknown trace generator 'warp'"),
    ("missing_param", "constant", {}, "'bps'"),
]


@pytest.mark.parametrize(("case", "kind", "params", "words"), BAD_PARAMS, ids=[c[0] for c in BAD_PARAMS])
def test_bad_generator_parameter(case: str, kind: str, params: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError) as info:
        generate(kind, **params)
    message = str(info.value)
    assert words in message, message
    assert message.startswith((f"{kind}: ", f"{kind}.")) or "unknown trace generator" in message, message
    # A range error says what it expected; the registry's option errors name the type or the options.
    assert "expect" in message or "key" in message, message
    assert type(info.value) in (ValueError, OptionError, UnknownNameError), type(info.value)


def test_derive_seed_is_stable_and_documented() -> None:
    # Fixed values: a change here would change every seedless scenario's trace.
    assert derive_seed(0, "trace") == 7334539576742354563
    assert derive_seed(0, "trace") == derive_seed(0, "trace")
    seeds = {
        derive_seed(0, "trace"),
        derive_seed(1, "trace"),
        derive_seed(0, "trace", "b"),
        derive_seed(0, "tr"),
    }
    assert len(seeds) == 4
    assert derive_seed(-5) != derive_seed(5)
    assert derive_seed(0, "ab", "c") != derive_seed(0, "a", "bc")
    assert all(0 <= s < 2**63 for s in seeds)
    with pytest.raises(ValueError, match="base_seed"):
        derive_seed(1.5, "trace")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="names"):
        derive_seed(1, 2)  # type: ignore[arg-type]


def test_generate_is_deterministic_across_processes() -> None:
    seed = derive_seed(3, "trace")
    here = generate("drive", seed=seed, duration_s=120.0)
    code = (
        "from bwgym.traces import generate, derive_seed;"
        "t = generate('drive', seed=derive_seed(3, 'trace'), duration_s=120.0);"
        "print(t.bps.tobytes().hex()); print(t.edges_s.tobytes().hex())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [here.bps.tobytes().hex(), here.edges_s.tobytes().hex()]
    # Every kind accepts a seed; deterministic ones ignore it.
    assert generate("constant", seed=seed, bps=5.0) == constant(5.0)


@pytest.mark.parametrize("kind", ["lognormal_walk", "pensieve_markov", "gilbert_elliott", "drive"])
def test_same_seed_same_trace(kind: str) -> None:
    a, b = generate(kind, seed=11, duration_s=200.0), generate(kind, seed=11, duration_s=200.0)
    assert a == b
    np.testing.assert_array_equal(a.bps, b.bps)


def test_large_generators_stay_fast() -> None:
    # 10^6 samples: the AR(1) loop runs on Python floats.
    assert len(lognormal_walk(duration_s=1e6, seed=0)) > 1000


# ------------------------------------------------------------------------------------------ CLI
def _cli_cases(tmp: Path) -> list[tuple[str, list[str], str]]:
    """(id, argv after `traces`, words the stderr line must contain)."""
    binary = tmp / "blob.csv"
    binary.write_bytes(bytes(range(256)))
    folder = tmp / "folder"
    folder.mkdir()
    blocker = tmp / "a_file"
    blocker.write_text("")
    huge = tmp / "huge.mahimahi"
    huge.write_text("1\n1000000000000\n")
    png = str(tmp / "p.png")
    csv_out = str(tmp / "g.csv")
    return [
        ("show_missing", ["show", str(tmp / "nope.cooked")], "no such file"),
        ("show_directory", ["show", str(folder)], "is a directory"),
        ("show_binary", ["show", str(binary)], "UTF-8"),
        ("show_huge_mahimahi", ["show", str(huge)], "MAX_TRACE_SAMPLES"),
        ("show_bin_ms_zero", ["show", "lte_drive", "--bin-ms", "0"], "--bin-ms"),
        ("show_bin_ms_text", ["show", "lte_drive", "--bin-ms", "x"], "--bin-ms"),
        ("show_step_negative", ["show", "lte_drive", "--step-s", "-1"], "--step-s"),
        ("show_step_nan", ["show", "lte_drive", "--step-s", "nan"], "--step-s"),
        ("show_unknown_format", ["show", "lte_drive", "--format", "xml"], "unknown format 'xml'"),
        ("show_close_format", ["show", "lte_drive", "--format", "csvv"], "did you mean 'csv'"),
        ("show_unknown_flag", ["show", "lte_drive", "--bogus"], "unrecognized arguments: --bogus"),
        ("show_nothing", ["show"], "required"),
        ("plot_until_1e9", ["plot", "lte_drive", "--out", png, "--until-s", "1e9"], "MAX_TRACE_SAMPLES"),
        ("plot_until_zero", ["plot", "lte_drive", "--out", png, "--until-s", "0"], "--until-s"),
        ("plot_until_inf", ["plot", "lte_drive", "--out", png, "--until-s", "inf"], "--until-s"),
        ("plot_no_out", ["plot", "lte_drive"], "--out"),
        ("plot_unwritable", ["plot", "lte_drive", "--out", str(blocker / "p.png")], "cannot write"),
        (
            "gen_duration_1e12",
            ["generate", "gilbert_elliott", "--out", csv_out, "--duration-s", "1e12"],
            "1e+13 samples",
        ),
        (
            "gen_duration_zero",
            ["generate", "gilbert_elliott", "--out", csv_out, "--duration-s", "0"],
            "--duration-s",
        ),
        (
            "gen_duration_inf",
            ["generate", "gilbert_elliott", "--out", csv_out, "--duration-s", "inf"],
            "--duration-s",
        ),
        (
            "gen_duration_negative",
            ["generate", "constant", "--out", csv_out, "--duration-s=-5"],
            "--duration-s",
        ),
        ("gen_negative_rate", ["generate", "constant", "--out", csv_out, "--param", "bps=-1"], "bps=-1"),
        (
            "gen_prob_above_1",
            ["generate", "gilbert_elliott", "--out", csv_out, "--param", "p_good_to_bad=2"],
            "p_good_to_bad=2",
        ),
        ("gen_rate_nan", ["generate", "constant", "--out", csv_out, "--param", "bps=NaN"], "bps=nan"),
        ("gen_rate_overflow", ["generate", "constant", "--out", csv_out, "--param", "bps=1e400"], "bps=inf"),
        ("gen_param_no_equals", ["generate", "constant", "--out", csv_out, "--param", "bps"], "KEY=VALUE"),
        ("gen_param_empty_key", ["generate", "constant", "--out", csv_out, "--param", "=3"], "KEY=VALUE"),
        (
            "gen_param_unknown",
            ["generate", "constant", "--out", csv_out, "--param", "bps=1", "--param", "x=1"],
            "constant.x: unknown key",
        ),
        (
            "gen_param_twice",
            ["generate", "constant", "--out", csv_out, "--param", "bps=1", "--param", "bps=2"],
            "given twice",
        ),
        (
            "gen_param_nested",
            ["generate", "steps", "--out", csv_out, "--param", "schedule=" + "[" * 100_000 + "]" * 100_000],
            "nested",
        ),
        (
            "gen_param_string",
            ["generate", "constant", "--out", csv_out, "--param", "bps=fast"],
            "bps: expected float, got 'fast'",
        ),
        ("gen_seed_negative", ["generate", "gilbert_elliott", "--out", csv_out, "--seed", "-1"], "--seed"),
        ("gen_seed_text", ["generate", "gilbert_elliott", "--out", csv_out, "--seed", "abc"], "--seed"),
        ("gen_unknown_kind", ["generate", "warp", "--out", csv_out], "unknown trace generator 'warp'"),
        ("gen_close_kind", ["generate", "stepz", "--out", csv_out], "did you mean 'steps'"),
        (
            "gen_unwritable",
            ["generate", "constant", "--out", str(blocker / "g.csv"), "--param", "bps=1"],
            "cannot write",
        ),
        (
            "gen_unknown_extension",
            ["generate", "constant", "--out", str(tmp / "g.xyz"), "--param", "bps=1"],
            "--format",
        ),
        (
            "gen_unknown_format",
            ["generate", "constant", "--out", csv_out, "--format", "xml"],
            "unknown format 'xml'",
        ),
        ("convert_missing", ["convert", str(tmp / "nope.csv"), str(tmp / "o.csv")], "no such file"),
        ("convert_unknown_extension", ["convert", "lte_drive", str(tmp / "o.xyz")], "--to"),
        ("convert_unwritable", ["convert", "lte_drive", str(blocker / "o.csv")], "cannot write"),
        (
            "convert_to_unknown",
            ["convert", "lte_drive", str(tmp / "o.csv"), "--to", "xml"],
            "unknown format 'xml'",
        ),
        (
            "convert_unit_fixed",
            ["convert", "lte_drive", str(tmp / "o.cooked"), "--unit", "kbps"],
            "--unit kbps",
        ),
        ("convert_bad_unit", ["convert", "lte_drive", str(tmp / "o.csv"), "--unit", "gbps"], "unit one of"),
        ("no_subcommand", [], "required"),
        ("unknown_subcommand", ["explode"], "invalid choice: 'explode'"),
    ]


@pytest.fixture(scope="module")
def cli_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli")


_CASE_IDS = [
    "show_missing",
    "show_directory",
    "show_binary",
    "show_huge_mahimahi",
    "show_bin_ms_zero",
    "show_bin_ms_text",
    "show_step_negative",
    "show_step_nan",
    "show_unknown_format",
    "show_close_format",
    "show_unknown_flag",
    "show_nothing",
    "plot_until_1e9",
    "plot_until_zero",
    "plot_until_inf",
    "plot_no_out",
    "plot_unwritable",
    "gen_duration_1e12",
    "gen_duration_zero",
    "gen_duration_inf",
    "gen_duration_negative",
    "gen_negative_rate",
    "gen_prob_above_1",
    "gen_rate_nan",
    "gen_rate_overflow",
    "gen_param_no_equals",
    "gen_param_empty_key",
    "gen_param_unknown",
    "gen_param_twice",
    "gen_param_nested",
    "gen_param_string",
    "gen_seed_negative",
    "gen_seed_text",
    "gen_unknown_kind",
    "gen_close_kind",
    "gen_unwritable",
    "gen_unknown_extension",
    "gen_unknown_format",
    "convert_missing",
    "convert_unknown_extension",
    "convert_unwritable",
    "convert_to_unknown",
    "convert_unit_fixed",
    "convert_bad_unit",
    "no_subcommand",
    "unknown_subcommand",
]


@pytest.mark.parametrize("case", _CASE_IDS)
def test_cli_refuses_in_one_line(case: str, cli_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case_dir = cli_dir / case
    case_dir.mkdir()
    _, argv, words = {c[0]: c for c in _cli_cases(case_dir)}[case]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    sub = argv[0] if argv and argv[0] in ("show", "plot", "generate", "convert") else None
    assert lines[0].startswith(f"bwgym traces {sub}: " if sub else "bwgym traces: "), lines[0]
    assert words in lines[0], lines[0]
    assert "expected" in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""


def test_cli_case_list_is_complete(tmp_path: Path) -> None:
    assert [c[0] for c in _cli_cases(tmp_path)] == _CASE_IDS


def test_cli_in_a_real_process(tmp_path: Path) -> None:
    # The exit status and stderr of a real process, hostile file names included.
    weird = tmp_path / "two\nlines.cooked"
    weird.write_text("0 1\n1 nan\n")
    for argv in (
        ["show", str(weird)],
        ["plot", "lte_drive", "--out", str(tmp_path / "p.png"), "--until-s", "1e9"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "bwgym.traces.commands", *argv],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "p.png").exists()


def test_cli_still_works(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "deep" / "g.csv"
    assert main(["generate", "gilbert_elliott", "--out", str(out), "--duration-s", "10", "--seed", "4"]) == 0
    assert load_trace(out).duration_s == pytest.approx(10.0)
    assert main(["generate", "constant", "--out", str(out), "--param", "bps=5", "--seed", "4"]) == 0
    assert main(["--help"]) == 0
    capsys.readouterr()
    assert MAX_BPS == 1e12 and MAX_TRACE_SAMPLES == 10_000_000


@pytest.mark.parametrize("seed", [-1, 1.5, "3", 2**64, True])
def test_link_refuses_bad_seeds(seed: Any) -> None:
    from bwgym.traces import Link

    with pytest.raises(ValueError, match="seed"):
        Link(constant(1e5), 0.04, seed=seed)
    link = Link(constant(1e5), 0.04, seed=0)
    with pytest.raises(ValueError, match="seed"):
        link.reset(0.0, seed=seed)
