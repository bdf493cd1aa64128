"""Fleet scenarios: rounds of N members behind one link; tables, metrics, resume and bad input."""

from __future__ import annotations

import pandas as pd
import pytest

from bwgym.scenarios.config import ConfigError, load_scenario
from bwgym.scenarios.fleet import jain_index
from bwgym.scenarios.runner import run_scenario

#: The tiny scenario's good state at 2.5 Mbit/s: JPEG pairs of 32 px fit (its 250 kbit/s send nothing).
LINK = {"trace.params.good_bps": 2_500_000.0, "link.loss_prob": 0.2, "link.latency_steps": 1}


def _fleet(members: int = 3, allocator: str = "equal", **options):
    return {"members": members, "allocator": {"name": allocator, "kwargs": options}}


def _run(path, out, overrides=None, plots=False):
    result = run_scenario(load_scenario(path, overrides), out, progress=False, plots=plots)
    return result, pd.read_parquet(result.out_dir / "steps.parquet")


def test_a_fleet_of_one_is_the_single_robot_scenario(tmp_path, tiny_scenario):
    """The same episode and step tables, row for row, as the scenario without a fleet."""
    path = tiny_scenario(agent="random", episodes=3)
    single, single_steps = _run(path, tmp_path / "single", LINK)
    fleet, fleet_steps = _run(path, tmp_path / "fleet", {**LINK, "fleet": _fleet(1)})
    pd.testing.assert_frame_equal(fleet.episodes[single.episodes.columns], single.episodes)
    pd.testing.assert_frame_equal(fleet_steps[single_steps.columns], single_steps)
    assert (fleet_steps.fleet_share == 1.0).all() and single_steps.lost.any()
    assert single_steps.bits_sent_total.gt(0).mean() > 0.3


def test_a_fleet_run_writes_its_tables_metrics_and_plot(tmp_path, tiny_scenario):
    """Two rounds of three members: member-episode rows with their seeds, fairness, share plot."""
    path = tiny_scenario(agent="expert", episodes=2)
    result, steps = _run(path, tmp_path / "run", {**LINK, "fleet": _fleet(3, "max_min_fair")}, plots=True)
    episodes, out = result.episodes, result.out_dir
    assert list(episodes.episode) == list(range(6)) and list(episodes.seed) == list(range(10, 16))
    assert list(episodes.member) == [0, 1, 2] * 2 and list(episodes["round"]) == [0, 0, 0, 1, 1, 1]
    fleet = pd.read_parquet(out / "fleet.parquet")
    per_step = fleet.groupby(["round", "step"])
    assert (per_step.bits_sent.sum() <= per_step.link_budget_bits.first()).all()
    assert (fleet[~fleet.active].share == 0).all()
    members = pd.read_csv(out / "fleet_members.csv")
    assert list(members.member) == [0, 1, 2] and (members.episodes == 2).all()
    summary = result.summary.iloc[0]
    assert summary.members == 3 and summary.fleet_allocator == "max_min_fair"
    assert summary.jain_bits == pytest.approx(jain_index(members.bits_sent))
    assert summary.jain_success == pytest.approx(jain_index(members.success_rate))
    successes = int(episodes.success.sum())
    assert successes and summary.bits_per_success == pytest.approx(fleet.bits_sent.sum() / successes)
    assert (out / "plots" / "fleet_shares.png").stat().st_size > 10_000
    assert set(steps.episode) == set(range(6)) and "fleet_share" in steps


def test_a_resumed_fleet_run_gives_the_uninterrupted_table(tmp_path, tiny_scenario):
    """A run cut in round 1 (one member's row written, the rest not) resumes to the same tables."""
    path = tiny_scenario(agent="random", episodes=3)
    overrides = {**LINK, "fleet": _fleet(2, "state", top_k=1)}
    fresh, fresh_steps = _run(path, tmp_path / "fresh", overrides)
    cut = tmp_path / "cut"
    _run(path, cut, overrides)
    for name in ("episode_00003", "episode_00004", "episode_00005", "fleet_00002", "steps_00005"):
        (cut / "parts" / f"{name}.parquet").unlink()
    for name in ("episodes.parquet", "steps.parquet", "fleet.parquet", "summary.csv"):
        (cut / name).unlink()
    resumed = run_scenario(load_scenario(path, overrides), cut, resume=True, progress=False, plots=False)
    pd.testing.assert_frame_equal(resumed.episodes, fresh.episodes)
    pd.testing.assert_frame_equal(pd.read_parquet(cut / "steps.parquet"), fresh_steps)
    pd.testing.assert_frame_equal(
        pd.read_parquet(cut / "fleet.parquet"), pd.read_parquet(fresh.out_dir / "fleet.parquet")
    )


