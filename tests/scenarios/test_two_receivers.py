"""Two receivers on LocateLift-v1 through the shipped Gray-Wyner codec (issue 14, item 5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bwgym.codecs.core.protocol import Payload, PayloadError, Session
from bwgym.common.stats import bd_rate
from bwgym.envs.bandwidth import psnr
from bwgym.scenarios.two_receivers import (
    ENV_ID,
    LINKS,
    SIDE_ONLY,
    FeaturePairs,
    ViewFeatures,
    collect_frames,
    default_traces,
    load_pair,
    load_pixel_baseline,
    run_pixel_baseline,
    run_two_receivers,
    side_budget,
    summarise,
    train_pair,
)
from bwgym.traces import generate


@pytest.fixture(scope="module")
def features() -> ViewFeatures:
    torch.set_num_threads(1)
    return ViewFeatures.load_shipped()


@pytest.fixture(scope="module")
def pair(features: ViewFeatures):
    return load_pair(features)


@pytest.fixture(scope="module")
def frames(features: ViewFeatures) -> dict[str, np.ndarray]:
    """Features of one expert episode of LocateLift-v1 (an unseen seed), every 4th frame."""
    raw = collect_frames(1, seed=50_000)
    return {k: v[::4] for k, v in features.batch(raw["arm"], raw["side"]).items()}


def test_run_table_reports_both_receivers_per_step(pair, features: ViewFeatures) -> None:
    gw, base = pair
    df = run_two_receivers(gw, features, episodes=1, seed=3, traces=default_traces(seed=1), max_steps=6)
    assert len(df) == 6 and list(df["step"]) == list(range(6))
    for link in LINKS:
        for col in ("budget_bits", "frame_budget_bits", "bits_sent", "stream_bits", "delivered"):
            assert f"{col}.{link}" in df
        assert (df[f"bits_sent.{link}"] <= df[f"budget_bits.{link}"]).all()
    for col in (
        "action_error.policy",
        "is_success",
        "held.policy",
        "private.policy",
        "psnr_db.monitor",
        "psnr_ceiling_db.monitor",
        "held.monitor",
        "private.monitor",
        "episode_success",
        "reward",
    ):
        assert col in df
    assert (df["transmit_bits"] == df[[f"bits_sent.{k}" for k in LINKS]].sum(axis=1)).all()
    # lean frames: each link's 88-bit session header at the first step, then 16 bits per frame
    for link in LINKS:
        assert list(df[f"session_bits.{link}"]) == [88] + [0] * 5
        sent = df[df[f"stream_bits.{link}"] > 0]
        assert (
            len(sent)
            and (
                sent[f"bits_sent.{link}"] == sent[f"stream_bits.{link}"] + 16 + sent[f"session_bits.{link}"]
            ).all()
        )
        assert (sent[f"container_bits.{link}"] == sent[f"stream_bits.{link}"] + 112).all()
    assert (df["bits_received.policy"] == df["bits_sent.broadcast"] + df["bits_sent.receiver_1"]).all()
    sent = df[df["delivered.broadcast"]]
    assert len(sent) and sent["bits_sent.broadcast"].gt(0).all() and not sent["held.monitor"].any()
    assert (df["psnr_db.monitor"] > 15).all() and (df["action_error.policy"] >= 0).all()
    s = summarise(df)
    assert s["episodes"] == 1 and s["transmit_bits"] > 0
    # the baseline has no common stream: nothing on the broadcast link, its receivers still decode
    fixed = run_two_receivers(base, features, episodes=1, seed=3, rate_idx=0, max_steps=3)
    assert (fixed["bits_sent.broadcast"] == 0).all() and (fixed["bits_sent.receiver_1"] > 0).all()
    assert (
        list(fixed["session_bits.receiver_1"]) == [88, 0, 0] and (fixed["session_bits.broadcast"] == 0).all()
    )
    assert not fixed["held.policy"].any() and not fixed["held.monitor"].any()
    # a Gray-Wyner receiver whose private link is starved decodes from the common stream alone;
    # the baseline's receiver holds its last output
    starved = {**default_traces(seed=1), "receiver_2": generate("constant", bps=0.0)}
    for codec, held in ((gw, False), (base, True)):
        df = run_two_receivers(codec, features, episodes=1, seed=3, traces=starved, max_steps=3)
        assert (df["bits_sent.receiver_2"] == 0).all() and not df["private.monitor"].any()
        assert (df["held.monitor"] == held).all()


def test_session_header_is_fragmented_on_a_thin_link_and_frames_follow_it(pair, features) -> None:
    gw = pair[0]
    # 60 bits per step: the header takes two steps (7 + 4 bytes); a frame goes only with its end
    thin = {**default_traces(seed=1), "receiver_1": generate("constant", bps=60 / 0.04)}
    df = run_two_receivers(gw, features, episodes=1, seed=3, traces=thin, max_steps=4)
    assert list(df["session_bits.receiver_1"][:3]) == [56, 32, 0]
    assert list(df["bits_sent.receiver_1"][:1]) == [56] and not df["private.policy"][0]
    assert (df["bits_sent.receiver_1"] <= 60).all() and df["private.policy"][2:].any()
    # the other receiver's links are not held back, and receiver 1 decodes from the common stream
    assert df["private.monitor"].all() and not df["held.policy"].any()
    # 100 bits per step: the header alone at step 0, frames from step 1
    roomy = {**default_traces(seed=1), "receiver_1": generate("constant", bps=100 / 0.04)}
    df = run_two_receivers(gw, features, episodes=1, seed=3, traces=roomy, max_steps=3)
    assert list(df["bits_sent.receiver_1"][:1]) == [88] and not df["private.policy"][0]
    assert df["private.policy"][1:].all()


def test_lean_private_frame_without_the_common_one_names_it(pair, frames) -> None:
    gw = pair[0]
    views = {"arm": frames["x1"][0], "side": frames["x2"][0]}
    session = gw.channel_session
    lean = {
        ch: Payload.from_bytes(p.to_bytes(), codec="gray_wyner", session=session)
        for ch, p in gw.compress_channels(views, 2, step=0).items()
    }
    assert all(p.overhead_bits == 16 for p in lean.values())
    with pytest.raises(
        PayloadError, match=r"receiver 2 needs the common stream, which is missing \(private_2"
    ):
        gw.decode_receiver(2, None, lean["private_2"])
    with pytest.raises(PayloadError, match="private_1 arrived without the common stream"):
        gw.decompress(lean["private_1"])
    with pytest.raises(PayloadError, match="session mismatch"):
        pair[1].decode_receiver(1, None, lean["private_1"])  # the baseline's model


def test_receiver_decodes_from_common_and_its_private_stream_alone(pair, frames) -> None:
    for codec in pair:
        for i in range(0, len(frames["x1"]), 2):
            views = {"arm": frames["x1"][i], "side": frames["x2"][i]}
            for j in (0, codec.n_rates // 2, codec.n_rates - 1):
                wire = Payload.from_bytes(codec.compress_at(views, j, step=i).to_bytes(), codec="gray_wyner")
                both = codec.decompress(wire)
                channels = {
                    k: Payload.from_bytes(p.to_bytes()) for k, p in codec.split_channels(wire).items()
                }
                for k, task in ((1, "bc_features"), (2, "side_coefficients")):
                    alone = codec.decompress(Payload.from_bytes(codec.for_receiver(wire, k).to_bytes()))
                    assert set(alone) == {task}
                    np.testing.assert_array_equal(alone[task], both[task])
                    apart = codec.decode_receiver(k, channels["common"], channels[f"private_{k}"])
                    np.testing.assert_array_equal(apart, both[task])


def test_dropping_the_common_stream_names_what_is_missing(pair, frames) -> None:
    gw = pair[0]
    views = {"arm": frames["x1"][0], "side": frames["x2"][0]}
    ch = gw.split_channels(gw.compress_at(views, 0))
    with pytest.raises(
        PayloadError, match=r"receiver 1 needs the common stream, which is missing \(private_1"
    ):
        gw.decode_receiver(1, None, ch["private_1"])
    with pytest.raises(PayloadError, match="receiver 2 needs the common stream"):
        gw.decode_receiver(2, Payload.empty("gray_wyner"), ch["private_2"])
    with pytest.raises(PayloadError, match="private_2 arrived without the common stream"):
        gw.decompress(Payload.from_bytes(ch["private_2"].to_bytes()))


def test_shipped_pair_records_its_features_and_regeneration(pair, features: ViewFeatures) -> None:
    gw, base = pair
    assert gw.config.kind == "shared" and gw.config.dims[0] > 0 and gw.n_rates >= 4
    assert base.config.dims[0] == 0 and base.config.etas == gw.config.etas
    for codec in pair:
        assert codec.env_id == "bwgym/LocateLift-v1"
        assert codec.metadata["features"]["bc_sha256"] == features.describe()["bc_sha256"]
        # the shipped files were written by the entry point ship_pair() replaced
        assert codec.metadata["command"] == "python -m bwgym.scenarios.two_receivers --ship"
        assert codec.config.source_dims == features.x_dims and codec.config.task_dims == features.z_dims


def test_side_coefficients_round_trip_to_the_pca_view(features: ViewFeatures) -> None:
    raw = collect_frames(1, seed=50_001)
    side = raw["side"][:3]
    z2 = features.side_coefficients(side)
    assert z2.shape == (3, 32)
    img = features.side_image(z2[0])
    assert img.shape == side[0].shape and img.dtype == np.uint8
    assert np.abs(img.astype(float) - side[0]).mean() < 20


def test_pixel_baseline_acts_on_decoded_ndpca_frames_and_counts_their_bytes(features: ViewFeatures) -> None:
    """Replay the run by hand: each step's bits are the frames' bytes, the action the decoded views'."""
    import gymnasium as gym

    codecs = load_pixel_baseline()
    # task-aware NDPCA for receiver 1, task-agnostic NDPCA (no task loss) for receiver 2
    assert [c.name for c in codecs] == ["ndpca", "ndpca"]
    assert [c.metadata()["train_config"]["codec"] for c in codecs] == ["ndpca", "ndpca_agnostic"]
    assert codecs[0].fingerprint != codecs[1].fingerprint
    agent, budgets, steps = features.agent, (256, 32), 4
    df = run_pixel_baseline(codecs, agent, *budgets, episodes=1, seed=7, max_steps=steps)
    assert len(df) == steps and not df["held.policy"].any() and not df["held.monitor"].any()
    assert (df["bits_sent.broadcast"] == 0).all() and (df["session_bits.broadcast"] == 0).all()
    sessions = (codecs[0].session, codecs[1].session_for(SIDE_ONLY))
    env = gym.make(ENV_ID)
    try:
        obs, _ = env.reset(seed=7)
        for t, row in df.iterrows():
            views = {"arm": obs["arm"], "side": obs["side"]}
            decoded = []
            for k, (codec, session, allocation) in enumerate(
                zip(codecs, sessions, (None, SIDE_ONLY), strict=True)
            ):
                wire = codec.compress(views, budgets[k], allocation=allocation).to_bytes()
                header = session.to_bytes() if t == 0 else b""
                link = LINKS[k + 1]
                assert row[f"session_bits.{link}"] == 8 * len(header) == (88 if t == 0 else 0)
                assert (
                    row[f"bits_sent.{link}"] == 8 * (len(wire) + len(header)) and len(wire) <= budgets[k] // 8
                )
                assert row[f"stream_bits.{link}"] == 8 * (len(wire) - 2)  # header byte and CRC-8
                frame = Payload.from_bytes(
                    wire, codec=codec.name, session=Session.from_bytes(session.to_bytes())
                )
                decoded.append(codec.decompress(frame))
            # receiver 2's frames carry side symbols alone: no arm latent or residual coefficient
            side_codec = codecs[1]
            assert side_codec.allocation_of(frame)["arm"] == 0 and side_codec.allocation_of(frame)["side"] > 0
            dims = side_codec._read(frame)[1]
            arm = side_codec.view_names.index("arm")
            assert all(n == 0 for g, n in zip(side_codec._groups, dims, strict=True) if g.stream == arm)
            action = agent.act(decoded[0])
            assert not np.array_equal(decoded[0]["arm"], obs["arm"])  # lossy pixels, not the clean views
            assert row["action_error.policy"] == pytest.approx(
                float(np.linalg.norm(action - agent.act(views))), abs=1e-6
            )
            assert row["psnr_db.monitor"] == pytest.approx(psnr(decoded[1]["side"], obs["side"]))
            obs, *_ = env.step(action)
    finally:
        env.close()
    assert (df["transmit_bits"] == df["bits_sent.receiver_1"] + df["bits_sent.receiver_2"]).all()
    s = summarise(df)
    assert s["transmit_session_bits"] == pytest.approx(2 * 88 / steps)


