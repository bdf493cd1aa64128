"""The low-dimensional features the two-receiver codecs see and predict, and the frames they come from.

At a CPU-feasible size the Gray-Wyner transforms work on features of LocateLift-v1's two views,
not on 84x84 pixels:

* source ``x1`` (arm): the BC agent's arm encoder features (128, tanh);
* source ``x2`` (side): the BC agent's side encoder features (128) and the side view's 32
  coefficients under the shipped ``linear_dpca_locate_lift_v1`` model (4x-downsampled pixels),
  divided by one fixed scale;
* task 1: both views' BC features (256); its distortion is the RMSE of the *actions* the frozen
  BC head computes from them (the task loss on receiver 1's actions);
* task 2: the 32 side coefficients; receiver 2 back-projects them to the side view (the PCA
  ceiling is about 24 dB on held-out frames).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from bwgym.agents.bc import BCAgent
from bwgym.agents.expert import LiftExpert
from bwgym.codecs.core.latent import LatentCodec
from bwgym.codecs.core.registry import CHECKPOINT_DIR, load_codec

__all__ = ["ENV_ID", "PIXEL_CODEC", "VIEWS", "FeaturePairs", "ViewFeatures", "collect_frames"]

ENV_ID = "bwgym/LocateLift-v1"
#: The shipped linear DPCA model whose side-view components give receiver 2's coefficients.
PIXEL_CODEC = "linear_dpca_locate_lift_v1.ckpt"
VIEWS = ("arm", "side")


class ViewFeatures:
    """The low-dimensional features the two-receiver codec sees and predicts (see the module docstring).

    Args:
        agent: the frozen BC agent (receiver 1); its encoders make the features, its MLP head the action.
        pixel_codec: the linear DPCA codec whose side-view model gives receiver 2's coefficients.
    """

    def __init__(self, agent: BCAgent, pixel_codec: LatentCodec) -> None:
        self.agent = agent.eval().requires_grad_(False)
        self.pixel_codec = pixel_codec
        model = pixel_codec.latent_model
        self._side = list(model.view_names).index("side")
        self.side_spec = pixel_codec.views[self._side]
        self.downsample = int(pixel_codec.downsample)
        self._mean = model.means[self._side]
        self._basis = model.components[self._side]
        self._scale = model.scales[self._side]
        #: z2 = side coefficients / coeff_scale (one number fixed by the model: RMS component std).
        self.coeff_scale = float(np.sqrt(np.mean(model.variances[self._side])))
        n_feat = agent.arch["features"]
        self.x_dims = (n_feat, n_feat + self._basis.shape[1])
        self.z_dims = (2 * n_feat, self._basis.shape[1])

    @classmethod
    def load_shipped(cls, env_id: str = ENV_ID, agent: BCAgent | None = None) -> ViewFeatures:
        """The shipped linear DPCA model with ``agent`` (None: the shipped v1 BC agent)."""
        agent = BCAgent.load_shipped(env_id) if agent is None else agent
        codec = load_codec(CHECKPOINT_DIR / PIXEL_CODEC)
        if not isinstance(codec, LatentCodec):  # pragma: no cover - the shipped file's kind
            raise TypeError(f"{PIXEL_CODEC} is not a latent codec")
        return cls(agent, codec)

    def describe(self) -> dict[str, Any]:
        """What the checkpoint records about its features (checked when loading them)."""
        return {
            "bc_agent": self.agent.env_id,
            "bc_sha256": _state_sha(self.agent.state_dict()),
            "pixel_codec": PIXEL_CODEC,
            "coeff_scale": self.coeff_scale,
            "x_dims": list(self.x_dims),
            "z_dims": list(self.z_dims),
        }

    @torch.no_grad()
    def batch(self, arm: np.ndarray, side: np.ndarray, chunk: int = 256) -> dict[str, np.ndarray]:
        """``x1, x2, z1, z2`` (float32) of ``(N, 84, 84, 3)`` uint8 frame pairs (or one pair)."""
        arm, side = np.asarray(arm), np.asarray(side)
        if arm.ndim == 3:
            arm, side = arm[None], side[None]
        feats: dict[str, list[np.ndarray]] = {"arm": [], "side": []}
        for i in range(0, len(arm), chunk):
            views = self.agent.preprocess({"arm": arm[i : i + chunk], "side": side[i : i + chunk]})
            for v in VIEWS:
                feats[v].append(self.agent.encoders[v](views[v]).cpu().numpy())
        fa, fs = (np.concatenate(feats[v]).astype(np.float32) for v in VIEWS)
        coeffs = self.side_coefficients(side)
        return {
            "x1": fa,
            "x2": np.concatenate([fs, coeffs], axis=1),
            "z1": np.concatenate([fa, fs], axis=1),
            "z2": coeffs,
        }

    def side_coefficients(self, side: np.ndarray) -> np.ndarray:
        """Normalised linear-DPCA coefficients ``(N, 32)`` of side frames ``(N, H, W, 3)``."""
        d = self.downsample
        x = np.asarray(side, np.float64)
        n, h, w, c = x.shape
        x = x.reshape(n, h // d, d, w // d, d, c).mean(axis=(2, 4)).reshape(n, -1)
        return (((x - self._mean) / self._scale) @ self._basis / self.coeff_scale).astype(np.float32)

    def side_image(self, z2: np.ndarray) -> np.ndarray:
        """Receiver 2's side view ``(H, W, 3)`` uint8 from normalised coefficients ``(32,)``."""
        h, w, c = self.side_spec.shape
        d = self.downsample
        vec = (np.asarray(z2, np.float64) * self.coeff_scale) @ self._basis.T * self._scale + self._mean
        img = vec.reshape(h // d, w // d, c).repeat(d, axis=0).repeat(d, axis=1)
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)

    @property
    def head(self) -> nn.Module:
        """The BC agent's MLP head: both views' features ``(B, 256)`` -> actions ``(B, 4)``."""
        return self.agent.mlp

    @torch.no_grad()
    def action(self, z1: np.ndarray) -> np.ndarray:
        """Receiver 1's action from (decoded) features ``(256,)``."""
        z = torch.as_tensor(np.asarray(z1, np.float32).reshape(1, -1), device=self.agent.device)
        return self.head(z)[0].cpu().numpy().astype(np.float32)