@pytest.mark.parametrize(
    ("fleet", "overrides", "message"),
    [
        (
            _fleet(0),
            {},
            r"fleet.members: invalid value 0; expected an integer in \[1, 64\] \(MAX_FLEET_MEMBERS\)",
        ),
        (_fleet(65), {}, r"fleet.members: invalid value 65"),
        (
            _fleet(2, "equl"),
            {},
            r"fleet.allocator.name: unknown fleet allocator 'equl' \(did you mean 'equal'\?\)",
        ),
        (_fleet(2, "state", top_k=-1), {}, r"fleet.allocator.kwargs: top_k is expected to be >= 0"),
        (_fleet(2, "state", age=1), {}, r"fleet.allocator.kwargs.*age.*age_weight"),
        (
            {"members": 2, "links": {"2": {"loss_prob": 0.1}}},
            {},
            r"fleet.links.2: expected a member index in \[0, 1\]",
        ),
        (
            {"members": 2, "links": {"1": {"loss_prob": 1.5}}},
            {},
            r"fleet.links.1.loss_prob: invalid value 1.5",
        ),
        ({"members": 2, "mebers": 3}, {}, r"fleet.mebers: unknown key. Did you mean 'members'\?"),
        (_fleet(2), {"codec.name": "none"}, r"codec.name must not be 'none'"),
        (_fleet(2), {"run.num_envs": 2}, r"run.num_envs: invalid value 2 for a fleet"),
        (_fleet(64), {"run.seed": 2**31 - 100, "run.episodes": 3}, r"run.seed: .* below 2\*\*31"),
    ],
)
def test_bad_fleet_sections_are_one_line_errors(tiny_scenario, fleet, overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_scenario(tiny_scenario(), {**overrides, "fleet": fleet})
    assert "\n" not in str(err.value)


def test_member_link_extras_apply_to_their_member_only(tmp_path, tiny_scenario):
    from bwgym.scenarios.fleet import make_fleet

    scenario = load_scenario(
        tiny_scenario(), {"fleet": {"members": 3, "links": {"1": {"loss_prob": 0.5, "latency_steps": 2}}}}
    )
    fleet = make_fleet(scenario)
    try:
        assert [(m.loss_prob, m.latency_steps) for m in fleet.members] == [(0.0, 0), (0.5, 2), (0.0, 0)]
        assert fleet.shared_codec is fleet.members[0].codec  # JPEG is stateless: one batched call
    finally:
        fleet.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fleet_lte_jpeg", "fleet_lte_ndpca", "fleet_narrowband_ndpca"])
def test_library_fleets_run_a_round(tmp_path, name):
    result = run_scenario(
        load_scenario(name, {"run.episodes": 1}), tmp_path / name, progress=False, plots=False
    )
    scenario = load_scenario(name)
    assert len(result.episodes) == scenario.fleet.members >= 8
    assert result.episodes.mean_bits_sent.gt(0).all()


def test_a_distilled_fleet_allocator_loads_into_a_scenario_and_runs(tmp_path, tiny_scenario):
    """`bwgym train allocator --fleet` on a tiny fleet, then the scenario with allocator `learned`."""
    from bwgym.cli import main

    path = tiny_scenario(agent="random", episodes=1)
    out = tmp_path / "learned"
    args = ["train", "allocator", "--fleet", "--scenario", str(path), "--set", "fleet.members=2"]
    args += ["--set", "trace.params.good_bps=2500000.0", "--distill-episodes", "1", "--distill-epochs", "20"]
    assert main([*args, "--out", str(out)]) == 0
    assert (out / "fleet_policy.ckpt").is_file()
    allocator = {"name": "learned", "checkpoint": str(out)}
    result, _ = _run(path, tmp_path / "run", {**LINK, "fleet": {"members": 3, "allocator": allocator}})
    assert len(result.episodes) == 3 and result.summary.fleet_allocator.iloc[0] == "learned"


def test_a_sweep_grid_may_name_fleet_keys():
    from bwgym.scenarios.sweep import check_key

    check_key("fleet.members")  # a sweep over N at a fixed link: where success collapses
    check_key("fleet.allocator.name")
    with pytest.raises(ConfigError, match="unknown key 'mebers' in fleet. Did you mean 'fleet.members'"):
        check_key("fleet.mebers")
