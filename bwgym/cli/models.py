"""``bwgym train`` for the sensor codecs, sensor control, learned Wyner-Ziv and the two-receiver pair.

::

    bwgym train sensor-codec --codec vector_ndpca --preset cv2d --sensors 4 --out runs/ndpca.ckpt
    bwgym train sensor-control --timesteps 30000 --out runs/sensor_control
    bwgym train wyner-ziv --out runs/wyner_ziv.ckpt
    bwgym train two-receivers --out runs/two_receivers

Each calls the library's training function and writes only where ``--out`` says; ``bwgym zoo``
lists the exact command of every shipped model and ``bwgym train --all`` runs them.
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path
from typing import Any

from bwgym.cli.args import MAX_DEMO_EPISODES, MAX_SEED, add_options, int_option

__all__ = [
    "SENSOR_CODECS",
    "cmd_train_sensor_codec",
    "cmd_train_sensor_control",
    "cmd_train_two_receivers",
    "cmd_train_wyner_ziv",
    "register",
]

#: Codecs ``bwgym train sensor-codec`` fits on SensorNetwork rollouts: name -> the key its
#: checkpoint's ``train_config`` records the first rollout seed under (as the shipped files do).
SENSOR_CODECS = {"vector_dpca": "seed", "vector_ndpca": "seed_first"}
#: Most env steps of the sensor-control training (``--timesteps``).
MAX_TIMESTEPS = 10**9
#: Most alternating-minimisation sweeps per Wyner-Ziv rate point (``--iterations``).
MAX_ITERATIONS = 100_000
#: Most optimiser steps per two-receiver model (``--steps``).
MAX_STEPS = 10_000_000


def checkpoint_out(text: str) -> Path:
    """An argparse type: a ``.ckpt`` file to write, in a folder that exists."""
    path = Path(text)
    if path.suffix != ".ckpt":
        raise argparse.ArgumentTypeError(f"expected a .ckpt file (the bwgym checkpoint format), got {text!r}")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"the folder of {text!r} does not exist; create it first")
    return path


def folder_out(text: str) -> Path:
    """An argparse type: a run folder to write (created when missing), not a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file; expected a folder")
    return path


def cmd_train_sensor_codec(args: argparse.Namespace) -> int:
    """Fit ``vector_dpca`` or train ``vector_ndpca`` on estimate-mode SensorNetwork rollouts."""
    import gymnasium as gym
    import torch

    import bwgym  # noqa: F401  (registers the envs)
    from bwgym.codecs import codec_entry
    from bwgym.codecs.sensor.dpca import SHIPPED_EPISODES, SHIPPED_SEED, sensor_frames

    env_id = "bwgym/SensorNetwork-v0"
    torch.set_num_threads(1)
    start = time.perf_counter()
    frames = sensor_frames(gym.make(env_id, preset=args.preset, n_sensors=args.sensors))
    codec = codec_entry(args.codec).cls.train(frames, env_id=env_id)
    codec.train_config.update(
        {
            "preset": args.preset,
            "n_sensors": args.sensors,
            "mode": "estimate",
            "episodes": SHIPPED_EPISODES,
            SENSOR_CODECS[args.codec]: SHIPPED_SEED,
        }
    )
    codec.save(args.out)
    steps = len(next(iter(frames.values())))
    print(
        f"{args.codec} ({args.preset}, K = {args.sensors}, {steps} steps, "
        f"{time.perf_counter() - start:.0f} s) -> {args.out}"
    )
    return 0


def cmd_train_sensor_control(args: argparse.Namespace) -> int:
    """Train the SAC policy of the sensor-control scenario; write ``<out>/policy.ckpt``."""
    from bwgym.agents.sensor_control import SCENARIO, train_sensor_control
    from bwgym.scenarios.config import load_scenario
    from bwgym.scenarios.factory import make_env

    scenario = load_scenario(SCENARIO)
    start = time.perf_counter()
    written = train_sensor_control(
        functools.partial(make_env, scenario),
        scenario.env.id,
        scenario.env.kwargs,
        args.out,
        args.timesteps,
        seed=args.seed,
    )
    print(f"trained {args.timesteps} steps in {time.perf_counter() - start:.0f} s -> {written}")
    return 0


