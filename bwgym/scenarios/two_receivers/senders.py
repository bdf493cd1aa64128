"""What a multi-receiver run sends: the senders, one per way of coding for several receivers.

A sender emits named *streams*, one lean frame each per step, and decodes for each receiver from
the streams that receiver heard (:func:`~bwgym.scenarios.two_receivers.episodes.play_episode`
carries them over the links). Receiver ``k`` (its place in the list, from 1) either *acts* (an
``agent``: its output is an action) or *monitors* a view (its output is that view). Two senders:

* :class:`FeatureGrayWyner`: one Gray-Wyner codec on the view features of
  :class:`~bwgym.scenarios.two_receivers.features.ViewFeatures`; streams ``common`` (for both) and
  ``private_1``, ``private_2`` (without ``common`` for the baseline with ``common_dim = 0``).
  Receiver 1 is the BC policy (task 1, the features its head acts on), receiver 2 the side-view
  monitor (task 2, the side coefficients); receiver ``k`` decodes from ``common`` and
  ``private_k``, or from ``common`` alone.
* :class:`IndependentCodecs`: one lean-frame codec per receiver, nothing shared; receiver ``k``'s
  codec emits ``private_k``. The pixel baseline (:func:`load_pixel_baseline`): task-aware NDPCA
  sends both 84x84 views to the agent, task-agnostic NDPCA the side view alone to the monitor
  (its explicit split :data:`SIDE_ONLY` switches the arm stream off, so the frame holds side
  latents and side residual coefficients and no arm symbol; the sender, like every encoder here,
  sees both views: NDPCA's side residual is taken against its joint decoder, which reads the arm
  latents too). Task-agnostic NDPCA is the independent codec trained for what receiver 2 wants,
  pixels, and the cheapest shipped pixel codec at receiver 2's quality (BENCHMARKS.md, "Gray-Wyner
  with two receivers"). Its frame budget is the smallest that reaches a target side PSNR on calibration
  frames (:func:`side_budget`).

A monitor is scored the same way under every sender: the PSNR of the side view it shows against
the raw 84x84 side view the env rendered at that step, whether it came from Gray-Wyner's 32
decoded coefficients (4x-downsampled, upsampled by repetition) or from NDPCA's decoded pixels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from bwgym.codecs.core.latent import LatentCodec
from bwgym.codecs.core.protocol import Codec, Payload, PayloadError, Session
from bwgym.codecs.core.registry import codec_entry, load_codec
from bwgym.codecs.multiterminal.gray_wyner import GrayWynerCodec
from bwgym.envs.bandwidth import psnr
from bwgym.scenarios.two_receivers.features import ENV_ID, ViewFeatures

__all__ = [
    "PIXEL_BASELINE",
    "SIDE_ONLY",
    "FeatureGrayWyner",
    "IndependentCodecs",
    "Sender",
    "load_pixel_baseline",
    "side_budget",
]

#: The pixel baseline's registered codecs: task-aware NDPCA (receiver 1, both views) and
#: task-agnostic NDPCA (receiver 2, the side view alone), each the env's shipped checkpoint.
PIXEL_BASELINE = ("ndpca", "ndpca_agnostic")
#: Receiver 2's explicit split: the arm stream off, the side stream alone in the frame.
SIDE_ONLY: Mapping[str, float] = {"arm": 0.0, "side": 1.0}


class Sender(Protocol):
    """The sending end and every receiver's decoder, as the episode loop uses them."""

    name: str
    """What the run's tables call it (the ``codec`` column)."""
    streams: tuple[str, ...]
    """The streams it emits."""

    def session(self, stream: str) -> Session | None:
        """The session header a link carrying ``stream`` sends once per episode (None: none)."""

    def observe(self, obs: Mapping[str, np.ndarray]) -> None:
        """Take the step's observation (the views it codes)."""

    def frames(self, budgets: Mapping[str, int], step: int) -> tuple[int | None, dict[str, Payload]]:
        """The rate point sent (None: none) and one frame per stream sent, each within ``budgets[stream]``."""

    def parse(self, stream: str, data: bytes, session: Session | None) -> Payload:
        """A received frame of ``stream`` from its bytes."""

    def container_bits(self, stream: str, frame: Payload) -> int:
        """What ``frame`` would cost in the v1 container (for reference)."""

    def initial(self, k: int) -> np.ndarray:
        """Receiver ``k``'s output before anything arrived."""

    def decode(self, k: int, heard: Mapping[str, Payload]) -> np.ndarray | None:
        """Receiver ``k``'s new output from the frames it heard this step (None: it holds its last)."""

    def reference(self, k: int, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Receiver ``k``'s output on the clean observation (what its score compares against)."""

    def ceiling(self, k: int, obs: Mapping[str, np.ndarray]) -> float:
        """A monitor's PSNR without quantisation (NaN when the sender has none)."""


class FeatureGrayWyner:
    """One Gray-Wyner codec on view features: the BC policy (receiver 1) and the side monitor (2).

    Args:
        codec: a two-receiver Gray-Wyner codec trained on ``features``
            (:func:`~bwgym.scenarios.two_receivers.training.load_pair`).
        features: the feature maps.
        rate_idx: send this rate point every step whatever the budgets (the rate sweep); None:
            per step, the finest rate point whose frames each fit their link; else the finest whose
            common frame fits (the private frames that do not fit are not sent; a model without a
            common channel: the finest point, the private frames that fit); else nothing.
    """

    def __init__(self, codec: GrayWynerCodec, features: ViewFeatures, rate_idx: int | None = None) -> None:
        self.codec, self.features, self.rate_idx = codec, features, rate_idx
        self.name = codec.name
        self.streams = codec.channels
        self._f: dict[str, np.ndarray] = {}

    def session(self, stream: str) -> Session | None:  # noqa: D102
        return self.codec.channel_session if stream in self.streams else None

    def observe(self, obs: Mapping[str, np.ndarray]) -> None:  # noqa: D102
        self._f = self.features.batch(obs["arm"], obs["side"])

    def frames(self, budgets: Mapping[str, int], step: int) -> tuple[int | None, dict[str, Payload]]:  # noqa: D102
        views = {"arm": self._f["x1"][0], "side": self._f["x2"][0]}
        candidates = range(self.codec.n_rates) if self.rate_idx is None else [self.rate_idx]
        fallback: tuple[int | None, dict[str, Payload]] = (None, {})
        for j in candidates:
            frames = self.codec.compress_channels(views, j, step)
            fits = {ch: p.nbits <= budgets[ch] for ch, p in frames.items()}
            if self.rate_idx is not None or all(fits.values()):
                return j, frames
            if fallback[0] is None and fits.get("common", True):
                fallback = (j, {ch: p for ch, p in frames.items() if fits[ch]})
        return fallback

    def parse(self, stream: str, data: bytes, session: Session | None) -> Payload:  # noqa: D102
        return Payload.from_bytes(data, codec=self.codec.name, session=session)

    def container_bits(self, stream: str, frame: Payload) -> int:  # noqa: D102
        return Payload(self.codec.name, (bytes(len(frame.streams[0])),), bytes(5)).nbits

    def _output(self, k: int, z: np.ndarray) -> np.ndarray:
        return self.features.action(z) if k == 1 else self.features.side_image(z)

    def initial(self, k: int) -> np.ndarray:  # noqa: D102
        # nothing received yet: the policy acts on all-zero features, the monitor shows the mean view
        return self._output(k, np.zeros(self.features.z_dims[k - 1], np.float32))

    def decode(self, k: int, heard: Mapping[str, Payload]) -> np.ndarray | None:  # noqa: D102
        try:
            z = self.codec.decode_receiver(k, heard.get("common"), heard.get(f"private_{k}"))
        except PayloadError:
            return None  # the common stream is missing: hold the last output
        return self._output(k, z)

    def reference(self, k: int, obs: Mapping[str, np.ndarray]) -> np.ndarray:  # noqa: D102
        return self.features.action(self._f["z1"][0]) if k == 1 else obs["side"]

    def ceiling(self, k: int, obs: Mapping[str, np.ndarray]) -> float:  # noqa: D102
        return psnr(self.features.side_image(self._f["z2"][0]), obs["side"]) if k == 2 else math.nan


class IndependentCodecs:
    """One lean-frame codec per receiver, nothing shared: receiver ``k``'s codec emits ``private_k``.

    Args:
        codecs: receiver ``k``'s codec at ``codecs[k - 1]``; each codes the env's views.
        allocations: each codec's explicit split (None: its own), e.g. :data:`SIDE_ONLY`.
        agent: the agent that acts on what an acting receiver decodes.
        monitored: for each receiver, the view it shows, or None for the acting receiver.
    """

    def __init__(
        self,
        codecs: Sequence[Codec],
        allocations: Sequence[Mapping[str, float] | None],
        agent: Any,
        monitored: Sequence[str | None],
    ) -> None:
        self.codecs, self.allocations, self.agent, self.monitored = (
            tuple(codecs),
            tuple(allocations),
            agent,
            tuple(monitored),
        )
        self.name = "+".join(c.name for c in self.codecs)
        self.streams = tuple(f"private_{k}" for k in range(1, len(self.codecs) + 1))
        self._views: dict[str, np.ndarray] = {}

    def session(self, stream: str) -> Session | None:  # noqa: D102
        if stream not in self.streams:
            return None
        k = self.streams.index(stream)
        return self.codecs[k].session_for(self.allocations[k])

    def observe(self, obs: Mapping[str, np.ndarray]) -> None:  # noqa: D102
        self._views = {v.name: obs[v.name] for v in self.codecs[0].views}

    def frames(self, budgets: Mapping[str, int], step: int) -> tuple[int | None, dict[str, Payload]]:  # noqa: D102
        out = {}
        for stream, codec, allocation in zip(self.streams, self.codecs, self.allocations, strict=True):
            if budgets[stream] >= 0:
                payload = codec.compress(self._views, budgets[stream], allocation=allocation)
                if not payload.is_empty:
                    out[stream] = payload
        return None, out

    def parse(self, stream: str, data: bytes, session: Session | None) -> Payload:  # noqa: D102
        return Payload.from_bytes(data, codec=self.codecs[self.streams.index(stream)].name, session=session)

    def container_bits(self, stream: str, frame: Payload) -> int:  # noqa: D102
        return Payload(frame.codec, tuple(frame.streams), frame.meta).nbits

    def _output(self, k: int, views: Mapping[str, np.ndarray]) -> np.ndarray:
        view = self.monitored[k - 1]
        return self.agent.act(views) if view is None else views[view]

    def initial(self, k: int) -> np.ndarray:  # noqa: D102
        # nothing received yet: all-zero views, as BandwidthLimited shows
        codec = self.codecs[k - 1]
        return self._output(k, {v.name: np.zeros(v.shape, np.dtype(v.dtype)) for v in codec.views})

    def decode(self, k: int, heard: Mapping[str, Payload]) -> np.ndarray | None:  # noqa: D102
        frame = heard.get(f"private_{k}")
        return None if frame is None else self._output(k, self.codecs[k - 1].decompress(frame))

    def reference(self, k: int, obs: Mapping[str, np.ndarray]) -> np.ndarray:  # noqa: D102
        return self._output(k, self._views)

    def ceiling(self, k: int, obs: Mapping[str, np.ndarray]) -> float:  # noqa: D102
        return math.nan


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
