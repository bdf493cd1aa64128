"""Gray-Wyner codec (paper 002): eq. 14, real streams per receiver, bits against the models, dataset."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bwgym.codecs.core.protocol import Payload, PayloadError, Session, ViewSpec
from bwgym.codecs.core.registry import CHECKPOINT_DIR, codec_entry, codec_wire_id, make_codec
from bwgym.codecs.multiterminal.gray_wyner import (
    KINDS,
    GrayWynerCodec,
    GrayWynerConfig,
    GrayWynerNet,
    common_channel,
    train_gray_wyner,
)
from bwgym.codecs.multiterminal.gray_wyner_sources import (
    GaussianPairs,
    SyntheticGrayWyner,
    quantized_normal_pmf,
    symbol_entropy_bits,
    wyner_common_information_bits,
)
from bwgym.common.checkpoint import load_checkpoint

N = 8


@pytest.fixture(scope="module")
def tiny_codec() -> GrayWynerCodec:
    """A small shared model, briefly trained, with two rate points."""
    torch.set_num_threads(1)
    cfg = GrayWynerConfig(
        n_elements=N, private_dim=N, common_dim=N, hidden=32, context_hidden=16, etas=(0.02, 0.5)
    )
    net = train_gray_wyner(cfg, SyntheticGrayWyner(n_elements=N), steps=300, batch_size=64)
    return GrayWynerCodec(net, device="cpu")


def _views(seed: int = 0, n: int = N) -> dict[str, np.ndarray]:
    batch = SyntheticGrayWyner(n_elements=n).sample(1, np.random.default_rng(seed))
    return {"x1": batch["x1"][0], "x2": batch["x2"][0]}


# -- eq. 14 and the objective -------------------------------------------------------------------


def test_common_channel_mask_and_gradients() -> None:
    a = torch.tensor([1.0, 2.0, -3.0, 0.0], requires_grad=True)
    b = torch.tensor([1.0, 5.0, -3.0, 4.0], requires_grad=True)
    y0 = common_channel(a, b)
    assert y0.tolist() == [1.0, 0.0, -3.0, 0.0]
    y0.sum().backward()
    assert a.grad.tolist() == [0.5, 0.0, 0.5, 0.0]
    assert b.grad.tolist() == [0.5, 0.0, 0.5, 0.0]


def test_loss_sends_gradients_to_both_analysis_transforms() -> None:
    torch.manual_seed(0)
    net = GrayWynerNet(
        GrayWynerConfig(n_elements=N, private_dim=N, common_dim=N, hidden=16, context_hidden=8)
    )
    batch = {
        k: torch.from_numpy(v)
        for k, v in SyntheticGrayWyner(n_elements=N).sample(32, np.random.default_rng(0)).items()
    }
    loss, stats = net.loss(batch)
    loss.backward()
    for f in (net.f1, net.f2):
        assert f[0].weight.grad is not None and f[0].weight.grad.abs().sum() > 0
    assert {"R0", "R1", "R2", "D1", "D2", "match"} <= set(stats)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_has_its_channels(kind: str) -> None:
    cfg = GrayWynerConfig(kind=kind, n_elements=N, private_dim=4, common_dim=4, hidden=8, context_hidden=4)
    out = GrayWynerNet(cfg)(torch.zeros(3, N), torch.zeros(3, N))
    assert tuple(out[f"y{k}"].shape[1] for k in range(3)) == cfg.dims
    assert out["z1"].shape == out["z2"].shape == (3, N)
    if kind == "joint":
        assert cfg.dims[1] == cfg.dims[2] == 0
    if kind == "independent":
        assert cfg.dims[0] == 0


@pytest.mark.parametrize("beta", [0.0, -1.0, 2.5, float("nan")])
def test_beta_outside_range_is_an_error(beta: float) -> None:
    with pytest.raises(ValueError, match=r"\(0, 2\]"):
        GrayWynerConfig(beta=beta)


def test_negative_eta_is_an_error() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        GrayWynerConfig(etas=(-0.1,))
    with pytest.raises(ValueError, match=">= 0"):
        GrayWynerCodec.train(etas=(-1.0,), steps=1)


# -- real bytes ----------------------------------------------------------------------------------


def test_receiver_decodes_from_its_two_streams_exactly(tiny_codec: GrayWynerCodec) -> None:
    for seed in range(3):
        for rate_idx in range(tiny_codec.n_rates):
            full = tiny_codec.compress_at(_views(seed), rate_idx)
            wire = Payload.from_bytes(full.to_bytes(), codec="gray_wyner")
            both = tiny_codec.decompress(wire)
            for k, name in ((1, "z1"), (2, "z2")):
                alone = Payload.from_bytes(tiny_codec.for_receiver(wire, k).to_bytes())
                assert len(alone.streams) == 2 and alone.streams[1] == full.streams[k]
                assert set(tiny_codec.decompress(alone)) == {name}
                np.testing.assert_array_equal(tiny_codec.decompress(alone)[name], both[name])
                channels = tiny_codec.split_channels(wire)
                apart = tiny_codec.decode_receiver(k, channels["common"], channels[f"private_{k}"])
                np.testing.assert_array_equal(apart, both[name])


def test_real_bits_match_the_entropy_models(tiny_codec: GrayWynerCodec) -> None:
    real = estimate = 0.0
    for seed in range(20):
        bits = tiny_codec.rate_bits(_views(seed), 0)
        real += bits["common"] + bits["private_1"] + bits["private_2"]
        estimate += bits["estimate"]
    overhead = 20 * 3 * 8  # byte alignment and coder flush: under one byte per stream
    assert abs(real - estimate) <= 0.02 * estimate + overhead, (real, estimate)


def test_compress_fits_the_budget_and_picks_coarser_points(tiny_codec: GrayWynerCodec) -> None:
    views = _views(1)
    fine = tiny_codec.compress(views, 10**6)
    assert Payload.from_bytes(fine.to_bytes()).meta[3] == 0
    coarse = tiny_codec.compress_at(views, 1)
    if coarse.nbits < fine.nbits:
        picked = tiny_codec.compress(views, coarse.nbits)
        assert picked.nbits <= coarse.nbits
    assert tiny_codec.compress(views, 8).is_empty
    assert tiny_codec.decompress(Payload.empty("gray_wyner")) == {}


def test_missing_common_and_mixed_streams_raise(tiny_codec: GrayWynerCodec) -> None:
    a = tiny_codec.split_channels(tiny_codec.compress(_views(0), 10**6))
    b = tiny_codec.split_channels(tiny_codec.compress(_views(1), 10**6))  # the next step
    with pytest.raises(PayloadError, match="common stream"):
        tiny_codec.decode_receiver(1, None, a["private_1"])
    with pytest.raises(PayloadError, match="without the common stream"):
        tiny_codec.decompress(a["private_2"])
    with pytest.raises(PayloadError, match="different steps"):
        tiny_codec.decode_receiver(2, a["common"], b["private_2"])
    with pytest.raises(PayloadError, match="private_1 channel"):
        tiny_codec.decode_receiver(1, a["common"], a["private_2"])
    other = GrayWynerCodec(GrayWynerNet(tiny_codec.config), device="cpu")
    with pytest.raises(PayloadError, match="another model"):
        other.decode_receiver(1, a["common"], a["private_1"])
    # the common stream alone still serves both receivers (private latents at their conditional mean)
    assert set(tiny_codec.decompress(a["common"])) == {"z1", "z2"}


# -- lean channel frames -----------------------------------------------------------------------


def _lean(codec: GrayWynerCodec, frames: dict[str, Payload]) -> dict[str, Payload]:
    """The frames as a receiver parses them from their bytes under its link's session."""
    session = Session.from_bytes(codec.channel_session.to_bytes())
    return {
        ch: Payload.from_bytes(p.to_bytes(), codec="gray_wyner", session=session) for ch, p in frames.items()
    }


