"""Bandwidth traces: the piecewise-constant rate, its file formats, generators and the link model.

Typical use::

    from bwgym.traces import Link, load_trace

    trace = load_trace("lte_drive").scale(1 / 16)  # a library trace, shared by 16 robots
    link = Link(trace, step_seconds=0.04, latency_steps=1, loss_prob=0.01, seed=0)
    step = link.transmit(payload, payload.nbits)

Shipped traces live in ``bwgym/traces/library/`` (``list_library()``, ``library_path(name)``);
``python -m bwgym.traces.make_library`` regenerates them.
"""

from bwgym.traces.formats import (
    FORMATS,
    LIBRARY_DIR,
    MAHIMAHI_BIN_MS,
    MAHIMAHI_PACKET_BITS,
    TraceFormatError,
    detect_format,
    library_path,
    list_library,
    load_trace,
    save_trace,
)
from bwgym.traces.generators import GENERATORS, generate
from bwgym.traces.link import Delivery, Link, LinkStep
from bwgym.traces.trace import BandwidthTrace, concatenate

__all__ = [
    "FORMATS",
    "GENERATORS",
    "LIBRARY_DIR",
    "MAHIMAHI_BIN_MS",
    "MAHIMAHI_PACKET_BITS",
    "BandwidthTrace",
    "Delivery",
    "Link",
    "LinkStep",
    "TraceFormatError",
    "concatenate",
    "detect_format",
    "generate",
    "library_path",
    "list_library",
    "load_trace",
    "save_trace",
]