def _state_sha(state: Mapping[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key, value in sorted(state.items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class FeaturePairs:
    """Feature arrays as a Gray-Wyner dataset (``sample`` draws rows with replacement)."""

    arrays: dict[str, np.ndarray]

    @property
    def x_dims(self) -> tuple[int, int]:
        """Elements of ``(x1, x2)``."""
        return (self.arrays["x1"].shape[1], self.arrays["x2"].shape[1])

    @property
    def n_elements(self) -> int:
        """Rates are reported per step (one position per sample)."""
        return 1

    def __len__(self) -> int:
        return len(self.arrays["x1"])

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``n`` rows drawn with replacement."""
        idx = rng.integers(0, len(self), size=n)
        return {k: v[idx] for k, v in self.arrays.items()}

    def subset(self, idx: np.ndarray) -> FeaturePairs:
        """The rows ``idx``."""
        return FeaturePairs({k: v[idx] for k, v in self.arrays.items()})


def collect_frames(
    episodes: int, seed: int = 0, features: ViewFeatures | None = None, env_id: str = ENV_ID
) -> dict[str, np.ndarray]:
    """Frame pairs of seeded LocateLift-v1 episodes, from the expert and from the noisy BC agent.

    Even episodes: the scripted expert with N(0, 0.1) action noise; odd ones: the BC agent with
    N(0, 0.3) noise (the states a degraded receiver visits; needs ``features`` for its agent, else
    the expert plays every episode).

    Returns ``{"arm", "side": (N, 84, 84, 3) uint8, "episode": (N,) int}``.
    """
    env = gym.make(env_id)
    out: dict[str, list[Any]] = {"arm": [], "side": [], "episode": []}
    try:
        for e in range(episodes):
            obs, _ = env.reset(seed=seed + e)
            expert = LiftExpert(env, noise_std=0.1, seed=seed + e)
            rng = np.random.default_rng(seed + e)
            use_bc = features is not None and e % 2 == 1
            done = False
            while not done:
                out["arm"].append(obs["arm"])
                out["side"].append(obs["side"])
                out["episode"].append(e)
                if use_bc:
                    action = features.agent.act(obs) + rng.normal(0.0, 0.3, 4)  # type: ignore[union-attr]
                    action = np.clip(action, -1, 1).astype(np.float32)
                else:
                    action = expert.act(obs)
                obs, _, terminated, truncated, _ = env.step(action)
                done = terminated or truncated
    finally:
        env.close()
    return {"arm": np.stack(out["arm"]), "side": np.stack(out["side"]), "episode": np.asarray(out["episode"])}