def test_side_budget_is_the_smallest_that_reaches_the_target() -> None:
    codec = load_pixel_baseline()[1]
    raw = collect_frames(1, seed=50_002)
    frames = {k: raw[k][::10] for k in ("arm", "side")}
    grid = list(range(16, 129, 8))
    budget, reached = side_budget(codec, frames, 21.0, budgets=grid)
    assert reached >= 21.0 and budget in grid
    if budget > grid[0]:  # one step less does not reach it
        with pytest.raises(ValueError, match="reaches 21.00 dB"):
            side_budget(codec, frames, 21.0, budgets=[b for b in grid if b < budget])
    with pytest.raises(ValueError, match="no budget up to 128 bits"):
        side_budget(codec, frames, 60.0, budgets=grid)


def test_bd_rate() -> None:
    q = [0.2, 0.5, 0.9]
    assert bd_rate([100, 200, 400], q, [50, 100, 200], q) == pytest.approx(-50.0)
    assert bd_rate([100, 200, 400], q, [200, 400, 800], q) == pytest.approx(100.0)
    assert math.isnan(bd_rate([1, 2], [0.1, 0.2], [1, 2], [0.5, 0.6]))
    # a non-monotone point is dropped, not interpolated through
    assert bd_rate([100, 150, 200, 400], [0.2, 0.1, 0.5, 0.9], [50, 100, 200], q) == pytest.approx(-50.0)


@pytest.mark.slow
def test_train_pair_end_to_end(features: ViewFeatures) -> None:
    raw = collect_frames(2, seed=60_000, features=features)
    data = FeaturePairs(features.batch(raw["arm"], raw["side"]))
    gw, base = train_pair(features, data, etas=(0.01, 0.1), steps=40, batch_size=16, hidden=32, heldout=data)
    assert len(gw.metadata["metrics"]) == 2 and base.config.dims[0] == 0
    df = run_two_receivers(gw, features, episodes=1, seed=5, max_steps=4)
    assert len(df) == 4 and df["psnr_db.monitor"].notna().all()
