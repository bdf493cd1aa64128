"""The ``BandwidthLimited`` wrapper: every observation crosses a codec and a time-varying link.

* ``BandwidthLimited`` - allocator -> codec -> link -> decoder on every ``reset`` and ``step``.

One env step is one link step of ``step_seconds`` (the env's control period by default)::

    obs (true views) --allocator--> fractions --codec.compress--> Payload (real bytes)
        --link.transmit (budget, loss, latency)--> bytes --Payload.from_bytes--> codec.decompress
        --> the agent sees each delivered view decoded, and every other view as last shown

Codecs that send lean frames (the latent and vector codecs, ``codec.session`` is not None) first send a
session header (:class:`~bwgym.codecs.core.protocol.Session`, 88 bits), charged to the link from the first
step of every episode: with that step's frame when both fit, else alone, split over as many steps
as the budget needs (on a 75-bit link it takes two steps and the frames start on the third). A
fragment that is lost is sent again (the sender learns of losses, as a link layer's
acknowledgements would tell it); the header is sent anew when the session changes (an allocator
switching between the codec's own split and an explicit one). The receiver decodes frames only
under the session it has received whole.

The views that cross the link are exactly the codec's views (``codec.view_names``); any other key of
the observation (e.g. a ``proprio`` vector when the codec was built with
``JpegCodec.from_observation_space``) is forwarded to the agent unchanged and is not charged to the
link. Build a :class:`~bwgym.codecs.image.standard.RawCodec` that includes such a view to charge it.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding

from bwgym.codecs.core.protocol import FRAME_OVERHEAD_BITS, Codec, Payload, Session
from bwgym.envs.allocators import Allocator, make_allocator
from bwgym.envs.latent_views import LatentViews, latent_views_for
from bwgym.envs.transport import SessionTransport
from bwgym.traces.link import Link, LinkStep
from bwgym.traces.trace import BandwidthTrace

__all__ = ["BandwidthLimited", "VectorBandwidthLimited", "psnr"]

ObsDict = dict[str, np.ndarray]

#: Reset option that pins the link clock's start (seconds into the trace) instead of drawing it.
START_OPTION = "trace_start_s"


@dataclass
class _Pending:
    """One env's step between :meth:`BandwidthLimited._prepare` and :meth:`BandwidthLimited._finish`."""

    obs: Mapping[str, np.ndarray]
    env_info: dict[str, Any]
    step_index: int
    true_views: dict[str, np.ndarray]
    allocation: dict[str, float] | None
    session: Session | None
    header: bytes
    offset: int
    frame_budget: int | None  # bits left for the frame; None: only (part of) the header fits
    result: LinkStep | None = None
    components: dict[str, int] | None = None  # latent components per stream of the step's payload


