"""SensorNetwork: env steps per second against baselines of the same run, and the limits of its presets.

    python benchmarks/sensors.py [--steps 20000] [--rounds 5] [--no-write]

Speed rows (one core: BLAS threads are pinned to 1), all measured in one run, interleaved round by
round (each round runs every row ``--steps`` steps; the table shows the median round), with a fixed
cycle of pre-drawn actions so the action sampler is not timed:
- ``bare numpy loop``: the same process and K = 8 sensors simulated naively, one step at a time
  (draw w and v, ``x = A x + w``, ``y = C x + v``, split y into K float32 views): the floor any
  implementation of the dynamics pays, without the env's Kalman / LQG references;
- ``CartPole-v1``: ``gymnasium.make("CartPole-v1")``, gymnasium's own classic-control step;
- ``SensorNetwork ...``: ``gymnasium.make("bwgym/SensorNetwork-v0", n_sensors=8, ...)``, resets
  included (200-step episodes).

Bounds table: for each preset and K, the per-step rate (bits per step per state component the
sensors measure) that any codec needs to reach distortion D at the fusion node, from
``bwgym.codecs.bounds``; D is given as a multiple of the centralised Kalman filter's error (the
floor: no codec does better than uncompressed data).

Codec table (``--only codecs`` runs just this part): the vector codecs on the ar1 preset with K = 4
sensors over a link of constant budget (no drops), several budgets each; distortion D is the mean
squared error of the fusion node's Kalman estimate of x (decoded measurements, noise ``R_k`` plus
the codec's quantisation noise ``step^2 / 12``), after a 20-step burn-in per episode. Rates are real
bits per step (summed over the sensors, i.e. bits per sample of x): the whole payload, and its
entropy-coded body without the lean frame's 16-bit overhead; the gap is body bits minus the bound at the
measured D. Rows: ``scalar``, ``predictive`` (with and without key frames), ``vector_dpca`` (DPCA
across the sensors, memoryless, from its shipped checkpoint) and ``vector_ndpca`` (MLP encoders, DPCA,
joint decoder; its shipped ar1 checkpoint; decoded noise: its calibrated error variance). A second
table compares ``vector_dpca`` (fitted in the run on the same rollouts as the shipped checkpoint) and
``vector_ndpca`` (shipped) on cv2d with K = 4 by D / Kalman's D. Writes the ``sensor_codecs`` section.

The shipped ``vector_dpca`` and ``vector_ndpca`` checkpoints are made by
``bwgym train sensor-codec`` (``bwgym zoo`` lists each one's command).

Writes the ``sensors`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core (set before numpy loads)

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from report import machine_line, write_section  # noqa: E402  (run as a script)

import bwgym  # noqa: E402, F401  (registers the envs)
from bwgym.codecs import make_codec  # noqa: E402
from bwgym.codecs.bounds import (  # noqa: E402
    ceo_sum_rate_gaussian,
    rate_distortion_gaussian,
    wyner_ziv_gaussian,
)
from bwgym.codecs.core.protocol import FRAME_OVERHEAD_BITS, Payload  # noqa: E402
from bwgym.codecs.core.registry import CHECKPOINT_DIR  # noqa: E402
from bwgym.codecs.sensor.dpca import (  # noqa: E402
    VectorDPCACodec,
    sensor_frames,
)
from bwgym.codecs.sensor.ndpca import SHIPPED_CHECKPOINT_AR1 as NDPCA_CHECKPOINT_AR1  # noqa: E402
from bwgym.common.kalman import KalmanFilter, kalman_steady_state  # noqa: E402
from bwgym.envs.sensors import SensorNetworkEnv  # noqa: E402
from bwgym.envs.views import link_views  # noqa: E402

ENV_ID = "bwgym/SensorNetwork-v0"
N_SENSORS = 8
TARGET_STEPS_PER_S = 20_000
D_FACTORS = (1.1, 1.5, 2.0, 3.0)


def bare_loop(preset: str) -> Callable[[int], float]:
    """The naive simulation of the same process: per-step draws and matrix products, no references."""
    env = SensorNetworkEnv(preset=preset, n_sensors=N_SENSORS)
    m = env.model
    A, C = m.A, m.C_stacked
    q_factor = np.linalg.cholesky(m.Q)
    noise_std = np.sqrt(np.diag(m.R_stacked))
    bounds = np.cumsum((0, *m.sensor_dims))
    slices = list(zip(env.link_views, bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))
    rng = np.random.default_rng(0)
    n, n_obs = m.n_state, C.shape[0]

    def run(steps: int) -> float:
        x = m.initial_mean.copy()
        start = time.perf_counter()
        for _ in range(steps):
            x = A @ x + q_factor @ rng.standard_normal(n)
            y = (C @ x + noise_std * rng.standard_normal(n_obs)).astype(np.float32)
            _ = {name: y[lo:hi] for name, lo, hi in slices}
        return steps / (time.perf_counter() - start)

    return run


def env_loop(env_id: str, **kwargs: object) -> Callable[[int], float]:
    """Steps/s of ``gymnasium.make(env_id, **kwargs)`` with pre-drawn actions, resets included."""
    env = gym.make(env_id, **kwargs)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(1024)]
    env.reset(seed=0)

    def run(steps: int) -> float:
        start = time.perf_counter()
        for i in range(steps):
            _, _, terminated, truncated, _ = env.step(actions[i % 1024])
            if terminated or truncated:
                env.reset()
        return steps / (time.perf_counter() - start)

    return run


def speed_rows(steps: int, rounds: int) -> list[str]:
    rows: dict[str, Callable[[int], float]] = {
        "bare numpy loop, cv2d, K = 8": bare_loop("cv2d"),
        "CartPole-v1": env_loop("CartPole-v1"),
        "SensorNetwork, ar1, estimate, K = 8": env_loop(ENV_ID, preset="ar1", n_sensors=N_SENSORS),
        "SensorNetwork, cv2d, estimate, K = 8": env_loop(ENV_ID, preset="cv2d", n_sensors=N_SENSORS),
        "SensorNetwork, ar1, control, K = 8": env_loop(
            ENV_ID, preset="ar1", n_sensors=N_SENSORS, mode="control"
        ),
        "SensorNetwork, cv2d, control, K = 8": env_loop(
            ENV_ID, preset="cv2d", n_sensors=N_SENSORS, mode="control"
        ),
    }
    for run in rows.values():
        run(min(steps, 2000))  # warm up
    rates: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(rounds):
        for name, run in rows.items():
            rates[name].append(run(steps))
    median = {name: statistics.median(r) for name, r in rates.items()}
    bare, cartpole = median["bare numpy loop, cv2d, K = 8"], median["CartPole-v1"]
    lines = [
        "| configuration | steps/s | vs bare numpy loop | vs CartPole-v1 | >= 20,000 steps/s |",
        "|---|---|---|---|---|",
    ]
    for name, rate in median.items():
        target = "yes" if rate >= TARGET_STEPS_PER_S else "no"
        target = target if name.startswith("SensorNetwork") else "-"
        line = f"| {name} | {rate:,.0f} | {rate / bare:.2f} | {rate / cartpole:.2f} | {target} |"
        print(line, flush=True)
        lines.append(line)
    return lines


def fmt(bits: float) -> str:
    return "inf" if not np.isfinite(bits) else f"{bits:.3f}"


def bounds_rows() -> list[str]:
    lines = [
        "| preset | K | sensor noise r_k | sigma^2 prior | sigma^2 pred | D floor | D / floor "
        "| R(D), no side info | R_WZ(D), prediction at decoder | CEO sum rate, prediction at decoder "
        "| CEO, own prediction |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for preset, ks in (("ar1", (1, 4, 8)), ("cv2d", (4, 8))):
        for k in ks:
            env = SensorNetworkEnv(preset=preset, n_sensors=k)
            m = env.model
            noise = np.array(m.noise_variances)
            P_pred, P_filt, _ = kalman_steady_state(m.A, m.C_stacked, m.Q, m.R_stacked)
            # the component the sensors measure: x (ar1), p_x (cv2d; p_y is the same)
            pred, floor = float(P_pred[0, 0]), float(P_filt[0, 0])
            prior = 1.0 if preset == "ar1" else None  # ar1 is stationary with variance 1
            a, q = float(m.A[0, 0]), float(m.Q[0, 0])
            for factor in D_FACTORS:
                d = factor * floor
                no_side = fmt(rate_distortion_gaussian(prior, d)) if prior else "-"
                own = fmt(ceo_sum_rate_gaussian(a * a * d + q, noise, d)) if preset == "ar1" else "-"
                wyner_ziv, ceo = fmt(wyner_ziv_gaussian(pred, d)), fmt(ceo_sum_rate_gaussian(pred, noise, d))
                lines.append(
                    f"| {preset} | {k} | {noise.min():.3g}..{noise.max():.3g} | "
                    f"{prior if prior else '-'} | {pred:.4g} | {floor:.4g} | {factor:g} | {no_side} | "
                    f"{wyner_ziv} | {ceo} | {own} |"
                )
    return lines


CODEC_SENSORS = 4
CODEC_EPISODES = 10
BURN_IN = 20
#: Below this D / Kalman's D the bound is too steep to resolve: its gap is shown in parentheses.
NEAR_FLOOR = 1.05
#: (body bits of a payload, send every n-th step): a payload body is at least one byte, so the lowest
#: rates come from sending every second or third step.
#: The label of the vector_dpca rows.
DPCA_LABEL = "vector_dpca (DPCA across sensors, memoryless)"
NDPCA_LABEL = "vector_ndpca (MLP encoders, DPCA, joint decoder)"
#: Body budgets of the cv2d table (two floats per sensor: more bits than ar1).
CV2D_POINTS = ((16, 1), (24, 1), (32, 1), (48, 1), (64, 1), (96, 1), (128, 1))
POINTS = ((8, 3), (8, 2), (8, 1), (12, 1), (16, 1), (24, 1), (32, 1))


def codec_point(
    name: str, body_bits: int, episodes: int, period: int = 1, preset: str = "ar1", **options: object
) -> dict[str, float]:
    """Fusion-node MSE and real bits per step of codec ``name`` at a body budget of ``body_bits``."""
    env = gym.make(ENV_ID, preset=preset, n_sensors=CODEC_SENSORS, horizon=200)
    views = link_views(env)
    m = env.unwrapped.model
    codec = make_codec(name, views, env_id=ENV_ID, system=m, **options)
    budget = FRAME_OVERHEAD_BITS + body_bits  # lean frames: header byte and CRC-8 on top of the body
    errors, reference, total, body = [], [], [], []
    for episode in range(episodes):
        if hasattr(codec, "reset"):
            codec.reset()
        obs, _ = env.reset(seed=episode)
        kf = KalmanFilter(m.A, None, m.Q, m.C, m.R, m.initial_mean, m.initial_cov)
        for t in range(env.unwrapped.horizon):
            payload = codec.compress(obs, budget if t % period == 0 else 0)
            decoded = (
                codec.decompress(Payload.from_bytes(payload.to_bytes(), codec=name, session=payload.session))
                if payload.nbits
                else {}
            )
            if t:
                kf.predict()
            if decoded:
                idx = [int(k.split("_")[1]) for k in decoded]
                saved = list(kf.R)
                for k, key in zip(idx, decoded, strict=True):
                    kf.R[k] = m.R[k] + np.eye(m.R[k].shape[0]) * codec.last_steps[key] ** 2 / 12.0
                kf.update({k: decoded[key] for k, key in zip(idx, decoded, strict=True)})
                kf.R = saved
            x = env.unwrapped.state
            obs, _, _, _, info = env.step(env.unwrapped.to_action(kf.mean))
            if t >= BURN_IN:
                errors.append(float(np.sum((kf.mean - x) ** 2)))
                reference.append(info["kalman_squared_error"])
                total.append(payload.nbits)
                body.append(sum(payload.stream_bits))
    return dict(
        budget=budget,
        total=float(np.mean(total)),
        body=float(np.mean(body)),
        distortion=float(np.mean(errors)),
        ratio=float(np.sum(errors) / np.sum(reference)),
    )


def codec_rows(episodes: int) -> tuple[list[str], float, dict[str, list[tuple[float, float]]]]:
    env = SensorNetworkEnv(preset="ar1", n_sensors=CODEC_SENSORS)
    m = env.model
    noise = np.array(m.noise_variances)
    P_pred, P_filt, _ = kalman_steady_state(m.A, m.C_stacked, m.Q, m.R_stacked)
    a, q, floor = float(m.A[0, 0]), float(m.Q[0, 0]), float(P_filt[0, 0])
    lines = [
        "| codec | budget bits (every n-th step) | real bits/step (payload) | body bits/step | D (fusion MSE) "
        "| D / Kalman's D "
        "| CEO, own prediction | gap (body) | CEO, centralised prediction | R(D), no side info |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    variants = (
        ("scalar", "scalar", {}),
        ("predictive (key frame every 25 steps)", "predictive", {}),
        ("predictive, no key frames", "predictive", {"key_interval": 0}),
        (DPCA_LABEL, "vector_dpca", {}),
        (NDPCA_LABEL, "vector_ndpca", {"checkpoint": CHECKPOINT_DIR / NDPCA_CHECKPOINT_AR1}),
    )
    curves: dict[str, list[tuple[float, float]]] = {}
    for label, name, options in variants:
        for body_bits, period in POINTS:
            r = codec_point(name, body_bits, episodes, period, **options)
            curves.setdefault(label, []).append((r["body"], r["ratio"]))
            d = floor * r["ratio"]  # the excess over the same episodes' Kalman error, applied to the floor
            own = ceo_sum_rate_gaussian(a * a * d + q, noise, d)
            central = ceo_sum_rate_gaussian(float(P_pred[0, 0]), noise, d)
            gap = fmt(r["body"] - own)
            if r["ratio"] < NEAR_FLOOR:
                gap = f"({gap})"  # the bound's slope at the floor turns sampling noise into bits
            line = (
                f"| {label} | {r['budget']}{f' (every {period})' if period > 1 else ''} | {r['total']:.1f} | {r['body']:.2f} | {r['distortion']:.4g} | "
                f"{r['ratio']:.3f} | "
                f"{fmt(own)} | {gap} | {fmt(central)} | {fmt(rate_distortion_gaussian(1.0, d))} |"
            )
            print(line, flush=True)
            lines.append(line)
    return lines, floor, curves


def bits_at(curve: list[tuple[float, float]], ratio: float) -> float:
    """Body bits a codec's measured curve needs at ``D / Kalman's D = ratio`` (log-linear interpolation).

    NaN outside the curve's range of ratios; the curve's points are (body bits, ratio).
    """
    pts = sorted((r, b) for b, r in curve)
    ratios = np.log([r for r, _ in pts])
    if not ratios[0] <= np.log(ratio) <= ratios[-1]:
        return float("nan")
    return float(np.interp(np.log(ratio), ratios, [b for _, b in pts]))


def dpca_sentence(curves: dict[str, list[tuple[float, float]]]) -> str:
    """What the vector_dpca rows show: its body bits against the other codecs' at the same D."""
    dpca = [(b, r) for b, r in curves.pop(DPCA_LABEL) if r >= NEAR_FLOOR]
    scalar, predictive = curves["scalar"], curves["predictive, no key frames"]
    at = " / ".join(f"{r:.2f}" for _, r in dpca)
    extra = {"scalar": extra_bits(dpca, scalar), "predictive": extra_bits(dpca, predictive)}
    return (
        "The `vector_dpca` rows: DPCA across the sensors (`bwgym/codecs/sensor/dpca.py`, shipped checkpoint "
        "`vector_dpca_sensor_network.ckpt`): each sensor's own linear DPCA encoder, all sensors' components "
        "pooled by variance under one quantisation step; the NDPCA paper's memoryless distributed codec. "
        "Extra body bits per step it needs at equal D (its bits minus the other codec's, interpolated along "
        f"that codec's measured curve at vector_dpca's D / Kalman's D of {at}; - where that curve does not "
        f"reach the D): against `scalar` {extra['scalar']}; against `predictive, no key frames` "
        f"{extra['predictive']}. DPCA sits on or slightly above the memoryless scalar curve (it ranks "
        "components by the measurement's variance, so the noisiest sensor goes first, at the same step as "
        "the others) and pays several bits per sample more than predictive coding: the price of coding "
        "measurements rather than innovations against the receiver's prediction."
    )


