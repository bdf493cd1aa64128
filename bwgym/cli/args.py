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
import math
import os
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from bwgym.scenarios.config import MAX_EPISODES, MAX_NUM_ENVS

__all__ = [
    "DEFAULT_ENV",
    "EXPERT_ENV_PREFIX",
    "MAX_DEMO_EPISODES",
    "MAX_N_ENVS",
    "MAX_PROCESSES_PER_CORE",
    "OneLineParser",
    "OptionRow",
    "bounded_float",
    "bounded_int",
    "RL_KWARGS",
    "check_device",
    "check_rl_kwargs",
    "check_env_id",
    "cpu_cores",
    "max_processes",
    "add_bench_options",
    "add_count_options",
    "add_demo_options",
    "add_env_options",
    "add_options",
    "add_run_options",
    "add_set_option",
    "add_torch_options",
    "float_option",
    "int_option",
    "key_value",
    "parse_env_kwargs",
    "positive_int",
    "values",
]

#: The env every command uses unless ``--env`` names another.
DEFAULT_ENV = "bwgym/LocateLift-v1"
#: Envs with a scripted expert (``bwgym expert``, ``collect``, BC and codec training collect from it).
EXPERT_ENV_PREFIX = "bwgym/LocateLift-"
#: Most worker or env processes a command may start per CPU core: each LocateLift process holds
#: ~450 MB, and more processes than this only queue for the cores while their memory adds up.
MAX_PROCESSES_PER_CORE = 4
#: Most envs one SB3 vector env may step (``train agent --n-envs``, ``train allocator --n-envs``);
#: with subprocess envs :func:`max_processes` bounds them too.
MAX_N_ENVS = 64
#: Most expert episodes ``bwgym expert``, ``collect``, ``train agent`` or ``train codec`` record
#: (~0.5 MB each on disk for LocateLift; 100,000 is ~50 GB and hours of collection).
MAX_DEMO_EPISODES = 100_000
#: Largest std of the expert's action noise: actions lie in [-1, 1], so more is noise alone.
MAX_NOISE_STD = 10.0
#: Largest env seed (numpy and gymnasium take seeds below 2**31 everywhere).
MAX_SEED = 2**31 - 1


def cpu_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def max_processes() -> int:
    """Most worker or env processes a command may start here: :data:`MAX_PROCESSES_PER_CORE` x cores."""
    return MAX_PROCESSES_PER_CORE * cpu_cores()


class OneLineParser(argparse.ArgumentParser):
    """A parser whose errors are one line on stderr, ``bwgym <sub>: error: <problem> (see --help)``.

    argparse's own errors print the whole usage first; on a command with 40 options that buries
    the one line that says what is wrong.
    """

    def error(self, message: str) -> NoReturn:
        """Print ``message`` as one line naming the sub-command and exit with status 2."""
        message = " ".join(message.split())  # hostile values may hold newlines
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _type_name(flag: str, parse: Callable[[str], Any]) -> Callable[[str], Any]:
    parse.__name__ = flag  # argparse names the type in "invalid <name> value" messages
    return parse


def bounded_int(flag: str, low: int, high: int | Callable[[], int], why: str = "") -> Callable[[str], int]:
    """An argparse type: an integer in ``[low, high]`` (``high`` may be computed when parsing).

    Args:
        flag: the option, named in the message.
        low: smallest value allowed.
        high: largest value allowed, or a function giving it (e.g. from the CPU count).
        why: what the bound protects, appended to the message.
    """

    def parse(text: str) -> int:
        top = high() if callable(high) else high
        try:
            value = int(text.strip()) if len(text) <= 40 else None
        except ValueError:
            value = None
        if value is None or not low <= value <= top:
            shown = text if len(text) <= 40 else text[:40] + "..."
            raise argparse.ArgumentTypeError(
                f"expected an integer in [{low:,}, {top:,}], got {shown!r}{'; ' + why if why else ''}"
            )
        return value

    return _type_name(flag, parse)


def bounded_float(
    flag: str,
    low: float,
    high: float,
    low_open: bool = False,
    high_open: bool = False,
    why: str = "",
) -> Callable[[str], float]:
    """An argparse type: a finite number between ``low`` and ``high`` (each end open or closed)."""
    left, right = "(" if low_open else "[", ")" if high_open else "]"

    def parse(text: str) -> float:
        try:
            value = float(text) if len(text) <= 40 else math.nan
        except ValueError:
            value = math.nan
        ok = math.isfinite(value) and (value > low if low_open else value >= low)
        ok = ok and (value < high if high_open else value <= high)
        if not ok:
            shown = text if len(text) <= 40 else text[:40] + "..."
            raise argparse.ArgumentTypeError(
                f"expected a finite number in {left}{low:g}, {high:g}{right}, got {shown!r}"
                f"{'; ' + why if why else ''}"
            )
        return value

    return _type_name(flag, parse)


