"""Episode videos: the true views, the decoded views the agent saw, and the link, step by step.

:func:`write_episode_video` replays episode ``i`` of a scenario exactly as the runner runs it (same
env, codec, link, agent, seed ``run.seed + i``) and writes one frame for the reset and one per
step::

    +--------------------------------------------------------------+
    | scenario, episode, step t / T, success                       |
    | true views      [arm] [side]                                 |
    | decoded views   [arm] [side]   (red border: frame held)      |
    | link strip: budget per step (line) and bits sent (bars) so far|
    +--------------------------------------------------------------+

Frames are drawn with numpy and Pillow (no matplotlib per frame), so a 50-step episode takes well
under a second to draw. GIF is always available (Pillow); ``.mp4`` needs the optional
``imageio-ffmpeg`` package.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from bwgym.agents.base import rollout
from bwgym.scenarios.config import ConfigError, Scenario

__all__ = ["check_video", "episode_frames", "write_episode_video"]

_BG = (255, 255, 255)
_TEXT = (20, 20, 20)
_BUDGET = (60, 60, 60)
_SENT = (31, 119, 180)
_HELD = (214, 39, 40)
_LABEL_W = 64
_PAD = 4
_STRIP_H = 64
_LINE_H = 12


def _record_true_views(env: Any) -> Any:
    """Put a pass-through recorder under ``BandwidthLimited`` so the true views can be read back."""
    import gymnasium as gym

    from bwgym.envs.bandwidth import BandwidthLimited

    class TrueViews(gym.Wrapper):
        last: dict[str, np.ndarray] = {}

        def reset(self, **kwargs: Any) -> Any:
            obs, info = self.env.reset(**kwargs)
            self.last = dict(obs)
            return obs, info

        def step(self, action: Any) -> Any:
            out = self.env.step(action)
            self.last = dict(out[0])
            return out

    if isinstance(env, BandwidthLimited):
        env.env = TrueViews(env.env)
        return env.env
    return None


def _rollout(scenario: Scenario, episode: int) -> tuple[list[dict[str, Any]], list[str], float]:
    from bwgym.scenarios.factory import make_agent, make_env

    env = make_env(scenario)
    agent = make_agent(scenario, env)
    recorder = _record_true_views(env)
    step_s = float(getattr(env, "step_seconds", 0.0) or getattr(env.unwrapped, "dt", 0.04))
    views: list[str] = []
    records: list[dict[str, Any]] = []

    def record(
        step: int, obs: dict[str, np.ndarray], _action: Any, _reward: float, info: dict[str, Any]
    ) -> None:
        if step == 0:
            views.extend(
                getattr(env, "view_names", ())
                or [k for k, v in obs.items() if np.ndim(v) == 3 and np.asarray(v).dtype == np.uint8]
            )
        true = recorder.last if recorder is not None else obs
        records.append(
            {
                "step": step,
                "true": {v: np.asarray(true[v]).copy() for v in views},
                "shown": {v: np.asarray(obs[v]).copy() for v in views},
                "budget": info.get("budget_bits"),
                "sent": info.get("bits_sent_total"),
                "dropped": dict(info.get("dropped", {})),
                "psnr": dict(info.get("distortion", {})),
                "success": bool(info.get("is_success", False)),
            }
        )

    try:
        rollout(env, agent, scenario.run.seed + episode, on_step=record)
    finally:
        env.close()
    return records, views, step_s


def check_video(scenario: Scenario) -> None:
    """Raise :class:`ConfigError` unless the scenario's env has camera views a video can show.

    Builds the bare env once (no codec, no agent) and reads its observation space, so ``bwgym run
    --video`` is refused before the run rather than failing after it.
    """
    import gymnasium as gym

    import bwgym  # noqa: F401  (registers the envs)
    from bwgym.envs.views import link_view_names

    try:
        env = gym.make(scenario.env.id, **scenario.env.kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"env.kwargs: {exc}") from None
    try:
        space = env.observation_space
        names = list(link_view_names(env)) if scenario.codec.name != "none" else list(space.spaces)
    finally:
        env.close()

    def is_image(name: str) -> bool:
        shape = space[name].shape or ()
        return space[name].dtype == np.uint8 and len(shape) == 3 and shape[2] == 3

    # Without a codec the video draws the env's camera views; with one, every view it sends.
    bad = [] if scenario.codec.name == "none" else [n for n in names if not is_image(n)]
    if bad or not any(is_image(n) for n in names):
        flat = bad or names
        raise ConfigError(
            f"--video: env {scenario.env.id} sends views that are not camera images "
            f"({', '.join(flat[:4])}{'...' if len(flat) > 4 else ''}); a video needs uint8 (H, W, 3) "
            f"views: drop --video or run a camera env such as bwgym/LocateLift-v1"
        )


def _upscale(image: np.ndarray, factor: int) -> np.ndarray:
    return image if factor == 1 else np.repeat(np.repeat(image, factor, 0), factor, 1)


def episode_frames(scenario: Scenario, episode: int = 0) -> list[np.ndarray]:
    """Roll out one episode as the runner does and draw one RGB frame per observation.

    Args:
        scenario: the scenario (its env, codec, link and agent).
        episode: which episode (seed ``run.seed + episode``).

    Returns:
        ``steps + 1`` ``uint8 (H, W, 3)`` frames: the reset, then one per step.

    """
    records, views, _ = _rollout(scenario, episode)
    return _draw(records, views, scenario.name, episode)


def _draw(records: list[dict[str, Any]], views: list[str], name: str, episode: int) -> list[np.ndarray]:
    from PIL import Image, ImageDraw

    first = records[0]["true"][views[0]]
    factor = max(1, math.ceil(120 / first.shape[0]))  # tiles of at least 120 px
    tile_h, tile_w = first.shape[0] * factor, first.shape[1] * factor
    width = _LABEL_W + len(views) * (tile_w + _PAD) + _PAD
    top = _LINE_H + _PAD
    height = top + 2 * (tile_h + _LINE_H + _PAD) + _STRIP_H + 2 * _PAD
    budgets = np.array([r["budget"] if r["budget"] is not None else np.nan for r in records], float)
    sents = np.array([r["sent"] if r["sent"] is not None else np.nan for r in records], float)
    linked = bool(np.isfinite(budgets).any())
    peak = float(np.nanmax(np.concatenate([budgets, sents]))) if linked else 1.0
    peak = peak if peak > 0 else 1.0
    total = len(records) - 1

    # The static strip: the whole episode's budget, drawn once.
    strip_x0, strip_y0 = _LABEL_W, height - _STRIP_H - _PAD
    strip_w = width - _LABEL_W - _PAD
    xs = strip_x0 + (np.arange(len(records)) + 0.5) * strip_w / max(1, len(records))
    bar_w = max(1, int(strip_w / max(1, len(records))) - 1)
    plot_top, plot_h = strip_y0 + _LINE_H, _STRIP_H - _LINE_H
    to_y = lambda bits: strip_y0 + _STRIP_H - (bits / peak) * (plot_h - 2)  # noqa: E731

    frames = []
    for t, rec in enumerate(records):
        canvas = Image.new("RGB", (width, height), _BG)
        draw = ImageDraw.Draw(canvas)
        outcome = "  success" if rec["success"] else ""
        draw.text((_PAD, 1), f"{name}  episode {episode}  step {t}/{total}{outcome}", fill=_TEXT)
        for row, (label, key) in enumerate((("true", "true"), ("decoded\n(agent)", "shown"))):
            y = top + row * (tile_h + _LINE_H + _PAD)
            draw.text((_PAD, y + tile_h // 2 - 8), label, fill=_TEXT)
            for col, view in enumerate(views):
                x = _LABEL_W + col * (tile_w + _PAD)
                canvas.paste(Image.fromarray(_upscale(rec[key][view], factor)), (x, y))
                caption = view
                if key == "shown" and linked:
                    held = rec["dropped"].get(view, False)
                    quality = rec["psnr"].get(view)
                    caption += "  held" if held else ""
                    if quality is not None:
                        caption += "  lossless" if not np.isfinite(quality) else f"  {quality:.1f} dB"
                    if held:
                        draw.rectangle([x - 2, y - 2, x + tile_w + 1, y + tile_h + 1], outline=_HELD, width=2)
                draw.text((x, y + tile_h + 1), caption, fill=_TEXT)
        draw.text((_PAD, strip_y0 + _STRIP_H // 2 - 6), "link", fill=_TEXT)
        if linked:
            draw.text(
                (strip_x0, strip_y0),
                f"budget {budgets[t] / 1e3:,.1f} kbit   sent {sents[t] / 1e3:,.1f} kbit   "
                f"(top {peak / 1e3:,.1f})",
                fill=_TEXT,
            )
            draw.rectangle(
                [strip_x0, plot_top, strip_x0 + strip_w - 1, strip_y0 + _STRIP_H], outline=(200, 200, 200)
            )
            for i in range(t + 1):
                if np.isfinite(sents[i]) and sents[i] > 0:
                    x0 = int(xs[i] - bar_w / 2)
                    draw.rectangle([x0, int(to_y(sents[i])), x0 + bar_w - 1, strip_y0 + _STRIP_H], fill=_SENT)
            points = [(float(x), float(to_y(b))) for x, b in zip(xs, budgets, strict=True) if np.isfinite(b)]
            if len(points) > 1:
                draw.line(points, fill=_BUDGET, width=1)
            draw.line([(float(xs[t]), plot_top), (float(xs[t]), strip_y0 + _STRIP_H)], fill=_HELD, width=1)
        else:
            draw.text(
                (strip_x0, strip_y0 + _STRIP_H // 2 - 6),
                "no link (codec none): the agent sees the true views",
                fill=_TEXT,
            )
        frames.append(np.asarray(canvas))
    return frames


def write_episode_video(
    scenario: Scenario, path: str | Path, episode: int = 0, fps: float | None = None
) -> Path:
    """Roll out one episode (the runner's seed for it) and write it as an animated GIF or an MP4.

    Args:
        scenario: the scenario to replay.
        path: ``.gif`` (Pillow), or ``.mp4`` when ``imageio-ffmpeg`` is installed.
        episode: which episode (seed ``run.seed + episode``), as in the run's ``episodes.parquet``.
        fps: frames per second; default real time (one frame per env step of ``step_seconds``).

    Returns:
        ``path``, holding ``steps + 1`` frames (the reset, then one per step).

    Raises:
        ValueError: an extension other than ``.gif`` or ``.mp4``.
        ModuleNotFoundError: ``.mp4`` without ``imageio-ffmpeg``.

    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"video path must end in .gif or .mp4, got {path.name!r}")
    if suffix == ".mp4":
        try:
            import imageio_ffmpeg
        except ImportError:
            raise ModuleNotFoundError(
                "MP4 videos need imageio-ffmpeg (pip install imageio-ffmpeg); write a .gif instead"
            ) from None
    records, views, step_s = _rollout(scenario, episode)
    frames = _draw(records, views, scenario.name, episode)
    fps = fps or 1.0 / step_s
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        # One palette for the whole clip: faster, and no colour flicker between frames.
        palette = images[len(images) // 2].quantize(colors=255, method=Image.Quantize.MEDIANCUT)
        images = [im.quantize(palette=palette, dither=Image.Dither.NONE) for im in images]
        images[0].save(
            path, save_all=True, append_images=images[1:], duration=max(20, round(1000 / fps)), loop=0
        )
        return path
    height, width = frames[0].shape[:2]
    pad_h, pad_w = (-height) % 16, (-width) % 16
    writer = imageio_ffmpeg.write_frames(str(path), (width + pad_w, height + pad_h), fps=fps)
    writer.send(None)
    for frame in frames:
        writer.send(
            np.ascontiguousarray(np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), constant_values=255))
        )
    writer.close()
    return path