def extra_bits(curve: list[tuple[float, float]], other: list[tuple[float, float]]) -> str:
    """Body bits of each point of ``curve`` minus ``other``'s at the same D / Kalman's D (``-``: out of range)."""
    return " / ".join("-" if np.isnan(x := b - bits_at(other, r)) else f"{x:+.1f}" for b, r in curve)


def ndpca_sentence(curves: dict[str, list[tuple[float, float]]]) -> str:
    """What the vector_ndpca rows show against vector_dpca at equal D (ar1)."""
    ndpca = [(b, r) for b, r in curves.pop(NDPCA_LABEL) if r >= NEAR_FLOOR]
    at = " / ".join(f"{r:.2f}" for _, r in ndpca)
    return (
        "The `vector_ndpca` rows: the neural variant (`bwgym/codecs/sensor/ndpca.py`, checkpoint "
        "`vector_ndpca_sensor_network_ar1.ckpt`): a small MLP encoder per sensor, DPCA over the latents, one "
        "joint MLP decoder of every sensor's measurement, trained on reconstruction with Alg. 1's random "
        "truncation and random quantisation steps; the fusion node adds its calibrated decoded-error variance "
        "(per sensor and frame header, measured on held-out rollouts) to R_k and treats the sensors' errors as "
        "independent, which they are not (an approximation). Extra body bits per step it needs against "
        f"`vector_dpca` at equal D (at D / Kalman's D of {at}): {extra_bits(ndpca, curves[DPCA_LABEL])}."
    )


