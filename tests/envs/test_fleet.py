"""Fleets: N BandwidthLimited members behind one shared link, divided by a fleet allocator."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from bwgym.codecs.image.standard import JpegCodec
from bwgym.common.registry import FLEET_ALLOCATORS, InputError, OptionError, UnknownNameError
from bwgym.envs.bandwidth import BandwidthLimited
from bwgym.envs.fleet import (
    MAX_FLEET_MEMBERS,
    FleetBandwidthLimited,
    FleetOracle,
    StateRuleOptions,
    check_shares,
    divide_budget,
    make_fleet_allocator,
)
from bwgym.traces.generators import constant, generate
from bwgym.traces.link import Link

SIZE = 40
DT = 0.04


class Cams(gym.Env):
    """Two seeded noisy cameras; the episode ends after a seed-drawn number of steps (8 to 20)."""

    def __init__(self) -> None:
        self.observation_space = spaces.Dict(
            {n: spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8) for n in ("arm", "side")}
        )
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.dt = DT

    def _obs(self) -> dict[str, np.ndarray]:
        return {n: self.np_random.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for n in ("arm", "side")}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t, self._end = 0, int(self.np_random.integers(8, 21))
        return self._obs(), {"is_success": False, "grasped": False}

    def step(self, action):
        self._t += 1
        done = self._t >= self._end
        return self._obs(), 0.0, done, False, {"is_success": done, "grasped": self._t > 4}


class MeanAgent:
    """Acts on what it sees: the mean brightness of each view (so decoded views move its action)."""

    memoryless = True

    def act(self, obs):
        return np.array([obs["arm"].mean() / 128 - 1, obs["side"].mean() / 128 - 1], np.float32)


def _members(n: int, trace, codec=None, **link) -> list[BandwidthLimited]:
    codec = codec or JpegCodec.from_observation_space(Cams().observation_space)
    return [BandwidthLimited(Cams(), codec, trace, allocator="uniform", **link) for _ in range(n)]


def _traces():
    return {
        "constant": constant(2e6, duration_s=20.0),
        "gilbert_elliott": generate("gilbert_elliott", good_bps=3e6, bad_bps=2e4, duration_s=20.0, seed=1),
        "lognormal_walk": generate("lognormal_walk", mean_bps=1e6, duration_s=20.0, seed=2),
        "pensieve_markov": generate("pensieve_markov", duration_s=20.0, seed=3),
    }


def _allocator(name: str):
    if name == "oracle":
        return FleetOracle(MeanAgent())
    if name == "state_top2":
        return make_fleet_allocator(
            "state", options={"top_k": 2, "phase_key": "grasped", "phase_weight": 1.0}
        )
    return name


def _run(fleet: FleetBandwidthLimited, seeds: list[int], steps: int = 40):
    """Round-style: step the active members until every one has ended; the fleet info per step."""
    fleet.reset(seed=seeds)
    infos = [fleet.fleet_info]
    active = np.ones(fleet.num_envs, dtype=bool)
    agent = MeanAgent()
    obs = None
    for _ in range(steps):
        if not active.any():
            break
        actions = np.zeros((fleet.num_envs, 2), np.float32)
        obs, _, term, trunc, _ = fleet.step(actions, active)
        infos.append(fleet.fleet_info)
        active &= ~(term | trunc)
        agent.act({k: v[0] for k, v in obs.items()})
    return infos


@pytest.mark.parametrize("trace_name", sorted(_traces()))
@pytest.mark.parametrize("allocator", ["equal", "proportional", "max_min_fair", "state_top2", "oracle"])
def test_members_never_send_more_than_the_shared_budget(trace_name, allocator):
    """On every step of every trace and allocator: the members' bits sum to at most the shared budget."""
    trace = _traces()[trace_name]
    fleet = FleetBandwidthLimited(
        _members(3, trace, loss_prob=0.1, latency_steps=1), trace, _allocator(allocator)
    )
    sent = 0
    for seeds in ([0, 1, 2], [7, 8, 9]):
        for info in _run(fleet, seeds):
            sent += int(info["bits_sent"].sum())
            assert info["bits_sent"].sum() <= info["budget_bits"]
            assert info["budgets"].sum() <= info["budget_bits"]
            assert (info["bits_sent"] <= info["budgets"]).all()
            assert (info["shares"][~info["active"]] == 0).all()
            assert info["shares"].sum() <= 1 + 1e-9
    assert sent > 0, "the link must carry frames, or the bound says nothing"
    fleet.close()