def check_env_id(flag: str, env_id: str, expert: bool = False) -> None:
    """Raise ``ValueError`` unless ``env_id`` is a registered bwgym env (with a scripted expert).

    Args:
        flag: the option, named in the message.
        env_id: the id given.
        expert: the command records the scripted expert, which only LocateLift has.
    """
    import difflib

    import gymnasium as gym

    import bwgym  # noqa: F401  (registers the envs)

    ids = sorted(k for k in gym.registry if k.startswith("bwgym/"))
    if expert:
        ids = [k for k in ids if k.startswith(EXPERT_ENV_PREFIX)]
    if env_id in ids:
        return
    near = difflib.get_close_matches(str(env_id), ids, n=1)
    hint = f" Did you mean {near[0]!r}?" if near else ""
    if expert and env_id in gym.registry:
        raise ValueError(
            f"{flag} {env_id}: this command records the scripted expert, which only LocateLift has; "
            f"use one of {', '.join(ids)}"
        )
    raise ValueError(f"{flag}: unknown env {env_id!r}.{hint} Valid choices: {', '.join(ids)}")


def check_device(device: str, flag: str = "--device") -> None:
    """Raise ``ValueError`` unless torch can use ``device`` here (``auto``, ``cpu``, an available CUDA)."""
    if device == "auto":
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{flag}: unknown device {device!r}; expected auto, cpu, cuda or cuda:N") from None
    if parsed.type == "cpu":
        return
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{flag} {device}: no CUDA device on this machine; use --device cpu or auto")
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(
                f"{flag} {device}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}"
            )
        return
    raise ValueError(f"{flag} {device}: unsupported device type {parsed.type!r}; expected auto, cpu or cuda")


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
    """``KEY=VALUE`` as ``(key, YAML value)``: an SB3 keyword argument from the command line.

    The value is read by the scenario files' bounded loader (no aliases, bounded depth and size).
    """
    from bwgym.scenarios.config import ConfigError, parse_yaml

    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. learning_rate=1e-4), got {text!r}")
    try:
        parsed = parse_yaml(value, key)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"{key}: {exc}; quote it") from None
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


#: One option of :func:`add_options`: ``(flag, type, default, help)``.
OptionRow = tuple[str, Callable[[str], Any], Any, str]


def int_option(
    flag: str, low: int, high: int | Callable[[], int], default: int | None, text: str, why: str = ""
) -> OptionRow:
    """An :func:`add_options` row: an integer in ``[low, high]`` (:func:`bounded_int`)."""
    return flag, bounded_int(flag, low, high, why), default, text


def float_option(
    flag: str,
    low: float,
    high: float,
    default: float | None,
    text: str,
    low_open: bool = False,
    high_open: bool = False,
    why: str = "",
) -> OptionRow:
    """An :func:`add_options` row: a finite number between ``low`` and ``high`` (:func:`bounded_float`)."""
    return flag, bounded_float(flag, low, high, low_open, high_open, why), default, text


def add_options(parser: Any, rows: Sequence[OptionRow]) -> None:
    """Add one option per ``(flag, type, default, help)`` row.

    The help ends with the default, unless the text says itself what the default is (``default:``).
    """
    for flag, kind, default, text in rows:
        shown = text if "default:" in text else f"{text} (default: %(default)s)"
        parser.add_argument(flag, type=kind, default=default, help=shown)


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
        "--episodes",
        type=bounded_int("--episodes", 1, MAX_DEMO_EPISODES, "each episode is stored (MAX_DEMO_EPISODES)"),
        default=episodes,
        help=f"{episodes_help} (default: %(default)s, at most {MAX_DEMO_EPISODES:,})",
    )
    if noise_std:
        parser.add_argument(
            "--noise-std",
            type=bounded_float("--noise-std", 0.0, MAX_NOISE_STD),
            default=0.1,
            help="std of the Gaussian action noise, as in the NDPCA paper (default: %(default)s)",
        )
    parser.add_argument(
        "--seed",
        type=bounded_int("--seed", 0, MAX_SEED - MAX_DEMO_EPISODES),
        default=0,
        help=f"{seed_help} (default: %(default)s)",
    )


