"""Hostile input to every ``bwgym`` command: each bad invocation is refused before anything exists.

Every case runs in-process through :func:`bwgym.cli.main` with an empty working directory and
asserts exit status 2, one line on stderr naming the argument (and, where there is one, its bound),
no traceback, and no new file or folder in the working directory. Resource caps (workers, envs,
grid points, durations, sensors) are checked before a process, a folder or an array is made.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from bwgym.cli import main, parse_overrides
from bwgym.cli.args import MAX_N_ENVS, max_processes
from bwgym.scenarios import config as scenario_config

#: A tiny scenario (48 px LocateLift-v0, a constant trace, the random agent): cheap to validate.
BASE = {
    "name": "hostile_cli",
    "env": {"id": "bwgym/LocateLift-v0", "kwargs": {"image_size": 48}},
    "trace": {"generator": "constant", "params": {"bps": 400_000.0, "duration_s": 10.0}},
    "codec": {"name": "jpeg"},
    "agent": {"name": "random"},
    "run": {"episodes": 1, "seed": 0},
}
#: The same on SensorNetwork: vector views, no camera, no scripted expert.
SENSORS = {
    "name": "hostile_sensors",
    "env": {"id": "bwgym/SensorNetwork-v0", "kwargs": {"n_sensors": 2}},
    "trace": {"generator": "constant", "params": {"bps": 4_000.0, "duration_s": 10.0}},
    "codec": {"name": "none"},
    "agent": {"name": "random"},
    "run": {"episodes": 1, "seed": 0},
}
#: One more worker (or env process) than this machine allows: refused on any machine.
TOO_MANY = str(max_processes() + 1)
TOO_MANY_ENVS = str(min(MAX_N_ENVS, max_processes()) + 1)
HUGE = str(10**12)
WIDE = ",".join(str(i) for i in range(1, 1001))  # 1000 grid values
#: "Billion laughs" in block style (no commas, no braces): one value of --set or --grid, 9**9 leaves.
ALIAS_BOMB = "".join(f"l{i}: &l{i}\n" + f"- {'lol' if i == 0 else f'*l{i - 1}'}\n" * 9 for i in range(9))
DEEP_100 = "[" * 100 + "]" * 100  # 100 nested lists (the bound is MAX_SCENARIO_DEPTH=32)

#: Hostile YAML in one option's value: (case, key, value, a grid holding it, what the refusal says).
#: ``run --set``, ``sweep --grid`` and ``sweep --set`` each get every row; the refusal names the
#: option and the key.
HOSTILE_YAML = [
    ("invalid-yaml", "trace.scale", "[1", "[1", ["YAML"]),
    ("alias-bomb", "trace.params", ALIAS_BOMB, ALIAS_BOMB, ["aliases", "!lol"]),
    ("deep-100", "env.kwargs", DEEP_100, f"{DEEP_100},[]", ["MAX_SCENARIO_DEPTH"]),
]


def _hostile_yaml(option: str, argv: list[str]) -> list[tuple[str, list[str], list[str]]]:
    """A case per :data:`HOSTILE_YAML` row: ``argv`` then ``option key=<the row's value or grid>``."""
    return [
        (
            f"{argv[0]}-{option.strip('-')}-{name}",
            [*argv, option, f"{key}={grid if option == '--grid' else value}"],
            [f"{option} {key}", *says],
        )
        for name, key, value, grid, says in HOSTILE_YAML
    ]