def test_lean_channel_frames_decode_exactly_with_16_bits_of_overhead(tiny_codec: GrayWynerCodec) -> None:
    session = tiny_codec.channel_session
    assert session.nbits == 88 and session.n_streams == 3 and tiny_codec.session is None
    for seed in range(3):
        views = _views(seed)
        for j in range(tiny_codec.n_rates):
            full = tiny_codec.compress_at(views, j)
            frames = tiny_codec.compress_channels(views, j, step=seed)
            assert list(frames) == ["common", "private_1", "private_2"]
            for i, frame in enumerate(frames.values()):
                assert frame.is_lean and frame.overhead_bits == 16
                assert frame.streams[0] == full.streams[i]  # the same range-coder streams
                assert frame.nbits == full.stream_bits[i] + 16
            both = tiny_codec.decompress(full)
            wire = _lean(tiny_codec, frames)
            out = tiny_codec.decompress_channels(wire)
            for k, name in ((1, "z1"), (2, "z2")):
                np.testing.assert_array_equal(out[name], both[name])
                apart = tiny_codec.decode_receiver(k, wire["common"], wire[f"private_{k}"])
                np.testing.assert_array_equal(apart, both[name])
            # the common frame alone serves both receivers, exactly as the container's common payload
            alone = tiny_codec.decompress(wire["common"])
            ref = tiny_codec.decompress(tiny_codec.split_channels(full)["common"])
            for name in ("z1", "z2"):
                np.testing.assert_array_equal(alone[name], ref[name])


