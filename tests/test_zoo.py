"""The model zoo: one row per shipped file, commands the real CLI parses, a DAG, and `train --all`."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bwgym.cli import build_parser, main
from bwgym.cli.zoo import PACKAGE_DIR, ZOO, ZooModel, cmd_train_all, ordered, select, walk
from bwgym.codecs.train import SHIPPED_RECIPE
from bwgym.common.checkpoint import load_checkpoint, sidecar_path

REPO = PACKAGE_DIR.parent
BY_NAME = {m.name: m for m in ZOO}


def _shipped_files() -> list[str]:
    """Every file git tracks in the package's checkpoint folders, relative to the package."""
    listed = subprocess.run(
        ["git", "ls-files", "bwgym/*/checkpoints/*"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    if not listed:  # an installed package without its git checkout: what is on disk
        listed = [str(p.relative_to(REPO)) for p in PACKAGE_DIR.glob("*/checkpoints/*") if p.is_file()]
    return sorted(str(Path(f).relative_to("bwgym")) for f in listed)


def test_the_table_and_the_shipped_files_agree_both_ways() -> None:
    files = _shipped_files()
    rows = sorted(m.file for m in ZOO)
    assert len(set(rows)) == len(rows) == len(BY_NAME), "one row per file, one name per row"
    models = [f for f in files if f.endswith(".ckpt")]
    assert sorted(models) == rows, (
        f"not in the zoo: {set(models) - set(rows)}; not shipped: {set(rows) - set(models)}"
    )
    sidecars = {str(sidecar_path(m.file)) for m in ZOO}
    for other in set(files) - set(models):
        if other.endswith(".json"):  # one naming rule: x.json beside x.ckpt, never x.ckpt.json
            assert other in sidecars, f"{other} is the sidecar of no zoo row"
        else:
            assert other.endswith("README.md"), f"{other} is neither a model, a sidecar nor a README"


def test_each_row_says_what_its_file_records() -> None:
    for model in ZOO:
        ckpt = load_checkpoint(PACKAGE_DIR / model.file)
        assert ckpt.kind == model.kind, model.name
        assert ckpt.metadata.get("env_id") == model.env, model.name


def test_dependencies_form_a_dag_and_the_table_is_in_dependency_order() -> None:
    assert [m.name for m in ordered(ZOO)] == [m.name for m in ZOO]
    for i, model in enumerate(ZOO):
        assert set(model.depends) <= {m.name for m in ZOO[:i]}, f"{model.name} runs before a dependency"
    loop = (
        ZooModel("x/a.ckpt", None, "k", "bwgym zoo", ("b",)),
        ZooModel("x/b.ckpt", None, "k", "bwgym zoo", ("a",)),
    )
    with pytest.raises(ValueError, match="cycle a -> b -> a"):
        ordered(loop)
    with pytest.raises(ValueError, match="'nope', which is no row"):
        ordered([ZooModel("x/c.ckpt", None, "k", "bwgym zoo", ("nope",))])


def test_every_command_parses_with_the_real_cli_and_writes_only_into_the_run_folder(tmp_path) -> None:
    run_dir, package = tmp_path / "run", tmp_path / "package"
    run_dir.mkdir()
    parser = build_parser()
    outputs = set()
    for model in ZOO:
        argv = model.argv(run_dir, package)
        assert argv[:2] == ["bwgym", "train"], model.name
        args = parser.parse_args(argv[1:])
        assert args.func is not cmd_train_all and args.what, f"{model.name}: not a training sub-command"
        out = Path(args.out)
        assert out.parent == run_dir, f"{model.name} writes outside the run folder: {out}"
        made = run_dir / model.made_at
        assert made == out or out in made.parents, f"{model.name}: {made} is not what --out {out} makes"
        assert made not in outputs or model.command in {m.command for m in ZOO if run_dir / m.made_at == made}
        outputs.add(made)


def test_every_shipped_file_a_command_reads_is_a_dependency() -> None:
    from bwgym.codecs import codec_entry
    from bwgym.scenarios.config import load_scenario

    for model in ZOO:
        named = re.findall(r"\{package\}/(\S+?\.ckpt)", model.command)
        for file in named:
            assert Path(file).stem in model.depends, f"{model.name} reads {file} without depending on it"
        scenarios = re.search(r"--scenario (\S+)", model.command)
        for name in scenarios.group(1).split(",") if scenarios else ():
            scenario = load_scenario(name)
            if scenario.codec.name == "none" or scenario.codec.checkpoint:
                continue
            path = codec_entry(scenario.codec.name).shipped_path_for(scenario.env.id)
            if path is not None:
                assert path.stem in model.depends, f"{model.name}: scenario {name} reads {path.name}"


def test_the_locate_lift_codec_rows_follow_the_shipped_recipe() -> None:
    for model in ZOO:
        if model.kind.startswith("codec/") and "--demos" in model.command:
            args = build_parser().parse_args(model.argv("r", "p")[1:])
            stage = {"ndpca_agnostic": "pretrain", "linear_dpca": None, "pca": None}.get(
                args.codec, "finetune"
            )
            assert args.episodes == SHIPPED_RECIPE["episodes"] and args.seed == SHIPPED_RECIPE["seed"]
            if stage:
                got = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr}
                assert got == SHIPPED_RECIPE[stage], model.name
                assert (args.init is not None) == (stage == "finetune"), model.name


def test_select_picks_rows_by_name_pattern_kind_and_env_in_dependency_order() -> None:
    v1_codecs = select(kind="codec", env="bwgym/LocateLift-v1")
    assert [m.name for m in v1_codecs][:3] == [
        "linear_dpca_locate_lift_v1",
        "pca_locate_lift_v1",
        "ndpca_agnostic_locate_lift_v1",
    ]
    assert {m.env for m in v1_codecs} == {"bwgym/LocateLift-v1"} and len(v1_codecs) == 8
    assert [m.name for m in select(only=["ppo_*", "bc_locate_lift_v1"])] == [
        "bc_locate_lift_v1",
        "ppo_locate_lift_v1_narrowband_ndpca",
    ]
    assert [m.name for m in select(kind="agent/sb3-sac")] == ["sac_sensors_control_scalar"]
    with pytest.raises(ValueError, match="Did you mean 'wyner_ziv_gaussian'"):
        select(only=["wyner_ziv_gausian"])
    with pytest.raises(ValueError, match="--kind 'codecs'"):
        select(kind="codecs")
    with pytest.raises(ValueError, match="--env 'bwgym/LocateLift-v2'"):
        select(env="bwgym/LocateLift-v2")


def _fake_run(calls: list[list[str]], fail: str | None = None):
    """A command runner that writes what the real command would (a file at ``--out``) and records it."""

    def run(argv):
        calls.append(list(argv))
        if fail and fail in argv:
            return 3
        out = Path(argv[argv.index("--out") + 1])
        if out.suffix != ".ckpt":  # a run folder: the file is policy.ckpt or the two-receiver pair
            out.mkdir(parents=True, exist_ok=True)
            names = (
                ["policy.ckpt"]
                if "two-receivers" not in argv
                else [
                    "gray_wyner_locate_lift_v1.ckpt",
                    "gray_wyner_locate_lift_v1_separate.ckpt",
                ]
            )
            for name in names:
                (out / name).write_bytes(b"model " + name.encode())
        else:
            out.write_bytes(b"model " + out.name.encode())
            if "agent" in argv:
                sidecar_path(out).write_text('{"from": "the command"}\n')
        return 0

    return run


def test_walk_installs_every_file_with_its_sidecar_and_runs_a_shared_command_once(tmp_path, capsys) -> None:
    models = select(only=["gray_wyner_locate_lift_v1*", "bc_locate_lift", "allocator_*"])
    calls: list[list[str]] = []
    installed = walk(models, tmp_path / "run", tmp_path / "package", run=_fake_run(calls))
    assert installed == [tmp_path / "package" / m.file for m in models]
    assert len(calls) == 4, "the two-receiver pair shares one command"
    for model, path in zip(models, installed, strict=True):
        assert path.read_bytes() == (tmp_path / "run" / model.made_at).read_bytes()
        record = json.loads(sidecar_path(path).read_text())
        if model.name == "bc_locate_lift":
            assert record == {"from": "the command"}  # the command's own sidecar
        else:
            assert record["command"] == shlex.join(model.argv(tmp_path / "run", tmp_path / "package"))
    assert not list((tmp_path / "package").rglob("*.tmp")), "no temporary file left behind"
    out = capsys.readouterr().out
    assert "[1/5] gray_wyner_locate_lift_v1 (codec/gray_wyner, bwgym/LocateLift-v1): bwgym train two-" in out
    assert "[5/5] bc_locate_lift: 0 s -> " in out


def test_a_failed_command_stops_the_walk_and_leaves_the_installed_files_whole(tmp_path) -> None:
    models = select(only=["vector_*"])
    (tmp_path / "package" / "codecs" / "checkpoints").mkdir(parents=True)
    old = tmp_path / "package" / models[1].file
    old.write_bytes(b"the shipped one")
    with pytest.raises(RuntimeError, match="vector_ndpca_sensor_network: its command exited with status 3"):
        walk(models, tmp_path / "run", tmp_path / "package", run=_fake_run([], fail="cv2d"))
    assert (tmp_path / "package" / models[0].file).read_bytes().startswith(b"model ")
    assert old.read_bytes() == b"the shipped one"
    assert not (tmp_path / "package" / models[2].file).exists()
    with pytest.raises(FileNotFoundError, match="wrote no"):
        walk(models[:1], tmp_path / "run2", tmp_path / "package", run=lambda argv: 0)


def test_dry_run_prints_every_command_in_order_and_creates_nothing(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--all", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(ZOO) and list(tmp_path.iterdir()) == []
    for i, (line, model) in enumerate(zip(lines, ZOO, strict=True), 1):
        assert line.startswith(f"[{i}/{len(ZOO)}] {model.name} ({model.kind}, ")
        assert " bwgym train " in line and "{run}" not in line and "{package}" not in line
    assert main(["train", "--all", "--dry-run", "--kind", "codec", "--env", "bwgym/SensorNetwork-v0"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


@pytest.mark.parametrize(
    "argv, words",
    [
        (["train"], ["required", "--all"]),
        (["train", "--dry-run"], ["--dry-run", "--all"]),
        (["train", "--all", "--only", "nope"], ["--only", "'nope'"]),
        (["train", "--all", "--kind", "agent/bcc"], ["Did you mean 'agent/bc'"]),
        (["zoo", "--bogus"], ["unrecognized"]),
        (["train", "sensor-codec", "--codec", "vector_dpca", "--out", "x.npz"], [".ckpt"]),
        (["train", "wyner-ziv", "--iterations", "0", "--out", "w.ckpt"], ["--iterations"]),
        (["train", "two-receivers", "--episodes", "5", "--out", "r"], ["--episodes"]),
    ],
)
def test_bad_zoo_invocations_are_one_line_refusals(argv, words, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err
    assert list(tmp_path.iterdir()) == []


def test_zoo_lists_every_model(capsys) -> None:
    assert main(["zoo", "--commands"]) == 0
    out = capsys.readouterr().out
    for model in ZOO:
        assert f"\n{model.name} " in out and model.command in out


def test_the_vector_dpca_row_reproduces_the_shipped_file(tmp_path) -> None:
    """A real row, end to end (~3 s): its command, run in-process, makes the shipped model again."""
    model = BY_NAME["vector_dpca_sensor_network"]
    (installed,) = walk([model], tmp_path / "run", tmp_path / "package", run=lambda argv: main(argv[1:]))
    new, shipped = load_checkpoint(installed), load_checkpoint(PACKAGE_DIR / model.file)
    assert new.kind == shipped.kind and set(new.state) == set(shipped.state)
    for key, value in shipped.state.items():
        if value.dtype.kind in "fc":
            np.testing.assert_allclose(new.state[key], value, rtol=1e-5, atol=1e-7, err_msg=key)
        else:
            np.testing.assert_array_equal(new.state[key], value, err_msg=key)
    assert new.metadata["train_config"] == shipped.metadata["train_config"]
    assert json.loads(sidecar_path(installed).read_text())["command"].startswith("bwgym train sensor-codec")
