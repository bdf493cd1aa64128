"""The model zoo: every model shipped in the package is one row of :data:`ZOO`, made by one command.

A row names the shipped file (relative to the ``bwgym`` package), the env it serves, its checkpoint
kind, the exact ``bwgym`` command that makes it and the rows it depends on: the shipped files its
command reads, named in it (``{package}/...``) or through a scenario or a default (the shipped BC
agent a task-aware codec trains through). ``{run}`` in a command is the run folder of one walk.

::

    bwgym zoo [--commands]                                # the table
    bwgym train --all --dry-run                           # every command, in dependency order
    bwgym train --all                                     # retrain everything (make checkpoints)
    bwgym train --all --only 'ndpca*_v1' wyner_ziv_gaussian
    bwgym train --all --kind codec --env bwgym/LocateLift-v1

``bwgym train --all`` walks the rows in dependency order. Each command writes into the run folder
(``runs/zoo/<stamp>`` unless ``--run-dir``); its file and JSON sidecar are then copied into the
package atomically (:mod:`bwgym.common.files`), so an interrupted walk leaves every shipped file
whole, the old one or the new one, and the rows after a row read what it just made. Rows that share
a command (the two-receiver pair) run it once.
"""

from __future__ import annotations

import argparse
import difflib
import fnmatch
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from bwgym.common.checkpoint import shipped_file

__all__ = [
    "PACKAGE_DIR",
    "ZOO",
    "ZooModel",
    "cmd_train_all",
    "cmd_zoo",
    "install",
    "ordered",
    "register",
    "select",
    "walk",
]

#: The ``bwgym`` package folder: ``{package}`` in a command, and where ``--all`` installs the files.
PACKAGE_DIR = Path(__file__).resolve().parents[1]
V0, V1, SENSORS = "bwgym/LocateLift-v0", "bwgym/LocateLift-v1", "bwgym/SensorNetwork-v0"
AGENTS, CODECS = "agents/checkpoints/", "codecs/checkpoints/"


@dataclass(frozen=True)
class ZooModel:
    """One shipped model: a file of the package and the command that makes it.

    Attributes:
        file: the shipped file, relative to the ``bwgym`` package (``agents/checkpoints/x.ckpt``).
        env: the env id its checkpoint records (``None``: an env-free model).
        kind: the checkpoint kind its file records (``agent/bc``, ``codec/ndpca``...).
        command: a ``bwgym`` command line; ``{run}`` is the walk's run folder, ``{package}`` the
            ``bwgym`` package (where the files of earlier rows are).
        depends: names of the rows whose shipped files the command reads.
        output: where the command writes the file, relative to ``{run}`` (default: the file's name).
    """

    file: str
    env: str | None
    kind: str
    command: str
    depends: tuple[str, ...] = ()
    output: str = ""

    @property
    def name(self) -> str:
        """The row's name: the file's stem (``bc_locate_lift_v1``)."""
        return PurePosixPath(self.file).stem

    @property
    def made_at(self) -> str:
        """Where the command leaves the file, relative to the run folder."""
        return self.output or PurePosixPath(self.file).name

    def argv(self, run_dir: str | os.PathLike[str], package_dir: str | os.PathLike[str]) -> list[str]:
        """The command as arguments, ``{run}`` and ``{package}`` filled in."""
        return [
            part.replace("{run}", str(run_dir)).replace("{package}", str(package_dir))
            for part in shlex.split(self.command)
        ]


def _bc(env: str, episodes: int) -> ZooModel:
    """The BC agent of a LocateLift version, trained on clean views of ``episodes`` expert episodes."""
    stem = shipped_file("bc_locate_lift.ckpt", env).removesuffix(".ckpt")
    return ZooModel(
        f"{AGENTS}{stem}.ckpt",
        env,
        "agent/bc",
        f"bwgym train agent --algo bc --env {env} --episodes {episodes} --noise-std 0.1 "
        f"--log-dir {{run}}/{stem}.tb --out {{run}}/{stem}.ckpt",
    )


