"""Argument groups that several ``bwgym`` sub-commands share: one definition and one help text each.

Each ``add_*`` function adds a group of options to an ``argparse`` parser; the sub-commands differ
only in their defaults and wording, passed as arguments::

    parser = sub.add_parser("collect")
    add_env_options(parser, kwargs_help="JSON object of env arguments")
    add_demo_options(parser, episodes=200, episodes_help="episodes to store")

``benchmarks/run_all.py`` takes :func:`add_bench_options` from here too, so ``bwgym bench`` and the
script accept the same options.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "DEFAULT_ENV",
    "add_bench_options",
    "add_demo_options",
    "add_env_options",
    "add_options",
    "add_run_options",
    "add_set_option",
    "add_torch_options",
    "key_value",
    "parse_env_kwargs",
    "positive_int",
    "values",
]

#: The env every command uses unless ``--env`` names another.
DEFAULT_ENV = "bwgym/LocateLift-v1"


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (``--epochs 0`` would write an untrained checkpoint)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` as ``(key, YAML value)``: an SB3 keyword argument from the command line."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. learning_rate=1e-4), got {text!r}")
    parsed = yaml.safe_load(value)
    if isinstance(parsed, str):  # YAML 1.1 reads 1e-4 as a string
        try:
            parsed = float(parsed)
        except ValueError:
            pass
    return key, parsed


def parse_env_kwargs(text: str | None) -> dict[str, Any]:
    """Parse an ``--env-kwargs`` JSON object; raise ``ValueError`` with an example when it is not one."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"--env-kwargs must be a JSON object, e.g. '{{\"image_size\": 64}}' ({err})"
        ) from err
    if not isinstance(value, dict):
        raise ValueError(f"--env-kwargs must be a JSON object, got {text!r}")
    return value


def values(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """``{name: args.<name>}`` for keyword arguments that keep the option's name."""
    return {name: getattr(args, name) for name in names}


def add_options(parser: Any, rows: Sequence[tuple[str, Callable[[str], Any], Any, str]]) -> None:
    """Add one option per ``(flag, type, default, help)`` row; the help ends with the default."""
    for flag, kind, default, text in rows:
        parser.add_argument(flag, type=kind, default=default, help=f"{text} (default: %(default)s)")


def add_env_options(
    parser: argparse.ArgumentParser, kwargs_help: str = "JSON object of env arguments"
) -> None:
    """``--env ID`` and ``--env-kwargs JSON`` (read with :func:`parse_env_kwargs`)."""
    parser.add_argument("--env", default=DEFAULT_ENV, help="env id (default: %(default)s)")
    parser.add_argument("--env-kwargs", default=None, help=kwargs_help + ", e.g. '{\"image_size\": 64}'")


def add_demo_options(
    parser: argparse.ArgumentParser,
    episodes: int,
    episodes_help: str,
    seed_help: str = "env seed of the first episode",
    noise_std: bool = True,
) -> None:
    """``--episodes N`` of expert demonstrations, their ``--noise-std`` and the first ``--seed``."""
    parser.add_argument(
        "--episodes", type=positive_int, default=episodes, help=f"{episodes_help} (default: %(default)s)"
    )
    if noise_std:
        parser.add_argument(
            "--noise-std",
            type=float,
            default=0.1,
            help="std of the Gaussian action noise, as in the NDPCA paper (default: %(default)s)",
        )
    parser.add_argument("--seed", type=int, default=0, help=f"{seed_help} (default: %(default)s)")


def add_torch_options(parser: argparse.ArgumentParser, threads: int | None = 1) -> None:
    """``--device`` and ``--threads`` of torch."""
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA when present), cpu, cuda... (default: auto)"
    )
    # One thread by default: on a machine shared with other jobs, oversubscribed intra-op threads
    # made an epoch 10x slower here, while one thread costs at most 2x when the cores are free.
    parser.add_argument(
        "--threads", type=positive_int, default=threads, help="torch CPU threads (default: 1)"
    )


def add_set_option(parser: argparse.ArgumentParser, per: str = "") -> None:
    """``--set KEY=VALUE`` (repeatable): override a dotted scenario key."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a scenario key{per}, e.g. --set codec.name=raw (repeatable)",
    )


def add_run_options(parser: argparse.ArgumentParser, noun: str, out_help: str, per: str = "") -> None:
    """The scenario and the run options of ``bwgym run`` and ``bwgym sweep``.

    ``scenario``, ``--episodes``, ``--seed``, ``--workers`` (each None unless given: the scenario's
    value), ``--out``, ``--resume`` and ``--set``.

    Args:
        parser: the sub-command's parser.
        noun: what ``--resume`` continues ("run", "sweep").
        out_help: help of ``--out``.
        per: how ``--episodes`` and ``--set`` apply, e.g. " per grid point".
    """
    parser.add_argument("scenario", help="library scenario name (see `bwgym scenarios`) or path to a .yaml")
    parser.add_argument("--episodes", type=int, help=f"episodes{per} (default: the scenario's)")
    parser.add_argument("--seed", type=int, help="first episode seed (episode i uses seed + i)")
    parser.add_argument("--workers", type=int, help="local worker processes")
    parser.add_argument("--out", help=out_help)
    parser.add_argument("--resume", action="store_true", help=f"continue the {noun} in --out")
    add_set_option(parser, per)


def add_bench_options(parser: argparse.ArgumentParser) -> None:
    """``--only NAME`` (repeatable), ``--list`` and ``--timeout S`` of the benchmark runner."""
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this benchmark (file name without .py; repeatable)",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--timeout", type=float, metavar="S", help="stop a benchmark after S seconds")
