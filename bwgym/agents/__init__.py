"""Agents that act on (decoded) views, and the data they learn from.

* :class:`~bwgym.agents.expert.LiftExpert` - the scripted LocateLift expert (privileged state);
* :func:`~bwgym.agents.demos.collect_demos`, :class:`~bwgym.agents.demos.DemoDataset` - expert
  demonstrations on disk (lossless, one ``.npz`` per episode);
* :class:`~bwgym.agents.bc.BCAgent`, :func:`~bwgym.agents.bc_training.train_bc`,
  :func:`~bwgym.agents.evaluation.evaluate_agent` - the behaviour-cloning CNN policy
  (``BCAgent.load_shipped()`` is the trained LocateLift agent);
* :mod:`bwgym.envs.allocators` - bandwidth allocation policies.

Names are imported on first use, so ``import bwgym.agents.expert`` does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BCAgent",
    "DemoDataset",
    "DemoFormatError",
    "LiftExpert",
    "collect_demos",
    "evaluate_agent",
    "train_bc",
]

_WHERE = {
    "BCAgent": "bwgym.agents.bc",
    "train_bc": "bwgym.agents.bc_training",
    "evaluate_agent": "bwgym.agents.evaluation",
    "DemoDataset": "bwgym.agents.demos",
    "DemoFormatError": "bwgym.agents.demos",
    "collect_demos": "bwgym.agents.demos",
    "LiftExpert": "bwgym.agents.expert",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