def add_torch_options(parser: argparse.ArgumentParser, threads: int | None = 1, device: bool = True) -> None:
    """``--device`` (unless ``device`` is False: the command runs on CPU) and ``--threads`` of torch."""
    if device:
        parser.add_argument(
            "--device", default="auto", help="auto (CUDA when present), cpu, cuda... (default: auto)"
        )
    # One thread by default: on a machine shared with other jobs, oversubscribed intra-op threads
    # made an epoch 10x slower here, while one thread costs at most 2x when the cores are free.
    parser.add_argument(
        "--threads",
        type=bounded_int("--threads", 1, max_processes, "at most MAX_PROCESSES_PER_CORE per core"),
        default=threads,
        help="torch CPU threads (default: 1)",
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

    ``scenario``, ``--episodes``, ``--seed``, ``--workers``, ``--num-envs`` (each None unless given:
    the scenario's value; see :func:`add_count_options`), ``--out``, ``--resume`` and ``--set``.

    Args:
        parser: the sub-command's parser.
        noun: what ``--resume`` continues ("run", "sweep").
        out_help: help of ``--out``.
        per: how ``--episodes`` and ``--set`` apply, e.g. " per grid point".
    """
    parser.add_argument("scenario", help="library scenario name (see `bwgym scenarios`) or path to a .yaml")
    add_count_options(parser, per)
    parser.add_argument("--out", help=out_help)
    parser.add_argument("--resume", action="store_true", help=f"continue the {noun} in --out")
    add_set_option(parser, per)


def add_count_options(
    parser: argparse.ArgumentParser,
    per: str = "",
    episodes: int | None = None,
    seed: int | None = None,
    workers: int | None = None,
) -> None:
    """``--episodes``, ``--seed``, ``--workers`` and ``--num-envs`` of a scenario run, each bounded.

    Each is None unless given (the scenario's value) when its default here is None.
    """
    default_episodes = "the scenario's" if episodes is None else str(episodes)
    parser.add_argument(
        "--episodes",
        type=bounded_int("--episodes", 1, MAX_EPISODES, "run.episodes is bounded by MAX_EPISODES"),
        default=episodes,
        help=f"episodes{per} (default: {default_episodes})",
    )
    parser.add_argument(
        "--seed",
        type=bounded_int("--seed", 0, MAX_SEED - 1),
        default=seed,
        help="first episode seed (episode i uses seed + i)",
    )
    parser.add_argument(
        "--workers",
        type=bounded_int(
            "--workers",
            1,
            max_processes,
            f"each worker is a process of ~450 MB; at most {MAX_PROCESSES_PER_CORE} per core "
            "(MAX_PROCESSES_PER_CORE)",
        ),
        default=workers,
        help=f"local worker processes (at most {MAX_PROCESSES_PER_CORE} per core)",
    )
    parser.add_argument(
        "--num-envs",
        type=bounded_int("--num-envs", 1, MAX_NUM_ENVS, "run.num_envs is bounded by MAX_NUM_ENVS"),
        default=None,
        help="envs a worker steps together as one vector env (default: the scenario's run.num_envs, 1)",
    )
    parser.add_argument(
        "--device",
        default=None,
        help="where the codec's and agent's networks run: auto (CUDA when present), cpu, cuda, cuda:N "
        "(default: the scenario's run.device, auto)",
    )


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


#: Keyword arguments of SB3's algorithms that ``--rl-kwarg`` / ``--ppo`` may set (plain data only:
#: classes such as ``replay_buffer_class`` cannot come from the command line).
RL_KWARGS = {
    "ppo": (
        "learning_rate n_steps batch_size n_epochs gamma gae_lambda clip_range clip_range_vf "
        "normalize_advantage ent_coef vf_coef max_grad_norm use_sde sde_sample_freq target_kl "
        "stats_window_size policy_kwargs"
    ).split(),
    "sac": (
        "learning_rate buffer_size learning_starts batch_size tau gamma train_freq gradient_steps "
        "optimize_memory_usage n_steps ent_coef target_update_interval target_entropy use_sde "
        "sde_sample_freq use_sde_at_warmup stats_window_size policy_kwargs"
    ).split(),
}
#: Most units in one hidden layer of an SB3 network (``policy_kwargs.net_arch``): 4096 x 4096
#: float32 weights are 64 MB; 200,000 units asked for 160 GB.
MAX_NET_UNITS = 4096
#: Most hidden layers of an SB3 network.
MAX_NET_LAYERS = 16
#: Largest replay buffer (transitions) a SAC run may ask for: SB3's default; image observations
#: make each transition ~40 kB.
MAX_BUFFER_SIZE = 1_000_000
#: Numeric SB3 keyword arguments: (low, high, low open, integer).
_RL_NUMBERS: dict[str, tuple[float, float, bool, bool]] = {
    "learning_rate": (0.0, 1.0, True, False),
    "gamma": (0.0, 1.0, False, False),
    "gae_lambda": (0.0, 1.0, False, False),
    "clip_range": (0.0, 10.0, True, False),
    "clip_range_vf": (0.0, 10.0, True, False),
    "ent_coef": (0.0, 10.0, False, False),
    "vf_coef": (0.0, 100.0, False, False),
    "max_grad_norm": (0.0, 1e6, True, False),
    "tau": (0.0, 1.0, True, False),
    "target_kl": (0.0, 1e3, True, False),
    "target_entropy": (-1e6, 1e6, False, False),
    "n_steps": (1, 1_000_000, False, True),
    "batch_size": (1, 1_000_000, False, True),
    "n_epochs": (1, 10_000, False, True),
    "buffer_size": (1, MAX_BUFFER_SIZE, False, True),
    "learning_starts": (0, 10**9, False, True),
    "train_freq": (1, 1_000_000, False, True),
    "gradient_steps": (-1, 10_000, False, True),
    "target_update_interval": (1, 1_000_000, False, True),
    "sde_sample_freq": (-1, 1_000_000, False, True),
    "stats_window_size": (1, 100_000, False, True),
}
_RL_FLAGS = ("normalize_advantage", "use_sde", "optimize_memory_usage", "use_sde_at_warmup")


def check_rl_kwargs(algo: str, pairs: Sequence[tuple[str, Any]], flag: str = "--rl-kwarg") -> None:
    """Raise ``ValueError`` unless every ``(key, value)`` is a keyword SB3's ``algo`` takes, in range.

    SB3 checks some values with ``assert`` deep inside training (``learning_rate=abc`` ended in an
    AssertionError after the run folder existed), and none of the sizes it allocates.
    """
    allowed = RL_KWARGS[algo]
    seen: set[str] = set()
    for key, value in pairs:
        where = f"{flag} {key}"
        if key in seen:
            raise ValueError(f"{where}: given twice; give each keyword once")
        seen.add(key)
        if key not in allowed:
            import difflib

            near = difflib.get_close_matches(key, allowed, n=1)
            hint = f" Did you mean {near[0]!r}?" if near else ""
            raise ValueError(
                f"{where}: not a keyword of SB3's {algo.upper()}.{hint} Allowed: {', '.join(allowed)}"
            )
        if key in _RL_NUMBERS:
            low, high, low_open, integer = _RL_NUMBERS[key]
            if key == "ent_coef" and isinstance(value, str) and value.startswith("auto"):
                continue  # SAC learns it: "auto" or "auto_0.1"
            if key == "target_kl" and value is None:
                continue
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = number and (not integer or isinstance(value, int)) and math.isfinite(value)
            ok = ok and (value > low if low_open else value >= low) and value <= high
            if not ok:
                kind = "an integer" if integer else "a finite number"
                left = "(" if low_open else "["
                raise ValueError(f"{where}: expected {kind} in {left}{low:g}, {high:g}], got {value!r}")
        elif key in _RL_FLAGS:
            if not isinstance(value, bool):
                raise ValueError(f"{where}: expected true or false, got {value!r}")
        elif key == "policy_kwargs":
            _check_policy_kwargs(value, where)


def _check_policy_kwargs(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a mapping, e.g. {{net_arch: [64, 64]}}, got {value!r}")
    arch = value.get("net_arch")
    layers: list[Any] = []
    if isinstance(arch, list):
        layers = list(arch)
    elif isinstance(arch, dict):
        layers = [u for part in arch.values() for u in (part if isinstance(part, list) else [part])]
    elif arch is not None:
        raise ValueError(f"{where}: net_arch must be a list of layer sizes, e.g. [64, 64], got {arch!r}")
    if len(layers) > MAX_NET_LAYERS * 2 or any(
        isinstance(u, bool) or not isinstance(u, int) or not 1 <= u <= MAX_NET_UNITS for u in layers
    ):
        raise ValueError(
            f"{where}: net_arch layers must be integers in [1, {MAX_NET_UNITS}] (MAX_NET_UNITS), at most "
            f"{MAX_NET_LAYERS} per network, got {arch!r}"
        )
    log_std = value.get("log_std_init")
    if log_std is not None and not (
        isinstance(log_std, (int, float)) and math.isfinite(log_std) and -20 <= log_std <= 2
    ):
        raise ValueError(f"{where}: log_std_init must be a finite number in [-20, 2], got {log_std!r}")
