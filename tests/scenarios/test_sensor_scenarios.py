"""The SensorNetwork library scenarios run end to end (vector codecs, Kalman fusion agent)."""

import pandas as pd
import pytest

from bwgym.cli import main
from bwgym.scenarios.config import ConfigError, library_scenarios, load_scenario
from bwgym.scenarios.factory import make_agent, make_env
from bwgym.scenarios.runner import run_scenario

SENSOR_SCENARIOS = ["sensors_narrowband_scalar", "sensors_narrowband_predictive", "sensors_bursty_predictive"]
SHORT = {"run.episodes": 2, "env.kwargs.horizon": 30}


def test_sensor_scenarios_are_in_the_library():
    assert set(SENSOR_SCENARIOS) <= set(library_scenarios())


@pytest.mark.parametrize("name", SENSOR_SCENARIOS)
def test_sensor_scenario_runs_two_short_episodes(tmp_path, name):
    scenario = load_scenario(name, SHORT)
    result = run_scenario(scenario, tmp_path / name, progress=False, plots=False)
    episodes = result.episodes
    assert len(episodes) == 2 and (episodes.steps == 30).all()
    steps = pd.read_parquet(result.out_dir / "steps.parquet")
    assert (steps.bits_sent_total <= steps.budget_bits).all()
    assert steps.bits_sent_total.sum() > 0
    # the Kalman fusion agent on decoded views: per-step squared error far below the state's spread
    # (a random action has an error of several units of variance)
    mean_sq_error = -episodes["return"].sum() / episodes.steps.sum()
    limit = 0.5 if "ar1" in str(scenario.env.kwargs) else 2.0
    assert mean_sq_error < limit, mean_sq_error


def test_bwgym_run_runs_a_sensor_scenario(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "run",
            "sensors_narrowband_predictive",
            "--episodes",
            "2",
            "--out",
            str(out),
            "--set",
            "env.kwargs.horizon=20",
        ]
    )
    assert code in (0, None)
    assert (out / "episodes.parquet").is_file() and (out / "plots" / "success.png").is_file()
    assert not (out / "plots" / "frames.png").exists()  # vector views: no frames to draw


def test_kalman_agent_refuses_a_camera_env():
    scenario = load_scenario("lora_jpeg", {"agent.name": "kalman"})
    env = make_env(scenario)
    try:
        with pytest.raises(ConfigError, match="kalman agent"):
            make_agent(scenario, env)
    finally:
        env.close()
