"""Hostile but fair input: every bad scenario or flag is refused before anything runs.

Each case asserts exit status 2, one line on stderr that names the offending key or flag, no
traceback, and no run folder left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bwgym.cli import main

BASE = {
    "name": "hostile",
    "env": {"id": "bwgym/LocateLift-v0", "kwargs": {"image_size": 48}},
    "trace": {"generator": "constant", "params": {"bps": 400_000.0, "duration_s": 10.0}},
    "codec": {"name": "jpeg"},
    "agent": {"name": "random"},
    "run": {"episodes": 1, "seed": 0},
}
SHIPPED = Path(__file__).resolve().parents[2] / "bwgym" / "codecs" / "checkpoints"


def _merge(base: dict, patch: dict) -> dict:
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        elif value is _DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


_DROP = object()

# (case id, patch of BASE or raw YAML text, the key the message must name)
SCENARIO_CASES = [
    # the file is not a mapping
    ("yaml-list", "- a\n- b\n", "mapping"),
    ("yaml-scalar", "42\n", "mapping"),
    ("yaml-string", "just words\n", "mapping"),
    ("yaml-invalid", "a: [1, 2\n", "YAML"),
    ("yaml-binary", b"\xff\xfe\x00garbage", "YAML"),
    # unknown keys and wrong types
    ("unknown-top-key", {"codecs": {}}, "codecs"),
    ("unknown-run-key", {"run": {"episode": 3}}, "run.episode"),
    ("wrong-type-episodes", {"run": {"episodes": "ten"}}, "run.episodes"),
    ("wrong-type-section", {"codec": "jpeg"}, "codec"),
    # seeds and counts out of range
    ("seed-negative", {"run": {"seed": -1}}, "run.seed"),
    ("seed-too-large", {"run": {"seed": 2**40}}, "run.seed"),
    ("episodes-zero", {"run": {"episodes": 0}}, "run.episodes"),
    ("episodes-absurd", {"run": {"episodes": 10**12}}, "run.episodes"),
    ("workers-zero", {"run": {"workers": 0}}, "run.workers"),
    # names
    ("name-dotdot", {"name": ".."}, "name"),
    ("name-slash", {"name": "a/b"}, "name"),
    ("name-hidden", {"name": ".x"}, "name"),
    ("env-unknown", {"env": {"id": "bwgym/LocateLyft-v0"}}, "env.id"),
    ("env-not-bwgym", {"env": {"id": "CartPole-v1"}}, "env.id"),
    ("codec-unknown", {"codec": {"name": "jpg"}}, "codec.name"),
    ("agent-unknown", {"agent": {"name": "ppo"}}, "agent.name"),
    ("allocator-unknown", {"allocator": {"name": "smart"}}, "allocator.name"),
    ("allocator-fixed-no-weights", {"allocator": {"name": "fixed"}}, "allocator.weights"),
    (
        "allocator-fixed-unknown-view",
        {"allocator": {"name": "fixed", "weights": {"front": 1.0}}},
        "allocator",
    ),
    (
        "allocator-fixed-negative",
        {"allocator": {"name": "fixed", "weights": {"arm": -1.0, "side": 1}}},
        "allocator",
    ),
    # env kwargs
    ("env-kwarg-unknown", {"env": {"kwargs": {"image_sise": 48}}}, "env.kwargs"),
    ("env-kwarg-range", {"env": {"kwargs": {"image_size": 4}}}, "env.kwargs"),
    ("env-kwarg-camera", {"env": {"kwargs": {"cameras": ["arm", "ceiling"]}}}, "env.kwargs"),
    # codec kwargs
    ("codec-kwarg-unknown", {"codec": {"kwargs": {"quality": 5}}}, "codec"),
    ("codec-kwarg-range", {"codec": {"kwargs": {"min_quality": 0}}}, "codec"),
    # link
    ("loss-one", {"link": {"loss_prob": 1.0}}, "link.loss_prob"),
    ("latency-negative", {"link": {"latency_steps": -1}}, "link.latency_steps"),
    ("step-seconds-zero", {"link": {"step_seconds": 0.0}}, "link.step_seconds"),
    ("step-seconds-inf", {"link": {"step_seconds": float("inf")}}, "link.step_seconds"),
    # trace
    ("trace-both", {"trace": {"source": "lte_drive"}}, "trace"),
    ("trace-scale-inf", {"trace": {"scale": float("inf")}}, "trace.scale"),
    ("trace-scale-negative", {"trace": {"scale": -1.0}}, "trace.scale"),
    ("trace-scale-nan", {"trace": {"scale": float("nan")}}, "trace.scale"),
    ("generator-unknown", {"trace": {"generator": "markov"}}, "trace.generator"),
    ("generator-param-unknown", {"trace": {"params": {"rate": 5}}}, "trace.params"),
    ("generator-param-negative", {"trace": {"params": {"bps": -5.0}}}, "trace.params"),
    ("generator-duration-negative", {"trace": {"params": {"duration_s": -1.0}}}, "trace.params"),
    (
        "generator-samples-huge",
        {"trace": {"generator": "lognormal_walk", "params": {"bps": _DROP, "duration_s": 1e12}}},
        "trace.params",
    ),
    (
        "trace-source-missing",
        {"trace": {"generator": _DROP, "params": _DROP, "source": "no_such_trace"}},
        "trace.source",
    ),
    # checkpoints
    ("codec-ckpt-missing", {"codec": {"name": "ndpca", "checkpoint": "nope.ckpt"}}, "codec.checkpoint"),
    ("agent-ckpt-missing", {"agent": {"name": "bc", "checkpoint": "nope.ckpt"}}, "agent.checkpoint"),
    ("sb3-without-ckpt", {"agent": {"name": "sb3"}}, "agent.checkpoint"),
]


def _write(tmp_path: Path, spec) -> Path:
    path = tmp_path / "scenario.yaml"
    if isinstance(spec, bytes):
        path.write_bytes(spec)
    elif isinstance(spec, str):
        path.write_text(spec)
    else:
        path.write_text(yaml.safe_dump(_merge(BASE, spec)))
    return path


def _refused(capsys, argv: list[str], key: str, out: Path | None) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, f"exit {code}, stderr: {err}"
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert key.lower() in err.lower(), f"{key!r} not named in: {err}"
    if out is not None:
        assert not out.exists(), f"a run folder was created: {sorted(out.rglob('*'))}"
    return err


@pytest.mark.parametrize("spec, key", [c[1:] for c in SCENARIO_CASES], ids=[c[0] for c in SCENARIO_CASES])
def test_bad_scenario_is_refused_before_anything_runs(tmp_path, capsys, spec, key):
    path = _write(tmp_path, spec)
    out = tmp_path / "run"
    _refused(capsys, ["run", str(path), "--out", str(out)], key, out)


# checkpoints that exist but are wrong: a directory, another kind, another codec, another image size
CHECKPOINT_CASES = [
    ("codec-ckpt-directory", lambda t: {"codec": {"name": "ndpca", "checkpoint": str(t)}}, "directory"),
    (
        "codec-ckpt-other-codec",
        lambda t: {"codec": {"name": "ndpca", "checkpoint": str(SHIPPED / "dae_locate_lift.ckpt")}},
        "codec/dae",
    ),
    (
        "codec-ckpt-for-jpeg",
        lambda t: {"codec": {"name": "jpeg", "checkpoint": str(SHIPPED / "dae_locate_lift.ckpt")}},
        "codec",
    ),
    ("codec-ckpt-other-size", lambda t: {"codec": {"name": "ndpca"}}, "84"),
    (
        "codec-ckpt-not-a-checkpoint",
        lambda t: {"codec": {"name": "ndpca", "checkpoint": str(_junk(t))}},
        "not a bwgym checkpoint",
    ),
    (
        "agent-ckpt-codec-file",
        lambda t: {
            "env": {"kwargs": {"image_size": 84}},
            "agent": {"name": "bc", "checkpoint": str(SHIPPED / "ndpca_locate_lift.ckpt")},
        },
        "agent.checkpoint",
    ),
    ("agent-ckpt-other-size", lambda t: {"agent": {"name": "bc"}}, "agent.checkpoint"),
]


def _junk(folder: Path) -> Path:
    path = folder / "junk.ckpt"
    path.write_bytes(b"PK\x03\x04 this is not a zip")
    return path


@pytest.mark.parametrize("make, key", [c[1:] for c in CHECKPOINT_CASES], ids=[c[0] for c in CHECKPOINT_CASES])
def test_wrong_checkpoint_is_refused_naming_both_sides(tmp_path, capsys, make, key):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    path = _write(tmp_path, make(folder))
    out = tmp_path / "run"
    _refused(capsys, ["run", str(path), "--out", str(out)], key, out)


FLAG_CASES = [
    ("run-set-no-equals", ["run", "{scenario}", "--set", "codec.name"], "--set"),
    ("run-set-name-escape", ["run", "{scenario}", "--set", "name=..", "--out", "{out}"], "name"),
    ("run-episodes-zero", ["run", "{scenario}", "--episodes", "0", "--out", "{out}"], "--episodes"),
    ("run-workers-zero", ["run", "{scenario}", "--workers", "0", "--out", "{out}"], "--workers"),
    ("run-resume-without-out", ["run", "{scenario}", "--resume"], "--resume"),
    ("run-library-unknown", ["run", "lora_ndcpa", "--out", "{out}"], "scenario"),
    ("run-out-is-a-file", ["run", "{scenario}", "--out", "{file}"], "file"),
    (
        "sweep-workers-zero",
        ["sweep", "{scenario}", "--grid", "trace.scale=0.5,1", "--workers", "0", "--out", "{out}"],
        "--workers",
    ),
    ("sweep-grid-bad", ["sweep", "{scenario}", "--grid", "trace.scale", "--out", "{out}"], "grid"),
    (
        "evaluate-codec-unknown",
        ["evaluate", "--codec", "jpg", "--agent", "random", "--episodes", "1", "--out", "{out}"],
        "codec.name",
    ),
    (
        "evaluate-trace-missing",
        ["evaluate", "--trace", "nowhere.csv", "--agent", "random", "--episodes", "1", "--out", "{out}"],
        "trace",
    ),
]


@pytest.mark.parametrize("argv, key", [c[1:] for c in FLAG_CASES], ids=[c[0] for c in FLAG_CASES])
def test_bad_flags_are_refused(tmp_path, capsys, argv, key):
    scenario = _write(tmp_path, {})
    out = tmp_path / "run"
    afile = tmp_path / "afile.txt"
    afile.write_text("x")
    argv = [a.format(scenario=scenario, out=out, file=afile) for a in argv]
    _refused(capsys, argv, key, out)


def test_relative_checkpoint_paths_resolve_against_the_scenario_file(tmp_path, monkeypatch):
    import shutil

    folder = tmp_path / "exp"
    folder.mkdir()
    shutil.copy(SHIPPED / "linear_dpca_locate_lift.ckpt", folder / "mine.ckpt")
    path = folder / "s.yaml"
    path.write_text(
        yaml.safe_dump(
            _merge(
                BASE,
                {
                    "env": {"kwargs": {"image_size": 84}},
                    "codec": {"name": "linear_dpca", "checkpoint": "mine.ckpt"},
                },
            )
        )
    )
    monkeypatch.chdir(tmp_path)  # the working directory is not the scenario's folder
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--workers", "1"]) == 0
    assert (tmp_path / "run" / "episodes.parquet").exists()


def test_a_seedless_generator_gives_the_same_table_twice_and_on_two_workers(tmp_path):
    spec = {
        **_merge(BASE, {"run": {"episodes": 2}}),
        "trace": {"generator": "gilbert_elliott", "params": {"duration_s": 30.0}},
    }
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    tables = []
    for i, workers in enumerate((1, 1, 2)):
        out = tmp_path / f"run{i}"
        assert main(["run", str(path), "--out", str(out), "--workers", str(workers)]) == 0
        tables.append(pd.read_parquet(out / "steps.parquet")[["episode", "step", "budget_bits"]])
    pd.testing.assert_frame_equal(tables[0], tables[1])
    pd.testing.assert_frame_equal(tables[0], tables[2])


def test_a_second_writer_is_refused_while_a_run_holds_the_folder(tmp_path, capsys):
    from bwgym.scenarios.run_folder import lock_folder

    path = _write(tmp_path, {})
    out = tmp_path / "run"
    held = lock_folder(out, "a test")
    try:
        assert main(["run", str(path), "--out", str(out)]) == 2
        assert "being written by a test" in capsys.readouterr().err
    finally:
        held.close()


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").exists(), reason="needs /proc to find the worker processes")
def test_killing_a_run_leaves_no_worker_behind(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(_merge(BASE, {"run": {"episodes": 200}})))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bwgym.cli",
            "run",
            str(path),
            "--out",
            str(tmp_path / "run"),
            "--workers",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    workers: list[int] = []
    deadline = time.time() + 120
    while time.time() < deadline and len(workers) < 2:
        assert proc.poll() is None, f"the run ended early: {proc.stderr.read().decode()[-2000:]}"
        workers = [
            p for p in _children(proc.pid) if "spawn" in Path(f"/proc/{p}/cmdline").read_text(errors="ignore")
        ]
        time.sleep(0.5)
    assert len(workers) >= 2, "the run never started its two workers"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 15
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), "worker processes outlived the killed run"


@pytest.mark.slow
def test_a_huge_run_streams_in_bounded_memory(tmp_path):
    """run.episodes at its maximum starts at once, streams, and keeps what finished when stopped."""
    path = tmp_path / "s.yaml"
    path.write_text(
        yaml.safe_dump(_merge(BASE, {"codec": {"name": "none"}, "run": {"episodes": 10_000_000}}))
    )
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30)); "
    code = limit + "import sys; from bwgym.cli import main; sys.exit(main(sys.argv[1:]))"
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "run", str(path), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 180
    while time.time() < deadline and len(list((out / "parts").glob("episode_*.parquet"))) < 3:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = list((out / "parts").glob("episode_*.parquet"))
    assert len(done) >= 3
    assert pd.read_parquet(done[0]).episode.iloc[0] >= 0
