"""The shipped trace library: present, loadable, in its regimes, and reproducible by its script."""

from __future__ import annotations

from pathlib import Path

import pytest

from bwgym.traces import LIBRARY_DIR, TRACE_FORMATS, detect_format, library_path, list_library, load_trace
from bwgym.traces.make_library import LIBRARY, build_library


def test_every_format_is_shipped() -> None:
    built_in = {e.name for e in TRACE_FORMATS.entries() if e.module.startswith("bwgym.")}  # not tests' toys
    assert {detect_format(library_path(name)) for name in list_library()} == built_in


def test_library_names_and_paths() -> None:
    names = list_library()
    assert names == sorted(f.split(".", 1)[0] for f in LIBRARY)
    assert library_path("lte_drive") == library_path("lte_drive.cooked") == LIBRARY_DIR / "lte_drive.cooked"
    with pytest.raises(FileNotFoundError, match="Did you mean lte_drive"):
        library_path("lte_driv")


@pytest.mark.parametrize("name", sorted(f.split(".", 1)[0] for f in LIBRARY))
def test_library_traces_load_and_are_small(name: str) -> None:
    trace = load_trace(name)
    assert trace.name == name
    assert trace.duration_s >= 60.0
    assert library_path(name).stat().st_size < 8000


def test_regimes() -> None:
    # DESIGN.md: cellular as recorded is 1-15 Mbit/s; the comparisons live between ~1 kbit/s and ~1 Mbit/s.
    lte = load_trace("lte_drive")
    assert 1e6 <= lte.min_bps and lte.max_bps <= 15e6
    for name in (
        "lora_narrowband",
        "gilbert_elliott_bursty",
        "satellite",
        "walk_100kbps",
        "shared_uplink_4g",
    ):
        assert 1e3 <= load_trace(name).mean_bps <= 1e6, name
    assert load_trace("lora_narrowband").mean_bps < 10e3
    assert load_trace("satellite").outage_fraction > 0


def test_make_library_reproduces_the_shipped_files(tmp_path: Path) -> None:
    for path in build_library(tmp_path):
        shipped = LIBRARY_DIR / path.name
        assert path.read_bytes() == shipped.read_bytes(), (
            f"{shipped} differs from what make_library writes; rerun `python -m bwgym.traces.make_library`"
        )