def test_finished_members_free_their_share():
    trace = constant(2e6, duration_s=20.0)
    fleet = FleetBandwidthLimited(_members(3, trace), trace, "equal")
    infos = _run(fleet, [0, 1, 2])
    partial = [i for i in infos if 0 < i["active"].sum() < 3]
    assert partial, "the seeds must end the members' episodes at different steps"
    for info in partial:
        assert info["shares"][info["active"]] == pytest.approx(1 / info["active"].sum())
        assert info["budgets"].sum() == info["budget_bits"]


def test_a_fleet_of_one_is_the_single_robot():
    """One member with the whole link: the observations and infos of the same env alone, step by step."""
    trace = generate("gilbert_elliott", good_bps=3e6, bad_bps=2e4, duration_s=20.0, seed=1)
    alone = _members(1, trace, loss_prob=0.2, latency_steps=1)[0]
    fleet = FleetBandwidthLimited(_members(1, trace, loss_prob=0.2, latency_steps=1), trace, "equal")
    obs_a, info_a = alone.reset(seed=5)
    obs_f, _ = fleet.reset(seed=[5])
    for step in range(15):
        info_f = dict(fleet.env_infos[0])
        assert info_f.pop("fleet_share") == 1.0
        assert info_f == info_a, f"step {step}"
        for k in obs_a:
            np.testing.assert_array_equal(obs_f[k][0], obs_a[k])
        action = np.zeros(2, np.float32)
        obs_a, _, term, _, info_a = alone.step(action)
        obs_f, *_ = fleet.step(action[None])
        if term:
            break


@pytest.mark.parametrize("n", [2, 3, 8])
def test_equal_share_matches_single_robots_on_the_trace_scaled_by_n(n):
    """Each member's budgets are those of a robot alone on the trace scaled by 1/n: within 2 bits per
    step and 1 bit in total (exact equality per step would let the members exceed the link)."""
    trace = generate("lognormal_walk", mean_bps=5e4, duration_s=20.0, seed=4)
    start_s, steps = 3.3, 120
    shared = Link(trace, DT)
    shared.reset(start_s)
    scaled = Link(trace.scale(1 / n), DT)
    scaled.reset(start_s)
    carry = np.zeros(n)
    fleet_total, single_total = np.zeros(n, dtype=np.int64), 0
    for _ in range(steps):
        budget = shared.peek_budget_bits()
        budgets, carry = divide_budget(budget, np.full(n, 1 / n), carry)
        shared.transmit(None, int(budgets.sum()))
        single = scaled.transmit(None, 0).budget_bits
        assert budgets.sum() <= budget
        assert np.abs(budgets - single).max() <= 2
        fleet_total += budgets
        single_total += single
        assert np.abs(fleet_total - single_total).max() <= 1

    # the same through the env: equal shares of the fleet's budget for every member
    members = _members(n, trace)
    fleet = FleetBandwidthLimited(members, trace, "equal")
    for info in _run(fleet, list(range(n)), steps=6)[:6]:
        active = info["budgets"][info["active"]]
        assert active.max() - active.min() <= 1 and active.sum() == info["budget_bits"]


def test_divide_budget_keeps_each_member_on_its_share_over_time():
    shares = np.array([0.5, 0.3, 0.2, 0.0])
    carry, total = np.zeros(4), np.zeros(4)
    rng = np.random.default_rng(0)
    budget_sum = 0
    for _ in range(500):
        budget = int(rng.integers(0, 50))
        budgets, carry = divide_budget(budget, shares, carry)
        assert budgets.sum() <= budget and (budgets >= 0).all()
        total += budgets
        budget_sum += budget
    assert np.abs(total - shares * budget_sum).max() < 1 and total[3] == 0


def test_a_member_that_cannot_fit_its_share_holds_its_frames():
    """On 30 kbit/s split 3 ways no JPEG pair fits: nothing is sent, every frame held and counted."""
    trace = constant(3e4, duration_s=20.0)
    fleet = FleetBandwidthLimited(_members(3, trace), trace, "equal")
    for info in _run(fleet, [0, 1, 2], steps=5):
        assert info["held"][info["active"]].all() and info["bits_sent"].sum() == 0
        assert info["budgets"].sum() == info["budget_bits"] > 0
    assert all(all(i["dropped"].values()) for i in fleet.env_infos)


def test_state_rule_serves_the_neediest_in_turn():
    """top_k=1 on a link that feeds one member: a round robin by frame age."""
    trace = constant(4e6, duration_s=20.0)
    fleet = FleetBandwidthLimited(
        _members(3, trace), trace, make_fleet_allocator("state", options={"top_k": 1})
    )
    served = [int(np.argmax(i["shares"])) for i in _run(fleet, [0, 1, 2], steps=6)]
    assert served[:6] == [0, 1, 2, 0, 1, 2]


