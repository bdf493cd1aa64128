"""The task term of the shipped v1 NDPCA pays off where bandwidth binds, at little cost in pixels.

Control: the task-agnostic NDPCA (the same network before the task-aware fine-tuning, trained on
reconstruction only). On held-out expert frames the task-aware codec must give the BC agent a
lower action error at low budgets (the NDPCA paper's claim) while its reconstructions stay within
a dB of the control's and above 25 dB at 8,000 bits (issue 11).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bwgym  # noqa: F401  (registers the envs; before mujoco)
from bwgym.agents.bc import BCAgent
from bwgym.codecs import make_codec
from bwgym.codecs.core.protocol import Payload, ViewSpec

V1 = "bwgym/LocateLift-v1"
VIEWS = [ViewSpec("arm", (84, 84, 3)), ViewSpec("side", (84, 84, 3))]


@pytest.fixture(scope="module")
def heldout() -> dict[str, np.ndarray]:
    """Every other frame of six v1 expert episodes (seeds no codec trained on): ~60 frame pairs."""
    import gymnasium as gym

    from bwgym.agents.expert import LiftExpert

    env = gym.make(V1)
    frames: dict[str, list[np.ndarray]] = {"arm": [], "side": []}
    for seed in range(100_200, 100_206):
        obs, _ = env.reset(seed=seed)
        expert = LiftExpert(env)
        expert.reset()
        for t in range(200):
            if t % 2 == 0:
                for v in frames:
                    frames[v].append(obs[v])
            obs, _, term, trunc, _ = env.step(expert.act(obs))
            if term or trunc:
                break
    env.close()
    return {v: np.stack(f) for v, f in frames.items()}


def _decode_all(codec, frames: dict[str, np.ndarray], budget: int) -> dict[str, np.ndarray]:
    out: dict[str, list[np.ndarray]] = {v: [] for v in frames}
    for i in range(len(frames["arm"])):
        payload = codec.compress({v: frames[v][i] for v in frames}, budget)
        assert not payload.is_empty
        wire = Payload.from_bytes(payload.to_bytes(), codec=codec.name, session=codec.session)
        for v, x in codec.decompress(wire).items():
            out[v].append(x)
    return {v: np.stack(x) for v, x in out.items()}


def _psnr(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    mse = np.mean([np.mean((a[v].astype(float) - b[v].astype(float)) ** 2) for v in a])
    return float(10 * np.log10(255.0**2 / mse))


@pytest.mark.slow
def test_task_aware_ndpca_beats_its_task_agnostic_control_where_bandwidth_binds(heldout) -> None:
    torch.set_num_threads(1)
    agent = BCAgent.load_shipped(V1, device="cpu")
    clean = agent.act_batch(heldout)
    codecs = {name: make_codec(name, VIEWS, env_id=V1, device="cpu") for name in ("ndpca", "ndpca_agnostic")}
    error, quality = {}, {}
    for name, codec in codecs.items():
        for budget in (64, 128, 8_000):
            decoded = _decode_all(codec, heldout, budget)
            error[name, budget] = float(np.mean(np.linalg.norm(agent.act_batch(decoded) - clean, axis=1)))
            quality[name, budget] = _psnr(heldout, decoded)
    for budget in (64, 128):
        assert error["ndpca", budget] < 0.95 * error["ndpca_agnostic", budget], error
        assert quality["ndpca", budget] > quality["ndpca_agnostic", budget] - 1.0, quality
    assert quality["ndpca", 8_000] >= 25.0, quality
