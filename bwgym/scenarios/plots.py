"""Plots of a run folder, drawn from its files only (``episodes.parquet``, ``steps.parquet``).

* ``success.png``: success rate with its 95 % Wilson interval, and each episode's outcome against
  the mean bandwidth it saw;
* ``allocation.png``: the link budget per step (the trace) against the bits each view sent, and the
  allocation (or a latent codec's components per view), over the episode that sent the most;
* ``psnr.png``: PSNR of each view as the agent saw it, over the same episode;
* ``frames.png``: one observation, original and decoded at several budgets;
* ``receivers.png`` (scenarios with ``receivers:``): per receiver, the bits it received and its
  score (action error or PSNR) per step, over the episode that sent the most.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["plot_receivers", "plot_run", "plot_success_vs_bandwidth"]


def _figure(*args, **kwargs):
    # The Agg canvas directly: never touch pyplot's global backend or state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(*args, **kwargs)
    FigureCanvasAgg(fig)
    return fig


def _views(frame: pd.DataFrame, prefix: str) -> list[str]:
    return [c.split(".", 1)[1] for c in frame.columns if c.startswith(prefix + ".")]


def plot_run(out_dir: str | Path, scenario=None) -> list[Path]:
    """Draw every plot of a run folder into ``out_dir/plots``; returns the files written."""
    from bwgym.common.stats import wilson_interval

    out_dir = Path(out_dir)
    plots = out_dir / "plots"
    plots.mkdir(exist_ok=True)
    written = []
    episodes = pd.read_parquet(out_dir / "episodes.parquet")
    steps_path = out_dir / "steps.parquet"
    steps = pd.read_parquet(steps_path) if steps_path.exists() else pd.DataFrame()

    fig = _figure(figsize=(8, 3.2))
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2.5]})
    k, n = int(episodes.success.sum()), len(episodes)
    low, high = wilson_interval(k, n)
    ax1.bar([0], [k / n], color="tab:blue")
    ax1.errorbar(
        [0], [k / n], yerr=[[max(0.0, k / n - low)], [max(0.0, high - k / n)]], color="black", capsize=6
    )
    ax1.set(
        xticks=[0],
        xticklabels=[episodes.codec.iloc[0]],
        ylim=(0, 1),
        ylabel="success rate",
        title=f"{k}/{n} episodes",
    )
    if "mean_bandwidth_bps" in episodes:
        jitter = np.random.default_rng(0).uniform(-0.04, 0.04, n)
        ax2.scatter(
            episodes.mean_bandwidth_bps / 1e3, episodes.success.astype(float) + jitter, s=14, alpha=0.7
        )
        ax2.set(
            xlabel="mean bandwidth in the episode (kbit/s)", yticks=[0, 1], yticklabels=["fail", "success"]
        )
    ax2.set_title("episodes")
    fig.tight_layout()
    written.append(plots / "success.png")
    fig.savefig(written[-1], dpi=110)

    if not steps.empty and "budget_bits" in steps:
        # The episode that sent the most: an all-outage episode would show empty axes.
        shown = steps.groupby("episode").bits_sent_total.mean().idxmax()
        first = steps[steps.episode == shown]
        views = _views(first, "bits_sent")
        fig = _figure(figsize=(8, 5))
        ax1, ax2 = fig.subplots(2, 1, sharex=True)
        ax1.plot(first.step, first.budget_bits, color="black", lw=1.5, label="link budget (trace)")
        ax1.stackplot(
            first.step,
            *[first[f"bits_sent.{v}"] for v in views],
            labels=[f"sent: {v}" for v in views],
            alpha=0.7,
        )
        ax1.set(
            ylabel="bits per step",
            title=f"bits per view against the link budget (episode {first.episode.iloc[0]})",
        )
        ax1.legend(fontsize=8, loc="upper right")
        if _views(first, "components"):  # the codec allocates itself (DPCA): show its components
            for v in _views(first, "components"):
                ax2.step(first.step, first[f"components.{v}"], where="post", label=v)
            ax2.set(xlabel="step", ylabel="latent components sent")
        else:
            for v in _views(first, "allocation"):
                ax2.plot(first.step, first[f"allocation.{v}"], label=v)
            ax2.set(xlabel="step", ylabel="allocation (share)", ylim=(0, 1))
        ax2.legend(fontsize=8)
        fig.tight_layout()
        written.append(plots / "allocation.png")
        fig.savefig(written[-1], dpi=110)

        if _views(first, "distortion"):  # none with latent observations: no frame is decoded
            fig = _figure(figsize=(8, 3))
            ax = fig.subplots()
            for v in _views(first, "distortion"):
                ax.plot(first.step, first[f"distortion.{v}"].replace(np.inf, 60.0).clip(upper=60.0), label=v)
            title = f"what the agent saw (episode {shown})"
            ax.set(xlabel="step", ylabel="PSNR (dB, 60 = lossless)", title=title)
            ax.legend(fontsize=8)
            fig.tight_layout()
            written.append(plots / "psnr.png")
            fig.savefig(written[-1], dpi=110)

    if _views(steps, "held"):
        written.append(plot_receivers(steps, plots / "receivers.png"))
    if (
        scenario is not None
        and not scenario.receivers
        and scenario.codec.name != "none"
        and _image_views(scenario)
    ):
        budget = float(episodes.mean_budget_bits.mean()) if "mean_budget_bits" in episodes else 20_000.0
        written.append(plot_frames(scenario, plots / "frames.png", budgets_bits=_budgets_around(budget)))
    return written


def plot_receivers(steps: pd.DataFrame, path: str | Path) -> Path:
    """One row per receiver: bits received and its score per step, over the episode that sent the most.

    Reads the step table of a scenario with receivers (``bits_received.<r>``, ``held.<r>`` and
    ``action_error.<r>`` or ``psnr_db.<r>``); the steps where a receiver held its last output are
    marked.
    """
    shown = steps.groupby("episode").transmit_bits.mean().idxmax()
    episode = steps[steps.episode == shown]
    receivers = _views(episode, "held")
    fig = _figure(figsize=(8, 2.4 * len(receivers)))
    axes = np.atleast_2d(fig.subplots(len(receivers), 2, sharex=True))
    for (bits_ax, score_ax), name in zip(axes, receivers, strict=True):
        bits_ax.step(episode.step, episode[f"bits_received.{name}"], where="post", color="tab:blue")
        bits_ax.set(ylabel="bits per step", title=f"{name}: bits received (its links)")
        column = f"action_error.{name}" if f"action_error.{name}" in episode else f"psnr_db.{name}"
        score = episode[column].replace(np.inf, 60.0).clip(upper=60.0)
        score_ax.plot(episode.step, score, color="tab:green")
        held = episode[f"held.{name}"].astype(bool)
        score_ax.scatter(episode.step[held], score[held], color="tab:red", s=10, label="held its last output")
        label = "action error (L2)" if column.startswith("action") else "PSNR (dB, 60 = lossless)"
        score_ax.set(ylabel=label, title=f"{name}: {label.split(' (')[0]}")
        if held.any():
            score_ax.legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel(f"step (episode {shown})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)


def _image_views(scenario) -> bool:
    """Whether the scenario's env sends images (frames.png draws images; vector views have none)."""
    import gymnasium as gym

    import bwgym  # noqa: F401
    from bwgym.envs.views import link_views

    env = gym.make(scenario.env.id, **scenario.env.kwargs)
    try:
        return all(len(v.shape) == 3 for v in link_views(env))
    finally:
        env.close()


