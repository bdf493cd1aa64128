"""bwgym: how well does an agent do its job when its sensors share a time-varying network?

Importing the package registers its Gymnasium environments under the ``bwgym/`` namespace::

    import gymnasium as gym
    import bwgym  # noqa: F401

    env = gym.make("bwgym/LocateLift-v0")

MuJoCo renders headless: the package sets ``MUJOCO_GL=egl`` when the variable is unset (set it to
``osmesa`` yourself where EGL is missing, see :mod:`bwgym.envs.rendering`).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")
# PyOpenGL reads this one; keep it consistent with MuJoCo's choice.
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"] if os.environ["MUJOCO_GL"] != "glfw" else "")

from bwgym.envs import register_envs  # noqa: E402

__version__ = "0.1.0"
__all__ = ["__version__"]

register_envs()
