"""SensorNetwork in control mode: an SB3 agent on decoded measurements against LQG and Kalman + LQR.

    python benchmarks/sensor_control.py [--episodes 100] [--no-write]     # evaluate the shipped policy

The shipped policy ``bwgym/agents/checkpoints/sac_sensors_control_scalar.ckpt`` is what
``bwgym train sensor-control --timesteps 30000`` writes (its recipe: :mod:`bwgym.agents.sensor_control`;
stock SB3 SAC through :func:`bwgym.agents.rl.train_rl`, one CPU thread, seed 0; about 15 minutes on
one core). It trains on the library scenario ``sensors_control_scalar``: ``bwgym/SensorNetwork-v0``
(ar1, K = 4 sensors, mode ``control``, input range ``action_scale`` = 1, 200 steps) inside
``BandwidthLimited`` with the ``scalar`` codec on ``lora_narrowband`` at a fifth of its rate, so the
policy sees exactly what the fusion node decodes (a view not refreshed holds its last value). The
policy is SB3's ``MultiInputPolicy``, an MLP on the last ``STACK`` = 4 decoded observations of the
four sensors (gymnasium's ``FrameStackObservation``: with the current view alone a policy cannot
tell a held, stale measurement from a fresh one); during training only, the stage cost is clipped
at ``TRAIN_COST_CLIP`` = 20.

Rows (the same evaluation seeds for every row, unseen in training; one episode = 200 steps):

* ``LQG, clean data``: the env's reference ``info["lqg_cost"]``, the Kalman filter on every
  sensor's uncompressed measurement plus the infinite-horizon LQR gain, on a twin of the process
  driven by the same noise: the optimum (certainty equivalence) that any controller is measured by;
* ``Kalman + LQR``: :class:`bwgym.agents.kalman.KalmanFusionAgent` in control mode (the same
  controller run by the agent on what it is shown, quantisation noise ``step^2/12`` added to R_k,
  a held view skipped);
* ``SAC``: the shipped policy, deterministic actions;
* ``zero input``: ``u = 0`` (the process left alone), for scale;

each on clean data (the bare env) and on decoded data (the scenario's codec and link). Cost is the
summed LQR stage cost ``x' W_x x + u' W_u u`` of an episode (mean over episodes, 95 % t interval);
``cost / LQG`` divides each episode's cost by the LQG reference of the same episode (same noise),
mean and 95 % t interval over episodes (paired, so tighter than the costs' intervals).
Writes the ``sensor_control`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core (set before numpy loads)

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from report import machine_line, write_section  # noqa: E402  (run as a script)

import bwgym  # noqa: E402, F401  (registers the envs)
from bwgym.agents.base import rollout  # noqa: E402
from bwgym.agents.kalman import KalmanFusionAgent  # noqa: E402
from bwgym.agents.rl import load_rl  # noqa: E402
from bwgym.agents.sensor_control import SCENARIO, STACK, TRAIN_COST_CLIP, stacked  # noqa: E402
from bwgym.scenarios.config import load_scenario  # noqa: E402
from bwgym.scenarios.factory import make_env  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = ROOT / "bwgym" / "agents" / "checkpoints" / "sac_sensors_control_scalar.ckpt"
#: Evaluation seeds start here (training resets draw their own seeds from seed 0).
EVAL_SEED = 100_000


def decoded_env() -> gym.Env:
    """The scenario's env: SensorNetwork (control) inside BandwidthLimited (codec + link)."""
    return make_env(load_scenario(SCENARIO))


def clean_env() -> gym.Env:
    """The same SensorNetwork without codec or link."""
    scenario = load_scenario(SCENARIO)
    return gym.make(scenario.env.id, **scenario.env.kwargs)


class ZeroInput:
    """``u = 0``: the process left alone."""

    def __init__(self, env: gym.Env) -> None:
        self.shape = env.action_space.shape

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.zeros(self.shape, np.float32)


