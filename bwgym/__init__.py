"""bwgym: how well does an agent do its job when its sensors share a time-varying network.

Importing the package registers its Gymnasium environments under the ``bwgym/`` namespace::

    import gymnasium as gym
    import bwgym  # noqa: F401

    env = gym.make("bwgym/LocateLift-v0")

MuJoCo renders headless: the package sets ``MUJOCO_GL=egl`` when the variable is unset (set it to
``osmesa`` yourself where EGL is missing, see :mod:`bwgym.envs.rendering`).
"""

from __future__ import annotations

import os
import sys

# MuJoCo reads MUJOCO_GL once, on its own import: a mujoco imported before bwgym keeps its choice.
MUJOCO_IMPORTED_FIRST = "mujoco" in sys.modules and "MUJOCO_GL" not in os.environ
os.environ.setdefault("MUJOCO_GL", "egl")
if os.environ["MUJOCO_GL"] in ("egl", "osmesa"):
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

from bwgym.envs import register_envs  # noqa: E402

__version__ = "0.1.0"
__all__ = ["__version__"]

register_envs()