def test_lean_frames_name_what_is_missing_or_mixed(tiny_codec: GrayWynerCodec) -> None:
    a = _lean(tiny_codec, tiny_codec.compress_channels(_views(0), 0, step=0))
    b = _lean(tiny_codec, tiny_codec.compress_channels(_views(1), 0, step=1))
    c = _lean(tiny_codec, tiny_codec.compress_channels(_views(1), 1, step=0))
    with pytest.raises(
        PayloadError, match=r"receiver 1 needs the common stream, which is missing \(private_1"
    ):
        tiny_codec.decode_receiver(1, None, a["private_1"])
    with pytest.raises(
        PayloadError, match="private_2 arrived without the common stream; receiver 2 needs both"
    ):
        tiny_codec.decompress(a["private_2"])
    with pytest.raises(PayloadError, match="without the common stream"):
        tiny_codec.decompress_channels({"private_1": a["private_1"], "private_2": a["private_2"]})
    with pytest.raises(PayloadError, match="step tag 1 rate 0, common from step tag 0 .*different steps"):
        tiny_codec.decode_receiver(2, a["common"], b["private_2"])
    with pytest.raises(PayloadError, match="different steps"):  # same tag, another rate point
        tiny_codec.decode_receiver(2, a["common"], c["private_2"])
    with pytest.raises(PayloadError, match="expected a private_1 channel frame, got a private_2 frame"):
        tiny_codec.decode_receiver(1, a["common"], a["private_2"])
    with pytest.raises(PayloadError, match="container payload cannot be decoded together"):
        full = tiny_codec.split_channels(tiny_codec.compress_at(_views(0), 0))
        tiny_codec.decode_receiver(1, full["common"], a["private_1"])
    assert tiny_codec.decompress_channels({}) == {}
    # tags repeat every 8 steps: the step counter's low 3 bits are sent
    assert tiny_codec.compress_channels(_views(0), 0, step=8)["common"].meta == a["common"].meta


