"""Codec training: eq. 8 through a frozen agent, loss goes down, the CLI, loading, regeneration."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from tiny_agent import SIZE, TinyAgent, collect_lift_demos, tiny_agent, tiny_config, tiny_options  # noqa: E402,F401

import bwgym  # noqa: F401  (registers the envs; before mujoco)
from bwgym.codecs import codec_entry, codec_names, load_codec, make_codec
from bwgym.codecs.core.protocol import ViewSpec
from bwgym.codecs.image.linear import LinearDPCACodec, PCACodec
from bwgym.codecs.image.ndpca import NDPCACodec
from bwgym.codecs.image.neural import DAECodec, JAECodec
from bwgym.codecs.train import (
    TrainConfig,
    codec_loss,
    train_codec,
    train_registered,
)


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    return collect_lift_demos(tmp_path_factory, episodes=5, seed=11)


@pytest.fixture(scope="module")
def frames(demos) -> tuple[dict[str, np.ndarray], np.ndarray]:
    from bwgym.cli.codecs import load_frames

    return load_frames(demos, progress=False)


def test_tiny_training_lowers_the_loss_and_logs(frames, tmp_path) -> None:
    cfg = tiny_config("ndpca", steps=120, eval_every=60, lr=3e-3)
    agent = tiny_agent()
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    codec = train_codec(cfg, *frames, agent=agent, log_dir=tmp_path / "tb", progress=False)
    m = codec.metrics
    m_max = 16
    assert m[f"val/loss_m{m_max}"] < m[f"initial_val/loss_m{m_max}"], m
    assert m[f"val/psnr_db_m{m_max}"] > m[f"initial_val/psnr_db_m{m_max}"], m
    assert any(k.startswith("val/psnr_db_m") for k in m) and any(k.startswith("val/task_mse_m") for k in m)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*")), "TensorBoard log written"
    for k, v in agent.state_dict().items():
        assert torch.equal(v, before[k]), f"the frozen agent changed: {k}"
    assert all(p.requires_grad for p in agent.parameters()), "requires_grad restored"
    assert codec.train_config["lambda_task"] == 1.0 and codec.train_config["steps"] == 120


def test_task_loss_backpropagates_into_the_encoders_through_the_frozen_agent(frames) -> None:
    agent = tiny_agent()
    agent.requires_grad_(False)
    net = NDPCACodec.build_network(["arm", "side"], (SIZE, SIZE), 6, channels=(4, 8, 8))
    projection = NDPCACodec.training_projection(net.latent_dims, 2, 12)
    x = {v: torch.as_tensor(frames[0][v][:8]).permute(0, 3, 1, 2).float() / 255 for v in ("arm", "side")}
    terms = codec_loss(
        net, projection, x, m=5, step_octaves=3.0, agent=agent, targets=None, lambda_task=1.0, lambda_rec=0.0
    )  # task term only
    assert float(terms["rec_mse"].detach()) > 0 and float(terms["task_mse"].detach()) > 0
    terms["loss"].backward()
    for view in ("arm", "side"):
        grads = [p.grad for p in net.trunks[view].parameters()] + [
            p.grad for p in net.heads[view].parameters()
        ]
        assert all(g is not None for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0, f"no task gradient reached the {view} encoder"
    assert all(p.grad is None for p in agent.parameters())


def test_task_aware_variant_needs_an_agent(frames) -> None:
    with pytest.raises(ValueError, match="agent"):
        train_codec(TrainConfig.for_variant("ndpca", steps=1), *frames)
    with pytest.raises(ValueError, match="unknown codec 'nope'"):
        TrainConfig.for_variant("nope")
    with pytest.raises(ValueError, match="not a learned codec"):
        TrainConfig.for_variant("jpeg")


def test_each_variant_trains_and_loads_through_load_codec(frames, tmp_path) -> None:
    classes = {"ndpca": NDPCACodec, "ndpca_agnostic": NDPCACodec, "dae": DAECodec, "jae": JAECodec}
    first = None
    for variant, cls in classes.items():
        path = tmp_path / f"{variant}.ckpt"
        codec = train_registered(
            variant,
            frames[0],
            path,
            env_id="bwgym/LocateLift-v0",
            episode_index=frames[1],
            task_model=tiny_agent(),
            progress=False,
            **tiny_options(steps=3, batch_size=4, latent_dim=4, channels=(4, 8, 8), init=first),
        )
        assert type(codec) is cls and path.is_file()
        first = first or str(path)
        loaded = load_codec(path, device="cpu")
        assert type(loaded) is cls and loaded.train_config["codec"] == variant and loaded.variant == variant
        assert loaded.train_config["lambda_task"] == codec_entry(variant).recipe["lambda_task"]
    views = [ViewSpec("arm", (SIZE, SIZE, 3)), ViewSpec("side", (SIZE, SIZE, 3))]
    for variant, cls in (("linear_dpca", LinearDPCACodec), ("pca", PCACodec)):
        path = tmp_path / f"{variant}.ckpt"
        train_registered(variant, frames[0], path, env_id="bwgym/LocateLift-v0")
        assert type(load_codec(path)) is cls
        assert type(make_codec(variant, views, env_id="bwgym/LocateLift-v0", checkpoint=path)) is cls
        assert load_codec(path).train_config["downsample"] == codec_entry(variant).recipe["downsample"]
        with pytest.raises(ValueError, match="Other"):
            make_codec(variant, views, env_id="bwgym/Other-v0", checkpoint=path)
        with pytest.raises(ValueError, match="84"):
            load_codec(path).check_spec(views={"arm": (84, 84, 3), "side": (84, 84, 3)})
    with pytest.raises(FileNotFoundError):
        load_codec(tmp_path / "missing.ckpt")


def test_one_registry_lists_the_trainable_and_shipped_codecs() -> None:
    """The CLI, training and the shipped checkpoints read one table (the old CLI list and
    ``train.VARIANTS`` are gone): every LocateLift codec of the zoo is registered, trainable and its
    file ships (the zoo's own tests check its order)."""
    from bwgym.cli.zoo import ZOO

    names = codec_names()
    trainable = {n for n in names if codec_entry(n).trainable}
    shipped = {
        m.kind.removeprefix("codec/") for m in ZOO if m.kind.startswith("codec/") and "locate_lift" in m.name
    }
    assert {"linear_dpca", "pca", "ndpca_agnostic", "ndpca", "dae", "jae"} <= shipped <= trainable
    for name in shipped - {"gray_wyner"}:
        assert codec_entry(name).shipped_path.is_file(), name
    assert not {"raw", "jpeg", "png"} & trainable


def _parser():
    from bwgym.cli import codecs as commands

    parser = argparse.ArgumentParser(prog="bwgym")
    sub = parser.add_subparsers(dest="command")
    train = sub.add_parser("train").add_subparsers(dest="what")
    commands.register(sub, train)
    return parser


def test_cli_trains_a_codec_from_demos(demos, tmp_path, capsys) -> None:
    out = tmp_path / "agnostic.ckpt"
    args = _parser().parse_args(
        [
            "train",
            "codec",
            "--codec",
            "ndpca_agnostic",
            "--env",
            "bwgym/LocateLift-v0",
            "--demos",
            str(demos),
            "--out",
            str(out),
            "--steps",
            "4",
            "--batch-size",
            "4",
            "--latent-dim",
            "4",
            "--device",
            "cpu",
            "--threads",
            "1",
        ]
    )
    assert args.func(args) == 0
    report = json.loads((tmp_path / "agnostic.json").read_text())  # the sidecar beside agnostic.ckpt
    assert report["codec"] == "ndpca_agnostic" and report["train_config"]["steps"] == 4
    trained = load_codec(out)
    assert isinstance(trained, NDPCACodec)
    trained.check_spec(env_id="bwgym/LocateLift-v0")
    assert list((tmp_path / "agnostic.tb").glob("events.*"))
    bad = _parser().parse_args(
        ["train", "codec", "--codec", "ndpca", "--demos", str(demos), "--out", str(tmp_path / "x.npz")]
    )
    assert bad.func(bad) == 2
    assert "must end in .ckpt" in capsys.readouterr().err
    # --codec takes any registered name (no fixed choices list): an unknown one is refused with the
    # registry's message and exit code 2, before any frames are loaded
    unknown = _parser().parse_args(["train", "codec", "--codec", "gzip", "--out", str(tmp_path / "x.ckpt")])
    assert unknown.func(unknown) == 2
    assert "unknown codec 'gzip'" in capsys.readouterr().err
    fixed = _parser().parse_args(["train", "codec", "--codec", "jpeg", "--out", str(tmp_path / "x.ckpt")])
    assert fixed.func(fixed) == 2
    assert "nothing to train" in capsys.readouterr().err


def test_the_zoo_commands_train_every_shipped_codec(demos, tmp_path, monkeypatch) -> None:
    """The zoo's v0 LocateLift codec rows and the synthetic Gray-Wyner, walked for real with tiny step
    counts into a scratch package: each command trains its codec, the fine-tuned ones from the
    pre-trained file the walk installed before them, and every file gets its sidecar."""
    from bwgym.agents import bc
    from bwgym.cli import main
    from bwgym.cli.zoo import select, walk
    from bwgym.common.checkpoint import sidecar_path

    monkeypatch.setattr(bc.BCAgent, "load", classmethod(lambda cls, *a, **kw: tiny_agent()))

    def tiny(argv):
        argv = list(argv)
        if "--demos" in argv:
            argv[argv.index("--demos") + 1] = str(demos)
        if "--steps" in argv:
            argv[argv.index("--steps") + 1] = "6"
        elif "gray_wyner" in argv:
            argv += ["--steps", "4"]
        return main([*argv[1:], "--device", "cpu"])

    models = select(kind="codec", env="bwgym/LocateLift-v0") + select(only=["gray_wyner_synthetic"])
    written = walk(models, tmp_path / "run", tmp_path / "package", run=tiny)
    assert [p.name for p in written] == [m.file.rsplit("/", 1)[1] for m in models]
    for model, path in zip(models, written, strict=True):
        assert path == tmp_path / "package" / model.file and sidecar_path(path).is_file()
        codec = load_codec(path)
        if model.env is None:  # synthetic data: no env, no variant
            assert codec.name == "gray_wyner"
            continue
        codec.check_spec(env_id="bwgym/LocateLift-v0")
        variant = model.kind.removeprefix("codec/")
        assert codec.name == variant.replace("_agnostic", "") and codec.variant == variant