def cv2d_rows(episodes: int) -> tuple[list[str], dict[str, list[tuple[float, float]]]]:
    """vector_dpca against vector_ndpca on cv2d (K = 4): D and D / Kalman's D against real bits."""
    import tempfile

    env = gym.make(ENV_ID, preset="cv2d", n_sensors=CODEC_SENSORS)
    dpca = VectorDPCACodec.train(sensor_frames(env), env_id=ENV_ID)
    lines = [
        "| codec (cv2d, K = 4) | budget bits | real bits/step (payload) | body bits/step | D (fusion MSE of x) "
        "| D / Kalman's D |",
        "|---|---|---|---|---|---|",
    ]
    curves: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = dpca.save(f"{tmp}/vector_dpca_cv2d.ckpt")
        variants = (
            (DPCA_LABEL, "vector_dpca", {"checkpoint": path}),
            (NDPCA_LABEL, "vector_ndpca", {}),
        )
        for label, name, options in variants:
            for body_bits, period in CV2D_POINTS:
                r = codec_point(name, body_bits, episodes, period, preset="cv2d", **options)
                curves.setdefault(label, []).append((r["body"], r["ratio"]))
                line = (
                    f"| {label} | {r['budget']} | {r['total']:.1f} | {r['body']:.2f} | {r['distortion']:.4g} "
                    f"| {r['ratio']:.3f} |"
                )
                print(line, flush=True)
                lines.append(line)
    return lines, curves


