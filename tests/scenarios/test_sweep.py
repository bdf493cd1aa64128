import doctest
import importlib.util
import logging
import os
import socket
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bwgym.cli import main
from bwgym.scenarios.config import ConfigError
from bwgym.scenarios.sweep import (
    ClusterError,
    expand_grid,
    open_executor,
    parse_grid,
    parse_value,
    point_name,
    run_sweep,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def scenario_path(tiny_scenario):
    return tiny_scenario()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------ the grid
def test_parse_grid_reads_yaml_scalars_in_order():
    grid = parse_grid(["trace.scale=0.01, 1e-1,1", "codec.name=jpeg,raw", "run.record_steps=true,false"])
    assert grid == {
        "trace.scale": [0.01, 0.1, 1],
        "codec.name": ["jpeg", "raw"],
        "run.record_steps": [True, False],
    }
    assert list(grid) == ["trace.scale", "codec.name", "run.record_steps"]
    assert parse_value("1e-2") == 0.01 and parse_value("null") is None
    assert parse_grid(["env.kwargs.image_size=32,48"]) == {
        "env.kwargs.image_size": [32, 48]
    }  # free-form mapping


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("trace.scal=0.1,1", "--grid trace.scal: unknown key 'scal' in trace. Did you mean 'trace.scale'?"),
        ("codecs.name=jpeg", "--grid codecs.name: unknown key 'codecs' in scenario. Did you mean 'codec'?"),
        ("codec=jpeg", "--grid codec: is a section; name one of its keys"),
        ("trace.scale.x=1", "--grid trace.scale.x: trace.scale is a single value, not a section"),
        ("trace.scale", "--grid expects key=value1,value2"),
        ("trace.scale=", "--grid trace.scale: empty value"),
        ("trace.scale=0.1,,1", "--grid trace.scale: empty value"),
        ("trace.scale=0.1,0.1", "a value appears twice"),
        ("name=a,b", "--grid name: grid points are named after their values"),
    ],
)
def test_grid_errors_name_the_key(spec, message):
    with pytest.raises(ConfigError) as info:
        parse_grid([spec])
    assert message in str(info.value)


def test_grid_key_given_twice_or_missing():
    with pytest.raises(ConfigError, match="given twice"):
        parse_grid(["trace.scale=1", "trace.scale=2"])
    with pytest.raises(ConfigError, match="at least one --grid"):
        parse_grid([])


def test_points_are_named_deterministically_and_validated(scenario_path):
    assert (
        point_name("base", {"trace.scale": 0.01, "codec.name": "jpeg"})
        == "base__trace.scale=0.01__codec.name=jpeg"
    )
    assert point_name("b", {"trace.source": "a/b.csv", "x": True}) == "b__trace.source=a-b.csv__x=true"
    points = expand_grid(
        scenario_path, {"trace.scale": [0.5, 4.0], "codec.name": ["jpeg", "raw"]}, {"run.episodes": 1}
    )
    assert [p.scenario.name for p in points] == [
        "tiny__trace.scale=0.5__codec.name=jpeg",
        "tiny__trace.scale=0.5__codec.name=raw",
        "tiny__trace.scale=4.0__codec.name=jpeg",
        "tiny__trace.scale=4.0__codec.name=raw",
    ]
    assert [(p.scenario.trace.scale, p.scenario.codec.name, p.scenario.run.episodes) for p in points] == [
        (0.5, "jpeg", 1),
        (0.5, "raw", 1),
        (4.0, "jpeg", 1),
        (4.0, "raw", 1),
    ]
    with pytest.raises(ConfigError, match="codec.name: unknown value 'jpg'. Did you mean 'jpeg'?"):
        expand_grid(scenario_path, {"codec.name": ["jpeg", "jpg"]})
    with pytest.raises(ConfigError, match="trace.scale: invalid value -1.0"):
        expand_grid(scenario_path, {"trace.scale": [1.0, -1.0]})
    with pytest.raises(ConfigError, match="also set as an override"):
        expand_grid(scenario_path, {"trace.scale": [1.0]}, {"trace.scale": 2.0})


