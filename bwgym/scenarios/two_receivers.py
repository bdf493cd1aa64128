r"""Two receivers on LocateLift-v1 through one Gray-Wyner codec (paper 002, issue 14 item 5).

A robot with two cameras feeds two consumers. **Receiver 1** is the shipped v1 behaviour-cloning
policy (it acts: the env is driven by its actions); **receiver 2** is a remote monitor that
reconstructs the side view. The Gray-Wyner codec sends the common stream ``Y0`` over a
*broadcast* link both receivers hear and the private streams ``Y1``, ``Y2`` over one link per
receiver, each link with its own bandwidth trace (:class:`~bwgym.traces.Link`)::

                      +-- broadcast link (trace 0): common Y0 ---+---> receiver 1: BC head -> action -> env
    arm, side --> GW -+-- link 1 (trace 1): private_1 Y1 --------+
                      +-- link 2 (trace 2): private_2 Y2 --------+---> receiver 2: side view (PSNR)

On the wire each link carries lean channel frames
(:meth:`~bwgym.codecs.multiterminal.gray_wyner.GrayWynerCodec.compress_channels`): once per episode, at its
first step, the model's 88-bit session header (codec, 4-byte fingerprint of the weights, kind and
rate-point ladder), charged to that link's bits; then per step one frame of the channel's stream
plus 16 bits (a header byte with the step tag, channel and rate point, and a CRC-8). A link whose
budget cannot hold the header sends it in fragments over several steps, and carries frames only
after it. A receiver decodes only frames parsed under the session it received whole.

At a CPU-feasible size the transforms work on low-dimensional features of the two views
(:class:`ViewFeatures`), not on 84x84 pixels:

* source ``x1`` (arm): the BC agent's arm encoder features (128, tanh);
* source ``x2`` (side): the BC agent's side encoder features (128) and the side view's 32
  coefficients under the shipped ``linear_dpca_locate_lift_v1`` model (4x-downsampled pixels),
  divided by one fixed scale;
* task 1: both views' BC features (256); its distortion is the RMSE of the *actions* the frozen
  BC head computes from them (``distortion_maps``: the task loss on receiver 1's actions);
* task 2: the 32 side coefficients; receiver 2 back-projects them to the side view (the PCA
  ceiling is about 24 dB on held-out frames).

The baseline is **two independent codecs**, one per receiver, each seeing both views and
sharing nothing (the same class with ``common_dim = 0``: ``private_k`` alone serves receiver
``k``); its latent size per receiver equals the Gray-Wyner model's ``common + private``, and it is
trained with the same data, objective (``beta`` aside: it has no common rate) and steps.

The second baseline works on pixels, as the issue words it: **two independent NDPCA codecs**
(:func:`run_pixel_baseline`), one per receiver, nothing shared, no broadcast link:

* link 1: the shipped task-aware NDPCA codec (``ndpca_locate_lift_v1.ckpt``) sends both 84x84
  views in its lean frames under a per-step budget; receiver 1 decodes the pixels and the BC
  agent acts on them (and drives the env);
* link 2: the shipped task-agnostic NDPCA codec (``ndpca_agnostic_locate_lift_v1.ckpt``) sends
  the side view alone. The shipped codecs code two views; their explicit split :data:`SIDE_ONLY`
  switches the arm stream off, so the frame holds side latents and side residual coefficients
  and no arm symbol (the sender, like every encoder here, sees both views: NDPCA's side residual
  is taken against its joint decoder, which reads the arm latents too). Task-agnostic NDPCA is
  the independent NDPCA codec trained for what receiver 2 wants, pixels (reconstruction only),
  and at receiver 2's quality as cheap as any shipped pixel codec: on side frames of four
  episodes (seeds 20000..) its smallest frame with components, 24 bits, gives ~24 dB (24.2 dB;
  the task-aware codec's gives 24.3 dB), where linear DPCA needs ~40 bits. Its frame budget is
  the smallest that reaches a target side PSNR on calibration frames (:func:`side_budget`; the
  benchmark's target is Gray-Wyner's best side PSNR over its rate points).

Receiver 2 is scored the same way in every run: the PSNR of the side view it shows against the
raw 84x84 side view the env rendered at that step (``obs["side"]``), whether that view came from
Gray-Wyner's 32 decoded coefficients (4x-downsampled, upsampled by repetition) or from NDPCA's
decoded pixels.

:func:`run_two_receivers` plays seeded episodes and returns the per-step run table (pandas):
budgets, bits sent and stream bits on each link, rate point, receiver 1's action, its error
against the policy on clean views and the env's success flag, receiver 2's side-view PSNR (and the
PSNR of the unquantised coefficients, its ceiling), and what each receiver held;
:func:`run_pixel_baseline` returns the same table for the pixel baseline. :func:`rate_sweep` and
:func:`bd_rate` give the transmit-rate saving at equal task success.

Regenerate the shipped pair (about 4 minutes on one free CPU thread)::

    python -m bwgym.scenarios.two_receivers --ship
    # bwgym/codecs/checkpoints/gray_wyner_locate_lift_v1.ckpt          (Gray-Wyner, Shared)
    # bwgym/codecs/checkpoints/gray_wyner_locate_lift_v1_separate.ckpt (two independent codecs)

Benchmark: ``python benchmarks/gray_wyner_two_receivers.py`` (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from bwgym.agents.bc import BCAgent
from bwgym.agents.expert import LiftExpert
from bwgym.codecs.core.latent import LatentCodec
from bwgym.codecs.core.protocol import Payload, PayloadError
from bwgym.codecs.core.registry import CHECKPOINT_DIR, codec_entry, load_codec
from bwgym.codecs.multiterminal.gray_wyner import (
    CHANNELS,
    GrayWynerCodec,
    GrayWynerConfig,
    evaluate_net,
    train_gray_wyner,
)
from bwgym.envs.bandwidth import psnr
from bwgym.envs.transport import SessionTransport
from bwgym.traces import BandwidthTrace, Link, generate

__all__ = [
    "BASELINE_CHECKPOINT",
    "ENV_ID",
    "LINKS",
    "PIXEL_BASELINE",
    "SHIPPED_CHECKPOINT",
    "SIDE_ONLY",
    "FeaturePairs",
    "ViewFeatures",
    "bd_overlap",
    "bd_rate",
    "collect_frames",
    "default_traces",
    "load_pair",
    "load_pixel_baseline",
    "rate_sweep",
    "run_pixel_baseline",
    "run_two_receivers",
    "side_budget",
    "train_pair",
]

ENV_ID = "bwgym/LocateLift-v1"
SHIPPED_CHECKPOINT = CHECKPOINT_DIR / "gray_wyner_locate_lift_v1.ckpt"
BASELINE_CHECKPOINT = CHECKPOINT_DIR / "gray_wyner_locate_lift_v1_separate.ckpt"
PIXEL_CODEC = "linear_dpca_locate_lift_v1.ckpt"
#: The pixel baseline's registered codecs: task-aware NDPCA (receiver 1, both views) and
#: task-agnostic NDPCA (receiver 2, the side view alone), each the env's shipped checkpoint.
PIXEL_BASELINE = ("ndpca", "ndpca_agnostic")
#: Receiver 2's explicit split: the arm stream off, the side stream alone in the frame.
SIDE_ONLY: Mapping[str, float] = {"arm": 0.0, "side": 1.0}
LINKS = ("broadcast", "receiver_1", "receiver_2")
VIEWS = ("arm", "side")
TASKS = ("bc_features", "side_coefficients")
STEP_SECONDS = 0.04
#: The shipped recipe (one CPU thread): rate points, sizes, steps, data.
RECIPE: dict[str, Any] = {
    "etas": (0.001, 0.003, 0.01, 0.03, 0.1, 0.3),
    "beta": 1.0,
    "common_dim": 16,
    "private_dim": 16,
    "hidden": 256,
    "steps": 3000,
    "batch_size": 128,
    "episodes": 200,
    "seed": 0,
}


class ViewFeatures:
    """The low-dimensional features the two-receiver codec sees and predicts (see the module doc).

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
    def load_shipped(cls, env_id: str = ENV_ID) -> ViewFeatures:
        """The shipped v1 BC agent and linear DPCA model."""
        agent = BCAgent.load_shipped(env_id)
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


