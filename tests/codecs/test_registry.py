"""The codec registry: a codec registered in this module is usable by name, from a scenario file too.

Adding a codec touches its own module and nothing else (issue 9): ``@register_codec`` with a name
and a wire id makes it buildable by :func:`bwgym.codecs.make_codec`, parseable from wire bytes and
runnable from a scenario YAML, with no list to edit anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest

import bwgym  # noqa: F401  (registers the envs; before mujoco)
from bwgym.codecs import (
    Codec,
    Payload,
    PayloadError,
    ViewSpec,
    codec_entry,
    codec_names,
    make_codec,
    register_codec,
)
from bwgym.codecs.core.registry import codec_wire_id, codec_wire_name

TOY = "toy_test_codec"
TOY_WIRE_ID = 250
SIZE = 32


@register_codec(TOY, wire_id=TOY_WIRE_ID, description="test codec: the mean colour of each view")
class ToyCodec(Codec):
    """Sends the mean colour of each view (3 bytes); decodes a flat image of that colour."""

    name = TOY

    def __init__(self, views: Sequence[ViewSpec]) -> None:
        self.views = tuple(views)

    @classmethod
    def from_views(cls, views: Sequence[ViewSpec], **kwargs: Any) -> ToyCodec:
        return cls(views, **kwargs)

    def _compress(
        self, views: Mapping[str, np.ndarray], budget_bits: int, allocation: Mapping[str, float] | None
    ) -> Payload:
        streams = tuple(
            bytes(np.asarray(views[v.name]).reshape(-1, v.shape[-1]).mean(0).round().astype(np.uint8))
            for v in self.views
        )
        payload = Payload(self.name, streams)
        return payload if payload.nbits <= budget_bits else Payload.empty(self.name)

    def decompress(self, payload: Payload) -> dict[str, np.ndarray]:
        if payload.codec != self.name:
            raise PayloadError(f"payload was written by codec {payload.codec!r}, expected {self.name!r}")
        if payload.is_empty:
            return {}
        if len(payload.streams) != len(self.views):
            raise PayloadError(f"{self.name} expects {len(self.views)} streams, got {len(payload.streams)}")
        out = {}
        for spec, stream in zip(self.views, payload.streams, strict=True):
            colour = np.frombuffer(stream, np.uint8)
            if colour.size != spec.shape[-1]:
                raise PayloadError(
                    f"view {spec.name!r}: stream of {colour.size} bytes, expected {spec.shape[-1]}"
                )
            out[spec.name] = np.broadcast_to(colour, spec.shape).copy()
        return out


VIEWS = [ViewSpec("arm", (SIZE, SIZE, 3)), ViewSpec("side", (SIZE, SIZE, 3))]


def test_registered_codec_is_usable_by_name_and_on_the_wire() -> None:
    assert TOY in codec_names()
    assert codec_entry(TOY).cls is ToyCodec and codec_entry(TOY).shipped_path is None
    assert codec_wire_id(TOY) == TOY_WIRE_ID and codec_wire_name(TOY_WIRE_ID) == TOY
    codec = make_codec(TOY, VIEWS, env_id="bwgym/LocateLift-v0")
    assert isinstance(codec, ToyCodec) and codec.views == tuple(VIEWS)
    obs = {"arm": np.full((SIZE, SIZE, 3), 7, np.uint8), "side": np.full((SIZE, SIZE, 3), 200, np.uint8)}
    payload = codec.compress(obs, 1_000)
    assert 0 < payload.nbits <= 1_000
    wire = payload.to_bytes()
    assert wire[3] == TOY_WIRE_ID  # the codec id byte of the container
    decoded = codec.decompress(Payload.from_bytes(wire, codec=TOY))
    assert all(np.array_equal(decoded[k], obs[k]) for k in obs)
    assert codec.compress(obs, 8).is_empty


def test_registered_codec_runs_from_a_scenario_file(tmp_path) -> None:
    from bwgym.scenarios.config import load_scenario
    from bwgym.scenarios.runner import run_scenario

    path = tmp_path / "toy.yaml"
    path.write_text(
        "name: toy_codec_run\n"
        "env: {id: bwgym/LocateLift-v0, kwargs: {image_size: 32}}\n"
        "trace: {generator: constant, params: {bps: 50000, duration_s: 10.0}}\n"
        f"codec: {{name: {TOY}}}\n"
        "agent: {name: random}\n"
        "run: {episodes: 1}\n"
    )
    scenario = load_scenario(path)
    assert scenario.codec.name == TOY
    result = run_scenario(scenario, tmp_path / "run", progress=False, plots=False)
    assert (result.out_dir / "episodes.parquet").is_file()
    assert len(result.episodes) == 1
    steps = pd.read_parquet(result.out_dir / "steps.parquet")
    assert len(steps) > 0 and "bits_sent_total" in steps
    assert (steps["bits_sent_total"] > 0).any()
    assert (steps["bits_sent_total"] <= steps["budget_bits"]).all()


def test_unknown_codec_name_suggests_the_closest() -> None:
    with pytest.raises(ValueError, match=f"did you mean '{TOY}'"):
        make_codec("toy_test_codex", VIEWS)
    with pytest.raises(ValueError, match="did you mean 'ndpca'"):
        make_codec("ndcpa", VIEWS)


@pytest.fixture
def scratch_registry(monkeypatch):
    """Run a test on a copy of the registry's tables, so a refused registration cannot leak."""
    from bwgym.codecs.core import registry

    codec_names()  # discover every codec module first: discovery runs once per process
    for table in ("_WIRE_IDS", "_WIRE_NAMES"):
        monkeypatch.setattr(registry, table, dict(getattr(registry, table)))
    monkeypatch.setattr(registry.CODECS, "_entries", dict(registry.CODECS._entries))
    return registry


def test_duplicate_wire_id_is_refused(scratch_registry) -> None:
    with pytest.raises(ValueError, match=f"wire id {TOY_WIRE_ID} already belongs to codec '{TOY}'"):

        @register_codec("toy_test_codec_two", wire_id=TOY_WIRE_ID)
        class Two(ToyCodec):
            name = "toy_test_codec_two"

    with pytest.raises(ValueError, match="wire id 5 already belongs to codec 'ndpca'"):
        register_codec("toy_test_codec_three", wire_id=5)(type("Three", (ToyCodec,), {"name": "x"}))
    assert "toy_test_codec_two" not in codec_names() and "toy_test_codec_three" not in codec_names()
    assert codec_wire_name(TOY_WIRE_ID) == TOY and codec_wire_name(5) == "ndpca"


def test_duplicate_name_is_refused_and_leaves_the_registry_unchanged(scratch_registry) -> None:
    class Jpeg2(ToyCodec):
        name = "jpeg"

    with pytest.raises(ValueError, match="registered twice") as err:
        register_codec("jpeg", wire_id=251)(Jpeg2)
    assert "bwgym.codecs.image.standard" in str(err.value) and __name__ in str(err.value)
    assert codec_entry("jpeg").cls.__name__ == "JpegCodec"
    assert codec_wire_id("jpeg") == 2 and codec_wire_name(251) is None


def test_checkpoint_of_another_kind_names_both_kinds() -> None:
    dae = codec_entry("dae").shipped_path
    views = [ViewSpec("arm", (84, 84, 3)), ViewSpec("side", (84, 84, 3))]
    with pytest.raises(ValueError) as err:
        make_codec("ndpca", views, checkpoint=dae)
    assert "codec/dae" in str(err.value) and "codec/ndpca" in str(err.value)
