"""Bandwidth traces: the piecewise-constant rate, its file formats, generators and the link model.

Typical use::

    from bwgym.traces import Link, load_trace

    trace = load_trace("lte_drive").scale(1 / 16)  # a library trace, shared by 16 robots
    link = Link(trace, step_seconds=0.04, latency_steps=1, loss_prob=0.01, seed=0)
    step = link.transmit(payload, payload.nbits)

Shipped traces live in ``bwgym/traces/library/`` (``list_library()``, ``library_path(name)``);
``python -m bwgym.traces.make_library`` regenerates them.

Hostile input is refused with a ``ValueError`` that names the file (and line) or the parameter:
every loader failure is a :class:`TraceFormatError`, and sizes are bounded by
:data:`MAX_TRACE_SAMPLES` (segments), :data:`MAX_TRACE_FILE_BYTES`, :data:`MAX_BPS` and
:data:`MAX_TIME_S`. Seeded generators are reproducible in every process; :func:`derive_seed`
derives a per-trace seed from a run's seed.

File formats and generators are entries of the registries :data:`TRACE_FORMATS` and
:data:`TRACE_GENERATORS` (``bwgym traces formats``, ``bwgym traces generators``); a module of your
own adds one with :func:`register_trace_format` (a :class:`TraceFormat` subclass) or
:func:`register_trace_generator`.
"""

from bwgym.common.registry import (
    TRACE_FORMATS,
    TRACE_GENERATORS,
    register_trace_format,
    register_trace_generator,
)
from bwgym.traces.formats import (
    LIBRARY_DIR,
    MAHIMAHI_BIN_MS,
    MAHIMAHI_PACKET_BITS,
    MAX_TRACE_FILE_BYTES,
    TraceFormat,
    TraceFormatError,
    TraceNotFoundError,
    detect_format,
    library_path,
    list_library,
    load_trace,
    resolve_trace_path,
    save_trace,
)
from bwgym.traces.generators import GENERATORS, derive_seed, generate
from bwgym.traces.link import Delivery, Link, LinkStep
from bwgym.traces.trace import MAX_BPS, MAX_TIME_S, MAX_TRACE_SAMPLES, BandwidthTrace, concatenate

__all__ = [
    "GENERATORS",
    "LIBRARY_DIR",
    "MAHIMAHI_BIN_MS",
    "MAHIMAHI_PACKET_BITS",
    "MAX_BPS",
    "MAX_TIME_S",
    "MAX_TRACE_FILE_BYTES",
    "MAX_TRACE_SAMPLES",
    "TRACE_FORMATS",
    "TRACE_GENERATORS",
    "BandwidthTrace",
    "Delivery",
    "Link",
    "LinkStep",
    "TraceFormat",
    "TraceFormatError",
    "TraceNotFoundError",
    "concatenate",
    "derive_seed",
    "detect_format",
    "generate",
    "library_path",
    "list_library",
    "load_trace",
    "register_trace_format",
    "register_trace_generator",
    "resolve_trace_path",
    "save_trace",
]
