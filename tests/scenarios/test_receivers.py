"""Scenarios with several receivers: the schema, its checks, `bwgym run`, resume and the benchmark's numbers."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import yaml

from bwgym.cli import main
from bwgym.scenarios.config import LIBRARY_DIR, ConfigError, load_scenario, scenario_from_dict
from bwgym.scenarios.receivers import parse_receivers
from bwgym.scenarios.run_folder import read_episodes
from bwgym.scenarios.runner import run_scenario
from bwgym.scenarios.two_receivers import (
    ViewFeatures,
    default_traces,
    load_pair,
    load_pixel_baseline,
    run_pixel_baseline,
    run_two_receivers,
)

GW = "two_receivers_gray_wyner"


def library_data(name: str) -> dict:
    return yaml.safe_load((LIBRARY_DIR / f"{name}.yaml").read_text())


@pytest.fixture(scope="module")
def features() -> ViewFeatures:
    torch.set_num_threads(1)
    return ViewFeatures.load_shipped()


def episode_steps(steps: pd.DataFrame, episode: int) -> pd.DataFrame:
    """One episode of a run folder's steps.parquet without the runner's own columns."""
    rows = steps[steps.episode == episode].drop(columns=["scenario", "episode"])
    return rows.reset_index(drop=True)


def test_two_receiver_scenario_runs_from_bwgym_run_as_the_benchmark_computes(
    tmp_path, features, capsys
) -> None:
    out = tmp_path / "gw"
    assert main(["run", GW, "--episodes", "2", "--out", str(out)]) == 0
    assert "mean_action_error.policy" in capsys.readouterr().out
    steps = pd.read_parquet(out / "steps.parquet")
    episodes = pd.read_parquet(out / "episodes.parquet")
    assert list(episodes.episode) == [0, 1] and list(episodes.seed) == [10_000, 10_001]
    for column in ("mean_bits_received.policy", "mean_action_error.policy", "mean_psnr_db.monitor"):
        assert column in episodes and episodes[column].notna().all()
    assert (out / "plots" / "receivers.png").stat().st_size > 0
    # each episode is the first one the benchmark's run_two_receivers plays on the scenario's traces
    gw = load_pair(features)[0]
    for e, seed in enumerate(episodes.seed):
        expected = run_two_receivers(gw, features, episodes=1, seed=int(seed), traces=default_traces(seed=7))
        expected = expected.drop(columns=["episode"])
        got = episode_steps(steps, e)
        assert set(got.columns) == set(expected.columns)
        pd.testing.assert_frame_equal(got[expected.columns], expected, check_dtype=False)
        assert episodes.success[e] == expected.episode_success.iloc[0]
        assert episodes["mean_action_error.policy"][e] == pytest.approx(
            expected["action_error.policy"].mean()
        )


@pytest.mark.slow
def test_pixel_scenario_is_the_benchmarks_pixel_baseline(tmp_path, features) -> None:
    result = run_scenario(
        load_scenario("two_receivers_ndpca", {"run.episodes": 1}),
        tmp_path / "px",
        progress=False,
        plots=False,
    )
    steps = pd.read_parquet(result.out_dir / "steps.parquet")
    expected = run_pixel_baseline(load_pixel_baseline(), features.agent, 256, 24, episodes=1, seed=10_000)
    # the scenario has no broadcast link, and its links offer what the trace does (the cap is the frame budget)
    columns = [
        c for c in expected.columns if c in steps and c != "episode" and not c.startswith("budget_bits.")
    ]
    assert {
        "action_error.policy",
        "psnr_db.monitor",
        "bits_sent.receiver_2",
        "frame_budget_bits.receiver_1",
    } <= set(columns)
    pd.testing.assert_frame_equal(episode_steps(steps, 0)[columns], expected[columns], check_dtype=False)


def test_resume_keeps_finished_episodes(tmp_path) -> None:
    scenario = load_scenario("two_receivers_separate", {"run.episodes": 2})
    out = tmp_path / "run"
    full = run_scenario(scenario, out, progress=False, plots=False)
    kept = out / "parts" / "episode_00000.parquet"
    stamp = kept.stat().st_mtime_ns
    # an interrupted run: episode 1 never finished, nothing consolidated
    for path in (out / "parts" / "episode_00001.parquet", out / "parts" / "steps_00001.parquet"):
        path.unlink()
    for name in ("episodes.parquet", "steps.parquet", "summary.csv"):
        (out / name).unlink()
    assert list(read_episodes(out).episode) == [0]
    resumed = run_scenario(scenario, out, resume=True, progress=False, plots=False)
    assert kept.stat().st_mtime_ns == stamp  # finished episodes are not run again
    pd.testing.assert_frame_equal(resumed.episodes, full.episodes)


def with_receivers(name: str = GW, **changes) -> dict:
    data = library_data(name)
    data.update(changes)
    return data


def test_single_receiver_scenarios_are_unchanged() -> None:
    scenario = load_scenario("narrowband_ndpca")
    assert scenario.receivers == [] and scenario.links == {}


def test_unknown_keys_suggest_the_near_one() -> None:
    data = with_receivers()
    data["receivers"][0]["strems"] = data["receivers"][0].pop("streams")
    with pytest.raises(ConfigError, match=r"receivers\[0\]\.strems: unknown key\. Did you mean 'streams'\?"):
        scenario_from_dict(data)
    data = with_receivers()
    data["links"]["broadcast"]["trcae"] = data["links"]["broadcast"].pop("trace")
    with pytest.raises(ConfigError, match=r"links\.broadcast\.trcae: unknown key\. Did you mean 'trace'\?"):
        scenario_from_dict(data)
    data = with_receivers()
    data["receivers"][1]["consumes"] = "monitr"
    with pytest.raises(ConfigError, match="consumes: unknown value 'monitr'. Did you mean 'monitor'"):
        scenario_from_dict(data)
    data = with_receivers()
    data["links"]["receiver_2"]["link"] = {"loss_prob": 1.5}
    with pytest.raises(ConfigError, match=r"links\.receiver_2\.link\.loss_prob: invalid value 1\.5"):
        scenario_from_dict(data)


def test_a_stream_a_receiver_hears_needs_a_link() -> None:
    data = with_receivers()
    del data["links"]["receiver_2"]
    with pytest.raises(
        ConfigError, match=r"receivers\[1\] \(monitor\) hears stream 'private_2', which no link carries"
    ):
        scenario_from_dict(data)
    data = with_receivers()
    data["links"]["receiver_2"]["stream"] = "private_1"
    with pytest.raises(ConfigError, match="'private_1' is already carried by links.receiver_1"):
        scenario_from_dict(data)


def test_exactly_one_receiver_acts() -> None:
    data = with_receivers()
    data["receivers"][1] = {"name": "monitor", "consumes": "agent", "streams": ["common", "private_2"]}
    with pytest.raises(ConfigError, match="exactly one receiver consumes 'agent'"):
        scenario_from_dict(data)
    with pytest.raises(ConfigError, match="run.num_envs: a scenario with receivers steps one env at a time"):
        scenario_from_dict(with_receivers(run={"num_envs": 2}))


def test_a_stream_the_codec_does_not_emit_is_refused_before_the_run_folder(tmp_path) -> None:
    # the separate baseline has no common stream: a receiver that hears it names both
    data = with_receivers("two_receivers_separate")
    data["codec"]["checkpoint"] = str(LIBRARY_DIR / data["codec"]["checkpoint"])
    data["receivers"][0]["streams"] = ["common", "private_1"]
    data["links"]["broadcast"] = {
        "stream": "common",
        "trace": {"generator": "constant", "params": {"bps": 1e4}},
    }
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"\(policy\)\.streams: codec 'gray_wyner' does not emit 'common'"):
        run_scenario(scenario_from_dict(data), out, progress=False)
    assert not out.exists()


def test_a_stream_the_codec_emits_needs_a_link(tmp_path) -> None:
    data = with_receivers()
    data["receivers"][1]["streams"] = ["common"]  # the monitor decodes from the common stream alone
    del data["links"]["receiver_2"]
    parse_receivers(scenario_from_dict(data))  # consistent on its own ...
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="codec 'gray_wyner' emits 'private_2', which no link carries"):
        run_scenario(scenario_from_dict(data), out, progress=False)  # ... but the codec emits private_2
    assert not out.exists()


@pytest.mark.slow
def test_sweep_varies_one_link(tmp_path) -> None:
    from bwgym.scenarios.sweep import run_sweep

    result = run_sweep(
        GW,
        {"links.receiver_1.trace.scale": [0.25, 1.0]},
        tmp_path / "sweep",
        overrides={"run.episodes": 1},
        workers=1,
        progress=False,
    )
    table = result.table.set_index("links.receiver_1.trace.scale")
    # a quarter of the trace (over episodes of their own lengths), the other links as they were
    assert (
        table.loc[0.25, "mean_budget_bits.receiver_1"] < 0.4 * table.loc[1.0, "mean_budget_bits.receiver_1"]
    )
    assert table.loc[0.25, "mean_budget_bits.broadcast"] == pytest.approx(
        table.loc[1.0, "mean_budget_bits.broadcast"], rel=0.05
    )
