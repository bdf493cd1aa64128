import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from bwgym.cli import main
from bwgym.common.stats import wilson_interval
from bwgym.scenarios.config import ConfigError, load_scenario
from bwgym.scenarios.run_folder import read_episodes
from bwgym.scenarios.runner import run_scenario


@pytest.fixture
def scenario_path(tiny_scenario):
    return tiny_scenario(agent="random", episodes=4)


def test_wilson_interval_known_values():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_run_writes_the_run_folder(tmp_path, scenario_path):
    scenario = load_scenario(scenario_path)
    result = run_scenario(scenario, tmp_path / "run", progress=False)
    out = result.out_dir
    for name in ("config.yaml", "episodes.parquet", "steps.parquet", "summary.csv"):
        assert (out / name).is_file(), name
    assert {p.name for p in (out / "plots").glob("*.png")} == {
        "success.png",
        "allocation.png",
        "psnr.png",
        "frames.png",
    }
    assert any((out / "tensorboard").iterdir())
    episodes = pd.read_parquet(out / "episodes.parquet")
    assert list(episodes.episode) == [0, 1, 2, 3] and list(episodes.seed) == [10, 11, 12, 13]
    steps = pd.read_parquet(out / "steps.parquet")
    assert len(steps) == int(episodes.steps.sum()) + len(episodes)  # reset row + one per step
    assert (steps.bits_sent_total <= steps.budget_bits).all()
    summary = pd.read_csv(out / "summary.csv")
    assert summary.episodes[0] == 4 and 0 <= summary.success_ci_low[0] <= summary.success_ci_high[0] <= 1
    assert yaml.safe_load((out / "config.yaml").read_text())["name"] == "tiny"


def test_same_seed_same_table_and_workers_do_not_matter(tmp_path, scenario_path):
    one = run_scenario(load_scenario(scenario_path), tmp_path / "one", progress=False, plots=False)
    two = run_scenario(
        load_scenario(scenario_path, {"run.workers": 2}), tmp_path / "two", progress=False, plots=False
    )
    again = run_scenario(load_scenario(scenario_path), tmp_path / "again", progress=False, plots=False)
    pd.testing.assert_frame_equal(one.episodes, two.episodes)
    pd.testing.assert_frame_equal(one.episodes, again.episodes)
    pd.testing.assert_frame_equal(
        pd.read_parquet(one.out_dir / "steps.parquet"), pd.read_parquet(two.out_dir / "steps.parquet")
    )


def test_refuses_a_folder_holding_another_run(tmp_path, scenario_path):
    out = tmp_path / "run"
    run_scenario(load_scenario(scenario_path, {"run.episodes": 1}), out, progress=False, plots=False)
    with pytest.raises(ConfigError, match="already holds a run of scenario 'tiny'; pass --resume"):
        run_scenario(load_scenario(scenario_path, {"run.episodes": 1}), out, progress=False, plots=False)
    with pytest.raises(ConfigError, match="another configuration"):
        run_scenario(
            load_scenario(scenario_path, {"run.episodes": 2, "codec.name": "raw"}),
            out,
            resume=True,
            progress=False,
            plots=False,
        )


def test_cli_reports_config_errors_in_one_line(tmp_path, scenario_path, capsys):
    assert main(["run", str(scenario_path), "--set", "codec.name=jpg", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "codec.name: unknown value 'jpg'. Did you mean 'jpeg'?" in err and "Traceback" not in err


@pytest.mark.slow
def test_resume_after_kill_loses_no_finished_episode(tmp_path, scenario_path):
    episodes = 30
    out = tmp_path / "killed"
    env = dict(os.environ, MUJOCO_GL="egl")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bwgym.cli",
            "run",
            str(scenario_path),
            "--episodes",
            str(episodes),
            "--out",
            str(out),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "parts").glob("episode_*.parquet"))) < 3:
        assert proc.poll() is None, f"the run ended early: {proc.stderr.read().decode()[-2000:]}"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = sorted(p.name for p in (out / "parts").glob("episode_*.parquet"))
    assert 3 <= len(finished) < episodes, "the run must be killed in the middle"
    kept = read_episodes(out)
    assert [f"episode_{e:05d}.parquet" for e in kept.episode] == finished

    resumed = run_scenario(
        load_scenario(scenario_path, {"run.episodes": episodes}),
        out,
        resume=True,
        progress=False,
        plots=False,
    )
    fresh = run_scenario(
        load_scenario(scenario_path, {"run.episodes": episodes}),
        tmp_path / "fresh",
        progress=False,
        plots=False,
    )
    assert list(resumed.episodes.episode) == list(range(episodes))
    pd.testing.assert_frame_equal(resumed.episodes, fresh.episodes)


def test_plots_survive_a_perfect_success_rate(tmp_path, scenario_path):
    scenario = load_scenario(scenario_path, {"agent.name": "expert", "run.episodes": 2})
    result = run_scenario(scenario, tmp_path / "perfect", progress=False)
    assert result.summary.success_rate[0] == 1.0
    assert (result.out_dir / "plots" / "success.png").stat().st_size > 0
