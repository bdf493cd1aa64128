"""Which observation keys cross the link: the one rule every consumer asks.

An env declares the keys it sends over the network with a ``link_views`` attribute (a tuple of
observation keys: camera images for LocateLift, sensor vectors for the sensor network). Keys it
does not list (e.g. the robot's own ``proprio`` state, which the controller has locally) reach
the agent unchanged and cost no bits. An env that declares nothing sends every ``uint8``
``(H, W, 1|3)`` image of its ``Dict`` observation space.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from bwgym.codecs.core.protocol import ViewSpec

__all__ = ["link_view_names", "link_views"]


def _is_image(space: spaces.Space) -> bool:
    shape = space.shape or ()
    return (
        isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(shape) == 3 and shape[2] in (1, 3)
    )


def link_views(env: Any) -> tuple[ViewSpec, ...]:
    """The :class:`~bwgym.codecs.core.protocol.ViewSpec` of every view ``env`` sends over the link, in key order.

    Args:
        env: a gymnasium env (wrapped or not) with a ``Dict`` observation space, or such a space
            (then only the image rule applies).

    Raises:
        TypeError: the observation space is not a ``Dict``.
        ValueError: a declared key is not in the space, or there is no view to send.
    """
    space = env if isinstance(env, spaces.Space) else env.observation_space
    if not isinstance(space, spaces.Dict):
        raise TypeError(f"expected a gymnasium.spaces.Dict observation space, got {type(space).__name__}")
    declared = (
        None if isinstance(env, spaces.Space) else getattr(getattr(env, "unwrapped", env), "link_views", None)
    )
    if declared is not None:
        missing = [k for k in declared if k not in space.spaces]
        if missing:
            raise ValueError(
                f"link_views {list(declared)} name keys {missing} that are not in the observation space"
            )
        keys = [k for k in space.spaces if k in declared]
    else:
        keys = [k for k, sub in space.spaces.items() if _is_image(sub)]
    if not keys:
        raise ValueError(
            f"no observation key crosses the link: declare `link_views` on the env (space: {space})"
        )
    return tuple(
        ViewSpec(k, tuple(int(d) for d in space[k].shape), np.dtype(space[k].dtype).name) for k in keys
    )


def link_view_names(env: Any) -> tuple[str, ...]:
    """The names of :func:`link_views`."""
    return tuple(v.name for v in link_views(env))
