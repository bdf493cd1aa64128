"""Regenerate the shipped trace library in ``bwgym/traces/library/``.

Run ``python -m bwgym.traces.make_library`` (or ``--out DIR`` to write elsewhere). Every trace is
seeded, so the output is the same file for file; ``tests/traces`` checks that the shipped files
match this script.

The library spans the regimes of DESIGN.md ("Bandwidth regimes", 0.04 s per env step), and each
of the five file formats appears at least once:

=========================== ========== ===============================================================
file                        format     what it models
=========================== ========== ===============================================================
lte_drive.cooked            cooked     a car on LTE, 1-15 Mbit/s, 3 minutes: every codec fits
shared_uplink_4g.hsdpa      hsdpa      a 4G drive shared by 32 robots: ~30-470 kbit/s
walk_100kbps.mahimahi       mahimahi   a log-normal walk around 100 kbit/s (JPEG at low quality)
satellite.sabre.json        sabre      a 64-512 kbit/s satellite link with a 3 s handover outage
                                       every 40 s
gilbert_elliott_bursty.csv  csv        250 kbit/s with bursts down to 5 kbit/s, switching per 0.04 s
lora_narrowband.csv         csv        a narrowband radio around 3 kbit/s (tens of bits per step)
=========================== ========== ===============================================================
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from bwgym.traces.formats import LIBRARY_DIR, save_trace
from bwgym.traces.generators import drive, gilbert_elliott, lognormal_walk
from bwgym.traces.trace import BandwidthTrace

__all__ = ["LIBRARY", "build_library", "main"]


def _lte_drive() -> BandwidthTrace:
    # No constant segments: a recorded cellular trace never sits still for half a minute.
    kinds = ("lognormal_walk", "pensieve_markov", "gilbert_elliott")
    return drive(
        duration_s=180.0,
        min_bps=1e6,
        max_bps=15e6,
        mean_segment_s=30.0,
        dt_s=1.0,
        seed=1,
        kinds=kinds,
        name="lte_drive",
    )


def _shared_uplink_4g() -> BandwidthTrace:
    kinds = ("lognormal_walk", "pensieve_markov", "gilbert_elliott")
    cell = drive(
        duration_s=120.0, min_bps=1e6, max_bps=15e6, mean_segment_s=20.0, dt_s=1.0, seed=2, kinds=kinds
    )
    return cell.scale(1 / 32, name="shared_uplink_4g")


def _walk_100kbps() -> BandwidthTrace:
    return lognormal_walk(
        100e3, 0.5, 20e3, 400e3, duration_s=120.0, dt_s=1.0, correlation_s=10.0, seed=3, name="walk_100kbps"
    )


def _satellite() -> BandwidthTrace:
    markov = {
        "min_bps": 64e3,
        "max_bps": 512e3,
        "n_states": 4,
        "mean_stay_s": 12.0,
        "noise": 0.1,
        "dt_s": 2.0,
    }
    segments = []
    for _ in range(3):
        segments += [("pensieve_markov", 37.0, markov), ("constant", 3.0, {"bps": 0.0})]
    return drive(segments=segments, seed=4, name="satellite")


def _gilbert_elliott_bursty() -> BandwidthTrace:
    return gilbert_elliott(
        250e3,
        5e3,
        p_good_to_bad=0.05,
        p_bad_to_good=0.25,
        duration_s=60.0,
        dt_s=0.04,
        seed=5,
        name="gilbert_elliott_bursty",
    )


def _lora_narrowband() -> BandwidthTrace:
    return lognormal_walk(
        3e3, 0.5, 500.0, 11e3, duration_s=120.0, dt_s=1.0, correlation_s=20.0, seed=6, name="lora_narrowband"
    )


LIBRARY: dict[str, Callable[[], BandwidthTrace]] = {
    "lte_drive.cooked": _lte_drive,
    "shared_uplink_4g.hsdpa": _shared_uplink_4g,
    "walk_100kbps.mahimahi": _walk_100kbps,
    "satellite.sabre.json": _satellite,
    "gilbert_elliott_bursty.csv": _gilbert_elliott_bursty,
    "lora_narrowband.csv": _lora_narrowband,
}
"""File name in the library -> function building its trace."""


def build_library(out_dir: str | Path = LIBRARY_DIR) -> list[Path]:
    """Write every library trace into ``out_dir`` and return the paths written."""
    out = Path(out_dir)
    return [save_trace(build(), out / file_name) for file_name, build in LIBRARY.items()]


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``python -m bwgym.traces.make_library [--out DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", default=str(LIBRARY_DIR), help=f"output folder (default {LIBRARY_DIR})")
    args = parser.parse_args(argv)
    for path in build_library(args.out):
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
