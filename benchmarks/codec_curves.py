"""Rate-distortion and rate-task curves of every codec from 16 to 16,384 bits per step, with timings.

    python benchmarks/codec_curves.py [--env bwgym/LocateLift-v1] [--episodes 20] [--frames 200] [--no-write]

For NDPCA (task-aware), task-agnostic NDPCA, DAE, JAE, linear DPCA, joint PCA (the shipped
checkpoints of ``--env`` in ``bwgym/codecs/checkpoints/``) and JPEG, at budgets 16, 32, ..., 16,384
bits per step, every held-out frame pair (arm + side, 84x84) is compressed, serialised to its wire
bytes, parsed (under the codec's session for the lean frames of the latent codecs) and decoded:

* ``bits`` - the mean ``Payload.nbits`` actually sent (frame header and CRC included; the 88-bit
  session header, sent once per episode, is not per step and not included; real bytes, never an
  estimate);
* ``sent`` - share of frames whose payload carried both views (JPEG needs ~8-13 kbit for two);
* ``PSNR`` - of the decoded views against the originals, over sent frames (MSE averaged, then dB);
* ``action err`` - mean ``||agent(decoded) - agent(original)||_2`` of the env's shipped BC agent,
  over sent frames (actions in [-1, 1]^4);
* ``arm share`` - NDPCA's share of the latent components that went to the arm camera.

It also measures how often corrupted frames are detected (raise ``PayloadError``): random single-
bit, double-bit and burst (2-16 bits) errors on NDPCA frames of several sizes.

Held-out frames come from expert episodes with seeds far from the training seeds. Timing: mean
encode + decode time per step at one budget per codec (single thread, after a warm-up), against the
env's own step time measured in the same run. Writes the ``codecs`` section of BENCHMARKS.md and
``benchmarks/codec_curves.png``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from report import machine_line, write_section  # noqa: E402  (run as a script)

import bwgym  # noqa: F401  (first: it selects the headless GL backend before mujoco loads)
from bwgym.codecs import codec_entry, load_codec
from bwgym.codecs.core.corruption import ERROR_KINDS, detection_rate
from bwgym.codecs.core.protocol import Payload
from bwgym.codecs.core.registry import CHECKPOINT_DIR
from bwgym.codecs.image.standard import JpegCodec
from bwgym.common.checkpoint import shipped_file

ENV_ID = "bwgym/LocateLift-v1"
HELDOUT_SEED = 100_000
BUDGETS = [16 * 2**i for i in range(11)]  # 16 .. 16,384
LEARNED = ["ndpca", "ndpca_agnostic", "dae", "jae", "linear_dpca", "pca"]
LABELS = {
    "ndpca": "NDPCA (task-aware)",
    "ndpca_agnostic": "NDPCA (task-agnostic)",
    "dae": "DAE (equal split)",
    "jae": "JAE (joint, not distributed)",
    "linear_dpca": "linear DPCA (pixels)",
    "pca": "joint PCA (pixels)",
    "jpeg": "JPEG",
}
TIMING_BUDGET = {"jpeg": 20_000}


def heldout_frames(env_id: str, episodes: int, n_frames: int) -> dict[str, np.ndarray]:
    import tempfile

    from bwgym.agents.demos import DemoDataset, collect_demos

    with tempfile.TemporaryDirectory() as tmp:
        path = collect_demos(
            Path(tmp) / "d", env_id=env_id, episodes=episodes, seed=HELDOUT_SEED, progress=False
        )
        obs, _, _ = DemoDataset(path).arrays()
    rows = np.linspace(0, len(obs["arm"]) - 1, min(n_frames, len(obs["arm"]))).round().astype(int)
    return {v: obs[v][rows] for v in ("arm", "side")}


def env_step_ms(env_id: str, steps: int = 200) -> float:
    env = gym.make(env_id)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    total, n = 0.0, 0
    for _ in range(steps):
        action = rng.uniform(-1, 1, 4).astype(np.float32)
        t = time.perf_counter()
        _, _, term, trunc, _ = env.step(action)
        total += time.perf_counter() - t
        n += 1
        if term or trunc:
            env.reset()
    env.close()
    return 1e3 * total / n


def evaluate(codec, frames, agent, budgets) -> list[dict]:
    n = len(frames["arm"])
    with torch.no_grad():
        clean = agent.act_batch(frames)
    rows = []
    for budget in budgets:
        bits, sq, count, decoded_frames, sent_rows, arm_share = [], 0.0, 0, {v: [] for v in frames}, [], []
        for i in range(n):
            obs = {v: frames[v][i] for v in frames}
            payload = codec.compress(obs, budget)
            assert payload.nbits <= budget
            if payload.is_empty:
                continue
            wire = payload.to_bytes()
            out = codec.decompress(Payload.from_bytes(wire, codec=codec.name, session=codec.session))
            if set(out) != set(frames):  # e.g. JPEG sent one view only: counted as not sent
                continue
            bits.append(8 * len(wire))
            sent_rows.append(i)
            for v in frames:
                sq += float(np.mean((out[v].astype(np.float64) - obs[v]) ** 2))
                count += 1
                decoded_frames[v].append(out[v])
            alloc = getattr(codec, "last_allocation", None)
            if alloc and set(alloc) == {"arm", "side"} and sum(alloc.values()):
                arm_share.append(alloc["arm"] / sum(alloc.values()))
        row = dict(
            budget=budget,
            sent=len(sent_rows) / n,
            bits=float(np.mean(bits)) if bits else math.nan,
            psnr=10 * math.log10(255.0**2 / (sq / count)) if count else math.nan,
            action_err=math.nan,
            arm_share=float(np.mean(arm_share)) if arm_share else math.nan,
        )
        if sent_rows:
            with torch.no_grad():
                acts = agent.act_batch({v: np.stack(decoded_frames[v]) for v in frames})
            row["action_err"] = float(np.mean(np.linalg.norm(acts - clean[sent_rows], axis=1)))
        rows.append(row)
    return rows


def time_codec(codec, frames, budget: int, repeats: int) -> tuple[float, float]:
    obs = [{v: frames[v][i] for v in frames} for i in range(min(repeats, len(frames["arm"])))]
    codec.decompress(codec.compress(obs[0], budget))  # warm-up
    enc = dec = 0.0
    for o in obs:
        t0 = time.perf_counter()
        p = codec.compress(o, budget)
        t1 = time.perf_counter()
        codec.decompress(Payload.from_bytes(p.to_bytes(), codec=codec.name, session=codec.session))
        t2 = time.perf_counter()
        enc += t1 - t0
        dec += t2 - t1
    return 1e3 * enc / len(obs), 1e3 * dec / len(obs)


def detection_rates(codec, frames, budgets=(64, 1_024, 8_192), trials: int = 2_000) -> dict:
    """Share of corrupted frames that raise PayloadError, per error kind and frame budget."""
    rng = np.random.default_rng(0)
    n = len(frames["arm"])
    out = {}
    for budget in budgets:
        wires = [
            codec.compress({v: frames[v][i] for v in frames}, budget).to_bytes()
            for i in range(0, n, max(1, n // 20))
        ]
        wires = [w for w in wires if w]
        for kind in ERROR_KINDS:
            detected = detection_rate(codec, wires, kind, trials, rng)
            out[budget, kind] = (detected, float(np.mean([8 * len(w) for w in wires])))
    return out


def shape_check(results: dict[str, list[dict]]) -> list[str]:
    """Sentences comparing NDPCA with DAE and JAE budget by budget (the paper's expected shape)."""
    if not {"ndpca", "dae", "jae"} <= set(results):
        return []
    out = []
    for other, label in (("dae", "DAE"), ("jae", "JAE")):
        rows = [
            (a, b)
            for a, b in zip(results["ndpca"], results[other], strict=True)
            if a["sent"] >= 0.5 and b["sent"] >= 0.5
        ]
        if not rows:
            continue
        better = [a["budget"] for a, b in rows if a["action_err"] <= b["action_err"]]
        close = [a["budget"] for a, b in rows if a["action_err"] <= 1.1 * b["action_err"]]
        worst_a, worst_b = max(rows, key=lambda ab: ab[0]["action_err"] - ab[1]["action_err"])
        excess = worst_a["action_err"] - worst_b["action_err"]
        out.append(
            f"- NDPCA's action error is at or below {label}'s at {len(better)} of {len(rows)} budgets "
            f"({', '.join(f'{b:,}' for b in better) or 'none'}) and within 10 % of it at {len(close)}; "
            f"largest excess {excess:+.3f} at {worst_a['budget']:,} bits."
        )
    return out


def fmt(x: float, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def plot(results: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, rows in results.items():
        pts = [r for r in rows if r["sent"] >= 0.5]
        if not pts:
            continue
        x = [r["bits"] for r in pts]
        main = name == "ndpca"
        style = dict(marker="o", ms=4, label=LABELS[name], lw=2.6 if main else 1.4, zorder=3 if main else 2)
        axes[0].plot(x, [r["psnr"] for r in pts], **style)
        axes[1].plot(x, [r["action_err"] for r in pts], **style)
    labels = ("PSNR (dB), higher is better", "action error ||a(decoded) - a(original)||, lower is better")
    for ax, label in zip(axes, labels, strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("real bits per step (both views, frame header and CRC included)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle("LocateLift held-out frames, two 84x84 views")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default=ENV_ID, help="env id (default: %(default)s)")
    parser.add_argument("--episodes", type=int, default=20, help="held-out expert episodes")
    parser.add_argument("--frames", type=int, default=200, help="frames sampled from them (at most all)")
    parser.add_argument("--trials", type=int, default=2_000, help="corrupted frames per error kind and size")
    parser.add_argument("--timing-repeats", type=int, default=30)
    parser.add_argument("--checkpoints", default=str(CHECKPOINT_DIR), help="folder of the codec checkpoints")
    parser.add_argument("--agent", default=None, help="BC agent checkpoint (default: the shipped one)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from bwgym.agents.bc import SHIPPED_CHECKPOINT, BCAgent

    env_id = args.env
    agent_path = args.agent or SHIPPED_CHECKPOINT.with_name(shipped_file(SHIPPED_CHECKPOINT.name, env_id))
    agent = BCAgent.load(agent_path, env_id=env_id, device="cpu")
    frames = heldout_frames(env_id, args.episodes, args.frames)
    views = {v: (84, 84, 3) for v in frames}
    codecs = {}
    for name in LEARNED:
        path = Path(args.checkpoints) / shipped_file(str(codec_entry(name).checkpoint), env_id)
        if not path.is_file():
            print(
                f"skipping {name}: {path} missing (bwgym train --all --kind codec --env {env_id})",
                file=sys.stderr,
            )
            continue
        kwargs = {"device": "cpu"} if name not in ("linear_dpca", "pca") else {}
        codecs[name] = load_codec(path, **kwargs)
        codecs[name].check_spec(env_id=env_id, views=views)
    env = gym.make(env_id)
    codecs["jpeg"] = JpegCodec.from_observation_space(env.observation_space)
    env.close()

    results, timing = {}, {}
    for name, codec in codecs.items():
        t = time.perf_counter()
        results[name] = evaluate(codec, frames, agent, BUDGETS)
        budget = TIMING_BUDGET.get(name, 400)
        timing[name] = (budget, *time_codec(codec, frames, budget, args.timing_repeats))
        print(f"{name}: {time.perf_counter() - t:.0f} s", file=sys.stderr)
    step_ms = env_step_ms(env_id)
    detection = detection_rates(codecs["ndpca"], frames, trials=args.trials) if "ndpca" in codecs else {}

    # references: the agent on the training-mean frame (0 bits) and on clean frames
    with torch.no_grad():
        clean = agent.act_batch(frames)
        mean = {
            v: np.repeat(frames[v].mean(0, keepdims=True).round().astype(np.uint8), len(frames[v]), 0)
            for v in frames
        }
        mean_err = float(np.mean(np.linalg.norm(agent.act_batch(mean) - clean, axis=1)))

    lines = [
        "## Codecs: distortion and task error against real bits, 16 to 16,384 bits per step",
        "",
        f"Command: `python benchmarks/codec_curves.py --env {env_id} --episodes {args.episodes} --frames {args.frames}`. "
        + machine_line(),
        f"{len(frames['arm'])} held-out frame pairs (arm + side, 84x84) of `{env_id}` from {args.episodes} expert "
        f"episodes (seeds from {HELDOUT_SEED}); the env's shipped checkpoints and BC agent. `bits` are the real "
        "wire bytes of each payload (the learned codecs' lean frame: 16 bits of header and CRC-8 per step; the "
        "88-bit session header once per episode is not included), averaged over frames sent; a frame counts "
        "as sent when its payload carried both views; PSNR and action error are over sent frames. "
        "`NDPCA arm share`: the share of task-aware NDPCA's latent components sent for the arm camera "
        "(the DPCA split).",
        "",
        "Action error (lower is better) and, in brackets, mean real bits sent; `-` where fewer than half",
        "the frames could be sent at that budget:",
        "",
        "| budget (bits) | " + " | ".join(LABELS[n] for n in results) + " | NDPCA arm share |",
        "|---|" + "---|" * (len(results) + 1),
    ]
    names = list(results)
    for i, budget in enumerate(BUDGETS):
        cells = []
        for name in names:
            r = results[name][i]
            cells.append("-" if r["sent"] < 0.5 else f"{r['action_err']:.3f} ({r['bits']:,.0f})")
        share = results.get("ndpca", [{}] * len(BUDGETS))[i].get("arm_share", math.nan)
        lines.append(f"| {budget:,} | " + " | ".join(cells) + f" | {fmt(share, '.2f')} |")
    lines += [
        "",
        "PSNR in dB (higher is better), same payloads:",
        "",
        "| budget (bits) | " + " | ".join(LABELS[n] for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for i, budget in enumerate(BUDGETS):
        cells = ["-" if results[n][i]["sent"] < 0.5 else f"{results[n][i]['psnr']:.1f}" for n in names]
        lines.append(f"| {budget:,} | " + " | ".join(cells) + " |")
    lines += ["", *shape_check(results)]
    if detection:
        lines += [
            "",
            f"Corrupted NDPCA frames detected (`PayloadError` on parsing or decoding), {args.trials} random "
            "errors per cell (CRC-8 over session identity, header and body, then the body must be the "
            "canonical encoding of what it decodes to):",
            "",
            "| frame budget (mean frame bits) | single-bit | double-bit | burst (2-16 bits) |",
            "|---|---|---|---|",
        ]
        for budget in sorted({b for b, _ in detection}):
            cells = [f"{detection[budget, k][0]:.4f}" for k in ("single", "double", "burst")]
            lines.append(
                f"| {budget:,} ({detection[budget, 'single'][1]:,.0f}) | " + " | ".join(cells) + " |"
            )
    lines += [
        "",
        f"Reference action errors: the agent on the mean held-out frame (nothing sent) {mean_err:.3f}; "
        "on the original frames 0 by definition.",
        "",
        "![rate-distortion and rate-task curves](benchmarks/codec_curves.png)",
        "",
        f"Time per step (1 CPU thread, mean of {args.timing_repeats} frames) against the env's own step "
        f"({step_ms:.2f} ms, same run):",
        "",
        "| codec | budget (bits) | encode ms | decode ms | encode + decode / env step |",
        "|---|---|---|---|---|",
    ]
    for name, (budget, enc, dec) in timing.items():
        lines.append(
            f"| {LABELS[name]} | {budget:,} | {enc:.2f} | {dec:.2f} | {(enc + dec) / step_ms:.1f}x |"
        )
    md = "\n".join(lines)
    print(md)
    if not args.no_write:
        plot(results, Path(__file__).resolve().parent / "codec_curves.png")
        write_section("codecs", md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