def train_pair(
    features: ViewFeatures,
    data: FeaturePairs,
    etas: Sequence[float] = RECIPE["etas"],
    beta: float = RECIPE["beta"],
    common_dim: int = RECIPE["common_dim"],
    private_dim: int = RECIPE["private_dim"],
    hidden: int = RECIPE["hidden"],
    steps: int = RECIPE["steps"],
    batch_size: int = RECIPE["batch_size"],
    seed: int = RECIPE["seed"],
    heldout: FeaturePairs | None = None,
    progress: bool = False,
) -> tuple[GrayWynerCodec, GrayWynerCodec]:
    """Train the Gray-Wyner codec (Shared) and its baseline (two independent codecs) on features.

    Both get the same data, rate points, steps and seed; the baseline's private latent per
    receiver is ``common_dim + private_dim``.
    """
    maps = (features.head, None)
    common = dict(
        n_elements=1,
        hidden=hidden,
        context_hidden=64,
        etas=tuple(sorted(etas)),
        x_dims=features.x_dims,
        z_dims=features.z_dims,
        gamma=1.0,
    )
    configs = {
        "shared": GrayWynerConfig(
            kind="shared", beta=beta, common_dim=common_dim, private_dim=private_dim, **common
        ),
        "separate": GrayWynerConfig(
            kind="separated", beta=1.0, common_dim=0, private_dim=common_dim + private_dim, **common
        ),
    }
    codecs = []
    for name, cfg in configs.items():
        start = time.perf_counter()
        net = train_gray_wyner(
            cfg, data, steps=steps, batch_size=batch_size, seed=seed, progress=progress, distortion_maps=maps
        )
        seconds = time.perf_counter() - start
        metrics = []
        if heldout is not None:
            n = min(len(heldout), 2000)
            metrics = [
                evaluate_net(net, heldout, n_samples=n, rate_idx=j, distortion_maps=maps)
                for j in range(cfg.n_rates)
            ]
        codec = GrayWynerCodec(
            net,
            view_names=VIEWS,
            task_names=TASKS,
            env_id=ENV_ID,
            device="cpu",
            metadata={
                "role": "gray_wyner" if name == "shared" else "two independent codecs (baseline)",
                "features": features.describe(),
                "train": {
                    "steps": steps,
                    "batch_size": batch_size,
                    "seed": seed,
                    "frames": len(data),
                    "seconds": round(seconds, 1),
                },
                "metrics": metrics,
                "command": "python -m bwgym.scenarios.two_receivers --ship",
            },
        )
        codecs.append(codec)
    return codecs[0], codecs[1]


