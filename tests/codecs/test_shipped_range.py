"""The shipped learned codecs span the whole rate range (LocateLift-v1), and the v0 files still work.

Every shipped v1 codec must send a frame at 32 bits, grow its frame with the budget up to 16 kbit
(more than 4,000 bits when given 8,000) and keep gaining quality over that range; the v0 files
(trained before the residual layer and the lean frame existed) must still load, compress under
the lean frame and decode.
"""

from __future__ import annotations

import numpy as np
import pytest

import bwgym  # noqa: F401  (registers the envs; before mujoco)
from bwgym.codecs import codec_entry, make_codec
from bwgym.codecs.core.protocol import Payload, ViewSpec

V1 = "bwgym/LocateLift-v1"
VARIANTS = ["ndpca", "ndpca_agnostic", "dae", "jae", "linear_dpca", "pca"]
BUDGETS = [16, 24, 32, 64, 128, 256, 512, 1_000, 2_000, 4_000, 8_000, 12_000, 16_000]
VIEWS = [ViewSpec("arm", (84, 84, 3)), ViewSpec("side", (84, 84, 3))]


@pytest.fixture(scope="module")
def frames() -> list[dict[str, np.ndarray]]:
    """Four frames of one v1 expert episode no codec trained on."""
    import gymnasium as gym

    from bwgym.agents.expert import LiftExpert

    env = gym.make(V1)
    obs, _ = env.reset(seed=100_123)
    expert = LiftExpert(env)
    expert.reset()
    out = [obs]
    for t in range(30):
        obs, _, term, trunc, _ = env.step(expert.act(obs))
        if t % 10 == 9:
            out.append(obs)
        if term or trunc:
            break
    env.close()
    return [{v: o[v] for v in ("arm", "side")} for o in out]


def _psnr(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    mse = np.mean([np.mean((a[k].astype(float) - b[k].astype(float)) ** 2) for k in a])
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


@pytest.mark.parametrize("variant", VARIANTS)
def test_shipped_v1_codec_spans_16_to_16000_bits(variant: str, frames) -> None:
    path = codec_entry(variant).shipped_path_for(V1)
    assert path is not None and path.name.endswith("_locate_lift_v1.ckpt")
    assert path.is_file(), f"{variant}: no shipped v1 checkpoint (bwgym train --all --kind codec --env {V1})"
    codec = (
        make_codec(variant, VIEWS, env_id=V1, device="cpu")
        if variant not in ("linear_dpca", "pca")
        else make_codec(variant, VIEWS, env_id=V1)
    )
    assert codec.env_id == V1 and codec.residual is not None
    mean_psnr = []
    for obs in frames:
        sizes, psnrs = [], []
        for budget in BUDGETS:
            payload = codec.compress(obs, budget)
            assert payload.nbits <= budget
            sizes.append(payload.nbits)
            if not payload.is_empty:
                assert payload.overhead_bits == 16
                wire = Payload.from_bytes(payload.to_bytes(), codec=codec.name, session=codec.session)
                psnrs.append(_psnr(obs, codec.decompress(wire)))
        assert sizes == sorted(sizes), sizes
        assert sizes[BUDGETS.index(32)] > 0, "a frame fits in 32 bits"
        assert sizes[BUDGETS.index(8_000)] > 4_000 and sizes[-1] > 8_000, sizes
        mean_psnr.append(psnrs)
    curve = np.mean(mean_psnr, axis=0)  # quality rises over the whole range, averaged over frames
    assert all(b >= a - 0.2 for a, b in zip(curve, curve[1:], strict=False)), curve
    at = {
        b: curve[i - (len(BUDGETS) - len(curve))]
        for i, b in enumerate(BUDGETS)
        if i >= len(BUDGETS) - len(curve)
    }
    assert at[8_000] > at[1_000] + 1 > at[128] + 1, at


@pytest.mark.parametrize("variant", VARIANTS)
def test_v0_checkpoints_still_work_under_the_lean_frame(variant: str, frames) -> None:
    path = codec_entry(variant).shipped_path_for("bwgym/LocateLift-v0")
    assert path is not None and path.name == codec_entry(variant).checkpoint
    kwargs = {} if variant in ("linear_dpca", "pca") else {"device": "cpu"}
    codec = make_codec(variant, VIEWS, env_id="bwgym/LocateLift-v0", **kwargs)
    assert codec.env_id == "bwgym/LocateLift-v0"
    sizes = [codec.compress(frames[0], b).nbits for b in (32, 128, 1_000)]
    assert 0 < sizes[0] <= sizes[1] <= sizes[2]
    payload = codec.compress(frames[0], 400)
    out = codec.decompress(Payload.from_bytes(payload.to_bytes(), session=codec.session))
    assert set(out) == {"arm", "side"} and _psnr(frames[0], out) > 12
    with pytest.raises(ValueError, match="LocateLift-v1"):
        codec.check_spec(env_id=V1)


def test_shipped_file_per_env_version() -> None:
    from bwgym.common.checkpoint import shipped_file

    assert shipped_file("ndpca_locate_lift.ckpt", "bwgym/LocateLift-v1") == "ndpca_locate_lift_v1.ckpt"
    assert shipped_file("ndpca_locate_lift.ckpt", "bwgym/LocateLift-v0") == "ndpca_locate_lift.ckpt"
    assert shipped_file("ndpca_locate_lift.ckpt", None) == "ndpca_locate_lift.ckpt"
    assert shipped_file("gray_wyner_synthetic.ckpt", "bwgym/LocateLift-v1") == "gray_wyner_synthetic.ckpt"
    assert shipped_file("bc_locate_lift.ckpt", "bwgym/LocateLift-v2") == "bc_locate_lift_v2.ckpt"
    with pytest.raises(FileNotFoundError, match="--env bwgym/LocateLift-v7"):
        make_codec("ndpca", VIEWS, env_id="bwgym/LocateLift-v7")