def evaluate(env: gym.Env, agent: Any, episodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-episode summed cost of ``agent`` and of the env's LQG reference, seeds ``EVAL_SEED + i``."""
    costs, refs = [], []
    ref = [0.0]

    def on_step(step: int, obs: Any, action: Any, reward: float, info: dict[str, Any]) -> None:
        ref[0] += info.get("lqg_cost", 0.0)

    for i in range(episodes):
        ref[0] = 0.0
        result = rollout(env, agent, EVAL_SEED + i, on_step=on_step)
        costs.append(-result.ret)
        refs.append(ref[0])
    return np.asarray(costs), np.asarray(refs)


def interval(values: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its 95 % t interval."""
    n = len(values)
    if n < 2:
        return float(np.mean(values)), float("nan")
    # Student's t quantile 0.975 (Cornish-Fisher expansion around the normal's 1.95996; < 0.1 % off
    # from 5 degrees of freedom on)
    z, df = 1.959964, n - 1
    t = z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
    half = t * float(np.std(values, ddof=1)) / np.sqrt(n)
    return float(np.mean(values)), float(half)


def rows(episodes: int, checkpoint: Path) -> list[str]:
    envs = {"clean": clean_env(), "decoded": decoded_env()}
    lines = [
        "| controller | data | cost per episode (95 % CI) | cost / LQG (95 % CI) | median cost / LQG "
        "| episodes > 3x LQG |",
        "|---|---|---|---|---|---|",
    ]
    reference = None
    for data, env in envs.items():
        view = stacked(env)
        sac = load_rl(checkpoint, env_id=env.unwrapped.spec.id, observation_space=view.observation_space)
        agents = {
            "Kalman + LQR": (env, KalmanFusionAgent.for_env(env)),
            "SAC (shipped)": (view, sac),
            "zero input": (env, ZeroInput(env)),
        }
        for label, (run_env, agent) in agents.items():
            t0 = time.perf_counter()
            costs, refs = evaluate(run_env, agent, episodes)
            if reference is None:
                reference = refs
                mean, half = interval(refs)
                line = f"| LQG (env reference) | clean | {mean:.2f} ± {half:.2f} | 1 | 1 | 0 |"
                print(line, flush=True)
                lines.append(line)
            assert np.allclose(refs, reference), "the LQG reference must not depend on the agent"
            mean, half = interval(costs)
            ratio = costs / refs
            rmean, rhalf = interval(ratio)
            line = (
                f"| {label} | {data} | {mean:.2f} ± {half:.2f} | {rmean:.3f} ± {rhalf:.3f} "
                f"| {float(np.median(ratio)):.3f} | {int(np.sum(ratio > 3))} |"
            )
            print(line, f"({time.perf_counter() - t0:.0f} s)", flush=True)
            lines.append(line)
        env.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes per row")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    lines = rows(args.episodes, CHECKPOINT)
    from bwgym.common.checkpoint import load_checkpoint

    meta = load_checkpoint(CHECKPOINT).metadata
    trained = int(meta.get("num_timesteps", 0))
    body = [
        "## SensorNetwork control: SB3 (SAC) on decoded measurements against LQG and Kalman + LQR",
        "",
        f"Command: `python benchmarks/sensor_control.py --episodes {args.episodes}` (evaluates the shipped "
        f"policy; `bwgym train sensor-control --timesteps 30000` retrains it). {machine_line()}",
        "",
        f"Scenario `{SCENARIO}`: ar1 process (pole 0.95, unit variance), K = 4 sensors (noise variances "
        "0.1..1), mode `control`, stage cost x^2 + 0.1 u^2, input clipped to |u| <= 1 (the env's `action_scale`; "
        "the LQG reference is not clipped), 200 steps per episode; decoded data = the "
        "`scalar` codec (lean frames) on `lora_narrowband` at a fifth of its rate (~60 bits per 0.1 s step "
        "on average, ~11 at the trough), a view not refreshed holds its last value. "
        f"{args.episodes} episodes per row, seeds {EVAL_SEED}.. (the same for every row, unseen in "
        f"training). SAC: stock stable-baselines3, `MultiInputPolicy` with a [64, 64] MLP on the last "
        f"{STACK} decoded observations (frame stack), trained {trained:,} steps on the decoded data through "
        f"`train_rl` (one CPU thread, stage cost clipped at {TRAIN_COST_CLIP:g} in training only). `LQG`: the env's reference (Kalman filter on every uncompressed "
        "measurement + LQR, same noise); `cost / LQG`: each episode's cost over its LQG cost, paired; the "
        "last column counts episodes that cost more than three times their LQG reference. The SAC policy "
        "kept is the one of the best of SB3's periodic evaluations during training (5 episodes every "
        "2,500 steps), not the last.",
        "",
        *lines,
    ]
    if not args.no_write:
        write_section("sensor_control", "\n".join(body))
        print("wrote BENCHMARKS.md")


if __name__ == "__main__":
    main()