def psnr(shown: np.ndarray, true: np.ndarray, peak: float | None = None) -> float:
    """Peak signal-to-noise ratio of ``shown`` against ``true`` in dB; ``inf`` when identical.

    Args:
        shown: the frame the agent sees.
        true: the frame the sensor captured.
        peak: the signal's peak; 255 for ``uint8`` arrays and 1.0 otherwise when None.

    Example:
        >>> import numpy as np
        >>> a = np.zeros((2, 2), np.uint8)
        >>> psnr(a, a)
        inf
        >>> round(psnr(a + 1, a), 2)
        48.13
    """
    if peak is None:
        peak = 255.0 if true.dtype == np.uint8 else 1.0
    if true.dtype == np.uint8 and shown.dtype == np.uint8:
        diff = shown.astype(np.float32).ravel()  # float32 is exact for 0 and fast (BLAS dot)
        diff -= true.ravel()
        mse = float(np.dot(diff, diff)) / diff.size if diff.size else 0.0
    else:
        mse = float(np.mean((np.asarray(shown, np.float64) - np.asarray(true, np.float64)) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mse)


class BandwidthLimited(
    gym.Wrapper[ObsDict, Any, ObsDict, Any],
    gym.utils.RecordConstructorArgs,
):
    """Send every observation through an allocator, a codec and a bandwidth-limited link.

    On every ``reset`` and ``step`` the wrapper asks the link for this step's budget, lets the
    allocator split it over the codec's views, compresses the true views into a
    :class:`~bwgym.codecs.core.protocol.Payload` that fits, and transmits it. Each payload the link
    delivers this step (with ``latency_steps`` it was sent that many steps ago) is serialised to its
    wire bytes, parsed and decoded; a delivered view replaces what the agent sees of that view. A
    view not refreshed this step (not sent, over budget, lost, or still in flight) holds its last
    decoded frame; before anything was delivered in the episode it is all zeros. The observation
    space is unchanged. (A ``gymnasium.Wrapper`` rather than an ``ObservationWrapper``: it also
    writes ``info`` and needs the reset seed.) With ``observation="latent"`` (latent codecs only) the
    agent gets the code the receiver holds instead, no pixels decoded: one vector per codec stream
    and the code's age (:mod:`bwgym.envs.latent_views`, :attr:`latent_views`).

    On ``reset(seed=s)`` the link clock restarts at an offset drawn uniformly in
    ``[0, trace.duration_s)`` from the wrapper's own generator :attr:`link_np_random` (seeded from
    ``s``; the env's own ``np_random`` is not touched), and the link's loss generator is reseeded
    from it, so the same seed gives the same episode. ``reset(options={"trace_start_s": t})``
    pins the offset to ``t`` instead; the option is removed before the env sees ``options``.

    Keys added to ``info`` on ``reset`` and ``step``. Per-view dicts are keyed by ``codec.view_names``;
    per-stream dicts (``bits_sent``, ``allocation``, ``components``) by the codec's streams, which
    are its views except for a joint codec's single ``"joint"`` stream:

    ==================  =============================================================================
    ``bandwidth_bps``   float, link rate at the start of this step
    ``budget_bits``     int, bits the link carries this step
    ``bits_sent``       dict stream -> int, bits of that stream in the payload the link
                        carried this step (0 for a stream not sent; all 0 when over budget)
    ``bits_sent_total`` int, bits the link carried this step: the whole payload, container headers
                        and any session header included, when transmitted (delivered, in flight or
                        lost), else 0
    ``session_bits``    int, bits of the session header sent this step (lean-frame codecs: 88 in
                        all from the first step of an episode, in fragments when the budget is
                        small, and again after a lost one; else 0)
    ``allocation``      dict stream -> float, the split actually sent: each stream's share of the
                        bits of all streams (all 0 when nothing was sent)
    ``requested_allocation``  dict view -> float, the allocator's fractions (normalised), or None
                        when the allocator left the split to the codec (``"dpca"``)
    ``components``      dict stream -> int, latent codecs only: components sent per stream
    ``dropped``         dict view -> bool, True when the view's shown frame was not refreshed
    ``distortion``      dict view -> float, PSNR (dB) of the shown frame vs the true one; inf when
                        identical (peak 255 for uint8 views, 1.0 for float views); ``{}`` with
                        ``observation="latent"`` (no frame is decoded)
    ``frame_age_steps`` dict view -> int, steps since the shown frame was captured; -1 while the
                        view shows the initial zeros
    ``lost``            bool, this step's payload was lost at random by the link
    ``over_budget``     bool, this step's payload exceeded the budget (and was not delivered)
    ==================  =============================================================================

    The allocator is called as ``allocator(views, budget_bits, context)`` with ``context`` a dict of
    ``step`` (link step index), ``time_s`` (trace time), ``budget_bits``, ``bandwidth_bps``
    (``budget_bits / step_seconds``),
    ``frame_age_steps`` (before this step) and ``env_info`` (the env's info of this step).

    Args:
        env: an env with a ``Dict`` observation space holding every view of ``codec``.
        codec: the :class:`~bwgym.codecs.core.protocol.Codec` on the link; its views must match the space.
        trace: a :class:`~bwgym.traces.BandwidthTrace`, or a path or library name for
            :func:`bwgym.traces.load_trace`.
        allocator: ``"dpca"`` (the codec's own split), ``"uniform"``, a dict of weights per view,
            or an :class:`~bwgym.envs.allocators.Allocator`.
        step_seconds: link time per env step; the env's ``unwrapped.dt`` when None.
        latency_steps: a payload sent at step ``t`` is delivered at step ``t + latency_steps``.
        loss_prob: probability in ``[0, 1)`` that a transmitted payload is lost (seeded, see above).
        observation: ``"pixels"`` (the decoded views) or ``"latent"`` (the held latent code).

    Raises:
        TypeError: ``env`` has no Dict observation space, ``codec`` is not a Codec, ``trace`` is not
            a trace or a path, ``latency_steps`` is not an int, or ``observation="latent"`` with a
            codec that is not a latent codec.
        ValueError: a codec view is missing from or disagrees with the observation space, or a
            numeric argument is out of range.

    Example:
        >>> import numpy as np
        >>> import gymnasium as gym
        >>> from gymnasium import spaces
        >>> from bwgym.codecs.image.standard import RawCodec
        >>> from bwgym.traces.generators import constant
        >>> class Cam(gym.Env):
        ...     observation_space = spaces.Dict({"cam": spaces.Box(0, 255, (2, 2, 3), np.uint8)})
        ...     action_space = spaces.Discrete(2)
        ...     dt = 0.04
        ...     def reset(self, *, seed=None, options=None):
        ...         super().reset(seed=seed)
        ...         return {"cam": np.full((2, 2, 3), 7, np.uint8)}, {}
        ...     def step(self, action):
        ...         return {"cam": np.full((2, 2, 3), 8, np.uint8)}, 0.0, False, False, {}
        >>> env = Cam()
        >>> codec = RawCodec.from_observation_space(env.observation_space)
        >>> wrapped = BandwidthLimited(env, codec, constant(25_000, duration_s=10.0), latency_steps=1)
        >>> obs, info = wrapped.reset(seed=0)
        >>> int(obs["cam"].max()), info["budget_bits"], info["bits_sent_total"], info["dropped"]
        (0, 1000, 168, {'cam': True})
        >>> obs, *_, info = wrapped.step(0)   # the reset frame arrives one step late
        >>> int(obs["cam"].max()), info["frame_age_steps"], round(info["distortion"]["cam"], 2)
        (7, {'cam': 1}, 48.13)

    Change logs:
     * v0.1.0 - Initially added.
    """

    def __init__(
        self,
        env: gym.Env[ObsDict, Any],
        codec: Codec,
        trace: BandwidthTrace | str | os.PathLike[str],
        allocator: str | Mapping[str, float] | Allocator = "dpca",
        step_seconds: float | None = None,
        latency_steps: int = 0,
        loss_prob: float = 0.0,
        observation: str = "pixels",
    ) -> None:
        """Wrap ``env``; see the class docstring for the arguments."""
        gym.utils.RecordConstructorArgs.__init__(
            self,
            codec=codec,
            trace=trace,
            allocator=allocator,
            step_seconds=step_seconds,
            latency_steps=latency_steps,
            loss_prob=loss_prob,
            observation=observation,
        )
        gym.Wrapper.__init__(self, env)
        _check_codec_views(env.observation_space, codec)
        if step_seconds is None:
            step_seconds = getattr(env.unwrapped, "dt", None)
            if step_seconds is None:
                raise ValueError(
                    f"{type(env.unwrapped).__name__} has no `dt` control period; pass step_seconds"
                )
        _check_link_arguments(step_seconds, latency_steps, loss_prob)

        self.codec: Codec = codec
        self.trace: BandwidthTrace = _resolve_trace(trace)
        self.allocator: Allocator = make_allocator(allocator, views=codec.view_names)
        self.step_seconds: float = float(step_seconds)
        self.latency_steps: int = int(latency_steps)
        self.loss_prob: float = float(loss_prob)
        self.link = Link(
            self.trace, self.step_seconds, latency_steps=self.latency_steps, loss_prob=self.loss_prob
        )
        #: The wrapper's own generator (link offset and link seed), seeded on ``reset(seed=...)``.
        self.link_np_random: np.random.Generator | None = None

        self._view_names: tuple[str, ...] = codec.view_names
        self._zeros: dict[str, np.ndarray] = {
            v.name: np.zeros(v.shape, np.dtype(v.dtype)) for v in codec.views
        }
        #: The receiver's latent end with ``observation="latent"`` (None: decoded pixels).
        self.latent_views: LatentViews | None = latent_views_for(codec, observation, env.observation_space)
        if self.latent_views is not None:
            self.observation_space = self.latent_views.observation_space
            self._zeros = self.latent_views.zeros()  # held per view: the code, not a frame
        self._shown: dict[str, np.ndarray] = dict(self._zeros)
        self._shown_step: dict[str, int] = dict.fromkeys(self._view_names, -1)
        #: The session header's transport over this env's link (both ends).
        self.transport = SessionTransport()
        #: Latent components per stream of this episode's last frame compressed (None: none yet).
        self._components_sent: dict[str, int] | None = None

    # -- gymnasium API ---------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsDict, dict[str, Any]]:
        """Reset the env and the link (clock at a seeded random offset), and send the first frame."""
        return self._send(*self._reset_state(seed, options))

    def _reset_state(
        self, seed: int | None, options: dict[str, Any] | None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Reset the env, the link and both ends' state; the env's first observation, not yet sent."""
        start_s = None
        if options and START_OPTION in options:
            options = dict(options)
            start_s = float(options.pop(START_OPTION))
            if not math.isfinite(start_s) or start_s < 0:
                raise ValueError(
                    f"options[{START_OPTION!r}] is expected to be finite and >= 0, got {start_s}"
                )
        obs, info = self.env.reset(seed=seed, options=options)

        if seed is not None or self.link_np_random is None:
            self.link_np_random, _ = seeding.np_random(seed)
        # Draw both numbers every time so the stream does not depend on the option.
        offset = float(self.link_np_random.uniform(0.0, self.trace.duration_s))
        link_seed = int(self.link_np_random.integers(2**31 - 1))
        self.link.reset(start_s=offset if start_s is None else start_s, seed=link_seed)
        self.allocator.reset()
        self._shown = dict(self._zeros)
        self._shown_step = dict.fromkeys(self._view_names, -1)
        self.transport.reset()
        self._components_sent = None
        return obs, info

    def step(self, action: Any) -> tuple[ObsDict, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env and send its observation over the link."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        obs, info = self._send(obs, info)
        return obs, reward, terminated, truncated, info

    # -- the link ------------------------------------------------------------------------------------
    # One step of the link in three phases, so that :class:`VectorBandwidthLimited` can run the
    # codec on every env's views in one batched call between them: ``_prepare`` (allocator, session
    # header, the budget left for the frame), the codec's compress, ``_transmit`` (the link, the
    # acknowledgements, the payloads received), the codec's decompress, ``_finish`` (held frames,
    # the info dict).
    def _send(
        self, obs: Mapping[str, np.ndarray], env_info: dict[str, Any]
    ) -> tuple[ObsDict, dict[str, Any]]:
        pending = self._prepare(obs, env_info)
        payload = (
            Payload.empty(self.codec.name, pending.session)
            if pending.frame_budget is None
            else self.codec.compress(pending.true_views, pending.frame_budget, pending.allocation)
        )
        received = self._transmit(pending, payload)
        decoded = [self._decode(p) for _, p in received]
        return self._finish(pending, payload, received, decoded)

    def _decode(self, payload: Payload) -> Mapping[str, np.ndarray]:
        """What a received frame refreshes: decoded views, or with latent observations their code."""
        if self.latent_views is None:
            return self.codec.decompress(payload)
        return self.latent_views.decode(payload)

    def _prepare(self, obs: Mapping[str, np.ndarray], env_info: dict[str, Any]) -> _Pending:
        """Budget, allocation and session header of this step; ``frame_budget`` None: no frame fits."""
        codec, link, names = self.codec, self.link, self._view_names
        step_index = link.step_index
        true_views = {name: obs[name] for name in names}
        budget = int(link.peek_budget_bits())
        context = {
            "step": step_index,
            "time_s": link.time_s,
            "bandwidth_bps": budget / self.step_seconds,
            "budget_bits": budget,
            "frame_age_steps": self._ages(step_index),
            "components_sent": self._components_sent,
            "env_info": env_info,
        }
        requested = self.allocator(true_views, budget, context)
        allocation = None if requested is None else self._normalise(requested)
        session = codec.session_for(allocation)
        header, offset = self.transport.outgoing(session)
        frame_budget: int | None = budget - 8 * len(header)
        if 8 * len(header) > budget - FRAME_OVERHEAD_BITS:
            # No room for a frame beside the rest of the header: send as much header as fits.
            header, frame_budget = header[: budget // 8], None
        return _Pending(
            obs, env_info, step_index, true_views, allocation, session, header, offset, frame_budget
        )

    def _transmit(self, pending: _Pending, payload: Payload) -> list[tuple[int, Payload]]:
        """Put the step's header fragment and frame on the link; the frames received, with their send step."""
        codec, header, offset, session = self.codec, pending.header, pending.offset, pending.session
        if hasattr(codec, "allocation_of"):
            pending.components = dict(codec.allocation_of(payload))
            if pending.frame_budget is not None:
                self._components_sent = pending.components
        nbits = 8 * len(header) + payload.nbits
        result: LinkStep = self.link.transmit((header, offset, payload.to_bytes()), nbits)
        pending.result = result
        self.transport.acknowledged(session, header, offset, bool(result.bits_sent) and not result.lost)

        if not payload.is_empty:
            # The same link-layer acknowledgement that tells the sender a session header was lost.
            codec.acknowledge(bool(result.bits_sent) and not result.lost)

        received = []
        for delivery in result.delivered:
            # Through the wire format on purpose: what the agent sees is what the bytes decode to.
            fragment, offset, wire = delivery.item
            self.transport.receive(fragment, offset)
            if wire:
                received.append(
                    (
                        delivery.step,
                        Payload.from_bytes(wire, codec=codec.name, session=self.transport.rx_session),
                    )
                )
        return received

    def _finish(
        self,
        pending: _Pending,
        payload: Payload,
        received: list[tuple[int, Payload]],
        decoded: list[Mapping[str, np.ndarray]],
    ) -> tuple[ObsDict, dict[str, Any]]:
        """Hold or refresh each view from the decoded frames; the observation and info of the step."""
        codec, names, result, obs = self.codec, self._view_names, pending.result, pending.obs
        refreshed: set[str] = set()
        for (sent_step, _), views in zip(received, decoded, strict=True):
            for name, frame in views.items():
                if sent_step >= self._shown_step[name]:
                    self._shown[name] = frame
                    self._shown_step[name] = sent_step
                    refreshed.add(name)

        ages = self._ages(pending.step_index)
        if self.latent_views is None:
            shown_obs = {
                key: (self._shown[key].copy() if key in self._shown else value) for key, value in obs.items()
            }
        else:
            shown_obs = self.latent_views.observation(obs, self._shown, ages)
        streams = tuple(getattr(codec, "stream_names", names))
        stream_bits = dict.fromkeys(streams, 0)
        if result.bits_sent:  # transmitted (delivered, in flight or lost), not over budget
            stream_bits.update(zip(streams, payload.stream_bits, strict=False))
        body_bits = sum(stream_bits.values())
        session_bits = 8 * len(pending.header)
        info = dict(pending.env_info)
        info.update(
            bandwidth_bps=float(result.bandwidth_bps),
            budget_bits=int(result.budget_bits),
            bits_sent=stream_bits,
            bits_sent_total=int(result.bits_sent),
            session_bits=session_bits if result.bits_sent else 0,
            allocation={k: (b / body_bits if body_bits else 0.0) for k, b in stream_bits.items()},
            requested_allocation=pending.allocation,
            dropped={name: name not in refreshed for name in names},
            distortion={name: psnr(self._shown[name], np.asarray(pending.true_views[name])) for name in names}
            if self.latent_views is None
            else {},
            frame_age_steps=ages,
            lost=bool(result.lost),
            over_budget=bool(result.over_budget),
        )
        if pending.components is not None:
            info["components"] = dict(pending.components) if result.bits_sent else dict.fromkeys(streams, 0)
        return shown_obs, info

    def _ages(self, step_index: int) -> dict[str, int]:
        return {n: (step_index - s if s >= 0 else -1) for n, s in self._shown_step.items()}

    def _normalise(self, allocation: Mapping[str, float]) -> dict[str, float]:
        if not isinstance(allocation, Mapping) or set(allocation) != set(self._view_names):
            got = sorted(allocation) if isinstance(allocation, Mapping) else type(allocation).__name__
            raise ValueError(
                f"allocator must return one fraction per view {list(self._view_names)}, got {got}"
            )
        values = [float(allocation[n]) for n in self._view_names]
        total = sum(values)
        if not all(math.isfinite(v) and v >= 0 for v in values) or total <= 0:
            raise ValueError(
                f"allocator fractions must be finite, >= 0 and not all 0, got {dict(allocation)}"
            )
        return {n: v / total for n, v in zip(self._view_names, values, strict=False)}

    @property
    def view_names(self) -> tuple[str, ...]:
        """The views that cross the link (the codec's views)."""
        return self._view_names


def _check_codec_views(space: spaces.Space, codec: Any) -> None:
    """Refuse an env without Dict observations, or a codec whose views it does not have (name, shape, dtype)."""
    if not isinstance(space, spaces.Dict):
        raise TypeError(
            f"BandwidthLimited expects an env with a gymnasium.spaces.Dict observation space, "
            f"got {type(space).__name__}"
        )
    if not isinstance(codec, Codec):
        raise TypeError(f"codec is expected to be a bwgym.codecs.Codec, got {type(codec).__name__}")
    for view in codec.views:
        if view.name not in space.spaces:
            raise ValueError(
                f"codec view {view.name!r} is not in the observation space; expected one of {list(space.spaces)}"
            )
        sub = space[view.name]
        if tuple(sub.shape or ()) != tuple(view.shape) or np.dtype(sub.dtype) != np.dtype(view.dtype):
            raise ValueError(
                f"codec view {view.name!r} expects {view.dtype}{tuple(view.shape)}, "
                f"the observation space has {sub.dtype}{tuple(sub.shape or ())}"
            )


def _check_link_arguments(step_seconds: Any, latency_steps: Any, loss_prob: Any) -> None:
    """Refuse a control period that is not a finite positive number, a negative latency, a loss >= 1."""
    if isinstance(step_seconds, bool) or not isinstance(step_seconds, (int, float, np.number)):
        raise TypeError(f"step_seconds is expected to be a number, got {type(step_seconds).__name__}")
    if not (math.isfinite(float(step_seconds)) and float(step_seconds) > 0):
        raise ValueError(f"step_seconds is expected to be finite and > 0, got {step_seconds}")
    if isinstance(latency_steps, bool) or not isinstance(latency_steps, (int, np.integer)):
        raise TypeError(f"latency_steps is expected to be an int, got {type(latency_steps).__name__}")
    if latency_steps < 0:
        raise ValueError(f"latency_steps is expected to be >= 0, got {latency_steps}")
    if isinstance(loss_prob, bool) or not isinstance(loss_prob, (int, float, np.number)):
        raise TypeError(f"loss_prob is expected to be a number, got {type(loss_prob).__name__}")
    if not 0.0 <= float(loss_prob) < 1.0:
        raise ValueError(f"loss_prob is expected to be in [0, 1), got {loss_prob}")


def _resolve_trace(trace: BandwidthTrace | str | os.PathLike[str]) -> BandwidthTrace:
    if isinstance(trace, BandwidthTrace):
        return trace
    if isinstance(trace, (str, os.PathLike)):
        from bwgym.traces import load_trace

        return load_trace(trace)
    raise TypeError(
        f"trace is expected to be a BandwidthTrace, a path or a library name, got {type(trace).__name__}"
    )


class VectorBandwidthLimited(gym.vector.VectorEnv):
    """N :class:`BandwidthLimited` envs stepped together, their codec work done in batched calls.

    Every env keeps all that is its own: the env, the trace phase and link (budget, losses,
    latency), the session header, the held frames and the allocator. Each step the N envs step in
    turn; then one :meth:`~bwgym.codecs.core.protocol.Codec.compress_batch` call codes every env's views
    under its own budget and split, the N links carry the frames, and one
    :meth:`~bwgym.codecs.core.protocol.Codec.decompress_batch` call decodes every frame received. That
    needs one codec instance for all N envs, which a :attr:`~bwgym.codecs.core.protocol.Codec.stateless`
    codec can be (:func:`bwgym.scenarios.factory.make_vector_env` builds the envs so); otherwise
    each env compresses with its own codec in turn, and the constructor warns once. The bytes, and
    hence each env's episode, are those of the env stepped alone with the same seed.

    Gymnasium's vector API (``gymnasium.make_vec`` conventions): observations are the views
    stacked on a first axis of N; autoreset is ``NEXT_STEP`` (the step after an env's episode
    ends resets it, that env's action is ignored, its reward is 0); ``reset(seed=s)`` seeds env
    ``i`` with ``s + i`` (or ``seed=[s_0, ..., s_N-1]``), and ``options={"reset_mask": mask}``
    resets only the envs where ``mask`` is True. Infos follow gymnasium's ``key`` / ``_key``
    convention; :attr:`env_infos` keeps the last info dict of each env as the env gave it.

    Args:
        envs: the envs, all with the same observation and action spaces.

    Example::

        venv = make_vector_env(load_scenario("lora_ndpca"), num_envs=8)
        obs, infos = venv.reset(seed=0)
        obs, rewards, terminations, truncations, infos = venv.step(venv.action_space.sample())
    """

    metadata: dict[str, Any] = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, envs: Sequence[BandwidthLimited]) -> None:
        envs = list(envs)
        if not envs:
            raise ValueError("VectorBandwidthLimited needs at least one env")
        first = envs[0]
        for i, env in enumerate(envs):
            if not isinstance(env, BandwidthLimited):
                raise TypeError(f"env {i} is a {type(env).__name__}, not a BandwidthLimited")
            if env.observation_space != first.observation_space or env.action_space != first.action_space:
                raise ValueError(f"env {i} has other observation or action spaces than env 0")
        self.envs = envs
        self.num_envs = len(envs)
        # copies: sampling the vector's spaces must not draw from env 0's own generators
        self.single_observation_space = copy.deepcopy(first.observation_space)
        self.single_action_space = copy.deepcopy(first.action_space)
        self.observation_space = gym.vector.utils.batch_space(first.observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(first.action_space, self.num_envs)
        self.shared_codec: Codec | None = first.codec if all(e.codec is first.codec for e in envs) else None
        if self.shared_codec is None and self.num_envs > 1:
            warnings.warn(
                f"codec {first.codec.name!r}: the {self.num_envs} envs have their own codec instances "
                "(it keeps state between calls, or the envs were built apart), so they compress one "
                "after another instead of in one batched call",
                stacklevel=2,
            )
        #: The last info dict of each env, as :class:`BandwidthLimited` gives it.
        self.env_infos: list[dict[str, Any]] = [{} for _ in envs]
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._obs: list[ObsDict] = [{} for _ in envs]

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsDict, dict[str, Any]]:
        """Reset every env (or those of ``options["reset_mask"]``) and send their first frames."""
        options = dict(options or {})
        mask = np.asarray(options.pop("reset_mask", np.ones(self.num_envs, dtype=bool)), dtype=bool)
        if mask.shape != (self.num_envs,):
            raise ValueError(f"reset_mask must be {self.num_envs} booleans, got shape {mask.shape}")
        if seed is None or isinstance(seed, (int, np.integer)):
            seeds = [None if seed is None else int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"reset needs {self.num_envs} seeds (one per env), got {len(seeds)}")
        indices = np.flatnonzero(mask).tolist()
        raw = [self.envs[i]._reset_state(seeds[i], options or None) for i in indices]
        for i, (obs, info) in zip(indices, self._send(indices, raw), strict=True):
            self._obs[i], self.env_infos[i] = obs, info
            self._autoreset[i] = False
        infos: dict[str, Any] = {}
        for i in indices:
            infos = self._add_info(infos, self.env_infos[i], i)
        return self._stacked(), infos

    def step(
        self, actions: Any, active: np.ndarray | None = None
    ) -> tuple[ObsDict, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every env with its action (autoresetting those whose episode ended last step).

        Args:
            actions: one action per env (batched action space).
            active: optional mask of the envs to step; the others keep their observation and
                pending autoreset, with reward 0 and no info (a runner whose episodes ran out).
        """
        active = np.ones(self.num_envs, dtype=bool) if active is None else np.asarray(active, dtype=bool)
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminations = np.zeros(self.num_envs, dtype=bool)
        truncations = np.zeros(self.num_envs, dtype=bool)
        indices = np.flatnonzero(active).tolist()
        raw = []
        for i in indices:
            env = self.envs[i]
            if self._autoreset[i]:
                raw.append(env._reset_state(None, None))
                continue
            obs, reward, terminated, truncated, info = env.env.step(actions[i])
            rewards[i], terminations[i], truncations[i] = float(reward), bool(terminated), bool(truncated)
            raw.append((obs, info))
        infos: dict[str, Any] = {}
        for i, (obs, info) in zip(indices, self._send(indices, raw), strict=True):
            self._obs[i], self.env_infos[i] = obs, info
            infos = self._add_info(infos, info, i)
        self._autoreset[active] = (terminations | truncations)[active]
        return self._stacked(), rewards, terminations, truncations, infos

    def close_extras(self, **kwargs: Any) -> None:
        """Close every env."""
        for env in self.envs:
            env.close()

    def _stacked(self) -> ObsDict:
        """Every env's current observation stacked per key (zeros for an env not reset yet)."""
        spaces_ = self.single_observation_space.spaces
        return {
            k: np.stack([o[k] if o else np.zeros(space.shape, space.dtype) for o in self._obs])
            for k, space in spaces_.items()
        }

    def _send(
        self, indices: list[int], raw: list[tuple[Mapping[str, np.ndarray], dict[str, Any]]]
    ) -> list[tuple[ObsDict, dict[str, Any]]]:
        """:meth:`BandwidthLimited._send` for the envs ``indices``, with batched codec calls."""
        envs = [self.envs[i] for i in indices]
        pending = [env._prepare(obs, info) for env, (obs, info) in zip(envs, raw, strict=True)]
        payloads = [Payload.empty(env.codec.name, p.session) for env, p in zip(envs, pending, strict=True)]
        coded = [j for j, p in enumerate(pending) if p.frame_budget is not None]
        if self.shared_codec is not None:
            batch = self.shared_codec.compress_batch(
                [pending[j].true_views for j in coded],
                [pending[j].frame_budget for j in coded],
                [pending[j].allocation for j in coded],
            )
            for j, payload in zip(coded, batch, strict=True):
                payloads[j] = payload
        else:
            for j in coded:
                p = pending[j]
                payloads[j] = envs[j].codec.compress(p.true_views, p.frame_budget, p.allocation)
        received = [
            env._transmit(p, payload) for env, p, payload in zip(envs, pending, payloads, strict=True)
        ]
        if self.shared_codec is not None and self.envs[0].latent_views is None:
            flat = iter(self.shared_codec.decompress_batch([payload for r in received for _, payload in r]))
            decoded = [[next(flat) for _ in r] for r in received]
        else:
            decoded = [
                [env._decode(payload) for _, payload in r] for env, r in zip(envs, received, strict=True)
            ]
        return [
            env._finish(p, payload, r, d)
            for env, p, payload, r, d in zip(envs, pending, payloads, received, decoded, strict=True)
        ]