def cv2d_sentence(curves: dict[str, list[tuple[float, float]]]) -> str:
    """The cv2d comparison at equal D / Kalman's D."""
    ndpca, dpca = curves[NDPCA_LABEL], curves[DPCA_LABEL]
    at = " / ".join(f"{r:.2f}" for _, r in ndpca)
    return (
        "cv2d (sensors measure the 2-D position, noise 0.01..0.25 m^2; a random walk whose spread grows over "
        "the episode, so a memoryless codec pays for the whole range): `vector_dpca` is fitted in the run on "
        "the rollouts of its shipped recipe (seeds 1000-1049), `vector_ndpca` is the shipped "
        "`vector_ndpca_sensor_network.ckpt` (trained on the first 80 % of the same rollouts). The bounds module "
        "has no closed form for this multi-dimensional CEO problem, so the table compares by D / Kalman's D. "
        f"Extra body bits per step `vector_ndpca` needs against `vector_dpca` at equal D (at its D / Kalman's D "
        f"of {at}): {extra_bits(ndpca, dpca)}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--only", choices=("speed", "codecs"), help="run one part (default: both)")
    parser.add_argument("--episodes", type=int, default=CODEC_EPISODES, help="episodes per codec point")
    args = parser.parse_args()
    if args.only != "speed":
        write_codecs(args)
    if args.only == "codecs":
        return
    speed = speed_rows(args.steps, args.rounds)
    bounds = bounds_rows()
    print("\n".join(bounds))
    load = os.getloadavg()[0]
    lines = [
        "## SensorNetwork: speed and the limits of its presets",
        "",
        f"Command: `python benchmarks/sensors.py --steps {args.steps} --rounds {args.rounds}` "
        f"({args.rounds} interleaved rounds of {args.steps:,} steps per row, median round shown; "
        f"BLAS pinned to one thread). {machine_line()}",
        "",
        *speed,
        "",
        "`bare numpy loop` simulates the same cv2d process with K = 8 sensors one step at a time, with "
        "no Kalman or LQG reference (what a naive env pays for the dynamics alone); the env draws its "
        "noise and computes its references 256 steps at a time. Resets are counted "
        f"(200-step episodes). DESIGN.md asks >= 20,000 steps/s for 8 sensors. Load average (1 min) "
        f"at the end: {load:.1f} on {os.cpu_count()} cores.",
        "",
        "### Limits (bits per step per measured state component, summed over the K sensors)",
        "",
        "Per step the fusion node wants the component the sensors measure (x for ar1, p_x for cv2d; "
        "p_y is the same) within mean squared error D. `sigma^2 pred` is the centralised Kalman "
        "filter's steady-state prediction variance (uncompressed data from every sensor), the best "
        "side information a receiver can hold; `D floor` its filtered error, which no codec beats. "
        "`R(D), no side info`: one encoder that sees x itself and a receiver without memory "
        "(stationary variance; cv2d has none). `R_WZ(D)`: that encoder with the prediction at the "
        "decoder. `CEO sum rate`: the K sensors encode their own noisy measurements separately "
        "(quadratic Gaussian CEO with the prediction as decoder side information; a lower bound for "
        "any per-sensor codec, since a receiver of compressed data predicts worse). "
        "`CEO, own prediction` (ar1): the same with the prediction variance a^2 D + q that a receiver "
        "whose own error is D holds, the steady state of predictive coding at that distortion.",
        "",
        *bounds,
    ]
    if args.no_write:
        return
    write_section("sensors", "\n".join(lines))
    print("wrote BENCHMARKS.md")