def _locate_lift_codecs(env: str) -> tuple[ZooModel, ...]:
    """The LocateLift codecs of ``env``, as ``bwgym.codecs.train.SHIPPED_RECIPE`` says.

    The linear ones are fitted, the task-agnostic NDPCA pre-trained, the task-aware codecs
    fine-tuned from it through the BC agent. Every command collects the same 150 expert episodes (seed 0) into one folder of the run: the
    first collects, the others read it.
    """
    suffix = shipped_file("x_locate_lift.ckpt", env).removeprefix("x_locate_lift").removesuffix(".ckpt")
    agnostic, agent = f"ndpca_agnostic_locate_lift{suffix}", f"bc_locate_lift{suffix}"
    finetune = (
        f"--init {{package}}/{CODECS}{agnostic}.ckpt --agent {{package}}/{AGENTS}{agent}.ckpt "
        "--steps 3000 --batch-size 8 --lr 1e-3"
    )
    return tuple(
        ZooModel(
            f"{CODECS}{name}_locate_lift{suffix}.ckpt",
            env,
            f"codec/{name}",
            f"bwgym train codec --codec {name} --env {env} --demos {{run}}/demos_locate_lift{suffix} "
            f"{options}--threads 1 --out {{run}}/{name}_locate_lift{suffix}.ckpt",
            (agnostic, agent) if options.startswith("--init") else (),
        )
        for name, options in (
            ("linear_dpca", ""),
            ("pca", ""),
            ("ndpca_agnostic", "--steps 5000 --batch-size 8 --lr 2e-3 "),
            ("ndpca", finetune + " "),
            ("dae", finetune + " "),
            ("jae", finetune + " "),
        )
    )


def _sensor_codec(codec: str, preset: str, file: str) -> ZooModel:
    """A SensorNetwork codec (K = 4 sensors, estimate mode), fitted on seeds 1000-1049."""
    return ZooModel(
        CODECS + file,
        SENSORS,
        f"codec/{codec}",
        f"bwgym train sensor-codec --codec {codec} --preset {preset} --sensors 4 --out {{run}}/{file}",
    )


#: The DAgger fine-tuning of the v1 agent on NDPCA's decoded narrowband views (and clean ones).
_DAGGER = (
    "bwgym train agent --algo bc --env bwgym/LocateLift-v1 --scenario {scenarios} "
    "--bc-init {package}/agents/checkpoints/bc_locate_lift_v1.ckpt --dagger-rounds 5 --dagger-episodes 60 "
    "--epochs 8 --patience 3 --lr 3e-4 --eval-seed 50000 --threads 1 --log-dir {run}/{name}.tb "
    "--out {run}/{name}.ckpt"
)
_TWO_RECEIVERS = "bwgym train two-receivers --out {run}/two_receivers"