def test_oracle_is_never_worse_than_equal_shares_on_its_own_score():
    trace = constant(6e5, duration_s=20.0)
    oracle = FleetOracle(MeanAgent())
    fleet = FleetBandwidthLimited(_members(3, trace), trace, oracle)
    fleet.reset(seed=[0, 1, 2])
    for _ in range(4):
        fleet.step(np.zeros((3, 2), np.float32))
        assert oracle.last_scores["division"] <= oracle.last_scores["equal"] or (
            fleet.fleet_info["shares"] == pytest.approx(np.full(3, 1 / 3))
        )


@pytest.mark.parametrize(
    ("shares", "message"),
    [
        (
            [0.5, -0.1, 0.2],
            r"member 1 has share -0.1 \(shares \[0.5, -0.1, 0.2\]\); shares must be finite and >= 0",
        ),
        ([0.5, float("nan"), 0.2], r"member 1 has share nan"),
        ([0.5, 0.4, 0.3], r"shares sum to 1.2 > 1 \(largest: member 0 with 0.5; shares \[0.5, 0.4, 0.3\]\)"),
        ([0.5, 0.5], r"expected one share per member \(3\), got 2"),
        ("abc", r"expected 3 numeric shares"),
    ],
)
def test_bad_shares_are_one_line_errors_naming_the_member(shares, message):
    with pytest.raises(ValueError, match=message) as err:
        check_shares(shares, 3, "fleet allocator 'mine'")
    assert "\n" not in str(err.value) and str(err.value).startswith("fleet allocator 'mine'")


def test_an_allocator_returning_bad_shares_stops_the_step_with_its_name():
    class Greedy:
        def __call__(self, state):
            return np.ones(state.num_members)

        def reset(self):
            pass

    trace = constant(2e6, duration_s=20.0)
    fleet = FleetBandwidthLimited(_members(2, trace), trace, Greedy())
    with pytest.raises(ValueError, match=r"fleet allocator 'Greedy': shares sum to 2 > 1"):
        fleet.reset(seed=[0, 1])


@pytest.mark.parametrize("n", [0, MAX_FLEET_MEMBERS + 1])
def test_fleet_size_is_bounded(n):
    trace = constant(2e6, duration_s=20.0)
    members = _members(1, trace) * n
    with pytest.raises(
        ValueError, match=rf"a fleet has 1 to {MAX_FLEET_MEMBERS} members \(MAX_FLEET_MEMBERS\), got {n}"
    ):
        FleetBandwidthLimited(members, trace)


def test_members_must_share_one_step_length():
    trace = constant(2e6, duration_s=20.0)
    codec = JpegCodec.from_observation_space(Cams().observation_space)
    members = [
        BandwidthLimited(Cams(), codec, trace),
        BandwidthLimited(Cams(), codec, trace, step_seconds=0.08),
    ]
    with pytest.raises(ValueError, match="member 1 steps 0.08 s, member 0 0.04 s"):
        FleetBandwidthLimited(members, trace)


def test_registry_names_options_and_errors():
    assert {"equal", "proportional", "max_min_fair", "state", "oracle"} <= set(FLEET_ALLOCATORS.names())
    with pytest.raises(UnknownNameError, match="did you mean 'equal'"):
        make_fleet_allocator("equl")
    with pytest.raises(OptionError, match="top_k is expected to be >= 0"):
        make_fleet_allocator("state", options={"top_k": -1})
    with pytest.raises(OptionError, match=r"'state'.*age.*age_weight"):
        make_fleet_allocator("state", options={"age": 1.0})
    assert make_fleet_allocator("state", options={"top_k": 2}).options == StateRuleOptions(top_k=2)
    with pytest.raises(ValueError, match="make_agent"):
        make_fleet_allocator("oracle")


# ----------------------------------------------------------------------------- AllocateFleet-v0
def test_allocate_fleet_env_divides_by_its_action_and_ends_with_the_round():
    from bwgym.envs.fleet_allocation import AllocateFleetEnv

    trace = constant(2e6, duration_s=20.0)
    env = AllocateFleetEnv(FleetBandwidthLimited(_members(3, trace), trace), MeanAgent())
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs) and obs["members"][:, 0].tolist() == [1, 1, 1]
    obs, reward, done, truncated, info = env.step(np.array([1.0, -1.0, -1.0], np.float32))
    assert info["shares"][0] == pytest.approx(1 / (1 + 2 * np.exp(-8.0))) and not truncated
    assert obs["members"][0, 4] == pytest.approx(info["shares"][0])  # the share it had, observed
    steps = 1
    while not done:
        obs, reward, done, _, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and np.isfinite(reward)
        assert (info["shares"][obs["members"][:, 0] == 0] >= 0).all()
        steps += 1
    assert 8 <= steps <= 20 and obs["members"][:, 0].sum() == 0
    with pytest.raises(gym.error.ResetNeeded):
        env.step(env.action_space.sample())


