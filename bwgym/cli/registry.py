"""Listing commands of the registries: ``bwgym codecs``, ``bwgym allocators``, ``bwgym agents``.

Each prints every registered name with its one-line description and its options (type and
default), or one entry when given its name (an unknown name: the registered ones, with a
"did you mean"). ``bwgym traces formats|generators`` list the trace registries the same way.
"""

from __future__ import annotations

import argparse
from typing import Any

from bwgym.codecs.core.registry import CODECS, CodecEntry
from bwgym.common.registry import AGENTS, ALLOCATORS, FLEET_ALLOCATORS, Registry, describe_entries

__all__ = ["register"]


def _codec_details(entry: CodecEntry) -> str:
    return f"wire {entry.wire_name:14s} shipped {entry.checkpoint or '-':36s}"


def _listing(registries: tuple[Registry, ...], details: Any = None) -> Any:
    def command(args: argparse.Namespace) -> int:
        if args.name is not None:  # one entry: an unknown name ends in the did-you-mean line
            registry = next((r for r in registries if args.name in r), registries[0])
            print(describe_entries([registry.get(args.name)], details))
            return 0
        for registry in registries:
            if len(registries) > 1:
                print(f"# {registry.kind}s")
            print(describe_entries(registry.entries(), details))
        return 0

    return command


def register(sub: Any) -> None:
    """Add the listing commands to the ``bwgym`` sub-parsers."""
    for name, registries, details, what in (
        ("codecs", (CODECS,), _codec_details, "codecs (wire format, shipped checkpoint, options)"),
        ("allocators", (ALLOCATORS, FLEET_ALLOCATORS), None, "bandwidth allocators and fleet allocators"),
        ("agents", (AGENTS,), None, "agents"),
    ):
        parser = sub.add_parser(name, help=f"list the registered {what}")
        parser.add_argument("name", nargs="?", default=None, help="show only this one")
        parser.set_defaults(func=_listing(registries, details))
