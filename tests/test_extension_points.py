"""Every extension point takes a user's part from the user's own file: no edit anywhere in ``bwgym/``.

This module registers a toy codec, allocator, agent and trace format, then runs a scenario file
naming all four through the same path ``bwgym run`` takes, and checks that each part did what it
says (the codec's bytes, the allocator's split, the agent's actions, the trace's budgets).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import bwgym  # noqa: F401  (registers the envs; before mujoco)
from bwgym.codecs import Codec, Payload, PayloadError, ViewSpec, register_codec
from bwgym.codecs.core.registry import CODECS
from bwgym.common.registry import (
    AGENTS,
    ALLOCATORS,
    TRACE_FORMATS,
    BuildContext,
    DuplicateNameError,
    register_agent,
    register_allocator,
    register_trace_format,
)
from bwgym.scenarios.config import ConfigError, load_scenario
from bwgym.scenarios.factory import validate
from bwgym.scenarios.runner import run_scenario
from bwgym.traces import TraceFormat, TraceFormatError

SIZE = 32


@dataclasses.dataclass(frozen=True)
class GreyOptions:
    levels: int = 16
    """Grey levels the mean of a view is quantised to."""


@register_codec("toy_grey", wire_id=241, description="toy: the mean grey of each view", options=GreyOptions)
class GreyCodec(Codec):
    """Sends one byte per view (its mean grey, quantised); decodes a flat grey image."""

    name = "toy_grey"

    def __init__(self, views: Sequence[ViewSpec], levels: int = 16) -> None:
        self.views = tuple(views)
        self.levels = levels

    @classmethod
    def from_views(cls, views: Sequence[ViewSpec], **kwargs: Any) -> GreyCodec:
        return cls(views, **kwargs)

    def _compress(
        self, views: Mapping[str, np.ndarray], budget_bits: int, allocation: Mapping[str, float] | None
    ) -> Payload:
        shares = allocation or {v.name: 1.0 / len(self.views) for v in self.views}
        streams = []
        for spec in self.views:  # a view with no share is not sent (an empty stream)
            level = int(np.asarray(views[spec.name]).mean() * self.levels / 256)
            streams.append(bytes([level]) if shares.get(spec.name, 0.0) > 0 else b"")
        payload = Payload(self.name, tuple(streams))
        return payload if payload.nbits <= budget_bits else Payload.empty(self.name)

    def decompress(self, payload: Payload) -> dict[str, np.ndarray]:
        if payload.codec != self.name:
            raise PayloadError(f"payload was written by codec {payload.codec!r}, expected {self.name!r}")
        out = {}
        for spec, stream in zip(self.views, payload.streams, strict=False):
            if stream:
                grey = (stream[0] + 0.5) * 256 / self.levels
                out[spec.name] = np.full(spec.shape, grey, np.uint8)
        return out


@dataclasses.dataclass(frozen=True)
class FavouriteOptions:
    view: str = "arm"


@register_allocator(
    "toy_favourite", description="toy: the whole budget to one view", options=FavouriteOptions
)
def favourite_view(context: BuildContext, options: FavouriteOptions) -> Any:
    names = tuple(context.codec.view_names)
    if options.view not in names:
        raise ValueError(f"view {options.view!r} is not one of the codec's views {names}")

    class Favourite:
        def __call__(
            self, views: Mapping[str, np.ndarray], budget_bits: int, info: Mapping[str, Any]
        ) -> dict:
            return {n: float(n == options.view) for n in views}

        def reset(self) -> None:
            pass

    return Favourite()


@dataclasses.dataclass(frozen=True)
class ConstantOptions:
    value: float = 0.25


@register_agent("toy_constant", description="toy: the same action every step", options=ConstantOptions)
class ConstantAgent:
    actions: list[np.ndarray] = []  # every action any instance returned (runs in-process here)

    def __init__(self, action_shape: tuple[int, ...], value: float) -> None:
        self.action = np.full(action_shape, value, np.float32)

    @classmethod
    def from_context(cls, context: BuildContext, options: ConstantOptions) -> ConstantAgent:
        return cls(context.env.action_space.shape, options.value)

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        ConstantAgent.actions.append(self.action.copy())
        return self.action.copy()


@dataclasses.dataclass(frozen=True)
class KbpsOptions:
    seconds_per_line: float = 1.0


@register_trace_format("toy_kbps", description="toy: one rate in kbit/s per line", options=KbpsOptions)
class KbpsLines(TraceFormat):
    extensions = (".kbps",)
    expected = "one rate in kbit/s per line"

    def read(self, path: Path, text: str, options: KbpsOptions) -> tuple[np.ndarray, np.ndarray]:
        try:
            kbps = np.array([float(line) for line in text.split()])
        except ValueError:
            raise TraceFormatError(path, None, "a line is not a number", self.expected) from None
        edges_s = np.arange(len(kbps) + 1) * options.seconds_per_line
        return edges_s, kbps * 1000.0


SCENARIO = """\
name: toy_parts
env: {{id: bwgym/LocateLift-v0, kwargs: {{image_size: {size}}}}}
trace: {{source: link.kbps, format: toy_kbps}}
codec: {{name: toy_grey, kwargs: {{levels: 8}}}}
allocator: {{name: toy_favourite, kwargs: {{view: side}}}}
agent: {{name: toy_constant, kwargs: {{value: 0.5}}}}
run: {{episodes: 1}}
"""


def _scenario_file(tmp_path: Path, text: str = SCENARIO) -> Path:
    (tmp_path / "link.kbps").write_text("4\n" * 10)  # 4 kbit/s: 160 bits per 0.04 s step
    path = tmp_path / "toy.yaml"
    path.write_text(text.format(size=SIZE))
    return path


def test_a_scenario_runs_a_users_codec_allocator_agent_and_trace_format(tmp_path: Path) -> None:
    scenario = load_scenario(_scenario_file(tmp_path))
    ConstantAgent.actions.clear()
    result = run_scenario(scenario, tmp_path / "run", progress=False, plots=False)
    steps = pd.read_parquet(result.out_dir / "steps.parquet")
    assert len(result.episodes) == 1 and len(steps) > 0
    # the allocator gave everything to the side view; the codec then sent one byte, for it only
    assert (steps["bits_sent_total"] > 0).all()
    assert steps["budget_bits"].iloc[1:].eq(160).all()  # the trace format's rate, per step
    assert (steps["bits_sent_total"] <= steps["budget_bits"]).all()
    assert steps["bits_sent.side"].gt(0).all() and steps["bits_sent.arm"].eq(0).all()
    assert steps["allocation.side"].eq(1.0).all()
    # the agent acted every step (row 0 is the reset), with the value its options gave
    assert result.episodes["steps"].iloc[0] == len(steps) - 1 == len(ConstantAgent.actions)
    assert all(np.all(a == 0.5) for a in ConstantAgent.actions)


def test_options_are_validated_with_the_entrys_dataclass(tmp_path: Path) -> None:
    for old, new, words in (
        ("levels: 8", "levles: 8", "codec.kwargs.levles: unknown key. Did you mean 'levels'"),
        ("view: side", "view: 3", "allocator.kwargs.view: expected str, got 3"),
        ("value: 0.5", "value: high", "agent.kwargs.value: expected float, got 'high'"),
    ):
        path = _scenario_file(tmp_path, SCENARIO.replace(old, new))
        with pytest.raises(ConfigError, match=words):
            validate(load_scenario(path))


def test_unknown_names_list_the_registered_ones_with_a_guess(tmp_path: Path) -> None:
    for old, new, words in (
        ("name: toy_grey", "name: toy_gery", "codec.name.*Did you mean 'toy_grey'"),
        ("name: toy_constant", "name: toy_constnat", "agent.name.*Did you mean 'toy_constant'"),
        ("name: toy_favourite", "name: toy_favorite", "allocator.name.*Did you mean 'toy_favourite'"),
        ("format: toy_kbps", "format: toy_kpbs", "trace.format.*Did you mean 'toy_kbps'"),
    ):
        with pytest.raises(ConfigError, match=words):
            load_scenario(_scenario_file(tmp_path, SCENARIO.replace(old, new)))


def test_a_name_registered_twice_from_two_modules_is_refused() -> None:
    def other(context: BuildContext, options: None) -> None:
        return None

    other.__module__ = "someone_elses.module"
    for registry in (ALLOCATORS, AGENTS, CODECS, TRACE_FORMATS):
        name = next(iter(registry.names()))
        with pytest.raises(
            DuplicateNameError, match=f"{registry.kind} '{name}' is registered twice.*someone_elses"
        ):
            registry.add(name, other, **({"wire_name": name} if registry is CODECS else {}))