def write_codecs(args: argparse.Namespace) -> None:
    """The ``sensor_codecs`` section: each vector codec's distortion against real bits, beside the bounds."""
    rows, floor, curves = codec_rows(args.episodes)
    neural = ndpca_sentence(curves)
    cv2d, cv2d_curves = cv2d_rows(args.episodes)
    lines = [
        "## SensorNetwork codecs: distortion against real bits, beside the CEO bound",
        "",
        f"Command: `python benchmarks/sensors.py --only codecs --episodes {args.episodes}`. {machine_line()}",
        "",
        f"ar1 preset, K = {CODEC_SENSORS} sensors (noise variances 0.1..1), estimate mode; a link of constant "
        f"budget per step (no drops; the lowest rates send every second or third step); {args.episodes} episodes of 200 steps per point, the first {BURN_IN} steps "
        "of each left out. D is the mean squared error of the fusion node's Kalman estimate of x from the "
        "decoded measurements (their noise: R_k plus the quantisation noise step^2/12); `D / Kalman's D` "
        "divides it by the error of the env's centralised Kalman filter on uncompressed data over the same "
        f"steps (the same noise); the bounds are taken at that ratio times the steady-state floor {floor:.4g} "
        "(which removes most of the sampling noise of a finite run). Bits are real and per step, summed over the sensors (= bits "
        "per sample of x): the frame as the link carries it, and its entropy-coded body without the "
        f"frame's {FRAME_OVERHEAD_BITS}-bit overhead (header byte and CRC-8; the codecs send lean frames, "
        "whose 88-bit session header, sent once per episode by the wrapper, is not in these numbers: "
        "0.44 bit per step over a 200-step episode). Bounds at the measured D, in bits "
        "per step: `CEO, own prediction`: quadratic Gaussian CEO sum rate with the prediction a^2 D + q "
        "that a receiver of error D holds as decoder side information (the steady state of any scheme "
        "that predicts from what it decoded); `gap (body)` is the body bits minus it. `CEO, centralised "
        "prediction` uses the uncompressed filter's prediction (a looser lower bound); `R(D), no side "
        "info` is one encoder that sees x with a memoryless receiver. A gap in parentheses: D within "
        f"{NEAR_FLOOR - 1:.0%} of the floor, where the bound rises so steeply that a 0.5 % sampling error "
        "in D moves it by about a bit (negative values there are that noise, not a codec beating it).",
        "",
        *rows,
        "",
        dpca_sentence(curves),
        "",
        neural,
        "",
        *cv2d,
        "",
        cv2d_sentence(cv2d_curves),
    ]
    if not args.no_write:
        write_section("sensor_codecs", "\n".join(lines))


if __name__ == "__main__":
    main()
