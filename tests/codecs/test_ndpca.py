"""NDPCACodec: DPCA allocation in the payload, the BandwidthLimited wrapper, the shipped checkpoints.

The protocol properties NDPCA shares with DAE and JAE (budgets, exact bytes, checkpoints, corrupt
payloads) are tested for all three in ``test_autoencoders.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_agent import SIZE, collect_lift_frames, tiny_config  # noqa: E402

import bwgym  # noqa: F401  (registers the envs; before mujoco)
from bwgym.codecs import codec_entry, load_codec, make_codec
from bwgym.codecs.core.protocol import Payload, ViewSpec
from bwgym.codecs.image.ndpca import NDPCACodec
from bwgym.codecs.train import TrainConfig, train_codec


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> tuple[dict[str, np.ndarray], np.ndarray]:
    return collect_lift_frames(tmp_path_factory, episodes=5, seed=3)


@pytest.fixture(scope="module")
def codec(frames) -> NDPCACodec:
    out = train_codec(tiny_config("ndpca_agnostic", steps=20), *frames, progress=False)
    assert isinstance(out, NDPCACodec)
    return out


def test_payload_header_reports_the_dpca_allocation(codec, frames) -> None:
    obs = {k: v[7] for k, v in frames[0].items()}
    totals, steps = [], []
    for budget in (24, 32, 48, 64, 100, 400, 3000):
        payload = codec.compress(obs, budget)
        if payload.is_empty:
            continue
        dims = codec.allocation_of(Payload.from_bytes(payload.to_bytes(), session=codec.session))
        assert dims == codec.last_allocation
        m = sum(dims.values())
        # the split is DPCA's: every component whose scale clears the step, pooled over views
        step_idx, _ = codec.read_header(payload)
        pooled = np.concatenate(codec.latent_model.sigma_idx)
        assert m == int(np.sum(pooled >= step_idx - 16))
        totals.append(m)
        steps.append(step_idx)
    # more bits: more components, or (once all are sent) a finer step
    assert totals and totals == sorted(totals) and steps == sorted(steps, reverse=True)
    assert steps[-1] < steps[0]


def test_variants_are_task_aware_or_not() -> None:
    assert codec_entry("ndpca").recipe["lambda_task"] > 0
    assert codec_entry("ndpca_agnostic").recipe["lambda_task"] == 0
    assert TrainConfig.for_variant("ndpca").lambda_task > 0
    assert TrainConfig.for_variant("ndpca_agnostic").lambda_task == 0
    assert codec_entry("ndpca").cls is codec_entry("ndpca_agnostic").cls is NDPCACodec
    assert codec_entry("ndpca_agnostic").wire_name == "ndpca"  # one wire format, two variants


def test_codec_inside_bandwidth_limited(codec) -> None:
    import gymnasium as gym

    from bwgym.envs.bandwidth import BandwidthLimited
    from bwgym.traces.generators import constant

    env = gym.make("bwgym/LocateLift-v0", image_size=SIZE)
    wrapped = BandwidthLimited(env, codec, constant(10_000, duration_s=10.0))  # 400 bits per 40 ms step
    obs, info = wrapped.reset(seed=0)
    for _ in range(3):
        assert info["bits_sent_total"] <= info["budget_bits"]
        assert obs["arm"].shape == (SIZE, SIZE, 3) and obs["arm"].dtype == np.uint8
        assert set(info["bits_sent"]) == {"arm", "side"}
        obs, _, _, _, info = wrapped.step(env.action_space.sample())
    assert not any(info["dropped"].values())
    assert sum(info["bits_sent"].values()) > 0 and info["session_bits"] == 0  # sent at reset only
    wrapped.close()


def test_fresh_decoder_on_another_device_setting_gets_the_same_bytes(codec, frames, tmp_path) -> None:
    path = codec.save(tmp_path / "n.ckpt")
    other = NDPCACodec.load(path, device="cpu")
    obs = {k: v[3] for k, v in frames[0].items()}
    assert other.compress(obs, 333).to_bytes() == codec.compress(obs, 333).to_bytes()


@pytest.mark.parametrize("variant", ["ndpca", "ndpca_agnostic", "dae", "jae"])
def test_shipped_learned_checkpoints_work_on_locate_lift(variant: str) -> None:
    path = codec_entry(variant).shipped_path
    assert path is not None and path.is_file(), (
        f"{variant}: no shipped checkpoint (bwgym train --all --kind codec)"
    )
    views = [ViewSpec("arm", (84, 84, 3)), ViewSpec("side", (84, 84, 3))]
    codec = make_codec(variant, views, env_id="bwgym/LocateLift-v0", device="cpu")
    assert type(codec) is type(load_codec(path, device="cpu")) is codec_entry(variant).cls
    assert codec.variant == variant
    assert codec.metrics and codec.train_config["codec"] == variant
    rng = np.random.default_rng(0)
    obs = {v: rng.integers(0, 256, (84, 84, 3), dtype=np.uint8) for v in ("arm", "side")}
    for budget in (0, 60, 150, 400, 2000, 20_000):
        payload = codec.compress(obs, budget)
        assert payload.nbits <= budget
    assert sum(codec.last_allocation.values()) > 0
    assert path.stat().st_size < 2_000_000


def test_missing_shipped_checkpoint_names_the_retrain_command(monkeypatch, tmp_path) -> None:
    import bwgym.codecs.core.registry as registry

    monkeypatch.setattr(registry, "CHECKPOINT_DIR", tmp_path)
    views = [ViewSpec("arm", (84, 84, 3)), ViewSpec("side", (84, 84, 3))]
    with pytest.raises(FileNotFoundError, match="bwgym train codec --codec ndpca_agnostic"):
        make_codec("ndpca_agnostic", views, env_id="bwgym/LocateLift-v0")


def test_decoder_outputs_images_in_range(codec, frames) -> None:
    obs = {k: v[10] for k, v in frames[0].items()}
    for budget in (150, 20_000):
        decoded = codec.decompress(codec.compress(obs, budget))
        assert all(d.dtype == np.uint8 and d.shape == (SIZE, SIZE, 3) for d in decoded.values())
    with torch.no_grad():
        far = {k: torch.full((1, d), 1e3) for k, d in codec.latent_dims.items()}
        out = codec.net.decode(far)
    assert all(float(t.min()) >= 0.0 and float(t.max()) <= 1.0 for t in out.values())