#: Every shipped model, in dependency order (the v1 set first, the v0 set kept for v0 users last).
ZOO: tuple[ZooModel, ...] = (
    _bc(V1, 400),
    *_locate_lift_codecs(V1),
    ZooModel(
        CODECS + "gray_wyner_synthetic.ckpt",
        None,
        "codec/gray_wyner",
        "bwgym train codec --codec gray_wyner --threads 1 --out {run}/gray_wyner_synthetic.ckpt",
    ),
    ZooModel(
        CODECS + "wyner_ziv_gaussian.ckpt",
        None,
        "codec/wyner_ziv",
        "bwgym train wyner-ziv --out {run}/wyner_ziv_gaussian.ckpt",
    ),
    _sensor_codec("vector_dpca", "ar1", "vector_dpca_sensor_network.ckpt"),
    _sensor_codec("vector_ndpca", "cv2d", "vector_ndpca_sensor_network.ckpt"),
    _sensor_codec("vector_ndpca", "ar1", "vector_ndpca_sensor_network_ar1.ckpt"),
    *(
        ZooModel(
            CODECS + file,
            V1,
            "codec/gray_wyner",
            _TWO_RECEIVERS,
            ("bc_locate_lift_v1", "linear_dpca_locate_lift_v1"),
            f"two_receivers/{file}",
        )
        for file in ("gray_wyner_locate_lift_v1.ckpt", "gray_wyner_locate_lift_v1_separate.ckpt")
    ),
    ZooModel(
        AGENTS + "sac_sensors_control_scalar.ckpt",
        SENSORS,
        "agent/sb3-sac",
        "bwgym train sensor-control --timesteps 30000 --seed 0 --out {run}/sac_sensors_control_scalar",
        output="sac_sensors_control_scalar/policy.ckpt",
    ),
    ZooModel(
        AGENTS + "allocator_ndpca_locate_lift_v1.ckpt",
        "bwgym/AllocateBandwidth-v0",
        "agent/sb3-ppo",
        "bwgym train allocator --scenario lora_ndpca --set trace.scale=2.6 --train-bits 100,500 "
        "--distill-episodes 150 --total-timesteps 256 --n-envs 1 --vec dummy --eval-freq 256 "
        "--eval-episodes 10 --seed 0 --out {run}/allocator_ndpca_locate_lift_v1",
        ("bc_locate_lift_v1", "ndpca_locate_lift_v1"),
        "allocator_ndpca_locate_lift_v1/policy.ckpt",
    ),
    ZooModel(
        AGENTS + "allocator_content_ndpca_locate_lift_v1.ckpt",
        "bwgym/AllocateBandwidth-v0",
        "allocator/content",
        "bwgym train allocator --content --scenario lora_ndpca --set trace.scale=2.6 --train-bits 100,500 "
        "--distill-episodes 240 --seed 0 --out {run}/allocator_content_ndpca_locate_lift_v1",
        ("bc_locate_lift_v1", "ndpca_locate_lift_v1"),
        "allocator_content_ndpca_locate_lift_v1/policy.ckpt",
    ),
    *(
        ZooModel(
            f"{AGENTS}{name}.ckpt",
            V1,
            "agent/bc",
            _DAGGER.replace("{scenarios}", scenarios).replace("{name}", name),
            ("bc_locate_lift_v1", "ndpca_locate_lift_v1"),
        )
        for name, scenarios in (
            ("bc_locate_lift_v1_narrowband_ndpca", "narrowband_ndpca"),
            ("bc_locate_lift_v1_narrowband_clean", "narrowband_ndpca,uncompressed"),
        )
    ),
    ZooModel(
        AGENTS + "ppo_locate_lift_v1_narrowband_ndpca.ckpt",
        V1,
        "agent/sb3-ppo",
        "bwgym train agent --algo ppo --env bwgym/LocateLift-v1 --scenario narrowband_ndpca "
        "--bc-init {package}/agents/checkpoints/bc_locate_lift_v1_narrowband_ndpca.ckpt "
        """--env-kwargs '{"reward_type": "sparse"}' --total-timesteps 20000 --eval-freq 5000 """
        "--eval-episodes 20 --checkpoint-freq 5000 --critic-warmup-steps 3000 --initial-noise-std 0.05 "
        "--rl-kwarg learning_rate=1e-5 --rl-kwarg n_steps=512 --rl-kwarg batch_size=64 "
        "--rl-kwarg n_epochs=5 --rl-kwarg target_kl=0.02 --rl-kwarg clip_range=0.1 --rl-kwarg gamma=0.98 "
        "--seed 0 --threads 1 --device cpu --out {run}/ppo_locate_lift_v1_narrowband_ndpca",
        ("bc_locate_lift_v1_narrowband_ndpca", "ndpca_locate_lift_v1"),
        "ppo_locate_lift_v1_narrowband_ndpca/policy.ckpt",
    ),
    ZooModel(
        AGENTS + "latent_bc_locate_lift_v1_lora_ndpca.ckpt",
        V1,
        "agent/latent_bc",
        "bwgym train latent-agent --scenario lora_ndpca --demo-episodes 200 --dagger-rounds 6 "
        "--dagger-episodes 80 --history-steps 3 --seed 0 --eval-episodes 100 --eval-seed 10000 --threads 1 "
        "--device cpu --log-dir {run}/latent_bc_locate_lift_v1_lora_ndpca.tb "
        "--bc-out {run}/latent_bc_locate_lift_v1_lora_ndpca_bc_only.ckpt "
        "--out {run}/latent_bc_locate_lift_v1_lora_ndpca.ckpt",
        ("ndpca_locate_lift_v1",),
    ),
    ZooModel(
        AGENTS + "latent_bc_locate_lift_v1_narrowband_ndpca.ckpt",
        V1,
        "agent/latent_bc",
        "bwgym train latent-agent --scenario narrowband_ndpca --demo-episodes 200 --dagger-rounds 6 "
        "--dagger-episodes 80 --history-steps 3 --seed 0 --eval-episodes 100 --eval-seed 10000 --threads 1 "
        "--device cpu --log-dir {run}/latent_bc_locate_lift_v1_narrowband_ndpca.tb "
        "--bc-out {run}/latent_bc_locate_lift_v1_narrowband_ndpca_bc_only.ckpt "
        "--out {run}/latent_bc_locate_lift_v1_narrowband_ndpca.ckpt",
        ("ndpca_locate_lift_v1",),
    ),
    ZooModel(
        AGENTS + "latent_ppo_locate_lift_v1_lora_ndpca.ckpt",
        V1,
        "agent/latent_bc",
        "bwgym train latent-ppo --scenario lora_ndpca "
        "--prior {package}/agents/checkpoints/latent_bc_locate_lift_v1_lora_ndpca.ckpt --seed 0 "
        "--eval-episodes 100 --eval-seed 20000 --threads 1 --run-dir {run}/latent_ppo_lora_ndpca "
        "--out {run}/latent_ppo_locate_lift_v1_lora_ndpca.ckpt --ppo total_steps=552960 --ppo workers=2 "
        "--ppo actor_lr=0.0001 "
        "--ppo prior_coef=0.1 --ppo prior_anneal_steps=122880 --ppo critic_warmup_steps=20480 "
        "--ppo eval_episodes=60",
        ("latent_bc_locate_lift_v1_lora_ndpca", "ndpca_locate_lift_v1"),
    ),
    ZooModel(
        AGENTS + "fleet_allocator_ndpca_locate_lift_v1.ckpt",
        None,
        "fleet_allocator/scorer",
        "bwgym train allocator --fleet --fleet-search 7 --fleet-population 9 --fleet-rounds 4 "
        "--scenario fleet_narrowband_ndpca --seed 0 --threads 1 --out {run}/fleet_allocator_ndpca_locate_lift_v1",
        ("bc_locate_lift_v1", "ndpca_locate_lift_v1"),
        "fleet_allocator_ndpca_locate_lift_v1/fleet_policy.ckpt",
    ),
    _bc(V0, 200),
    *_locate_lift_codecs(V0),
)