def test_cli_grid_error_is_one_line(scenario_path, tmp_path, capsys):
    assert main(["sweep", str(scenario_path), "--grid", "trace.scal=1,2", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bwgym sweep: --grid trace.scal: unknown key 'scal'") and "\n" not in err
    assert not (tmp_path / "s").exists()


def test_docstring_examples_run():
    import bwgym.scenarios.sweep as module

    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------------------------ executors
def _sweep_on_cluster(scenario_path, tmp_path, cluster: str, *flags: str) -> int:
    """``bwgym sweep`` of one grid point on ``--cluster cluster``; the exit status."""
    out = str(tmp_path / "s")
    return main(
        ["sweep", str(scenario_path), "--grid", "trace.scale=1", "--cluster", cluster, *flags, "--out", out]
    )


def test_unreachable_cluster_is_one_line_and_exit_2(scenario_path, tmp_path, capsys):
    address = f"tcp://127.0.0.1:{_free_port()}"
    code = _sweep_on_cluster(scenario_path, tmp_path, address, "--connect-timeout", "0.5")
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith(f"bwgym sweep: cannot reach the Dask scheduler at {address}") and "\n" not in err
    assert "Traceback" not in err


def test_cluster_without_dask_is_one_line_and_exit_2(scenario_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` raises ImportError
    with pytest.raises(ClusterError), open_executor("local:2"):
        pass
    code = _sweep_on_cluster(scenario_path, tmp_path, "local:2")
    assert code == 2
    assert (
        capsys.readouterr().err.strip() == "bwgym sweep: --cluster needs Dask: pip install 'bwgym[cluster]'"
    )


def test_bad_local_cluster_spec_and_workers_with_cluster(scenario_path, tmp_path, capsys):
    pytest.importorskip("distributed")
    assert _sweep_on_cluster(scenario_path, tmp_path, "local:x") == 2
    assert "expected local:N" in capsys.readouterr().err
    assert _sweep_on_cluster(scenario_path, tmp_path, "local:2", "--workers", "2") == 2
    assert "--workers sizes the local process pool" in capsys.readouterr().err


# ------------------------------------------------------------------------------ sweeps
def test_sweep_folder_table_plots_and_resume(scenario_path, tmp_path, capsys):
    out = tmp_path / "sweep"
    common = [
        "sweep",
        str(scenario_path),
        "--grid",
        "trace.scale=0.5,4",
        "--grid",
        "codec.name=jpeg,raw",
        "--workers",
        "1",
        "--out",
        str(out),
        "--quiet",
    ]
    args = [*common, "--episodes", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "success_rate" in printed and str(out / "sweep.parquet") in printed
    table = pd.read_parquet(out / "sweep.parquet")
    assert list(table.columns[:3]) == ["trace.scale", "codec.name", "scenario"]
    assert (
        list(table["trace.scale"]) == [0.5, 0.5, 4.0, 4.0]
        and list(table["codec.name"]) == ["jpeg", "raw"] * 2
    )
    for column in (
        "success_rate",
        "success_ci_low",
        "success_ci_high",
        "mean_bandwidth_bps",
        "mean_budget_bits",
        "mean_bits_sent",
    ):
        assert table[column].notna().all(), column
    assert (table.mean_budget_bits[2:].to_numpy() > table.mean_budget_bits[:2].to_numpy()).all()
    pd.testing.assert_frame_equal(table, pd.read_csv(out / "sweep.csv"), check_dtype=False)
    assert (out / "plots" / "success_vs_trace.scale.png").is_file()
    for name in table.scenario:
        assert (out / name / "episodes.parquet").is_file() and (out / name / "config.yaml").is_file()
    assert yaml.safe_load((out / "sweep.yaml").read_text())["grid"] == {
        "trace.scale": [0.5, 4.0],
        "codec.name": ["jpeg", "raw"],
    }

    assert main(args) == 2  # the folder holds a sweep
    assert "already holds a sweep; pass --resume" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    pd.testing.assert_frame_equal(table, pd.read_parquet(out / "sweep.parquet"))
    capsys.readouterr()
    assert main([*common, "--episodes", "2", "--resume"]) == 2  # other settings per point
    assert "holds a run of another configuration" in capsys.readouterr().err


@pytest.mark.slow
def test_process_pool_and_dask_local_cluster_give_identical_tables(scenario_path, tmp_path):
    distributed = pytest.importorskip("distributed")
    grid = {"trace.scale": [0.5, 4.0]}
    pool = run_sweep(scenario_path, grid, tmp_path / "pool", workers=2, progress=False, plots=False)

    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    try:
        with distributed.Client(cluster) as client:
            assert len(client.nthreads()) == 2
            dask = run_sweep(
                scenario_path,
                grid,
                tmp_path / "dask",
                executor=client,
                workers=2,
                progress=False,
                plots=False,
            )
            setup = client.run(
                lambda dask_worker: (
                    "bwgym-worker-setup" in dask_worker.plugins,
                    os.environ.get("OMP_NUM_THREADS"),
                )
            )
    finally:
        cluster.close()

    pd.testing.assert_frame_equal(pool.table, dask.table)
    for a, b in zip(pool.runs, dask.runs, strict=True):
        pd.testing.assert_frame_equal(a.episodes, b.episodes)
    assert len(pool.table) == 2 and list(pool.table.episodes) == [2, 2]
    assert set(setup.values()) == {(True, "1")}  # same worker setup as the process pool


# ------------------------------------------------------------------------------ bench
def _load_run_all():
    spec = importlib.util.spec_from_file_location("run_all_under_test", REPO / "benchmarks" / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_lists_every_benchmark_script(capsys):
    assert main(["bench", "--list"]) == 0
    names = capsys.readouterr().out.split()
    assert {"env_speed", "wrapper_speed", "sweep_speed"} <= set(names)
    assert "run_all" not in names and "report" not in names


def test_run_all_continues_past_failures(tmp_path, monkeypatch, capsys):
    run_all = _load_run_all()
    (tmp_path / "a_fails.py").write_text("import sys\nprint('a ran')\nsys.exit(3)\n")
    (tmp_path / "b_works.py").write_text("print('b ran')\n")
    (tmp_path / "report.py").write_text("raise SystemExit('not a benchmark')\n")
    monkeypatch.setattr(run_all, "HERE", tmp_path)
    assert run_all.main([]) == 1
    out, err = capsys.readouterr()
    assert "a_fails" in out and "FAILED (exit code 3)" in out and "b_works" in out
    assert "1 of 2 benchmarks failed: a_fails" in err
    assert run_all.main(["--only", "b_works"]) == 0
    assert run_all.main(["--only", "nope"]) == 2
