"""Gray-Wyner on LocateLift-v1 with two receivers: the BC policy and a side-view monitor.

    python benchmarks/gray_wyner_two_receivers.py [--episodes 30] [--trace-episodes 10]
        [--pixel-budgets 32,45,64,91,128,181,256,362,512,724,1024,1448,2048] [--no-write]

Uses the shipped pair (regenerate both with ``bwgym train two-receivers``):
``gray_wyner_locate_lift_v1.ckpt`` (Shared, beta 1, six rate points) and
``gray_wyner_locate_lift_v1_separate.ckpt`` (two independent codecs, one per receiver, each seeing
both views, no common stream; same features, data, rate points and steps). Receiver 1 (the shipped
v1 BC agent) drives the env with the actions it computes from its decoded features; receiver 2
reconstructs the side view from its decoded coefficients (see :mod:`bwgym.scenarios.two_receivers`).

A second baseline works on pixels: **two independent NDPCA codecs**
(:func:`~bwgym.scenarios.two_receivers.run_pixel_baseline`). Link 1 carries the shipped task-aware
NDPCA codec's lean frames of both views (``ndpca_locate_lift_v1.ckpt``) and the BC agent acts on
the decoded views; link 2 carries the shipped task-agnostic NDPCA codec's lean frames of the side
view alone (``ndpca_agnostic_locate_lift_v1.ckpt``, the arm stream switched off by its explicit
split; why this codec: the module's docstring). Link 2's frame budget is the smallest (8-bit
grid) whose mean side PSNR, on frames of 6 calibration episodes (seeds 20000.., expert and noisy
BC in turn), reaches the highest side PSNR Gray-Wyner's receiver 2 has at any rate point of the
sweep (:func:`~bwgym.scenarios.two_receivers.side_budget`): the baseline's monitor is never worse
than Gray-Wyner's. Both receivers' PSNR is taken against the same reference, the raw 84x84 side
view the env renders at that step (``obs["side"]``), mean over steps.

1. Rate sweep: every rate point sent at every step of ``--episodes`` unseen seeded episodes
   (seeds 10000..), for both codecs. Transmit rate = bits on the broadcast link + both private
   links, as stream bits (the codecs' entropy-coded bytes, the paper's R0 + R1 + R2) and as wire bits:
   lean channel frames (16 bits of header byte and CRC-8 per frame: three frames per step for
   Gray-Wyner, two for the baseline, which sends nothing on the broadcast link) plus each used
   link's 88-bit session header, sent at the first step of every episode. For reference, also the
   wire bits the same streams cost in the v1 container (112 bits per channel payload, no session).
2. BD-rate of Gray-Wyner against the baseline at equal task success (and at equal action error,
   a less noisy task metric), from those curves (piecewise-linear, see
   :func:`bwgym.common.stats.bd_rate`); negative = Gray-Wyner needs fewer bits.
3. The pixel baseline at receiver-1 frame budgets ``--pixel-budgets`` (the same episodes, link 2
   fixed as above; wire bits = both links' real frame bytes and each link's 88-bit session header
   at the first step of every episode, as for the other codecs), and the BD-rate of Gray-Wyner
   against it at equal task success and action error.
4. One trace-driven run per codec: three links, each its own generated trace
   (:func:`~bwgym.scenarios.two_receivers.default_traces`), the codec picking the finest rate point
   whose channels fit each step; the first steps of the per-step run table.

Writes the ``gray_wyner_two_receivers`` block of BENCHMARKS.md, right after the ``gray_wyner`` one.
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np
import torch
from report import BENCHMARKS_MD, machine_line, parse_args  # noqa: E402  (run as a script)

from bwgym.codecs.core.registry import codec_entry
from bwgym.common.stats import bd_overlap, bd_rate
from bwgym.scenarios.two_receivers import (
    ENV_ID,
    LINKS,
    PIXEL_BASELINE,
    ViewFeatures,
    collect_frames,
    default_traces,
    load_pair,
    load_pixel_baseline,
    rate_sweep,
    run_pixel_baseline,
    run_two_receivers,
    side_budget,
    summarise,
)

SECTION = "gray_wyner_two_receivers"
EVAL_SEED = 10_000
NAMES = ("Gray-Wyner (Shared)", "two independent codecs")
PIXEL_NAME = "two independent NDPCA codecs (pixels)"
#: Calibration episodes of receiver 2's pixel budget (seeds far from training and evaluation).
CALIBRATION_SEED, CALIBRATION_EPISODES = 20_000, 6


def _write_after_gray_wyner(body: str) -> None:
    """Replace the block, or insert it right after ``<!-- gray_wyner:end -->`` (else append)."""
    start, end = f"<!-- {SECTION}:start -->", f"<!-- {SECTION}:end -->"
    block = f"{start}\n{body.strip()}\n{end}\n"
    text = BENCHMARKS_MD.read_text()
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1].lstrip("\n")
    elif "<!-- gray_wyner:end -->\n" in text:
        head, rest = text.split("<!-- gray_wyner:end -->\n", 1)
        text = head + "<!-- gray_wyner:end -->\n" + block + rest
    else:
        text = text.rstrip("\n") + "\n\n" + block
    tmp = BENCHMARKS_MD.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(BENCHMARKS_MD)


def _wilson(p: float, n: float) -> tuple[float, float]:
    z = 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _sweep_row(name: str, rate: str, r: dict) -> str:
    """One rate-sweep table row: bits per link, transmit bits, success with its interval, quality."""
    lo, hi = _wilson(r["success"], r["episodes"])
    return (
        f"| {name} | {rate} | {r['bits_sent.broadcast']:.0f} | {r['bits_sent.receiver_1']:.0f} | "
        f"{r['bits_sent.receiver_2']:.0f} | {r['transmit_stream_bits']:.0f} ({r['transmit_bits']:.0f}) | "
        f"{r['transmit_session_bits']:.1f} | {r['transmit_container_bits']:.0f} | "
        f"{r['success']:.2f} [{lo:.2f}, {hi:.2f}] | {r['action_error.policy']:.3f} | {r['psnr_db.monitor']:.2f} |"
    )


def _pct(x: float) -> str:
    return "n/a (no overlap)" if math.isnan(x) else f"{x:+.1f} %"


def _overlap(a: list[dict], b: list[dict], rate_key: str, q_key: str, sign: float) -> tuple[float, float]:
    """The quality range ``bd_rate`` averages over (``sign`` -1: lower is better), in ``q_key``'s units."""
    lo, hi = bd_overlap(
        [r[rate_key] for r in a],
        [sign * r[q_key] for r in a],
        [r[rate_key] for r in b],
        [sign * r[q_key] for r in b],
    )
    return (lo, hi) if sign > 0 else (-hi, -lo)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(
        __doc__,
        argv,
        [
            ("--episodes", int, 30, "episodes per rate point"),
            ("--trace-episodes", int, 10, "episodes of the trace-driven run"),
            (
                "--pixel-budgets",
                str,
                "32,45,64,91,128,181,256,362,512,724,1024,1448,2048",
                "receiver 1's frame budgets of the pixel baseline, bits per step (comma-separated)",
            ),
        ],
    )
    torch.set_num_threads(1)
    start = time.perf_counter()
    features = ViewFeatures.load_shipped()
    codecs = load_pair(features)
    sweeps = [rate_sweep(c, features, episodes=args.episodes, seed=EVAL_SEED) for c in codecs]
    # the pixel baseline: receiver 2's budget reaches Gray-Wyner's best side PSNR on calibration frames
    pixel_codecs = load_pixel_baseline()
    pixel_files = [codec_entry(n).shipped_path_for(ENV_ID).name for n in PIXEL_BASELINE]
    target_psnr = max(r["psnr_db.monitor"] for r in sweeps[0])
    calibration = collect_frames(CALIBRATION_EPISODES, seed=CALIBRATION_SEED, features=features)
    budget_2, calibration_psnr = side_budget(pixel_codecs[1], calibration, target_psnr)
    budgets_1 = [int(b) for b in args.pixel_budgets.split(",")]
    pixel_start = time.perf_counter()
    pixel = [
        {
            "budget_1": float(b),
            **summarise(
                run_pixel_baseline(
                    pixel_codecs, features.agent, b, budget_2, episodes=args.episodes, seed=EVAL_SEED
                )
            ),
        }
        for b in budgets_1
    ]
    pixel_seconds = time.perf_counter() - pixel_start
    lines = [
        "## Gray-Wyner with two receivers on LocateLift-v1 (issue 14, item 5)",
        "",
        f"Command: `python benchmarks/gray_wyner_two_receivers.py --episodes {args.episodes} "
        f"--trace-episodes {args.trace_episodes} --pixel-budgets {args.pixel_budgets}` (one CPU "
        f"thread). {machine_line()}",
        "",
        "Receiver 1 is the shipped v1 BC agent: it acts in the env on the features it decodes (its "
        "MLP head on both views' encoder features). Receiver 2 reconstructs the side view from 32 "
        "linear-DPCA coefficients (4x-downsampled pixels; PSNR ceiling ~24 dB). The codecs work on "
        "these features (arm: 128; side: 128 + 32), not on pixels. Gray-Wyner: "
        "`gray_wyner_locate_lift_v1.ckpt` (Shared, beta 1, 16 common + 16 private latents per "
        "receiver); baseline: `gray_wyner_locate_lift_v1_separate.ckpt`, two independent codecs (one "
        "per receiver, each seeing both views, 32 latents each, nothing shared); same data (200 "
        "episodes, seeds 0-199), rate points and steps. Regenerate both with "
        "`bwgym train two-receivers` (`bwgym train --all --only 'gray_wyner_locate_lift_v1*'`).",
        "",
        f"**Rate sweep**: each rate point sent every step, {args.episodes} unseen episodes per point "
        f"(seeds {EVAL_SEED}..). Bits per step: stream bits (the entropy-coded latents, R0 + R1 + R2) "
        "and, in brackets, wire bits: one lean frame per channel and step (+16 bits: a header byte "
        "with step tag, channel and rate point, and a CRC-8) and each used link's 88-bit session "
        "header (codec, 4-byte fingerprint of the weights, kind and rate ladder), charged to that "
        "link at the first step of every episode; the baseline sends nothing on the broadcast link. "
        "`container v1`: the same streams in the per-payload container the codec used before "
        "(+112 bits per channel payload, no session), for reference. Success with its 95 % Wilson "
        "interval; action error: L2 distance to the agent's action on clean views, mean over steps.",
        "",
        f"**Pixel baseline: {PIXEL_NAME}**, nothing shared, no broadcast link. Link 1: the shipped "
        f"task-aware NDPCA codec (`{pixel_files[0]}`, session fingerprint "
        f"{pixel_codecs[0].fingerprint.hex()}) sends both views (84x84 pixels) in lean "
        "frames of at most the budget in the `rate` column; the BC agent acts on the decoded views "
        "and drives the env. Link 2: the shipped task-agnostic NDPCA codec "
        f"(`{pixel_files[1]}`, {pixel_codecs[1].fingerprint.hex()}) sends the side view alone (its explicit split with the arm stream "
        f"off) in frames of at most {budget_2} bits: the smallest budget whose mean side PSNR on "
        f"{CALIBRATION_EPISODES} calibration episodes (seeds {CALIBRATION_SEED}.., expert and noisy "
        f"BC in turn) reaches {target_psnr:.2f} dB, Gray-Wyner's best side PSNR over its rate points "
        f"({calibration_psnr:.2f} dB there). Receiver 2's side PSNR is, for every codec, taken "
        'against the raw 84x84 side view the env renders (`obs["side"]`), mean over steps. Wire '
        "bits count the real frame bytes and each link's 88-bit session header at the first step of "
        "every episode; `container v1`: the same frames (header byte and body) in the v1 container. "
        "Same episodes and seeds as the sweep.",
        "",
        "| codec | rate | broadcast (wire) | link 1 (wire) | link 2 (wire) | transmit: stream (wire) "
        "| of which sessions | container v1 | success | action error | side PSNR (dB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, sweep in zip(NAMES, sweeps, strict=True):
        lines += [_sweep_row(name, str(int(r["rate_idx"])), r) for r in sweep]
    lines += [_sweep_row(PIXEL_NAME, f"<= {int(r['budget_1'])} bits", r) for r in pixel]
    gw, base = sweeps
    bd = {}
    for rate_key in ("transmit_stream_bits", "transmit_bits", "transmit_container_bits"):
        for q_key, sign in (("success", 1.0), ("action_error.policy", -1.0), ("psnr_db.monitor", 1.0)):
            bd[(rate_key, q_key)] = bd_rate(
                [r[rate_key] for r in base],
                [sign * r[q_key] for r in base],
                [r[rate_key] for r in gw],
                [sign * r[q_key] for r in gw],
            )
    lines += [
        "",
        "**Transmit-rate BD-rate of Gray-Wyner against the two independent codecs** (negative: "
        "Gray-Wyner needs fewer bits at equal quality; piecewise-linear over the overlapping range):",
        "",
        "| at equal | stream bits | wire bits (lean frames + sessions) | wire bits, container v1 (before) |",
        "|---|---|---|---|",
    ]
    for q_key, label in (
        ("success", "task success (receiver 1)"),
        ("action_error.policy", "action error (receiver 1)"),
        ("psnr_db.monitor", "side PSNR (receiver 2)"),
    ):
        lines.append(
            f"| {label} | {_pct(bd[('transmit_stream_bits', q_key)])} | {_pct(bd[('transmit_bits', q_key)])} "
            f"| {_pct(bd[('transmit_container_bits', q_key)])} |"
        )
    lines += [
        "",
        f"**Transmit-rate BD-rate of Gray-Wyner against the {PIXEL_NAME}** (same conventions; the "
        "baseline's receiver 2 sends at one fixed budget, so it has no PSNR curve):",
        "",
        "| at equal | stream bits | wire bits (lean frames + sessions) | wire bits, container v1 |",
        "|---|---|---|---|",
    ]
    for q_key, sign, label in (
        ("success", 1.0, "task success (receiver 1)"),
        ("action_error.policy", -1.0, "action error (receiver 1)"),
    ):
        cells = [
            _pct(
                bd_rate(
                    [r[rate_key] for r in pixel],
                    [sign * r[q_key] for r in pixel],
                    [r[rate_key] for r in gw],
                    [sign * r[q_key] for r in gw],
                )
            )
            for rate_key in ("transmit_stream_bits", "transmit_bits", "transmit_container_bits")
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| side PSNR (receiver 2) | n/a (fixed) | n/a (fixed) | n/a (fixed) |")
    s_lo, s_hi = _overlap(pixel, gw, "transmit_bits", "success", 1.0)
    e_lo, e_hi = _overlap(pixel, gw, "transmit_bits", "action_error.policy", -1.0)
    lines += [
        "",
        f"In wire bits the curves overlap at success {s_lo:.2f}-{s_hi:.2f} and action error "
        f"{e_lo:.3f}-{e_hi:.3f} (the BD-rate averages over that range only). Gray-Wyner codes the BC "
        "agent's encoder features (the sender runs the agent's encoders), the pixel baseline 84x84 "
        "pixels the agent encodes after decoding: much of the saving, at equal action error above "
        "all, is that difference and not the common stream (the feature baseline above isolates it).",
    ]
    # trace-driven run
    traces = default_traces(seed=7)
    runs = [
        run_two_receivers(c, features, episodes=args.trace_episodes, seed=EVAL_SEED, traces=traces)
        for c in codecs
    ]
    lines += [
        "",
        f"**Trace-driven run**: {args.trace_episodes} episodes (seeds {EVAL_SEED}..), three links "
        "with their own generated traces (`default_traces(seed=7)`: log-normal walks of 6, 5 and "
        "5 kbit/s mean, i.e. ~240 / 200 / 200 bits per 0.04 s step), each link first carrying its "
        "88-bit session header (in fragments when its budget is smaller; frames follow it), the "
        "codec picking per step the finest rate point whose lean frames fit what their links have "
        "left (a private channel that does not fit is not sent: its receiver decodes from the "
        "common stream alone). Mean per step (wire bits, sessions included):",
        "",
        "| codec | success | broadcast bits | link 1 bits | link 2 bits | transmit bits | action error "
        "| side PSNR (dB) | receiver 1 held | receiver 2 held |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, df in zip(NAMES, runs, strict=True):
        s = summarise(df)
        lo, hi = _wilson(s["success"], s["episodes"])
        lines.append(
            f"| {name} | {s['success']:.2f} [{lo:.2f}, {hi:.2f}] | {s['bits_sent.broadcast']:.0f} | "
            f"{s['bits_sent.receiver_1']:.0f} | {s['bits_sent.receiver_2']:.0f} | {s['transmit_bits']:.0f} | "
            f"{s['action_error.policy']:.3f} | {s['psnr_db.monitor']:.2f} | {s['held.policy']:.2f} | "
            f"{s['held.monitor']:.2f} |"
        )
    cols = [
        "step",
        "rate_idx",
        *[f"budget_bits.{k}" for k in LINKS],
        *[f"bits_sent.{k}" for k in LINKS],
        "action_error.policy",
        "is_success",
        "psnr_db.monitor",
    ]
    head = runs[0][runs[0]["episode"] == 0][cols].head(8)
    lines += [
        "",
        "First steps of the Gray-Wyner run table (episode 0; `run_two_receivers` returns every column "
        "for every step, both receivers' metrics and each link's budget and bits; step 0's bits "
        "include each link's 88-bit session header, `session_bits.<link>` in the table; the library "
        "scenario `two_receivers_gray_wyner` runs these links with `bwgym run`, each episode "
        "restarting them at trace time 0, so its episode i is the first episode played here from "
        "seed 10000 + i):",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for _, row in head.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            cells.append(f"{v:.3f}" if isinstance(v, (float, np.floating)) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"Total time {time.perf_counter() - start:.0f} s (pixel baseline, calibration and sweep: "
        f"{pixel_seconds:.0f} s)."
    )
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        _write_after_gray_wyner(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