def _budgets_around(budget_bits: float) -> list[int]:
    # The scenario's own mean budget among a ladder spanning the regimes of DESIGN.md.
    ladder = {300, 3_000, 10_000, 30_000, 300_000, max(1, int(budget_bits))}
    return sorted(ladder)


def plot_frames(scenario, path: str | Path, budgets_bits: list[int], seed: int | None = None) -> Path:
    """Original views of one observation above the same views decoded at each budget."""
    import gymnasium as gym

    import bwgym  # noqa: F401
    from bwgym.envs.bandwidth import psnr
    from bwgym.scenarios.factory import make_codec

    env = gym.make(scenario.env.id, **scenario.env.kwargs)
    obs, _ = env.reset(seed=scenario.run.seed if seed is None else seed)
    for _ in range(6):  # a few steps in, so the arm camera shows something
        obs, *_ = env.step(np.zeros(env.action_space.shape, np.float32))
    codec = make_codec(scenario, env.observation_space)
    env.close()
    views = list(codec.view_names)
    fig = _figure(figsize=(1.6 * (len(budgets_bits) + 1), 1.7 * len(views)))
    axes = np.atleast_2d(fig.subplots(len(views), len(budgets_bits) + 1))
    if len(views) == 1:
        axes = axes.reshape(1, -1)
    true = {v: obs[v] for v in views}
    for col, budget in enumerate([None, *budgets_bits]):
        decoded = true if budget is None else codec.decompress(codec.compress(true, budget))
        nbits = None if budget is None else codec.compress(true, budget).nbits
        for row, v in enumerate(views):
            ax = axes[row, col]
            image = decoded.get(v, np.zeros_like(true[v]))
            ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
            if budget is None:
                ax.set_title(f"original\n{v}", fontsize=7)
            else:
                quality = psnr(image, true[v])
                label = (
                    "not sent"
                    if v not in decoded
                    else (f"{quality:.1f} dB" if math.isfinite(quality) else "lossless")
                )
                ax.set_title(
                    f"{budget:,} bit budget\n{v}: {label}" + (f"\n(sent {nbits:,})" if row == 0 else ""),
                    fontsize=6,
                )
    fig.suptitle(f"{scenario.codec.name}: decoded at several budgets per step", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return Path(path)


def plot_success_vs_bandwidth(
    table: pd.DataFrame,
    x: str,
    path: str | Path,
    group: str = "codec",
    xlabel: str | None = None,
    title: str = "",
) -> Path:
    """Success rate (with Wilson intervals) against ``x`` for each ``group`` of a summary table."""
    fig = _figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, rows in table.sort_values(x).groupby(group, sort=False):
        yerr = [
            (rows.success_rate - rows.success_ci_low).clip(lower=0),
            (rows.success_ci_high - rows.success_rate).clip(lower=0),
        ]
        ax.errorbar(rows[x], rows.success_rate, yerr=yerr, marker="o", capsize=3, label=str(name))
    ax.set(xlabel=xlabel or x, ylabel="success rate", ylim=(-0.02, 1.02), title=title)
    if (table[x] > 0).all() and table[x].max() / max(table[x].min(), 1e-9) > 20:
        ax.set_xscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return Path(path)
