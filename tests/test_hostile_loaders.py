"""Hostile files for every loader: each resource a loaded file can ask for is bounded before it is allocated.

Crafted checkpoints (zip bombs, ``.npy`` headers claiming a pebibyte, metadata asking for layers
of a million units) and crafted scenario files (billion laughs, deep nesting, duplicate keys,
empty files) are refused with one line naming the file, the problem and the bound, within a
peak of Python-traced memory far below what they ask for (measured with ``tracemalloc``: numpy
arrays are traced; the refusals happen before torch allocates anything, which the BC cases
prove by failing on any module construction). Shipped checkpoints and library scenarios still
load.
"""

from __future__ import annotations

import copy
import io
import json
import struct
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bwgym
from bwgym.agents import bc as bc_module
from bwgym.agents import rl as rl_module
from bwgym.agents.bc import BCAgent, encoder_state_shapes
from bwgym.agents.rl import load_rl
from bwgym.common.checkpoint import (
    CHECKPOINT_FORMAT,
    MAX_CHECKPOINT_BYTES,
    MAX_CHECKPOINT_ENTRIES,
    MAX_CHECKPOINT_ENTRY_BYTES,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from bwgym.scenarios.config import (
    MAX_SCENARIO_BYTES,
    ConfigError,
    library_scenarios,
    load_scenario,
    parse_override,
)
from bwgym.scenarios.sections import MAX_ERROR_CHARS

PACKAGE = Path(bwgym.__file__).resolve().parent
AGENT_CKPTS = PACKAGE / "agents" / "checkpoints"
CODEC_CKPTS = PACKAGE / "codecs" / "checkpoints"
SHIPPED = sorted([*AGENT_CKPTS.glob("*.ckpt"), *CODEC_CKPTS.glob("*.ckpt")])
#: Peak of Python-traced memory any refusal may take (the inputs ask for gigabytes to pebibytes).
PEAK_LIMIT_BYTES = 200 << 20


def _peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak memory traced by ``tracemalloc`` (Python objects and numpy arrays) while ``fn`` runs."""
    tracemalloc.start()
    try:
        fn()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


def _refused(fn: Callable[[], Any], exc: type[BaseException], words: tuple[str, ...]) -> str:
    """Run ``fn``, expect ``exc``; check it is one line naming every word; return the message."""
    with pytest.raises(exc) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message, message
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in: {message}"
    return message


def _crafted(base: Any, edit: Callable[[dict], None], path: Path, field: str | None = None) -> Path:
    """``base`` saved at ``path`` with ``edit`` applied to a copy of its metadata (or of ``metadata[field]``)."""
    meta = copy.deepcopy(base.metadata)
    edit(meta if field is None else meta[field])
    return save_checkpoint(path, base.kind, base.state, meta)


def _forbid_building(monkeypatch: pytest.MonkeyPatch, owner: Any, attr: str) -> None:
    """Fail the test if the loader calls ``owner.attr`` (builds): crafted metadata must be refused first."""

    def built(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"{attr} of {owner!r} ran for metadata the file's arrays do not confirm")

    monkeypatch.setattr(owner, attr, built)


def _refused_within_memory(fn: Callable[[], Any], exc: type[BaseException], words: tuple[str, ...]) -> str:
    messages: list[str] = []
    peak = _peak_bytes(lambda: messages.append(_refused(fn, exc, words)))
    assert peak < PEAK_LIMIT_BYTES, f"peak {peak / 2**20:.0f} MiB while refusing: {messages}"
    return messages[0]


# ------------------------------------------------------------------------------------ crafting
def _npy_bytes(shape_text: str, descr: str = "<f4", data: bytes = b"") -> bytes:
    """An ``.npy`` file with a hand-written header (numpy refuses to write lying ones)."""
    header = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape_text}, }}"
    pad = (64 - (10 + len(header) + 1) % 64) % 64
    header = header + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + data


def _npy_of(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _write_zip(
    path: Path,
    entries: dict[str, bytes],
    header: Any = None,
    compression: int = zipfile.ZIP_DEFLATED,
) -> Path:
    """A checkpoint-shaped zip: ``checkpoint.json`` (a valid header unless given) and ``entries``."""
    if header is None:
        header = {
            "format": CHECKPOINT_FORMAT,
            "kind": "agent/bc",
            "metadata": {},
            "versions": {},
            "state": [k[len("state/") : -4] for k in entries if k.startswith("state/")],
        }
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        zf.writestr("checkpoint.json", header if isinstance(header, (str, bytes)) else json.dumps(header))
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def _declare_size(path: Path, name: str, size: int) -> Path:
    """Overwrite the uncompressed size the zip declares for ``name`` (central directory and local header)."""
    data = bytearray(path.read_bytes())
    encoded = name.encode()
    at = 0
    while (at := data.find(b"PK\x01\x02", at)) >= 0:
        n = struct.unpack_from("<H", data, at + 28)[0]
        if bytes(data[at + 46 : at + 46 + n]) == encoded:
            struct.pack_into("<I", data, at + 24, size)
            local = struct.unpack_from("<I", data, at + 42)[0]
            struct.pack_into("<I", data, local + 22, size)
        at += 4
    path.write_bytes(bytes(data))
    return path


def _declare_entries(path: Path, count: int) -> Path:
    data = bytearray(path.read_bytes())
    at = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, at + 8, count, count)
    path.write_bytes(bytes(data))
    return path


SMALL = _npy_of(np.arange(4, dtype=np.float32))


def _bomb(t: Path) -> Path:
    # A real deflate bomb: 24 MiB of zeros deflate to ~24 KB (ratio ~1000).
    return _write_zip(t / "bomb.ckpt", {"state/w.npy": _npy_of(np.zeros(6 << 20, np.float32))})


def _over_total(t: Path) -> Path:
    # Three entries, each under the per-entry cap, together over the total cap.
    path = _write_zip(t / "a.ckpt", {f"state/w{i}.npy": SMALL for i in range(3)})
    for i in range(3):
        _declare_size(path, f"state/w{i}.npy", MAX_CHECKPOINT_ENTRY_BYTES - 1)
    return path


def _many_entries(t: Path) -> Path:
    return _write_zip(t / "many.ckpt", {f"state/a{i}.npy": b"" for i in range(MAX_CHECKPOINT_ENTRIES + 1)})


# (id, make(tmp folder) -> path, words the message must name)
CONTAINER_CASES: list[tuple[str, Callable[[Path], Path], tuple[str, ...]]] = [
    ("zip-bomb-ratio", _bomb, ("MAX_COMPRESSION_RATIO", "zip bomb")),
    (
        "entry-declares-4gib",
        lambda t: _declare_size(_write_zip(t / "a.ckpt", {"state/w.npy": SMALL}), "state/w.npy", 0xFFFFFFF0),
        ("state/w.npy", "MAX_CHECKPOINT_ENTRY_BYTES"),
    ),
    (
        "entry-declares-over-entry-cap",
        lambda t: _declare_size(
            _write_zip(t / "a.ckpt", {"state/w.npy": SMALL}), "state/w.npy", MAX_CHECKPOINT_ENTRY_BYTES + 1
        ),
        ("state/w.npy", "MAX_CHECKPOINT_ENTRY_BYTES"),
    ),
    ("entries-declare-over-total-cap", lambda t: _over_total(t), ("MAX_CHECKPOINT_BYTES",)),
    ("too-many-entries", _many_entries, ("MAX_CHECKPOINT_ENTRIES",)),
    (
        "directory-declares-65535-entries",
        lambda t: _declare_entries(_write_zip(t / "a.ckpt", {"state/w.npy": SMALL}), 0xFFFF),
        ("MAX_CHECKPOINT_ENTRIES",),
    ),
    (
        "npy-claims-1-pib",
        lambda t: _write_zip(t / "a.ckpt", {"state/w.npy": _npy_bytes("(140737488355328,)", "<f8")}),
        ("state/w.npy", "1125899906842624 bytes"),
    ),
    (
        "npy-claims-more-than-entry",
        lambda t: _write_zip(t / "a.ckpt", {"state/w.npy": _npy_bytes("(1000,)", "<f4", b"\0" * 40)}),
        ("state/w.npy", "4000 bytes", "entry holds"),
    ),
    (
        "npy-dims-overflow-int64",
        lambda t: _write_zip(t / "a.ckpt", {"state/w.npy": _npy_bytes(f"({2**40}, {2**40})")}),
        ("state/w.npy", "shape"),
    ),
    (
        "npy-negative-dim",
        lambda t: _write_zip(t / "a.ckpt", {"state/w.npy": _npy_bytes("(-1, 4)", "<f4", b"\0" * 16)}),
        ("state/w.npy", "negative"),
    ),
    (
        "npy-object-dtype",
        lambda t: _write_zip(t / "a.ckpt", {"state/w.npy": _npy_bytes("(2,)", "|O", b"\0" * 16)}),
        ("state/w.npy", "Python objects"),
    ),
    (
        "npy-not-npy",
        lambda t: _write_zip(t / "a.ckpt", {"state/w.npy": b"just some bytes, no magic"}),
        ("state/w.npy", ".npy header"),
    ),
    (
        "npy-empty-entry",
        lambda t: _write_zip(t / "a.ckpt", {"state/w.npy": b""}),
        ("state/w.npy", ".npy header"),
    ),
    (
        "header-json-nested-deep",
        lambda t: _write_zip(t / "a.ckpt", {}, header="[" * 200_000 + "]" * 200_000),
        ("nested",),
    ),
    (
        "header-over-4mib",
        lambda t: _write_zip(t / "a.ckpt", {}, header=" " * ((4 << 20) + 1)),
        ("header",),
    ),
    ("header-a-list", lambda t: _write_zip(t / "a.ckpt", {}, header="[1, 2]"), ("format",)),
    (
        "header-state-not-a-list",
        lambda t: _write_zip(
            t / "a.ckpt", {}, header={"format": CHECKPOINT_FORMAT, "kind": "agent/bc", "state": "abc"}
        ),
        ("state list",),
    ),
    (
        "header-metadata-not-an-object",
        lambda t: _write_zip(
            t / "a.ckpt", {}, header={"format": CHECKPOINT_FORMAT, "kind": "agent/bc", "metadata": [1]}
        ),
        ("metadata",),
    ),
    (
        "state-entry-missing",
        lambda t: _write_zip(
            t / "a.ckpt", {}, header={"format": CHECKPOINT_FORMAT, "kind": "agent/bc", "state": ["w"]}
        ),
        ("missing",),
    ),
    ("empty-file", lambda t: (t / "a.ckpt").write_bytes(b"") or t / "a.ckpt", ("not a bwgym checkpoint",)),
    ("zip-without-header", lambda t: _write_zip_raw(t / "a.ckpt"), ("not a bwgym checkpoint",)),
]


def _write_zip_raw(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("state/w.npy", SMALL)
    return path


@pytest.mark.parametrize("make, words", [c[1:] for c in CONTAINER_CASES], ids=[c[0] for c in CONTAINER_CASES])
def test_crafted_checkpoint_container_is_refused_within_memory(tmp_path, make, words):
    path = make(tmp_path)
    message = _refused_within_memory(lambda: load_checkpoint(path), CheckpointError, words)
    assert str(path) in message


def test_caps_are_consistent():
    assert MAX_CHECKPOINT_ENTRY_BYTES <= MAX_CHECKPOINT_BYTES < 1 << 30


@pytest.mark.parametrize(
    "cap, state, metadata, words",
    [
        ("MAX_CHECKPOINT_ENTRY_BYTES", {"w": np.zeros(10_000, np.float32)}, {}, ("'w' alone",)),
        ("MAX_CHECKPOINT_BYTES", {f"w{i}": np.zeros(600, np.float32) for i in range(4)}, {}, ("4 arrays",)),
        ("MAX_CHECKPOINT_ENTRIES", {f"w{i}": np.zeros(1) for i in range(5)}, {}, ("5 arrays",)),
        (None, {}, {"notes": "x" * (5 << 20)}, ("metadata of more than",)),
    ],
    ids=["entry", "total", "entries", "header"],
)
def test_save_refuses_what_load_would_refuse(tmp_path, monkeypatch, cap, state, metadata, words):
    from bwgym.common import checkpoint as checkpoint_module

    if cap is not None:  # lowered so the test needs kilobytes, not the real hundreds of megabytes
        monkeypatch.setattr(checkpoint_module, cap, {"MAX_CHECKPOINT_ENTRIES": 4}.get(cap, 20_000))
    _refused(
        lambda: save_checkpoint(tmp_path / "x.ckpt", "agent/bc", state, metadata), CheckpointError, words
    )
    assert not (tmp_path / "x.ckpt").exists()


# ------------------------------------------------------------------------------- BC metadata
@pytest.fixture(scope="module")
def bc_ckpt():
    return load_checkpoint(AGENT_CKPTS / "bc_locate_lift_v1.ckpt", kind="agent/bc")


def _arch(**changes: Any) -> Callable[[dict], None]:
    def edit(meta: dict) -> None:
        meta["arch"].update(changes)

    return edit


def _meta(**changes: Any) -> Callable[[dict], None]:
    def edit(meta: dict) -> None:
        meta.update(changes)

    return edit


# (id, edit of the shipped agent's metadata, words)
BC_CASES: list[tuple[str, Callable[[dict], None], tuple[str, ...]]] = [
    ("hidden-45000", _arch(hidden=[45_000]), ("hidden layer sizes [45000]", "mlp.0.weight")),
    ("hidden-200000", _arch(hidden=[200_000]), ("hidden layer sizes [200000]",)),
    ("hidden-1e6", _arch(hidden=[10**6]), ("hidden layer sizes [1000000]",)),
    ("hidden-two-of-1e6", _arch(hidden=[10**6, 10**6]), ("implies",)),
    ("hidden-negative", _arch(hidden=[-256]), ("arch.hidden", ">= 1")),
    ("hidden-zero", _arch(hidden=[0]), ("arch.hidden", ">= 1")),
    ("hidden-text", _arch(hidden=["256"]), ("arch.hidden",)),
    ("hidden-bool", _arch(hidden=[True]), ("arch.hidden",)),
    ("hidden-not-a-list", _arch(hidden=256), ("arch.hidden",)),
    ("hidden-100k-layers", _arch(hidden=[8] * 10**5), ("implies", "arrays")),
    ("channels-1e6", _arch(channels=[10**6, 64, 64]), ("channels",)),
    ("channels-empty", _arch(channels=[]), ("channel",)),
    ("channels-negative", _arch(channels=[-32, 64, 64]), ("arch.channels",)),
    ("features-1e6", _arch(features=10**6), ("features 1000000",)),
    ("features-float", _arch(features=2.5), ("arch.features",)),
    ("stem-zero", _arch(stem=0), ("arch.stem",)),
    ("stem-negative", _arch(stem=-4), ("arch.stem",)),
    ("arch-unknown-key", _arch(dropout=0.5), ("arch",)),
    ("arch-not-an-object", _meta(arch=[1, 2]), ("arch",)),
    ("image-huge", _meta(image_shape=[10**6, 10**6]), ("MAX_BC_IMAGE_SIDE_PIXELS",)),
    ("image-one-side", _meta(image_shape=[84]), ("image_shape",)),
    ("image-negative", _meta(image_shape=[-84, 84]), ("image_shape",)),
    ("action-dim-1e9", _meta(action_dim=10**9), ("mlp.2.weight",)),
    ("action-dim-negative", _meta(action_dim=-1), ("action_dim",)),
    ("proprio-negative", _meta(proprio_dim=-3), ("proprio_dim",)),
    ("proprio-1e6", _meta(proprio_dim=10**6), ("mlp.0.weight",)),
    ("views-1e5", _meta(view_names=[f"v{i}" for i in range(10**5)]), ("implies",)),
    ("views-not-names", _meta(view_names=[1, 2]), ("view_names",)),
]


@pytest.mark.parametrize("edit, words", [c[1:] for c in BC_CASES], ids=[c[0] for c in BC_CASES])
def test_crafted_bc_metadata_is_refused_before_any_module_is_built(
    bc_ckpt, tmp_path, monkeypatch, edit, words
):
    path = _crafted(bc_ckpt, edit, tmp_path / "bc.ckpt")
    _forbid_building(monkeypatch, bc_module.BCAgent, "__init__")
    message = _refused_within_memory(lambda: BCAgent.load(path), CheckpointError, words)
    assert str(path) in message


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(
            view_names=("a", "b", "c"),
            image_shape=(64, 90),
            proprio_dim=5,
            channels=(8, 16, 16, 4),
            hidden=(7, 9),
        ),
        dict(view_names=("x",), image_shape=(33, 47), channels=(4,), features=3, hidden=(), stem=3),
    ],
    ids=["default", "three-views-proprio", "one-layer"],
)
def test_computed_shapes_are_those_of_the_built_agent(tmp_path, kwargs):
    agent = BCAgent(**kwargs)
    shapes = {k: tuple(v.shape) for k, v in agent.state_dict().items()}
    encoders = encoder_state_shapes(
        agent.view_names,
        agent.image_shape,
        agent.arch["channels"],
        agent.arch["features"],
        agent.arch["stem"],
    )
    assert encoders == {k: v for k, v in shapes.items() if k.startswith("encoders.")}
    loaded = BCAgent.load(agent.save(tmp_path / "agent.ckpt"))  # the full check accepts it
    assert loaded.arch == agent.arch


# ------------------------------------------------------------------------------- SB3 policies
@pytest.fixture(scope="module")
def sac_ckpt():
    return load_checkpoint(AGENT_CKPTS / "sac_sensors_control_scalar.ckpt")


@pytest.fixture(scope="module")
def ppo_ckpt():
    return load_checkpoint(AGENT_CKPTS / "allocator_ndpca_locate_lift_v1.ckpt")


def _kw(**changes: Any) -> Callable[[dict], None]:
    def edit(meta: dict) -> None:
        meta["policy_kwargs"].update(changes)

    return edit


# (id, which checkpoint, edit of its metadata, words)
SB3_CASES: list[tuple[str, str, Callable[[dict], None], tuple[str, ...]]] = [
    ("sac-net-arch-200000", "sac", _kw(net_arch=[200_000]), ("net_arch", "200000")),
    ("sac-net-arch-two-200000", "sac", _kw(net_arch=[200_000, 200_000]), ("net_arch",)),
    ("sac-net-arch-1e6-pi", "sac", _kw(net_arch={"pi": [10**6], "qf": [64, 64]}), ("net_arch", "1000000")),
    ("sac-net-arch-1e6-qf", "sac", _kw(net_arch={"pi": [64, 64], "qf": [64, 10**6]}), ("net_arch",)),
    ("sac-net-arch-negative", "sac", _kw(net_arch=[-64]), ("net_arch", "positive")),
    ("sac-net-arch-zero", "sac", _kw(net_arch=[0, 64]), ("net_arch", "positive")),
    ("sac-net-arch-text", "sac", _kw(net_arch="big"), ("net_arch",)),
    ("sac-net-arch-million-layers", "sac", _kw(net_arch=[64] * 10**5), ("net_arch", "layers")),
    ("sac-net-arch-vf-key", "sac", _kw(net_arch={"pi": [64], "vf": [64]}), ("net_arch keys",)),
    ("sac-n-critics-1e6", "sac", _kw(n_critics=10**6), ("n_critics",)),
    ("sac-n-critics-zero", "sac", _kw(n_critics=0), ("n_critics",)),
    (
        "sac-extractor-negative",
        "sac",
        _kw(features_extractor_kwargs={"cnn_output_dim": -1}),
        ("cnn_output_dim",),
    ),
    ("sac-fewer-layers", "sac", _kw(net_arch=[64]), ("output layer",)),
    ("ppo-net-arch-200000", "ppo", _kw(net_arch={"pi": [200_000], "vf": [64, 64]}), ("net_arch", "200000")),
    ("ppo-net-arch-vf-1e6", "ppo", _kw(net_arch={"pi": [64, 64], "vf": [10**6]}), ("net_arch",)),
    ("ppo-net-arch-list", "ppo", _kw(net_arch=[64, 64, 64]), ("net_arch",)),
    (
        "ppo-obs-space-2e30",
        "ppo",
        lambda m: m["observation_space"]["spaces"][0][1].update(shape=[2**30]),
        ("shape",),
    ),
]


@pytest.mark.parametrize("which, edit, words", [c[1:] for c in SB3_CASES], ids=[c[0] for c in SB3_CASES])
def test_crafted_sb3_policy_is_refused_before_it_is_built(
    sac_ckpt, ppo_ckpt, tmp_path, monkeypatch, which, edit, words
):
    base = sac_ckpt if which == "sac" else ppo_ckpt
    _crafted(base, edit, tmp_path / "policy.ckpt")
    _forbid_building(monkeypatch, rl_module, "_policy_class")
    _refused_within_memory(lambda: load_rl(tmp_path, device="cpu"), CheckpointError, (str(tmp_path), *words))


# ---------------------------------------------------------------------------- codec networks
@pytest.fixture(scope="module")
def dae_ckpt():
    return load_checkpoint(CODEC_CKPTS / "dae_locate_lift.ckpt")


CODEC_CASES: list[tuple[str, Callable[[dict], None], tuple[str, ...]]] = [
    ("channels-1e6", lambda a: a.update(channels=[10**6, 32, 32]), ("net.",)),
    ("channels-negative", lambda a: a.update(channels=[-32, 32, 32]), ("arch.channels",)),
    ("channels-empty", lambda a: a.update(channels=[]), ("channel",)),
    ("channels-extra-layer", lambda a: a.update(channels=[32, 32, 32, 32]), ("implies",)),
    ("image-1e5", lambda a: a.update(image_size=[10**5, 10**5]), ("net.",)),
    ("image-negative", lambda a: a.update(image_size=[-84, 84]), ("arch.image_size",)),
    ("latent-1e6", lambda a: a.update(latent_dims={"arm": 10**6, "side": 32}), ("net.",)),
    ("latent-negative", lambda a: a.update(latent_dims={"arm": -1, "side": 32}), ("latent",)),
    ("joint-flag", lambda a: a.update(joint=True), ("arrays",)),
    ("unknown-key", lambda a: a.update(depth=3), ("arch",)),
]


@pytest.mark.parametrize("edit, words", [c[1:] for c in CODEC_CASES], ids=[c[0] for c in CODEC_CASES])
def test_crafted_codec_network_is_refused_before_it_is_built(dae_ckpt, tmp_path, monkeypatch, edit, words):
    from bwgym.codecs.core.registry import load_codec
    from bwgym.codecs.image.networks import LatentAutoencoder

    path = _crafted(dae_ckpt, edit, tmp_path / "dae.ckpt", field="arch")
    _forbid_building(monkeypatch, LatentAutoencoder, "__init__")
    _refused_within_memory(lambda: load_codec(path), ValueError, words)


@pytest.fixture(scope="module")
def vector_ndpca_ckpt():
    return load_checkpoint(CODEC_CKPTS / "vector_ndpca_sensor_network.ckpt")


# (id, edit of the shipped vector_ndpca checkpoint's arch, words)
VECTOR_NDPCA_CASES: list[tuple[str, Callable[[dict], None], tuple[str, ...]]] = [
    ("hidden-1e6", lambda a: a.update(hidden=10**6), ("hidden 1000000", "net.encoders.0.mlp.0.weight")),
    ("decoder-hidden-1e6", lambda a: a.update(decoder_hidden=10**6), ("net.decoder.mlp.0.weight",)),
    ("view-dims-1e6", lambda a: a.update(view_dims=[10**6, 2, 2, 2]), ("net.encoders.0.linear.weight",)),
    ("latent-dims-1e6", lambda a: a.update(latent_dims=[2, 2, 2, 10**6]), ("net.encoders.3.",)),
    (
        "views-1e5",
        lambda a: a.update(
            view_names=[f"s{i}" for i in range(10**5)], view_dims=[2] * 10**5, latent_dims=[2] * 10**5
        ),
        ("implies", "arrays"),
    ),
    ("views-count-mismatch", lambda a: a.update(view_dims=[2, 2]), ("view_dims",)),
    ("hidden-negative", lambda a: a.update(hidden=-32), ("arch.hidden",)),
    ("hidden-zero", lambda a: a.update(decoder_hidden=0), ("arch.hidden",)),
    ("hidden-text", lambda a: a.update(hidden="32"), ("arch.hidden",)),
    ("hidden-bool", lambda a: a.update(hidden=True), ("arch.hidden",)),
    ("view-dims-float", lambda a: a.update(view_dims=[2.0, 2, 2, 2]), ("arch.view_dims",)),
    ("view-names-not-names", lambda a: a.update(view_names=[1, 2, 3, 4]), ("arch.view_names",)),
    ("unknown-key", lambda a: a.update(dropout=0.5), ("arch",)),
]


@pytest.mark.parametrize(
    "edit, words", [c[1:] for c in VECTOR_NDPCA_CASES], ids=[c[0] for c in VECTOR_NDPCA_CASES]
)
def test_crafted_vector_ndpca_network_is_refused_before_it_is_built(
    vector_ndpca_ckpt, tmp_path, monkeypatch, edit, words
):
    from bwgym.codecs.core.registry import load_codec
    from bwgym.codecs.sensor import ndpca as vector_ndpca

    path = _crafted(vector_ndpca_ckpt, edit, tmp_path / "vndpca.ckpt", field="arch")
    _forbid_building(monkeypatch, vector_ndpca.SensorAutoencoder, "__init__")
    message = _refused_within_memory(lambda: load_codec(path), CheckpointError, words)
    assert str(path) in message


@pytest.fixture(scope="module")
def gray_wyner_ckpts():
    return {
        "synthetic": load_checkpoint(CODEC_CKPTS / "gray_wyner_synthetic.ckpt"),
        "lift": load_checkpoint(CODEC_CKPTS / "gray_wyner_locate_lift_v1.ckpt"),
    }


def _config(**changes: Any) -> Callable[[dict], None]:
    def edit(meta: dict) -> None:
        meta["config"].update(changes)

    return edit


# (id, which shipped checkpoint, edit of its metadata, words)
GRAY_WYNER_CASES: list[tuple[str, str, Callable[[dict], None], tuple[str, ...]]] = [
    ("hidden-1e6", "synthetic", _config(hidden=10**6), ("hidden 1000000", "f1.0.weight")),
    ("context-hidden-1e6", "synthetic", _config(context_hidden=10**6), ("prior1.fc1.weight",)),
    ("private-dim-1e6", "synthetic", _config(private_dim=10**6), ("f1.4.weight",)),
    ("common-dim-1e6", "lift", _config(common_dim=10**6), ("f1.4.weight",)),
    ("n-elements-1e6", "synthetic", _config(n_elements=10**6), ("f1.0.weight",)),
    ("x-dims-1e6", "lift", _config(x_dims=[10**6, 160]), ("f1.0.weight",)),
    ("z-dims-1e6", "lift", _config(z_dims=[256, 10**6]), ("g2.4.weight",)),
    ("etas-1e5", "synthetic", _config(etas=[i * 1e-6 for i in range(10**5)]), ("100000 rate points",)),
    ("kind-joint", "synthetic", _config(kind="joint"), ("implies",)),
    ("kind-unknown", "synthetic", _config(kind="huge"), ("valid config", "kind")),
    ("hidden-negative", "synthetic", _config(hidden=-128), ("valid config", "hidden")),
    ("hidden-text", "synthetic", _config(hidden="128"), ("hidden must be an integer",)),
    ("hidden-float", "synthetic", _config(hidden=128.0), ("hidden must be an integer",)),
    ("hidden-bool", "synthetic", _config(hidden=True), ("hidden must be an integer",)),
    ("x-dims-text", "lift", _config(x_dims="big"), ("x_dims",)),
    ("etas-missing", "synthetic", lambda m: m["config"].pop("etas"), ("valid config", "etas")),
    ("unknown-field", "synthetic", _config(depth=3), ("valid config", "depth")),
    ("config-not-an-object", "synthetic", lambda m: m.update(config=[1, 2]), ("valid config",)),
    ("views-three", "synthetic", lambda m: m.update(views={"a": {}, "b": {}, "c": {}}), ("views",)),
    ("tasks-one", "synthetic", lambda m: m.update(tasks=["z1"]), ("tasks",)),
    ("tasks-not-a-list", "synthetic", lambda m: m.update(tasks=5), ("tasks",)),
]


@pytest.mark.parametrize(
    "which, edit, words", [c[1:] for c in GRAY_WYNER_CASES], ids=[c[0] for c in GRAY_WYNER_CASES]
)
def test_crafted_gray_wyner_network_is_refused_before_it_is_built(
    gray_wyner_ckpts, tmp_path, monkeypatch, which, edit, words
):
    from bwgym.codecs.core.registry import load_codec
    from bwgym.codecs.multiterminal import gray_wyner

    base = gray_wyner_ckpts[which]
    path = _crafted(base, edit, tmp_path / "gw.ckpt")
    _forbid_building(monkeypatch, gray_wyner.GrayWynerNet, "__init__")
    message = _refused_within_memory(lambda: load_codec(path), CheckpointError, words)
    assert str(path) in message


@pytest.mark.parametrize("kind", ["shared", "separated", "combined", "joint", "independent"], ids=lambda k: k)
@pytest.mark.parametrize("common_dim", [0, 5])
def test_gray_wyner_computed_shapes_are_those_of_the_built_net(kind, common_dim):
    from bwgym.codecs.multiterminal.gray_wyner import GrayWynerConfig, GrayWynerNet, gray_wyner_state_shapes

    config = GrayWynerConfig(
        kind=kind, n_elements=3, private_dim=4, common_dim=common_dim, hidden=6, context_hidden=7,
        etas=(0.1, 0.2), x_dims=(3, 5), z_dims=(2, 9),
    )  # fmt: skip
    built = {k: tuple(v.shape) for k, v in GrayWynerNet(config).state_dict().items()}
    assert gray_wyner_state_shapes(config) == built


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(view_names=["a", "b"], view_dims=[2, 3]),
        dict(view_names=["a"], view_dims=[5], latent_dims=[2], hidden=7, decoder_hidden=9),
    ],
    ids=["default-widths", "narrow-latent"],
)
def test_sensor_network_computed_shapes_are_those_of_the_built_net(kwargs):
    from bwgym.codecs.sensor.ndpca import SensorAutoencoder, sensor_network_state_shapes

    net = SensorAutoencoder(**kwargs)
    built = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert (
        sensor_network_state_shapes(net.view_dims, net.latent_dims, net.hidden, net.decoder_hidden) == built
    )


# VmHWM, not getrusage's ru_maxrss: the latter survives exec, so a child of a big pytest process
# would report its parent's peak.
RSS_SCRIPT = """
import re, sys
from bwgym.agents.bc import BCAgent
from bwgym.agents.rl import load_rl
from bwgym.common.checkpoint import load_checkpoint
from bwgym.scenarios.config import load_scenario
rss = lambda: int(re.search(r"VmHWM:\\s*(\\d+)", open("/proc/self/status").read()).group(1))  # KiB
steps = [f"imports:{rss()}"]
for load, path in zip((BCAgent.load, load_rl, load_checkpoint, load_scenario), sys.argv[1:]):
    try:
        load(path)
    except ValueError as exc:
        print(type(exc).__name__)
    steps.append(f"{load.__name__}:{rss()}")
print(rss())
print(" ".join(steps), file=sys.stderr)
"""


def test_headline_refusals_stay_far_below_1gb_of_resident_memory(tmp_path, bc_ckpt, sac_ckpt):
    """Resident memory of a fresh process (torch included) refusing the inputs of the issue."""
    import subprocess
    import sys

    meta = copy.deepcopy(bc_ckpt.metadata)
    meta["arch"]["hidden"] = [10**6]
    bc_path = save_checkpoint(tmp_path / "bc.ckpt", "agent/bc", bc_ckpt.state, meta)
    meta = copy.deepcopy(sac_ckpt.metadata)
    meta["policy_kwargs"]["net_arch"] = [200_000]
    (tmp_path / "sac").mkdir()
    save_checkpoint(tmp_path / "sac" / "policy.ckpt", sac_ckpt.kind, sac_ckpt.state, meta)
    bomb = _bomb(tmp_path)
    laughs = _scenario(tmp_path, BILLION_LAUGHS)
    args = [str(bc_path), str(tmp_path / "sac"), str(bomb), str(laughs)]
    done = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, *args], capture_output=True, text=True, timeout=300, check=True
    )
    lines = done.stdout.split()
    assert lines[:4] == ["CheckpointError", "CheckpointError", "CheckpointError", "ConfigError"], done.stdout
    assert int(lines[4]) * 1024 < 1 << 30, (
        f"peak resident memory {int(lines[4]) / 1024:.0f} MiB (KiB after each step: {done.stderr.split()[-5:]})"
    )


# ------------------------------------------------------------------------------ scenario YAML
BILLION_LAUGHS = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
    "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n"
)

#: The same in block style: no commas, so it is one value of ``--grid key=v1,v2`` too.
BLOCK_LAUGHS = "".join(f"l{i}: &l{i}\n" + f"- {'lol' if i == 0 else f'*l{i - 1}'}\n" * 9 for i in range(9))

# (id, file content (str or bytes), words)
YAML_CASES: list[tuple[str, str | bytes, tuple[str, ...]]] = [
    ("billion-laughs", BILLION_LAUGHS, ("aliases", "line 2")),
    ("one-alias", "run: &r {episodes: 1}\nagent: *r\n", ("aliases (*r)",)),
    ("merge-key-alias", "base: &b {episodes: 1}\nrun: {<<: *b}\n", ("aliases",)),
    ("deep-flow-lists", "name: x\nrun: " + "[" * 100_000 + "]" * 100_000 + "\n", ("MAX_SCENARIO_DEPTH",)),
    ("deep-flow-maps", "x: " + "{a: " * 5_000 + "1" + "}" * 5_000 + "\n", ("MAX_SCENARIO_DEPTH",)),
    (
        "deep-block-maps",
        "".join("  " * i + "a:\n" for i in range(100)) + "  " * 100 + "b: 1\n",
        ("MAX_SCENARIO_DEPTH",),
    ),
    ("too-many-nodes", "x: [" + "0," * 15_000 + "0]\n", ("MAX_SCENARIO_NODES",)),
    ("over-1mb", "# " + "x" * MAX_SCENARIO_BYTES + "\nname: x\n", ("MAX_SCENARIO_BYTES",)),
    ("over-40mb", b"name: x\n" + b"#" * (40 << 20), ("MAX_SCENARIO_BYTES",)),
    (
        "duplicate-top-key",
        "name: a\nrun: {episodes: 1}\nrun: {episodes: 9}\n",
        ("duplicate key 'run'", "line 2"),
    ),
    (
        "duplicate-nested-key",
        "run:\n  episodes: 1\n  seed: 0\n  episodes: 5\n",
        ("duplicate key 'episodes'",),
    ),
    ("duplicate-flow-key", "codec: {name: jpeg, name: raw}\n", ("duplicate key 'name'",)),
    ("empty-file", "", ("empty",)),
    ("comment-only", "# a scenario\n# nothing else\n", ("empty",)),
    ("whitespace-only", "\n   \n\n", ("empty",)),
    ("document-marker-only", "---\n...\n", ("empty",)),
    ("long-name-echo", "name: " + "x" * 100_000 + "\n", ("name",)),
    ("long-list-echo", "run: {episodes: [" + "1," * 5_000 + "1]}\n", ("run.episodes", "more chars")),
    ("long-unknown-key", "k" * 1_000 + ": 1\n", ("unknown key", "more chars")),
    ("long-codec-name", "codec: {name: " + "j" * 100_000 + "}\n", ("codec.name",)),
    (
        "codec-none-with-checkpoint",
        f"codec: {{name: none, checkpoint: {CODEC_CKPTS / 'ndpca_locate_lift.ckpt'}}}\n",
        ("codec 'none'", "codec.checkpoint"),
    ),
    (
        "codec-none-with-kwargs",
        "codec: {name: none, kwargs: {quality: 5}}\n",
        ("codec 'none'", "codec.kwargs"),
    ),
    ("scale-1e7-is-a-number-out-of-range", "trace: {scale: 1e7}\n", ("trace.scale",)),
    ("invalid-yaml", "run: {episodes: 1\n", ("not valid YAML", "line")),
    ("tab-indent", "run:\n\tepisodes: 1\n", ("not valid YAML",)),
    ("not-utf8", b"name: \xff\xfe\n", ("UTF-8",)),
    ("python-tag", "name: !!python/object/apply:os.system ['true']\n", ("not valid YAML",)),
]


def _scenario(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "hostile.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


@pytest.mark.parametrize("content, words", [c[1:] for c in YAML_CASES], ids=[c[0] for c in YAML_CASES])
def test_hostile_scenario_file_is_refused_in_one_short_line(tmp_path, content, words):
    path = _scenario(tmp_path, content)
    message = _refused_within_memory(lambda: load_scenario(path), ConfigError, words)
    assert len(message) <= MAX_ERROR_CHARS
    assert "expected float" not in message  # 1e7 is a number, judged by its range


def test_exponent_floats_are_numbers(tmp_path):
    path = _scenario(tmp_path, "link: {step_seconds: 4e-2}\ntrace: {scale: 5E-1}\nrun: {episodes: 1}\n")
    scenario = load_scenario(path)
    assert scenario.link.step_seconds == 0.04 and scenario.trace.scale == 0.5


# (id, value text, words); the key is always trace.scale
OVERRIDE_CASES: list[tuple[str, str, tuple[str, ...]]] = [
    ("unclosed-list", "[1,", ("override trace.scale", "not valid YAML")),
    ("mapping-in-scalar", "a: b: c", ("override trace.scale", "not valid YAML")),
    ("alias", "*x", ("override trace.scale", "aliases")),
    ("duplicate-key", "{a: 1, a: 2}", ("override trace.scale", "duplicate key")),
    ("deep", "[" * 1000 + "]" * 1000, ("override trace.scale", "MAX_SCENARIO_DEPTH")),
    ("python-tag", "!!python/name:os.system", ("override trace.scale", "not valid YAML")),
]


@pytest.mark.parametrize("text, words", [c[1:] for c in OVERRIDE_CASES], ids=[c[0] for c in OVERRIDE_CASES])
def test_bad_override_value_names_the_override(text, words):
    _refused(lambda: parse_override("trace.scale", text), ConfigError, words)


def test_override_values_parse_as_yaml_with_exponent_floats():
    assert parse_override("trace.scale", "1e7") == 1e7
    assert parse_override("codec.name", "jpeg") == "jpeg"
    assert parse_override("env.kwargs", "{image_size: 48}") == {"image_size": 48}


@pytest.mark.parametrize("flag", ["--set", "--grid"], ids=["set", "grid"])
@pytest.mark.parametrize(
    "text, words",
    [
        (BLOCK_LAUGHS, ("aliases",)),
        ("[" * 100 + "]" * 100, ("MAX_SCENARIO_DEPTH",)),
        ("a: 1\na: 2", ("duplicate key",)),
        ("x" * (MAX_SCENARIO_BYTES + 1), ("MAX_SCENARIO_BYTES",)),
    ],
    ids=["billion-laughs", "deep-100", "duplicate-key", "over-1mb"],
)
def test_command_line_values_have_the_scenario_bounds(flag, text, words):
    from bwgym.cli import parse_overrides
    from bwgym.scenarios.sweep import parse_grid

    def parse() -> Any:
        return (
            parse_overrides([f"trace.params={text}"])
            if flag == "--set"
            else parse_grid([f"trace.params={text}"])
        )

    message = _refused_within_memory(parse, ConfigError, (f"{flag} trace.params", *words))
    assert len(message) <= MAX_ERROR_CHARS


def test_resumed_config_yaml_is_read_with_the_scenario_bounds(tmp_path):
    from bwgym.scenarios.run_folder import check_run_folder

    (tmp_path / "config.yaml").write_text(BILLION_LAUGHS)
    scenario = load_scenario("lora_ndpca")
    _refused_within_memory(
        lambda: check_run_folder(scenario, tmp_path, resume=True),
        ConfigError,
        (str(tmp_path), "damaged config.yaml", "aliases"),
    )


# ------------------------------------------------------------------------ learned allocator
@pytest.mark.parametrize(
    "env_id, codec_name",
    [("bwgym/LocateLift-v1", "dae"), ("bwgym/LocateLift-v0", "ndpca")],
    ids=["other-codec", "other-env"],
)
def test_allocator_for_another_codec_or_env_is_refused_naming_both(env_id, codec_name):
    import gymnasium as gym

    from bwgym.agents.allocation import load_learned_allocator, shipped_allocator
    from bwgym.codecs import make_codec
    from bwgym.envs.views import link_views

    env = gym.make(env_id)
    try:
        codec = make_codec(codec_name, link_views(env), env_id=env_id)
    finally:
        env.close()
    checkpoint = shipped_allocator("ndpca", "bwgym/LocateLift-v1")
    _refused(
        lambda: load_learned_allocator(checkpoint, codec, env_id=env_id),
        CheckpointError,
        ("'ndpca'", "'bwgym/LocateLift-v1'", repr(codec_name), repr(env_id), "train an allocator"),
    )


# ------------------------------------------------------------------------ the CLI: exit 2
def _bc_with_hidden(folder: Path, hidden: list[int]) -> Path:
    ckpt = load_checkpoint(AGENT_CKPTS / "bc_locate_lift_v1.ckpt")
    meta = copy.deepcopy(ckpt.metadata)
    meta["arch"]["hidden"] = hidden
    return save_checkpoint(folder / "bc_crafted.ckpt", "agent/bc", ckpt.state, meta)


# (id, scenario text given the tmp folder, words)
CLI_CASES: list[tuple[str, Callable[[Path], str], tuple[str, ...]]] = [
    ("billion-laughs", lambda t: BILLION_LAUGHS, ("aliases",)),
    ("deep-nesting", lambda t: "run: " + "[" * 50_000 + "]" * 50_000 + "\n", ("MAX_SCENARIO_DEPTH",)),
    ("empty-file", lambda t: "# nothing\n", ("empty",)),
    ("duplicate-key", lambda t: "run: {episodes: 1}\nrun: {episodes: 2}\n", ("duplicate key",)),
    ("over-1mb", lambda t: "#" * (MAX_SCENARIO_BYTES + 1), ("MAX_SCENARIO_BYTES",)),
    (
        "codec-none-checkpoint",
        lambda t: f"codec: {{name: none, checkpoint: {CODEC_CKPTS / 'ndpca_locate_lift.ckpt'}}}\n",
        ("codec 'none'",),
    ),
    (
        "bc-hidden-1e6",
        lambda t: (
            "env: {id: bwgym/LocateLift-v1}\ncodec: {name: raw}\nrun: {episodes: 1}\n"
            f"agent: {{name: bc, checkpoint: {_bc_with_hidden(t, [10**6])}}}\n"
        ),
        ("agent.checkpoint", "hidden layer sizes [1000000]"),
    ),
]


@pytest.mark.parametrize("make, words", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_bwgym_run_of_a_hostile_file_prints_one_line_and_exits_2(tmp_path, capsys, make, words):
    from bwgym.cli import main

    path = _scenario(tmp_path, make(tmp_path))
    out = tmp_path / "run"
    code = main(["run", str(path), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2, f"exit {code}, stderr: {err[:2000]}"
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err[:2000]
    assert len(err) <= MAX_ERROR_CHARS + 100, err[:2000]
    for word in words:
        assert word.lower() in err.lower(), f"{word!r} not in: {err}"
    assert not out.exists()


# ------------------------------------------------------------------ what ships still loads
@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_checkpoint_loads_as_before(path):
    ckpt = load_checkpoint(path)
    if ckpt.kind == "agent/bc":
        BCAgent.load(path)
    elif ckpt.kind.startswith("agent/sb3-"):
        load_rl(path, device="cpu")
    elif ckpt.kind == "agent/latent_bc":
        from bwgym.agents.latent_bc import LatentBCAgent

        LatentBCAgent.load(path)
    elif ckpt.kind == "allocator/content":
        from bwgym.agents.content_allocation import load_content_scorer

        load_content_scorer(path)
    elif ckpt.kind.startswith("fleet_allocator/"):
        from bwgym.common.registry import BuildContext
        from bwgym.envs.fleet import make_fleet_allocator

        make_fleet_allocator("learned", BuildContext(checkpoint=str(path)))
    else:
        from bwgym.codecs.core.registry import load_codec

        load_codec(path)


@pytest.mark.parametrize("name", sorted(library_scenarios()))
def test_library_scenario_loads(name):
    assert load_scenario(name).name
