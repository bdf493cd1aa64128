"""Codec training: eq. 8 through a frozen agent, loss goes down, the CLI, loading, regeneration."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

import bwgym  # noqa: F401  (registers the envs; before mujoco)
from bwgym.codecs.autoencoders import DAECodec, JAECodec
from bwgym.codecs.linear import LinearDPCACodec, PCACodec
from bwgym.codecs.ndpca import NDPCACodec
from bwgym.codecs.train import (
    LEARNED,
    TrainConfig,
    codec_loss,
    fit_linear_codec,
    load_codec,
    regenerate_all,
    train_codec,
)

from tiny_agent import SIZE, TinyAgent, tiny_agent  # noqa: E402,F401


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    from bwgym.agents.demos import collect_demos

    return collect_demos(
        tmp_path_factory.mktemp("demos") / "d",
        episodes=5,
        seed=11,
        env_kwargs={"image_size": SIZE},
        progress=False,
    )


@pytest.fixture(scope="module")
def frames(demos) -> tuple[dict[str, np.ndarray], np.ndarray]:
    from bwgym.codecs.train import load_frames

    return load_frames(demos, progress=False)


def test_tiny_training_lowers_the_loss_and_logs(frames, tmp_path) -> None:
    cfg = TrainConfig.for_variant(
        "ndpca",
        steps=120,
        batch_size=8,
        latent_dim=8,
        channels=(8, 8, 8),
        device="cpu",
        threads=1,
        eval_every=60,
        lr=3e-3,
    )
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
    with pytest.raises(ValueError, match="unknown learned codec"):
        TrainConfig.for_variant("nope")


def test_each_variant_trains_and_loads_through_load_codec(frames, tmp_path) -> None:
    classes = {"ndpca": NDPCACodec, "ndpca_agnostic": NDPCACodec, "dae": DAECodec, "jae": JAECodec}
    first = None
    for variant, cls in classes.items():
        cfg = TrainConfig.for_variant(
            variant,
            steps=3,
            batch_size=4,
            latent_dim=4,
            channels=(4, 8, 8),
            device="cpu",
            threads=1,
            init=first,
        )
        codec = train_codec(cfg, *frames, agent=tiny_agent(), progress=False)
        path = codec.save(tmp_path / f"{variant}.pt")
        first = first or str(path)
        loaded = load_codec(path, device="cpu")
        assert type(loaded) is cls and loaded.train_config["codec"] == variant
        assert loaded.train_config["lambda_task"] == LEARNED[variant][1]["lambda_task"]
    for variant, cls in (("linear_dpca", LinearDPCACodec), ("pca", PCACodec)):
        codec = fit_linear_codec(variant, frames[0], env_id="bwgym/LocateLift-v0")
        codec.save(tmp_path / f"{variant}.npz")
        assert type(load_codec(tmp_path / f"{variant}.npz", expect_env_id="bwgym/LocateLift-v0")) is cls
        with pytest.raises(ValueError, match="Other"):
            load_codec(tmp_path / f"{variant}.npz", expect_env_id="bwgym/Other-v0")
        with pytest.raises(ValueError, match="84"):
            load_codec(tmp_path / f"{variant}.npz", expect_image_shape=(84, 84))
    with pytest.raises(FileNotFoundError):
        load_codec(tmp_path / "missing.pt")


def test_cli_choices_match_the_variants() -> None:
    from bwgym.codecs import commands, train

    assert commands.VARIANTS == train.VARIANTS


def _parser():
    from bwgym.codecs import commands

    parser = argparse.ArgumentParser(prog="bwgym")
    sub = parser.add_subparsers(dest="command")
    train = sub.add_parser("train").add_subparsers(dest="what")
    commands.register(sub, train)
    return parser


def test_cli_trains_a_codec_from_demos(demos, tmp_path, capsys) -> None:
    out = tmp_path / "agnostic.pt"
    args = _parser().parse_args(
        [
            "train",
            "codec",
            "--codec",
            "ndpca_agnostic",
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
    report = json.loads((tmp_path / "agnostic.pt.json").read_text())
    assert report["codec"] == "ndpca_agnostic" and report["train_config"]["steps"] == 4
    assert isinstance(load_codec(out, expect_env_id="bwgym/LocateLift-v0"), NDPCACodec)
    assert list((tmp_path / "agnostic.tb").glob("events.*"))
    bad = _parser().parse_args(
        ["train", "codec", "--codec", "ndpca", "--demos", str(demos), "--out", str(tmp_path / "x.npz")]
    )
    assert bad.func(bad) == 2
    assert "must end in .pt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parser().parse_args(["train", "codec", "--codec", "gzip", "--out", "x.pt"])


@pytest.mark.slow
def test_regenerate_all_smoke(demos, tmp_path, monkeypatch) -> None:
    from bwgym.agents import bc

    monkeypatch.setattr(bc.BCAgent, "load_shipped", classmethod(lambda cls, **kw: tiny_agent()))
    written = regenerate_all(
        tmp_path, demos=demos, scale_steps=0.002, log_root=None, device="cpu", threads=1, progress=False
    )
    assert set(written) == {"linear_dpca", "pca", "ndpca_agnostic", "ndpca", "dae", "jae"}
    for variant, path in written.items():
        assert load_codec(path, expect_env_id="bwgym/LocateLift-v0").name == variant.replace("_agnostic", "")
