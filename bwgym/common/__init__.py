"""Layer 0: plumbing every other layer may use (files, checkpoints, statistics, devices).

Nothing here imports from another ``bwgym`` package.
"""

from bwgym.common.checkpoint import (
    CHECKPOINT_FORMAT,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from bwgym.common.files import atomic_write, atomic_write_bytes, atomic_write_text
from bwgym.common.stats import wilson_interval

__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "CheckpointError",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "load_checkpoint",
    "save_checkpoint",
    "wilson_interval",
]
