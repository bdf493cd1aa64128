import json
from pathlib import Path

import numpy as np
import pytest
import torch

import bwgym  # noqa: F401  (registers the envs; before mujoco)
from bwgym.agents.bc import CHECKPOINT_KIND, LEGACY_FORMAT, SHIPPED_CHECKPOINT, BCAgent, convert_legacy
from bwgym.agents.bc_training import random_shift, train_bc
from bwgym.agents.demos import DemoDataset, collect_demos
from bwgym.agents.evaluation import evaluate_agent
from bwgym.cli import build_parser as _parser
from bwgym.common.checkpoint import CheckpointError, load_checkpoint

CODEC_CHECKPOINTS = sorted((Path(bwgym.__file__).parent / "codecs" / "checkpoints").glob("*.ckpt"))

SMALL = {"image_size": 32}
TINY_TRAIN = dict(
    epochs=12,
    batch_size=32,
    lr=1e-3,
    val_fraction=0.2,
    seed=0,
    device="cpu",
    patience=12,
    num_threads=1,
    progress=False,
    channels=(16, 32, 32),
    features=64,
    hidden=(128,),
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("bc") / "demos"
    return DemoDataset(
        collect_demos(out, episodes=10, noise_std=0.1, seed=0, env_kwargs=SMALL, progress=False)
    )


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("tb")
    agent = train_bc(tiny, None, log_dir=log_dir, **TINY_TRAIN)
    return agent, log_dir


def test_bc_beats_constant_and_random_predictors_on_held_out_episodes(tiny, trained):
    agent, log_dir = trained
    train_ids, val_ids = tiny.split(TINY_TRAIN["val_fraction"], TINY_TRAIN["seed"])
    _, train_actions, _ = tiny.arrays(train_ids)
    obs, actions, _ = tiny.arrays(val_ids)
    bc_mse = float(np.mean((agent.act_batch(obs) - actions) ** 2))
    constant_mse = float(np.mean((train_actions.mean(0) - actions) ** 2))
    random_mse = float(np.mean((np.random.default_rng(0).uniform(-1, 1, actions.shape) - actions) ** 2))
    assert bc_mse < 0.7 * constant_mse < random_mse, (bc_mse, constant_mse, random_mse)
    assert agent.train_config["seed"] == 0 and agent.train_config["train_episodes"] == len(train_ids)
    assert any(log_dir.rglob("events.out.tfevents*"))


def test_training_is_deterministic(tiny, trained):
    again = train_bc(tiny, None, **{**TINY_TRAIN, "epochs": 2})
    twice = train_bc(tiny, None, **{**TINY_TRAIN, "epochs": 2})
    for (name, a), b in zip(again.state_dict().items(), twice.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_save_load_round_trip_and_spec_checks(trained, tiny, tmp_path):
    agent, _ = trained
    agent.extra_meta = {"eval": {"success_rate": 0.5}}
    path = agent.save(tmp_path / "agent.ckpt")
    loaded = BCAgent.load(path, env_id="bwgym/LocateLift-v0", views=["arm", "side"], image_shape=(32, 32))
    obs, _, _ = tiny.arrays([0])
    assert np.array_equal(agent.act_batch(obs), loaded.act_batch(obs))
    for (name, a), b in zip(agent.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert loaded.train_config == agent.train_config and loaded.spec == agent.spec
    assert loaded.extra_meta == agent.extra_meta and loaded.arch == agent.arch
    ckpt = load_checkpoint(path, kind="agent/bc")  # the project format: JSON + .npy, no code
    meta = ckpt.metadata
    assert ckpt.kind == CHECKPOINT_KIND and ckpt.versions["bwgym"] and "torch" in ckpt.versions
    assert meta["env_id"] == "bwgym/LocateLift-v0" and meta["view_names"] == ["arm", "side"]
    assert meta["views"]["arm"] == {"shape": [32, 32, 3], "dtype": "uint8"} and meta["image_shape"] == [
        32,
        32,
    ]
    assert meta["proprio_dim"] == 0 and meta["arch"]["features"] == 64
    assert meta["config"] == agent.train_config and meta["metrics"] == agent.extra_meta

    with pytest.raises(
        CheckpointError,
        match="agent.ckpt was trained for env_id='bwgym/LocateLift-v0', but env_id='bwgym/Other-v0' was",
    ):
        BCAgent.load(path, env_id="bwgym/Other-v0")
    with pytest.raises(ValueError, match="views=\\['arm', 'side'\\].*views=\\['arm', 'front'\\]"):
        BCAgent.load(path, views=["arm", "front"])
    with pytest.raises(ValueError, match="image_shape=\\[32, 32\\].*image_shape=\\[84, 84\\]"):
        BCAgent.load(path, image_shape=(84, 84, 3))
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.ckpt is not a bwgym checkpoint"):
        BCAgent.load(tmp_path / "junk.ckpt")
    with pytest.raises(FileNotFoundError):
        BCAgent.load(tmp_path / "missing.ckpt")
    with pytest.raises(ValueError, match="trained for.*image_shape=\\[32, 32\\].*image_shape=\\[84, 84\\]"):
        evaluate_agent(agent, episodes=1, env_kwargs={"image_size": 84}, progress=False)


@pytest.mark.parametrize("codec", CODEC_CHECKPOINTS, ids=lambda p: p.stem)
def test_checkpoint_of_another_kind_is_refused(codec):
    with pytest.raises(
        CheckpointError, match=f"{codec.name} is a checkpoint of 'codec/.*', expected 'agent/bc'"
    ):
        BCAgent.load(codec)


def test_legacy_torch_file_is_refused_and_converts_bit_for_bit(trained, tiny, tmp_path):
    agent, _ = trained
    old = tmp_path / "old.pt"
    meta = dict(
        format=LEGACY_FORMAT,
        **agent.spec,
        action_dim=agent.action_dim,
        arch=agent.arch,
        train_config=agent.train_config,
        extra={"eval": {"success_rate": 1.0}},
        bwgym_version=bwgym.__version__,
    )
    state = {k: v.detach().cpu().clone() for k, v in agent.state_dict().items()}
    torch.save({"format": LEGACY_FORMAT, "meta": json.loads(json.dumps(meta)), "state_dict": state}, old)
    with pytest.raises(
        CheckpointError, match="old.pt is a BC agent in the earlier torch format.*convert_legacy"
    ):
        BCAgent.load(old)
    path = convert_legacy(old)
    assert path == tmp_path / "old.ckpt"
    loaded = BCAgent.load(path, env_id="bwgym/LocateLift-v0")
    for (name, a), b in zip(state.items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    obs, _, _ = tiny.arrays([0])
    assert np.array_equal(agent.act_batch(obs), loaded.act_batch(obs))
    assert loaded.train_config == agent.train_config and loaded.extra_meta == {"eval": {"success_rate": 1.0}}
    with pytest.raises(FileExistsError, match="overwrite"):
        convert_legacy(old)
    with pytest.raises(CheckpointError, match="earlier torch format|convert_legacy reads"):
        convert_legacy(path, tmp_path / "again.ckpt")  # a new checkpoint is not a legacy file


def test_forward_is_differentiable_wrt_images(trained):
    agent, _ = trained
    agent.requires_grad_(False)  # frozen, as NDPCA uses it
    try:
        views = {v: torch.rand(2, 3, 32, 32, requires_grad=True) for v in ("arm", "side")}
        out = agent(views)
        assert out.shape == (2, 4) and out.abs().max() <= 1
        out.pow(2).sum().backward()
        for v, x in views.items():
            assert x.grad is not None and x.grad.abs().sum() > 0, v
    finally:
        agent.requires_grad_(True)


def test_preprocess_and_act_shapes(trained, tiny):
    agent, _ = trained
    episode = tiny.episode(0)
    single = {v: episode[v][0] for v in ("arm", "side")}
    views = agent.preprocess(single)
    assert views["arm"].shape == (1, 3, 32, 32) and views["arm"].dtype == torch.float32
    assert 0 <= float(views["arm"].min()) and float(views["arm"].max()) <= 1
    action = agent.act(single)
    assert action.shape == (4,) and action.dtype == np.float32
    batch = agent.act_batch({v: episode[v][:5] for v in ("arm", "side")})
    np.testing.assert_allclose(batch[0], action, atol=1e-6)
    with pytest.raises(KeyError, match="side"):
        agent.preprocess({"arm": episode["arm"][0]})


def test_random_shift_moves_content_within_pad():
    images = torch.rand(8, 3, 16, 16)
    shifted = random_shift(images, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape
    assert torch.equal(random_shift(images, 0), images)
    # Each output equals the input moved by at most 2 pixels (interior check).
    for b in range(8):
        assert any(
            torch.equal(shifted[b, :, 4:12, 4:12], images[b, :, 4 + dy : 12 + dy, 4 + dx : 12 + dx])
            for dy in range(-2, 3)
            for dx in range(-2, 3)
        )


def test_evaluate_agent_table(trained):
    agent, _ = trained
    table = evaluate_agent(agent, episodes=2, seed=3, progress=False)
    assert list(table.columns) == ["episode", "seed", "success", "steps", "return"]
    assert list(table.seed) == [3, 4] and table.steps.between(1, 50).all()


def test_train_agent_command(tiny, tmp_path, capsys):
    out = tmp_path / "cli" / "bc.ckpt"
    args = _parser().parse_args(
        [
            "train",
            "agent",
            "--algo",
            "bc",
            "--env",
            "bwgym/LocateLift-v0",
            "--demos",
            str(tiny.path),
            "--epochs",
            "1",
            "--eval-episodes",
            "2",
            "--threads",
            "1",
            "--log-dir",
            str(tmp_path / "tb"),
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert args.func(args) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    low, high = report["eval"]["success_ci95_wilson"]
    assert 0 <= low <= report["eval"]["success_rate"] <= high <= 1
    assert report["eval"]["episodes"] == 2 and report["command"].startswith("bwgym train agent --algo bc")
    assert BCAgent.load(out).extra_meta["eval"]["episodes"] == 2
    assert "success rate" in capsys.readouterr().out

    old = _parser().parse_args(
        ["train", "agent", "--demos", str(tiny.path), "--out", str(tmp_path / "bc.pt")]
    )
    assert old.func(old) == 2
    assert "--out must name a .ckpt file" in capsys.readouterr().err
    ppo = _parser().parse_args(["train", "agent", "--algo", "ppo", "--out", str(out)])
    assert ppo.func(ppo) == 2
    assert "--out must name a folder for --algo ppo" in capsys.readouterr().err


def test_shipped_checkpoint_loads_and_acts():
    assert SHIPPED_CHECKPOINT.is_file() and SHIPPED_CHECKPOINT.suffix == ".ckpt"
    assert not SHIPPED_CHECKPOINT.with_suffix(".pt").exists()  # one format: the torch file is gone
    assert load_checkpoint(SHIPPED_CHECKPOINT).kind == CHECKPOINT_KIND
    assert SHIPPED_CHECKPOINT.stat().st_size < 2_000_000
    agent = BCAgent.load_shipped(env_id="bwgym/LocateLift-v0", views=["arm", "side"], image_shape=(84, 84))
    obs = {v: np.zeros((84, 84, 3), np.uint8) for v in agent.view_names}
    if agent.proprio_dim:
        obs["proprio"] = np.zeros(agent.proprio_dim, np.float32)
    action = agent.act(obs)
    assert action.shape == (4,) and np.all(np.abs(action) <= 1)
    report = json.loads(SHIPPED_CHECKPOINT.with_suffix(".json").read_text())
    assert report["eval"]["episodes"] >= 100 and report["eval"]["success_rate"] >= 0.8


@pytest.mark.slow
def test_shipped_agent_succeeds_on_clean_views():
    torch.set_num_threads(1)
    agent = BCAgent.load_shipped()
    table = evaluate_agent(agent, "bwgym/LocateLift-v0", episodes=20, seed=20_000, progress=False)
    assert table.success.mean() >= 0.7, table


def test_dagger_round_aggregates_expert_labelled_rollouts(tiny, tmp_path):
    agent = train_bc(
        tiny, None, **{**TINY_TRAIN, "epochs": 1, "dagger_rounds": 1, "dagger_episodes": 2}, log_dir=tmp_path
    )
    first, second = agent.train_config["history"]
    assert second["train_steps"] > first["train_steps"]
    assert 0.0 <= second["rollout_success"] <= 1.0


def test_proprio_agent(tmp_path):
    kwargs = {**SMALL, "proprio": True}
    data = DemoDataset(collect_demos(tmp_path / "p", episodes=2, env_kwargs=kwargs, progress=False))
    assert data.extra_names == ["proprio"]
    obs, _, _ = data.arrays()
    assert obs["proprio"].shape == (data.n_steps, 7)
    agent = train_bc(
        data, tmp_path / "p.ckpt", **{**TINY_TRAIN, "epochs": 1, "val_fraction": 0.5, "use_proprio": True}
    )
    assert BCAgent.load(tmp_path / "p.ckpt").proprio_dim == 7
    assert agent.act({k: v[0] for k, v in obs.items()}).shape == (4,)
    assert evaluate_agent(agent, episodes=1, progress=False).steps[0] >= 1
    with pytest.raises(ValueError, match="proprio"):
        train_bc(DemoDataset(tiny_path(tmp_path)), None, **{**TINY_TRAIN, "use_proprio": True})


def tiny_path(tmp_path):
    return collect_demos(tmp_path / "noproprio", episodes=1, env_kwargs=SMALL, progress=False)