def cmd_train_wyner_ziv(args: argparse.Namespace) -> int:
    """Learn the Wyner-Ziv codec of paper 001's Gaussian test from its source model alone."""
    from bwgym.codecs.multiterminal.wyner_ziv import WynerZivCodec

    options = {} if args.iterations is None else {"iterations": args.iterations}
    WynerZivCodec.learn(args.out, progress=True, **options)
    print(f"wrote {args.out}")
    return 0


def cmd_train_two_receivers(args: argparse.Namespace) -> int:
    """Train the two-receiver Gray-Wyner codec and its baseline on LocateLift-v1 view features."""
    from bwgym.scenarios.two_receivers.training import RECIPE, ship_pair

    ship_pair(args.out, episodes=args.episodes or RECIPE["episodes"], steps=args.steps or RECIPE["steps"])
    return 0


def _add_command(train_subparsers: Any, name: str, func: Any, text: str, out: Any, out_help: str) -> Any:
    """Add ``bwgym train <name>`` running ``func``, with its required ``--out``."""
    parser = train_subparsers.add_parser(name, help=text)
    parser.add_argument("--out", type=out, required=True, help=out_help)
    parser.set_defaults(func=func)
    return parser


def register(train_subparsers: Any) -> None:
    """Add ``sensor-codec``, ``sensor-control``, ``wyner-ziv`` and ``two-receivers`` to ``bwgym train``."""
    from bwgym.envs.sensors import MAX_SENSORS, PRESETS

    ckpt, folder = "checkpoint to write (.ckpt)", "run folder"
    p = _add_command(
        train_subparsers,
        "sensor-codec",
        cmd_train_sensor_codec,
        "fit vector_dpca / train vector_ndpca on SensorNetwork rollouts",
        checkpoint_out,
        ckpt,
    )
    p.add_argument("--codec", choices=tuple(SENSOR_CODECS), required=True)
    p.add_argument("--preset", choices=PRESETS, default="ar1", help="the process (default: %(default)s)")
    add_options(p, [int_option("--sensors", 1, MAX_SENSORS, 4, "K", "MAX_SENSORS")])
    p = _add_command(
        train_subparsers,
        "sensor-control",
        cmd_train_sensor_control,
        "train SAC on decoded SensorNetwork measurements",
        folder_out,
        folder + " (gets policy.ckpt)",
    )
    add_options(
        p,
        [
            int_option("--timesteps", 1, MAX_TIMESTEPS, 30_000, "env steps"),
            int_option("--seed", 0, MAX_SEED - MAX_DEMO_EPISODES, 0, "seeds SAC and the envs"),
        ],
    )
    p = _add_command(
        train_subparsers,
        "wyner-ziv",
        cmd_train_wyner_ziv,
        "learn the Wyner-Ziv codec of paper 001's Gaussian test",
        checkpoint_out,
        ckpt,
    )
    add_options(
        p,
        [
            int_option(
                "--iterations", 1, MAX_ITERATIONS, None, "sweeps per rate point (default: the recipe's)"
            )
        ],
    )
    p = _add_command(
        train_subparsers,
        "two-receivers",
        cmd_train_two_receivers,
        "train the two-receiver Gray-Wyner codec and its baseline (LocateLift-v1)",
        folder_out,
        folder + " (gets both checkpoints)",
    )
    add_options(
        p,
        [
            int_option(
                "--episodes",
                10,
                MAX_DEMO_EPISODES,
                None,
                "episodes (seeds 0..), the last tenth held out (default: the recipe's)",
                "MAX_DEMO_EPISODES",
            ),
            int_option("--steps", 1, MAX_STEPS, None, "optimiser steps per model (default: the recipe's)"),
        ],
    )