def load_pair(features: ViewFeatures | None = None) -> tuple[GrayWynerCodec, GrayWynerCodec]:
    """The shipped Gray-Wyner codec and its baseline; refuse them when built on other features."""
    pair = []
    for path in (SHIPPED_CHECKPOINT, BASELINE_CHECKPOINT):
        codec = GrayWynerCodec.load(path, device="cpu")
        if features is not None:
            want = features.describe()
            have = codec.metadata.get("features", {})
            if have.get("bc_sha256") != want["bc_sha256"] or have.get("x_dims") != want["x_dims"]:
                raise ValueError(
                    f"{path.name} was trained on features of BC agent {have.get('bc_sha256')}, these come "
                    f"from {want['bc_sha256']}: retrain with `python -m bwgym.scenarios.two_receivers --ship`"
                )
        pair.append(codec)
    return pair[0], pair[1]


# ---------------------------------------------------------------------------------------------
# The two-receiver run
# ---------------------------------------------------------------------------------------------


def default_traces(seed: int = 0, mean_bps: Sequence[float] = (6e3, 5e3, 5e3)) -> dict[str, BandwidthTrace]:
    """One generated trace per link: log-normal walks with independent seeds.

    About 240 / 200 / 200 bits per 0.04 s step on average (a lean channel frame costs its 20-70
    stream bits + 16; each link's 88-bit session header comes first in every episode), several
    times lower at the troughs and higher at the peaks.
    """
    return {
        link: generate("lognormal_walk", seed=seed + 101 * i, mean_bps=bps, sigma=0.5, correlation_s=2.0)
        for i, (link, bps) in enumerate(zip(LINKS, mean_bps, strict=True))
    }


def _choose(
    codec: GrayWynerCodec,
    views: Mapping[str, np.ndarray],
    budgets: Sequence[int],
    rate_idx: int | None,
    step: int,
) -> tuple[int | None, dict[str, Payload]]:
    """The rate point and the lean channel frames to send under per-link frame budgets.

    ``budgets`` are what each link has left for a frame this step (after its session header;
    negative: no frame fits). The finest rate point whose channel frames each fit their link; else
    the finest whose common frame fits (the private frames that do not fit are not sent; a model
    without a common channel: the finest point, the private frames that fit); else nothing. A
    fixed ``rate_idx`` sends that point whatever the budgets.
    """
    candidates = range(codec.n_rates) if rate_idx is None else [rate_idx]
    fallback: tuple[int | None, dict[str, Payload]] = (None, {})
    for j in candidates:
        frames = codec.compress_channels(views, j, step)
        fits = {ch: p.nbits <= budgets[CHANNELS.index(ch)] for ch, p in frames.items()}
        if rate_idx is not None or all(fits.values()):
            return j, frames
        if fallback[0] is None and fits.get("common", True):
            fallback = (j, {ch: p for ch, p in frames.items() if fits[ch]})
    return fallback


