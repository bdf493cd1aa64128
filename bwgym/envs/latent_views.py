"""Latent observations: the code the receiver holds, instead of the pixels it would decode from it.

``BandwidthLimited(env, codec, trace, observation="latent")`` hands the agent what the receiver of
a :class:`~bwgym.codecs.core.latent.LatentCodec` (NDPCA, DAE, JAE, the linear codecs) already holds
after parsing a frame: the dequantised latent components of each stream, with no decoder run::

    wire bytes --Payload.from_bytes--> codec.decoded_coefficients --> held code per stream
                                                      (no codec.decompress: no pixels)

The observation is a ``Dict``: one ``float32 (rank,)`` vector per stream of the codec (its views for
the distributed codecs, ``"joint"`` for the joint ones) in the latent model's component order, with
zeros for the components a frame did not send (zero is the component's training mean), bounded by
the codec's :attr:`~bwgym.codecs.core.latent.LatentCodec.max_abs_coefficient`; the :data:`AGE_KEY`
vector, steps since each stream's code was refreshed (``-1`` while nothing has arrived in the
episode and the code is all zeros; at most :data:`MAX_AGE_STEPS`); and every observation key that does not cross
the link, unchanged. A frame that is lost, over budget or still in flight leaves the held code as
it was, as the pixel receiver holds its last frame. The residual layer's coefficients are not part
of it (they refine pixels, and at the budgets where latents matter no frame carries them).

:class:`LatentViews` is that receiver end; :meth:`LatentViews.code_spec` names the code (codec,
checkpoint fingerprint, streams, views), which an agent trained on it checks before it acts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces

from bwgym.codecs.core.latent import LatentCodec
from bwgym.codecs.core.protocol import Codec, Payload

__all__ = ["AGE_KEY", "MAX_AGE_STEPS", "OBSERVATIONS", "LatentViews", "find_latent_views", "latent_views_for"]

#: What ``BandwidthLimited(observation=...)`` hands the agent: decoded views or the held latent code.
OBSERVATIONS = ("pixels", "latent")
#: Observation key of the held code's age per stream (steps since refreshed; -1: nothing yet).
AGE_KEY = "code_age_steps"
#: Ages read at most this (float32 holds every integer up to it exactly).
MAX_AGE_STEPS = 2**24


class LatentViews:
    """The receiver's end of a latent codec's link: the code it holds per stream, as an observation.

    Args:
        codec: the link's codec; a :class:`~bwgym.codecs.core.latent.LatentCodec`.
        space: the wrapped env's ``Dict`` observation space (its keys that do not cross the link
            are forwarded).

    Raises:
        TypeError: ``codec`` is not a latent codec.
        ValueError: a stream name or :data:`AGE_KEY` is also a key the env forwards.
    """

    def __init__(self, codec: Codec, space: spaces.Dict) -> None:
        if not isinstance(codec, LatentCodec):
            raise TypeError(
                f'observation="latent" needs a latent codec (ndpca, dae, jae, pca, linear_dpca...), got '
                f'{codec.name!r} ({type(codec).__name__}); use observation="pixels" with it'
            )
        self.codec = codec
        self.stream_names: tuple[str, ...] = tuple(codec.stream_names)
        self.ranks: tuple[int, ...] = tuple(int(r) for r in codec.latent_model.ranks)
        views = codec.view_names
        # A joint stream is refreshed with every view at once: its code is held under the first view.
        self._holder = {s: (s if s in views else views[0]) for s in self.stream_names}
        self._stream_of = {v: (v if v in self.stream_names else self.stream_names[0]) for v in views}
        forwarded = {k: sub for k, sub in space.spaces.items() if k not in views}
        clash = sorted(set(forwarded) & {*self.stream_names, AGE_KEY})
        if clash:
            raise ValueError(
                f"observation keys {clash} are both forwarded by the env and latent keys; rename them in the env"
            )
        bound = codec.max_abs_coefficient
        code = {
            s: spaces.Box(-bound, bound, (r,), np.float32)
            for s, r in zip(self.stream_names, self.ranks, strict=True)
        }
        ages = spaces.Box(-1.0, float(MAX_AGE_STEPS), (len(self.stream_names),), np.float32)
        self.observation_space = spaces.Dict({**code, AGE_KEY: ages, **forwarded})

    def zeros(self) -> dict[str, np.ndarray]:
        """What the receiver holds before any frame: a zero code, keyed by view (the wrapper's held frames)."""
        ranks = dict(zip(self.stream_names, self.ranks, strict=True))
        return {v: np.zeros(ranks[s], np.float32) for v, s in self._stream_of.items()}

    def decode(self, payload: Payload) -> dict[str, np.ndarray]:
        """The code a received frame carries, keyed by the views it refreshes (``{}`` for an empty payload).

        Raises:
            PayloadError: as :meth:`~bwgym.codecs.core.latent.LatentCodec.decompress`.
        """
        coeffs = self.codec.decoded_coefficients(payload)
        if payload.is_empty:
            return {}
        return {v: coeffs[s].astype(np.float32) for v, s in self._stream_of.items()}

    def observation(
        self, obs: Mapping[str, Any], held: Mapping[str, np.ndarray], ages: Mapping[str, int]
    ) -> dict[str, np.ndarray]:
        """The agent's observation: the held code per stream, its ages, and the forwarded keys of ``obs``."""
        out: dict[str, Any] = {s: held[self._holder[s]].copy() for s in self.stream_names}
        age = [min(ages[self._holder[s]], MAX_AGE_STEPS) for s in self.stream_names]
        out[AGE_KEY] = np.array(age, np.float32)
        out.update((k, v) for k, v in obs.items() if k not in self._stream_of)
        return out

    def code_spec(self) -> dict[str, Any]:
        """What the code means: codec, checkpoint fingerprint, streams with their ranks, views."""
        return {
            "codec": self.codec.variant,
            "fingerprint": self.codec.fingerprint.hex(),
            "streams": {s: r for s, r in zip(self.stream_names, self.ranks, strict=True)},
            "views": list(self.codec.view_names),
        }


def latent_views_for(codec: Codec, observation: str, space: spaces.Dict) -> LatentViews | None:
    """The latent receiver end for ``observation="latent"``, None for ``"pixels"``.

    Raises:
        ValueError: ``observation`` is neither (or as :class:`LatentViews`).
        TypeError: as :class:`LatentViews`.
    """
    if observation not in OBSERVATIONS:
        raise ValueError(f"observation is expected to be one of {list(OBSERVATIONS)}, got {observation!r}")
    return LatentViews(codec, space) if observation == "latent" else None


def find_latent_views(env: Any) -> LatentViews | None:
    """The :class:`LatentViews` of the ``BandwidthLimited`` wrapper in ``env``'s stack (None: pixels or none)."""
    while env is not None:
        found = getattr(env, "__dict__", {}).get("latent_views")
        if found is not None:
            return found
        env = getattr(env, "env", None)
    return None