def ordered(models: Iterable[ZooModel]) -> list[ZooModel]:
    """``models`` with every row after the rows it depends on (stable: the given order otherwise).

    Raises:
        ValueError: a dependency that is no row, or a cycle.
    """
    models = list(models)
    by_name = {m.name: m for m in models}
    known = {m.name for m in ZOO} | set(by_name)
    done: dict[str, ZooModel] = {}
    visiting: list[str] = []

    def visit(model: ZooModel) -> None:
        if model.name in done:
            return
        if model.name in visiting:
            raise ValueError(f"zoo: dependency cycle {' -> '.join([*visiting, model.name])}")
        visiting.append(model.name)
        for dep in model.depends:
            if dep not in known:
                raise ValueError(f"zoo: {model.name} depends on {dep!r}, which is no row of the zoo")
            if dep in by_name:
                visit(by_name[dep])
        visiting.pop()
        done[model.name] = model

    for model in models:
        visit(model)
    return list(done.values())


def _choices(what: str, given: str, names: Sequence[str]) -> str:
    near = difflib.get_close_matches(given, names, n=1)
    hint = f" Did you mean {near[0]!r}?" if near else ""
    return f"{what} {given!r} matches no model.{hint} Expected one of: {', '.join(names)}"


def select(
    models: Sequence[ZooModel] = ZOO,
    only: Sequence[str] = (),
    kind: str | None = None,
    env: str | None = None,
) -> list[ZooModel]:
    """The rows named by ``only`` (names or shell patterns), of ``kind`` and ``env``, in dependency order.

    ``kind`` matches a whole kind (``codec/ndpca``) or its family (``codec``).

    Raises:
        ValueError: a name, pattern, kind or env that matches no row (with the ones that exist).
    """
    names = [m.name for m in models]
    for pattern in only:
        if not fnmatch.filter(names, pattern):
            raise ValueError(_choices("--only", pattern, names))
    kinds = sorted({m.kind for m in models} | {m.kind.split("/")[0] for m in models})
    if kind is not None and kind not in kinds:
        raise ValueError(_choices("--kind", kind, kinds))
    envs = sorted({str(m.env) for m in models})
    if env is not None and env not in envs:
        raise ValueError(_choices("--env", env, envs))
    chosen = [
        m
        for m in models
        if (not only or any(fnmatch.fnmatchcase(m.name, p) for p in only))
        and (kind is None or kind in (m.kind, m.kind.split("/")[0]))
        and (env is None or env == str(m.env))
    ]
    return ordered(chosen)


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (commands stay readable)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def install(model: ZooModel, run_dir: Path, package_dir: Path, record: dict[str, Any]) -> Path:
    """Copy the file a row's command made (and its JSON sidecar) from ``run_dir`` into ``package_dir``.

    Each file is written atomically. Without a sidecar from the command, ``record`` (the command
    and its duration) becomes the sidecar, so every installed file says how it was made.

    Raises:
        FileNotFoundError: the command left no file where the row says it writes one.
    """
    from bwgym.common.checkpoint import sidecar_path
    from bwgym.common.files import atomic_write, atomic_write_text

    made = run_dir / model.made_at
    if not made.is_file():
        raise FileNotFoundError(f"zoo: {model.name}: its command wrote no {made}; the row's output is wrong")
    target = package_dir / model.file
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(made, "rb") as source:
        atomic_write(target, lambda f: f.write(source.read()))
    sidecar = sidecar_path(made)
    text = sidecar.read_text() if sidecar.is_file() else json.dumps(record, indent=1) + "\n"
    atomic_write_text(sidecar_path(target), text)
    return target