def test_lean_frames_of_another_model_or_corrupted_are_refused(tiny_codec: GrayWynerCodec) -> None:
    frames = tiny_codec.compress_channels(_views(2), 0, step=3)
    other = GrayWynerCodec(GrayWynerNet(tiny_codec.config), device="cpu")
    assert other.channel_session != tiny_codec.channel_session
    wire = _lean(tiny_codec, frames)
    with pytest.raises(PayloadError, match="session mismatch"):  # parsed under the sender's session
        other.decode_receiver(1, wire["common"], wire["private_1"])
    with pytest.raises(PayloadError, match="checksum mismatch"):  # parsed under the receiver's
        Payload.from_bytes(frames["common"].to_bytes(), codec="gray_wyner", session=other.channel_session)
    with pytest.raises(PayloadError):  # a lean frame is no container payload
        Payload.from_bytes(frames["common"].to_bytes())
    session = tiny_codec.channel_session
    for frame in frames.values():
        data = frame.to_bytes()
        for bit in range(8 * len(data)):
            bad = bytearray(data)
            bad[bit // 8] ^= 1 << (bit % 8)
            with pytest.raises(PayloadError):
                tiny_codec.decompress(Payload.from_bytes(bytes(bad), codec="gray_wyner", session=session))
        with pytest.raises(PayloadError):
            tiny_codec.decompress(
                Payload.from_bytes(data[:-2] + data[-1:], codec="gray_wyner", session=session)
            )
    # a header that passes the CRC but names no channel or no rate point of the model
    for header in (0x18, 0x07):
        body = frames["common"].streams[0]
        forged = Payload("gray_wyner", (body,), bytes((header,)), session=session)
        with pytest.raises(PayloadError, match="corrupt"):
            tiny_codec.decompress(forged)


def test_lean_frames_without_a_common_channel_and_too_many_rate_points() -> None:
    cfg = GrayWynerConfig(
        kind="separated",
        n_elements=N,
        common_dim=0,
        private_dim=4,
        hidden=8,
        context_hidden=4,
        etas=(0.1, 1.0),
    )
    codec = GrayWynerCodec(GrayWynerNet(cfg), device="cpu")
    assert codec.channels == ("private_1", "private_2")
    frames = codec.compress_channels(_views(0), 1, step=2)
    assert set(frames) == {"private_1", "private_2"}
    wire = _lean(codec, frames)
    full = codec.decompress(codec.compress_at(_views(0), 1))
    np.testing.assert_array_equal(codec.decode_receiver(2, None, wire["private_2"]), full["z2"])
    assert set(codec.decompress(wire["private_1"])) == {"z1"}
    many = GrayWynerConfig(
        n_elements=N, private_dim=2, common_dim=2, hidden=8, context_hidden=4, etas=tuple(range(9))
    )
    with pytest.raises(ValueError, match="at most 8 rate points"):
        _ = GrayWynerCodec(GrayWynerNet(many), device="cpu").channel_session


def test_registered_with_wire_id_8_and_shipped_checkpoint() -> None:
    entry = codec_entry("gray_wyner")
    assert codec_wire_id("gray_wyner") == 8 and entry.cls is GrayWynerCodec and entry.trainable
    path = CHECKPOINT_DIR / entry.checkpoint
    assert path.is_file() and path.stat().st_size < 1_000_000
    assert load_checkpoint(path, kind="codec/gray_wyner").metadata["config"]["kind"] == "shared"
    codec = make_codec(
        "gray_wyner", [ViewSpec("x1", (32,), "float32"), ViewSpec("x2", (32,), "float32")], device="cpu"
    )
    assert codec.n_rates >= 4
    with pytest.raises(ValueError, match="was made for"):
        codec.check_spec(views=[ViewSpec("x1", (16,), "float32"), ViewSpec("x2", (16,), "float32")])
    views = _views(0, n=32)
    sizes = [codec.compress_at(views, j).nbits for j in range(codec.n_rates)]
    assert sizes[0] > sizes[-1]


def test_save_and_load_round_trip(tiny_codec: GrayWynerCodec, tmp_path) -> None:
    path = tiny_codec.save(tmp_path / "gw.ckpt")
    loaded = GrayWynerCodec.load(path, device="cpu")
    assert loaded.model_hash == tiny_codec.model_hash
    payload = tiny_codec.compress_at(_views(2), 0)
    np.testing.assert_array_equal(loaded.decompress(payload)["z1"], tiny_codec.decompress(payload)["z1"])


# -- the dataset ---------------------------------------------------------------------------------


def test_symbol_entropy_of_the_quantised_normal() -> None:
    pmf = quantized_normal_pmf(4.0, 9)
    assert pmf.sum() == pytest.approx(1.0, abs=1e-15) and len(pmf) == 9
    assert symbol_entropy_bits(pmf) == pytest.approx(2.9662, abs=1e-4)


def test_expected_entropies_match_the_paper() -> None:
    e = SyntheticGrayWyner(n_elements=64).expected_entropies()
    assert (round(e.joint_bits, 2), round(e.mutual_information_bits, 2)) == (3.30, 1.32)
    assert e.marginal_sum_bits == pytest.approx(4.62, abs=0.01)


def test_exact_entropies_count_the_map() -> None:
    data = SyntheticGrayWyner(n_elements=16, seed=3)
    e, h, n = data.entropies(), data.symbol_entropy_bits, 16
    groups = data.group_of_slot
    crossing = len(set(groups[:n]) & set(groups[n:]))
    assert e.mutual_information_bits == pytest.approx(crossing * h / n)
    assert e.joint_bits == pytest.approx(len(set(groups)) * h / n)
    assert e.marginal_sum_bits - e.joint_bits == pytest.approx(e.mutual_information_bits)
    s1, s2 = data.sample_symbols(500, np.random.default_rng(0))
    x = np.concatenate([s1, s2], axis=1)
    for g in np.unique(groups):  # copies are equal, and the map is what the samples follow
        cols = np.flatnonzero(groups == g)
        assert (x[:, cols] == x[:, cols[:1]]).all()


@pytest.mark.parametrize("layout", ["paper", "aligned"])
def test_dependency_probability_zero_and_one(layout: str) -> None:
    h = SyntheticGrayWyner().symbol_entropy_bits
    none = SyntheticGrayWyner(dependency_prob=0.0, layout=layout).entropies()
    assert none.mutual_information_bits == 0 and none.joint_bits == pytest.approx(2 * h)
    full = SyntheticGrayWyner(dependency_prob=1.0, layout=layout)
    assert full.entropies().joint_bits == pytest.approx(h)
    if layout == "aligned":  # identical sources
        b = full.sample(4, np.random.default_rng(0))
        assert (b["x1"] == b["x2"]).all() and full.entropies().mutual_information_bits == pytest.approx(h)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        SyntheticGrayWyner(dependency_prob=1.5, layout=layout)


def test_targets_are_rotations_of_the_sources() -> None:
    data = SyntheticGrayWyner(n_elements=8)
    for a in data.rotations:
        assert np.linalg.det(a) == pytest.approx(1.0)
    b = data.sample(5, np.random.default_rng(0))
    np.testing.assert_allclose(b["z1"], b["x1"] @ data.rotations[0].T, atol=1e-6)


def test_gaussian_pairs_and_wyner_common_information() -> None:
    assert wyner_common_information_bits(0.6) == pytest.approx(0.5 * math.log2(4.0))
    data = GaussianPairs(n_elements=4, rho=0.9)
    b = data.sample(20000, np.random.default_rng(0))
    assert np.corrcoef(b["x1"].ravel(), b["x2"].ravel())[0, 1] == pytest.approx(0.9, abs=0.01)
    assert data.wyner_common_information_bits > data.mutual_information_bits


def _train_codec(*flags: str) -> int:
    from bwgym.cli import main

    return main(["train", "codec", *flags])


def test_cli_trains_gray_wyner_with_its_flags(tmp_path, capsys) -> None:
    import json

    from bwgym.codecs.core.registry import load_codec

    out = tmp_path / "gw.ckpt"
    flags = ["--kind", "separated", "--beta", "1", "--etas", "0.5,0.05", "--steps", "6", "--seed", "3"]
    assert _train_codec("--codec", "gray_wyner", *flags, "--threads", "1", "--out", str(out)) == 0
    codec = load_codec(out)
    assert isinstance(codec, GrayWynerCodec)
    assert (codec.config.kind, codec.config.beta, codec.config.etas) == ("separated", 1.0, (0.05, 0.5))
    assert codec.metadata["train"]["steps"] == 6 and codec.metadata["train"]["seed"] == 3
    report = json.loads((tmp_path / "gw.json").read_text())  # the sidecar beside gw.ckpt
    assert report["train_config"]["kind"] == "separated" and len(report["metrics"]) == 2
    assert list((tmp_path / "gw.tb").glob("events.*"))
    # the flags it leaves out come from the registered recipe; the checkpoint decodes both tasks
    assert _train_codec("--codec", "gray_wyner", "--steps", "2", "--out", str(tmp_path / "r.ckpt")) == 0
    recipe = codec_entry("gray_wyner").recipe
    default = load_codec(tmp_path / "r.ckpt")
    assert default.config.kind == recipe["kind"] and default.config.etas == tuple(recipe["etas"])
    views = SyntheticGrayWyner().sample(1, np.random.default_rng(0))
    decoded = default.decompress(default.compress_at({v: views[v][0] for v in ("x1", "x2")}, 0))
    assert set(decoded) == {"z1", "z2"}
    capsys.readouterr()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--codec", "gray_wyner", "--beta", "2.5"], "--beta: expected a finite number in (0, 2]"),
        (["--codec", "gray_wyner", "--etas", "0.1,-1"], "--etas: expected 1 to 64 finite numbers >= 0"),
        (["--codec", "gray_wyner", "--kind", "stacked"], "kind must be one of"),
        (["--codec", "gray_wyner", "--demos", "d", "--lr", "0.1"], "--demos, --lr do not apply"),
        (["--codec", "ndpca", "--kind", "shared"], "--kind apply to --codec gray_wyner only"),
    ],
)
def test_cli_refuses_bad_gray_wyner_flags(tmp_path, capsys, flags: list[str], message: str) -> None:
    out = tmp_path / "gw.ckpt"
    assert _train_codec(*flags, "--steps", "1", "--out", str(out)) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


