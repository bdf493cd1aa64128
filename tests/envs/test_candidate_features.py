"""Observation spec 2: per-candidate features a sender computes from its own views and link context."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from bwgym.codecs.image.standard import RawCodec
from bwgym.envs.allocators import AllocationObserver
from bwgym.envs.candidate_features import CandidateObserver, held_frame_steps


class TrueStateInfo(dict):
    """The env's info as a context carries it: reading it (the true state) fails the test."""

    def __getitem__(self, key):
        raise AssertionError(f"the sender read the env's info[{key!r}] (the true state)")

    def get(self, key, default=None):
        raise AssertionError(f"the sender read the env's info[{key!r}] (the true state)")

    def __contains__(self, key):
        raise AssertionError(f"the sender looked into the env's info for {key!r} (the true state)")

    def __iter__(self):
        raise AssertionError("the sender iterated the env's info (the true state)")


def _views(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {v: rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for v in ("arm", "side")}


def _context(step: int, ages: Mapping[str, int]) -> dict:
    return {"step": step, "frame_age_steps": dict(ages), "env_info": TrueStateInfo(lift_m=0.1, grasped=True)}


def _column(observer: CandidateObserver, name: str) -> int:
    return observer.feature_names.index(name)


def test_features_come_from_the_senders_inputs_alone(two_view_codec):
    """The context's env_info is the true state: reading it fails (the allocator's reach: test_content_allocation)."""
    observer = CandidateObserver(two_view_codec)
    candidates = observer.observe(_views(1), 400, _context(0, {"arm": -1, "side": -1}))
    observer.commit(2)
    # the next step: the context's env_info is the true state, and reading it fails the test
    candidates = observer.observe(_views(2), 400, _context(1, {"arm": 1, "side": 1}))
    assert observer.observation_space.contains(candidates.observation)


def test_each_candidate_says_what_each_view_loses(two_view_codec):
    observer = CandidateObserver(two_view_codec)
    assert observer.splits[0] == (0.0, 1.0) and observer.splits[-1] == (1.0, 0.0)
    candidates = observer.observe(_views(3), 300, {})
    features = candidates.observation["candidates"]
    assert features.shape == (5, len(observer.feature_names)) and candidates.fits.all()
    sent = features[:, _column(observer, "arm.components_sent")]
    error = features[:, _column(observer, "arm.pixel_error")]
    unsent = features[:, _column(observer, "arm.unsent_energy")]
    # more of the budget to the arm view: more of its components, less of its energy left out, less error
    assert sent[0] == 0 and sent[-1] > 0
    assert unsent[0] > unsent[-1] and error[0] > error[-1]
    assert np.all(candidates.payload_bits <= 300)
    spec = observer.spec()
    assert spec["version"] == 2 and spec["candidates"][2] == [0.5, 0.5]
    spec1 = AllocationObserver(("arm", "side"), two_view_codec).spec()  # spec 2 extends spec 1
    assert spec1["version"] == 1
    assert {k: spec[k] for k in spec1 if k != "version"} == {k: v for k, v in spec1.items() if k != "version"}


def test_no_candidate_fits_a_budget_below_the_smallest_frame(two_view_codec):
    observer = CandidateObserver(two_view_codec)
    candidates = observer.observe(_views(4), 8, {})
    assert not candidates.fits.any() and not candidates.payload_bits.any()
    column = observer.feature_names.index("fits")
    assert not candidates.observation["candidates"][:, column].any()


def test_the_record_of_the_receiver_follows_the_acknowledgements(two_view_codec):
    observer = CandidateObserver(two_view_codec)
    first = _views(5)
    observer.observe(first, 400, _context(0, {"arm": -1, "side": -1}))
    observer.commit({"arm": 0.5, "side": 0.5})
    held = observer.observe(first, 400, _context(1, {"arm": 1, "side": 1}))
    lost = CandidateObserver(two_view_codec)
    lost.observe(first, 400, _context(0, {"arm": -1, "side": -1}))
    lost.commit(2)
    missed = lost.observe(first, 400, _context(1, {"arm": -1, "side": -1}))
    for name in ("arm", "side"):
        change = _column(observer, f"{name}.held_change")
        # delivered: the receiver holds this frame decoded; lost: still zeros, far from it
        assert held.observation["candidates"][0, change] < missed.observation["candidates"][0, change]
        assert held.observation["candidates"][0, _column(observer, f"{name}.missed")] == 0
        assert missed.observation["candidates"][0, _column(observer, f"{name}.missed")] == 1
    assert held_frame_steps({"step": 7, "frame_age_steps": {"arm": 2, "side": -1}}, ["arm", "side"]) == {
        "arm": 5,
        "side": None,
    }


def test_bad_input_is_refused_in_one_line(two_view_codec):
    raw = RawCodec(two_view_codec.views)
    with pytest.raises(TypeError, match="latent codec with one stream per view.*'raw'"):
        CandidateObserver(raw)
    with pytest.raises(ValueError, match="one finite share >= 0 per view"):
        CandidateObserver(two_view_codec, splits=[(1.0, 0.0, 0.0)])
    observer = CandidateObserver(two_view_codec)
    with pytest.raises(RuntimeError, match="observe the step first"):
        observer.commit(0)
    observer.observe(_views(6), 400, {})
    with pytest.raises(ValueError, match="none of the candidates"):
        observer.commit({"arm": 0.6, "side": 0.4})