def _run(argv: Sequence[str]) -> int:
    """Run a ``bwgym`` command line in a fresh process (its threads, memory and env vars its own)."""
    return subprocess.run([sys.executable, "-m", "bwgym.cli", *argv[1:]], check=False).returncode


def walk(
    models: Sequence[ZooModel],
    run_dir: Path,
    package_dir: Path = PACKAGE_DIR,
    dry_run: bool = False,
    run: Callable[[Sequence[str]], int] = _run,
) -> list[Path]:
    """Run each row's command in order and install its file; return the files installed.

    With ``dry_run`` it prints the commands and runs nothing. Rows that share a command run it once.

    Raises:
        RuntimeError: a command failed (the rows before it are installed, the rest are not run).
    """
    ran: dict[str, float] = {}
    installed: list[Path] = []
    for i, model in enumerate(models, 1):
        line = shlex.join(model.argv(_shown(run_dir), _shown(package_dir)))
        print(f"[{i}/{len(models)}] {model.name} ({model.kind}, {model.env or 'no env'}): {line}", flush=True)
        if dry_run:
            continue
        if line not in ran:
            start = time.perf_counter()
            run_dir.mkdir(parents=True, exist_ok=True)
            code = run(model.argv(run_dir, package_dir))
            if code != 0:
                raise RuntimeError(f"zoo: {model.name}: its command exited with status {code}; stopped")
            ran[line] = round(time.perf_counter() - start, 1)
        record = {"checkpoint": PurePosixPath(model.file).name, "command": line, "seconds": ran[line]}
        target = install(model, run_dir, package_dir, record)
        print(
            f"[{i}/{len(models)}] {model.name}: {ran[line]:.0f} s -> {_shown(target)} "
            f"({target.stat().st_size / 1e3:.0f} kB)",
            flush=True,
        )
        installed.append(target)
    return installed