# (case id, argv, words the one line must hold; "!word" must NOT appear)
# Placeholders: {scenario} {sensors} {empty_npz} {text_npz} {keyless_npz} {afile} (outside the cwd);
# argv goes through str.format, so a literal brace is doubled.
RUN = [
    ("run-workers-64", ["run", "{scenario}", "--workers", TOO_MANY], ["--workers", "per core"]),
    ("run-workers-1e12", ["run", "{scenario}", "--workers", HUGE], ["--workers", "!overflow"]),
    ("run-workers-zero", ["run", "{scenario}", "--workers", "0"], ["--workers", "[1,"]),
    ("run-workers-negative", ["run", "{scenario}", "--workers", "-3"], ["--workers"]),
    ("run-workers-word", ["run", "{scenario}", "--workers", "many"], ["--workers"]),
    ("run-episodes-1e12", ["run", "{scenario}", "--episodes", HUGE], ["--episodes", "10,000,000", "!seed"]),
    ("run-episodes-zero", ["run", "{scenario}", "--episodes", "0"], ["--episodes"]),
    ("run-episodes-float", ["run", "{scenario}", "--episodes", "2.5"], ["--episodes"]),
    ("run-seed-negative", ["run", "{scenario}", "--seed", "-1"], ["--seed"]),
    ("run-seed-2-31", ["run", "{scenario}", "--seed", str(2**31)], ["--seed"]),
    ("run-num-envs-zero", ["run", "{scenario}", "--num-envs", "0"], ["--num-envs", "64"]),
    ("run-num-envs-negative", ["run", "{scenario}", "--num-envs", "-2"], ["--num-envs"]),
    ("run-num-envs-65", ["run", "{scenario}", "--num-envs", "65"], ["--num-envs", "[1, 64]"]),
    ("run-num-envs-word", ["run", "{scenario}", "--num-envs", "x"], ["--num-envs"]),
    ("run-device-cuda-missing", ["run", "{scenario}", "--device", "cuda:7"], ["run.device", "cuda:7"]),
    ("run-device-unknown", ["run", "{scenario}", "--device", "tpu"], ["run.device", "tpu"]),
    (
        "run-step-seconds-1e300",
        ["run", "{scenario}", "--set", "link.step_seconds=1e300"],
        ["link.step_seconds", "86400", "!overflow"],
    ),
    (
        "run-step-seconds-negative",
        ["run", "{scenario}", "--set", "link.step_seconds=-1"],
        ["link.step_seconds"],
    ),
    (
        "run-latency-1e9",
        ["run", "{scenario}", "--set", "link.latency_steps=1000000000"],
        ["link.latency_steps"],
    ),
    ("run-set-num-envs-zero", ["run", "{scenario}", "--set", "run.num_envs=0"], ["run.num_envs", "64"]),
    ("run-set-num-envs-1000", ["run", "{scenario}", "--set", "run.num_envs=1000"], ["run.num_envs"]),
    (
        "run-set-workers-per-core",
        ["run", "{scenario}", "--set", f"run.workers={TOO_MANY}"],
        ["run.workers", "per core"],
    ),
    (
        "run-set-workers-huge",
        ["run", "{scenario}", "--set", f"run.workers={HUGE}"],
        ["run.workers", "MAX_WORKERS"],
    ),
    (
        "run-set-episodes-1e12",
        ["run", "{scenario}", "--set", f"run.episodes={HUGE}"],
        ["run.episodes", "!run.seed"],
    ),
    (
        "run-set-scale-1e7",
        ["run", "{scenario}", "--set", "trace.scale=1e7"],
        ["trace.scale", "1e+06", "!expected float"],
    ),
    ("run-set-no-equals", ["run", "{scenario}", "--set", "codec.name"], ["--set", "key=value"]),
    (
        "run-set-duplicate-key",
        ["run", "{scenario}", "--set", "env.kwargs={{image_size: 48, image_size: 64}}"],
        ["--set env.kwargs", "duplicate key 'image_size'"],
    ),
    (
        "run-set-checkpoint-missing",
        ["run", "{scenario}", "--set", "codec.checkpoint=nope.ckpt"],
        ["nope.ckpt", "working directory", "!resolved against"],
    ),
    (
        "run-set-agent-ckpt-missing",
        ["run", "{scenario}", "--set", "agent.checkpoint=sub/agent.ckpt"],
        ["sub/agent.ckpt", "working directory"],
    ),
    (
        "run-set-trace-file-missing",
        ["run", "{scenario}", "--set", "trace.source=missing.csv"],
        ["missing.csv"],
    ),
    (
        "run-set-sensors-1e7",
        ["run", "{sensors}", "--set", "env.kwargs.n_sensors=10000000"],
        ["n_sensors", "MAX_SENSORS"],
    ),
    (
        "run-set-sensors-horizon",
        ["run", "{sensors}", "--set", f"env.kwargs.horizon={HUGE}"],
        ["horizon", "MAX_HORIZON"],
    ),
    ("run-video-sensors", ["run", "{sensors}", "--video"], ["--video", "camera"]),
    ("run-resume-without-out", ["run", "{scenario}", "--resume"], ["--resume", "--out"]),
    ("run-unknown-flag", ["run", "{scenario}", "--wrokers", "2"], ["unrecognized arguments"]),
    ("run-no-scenario", ["run"], ["scenario", "required"]),
    ("run-library-unknown", ["run", "lora_ndcpa"], ["scenario", "lora_ndpca"]),
    ("run-out-is-a-file", ["run", "{scenario}", "--out", "{afile}"], ["file"]),
    *_hostile_yaml("--set", ["run", "{scenario}"]),
]
SWEEP = [
    (
        "sweep-grid-1000x1000",
        ["sweep", "{scenario}", "--grid", f"trace.scale={WIDE}", "--grid", f"run.seed={WIDE}"],
        ["--grid", "1,000,000", "MAX_SWEEP_POINTS"],
    ),
    (
        "sweep-grid-1001",
        ["sweep", "{scenario}", "--grid", f"run.seed={WIDE},1001"],
        ["1,001", "MAX_SWEEP_POINTS"],
    ),
    (
        "sweep-workers-64",
        ["sweep", "{scenario}", "--grid", "trace.scale=0.5,1", "--workers", TOO_MANY],
        ["--workers"],
    ),
    (
        "sweep-workers-1e12",
        ["sweep", "{scenario}", "--grid", "trace.scale=0.5,1", "--workers", HUGE],
        ["--workers"],
    ),
    (
        "sweep-workers-zero",
        ["sweep", "{scenario}", "--grid", "trace.scale=0.5,1", "--workers", "0"],
        ["--workers"],
    ),
    (
        "sweep-num-envs-zero",
        ["sweep", "{scenario}", "--grid", "trace.scale=0.5,1", "--num-envs", "0"],
        ["--num-envs"],
    ),
    (
        "sweep-num-envs-65",
        ["sweep", "{scenario}", "--grid", "trace.scale=0.5,1", "--num-envs", "65"],
        ["--num-envs"],
    ),
    (
        "sweep-episodes-1e12",
        ["sweep", "{scenario}", "--grid", "trace.scale=0.5,1", "--episodes", HUGE],
        ["--episodes"],
    ),
    (
        "sweep-grid-checkpoint-missing",
        ["sweep", "{scenario}", "--grid", "codec.checkpoint=a.ckpt,b.ckpt"],
        ["--grid codec.checkpoint", "a.ckpt", "working directory"],
    ),
    (
        "sweep-grid-step-seconds-1e300",
        ["sweep", "{scenario}", "--grid", "link.step_seconds=1e300,0.04"],
        ["link.step_seconds", "86400"],
    ),
    ("sweep-grid-num-envs-99", ["sweep", "{scenario}", "--grid", "run.num_envs=1,99"], ["run.num_envs"]),
    (
        "sweep-connect-timeout-negative",
        ["sweep", "{scenario}", "--grid", "trace.scale=1,2", "--connect-timeout", "-1"],
        ["--connect-timeout"],
    ),
    (
        "sweep-connect-timeout-nan",
        ["sweep", "{scenario}", "--grid", "trace.scale=1,2", "--connect-timeout", "nan"],
        ["--connect-timeout"],
    ),
    ("sweep-no-grid", ["sweep", "{scenario}"], ["--grid"]),
    ("sweep-grid-unknown-key", ["sweep", "{scenario}", "--grid", "trace.scael=1,2"], ["trace.scale"]),
    *_hostile_yaml("--grid", ["sweep", "{scenario}"]),
    *_hostile_yaml("--set", ["sweep", "{scenario}", "--grid", "trace.scale=0.5,1"]),
]
EVALUATE = [
    (
        "evaluate-codec-ckpt-missing",
        ["evaluate", "--agent", "random", "--codec", "ndpca", "--codec-checkpoint", "nope.ckpt"],
        ["--codec-checkpoint", "'nope.ckpt'", "working directory", "!resolved against"],
    ),
    (
        "evaluate-agent-ckpt-missing",
        ["evaluate", "--agent", "bc", "--agent-checkpoint", "models/bc.ckpt"],
        ["--agent-checkpoint", "models/bc.ckpt", "!resolved against"],
    ),
    (
        "evaluate-trace-missing",
        ["evaluate", "--agent", "random", "--trace", "my/trace.csv"],
        ["--trace", "my/trace.csv"],
    ),
    ("evaluate-episodes-zero", ["evaluate", "--agent", "random", "--episodes", "0"], ["--episodes"]),
    (
        "evaluate-episodes-1e12",
        ["evaluate", "--agent", "random", "--episodes", HUGE],
        ["--episodes", "!seed"],
    ),
    ("evaluate-workers-64", ["evaluate", "--agent", "random", "--workers", TOO_MANY], ["--workers"]),
    ("evaluate-num-envs-zero", ["evaluate", "--agent", "random", "--num-envs", "0"], ["--num-envs"]),
    ("evaluate-num-envs-100", ["evaluate", "--agent", "random", "--num-envs", "100"], ["--num-envs", "64"]),
    ("evaluate-scale-1e7", ["evaluate", "--agent", "random", "--scale", "1e7"], ["--scale", "1e+06"]),
    ("evaluate-scale-nan", ["evaluate", "--agent", "random", "--scale", "nan"], ["--scale"]),
    ("evaluate-scale-zero", ["evaluate", "--agent", "random", "--scale", "0"], ["--scale"]),
    ("evaluate-seed-negative", ["evaluate", "--agent", "random", "--seed", "-5"], ["--seed"]),
    ("evaluate-env-unknown", ["evaluate", "--agent", "random", "--env", "bwgym/Nope-v0"], ["env.id"]),
    ("evaluate-codec-unknown", ["evaluate", "--agent", "random", "--codec", "jpg"], ["codec.name", "jpeg"]),
]
EXPERT = [
    ("expert-episodes-zero", ["expert", "--episodes", "0"], ["--episodes"]),
    ("expert-episodes-1e12", ["expert", "--episodes", HUGE], ["--episodes", "100,000"]),
    ("expert-env-unknown", ["expert", "--env", "bwgym/Nope-v0"], ["--env", "bwgym/LocateLift-v1"]),
    ("expert-env-sensors", ["expert", "--env", "bwgym/SensorNetwork-v0"], ["--env", "LocateLift"]),
    ("expert-env-not-bwgym", ["expert", "--env", "CartPole-v1"], ["--env"]),
    ("expert-noise-nan", ["expert", "--noise-std", "nan"], ["--noise-std"]),
    ("expert-noise-negative", ["expert", "--noise-std", "-1"], ["--noise-std"]),
    ("expert-seed-negative", ["expert", "--seed", "-1"], ["--seed"]),
    ("expert-out-is-a-file", ["expert", "--episodes", "1", "--out", "{afile}"], ["--out", "file"]),
]
COLLECT = [
    (
        "collect-env-sensors",
        ["collect", "--env", "bwgym/SensorNetwork-v0", "--out", "d"],
        ["--env", "LocateLift"],
    ),
    ("collect-env-unknown", ["collect", "--env", "nope", "--out", "d"], ["--env", "unknown"]),
    ("collect-episodes-zero", ["collect", "--episodes", "0", "--out", "d"], ["--episodes"]),
    (
        "collect-episodes-1e9",
        ["collect", "--episodes", "1000000000", "--out", "d"],
        ["--episodes", "100,000"],
    ),
    ("collect-no-out", ["collect"], ["--out", "required"]),
    (
        "collect-env-kwargs-list",
        ["collect", "--env-kwargs", "[1]", "--out", "d"],
        ["--env-kwargs", "JSON object"],
    ),
    ("collect-noise-inf", ["collect", "--noise-std", "inf", "--out", "d"], ["--noise-std"]),
]
AGENT = ["train", "agent"]
TRAIN_AGENT = [
    ("agent-env-unknown", [*AGENT, "--env", "nope", "--out", "a.ckpt"], ["--env", "unknown"]),
    ("agent-ppo-env-unknown", [*AGENT, "--algo", "ppo", "--env", "nope", "--out", "r"], ["--env", "unknown"]),
    ("agent-ppo-device", [*AGENT, "--algo", "ppo", "--device", "nope", "--out", "r"], ["--device", "nope"]),
    ("agent-bc-device", [*AGENT, "--device", "nope", "--out", "a.ckpt"], ["--device"]),
    (
        "agent-vec-vector-no-scenario",
        [*AGENT, "--algo", "ppo", "--vec", "vector", "--out", "r"],
        ["--scenario"],
    ),
    ("agent-vec-unknown", [*AGENT, "--algo", "ppo", "--vec", "async", "--out", "r"], ["--vec", "async"]),
    (
        "agent-rl-kwarg-abc",
        [*AGENT, "--algo", "ppo", "--rl-kwarg", "learning_rate=abc", "--out", "r"],
        ["--rl-kwarg learning_rate", "'abc'"],
    ),
    (
        "agent-rl-kwarg-unknown",
        [*AGENT, "--algo", "ppo", "--rl-kwarg", "lerning_rate=1", "--out", "r"],
        ["learning_rate"],
    ),
    (
        "agent-rl-kwarg-net-200000",
        [*AGENT, "--algo", "ppo", "--rl-kwarg", "policy_kwargs={{net_arch: [200000]}}", "--out", "r"],
        ["net_arch", "4096"],
    ),
    (
        "agent-sac-buffer-1e9",
        [*AGENT, "--algo", "sac", "--rl-kwarg", "buffer_size=1000000000", "--out", "r"],
        ["buffer_size"],
    ),
    (
        "agent-rl-kwarg-bad-yaml",
        [*AGENT, "--algo", "ppo", "--rl-kwarg", "gamma=[1", "--out", "r"],
        ["--rl-kwarg", "YAML"],
    ),
    ("agent-rl-kwarg-gamma-2", [*AGENT, "--algo", "ppo", "--rl-kwarg", "gamma=2", "--out", "r"], ["gamma"]),
    ("agent-n-envs-1e9", [*AGENT, "--algo", "ppo", "--n-envs", "1000000000", "--out", "r"], ["--n-envs"]),
    (
        "agent-n-envs-per-core",
        [*AGENT, "--algo", "ppo", "--n-envs", TOO_MANY_ENVS, "--out", "r"],
        ["--n-envs"],
    ),
    ("agent-n-envs-zero", [*AGENT, "--algo", "ppo", "--n-envs", "0", "--out", "r"], ["--n-envs"]),
    ("agent-ppo-out-file", [*AGENT, "--algo", "ppo", "--out", "x.ckpt"], ["--out", "folder"]),
    ("agent-bc-out-suffix", [*AGENT, "--out", "x.txt"], ["--out", ".ckpt"]),
    ("agent-lr-nan", [*AGENT, "--lr", "nan", "--out", "a.ckpt"], ["--lr"]),
    ("agent-val-fraction-one", [*AGENT, "--val-fraction", "1", "--out", "a.ckpt"], ["--val-fraction"]),
    ("agent-batch-zero", [*AGENT, "--batch-size", "0", "--out", "a.ckpt"], ["--batch-size"]),
    ("agent-episodes-zero", [*AGENT, "--episodes", "0", "--out", "a.ckpt"], ["--episodes"]),
    ("agent-bc-env-sensors", [*AGENT, "--env", "bwgym/SensorNetwork-v0", "--out", "a.ckpt"], ["LocateLift"]),
    ("agent-ppo-resume-nothing", [*AGENT, "--algo", "ppo", "--resume", "--out", "r"], ["--resume"]),
    (
        "agent-ppo-bc-init-missing",
        [*AGENT, "--algo", "ppo", "--bc-init", "nope.ckpt", "--out", "r"],
        ["--bc-init"],
    ),
    (
        "agent-bc-rl-kwarg",
        [*AGENT, "--rl-kwarg", "learning_rate=1", "--out", "a.ckpt"],
        ["--rl-kwarg", "ppo"],
    ),
    ("agent-threads-huge", [*AGENT, "--threads", "100000", "--out", "a.ckpt"], ["--threads"]),
    (
        "agent-noise-std-nan",
        [*AGENT, "--algo", "ppo", "--initial-noise-std", "nan", "--out", "r"],
        ["--initial-noise-std"],
    ),
    ("agent-eval-seed-negative", [*AGENT, "--eval-seed", "-1", "--out", "a.ckpt"], ["--eval-seed"]),
]
CODEC = ["train", "codec"]
TRAIN_CODEC = [
    (
        "codec-env-sensors",
        [*CODEC, "--codec", "ndpca", "--env", "bwgym/SensorNetwork-v0", "--out", "c.ckpt"],
        ["LocateLift"],
    ),
    ("codec-env-unknown", [*CODEC, "--codec", "ndpca", "--env", "nope", "--out", "c.ckpt"], ["--env"]),
    ("codec-device", [*CODEC, "--codec", "ndpca", "--device", "nope", "--out", "c.ckpt"], ["--device"]),
    ("codec-steps-zero", [*CODEC, "--codec", "ndpca", "--steps", "0", "--out", "c.ckpt"], ["--steps"]),
    (
        "codec-latent-huge",
        [*CODEC, "--codec", "ndpca", "--latent-dim", "100000", "--out", "c.ckpt"],
        ["--latent-dim"],
    ),
    ("codec-beta-3", [*CODEC, "--codec", "gray_wyner", "--beta", "3", "--out", "g.ckpt"], ["--beta"]),
    ("codec-etas-nan", [*CODEC, "--codec", "gray_wyner", "--etas", "0.1,nan", "--out", "g.ckpt"], ["--etas"]),
    ("codec-lr-negative", [*CODEC, "--codec", "ndpca", "--lr", "-1", "--out", "c.ckpt"], ["--lr"]),
    ("codec-all-gone", [*CODEC, "--all"], ["--codec"]),  # every shipped model: `bwgym train --all`
    ("codec-out-suffix", [*CODEC, "--codec", "ndpca", "--out", "c.txt"], [".ckpt"]),
    ("codec-unknown", [*CODEC, "--codec", "gzip", "--out", "c.ckpt"], ["gzip"]),
    (
        "codec-episodes-huge",
        [*CODEC, "--codec", "ndpca", "--episodes", HUGE, "--out", "c.ckpt"],
        ["--episodes"],
    ),
]
ALLOC = ["train", "allocator"]
TRAIN_ALLOCATOR = [
    ("alloc-n-envs-1e9", [*ALLOC, "--n-envs", "1000000000"], ["--n-envs", "64"]),
    ("alloc-n-envs-per-core", [*ALLOC, "--n-envs", TOO_MANY_ENVS], ["--n-envs"]),
    ("alloc-n-envs-zero", [*ALLOC, "--n-envs", "0"], ["--n-envs"]),
    ("alloc-explore-2", [*ALLOC, "--distill-explore", "2"], ["--distill-explore", "probability"]),
    ("alloc-explore-negative", [*ALLOC, "--distill-explore", "-0.1"], ["--distill-explore"]),
    ("alloc-log-std-nan", [*ALLOC, "--log-std-init", "nan"], ["--log-std-init"]),
    ("alloc-log-std-100", [*ALLOC, "--log-std-init", "100"], ["--log-std-init"]),
    ("alloc-distill-empty", [*ALLOC, "--distill-data", "{empty_npz}"], ["--distill-data", "!EOFError"]),
    ("alloc-distill-missing", [*ALLOC, "--distill-data", "nope.npz"], ["--distill-data", "nope.npz"]),
    ("alloc-distill-text", [*ALLOC, "--distill-data", "{text_npz}"], ["--distill-data"]),
    ("alloc-distill-keyless", [*ALLOC, "--distill-data", "{keyless_npz}"], ["--distill-data", "scores"]),
    ("alloc-ppo-abc", [*ALLOC, "--ppo", "learning_rate=abc"], ["--ppo learning_rate"]),
    ("alloc-ppo-n-steps-zero", [*ALLOC, "--ppo", "n_steps=0"], ["n_steps"]),
    ("alloc-device", [*ALLOC, "--device", "nope"], ["--device"]),
    ("alloc-train-bits-zero", [*ALLOC, "--train-bits", "0,5"], ["--train-bits"]),
    ("alloc-train-bits-huge", [*ALLOC, "--train-bits", "1,1e300"], ["--train-bits"]),
    ("alloc-generator-unknown", [*ALLOC, "--train-generator", "nope"], ["--train-generator"]),
    ("alloc-history-huge", [*ALLOC, "--history-steps", "100000"], ["--history-steps"]),
    ("alloc-scenario-unknown", [*ALLOC, "--scenario", "nope"], ["scenario"]),
    ("alloc-step-seconds-1e300", [*ALLOC, "--set", "link.step_seconds=1e300"], ["link.step_seconds"]),
    ("alloc-scale-1e7", [*ALLOC, "--set", "trace.scale=1e7"], ["trace.scale"]),
    ("alloc-set-alias-bomb", [*ALLOC, "--set", f"trace.params={ALIAS_BOMB}"], ["--set", "aliases"]),
    ("alloc-set-deep-100", [*ALLOC, "--set", f"env.kwargs={DEEP_100}"], ["--set", "MAX_SCENARIO_DEPTH"]),
    ("alloc-total-zero", [*ALLOC, "--total-timesteps", "0"], ["--total-timesteps"]),
    ("alloc-bonus-inf", [*ALLOC, "--success-bonus", "inf"], ["--success-bonus"]),
    ("alloc-out-file", [*ALLOC, "--out", "{afile}"], ["--out"]),
]
ZOO = [
    ("zoo-only-unknown", ["train", "--all", "--only", "ndpca_locate_lift_v9"], ["--only", "Did you mean"]),
    ("zoo-kind-unknown", ["train", "--all", "--kind", "codecs"], ["--kind", "codec"]),
    ("zoo-env-unknown", ["train", "--all", "--env", "bwgym/Nope-v0"], ["--env"]),
    ("zoo-flags-without-all", ["train", "--only", "pca_locate_lift"], ["--only", "--all"]),
    ("zoo-run-dir-file", ["train", "--all", "--dry-run", "--run-dir", "{afile}"], ["--run-dir", "file"]),
    ("sensor-codec-unknown", ["train", "sensor-codec", "--codec", "ndpca", "--out", "s.ckpt"], ["--codec"]),
    (
        "sensor-codec-sensors-huge",
        ["train", "sensor-codec", "--codec", "vector_dpca", "--sensors", HUGE, "--out", "s.ckpt"],
        ["--sensors", "MAX_SENSORS"],
    ),
    (
        "sensor-control-timesteps-zero",
        ["train", "sensor-control", "--timesteps", "0", "--out", "r"],
        ["--timesteps"],
    ),
    ("wyner-ziv-out-suffix", ["train", "wyner-ziv", "--out", "w.npz"], [".ckpt"]),
    ("two-receivers-out-file", ["train", "two-receivers", "--out", "{afile}"], ["--out", "folder"]),
    (
        "latent-agent-pixel-codec",
        ["train", "latent-agent", "--scenario", "lora_jpeg", "--out", "l.ckpt"],
        ["latent codec", "'jpeg'"],
    ),
    (
        "latent-agent-hidden-huge",
        ["train", "latent-agent", "--scenario", "lora_ndpca", "--hidden", HUGE, "--out", "l.ckpt"],
        ["--hidden"],
    ),
    (
        "latent-agent-history-huge",
        ["train", "latent-agent", "--scenario", "lora_ndpca", "--history-steps", HUGE, "--out", "l.ckpt"],
        ["--history-steps"],
    ),
]
TRACES = [
    (
        "traces-unit-mahimahi",
        ["traces", "convert", "lte_drive", "t.mahimahi", "--unit", "kbps"],
        ["--unit", "CSV"],
    ),
    (
        "traces-unit-cooked",
        ["traces", "generate", "constant", "--out", "t.cooked", "--unit", "mbps"],
        ["--unit"],
    ),
    ("traces-show-missing", ["traces", "show", "nope"], ["nope"]),
    ("traces-generate-unknown", ["traces", "generate", "nope", "--out", "t.csv"], ["nope"]),
    ("traces-convert-no-args", ["traces", "convert"], ["required"]),
    ("traces-plot-no-out", ["traces", "plot", "lte_drive"], ["--out"]),
]
LISTS = [
    ("codecs-flag", ["codecs", "--bogus"], ["unrecognized arguments"]),
    ("codecs-extra", ["codecs", "extra"], ["extra"]),  # `bwgym codecs NAME` shows one codec: 'extra' is none
    ("scenarios-flag", ["scenarios", "--x"], ["unrecognized arguments"]),
    ("no-command", [], ["required"]),
    ("unknown-command", ["nope"], ["invalid choice"]),
    ("train-nothing", ["train"], ["required"]),
    ("train-unknown", ["train", "nope"], ["invalid choice"]),
]
CLASSES = {
    "run": RUN,
    "sweep": SWEEP,
    "evaluate": EVALUATE,
    "expert": EXPERT,
    "collect": COLLECT,
    "train agent": TRAIN_AGENT,
    "train codec": TRAIN_CODEC,
    "train allocator": TRAIN_ALLOCATOR,
    "train --all and the models": ZOO,
    "traces": TRACES,
    "lists": LISTS,
}
CASES = [case for cases in CLASSES.values() for case in cases]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Files the cases name, in a folder outside the working directory."""
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "scenario.yaml").write_text(yaml.safe_dump(BASE))
    (folder / "sensors.yaml").write_text(yaml.safe_dump(SENSORS))
    (folder / "empty.npz").write_bytes(b"")
    (folder / "text.npz").write_text("not a numpy archive\n")
    np.savez(folder / "keyless.npz", other=np.zeros(3))
    (folder / "afile.txt").write_text("x")
    return {
        "scenario": str(folder / "scenario.yaml"),
        "sensors": str(folder / "sensors.yaml"),
        "empty_npz": str(folder / "empty.npz"),
        "text_npz": str(folder / "text.npz"),
        "keyless_npz": str(folder / "keyless.npz"),
        "afile": str(folder / "afile.txt"),
    }


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def refuse(capsys: pytest.CaptureFixture[str], cwd: Path, argv: list[str], words: list[str]) -> str:
    """Run ``bwgym argv`` in-process; assert a one-line refusal with ``words`` and nothing left in ``cwd``."""
    before = _tree(cwd)
    code = main(argv)
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, f"exit {code}, stderr: {err[-2000:]}"
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    assert len(err.splitlines()) == 1, f"expected one line on stderr, got:\n{err[-3000:]}"
    for word in words:
        if word.startswith("!"):
            assert word[1:].lower() not in err.lower(), f"{word[1:]!r} named in: {err}"
        else:
            assert word.lower() in err.lower(), f"{word!r} not named in: {err}"
    assert _tree(cwd) == before, f"left behind: {sorted(set(_tree(cwd)) - set(before))}"
    return err


@pytest.mark.parametrize("argv, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_invocation_is_refused_in_one_line_leaving_nothing(
    argv: list[str], words: list[str], inputs: dict[str, str], tmp_path: Path, monkeypatch, capsys
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    refuse(capsys, cwd, [a.format(**inputs) for a in argv], words)


def test_the_corpus_covers_every_command() -> None:
    assert len(CASES) >= 80
    assert len({c[0] for c in CASES}) == len(CASES), "case ids must be unique"
    for name, cases in CLASSES.items():
        assert cases, name


# ------------------------------------------------------------------------------ what the flags mean
def test_set_paths_resolve_against_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "mine.ckpt").write_bytes(b"x")
    (tmp_path / "t.csv").write_text("time_s,bps\n0,1000\n")
    monkeypatch.chdir(tmp_path)
    got = parse_overrides(["codec.checkpoint=mine.ckpt", "trace.source=t.csv", "trace.source=lte_drive"])
    assert got["codec.checkpoint"] == str(tmp_path / "mine.ckpt")
    assert got["trace.source"] == "lte_drive"  # a library name stays a name
    assert parse_overrides(["trace.source=t.csv"])["trace.source"] == str(tmp_path / "t.csv")
    assert parse_overrides(["trace.scale=1e7"])["trace.scale"] == 1e7  # a number, not a string
    # a whole section names the same file as its dotted key (the fleet's learned allocator too)
    whole = parse_overrides(
        ["fleet.allocator={name: learned, checkpoint: mine.ckpt}", "agent={checkpoint: mine.ckpt}"]
    )
    assert whole["fleet.allocator"] == {"name": "learned", "checkpoint": str(tmp_path / "mine.ckpt")}
    assert whole["agent"]["checkpoint"] == str(tmp_path / "mine.ckpt")
    with pytest.raises(
        scenario_config.ConfigError, match="fleet.allocator.checkpoint: 'gone.ckpt' does not exist"
    ):
        parse_overrides(["fleet={allocator: {name: learned, checkpoint: gone.ckpt}}"])


def _capture(monkeypatch, module, name: str) -> dict:
    """Replace ``module.name`` by a stub that records its arguments and refuses (exit 2, nothing run)."""
    from bwgym.scenarios.config import ConfigError

    seen: dict = {}

    def stub(*args, **kwargs):
        seen.update(args=args, kwargs=kwargs)
        raise ConfigError("stopped by the test")

    monkeypatch.setattr(module, name, stub)
    return seen


def test_num_envs_maps_to_run_num_envs(inputs, tmp_path, monkeypatch, capsys) -> None:
    from bwgym.scenarios import runner, sweep

    monkeypatch.chdir(tmp_path)
    seen = _capture(monkeypatch, runner, "run_scenario")
    assert main(["run", inputs["scenario"], "--num-envs", "3", "--out", "o"]) == 2
    assert seen["args"][0].run.num_envs == 3
    seen = _capture(monkeypatch, runner, "run_scenario")
    assert main(["evaluate", "--agent", "random", "--num-envs", "5", "--out", "o"]) == 2
    assert seen["args"][0].run.num_envs == 5
    seen = _capture(monkeypatch, sweep, "run_sweep")
    assert main(["sweep", inputs["scenario"], "--grid", "trace.scale=1,2", "--num-envs", "4"]) == 2
    assert seen["kwargs"]["overrides"]["run.num_envs"] == 4
    capsys.readouterr()
    assert scenario_config.scenario_from_dict(BASE).run.num_envs == 1  # the default


def test_num_envs_does_not_stop_a_resume() -> None:
    import dataclasses

    from bwgym.scenarios.run_folder import comparable_config

    one = scenario_config.scenario_from_dict(BASE)
    four = dataclasses.replace(one, run=dataclasses.replace(one.run, num_envs=4, workers=2))
    assert comparable_config(one) == comparable_config(four)


@pytest.mark.parametrize(
    "content, words",
    [
        (ALIAS_BOMB, ["damaged config.yaml", "aliases", "!lol"]),
        (f"run: {DEEP_100}\n", ["damaged config.yaml", "MAX_SCENARIO_DEPTH"]),
        ("name: a\nname: b\n", ["damaged config.yaml", "duplicate key 'name'"]),
        ("#" * (scenario_config.MAX_SCENARIO_BYTES + 1), ["damaged config.yaml", "MAX_SCENARIO_BYTES"]),
    ],
    ids=["alias-bomb", "deep-100", "duplicate-key", "over-1mb"],
)
@pytest.mark.parametrize("command", ["run", "sweep"])
def test_resume_of_a_folder_with_a_hostile_config_writes_nothing(
    command, content, words, inputs, tmp_path, monkeypatch, capsys
) -> None:
    """A run folder received from someone else is read with the scenario file's bounds on ``--resume``."""
    monkeypatch.chdir(tmp_path)
    if command == "run":
        config = tmp_path / "o" / "config.yaml"
        argv = ["run", inputs["scenario"], "--out", "o", "--resume"]
    else:  # a sweep whose point folder holds the config
        (tmp_path / "o").mkdir()
        (tmp_path / "o" / "sweep.yaml").write_text("grid: {trace.scale: [0.5, 1.0]}\n")
        config = tmp_path / "o" / "hostile_cli__trace.scale=0.5" / "config.yaml"
        argv = ["sweep", inputs["scenario"], "--grid", "trace.scale=0.5,1.0", "--out", "o", "--resume"]
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(content)
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    refuse(capsys, tmp_path, argv, words)
    assert config.read_text() == content
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == stamps