def test_allocate_fleet_env_passes_the_env_checker():
    from gymnasium.utils.env_checker import check_env

    from bwgym.envs.fleet_allocation import AllocateFleetEnv

    trace = constant(2e6, duration_s=20.0)
    check_env(
        AllocateFleetEnv(FleetBandwidthLimited(_members(2, trace), trace), MeanAgent()),
        skip_render_check=True,
    )


def test_learned_allocator_divides_as_the_env_does_for_its_scorer(tmp_path):
    """A scorer loaded as the `learned` fleet allocator sees the env's observation and sends its shares."""
    from bwgym.common.registry import BuildContext
    from bwgym.envs.fleet import FleetObserver, FleetScorer, action_to_shares, scores_to_action
    from bwgym.envs.fleet_allocation import AllocateFleetEnv

    rng = np.random.default_rng(0)
    spec = FleetObserver(3).spec()
    inputs = len(spec["features"]) + spec["history_steps"]
    weights = {
        "w1": rng.normal(size=(4, inputs)),
        "b1": rng.normal(size=4),
        "w2": 3 * rng.normal(size=4),
        "b2": [0.0],
    }
    scorer = FleetScorer(weights, spec)
    assert scorer.save(tmp_path / "fleet_policy.ckpt").is_file()
    learned = make_fleet_allocator("learned", BuildContext(checkpoint=str(tmp_path)))

    trace = generate("lognormal_walk", mean_bps=3e6, duration_s=20.0, seed=2)  # the JPEG pairs fit
    codec = JpegCodec.from_observation_space(Cams().observation_space)

    def lossy():  # members that drop differently, so the scorer sees them apart
        return [_members(1, trace, codec, loss_prob=p)[0] for p in (0.0, 0.5, 0.9)]

    env = AllocateFleetEnv(FleetBandwidthLimited(lossy(), trace), MeanAgent())
    replay = FleetBandwidthLimited(lossy(), trace, learned)
    obs, info = env.reset(seed=4)
    replay.reset(seed=info["seeds"])
    divisions = set()
    for _ in range(6):
        action = scores_to_action(scorer(obs), np.ones(3, dtype=bool))
        expected, _ = action_to_shares(action, np.ones(3, dtype=bool))
        obs, *_ = env.step(action)
        replay.step(np.zeros((3, 2), np.float32))
        np.testing.assert_allclose(env.fleet.fleet_info["shares"], expected, atol=1e-12)
        np.testing.assert_allclose(replay.fleet_info["shares"], expected, atol=1e-12)
        divisions.add(tuple(np.round(expected, 3)))
    assert len(divisions) > 1, "the scorer must react to what it observes"


def test_scores_and_actions_map_to_the_same_shares():
    from bwgym.envs.fleet import action_to_shares, scores_to_action, scores_to_shares

    active = np.array([True, False, True, True])
    scores = np.array([0.3, 9.0, -2.0, 1.5])
    direct, _ = scores_to_shares(scores, active)
    via_action, reason = action_to_shares(scores_to_action(scores, active), active)
    np.testing.assert_allclose(via_action, direct, atol=1e-12)
    assert reason is None and via_action[1] == 0
    assert action_to_shares([2.0, 0.0, 0.0, 0.0], active)[1] == "out_of_bounds"
    shares, reason = action_to_shares([np.nan, 0.0, 0.0, 0.0], active)
    assert reason == "non_finite" and shares.tolist() == pytest.approx([1 / 3, 0, 1 / 3, 1 / 3])


def test_a_scorer_of_another_observer_is_refused(tmp_path):
    from bwgym.envs.fleet import FleetScorer

    spec = {"version": 0, "history_steps": 8, "max_age_steps": 10, "features": ["age"]}
    FleetScorer({"w1": np.zeros((2, 9)), "b1": np.zeros(2), "w2": np.zeros(2), "b2": [0.0]}, spec).save(
        tmp_path / "s.ckpt"
    )
    with pytest.raises(ValueError, match="train it again"):
        FleetScorer.load(tmp_path / "s.ckpt")
    with pytest.raises(InputError, match="required for the learned fleet allocator"):
        make_fleet_allocator("learned")