def cmd_zoo(args: argparse.Namespace) -> int:
    """Print the zoo: one line per shipped model, its command under it with ``--commands``."""
    print(f"{'model':38s} {'kind':20s} {'env':28s} depends on")
    for model in ZOO:
        print(f"{model.name:38s} {model.kind:20s} {model.env or '-':28s} {', '.join(model.depends) or '-'}")
        if args.commands:
            print(f"    {model.command}")
    print(
        f"\n{len(ZOO)} models in {_shown(PACKAGE_DIR)}/; `bwgym train --all --dry-run` prints their commands"
    )
    return 0


def cmd_train_all(args: argparse.Namespace) -> int:
    """``bwgym train --all``: walk the zoo (or the rows chosen) and install what each command makes."""
    if not args.zoo_all:
        given = [flag for flag, value in _zoo_flags(args) if value]
        if given:
            raise ValueError(f"{', '.join(given)} apply with --all; add --all")
        raise ValueError(
            "a sub-command is required (agent, codec, allocator, sensor-codec, sensor-control, wyner-ziv, "
            "two-receivers) or --all (every shipped model; see bwgym train --help)"
        )
    models = select(ZOO, args.zoo_only or (), args.zoo_kind, args.zoo_env)
    run_dir = Path(args.zoo_run_dir or Path("runs") / "zoo" / time.strftime("%Y%m%d-%H%M%S"))
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--run-dir {run_dir} is a file; expected a folder")
    try:
        walk(models, run_dir, dry_run=args.zoo_dry_run)
    except RuntimeError as err:
        print(f"bwgym train --all: {err}", file=sys.stderr)
        return 1
    if not args.zoo_dry_run:
        print(f"installed {len(models)} models; run folder {_shown(run_dir)}")
    return 0


def _zoo_flags(args: argparse.Namespace) -> list[tuple[str, Any]]:
    return [
        ("--only", args.zoo_only),
        ("--kind", args.zoo_kind),
        ("--env", args.zoo_env),
        ("--dry-run", args.zoo_dry_run),
        ("--run-dir", args.zoo_run_dir),
    ]


def register(subparsers: Any) -> Any:
    """Add ``zoo`` and ``train`` (with ``--all``) to the ``bwgym`` sub-parsers; return train's sub-parsers."""
    zoo = subparsers.add_parser(
        "zoo", help="list every shipped model: file, env, kind, dependencies (and the command that makes it)"
    )
    zoo.add_argument("--commands", action="store_true", help="print each model's command under it")
    zoo.set_defaults(func=cmd_zoo)
    train = subparsers.add_parser(
        "train",
        help="train an agent, a codec or an allocator, or every shipped model (--all)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument(
        "--all", dest="zoo_all", action="store_true", help="retrain every shipped model (`bwgym zoo`)"
    )
    train.add_argument(
        "--only", dest="zoo_only", nargs="+", metavar="NAME", help="with --all: these models (or patterns)"
    )
    train.add_argument(
        "--kind", dest="zoo_kind", metavar="KIND", help="with --all: models of this kind (codec, agent/bc...)"
    )
    train.add_argument("--env", dest="zoo_env", metavar="ENV", help="with --all: models of this env")
    train.add_argument(
        "--dry-run", dest="zoo_dry_run", action="store_true", help="with --all: print the commands in order"
    )
    train.add_argument(
        "--run-dir",
        dest="zoo_run_dir",
        metavar="DIR",
        help="with --all: run folder (default runs/zoo/<stamp>)",
    )
    train.set_defaults(func=cmd_train_all)
    return train.add_subparsers(dest="what", title="what to train")
