"""Speed of the whole loop (env + allocator + codec + link + agent) against the bare env, per part.

    python benchmarks/loop_speed.py [--steps 150] [--rounds 3] [--ppo-steps 2048] [--no-write]

All rows of a table are measured in one process, in interleaved rounds (each round runs every
row ``--steps`` steps; the table shows the median round), with torch on one thread:

- **Single env**: the bare env with random actions, then each scenario's loop as ``bwgym run``
  builds it (``lora_ndpca``: task-aware NDPCA + LoRa link + BC agent; ``lora_ndpca_latent``: the
  same sender and link, the receiver hands the held latent code to the latent agent, no decoder, its
  parsing counted in ``wrapper``; ``fleet_lte_jpeg``: JPEG;
  ``sensors_narrowband_predictive``: SensorNetwork-v0, K = 8, predictive codec + Kalman fusion;
  ``bwgym/AllocateBandwidth-v0``: the allocation env, random splits), with milliseconds per step
  of each part: the env's own step, the allocator (with the session-header logic), the codec's
  networks while compressing, the rate search and entropy coding, the link (and parsing the
  received bytes), the decoder, the wrapper's bookkeeping (held frames, PSNR, info) and the agent.
- **Codec**: task-aware NDPCA compress + decompress per step at budgets from 32 bits to 16 kbit.
- **Vector**: ``lora_ndpca`` on N = 1, 2, 4, 8, 16 envs of one :class:`VectorBandwidthLimited`
  (one process), and N envs split over 2 worker processes (what ``--workers 2 --num-envs N/2``
  runs), as env steps per second against the single env loop.
- **PPO**: the wall time of ``--ppo-steps`` PPO steps on ``narrowband_ndpca`` from the BC prior
  (as ``make checkpoints`` trains it), extrapolated to 100k steps.

Writes the ``loop_speed`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from report import machine_line, parse_args, write_section  # noqa: E402  (run as a script)

import bwgym  # noqa: F401  (first: it selects the headless GL backend before mujoco loads)
from bwgym.envs.bandwidth import BandwidthLimited
from bwgym.scenarios.config import load_scenario
from bwgym.scenarios.factory import make_agent, make_env, make_vector_env

#: Command-line options: (flag, type, default, help).
OPTIONS = [
    ("--steps", int, 150, "steps per row per round"),
    ("--rounds", int, 3, "interleaved rounds (the median is shown)"),
    ("--ppo-steps", int, 2048, "PPO steps to time (0: skip)"),
]
PARTS = ("env", "allocator", "networks (tx)", "search + entropy", "link", "decode", "wrapper", "agent")
BUDGETS = (32, 128, 1024, 8192, 16384)


def _timed(times: dict[str, float], part: str, fn: Callable) -> Callable:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            times[part] += time.perf_counter() - start

    return wrapper


class Loop:
    """One env and its agent stepping; ``times`` sums the seconds of each part."""

    def __init__(self, build: Callable[[], tuple[Any, Any]], seed: int = 0) -> None:
        self.env, self.agent = build()
        self.times: dict[str, float] = defaultdict(float)
        self.steps = 0
        self.seed = seed
        self._instrument()
        self._reset()

    def _instrument(self) -> None:
        env, t = self.env, self.times
        if isinstance(env, BandwidthLimited):
            codec = env.codec
            inner = env.env
            inner.step = _timed(t, "env", inner.step)
            env._prepare = _timed(t, "allocator", env._prepare)
            env._transmit = _timed(t, "link", env._transmit)
            env._finish = _timed(t, "wrapper", env._finish)
            codec.compress = _timed(t, "compress", codec.compress)
            codec.decompress = _timed(t, "decode", codec.decompress)
            for name in ("_latent_coefficients", "_residual_coefficients"):
                if hasattr(codec, name):
                    setattr(codec, name, _timed(t, "networks (tx)", getattr(codec, name)))
        else:
            env.step = _timed(t, "env", env.step)
        if self.agent is not None:
            self.agent.act = _timed(t, "agent", self.agent.act)

    def _reset(self) -> None:
        self.obs, _ = self.env.reset(seed=self.seed)
        self.seed += 1
        if self.agent is not None and hasattr(self.agent, "reset"):
            self.agent.reset(self.seed)

    def run(self, steps: int) -> float:
        """Step ``steps`` times; return the steps per second (resets included)."""
        start = time.perf_counter()
        for _ in range(steps):
            action = self.agent.act(self.obs) if self.agent is not None else self.env.action_space.sample()
            self.obs, _, terminated, truncated, _ = self.env.step(action)
            self.steps += 1
            if terminated or truncated:
                self._reset()
        return steps / (time.perf_counter() - start)

    def part_ms(self) -> dict[str, float]:
        t = dict(self.times)
        if "compress" in t:
            t["search + entropy"] = t.pop("compress") - t.get("networks (tx)", 0.0)
        return {p: 1e3 * t[p] / self.steps for p in PARTS if p in t}


def _bare(env_id: str, **kwargs: Any) -> Callable[[], tuple[Any, Any]]:
    import gymnasium as gym

    def build() -> tuple[Any, Any]:
        env = gym.make(env_id, **kwargs)
        env.action_space.seed(0)
        return env, None

    return build


def _scenario(
    name: str, agent: bool = True, overrides: dict[str, Any] | None = None
) -> Callable[[], tuple[Any, Any]]:
    def build() -> tuple[Any, Any]:
        scenario = load_scenario(name, overrides)
        env = make_env(scenario)
        return env, (make_agent(scenario, env) if agent else None)

    return build


def _vector_rate(name: str, num_envs: int, steps: int, seed: int = 0) -> float:
    """Env steps per second of ``num_envs`` envs of one VectorBandwidthLimited, each with its agent."""
    scenario = load_scenario(name)
    venv = make_vector_env(scenario, num_envs)
    agent = make_agent(scenario, venv.envs[0])  # BC is memoryless: one network for every env, as runs do
    agents = [agent] * num_envs
    obs, _ = venv.reset(seed=seed)
    venv.step(np.zeros((num_envs, 4), np.float32))  # warm up
    start = time.perf_counter()
    rounds = max(1, steps // num_envs)
    for _ in range(rounds):
        actions = np.stack([a.act({k: v[i] for k, v in obs.items()}) for i, a in enumerate(agents)])
        obs, *_ = venv.step(actions)
    rate = rounds * num_envs / (time.perf_counter() - start)
    venv.close()
    return rate


def _worker_rate(args: tuple[str, int, int, int]) -> float:
    torch.set_num_threads(1)
    return _vector_rate(*args)


def codec_table(steps: int) -> tuple[list[tuple[int, float, float]], list[str]]:
    """Task-aware NDPCA compress and decompress ms per step at each budget (real v1 frames)."""
    import gymnasium as gym

    from bwgym.codecs import make_codec

    env = gym.make("bwgym/LocateLift-v1")
    obs, _ = env.reset(seed=0)
    frames = []
    for _ in range(steps):
        obs, *_ = env.step(env.action_space.sample())
        frames.append({k: obs[k] for k in ("arm", "side")})
    codec = make_codec("ndpca", env.observation_space, env_id="bwgym/LocateLift-v1")
    codec.decompress(codec.compress(frames[0], 1024))  # warm up
    rows = []
    for budget in BUDGETS:
        tc = td = 0.0
        for f in frames:
            start = time.perf_counter()
            payload = codec.compress(f, budget)
            mid = time.perf_counter()
            codec.decompress(payload)
            tc, td = tc + mid - start, td + time.perf_counter() - mid
        rows.append((budget, 1e3 * tc / len(frames), 1e3 * td / len(frames)))
    return rows, network_facts(codec, frames)


def network_facts(codec: Any, frames: list[dict[str, np.ndarray]]) -> list[str]:
    """Why the codec runs its networks as it does on CPU, measured on the same frames.

    The receiver's decoder at batch size 1 with oneDNN on (PyTorch's default) and off (what the
    codec does), and whether their outputs agree bit for bit; and whether one batched encoder pass
    gives the latents of N single passes (it does not, which is why CPU batches run per view set).
    """
    stacked = {k: np.stack([f[k] for f in frames]) for k in ("arm", "side")}
    latents = codec.latents(stacked)
    z = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in latents.items()}
    single = [{k: v[i : i + 1] for k, v in z.items()} for i in range(len(frames))]
    ms, outs = {}, {}
    for enabled in (True, False, True, False):  # interleaved: the second round is kept
        with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=enabled):
            start = time.perf_counter()
            outs[enabled] = [codec.net.decode(s) for s in single]
            ms[enabled] = 1e3 * (time.perf_counter() - start) / len(single)
    same = all(torch.equal(a[v], b[v]) for a, b in zip(outs[True], outs[False], strict=True) for v in a)
    one_by_one = [codec.latents({k: v[i : i + 1] for k, v in stacked.items()}) for i in range(len(frames))]
    diff = max(
        float(np.abs(latents[k][i] - one_by_one[i][k][0]).max()) for i in range(len(frames)) for k in latents
    )
    return [
        f"decoder at batch size 1: {ms[True]:.2f} ms with oneDNN, {ms[False]:.2f} ms without "
        f"(ratio {ms[True] / ms[False]:.2f}); outputs bit-identical: {'yes' if same else 'NO'}",
        f"encoder on {len(frames)} frames in one batch against one at a time: largest latent difference "
        f"{diff:.1e} ({'bit-identical' if diff == 0 else 'not bit-identical'})",
    ]


def ppo_seconds(steps: int) -> float:
    """Wall seconds of ``bwgym train agent --algo ppo`` on narrowband_ndpca from the BC prior."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            str(Path(sys.executable).parent / "bwgym"), "train", "agent", "--algo", "ppo",
            "--env", "bwgym/LocateLift-v1", "--scenario", "narrowband_ndpca",
            "--bc-init", "bwgym/agents/checkpoints/bc_locate_lift_v1_narrowband_ndpca.ckpt",
            "--env-kwargs", '{"reward_type": "sparse"}', "--total-timesteps", str(steps),
            "--eval-freq", str(10 * steps), "--checkpoint-freq", str(10 * steps),
            "--rl-kwarg", "n_steps=512", "--rl-kwarg", "batch_size=64", "--rl-kwarg", "n_epochs=5",
            "--seed", "0", "--threads", "1", "--device", "cpu", "--out", f"{tmp}/ppo",
        ]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=Path(__file__).resolve().parent.parent)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__, argv, OPTIONS)
    torch.set_num_threads(1)
    import os

    load_before = os.getloadavg()[0]
    rows: dict[str, tuple[str, Callable[[], tuple[Any, Any]]]] = {
        "bare LocateLift-v1, random actions": ("lift", _bare("bwgym/LocateLift-v1")),
        "LocateLift-v1 + BC agent, no codec": ("lift", _scenario("uncompressed")),
        "lora_ndpca (NDPCA + LoRa link + BC)": ("lift", _scenario("lora_ndpca")),
        # the receiver hands the agent the held latent code: no decoder, an MLP agent
        "lora_ndpca_latent (NDPCA + LoRa link + latent agent)": ("lift", _scenario("lora_ndpca_latent")),
        # one robot of the 16-robot fleet on its equal share (the fleet itself: benchmarks/fleet.py)
        "fleet_lte_jpeg (JPEG + LTE/16 + BC)": (
            "lift",
            _scenario("fleet_lte_jpeg", overrides={"fleet": None, "trace.scale": 1 / 16}),
        ),
        "bare SensorNetwork-v0 (K = 8), random actions": (
            "sensors",
            _bare("bwgym/SensorNetwork-v0", preset="ar1", n_sensors=8, horizon=200),
        ),
        "sensors_narrowband_predictive (predictive + Kalman)": (
            "sensors",
            _scenario("sensors_narrowband_predictive"),
        ),
        "AllocateBandwidth-v0, random splits": ("alloc", _bare("bwgym/AllocateBandwidth-v0")),
    }
    loops = {name: Loop(build) for name, (_, build) in rows.items()}
    rates: dict[str, list[float]] = defaultdict(list)
    for _ in range(args.rounds):
        for name, loop in loops.items():
            steps = args.steps * (20 if rows[name][0] == "sensors" else 1)
            rates[name].append(loop.run(steps))
    median = {name: statistics.median(r) for name, r in rates.items()}
    base = {"lift": median["bare LocateLift-v1, random actions"]}
    base["sensors"] = median["bare SensorNetwork-v0 (K = 8), random actions"]
    base["alloc"] = base["lift"]

    codec_rows, facts = codec_table(max(20, args.steps // 3))
    env_ms = 1e3 / base["lift"]

    single = median["lora_ndpca (NDPCA + LoRa link + BC)"]
    vector_rows = []
    for n in (1, 2, 4, 8, 16):
        rate = statistics.median(_vector_rate("lora_ndpca", n, args.steps) for _ in range(args.rounds))
        vector_rows.append((f"{n} envs, 1 process", rate))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        for n in (2, 8, 16):
            pool.map(_worker_rate, [("lora_ndpca", n // 2, 8, 0)] * 2)  # imports and models
            rate = sum(pool.map(_worker_rate, [("lora_ndpca", n // 2, args.steps, 0)] * 2))
            vector_rows.append((f"{n} envs, 2 processes x {n // 2}", rate))
    ppo = ppo_seconds(args.ppo_steps) if args.ppo_steps else None
    load_after = os.getloadavg()[0]

    lines = [
        "## Loop speed",
        "",
        f"Command: `python benchmarks/loop_speed.py --steps {args.steps} --rounds {args.rounds} "
        f"--ppo-steps {args.ppo_steps}`. {machine_line()} No GPU: every row ran on CPU, torch on one "
        f"thread. Load average (1 min) before / after: {load_before:.1f} / {load_after:.1f}.",
        "",
        f"Single env, {args.rounds} interleaved rounds of {args.steps} steps per row (x20 for the "
        "sensor rows), median round. `vs bare` is the row's steps/s over its bare env's in the same "
        "run; the parts are milliseconds per step (`networks (tx)`: the sender's encoder, and its "
        "decoder where the residual layer is tried; `decode`: the receiver's whole decompress).",
        "",
        "| loop | steps/s | vs bare | " + " | ".join(PARTS) + " |",
        "|---|---|---|" + "---|" * len(PARTS),
    ]
    for name, (kind, _) in rows.items():
        ms = loops[name].part_ms()
        cells = " | ".join(f"{ms[p]:.2f}" if p in ms else "-" for p in PARTS)
        lines.append(f"| {name} | {median[name]:,.0f} | {median[name] / base[kind]:.2f} | {cells} |")
    lines += [
        "",
        f"Task-aware NDPCA alone (shipped v1 checkpoint, real LocateLift-v1 frames), ms per step, "
        f"against the bare env step of the same run ({env_ms:.2f} ms):",
        "",
        "| budget (bits) | compress ms | decompress ms | total ms | total / env step |",
        "|---|---|---|---|---|",
    ]
    for budget, c, d in codec_rows:
        lines.append(f"| {budget:,} | {c:.2f} | {d:.2f} | {c + d:.2f} | {(c + d) / env_ms:.2f} |")
    lines += ["", "Its networks on CPU, same frames: " + "; ".join(facts) + "."]
    lines += [
        "",
        "`lora_ndpca` on vector envs (`VectorBandwidthLimited`; one BC network shared by the envs), env steps/s "
        f"against the single env loop above ({single:,.0f} steps/s):",
        "",
        "| vector | env steps/s | vs single env loop |",
        "|---|---|---|",
    ]
    for label, rate in vector_rows:
        lines.append(f"| {label} | {rate:,.0f} | {rate / single:.2f} |")
    if ppo is not None:
        lines += [
            "",
            f"PPO on `narrowband_ndpca` from the DAgger BC prior (as `make checkpoints`), "
            f"{args.ppo_steps:,} steps: {ppo:.0f} s wall, i.e. {ppo * 100_000 / args.ppo_steps / 60:.0f} min "
            "per 100k steps extrapolated (start-up included, so the extrapolation is pessimistic).",
        ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("loop_speed", text)


if __name__ == "__main__":
    main()
