"""Headless multi-camera rendering for MuJoCo scenes.

MuJoCo picks its OpenGL backend from ``MUJOCO_GL`` when it is first imported; ``import bwgym``
sets it to ``egl`` when unset. EGL needs ``libEGL`` (shipped with Mesa, on most Linux images);
where it is missing, install Mesa's EGL (Debian: ``apt-get install libegl1 libgl1-mesa-dri``) or
fall back to software OSMesa with ``MUJOCO_GL=osmesa`` (Debian: ``apt-get install libosmesa6``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import mujoco
import numpy as np

__all__ = ["MultiCameraRenderer", "RenderingUnavailableError"]


class RenderingUnavailableError(RuntimeError):
    """No OpenGL context could be created for offscreen rendering."""


def _gl_fix_hint() -> str:
    import bwgym

    backend = os.environ.get("MUJOCO_GL", "<unset>")
    if bwgym.MUJOCO_IMPORTED_FIRST:
        return (
            "MuJoCo could not create an offscreen OpenGL context: `mujoco` was imported before `bwgym` "
            "with MUJOCO_GL unset, so it chose an on-screen backend. Fix: `export MUJOCO_GL=egl` before "
            "starting Python, or import bwgym before mujoco."
        )
    return (
        f"MuJoCo could not create an offscreen OpenGL context with MUJOCO_GL={backend}. "
        "Fix: install Mesa's EGL (Debian/Ubuntu: `apt-get install libegl1 libgl1-mesa-dri`) and keep "
        "MUJOCO_GL=egl, or install OSMesa (`apt-get install libosmesa6`) and set MUJOCO_GL=osmesa "
        "before importing bwgym or mujoco."
    )


class MultiCameraRenderer:
    """Render several named cameras of one model at one image size with a single reused context.

    Shadows, reflections and the skybox are switched off: on a CPU rasteriser they cost about ten
    times the rest of the frame and carry no information for the task.

    Args:
        model: the compiled MuJoCo model.
        cameras: names of cameras of ``model`` to render, in order.
        height: image height in pixels.
        width: image width in pixels.
    """

    def __init__(self, model: mujoco.MjModel, cameras: Sequence[str], height: int, width: int) -> None:
        known = [model.camera(i).name for i in range(model.ncam)]
        unknown = [c for c in cameras if c not in known]
        if unknown:
            raise ValueError(f"unknown camera(s) {unknown}; this model has cameras {known}")
        self.cameras = tuple(cameras)
        self.height, self.width = int(height), int(width)
        self._camera_ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, c) for c in self.cameras]
        try:
            self._renderer = mujoco.Renderer(model, self.height, self.width)
        except Exception as exc:  # mujoco raises several types depending on the backend
            raise RenderingUnavailableError(_gl_fix_hint() + f" (original error: {exc})") from exc
        flags = self._renderer.scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = False
        self._option = mujoco.MjvOption()

    def render(self, data: mujoco.MjData) -> dict[str, np.ndarray]:
        """Return ``{camera name: uint8 (H, W, 3)}`` for the current state of ``data``."""
        frames = {}
        for name, cam_id in zip(self.cameras, self._camera_ids, strict=False):
            self._renderer.update_scene(data, camera=cam_id, scene_option=self._option)
            frames[name] = self._renderer.render()  # a fresh array each call: safe to hand out
        return frames

    def close(self) -> None:
        """Release the OpenGL context (safe to call twice)."""
        renderer = getattr(self, "_renderer", None)
        if renderer is not None:
            renderer.close()
            self._renderer = None