def run_two_receivers(
    codec: GrayWynerCodec,
    features: ViewFeatures,
    episodes: int = 5,
    seed: int = 0,
    traces: Mapping[str, BandwidthTrace] | None = None,
    rate_idx: int | None = None,
    max_steps: int | None = None,
    env_id: str = ENV_ID,
) -> Any:
    """Play seeded episodes with receiver 1 acting and receiver 2 watching; return the step table.

    Each link that carries a channel first sends the codec's 88-bit session header
    (:attr:`~bwgym.codecs.multiterminal.gray_wyner.GrayWynerCodec.channel_session`) at the start of every
    episode, charged to that link's bits (``session_bits_<link>``), then one lean frame per step
    (16 bits of overhead); the receivers parse the frames from their bytes under the session they
    received.

    Args:
        codec: a two-receiver Gray-Wyner codec (:func:`load_pair`); with ``common_dim = 0`` (the
            baseline) nothing goes on the broadcast link, not even a session header.
        features: the feature maps the codec was trained on.
        episodes: episodes, seeds ``seed .. seed + episodes - 1``.
        seed: first seed (env, link clocks start at 0 every episode).
        traces: one trace per link in :data:`LINKS` (None: :func:`default_traces` of ``seed``;
            the clocks continue across episodes).
        rate_idx: send this rate point every step on unconstrained links (the rate sweep);
            None: pick per step from the three budgets.
        max_steps: cut episodes after this many steps.
        env_id: the env (LocateLift-v1, whose views the features were fitted on).

    Returns:
        A ``pandas.DataFrame``, one row per step: ``episode, seed, step, rate_idx``, per link
        ``budget_<link>``, ``bits_<link>`` (wire bits sent: session header and frame),
        ``session_bits_<link>``, ``stream_bits_<link>`` (the frame's body),
        ``container_bits_<link>`` (what the frame would cost in the v1 container, 112 bits of
        overhead, for reference), ``delivered_<link>``; ``transmit_bits``, ``receive_bits_1``,
        ``receive_bits_2``, ``transmit_stream_bits``, ``transmit_container_bits``; receiver
        ``k``: ``r<k>_private`` (its private stream arrived; without it a Gray-Wyner receiver
        decodes from the common stream alone, the baseline's holds); receiver 1: ``r1_held``,
        ``r1_action_error`` (L2 against the policy on clean views), ``r1_success`` (the env's flag
        after the step), ``episode_success``; receiver 2: ``r2_held``, ``r2_psnr``,
        ``r2_psnr_ceiling`` (the unquantised coefficients).
    """
    import pandas as pd

    if traces is None:
        traces = default_traces(seed)
    if rate_idx is not None:
        traces = {link: generate("constant", bps=1e9) for link in LINKS}
    missing = set(LINKS) - set(traces)
    if missing:
        raise ValueError(f"traces needs one trace per link {list(LINKS)}; missing {sorted(missing)}")
    links = [Link(traces[link], STEP_SECONDS) for link in LINKS]
    transports = [SessionTransport() for _ in LINKS]
    session = codec.channel_session
    env = gym.make(env_id)
    rows: list[dict[str, Any]] = []
    zero_z1 = np.zeros(features.z_dims[0], np.float32)
    try:
        for e in range(episodes):
            obs, info = env.reset(seed=seed + e)
            # a fresh session on every link that carries a channel (none for an unused channel)
            sessions = [session if ch in codec.channels else None for ch in CHANNELS]
            for transport in transports:
                transport.reset()
            # nothing received yet: the policy acts on all-zero features, the monitor shows the mean view
            held_action = features.action(zero_z1)
            held_side = features.side_image(np.zeros(features.z_dims[1]))
            start = len(rows)
            done, t = False, 0
            while not done and (max_steps is None or t < max_steps):
                f = features.batch(obs["arm"], obs["side"])
                views = {"arm": f["x1"][0], "side": f["x2"][0]}
                budgets = [link.peek_budget_bits() for link in links]
                headers = [t.outgoing(s) for t, s in zip(transports, sessions, strict=True)]
                frame_budgets = [b - 8 * len(rest) for b, (rest, _) in zip(budgets, headers, strict=True)]
                j, frames = _choose(codec, views, frame_budgets, rate_idx, t)
                row: dict[str, Any] = {
                    "episode": e,
                    "seed": seed + e,
                    "step": t,
                    "rate_idx": -1 if j is None else j,
                }
                got: dict[str, Payload] = {}
                for link_name, ch, link, budget, transport, ch_session, (rest, offset) in zip(
                    LINKS, CHANNELS, links, budgets, transports, sessions, headers, strict=True
                ):
                    fragment = rest[: max(budget, 0) // 8]
                    frame = frames.get(ch)
                    wire = frame.to_bytes() if frame is not None else b""
                    res = link.transmit((fragment, offset, wire), 8 * (len(fragment) + len(wire)))
                    transport.acknowledged(ch_session, fragment, offset, bool(res.bits_sent) and not res.lost)
                    for d in res.delivered:
                        frag, frag_offset, data = d.item
                        transport.receive(frag, frag_offset)
                        if data and transport.rx_session is not None:
                            # through the wire bytes: what a receiver decodes is what the bytes hold
                            got[ch] = Payload.from_bytes(data, codec=codec.name, session=transport.rx_session)
                    sent = bool(res.bits_sent) and frame is not None
                    body = len(frame.streams[0]) if sent else 0
                    row[f"budget_{link_name}"] = budget
                    row[f"bits_{link_name}"] = res.bits_sent
                    row[f"session_bits_{link_name}"] = 8 * len(fragment) if res.bits_sent else 0
                    row[f"stream_bits_{link_name}"] = 8 * body
                    row[f"container_bits_{link_name}"] = (
                        Payload(codec.name, (bytes(body),), bytes(5)).nbits if sent else 0
                    )
                    row[f"delivered_{link_name}"] = ch in got
                r1_held = r2_held = True
                for task in (1, 2):
                    has_private = f"private_{task}" in got
                    row[f"r{task}_private"] = has_private
                    if not has_private and "common" not in got:
                        continue  # nothing new for this receiver: hold
                    try:
                        z = codec.decode_receiver(task, got.get("common"), got.get(f"private_{task}"))
                    except PayloadError:
                        continue  # the common stream is missing: hold the last output
                    if task == 1:
                        held_action, r1_held = features.action(z), False
                    else:
                        held_side, r2_held = features.side_image(z), False
                _record_receivers(
                    row,
                    (held_action, features.action(f["z1"][0]), r1_held),
                    (held_side, obs["side"], r2_held),
                    ceiling=psnr(features.side_image(f["z2"][0]), obs["side"]),
                )
                obs, done = _step(env, held_action, row, rows)
                t += 1
            _mark_episode(rows[start:])
    finally:
        env.close()
    return _totals(pd.DataFrame(rows))


def _record_receivers(
    row: dict[str, Any],
    receiver_1: tuple[np.ndarray, np.ndarray, bool],
    receiver_2: tuple[np.ndarray, np.ndarray, bool],
    ceiling: float,
) -> None:
    """Both receivers' metrics of one step: (action, clean-view action, held) and (side, true side, held)."""
    action, clean_action, r1_held = receiver_1
    side, true_side, r2_held = receiver_2
    row["r1_held"] = r1_held
    row["r1_action_error"] = float(np.linalg.norm(action - clean_action))
    row["r2_held"] = r2_held
    row["r2_psnr"] = psnr(side, true_side)
    row["r2_psnr_ceiling"] = ceiling


def _step(
    env: gym.Env, action: np.ndarray, row: dict[str, Any], rows: list[dict[str, Any]]
) -> tuple[Any, bool]:
    """Step the env with receiver 1's action, record its success in ``row`` and append the row."""
    obs, _, terminated, truncated, info = env.step(action)
    row["r1_success"] = bool(info.get("is_success", False))
    rows.append(row)
    return obs, bool(terminated or truncated)


def _mark_episode(rows: list[dict[str, Any]]) -> None:
    """Give every row of one episode the episode's success (any step succeeded)."""
    success = any(r["r1_success"] for r in rows)
    for r in rows:
        r["episode_success"] = success


def _totals(df: Any) -> Any:
    """Add the run table's sums over links (transmit and receive bits, stream, container, session)."""
    df["transmit_bits"] = df[[f"bits_{link}" for link in LINKS]].sum(axis=1)
    df["receive_bits_1"] = df["bits_broadcast"] + df["bits_receiver_1"]
    df["receive_bits_2"] = df["bits_broadcast"] + df["bits_receiver_2"]
    df["transmit_stream_bits"] = df[[f"stream_bits_{link}" for link in LINKS]].sum(axis=1)
    df["transmit_container_bits"] = df[[f"container_bits_{link}" for link in LINKS]].sum(axis=1)
    df["transmit_session_bits"] = df[[f"session_bits_{link}" for link in LINKS]].sum(axis=1)
    return df


def summarise(steps: Any) -> dict[str, float]:
    """Success rate, mean bits per step on each link and in total, mean action error and PSNR.

    Wire bits (``transmit_bits``, ``bits_<link>``) include the session headers; also the stream
    bits, the session bits and, for reference, the bits of the same frames in the v1 container.
    """
    episodes = steps.groupby("episode")["episode_success"].first()
    out = {
        "episodes": float(len(episodes)),
        "success": float(episodes.mean()),
        "transmit_bits": float(steps["transmit_bits"].mean()),
        "transmit_stream_bits": float(steps["transmit_stream_bits"].mean()),
        "transmit_container_bits": float(steps["transmit_container_bits"].mean()),
        "transmit_session_bits": float(steps["transmit_session_bits"].mean()),
        "r1_action_error": float(steps["r1_action_error"].mean()),
        "r2_psnr": float(steps["r2_psnr"].replace(math.inf, 99.0).mean()),
        "r2_psnr_ceiling": float(steps["r2_psnr_ceiling"].replace(math.inf, 99.0).mean()),
    }
    for link in LINKS:
        out[f"bits_{link}"] = float(steps[f"bits_{link}"].mean())
    return out


def rate_sweep(
    codec: GrayWynerCodec, features: ViewFeatures, episodes: int = 20, seed: int = 0
) -> list[dict[str, float]]:
    """:func:`summarise` of every rate point, each sent at every step over unconstrained links."""
    out = []
    for j in range(codec.n_rates):
        s = summarise(run_two_receivers(codec, features, episodes=episodes, seed=seed, rate_idx=j))
        out.append({"rate_idx": float(j), **s})
    return out


def _monotone_curve(rates: Sequence[float], quality: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(quality, log rate) sorted by rate, keeping only the points that raise the quality."""
    q, r, best = [], [], -math.inf
    for i in np.argsort(rates):
        if quality[i] > best:
            best = quality[i]
            q.append(float(quality[i]))
            r.append(math.log(float(rates[i])))
    return np.asarray(q), np.asarray(r)


def bd_overlap(
    rates_a: Sequence[float], quality_a: Sequence[float], rates_b: Sequence[float], quality_b: Sequence[float]
) -> tuple[float, float]:
    """The quality range :func:`bd_rate` averages over: where both monotone curves have points.

    ``lo >= hi`` when they do not overlap.
    """
    qa, _ = _monotone_curve(rates_a, quality_a)
    qb, _ = _monotone_curve(rates_b, quality_b)
    return max(qa[0], qb[0]), min(qa[-1], qb[-1])


def bd_rate(
    rates_a: Sequence[float], quality_a: Sequence[float], rates_b: Sequence[float], quality_b: Sequence[float]
) -> float:
    """BD-rate of codec B against codec A in percent (negative: B needs fewer bits at equal quality).

    Bjontegaard's average of ``log(rate)`` over the overlapping quality range, with piecewise-linear
    interpolation instead of a cubic fit (a handful of noisy points); each curve is first made
    monotone (sorted by rate, points that do not raise the quality dropped). NaN without overlap.
    """
    qa, ra = _monotone_curve(rates_a, quality_a)
    qb, rb = _monotone_curve(rates_b, quality_b)
    if len(qa) < 2 or len(qb) < 2:
        return math.nan
    lo, hi = bd_overlap(rates_a, quality_a, rates_b, quality_b)
    if not hi > lo:
        return math.nan
    grid = np.linspace(lo, hi, 201)
    diff = np.interp(grid, qb, rb) - np.interp(grid, qa, ra)
    return float((math.exp(diff.mean()) - 1.0) * 100.0)


# ---------------------------------------------------------------------------------------------
# The pixel baseline: two independent NDPCA codecs
# ---------------------------------------------------------------------------------------------


def load_pixel_baseline(env_id: str = ENV_ID) -> tuple[LatentCodec, LatentCodec]:
    """The shipped pixel codecs of the pixel baseline: task-aware NDPCA (receiver 1), task-agnostic NDPCA (receiver 2).

    Both are the env's shipped checkpoints of the codecs named in :data:`PIXEL_BASELINE`; receiver 2's sends the
    side view alone (:data:`SIDE_ONLY`, see :func:`run_pixel_baseline`).
    """
    codecs = []
    for name in PIXEL_BASELINE:
        codec = load_codec(codec_entry(name).shipped_path_for(env_id))
        if not isinstance(codec, LatentCodec):  # pragma: no cover - the shipped files' kind
            raise TypeError(f"{name} is not a latent codec")
        codec.check_spec(env_id)
        codecs.append(codec)
    return codecs[0], codecs[1]


def side_budget(
    codec: LatentCodec,
    frames: Mapping[str, np.ndarray],
    target_psnr: float,
    budgets: Sequence[int] = tuple(range(16, 2049, 8)),
) -> tuple[int, float]:
    """The smallest frame budget at which ``codec``'s side-only frames reach ``target_psnr`` on ``frames``.

    Every frame pair is compressed side-only (:data:`SIDE_ONLY`), serialised, parsed and decoded;
    its PSNR is taken against the raw side view, as receiver 2's ``r2_psnr`` is (mean over frames
    of the per-frame PSNR, ``inf`` counted as 99 dB as in :func:`summarise`). Budgets are tried in
    increasing order (a frame's PSNR need not grow strictly with its budget).

    Args:
        codec: receiver 2's pixel codec (two views; the arm stream is switched off).
        frames: ``{"arm", "side": (N, 84, 84, 3) uint8}`` (e.g. :func:`collect_frames`).
        target_psnr: the mean side PSNR to reach, in dB.
        budgets: frame budgets to try, in bits.

    Returns:
        ``(budget, mean PSNR at that budget)``.

    Raises:
        ValueError: no budget of ``budgets`` reaches ``target_psnr``.
    """
    session = codec.session_for(SIDE_ONLY)
    best = -math.inf
    for budget in sorted(budgets):
        scores = []
        for arm, side in zip(frames["arm"], frames["side"], strict=True):
            payload = codec.compress({"arm": arm, "side": side}, int(budget), allocation=SIDE_ONLY)
            if payload.is_empty:
                break
            wire = Payload.from_bytes(payload.to_bytes(), codec=codec.name, session=session)
            scores.append(min(psnr(codec.decompress(wire)["side"], side), 99.0))
        if len(scores) == len(frames["side"]):
            mean = float(np.mean(scores))
            if mean >= target_psnr:
                return int(budget), mean
            best = max(best, mean)
    raise ValueError(f"no budget up to {max(budgets)} bits reaches {target_psnr:.2f} dB (best {best:.2f} dB)")


def run_pixel_baseline(
    codecs: tuple[LatentCodec, LatentCodec],
    agent: BCAgent,
    budget_1: int,
    budget_2: int,
    episodes: int = 5,
    seed: int = 0,
    max_steps: int | None = None,
    env_id: str = ENV_ID,
) -> Any:
    """Two independent pixel codecs, one per receiver: the per-step table of :func:`run_two_receivers`.

    Link 1 carries ``codecs[0]``'s lean frames of both views (at most ``budget_1`` bits a step,
    the codec's own split); receiver 1 decodes them to pixels, and the BC ``agent`` acts on the
    decoded views and drives the env. Link 2 carries ``codecs[1]``'s lean frames of the side view
    alone (at most ``budget_2`` bits): the shipped codecs code two views, and the explicit split
    :data:`SIDE_ONLY` selects the frame header that switches the arm stream off, so the body holds
    the side stream only (no arm latent or residual symbol); receiver 2 decodes them and is
    scored on the side view. Nothing is shared and nothing goes on the broadcast link.

    The links are unconstrained and lossless (the rate sweep's setting): each carries its codec's
    88-bit session header at the first step of every episode (its receiver parses the frames
    under the session it parsed from those bytes), then one frame a step; the bits are the real
    wire bytes. A receiver that has received nothing holds its last output (all-zero views before
    the first frame, as :class:`~bwgym.envs.bandwidth.BandwidthLimited` shows).

    Args:
        codecs: receiver 1's and receiver 2's pixel codecs (:func:`load_pixel_baseline`).
        agent: receiver 1, the BC agent (on clean views it gives the reference action).
        budget_1: frame budget of link 1 in bits per step.
        budget_2: frame budget of link 2 in bits per step (:func:`side_budget`).
        episodes: episodes, seeds ``seed .. seed + episodes - 1``.
        seed: first seed.
        max_steps: cut episodes after this many steps.
        env_id: the env.

    Returns:
        A ``pandas.DataFrame`` with the columns of :func:`run_two_receivers` (``rate_idx`` is -1,
        ``budget_<link>`` the frame budget, the broadcast link's columns 0, ``r2_psnr_ceiling``
        NaN), so :func:`summarise` reads it the same way; ``container_bits_<link>``: the same
        frame (header byte and body) in the v1 container.
    """
    import pandas as pd

    sessions = (codecs[0].session_for(None), codecs[1].session_for(SIDE_ONLY))
    allocations: tuple[Mapping[str, float] | None, ...] = (None, SIDE_ONLY)
    budgets = (int(budget_1), int(budget_2))
    transports = (SessionTransport(), SessionTransport())
    env = gym.make(env_id)
    rows: list[dict[str, Any]] = []
    try:
        for e in range(episodes):
            obs, info = env.reset(seed=seed + e)
            for transport in transports:
                transport.reset()
            zeros = {v.name: np.zeros(v.shape, np.dtype(v.dtype)) for v in codecs[0].views}
            held_action = agent.act(zeros)
            held_side = zeros["side"]
            start = len(rows)
            done, t = False, 0
            while not done and (max_steps is None or t < max_steps):
                views = {v: obs[v] for v in VIEWS}
                row: dict[str, Any] = {"episode": e, "seed": seed + e, "step": t, "rate_idx": -1}
                for col in ("budget", "bits", "session_bits", "stream_bits", "container_bits"):
                    row[f"{col}_broadcast"] = 0
                row["delivered_broadcast"] = False
                decoded: list[dict[str, np.ndarray] | None] = [None, None]
                for k, (codec, session, allocation, budget, transport) in enumerate(
                    zip(codecs, sessions, allocations, budgets, transports, strict=True)
                ):
                    link = LINKS[k + 1]
                    # an unconstrained link: the whole header, first thing in the episode
                    header, offset = transport.outgoing(session)
                    transport.acknowledged(session, header, offset, delivered=True)
                    transport.receive(header, offset)
                    payload = codec.compress(views, budget, allocation=allocation)
                    wire = payload.to_bytes()
                    if wire:
                        frame = Payload.from_bytes(wire, codec=codec.name, session=transport.rx_session)
                        decoded[k] = codec.decompress(frame)
                    body = payload.streams[0] if wire else b""
                    row[f"budget_{link}"] = budget
                    row[f"bits_{link}"] = 8 * (len(header) + len(wire))
                    row[f"session_bits_{link}"] = 8 * len(header)
                    row[f"stream_bits_{link}"] = 8 * len(body)
                    row[f"container_bits_{link}"] = (
                        Payload(codec.name, (body,), payload.meta).nbits if wire else 0
                    )
                    row[f"delivered_{link}"] = bool(wire)
                    row[f"r{k + 1}_private"] = bool(wire)
                if decoded[0] is not None:
                    held_action = agent.act(decoded[0])
                if decoded[1] is not None:
                    held_side = decoded[1]["side"]
                _record_receivers(
                    row,
                    (held_action, agent.act(views), decoded[0] is None),
                    (held_side, obs["side"], decoded[1] is None),
                    ceiling=math.nan,
                )
                obs, done = _step(env, held_action, row, rows)
                t += 1
            _mark_episode(rows[start:])
    finally:
        env.close()
    return _totals(pd.DataFrame(rows))


# ---------------------------------------------------------------------------------------------
# Regenerating the shipped pair
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m bwgym.scenarios.two_receivers --ship``: collect, train, save both checkpoints."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ship", action="store_true", help="write the two shipped checkpoints")
    parser.add_argument("--out-dir", type=Path, default=CHECKPOINT_DIR, help="where to write them")
    parser.add_argument(
        "--episodes", type=int, default=RECIPE["episodes"], help="training episodes (seeds 0..)"
    )
    parser.add_argument("--steps", type=int, default=RECIPE["steps"], help="optimiser steps per model")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    features = ViewFeatures.load_shipped()
    frames = collect_frames(args.episodes, seed=0, features=features)
    arrays = features.batch(frames["arm"], frames["side"])
    held = frames["episode"] >= int(0.9 * args.episodes)
    data, heldout = (
        FeaturePairs(arrays).subset(np.flatnonzero(~held)),
        FeaturePairs(arrays).subset(np.flatnonzero(held)),
    )
    print(f"{len(data)} training / {len(heldout)} held-out frames in {time.perf_counter() - start:.0f} s")
    gw, base = train_pair(features, data, steps=args.steps, heldout=heldout, progress=True)
    for codec in (gw, base):
        codec.metadata["train"]["episodes"] = args.episodes
        for j, m in enumerate(codec.metadata["metrics"]):
            print(codec.metadata["role"], j, {k: round(v, 4) for k, v in m.items()})
    if args.ship:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        gw.save(args.out_dir / SHIPPED_CHECKPOINT.name)
        base.save(args.out_dir / BASELINE_CHECKPOINT.name)
        print(f"wrote {args.out_dir / SHIPPED_CHECKPOINT.name} and {BASELINE_CHECKPOINT.name}")
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
