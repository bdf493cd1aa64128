"""The learned fleet allocator: the oracle's candidate scores, the error model and its division."""

from __future__ import annotations

import numpy as np
import pytest
from test_fleet import MeanAgent, _members  # the toy two-camera fleet

from bwgym.common.registry import BuildContext
from bwgym.envs.fleet import (
    FleetBandwidthLimited,
    FleetErrorModel,
    FleetObserver,
    FleetOracle,
    FleetScorer,
    action_to_shares,
    division_by_errors,
    least_total,
    make_fleet_allocator,
    oracle_ladder,
    scores_to_action,
)
from bwgym.traces.generators import constant

SPEC = FleetObserver(3).spec()
INPUTS = len(SPEC["features"]) + SPEC["history_steps"]


def _linear(weights: np.ndarray, bias: float = 0.0) -> FleetErrorModel:
    """An error model that is one linear layer: ``weights . [features, history, bits]``."""
    return FleetErrorModel([(np.asarray(weights, float)[None], np.array([bias]))], SPEC, units=8)


def test_oracle_records_each_members_error_at_every_candidate_budget():
    trace = constant(6e5, duration_s=20.0)
    oracle = FleetOracle(MeanAgent())
    fleet = FleetBandwidthLimited(_members(3, trace), trace, oracle)
    fleet.reset(seed=[0, 1, 2])
    for _ in range(3):
        fleet.step(np.zeros((3, 2), np.float32))
        c = oracle.last_candidates
        budget = fleet.fleet_info["budget_bits"]
        assert c["members"].tolist() == [0, 1, 2]
        assert c["bits"].tolist() == [budget * u // 8 for u in oracle_ladder(8)] + [budget // 3]
        assert c["errors"].shape == (6, 3) and (c["errors"] >= 0).all()
        assert c["errors"][-1].sum() == pytest.approx(oracle.last_scores["equal"])
        served = fleet.fleet_info["shares"] > 0
        assert c["served"].tolist() == served.tolist()
        _, best = least_total(
            {u: c["errors"][j] for j, u in enumerate(oracle_ladder(8))}, oracle_ladder(8), 8
        )
        assert best == pytest.approx(oracle.last_scores["division"])


def test_error_model_predicts_per_member_and_budget_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    layers = [(rng.normal(size=(5, INPUTS + 1)), rng.normal(size=5)), (rng.normal(size=(1, 5)), np.zeros(1))]
    model = FleetErrorModel(layers, SPEC, units=8)
    obs = FleetObserver(3).observation_space.sample()
    predicted = model(obs, [0, 100, 1000])
    assert predicted.shape == (3, 3)
    # a member's prediction depends on its own row only (the same weights for every member)
    single = model.predict(FleetScorer.inputs(obs)[1:2], [0, 100, 1000])
    np.testing.assert_allclose(single[0], predicted[1])
    model.save(tmp_path / "fleet_policy.ckpt", {"note": "test"})
    learned = make_fleet_allocator("learned", BuildContext(checkpoint=str(tmp_path)))
    np.testing.assert_allclose(learned.policy(obs, [0, 100, 1000]), predicted)
    with pytest.raises(ValueError, match=r"layer 0 has weights \(5, 3\)"):
        FleetErrorModel([(np.zeros((5, 3)), np.zeros(5)), (np.zeros((1, 5)), np.zeros(1))], SPEC, 8)


def test_division_by_errors_is_the_oracles_rule_on_the_predictions():
    """Errors falling with bits for member 0 only: it gets the whole link; a flat model: equal shares."""
    state = _state(budget=800)
    obs = FleetObserver(3).observe(state)
    age = SPEC["features"].index("frame_age")
    weights = np.zeros(INPUTS + 1)
    weights[age], weights[-1] = -1.0, -2.0  # fresher frames (low age) gain more per bit
    obs["members"][:, age] = [0.0, 1.0, 1.0]
    # error = -age - 2 * log-bits: every member gains alike from bits, so no division beats equal
    assert division_by_errors(_linear(weights), obs, state).tolist() == pytest.approx([1 / 3] * 3)
    weights = np.zeros(INPUTS + 1)
    weights[-1] = -1.0
    steep = _linear(weights)

    class OneGains(FleetErrorModel):
        def predict(self, inputs, bits):
            out = steep.predict(inputs, bits)
            out[1:] = 0.0  # members 1 and 2 gain nothing from bits
            return out

    one = OneGains(steep.layers, SPEC, 8)
    assert division_by_errors(one, obs, state).tolist() == pytest.approx([1.0, 0.0, 0.0])


def test_learned_allocator_with_an_error_model_serves_the_members_that_gain(tmp_path):
    """Loaded from its checkpoint, an error model divides by its predictions, within the link."""

    class Gain(FleetErrorModel):
        """Members gain from bits in proportion to their drops (0.1 more for member 0)."""

        def predict(self, inputs, bits):
            drop = np.asarray(inputs)[:, SPEC["features"].index("drop_rate")][:, None]
            feature = np.log2(1.0 + np.asarray(bits, float)) / self.BITS_LOG2_TOP
            return 1.0 - (0.01 + drop) * feature[None, :] ** 4

    path = _linear(np.zeros(INPUTS + 1)).save(tmp_path / "m.ckpt")
    learned = make_fleet_allocator("learned", BuildContext(checkpoint=str(path)))
    learned.policy = Gain(learned.policy.layers, SPEC, 8)
    trace = constant(3e6, duration_s=20.0)
    codec = _members(1, trace)[0].codec
    members = [_members(1, trace, codec, loss_prob=p)[0] for p in (0.0, 0.0, 0.9)]
    fleet = FleetBandwidthLimited(members, trace, learned)
    fleet.reset(seed=[0, 1, 2])
    assert fleet.fleet_info["shares"].tolist() == pytest.approx([1 / 3] * 3)  # the reset frames
    shares = []
    for _ in range(8):
        fleet.step(np.zeros((3, 2), np.float32))
        shares.append(fleet.fleet_info["shares"])
        assert fleet.fleet_info["bits_sent"].sum() <= fleet.fleet_info["budget_bits"]
    assert max(s[2] for s in shares) > 0.99, "the member that drops gets the link"
    assert learned.invalid_actions == 0


def test_observer_reads_psnr_and_task_phase_from_the_members_last_step():
    trace = constant(3e6, duration_s=20.0)
    fleet = FleetBandwidthLimited(_members(2, trace), trace, "equal")
    fleet.reset(seed=[0, 1])
    for _ in range(6):
        fleet.step(np.zeros((2, 2), np.float32))
    obs = FleetObserver(2).observe(fleet.peek_state(np.ones(2, bool)))
    features = list(FleetObserver.FEATURES)
    worst = [min(i["distortion"].values()) for i in fleet.env_infos]
    np.testing.assert_allclose(
        obs["members"][:, features.index("psnr")], np.minimum(worst, 50) / 50, atol=1e-6
    )
    assert obs["members"][:, features.index("grasped")].tolist() == [1.0, 1.0]  # Cams: grasped after 4 steps


def _state(budget: int):
    trace = constant(budget / 0.04, duration_s=20.0)
    fleet = FleetBandwidthLimited(_members(3, trace), trace, "equal")
    fleet.reset(seed=[0, 1, 2])
    return fleet.peek_state(np.ones(3, bool))


def test_scores_of_a_division_map_back_to_it_through_the_action():
    shares = np.array([0.5, 0.0, 0.25, 0.25])
    active = np.ones(4, bool)
    back, reason = action_to_shares(scores_to_action(np.log(np.maximum(shares, 1e-300)), active), active)
    assert (
        reason is None
        and back[1] < 1e-3
        and back[[0, 2, 3]] / back[[0, 2, 3]].sum() == pytest.approx([0.5, 0.25, 0.25], rel=1e-3)
    )


def test_the_searchs_starting_point_divides_as_the_state_rule(tmp_path):
    """search_scorer(state_rule_theta()), loaded as `learned`, serves the 6 of 8 that `state` top_k 6 does."""
    from bwgym.scenarios.fleet import search_scorer, state_rule_theta

    search_scorer(state_rule_theta(), FleetObserver(8).spec()).save(tmp_path / "fleet_policy.ckpt")
    learned = make_fleet_allocator("learned", BuildContext(checkpoint=str(tmp_path)))
    trace = constant(3e6, duration_s=20.0)
    codec = _members(1, trace)[0].codec
    members = [_members(1, trace, codec, loss_prob=p)[0] for p in np.linspace(0.0, 0.8, 8)]
    fleet = FleetBandwidthLimited(members, trace, make_fleet_allocator("state", options={"top_k": 6}))
    fleet.reset(seed=list(range(8)))
    for _ in range(6):
        fleet.step(np.zeros((8, 2), np.float32))
        state = fleet.peek_state(np.ones(8, bool))
        state.step = 1  # past the reset frames
        assert ((learned(state) > 1e-3) == (fleet.allocator(state) > 0)).all()


def test_a_scorer_keeps_its_serve_fraction_through_its_checkpoint(tmp_path):
    from bwgym.scenarios.fleet import search_scorer, state_rule_theta

    search_scorer(state_rule_theta(), SPEC).save(tmp_path / "fleet_policy.ckpt")
    learned = make_fleet_allocator("learned", BuildContext(checkpoint=str(tmp_path)))
    assert learned.policy.serve_fraction == 0.75
    with pytest.raises(ValueError, match=r"serve_fraction is expected in \[0, 1\]"):
        FleetScorer(
            {"w1": np.zeros((1, INPUTS)), "b1": [0.0], "w2": [1.0], "b2": [0.0]}, SPEC, serve_fraction=1.5
        )


def _served_at(learned, bits_per_member: int, n: int = 8) -> int:
    """Members the ``learned`` allocator serves on a steady link of ``bits_per_member`` per step each."""
    trace = constant(bits_per_member * n / 0.04, duration_s=20.0)
    codec = _members(1, trace)[0].codec
    members = [_members(1, trace, codec, loss_prob=p)[0] for p in np.linspace(0.0, 0.8, n)]
    fleet = FleetBandwidthLimited(members, trace, "equal")
    fleet.reset(seed=list(range(n)))
    fleet.step(np.zeros((n, 2), np.float32))
    state = fleet.peek_state(np.ones(n, bool))
    state.step = 1  # past the reset frames
    assert state.budget_bits == bits_per_member * n
    return int((learned(state) > 1e-3).sum())


def test_the_served_fraction_rises_to_every_member_as_bits_per_member_fall(tmp_path):
    """With the budget term all 8 robots share a scarce link; a constant-fraction checkpoint serves 6 at any budget."""
    from bwgym.common.checkpoint import save_checkpoint
    from bwgym.scenarios.fleet import search_scorer, state_rule_theta

    spec = FleetObserver(8).spec()
    scorer = search_scorer(state_rule_theta(), spec)  # 3/4 served when plentiful, halfway at 100 bits
    scorer.save(tmp_path / "budget.ckpt")
    learned = make_fleet_allocator("learned", BuildContext(checkpoint=str(tmp_path / "budget.ckpt")))
    served = [_served_at(learned, b) for b in (10**6, 400, 100, 40, 10)]
    assert served[0] == 6 and served[-1] == 8
    assert served == sorted(served), f"served {served} does not rise as the budget per member falls"
    # a checkpoint written before the budget term (no serve_mid_bits, serve_slope): a constant fraction
    weights = {"w1": scorer.w1, "b1": scorer.b1, "w2": scorer.w2, "b2": np.array([scorer.b2])}
    old = {"env_id": None, "observer": spec, "serve_fraction": 0.75, "config": {}}
    save_checkpoint(tmp_path / "old.ckpt", "fleet_allocator/scorer", weights, old)
    constant_fraction = make_fleet_allocator("learned", BuildContext(checkpoint=str(tmp_path / "old.ckpt")))
    assert constant_fraction.policy.serve_mid_bits == 0.0
    assert [_served_at(constant_fraction, b) for b in (10**6, 400, 100, 40, 10)] == [6] * 5


@pytest.mark.slow
def test_fleet_search_writes_a_scorer_that_a_scenario_runs(tmp_path):
    """`bwgym train allocator --fleet --fleet-search 1` on a tiny fleet, then the scenario with it."""
    import yaml

    from bwgym.cli import main
    from bwgym.scenarios.config import load_scenario
    from bwgym.scenarios.runner import run_scenario

    scenario = {
        "name": "tiny_fleet",
        "description": "test fleet",
        "regime": "two 32 px robots on a steady link",
        "env": {"id": "bwgym/LocateLift-v0", "kwargs": {"image_size": 32}},
        "trace": {
            "source": None,
            "generator": "constant",
            "params": {"bps": 2_000_000.0, "duration_s": 30.0},
        },
        "codec": {"name": "jpeg"},
        "agent": {"name": "random"},
        "fleet": {"members": 2, "allocator": {"name": "equal"}},
        "run": {"episodes": 1, "seed": 0},
    }
    path = tmp_path / "tiny_fleet.yaml"
    path.write_text(yaml.safe_dump(scenario))
    out = tmp_path / "searched"
    args = ["train", "allocator", "--fleet", "--scenario", str(path), "--fleet-search", "1"]
    assert main([*args, "--fleet-population", "2", "--fleet-rounds", "1", "--out", str(out)]) == 0
    assert (out / "fleet_policy.ckpt").is_file() and (out / "search.csv").is_file()
    allocator = {"name": "learned", "checkpoint": str(out)}
    result = run_scenario(
        load_scenario(path, {"fleet.allocator": allocator}), tmp_path / "run", progress=False, plots=False
    )
    assert len(result.episodes) == 2 and result.summary.fleet_allocator.iloc[0] == "learned"