# -- sources and tasks of different sizes, no common channel (the two-receiver LocateLift model) --


def _feature_pairs(x_dims: tuple[int, int], z_dims: tuple[int, int], n: int = 256, seed: int = 0):
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=(n, x_dims[0])).astype(np.float32)
    x2 = np.concatenate([x1[:, :3], rng.normal(size=(n, x_dims[1] - 3))], axis=1).astype(np.float32)
    both = np.concatenate([x1, x2], axis=1)
    z1 = both[:, : z_dims[0]].copy()
    z2 = both[:, -z_dims[1] :].copy()

    class Data:
        n_elements = 1

        def __init__(self) -> None:
            self.x_dims = x_dims

        def sample(self, m: int, r: np.random.Generator) -> dict[str, np.ndarray]:
            idx = r.integers(0, n, size=m)
            return {"x1": x1[idx], "x2": x2[idx], "z1": z1[idx], "z2": z2[idx]}

    return Data()


@pytest.mark.parametrize("common_dim", [4, 0])
def test_sources_and_tasks_of_other_sizes_code_exactly(common_dim: int, tmp_path) -> None:
    torch.set_num_threads(1)
    x_dims, z_dims = (6, 9), (12, 5)
    cfg = GrayWynerConfig(
        kind="shared" if common_dim else "separated",
        n_elements=1,
        x_dims=x_dims,
        z_dims=z_dims,
        common_dim=common_dim,
        private_dim=4,
        hidden=16,
        context_hidden=8,
        etas=(0.001, 0.01),
    )
    assert cfg.source_dims == x_dims and cfg.task_dims == z_dims
    head = torch.nn.Linear(12, 2)  # a fixed map: receiver 1's distortion is measured after it
    data = _feature_pairs(x_dims, z_dims)
    net = train_gray_wyner(cfg, data, steps=30, batch_size=16, distortion_maps=(head, None))
    codec = GrayWynerCodec(net, view_names=("arm", "side"), task_names=("a", "b"), device="cpu")
    assert [v.shape for v in codec.views] == [(6,), (9,)]
    sample = data.sample(1, np.random.default_rng(3))
    views = {"arm": sample["x1"][0], "side": sample["x2"][0]}
    for j in range(codec.n_rates):
        full = codec.compress_at(views, j)
        if common_dim == 0:
            assert full.streams[0] == b""
        out = codec.decompress(Payload.from_bytes(full.to_bytes()))
        assert out["a"].shape == (12,) and out["b"].shape == (5,)
        ch = codec.split_channels(full)
        for k, name in ((1, "a"), (2, "b")):
            np.testing.assert_array_equal(
                codec.decode_receiver(k, ch["common"], ch[f"private_{k}"]), out[name]
            )
    loaded = GrayWynerCodec.load(codec.save(tmp_path / "gw.ckpt"), device="cpu")
    assert loaded.config == cfg and loaded.model_hash == codec.model_hash


def test_data_of_other_sizes_is_refused() -> None:
    cfg = GrayWynerConfig(n_elements=1, x_dims=(6, 9), z_dims=(3, 3), common_dim=2, private_dim=2, hidden=8)
    with pytest.raises(ValueError, match=r"sources of \(4, 4\) elements, the config \(6, 9\)"):
        train_gray_wyner(cfg, SyntheticGrayWyner(n_elements=4), steps=1)
    with pytest.raises(ValueError, match="x_dims must be two sizes"):
        GrayWynerConfig(x_dims=(3,))
    with pytest.raises(ValueError, match="common_dim must be >= 0"):
        GrayWynerConfig(common_dim=-1)