class _DeadPool:
    """An executor whose every worker has died, as after the kernel's OOM killer."""

    def submit(self, fn, *args, **kwargs):
        from concurrent.futures import Future
        from concurrent.futures.process import BrokenProcessPool

        future: Future = Future()
        future.set_exception(BrokenProcessPool("A process in the process pool was terminated abruptly"))
        return future

    def shutdown(self, **_: object) -> None:
        pass


@pytest.mark.slow
def test_a_dead_worker_is_reported_and_resume_completes_the_run(
    inputs, tmp_path, monkeypatch, capsys
) -> None:
    from bwgym.scenarios import runner

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runner, "make_executor", lambda workers: _DeadPool())
    argv = ["run", inputs["scenario"], "--out", "o", "--workers", "2"]
    assert main(argv) == 1
    captured = capsys.readouterr().err
    assert "Traceback" not in captured
    err = captured.strip().splitlines()[-1]  # after the progress bar
    assert err.startswith("bwgym run: ") and "worker" in err and "out of memory" in err and "--resume" in err
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert main(["run", inputs["scenario"], "--out", "o", "--workers", "1", "--resume"]) == 0
    assert (tmp_path / "o" / "episodes.parquet").is_file()


@pytest.mark.parametrize(
    "argv, word",
    [
        (["run", "lora_ndpca", "--workers", HUGE], "--workers"),
        (["train", "agent", "--algo", "ppo", "--n-envs", "1000000000", "--out", "r"], "--n-envs"),
    ],
    ids=["workers-1e12", "n-envs-1e9"],
)
def test_the_console_entry_point_refuses_too(argv: list[str], word: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bwgym.cli", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1 and word in proc.stderr
    assert not list(tmp_path.iterdir())
