"""Headless multi-camera rendering for MuJoCo scenes.

MuJoCo picks its OpenGL backend from ``MUJOCO_GL`` when it is first imported; ``import bwgym``
sets it to ``egl`` when unset. EGL needs ``libEGL`` (shipped with Mesa, on most Linux images);
where it is missing, install Mesa's EGL (Debian: ``apt-get install libegl1 libgl1-mesa-dri``) or
fall back to software OSMesa with ``MUJOCO_GL=osmesa`` (Debian: ``apt-get install libosmesa6``).

Fork safety: an OpenGL context is created lazily, in the process that renders, and a renderer that
finds itself in a forked child (another pid than the one that created its context) leaves the
inherited context alone and creates its own. Mesa's software rasteriser (llvmpipe, what EGL and
OSMesa use without a GPU) starts rasteriser threads with its first context; a forked child inherits
the screen but not the threads and waits for them forever. So before the first context the package
sets ``LP_NUM_THREADS=0`` when it is unset (no rasteriser threads; on 84x84 frames that is ~10 %
faster, not slower), and a child forked after a context was created with such threads refuses with
:class:`RenderingUnavailableError` instead of hanging.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import mujoco
import numpy as np

__all__ = ["MultiCameraRenderer", "RenderingUnavailableError"]

#: The first OpenGL context this process (or the parent it was forked from) created:
#: ``(pid, renderer string, LP_NUM_THREADS at that time)``; None before any.
_FIRST_CONTEXT: tuple[int, str, str | None] | None = None
#: Renderers inherited across a fork: kept referenced so that their destructors never run in the
#: child (freeing the parent's context from a child is exactly the call that may wait forever).
_INHERITED: list[object] = []


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


def _gl_renderer_name() -> str:
    """``GL_RENDERER`` of the current context ("" where PyOpenGL cannot tell)."""
    try:
        from OpenGL import GL

        name = GL.glGetString(GL.GL_RENDERER)
    except Exception:  # PyOpenGL missing or no current context: the guard below just stays off
        return ""
    return name.decode(errors="replace") if isinstance(name, bytes) else str(name or "")


def _check_fork_safe() -> None:
    """Refuse to create a context in a child forked after a threaded llvmpipe context existed."""
    if _FIRST_CONTEXT is None or _FIRST_CONTEXT[0] == os.getpid():
        return
    _, name, threads = _FIRST_CONTEXT
    if "llvmpipe" in name and threads != "0":
        raise RenderingUnavailableError(
            f"this process was forked after its parent created an OpenGL context ({name}) with "
            f"rasteriser threads (LP_NUM_THREADS={threads or '<unset>'}); the child would wait for them "
            "forever. Fix: leave LP_NUM_THREADS unset (or 0) in the parent, or start workers with "
            "spawn, e.g. gymnasium.make_vec(..., vector_kwargs={'context': 'spawn'})"
        )


def _new_renderer(model: mujoco.MjModel, height: int, width: int) -> mujoco.Renderer:
    """A ``mujoco.Renderer`` made in this process, with the fork-safe defaults above."""
    global _FIRST_CONTEXT
    _check_fork_safe()
    if os.environ.get("MUJOCO_GL") in ("egl", "osmesa"):
        # Read by Mesa when it creates its screen, i.e. with the first context of the process.
        os.environ.setdefault("LP_NUM_THREADS", "0")
    try:
        renderer = mujoco.Renderer(model, height, width)
    except Exception as exc:  # mujoco raises several types depending on the backend
        raise RenderingUnavailableError(_gl_fix_hint() + f" (original error: {exc})") from exc
    if _FIRST_CONTEXT is None or _FIRST_CONTEXT[0] != os.getpid():
        # mujoco.Renderer leaves its context current: ask it what it is, once per process.
        _FIRST_CONTEXT = (os.getpid(), _gl_renderer_name(), os.environ.get("LP_NUM_THREADS"))
    return renderer


class MultiCameraRenderer:
    """Render several named cameras of one model at one image size with a single reused context.

    Shadows, reflections and the skybox are switched off: on a CPU rasteriser they cost about ten
    times the rest of the frame and carry no information for the task. The OpenGL context is made
    on the first :meth:`render` in the process that renders (again in a forked child), so an
    object made before a fork is safe to use after it.

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
        self._model = model
        self._renderer: mujoco.Renderer | None = None
        self._pid = os.getpid()  # the process that owns self._renderer
        self._option = mujoco.MjvOption()

    def _context(self) -> mujoco.Renderer:
        if self._renderer is not None and self._pid != os.getpid():
            _INHERITED.append(self._renderer)  # the parent's: never touch it here, not even to free it
            self._renderer = None
        if self._renderer is None:
            renderer = _new_renderer(self._model, self.height, self.width)
            flags = renderer.scene.flags
            flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
            flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
            flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = False
            self._renderer, self._pid = renderer, os.getpid()
        return self._renderer

    def render(self, data: mujoco.MjData) -> dict[str, np.ndarray]:
        """Return ``{camera name: uint8 (H, W, 3)}`` for the current state of ``data``.

        Raises:
            RenderingUnavailableError: no OpenGL context can be made in this process.
        """
        renderer = self._context()
        frames = {}
        for name, cam_id in zip(self.cameras, self._camera_ids, strict=False):
            renderer.update_scene(data, camera=cam_id, scene_option=self._option)
            frames[name] = renderer.render()  # a fresh array each call: safe to hand out
        return frames

    def close(self) -> None:
        """Release the OpenGL context (safe to call twice; in a forked child, only forget it)."""
        renderer = getattr(self, "_renderer", None)
        if renderer is not None:
            if self._pid == os.getpid():
                renderer.close()
            else:
                _INHERITED.append(renderer)
            self._renderer = None
