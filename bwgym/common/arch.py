"""A network's recorded architecture (``arch``) against the arrays of its checkpoint.

The loaders of learned codecs and agents compute the ``state_dict`` shapes that a checkpoint's
``arch`` implies, by integer arithmetic, and compare them with the file's arrays before any module
is built: metadata that asks for more than the file holds is refused, not allocated.
:func:`conv_stack_shapes` gives the shapes of the convolution trunks they share; :class:`ArchCheck`
words the refusals alike (the file, what disagrees, the command that remakes it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from bwgym.common.checkpoint import Checkpoint, CheckpointError, first_shape_mismatch, is_size_list

__all__ = ["ArchCheck", "conv_stack_shapes"]


def conv_stack_shapes(
    prefix: str, channels: Sequence[int], first_kernel: int, in_channels: int = 3
) -> dict[str, tuple[int, ...]]:
    """The ``state_dict`` shapes of ``Sequential(Conv2d, ReLU, Conv2d, ReLU, ...)`` under ``prefix``.

    The first convolution is ``first_kernel`` square (a patch stem), the others 3x3; each maps
    the previous one's channels to its entry of ``channels``.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    in_ch = in_channels
    for i, out_ch in enumerate(channels):
        kernel = first_kernel if i == 0 else 3
        shapes[f"{prefix}{2 * i}.weight"] = (out_ch, in_ch, kernel, kernel)
        shapes[f"{prefix}{2 * i}.bias"] = (out_ch,)
        in_ch = out_ch
    return shapes


class ArchCheck:
    """The refusals of one checkpoint's ``arch``, each a :class:`CheckpointError` naming the fix.

    Args:
        ckpt: the loaded checkpoint.
        unnamed: what to call it when it has no path (e.g. ``"codec checkpoint"``).
        retrain: the command that remakes the file, shown in every refusal.

    """

    def __init__(self, ckpt: Checkpoint, unnamed: str, retrain: str) -> None:
        self.ckpt, self.unnamed, self.retrain = ckpt, unnamed, retrain

    def error(self, detail: str) -> CheckpointError:
        """``<file>: network metadata <detail>; the file is damaged or crafted, retrain it (<command>)``."""
        return CheckpointError(
            f"{self.ckpt.path or self.unnamed}: network metadata {detail}; the file is damaged or crafted, "
            f"retrain it (`{self.retrain}`)"
        )

    def arch(self, keys: AbstractSet[str], network: str) -> dict[str, Any]:
        """The metadata's ``arch``: an object whose keys are among ``keys`` (``network``'s arguments)."""
        arch = self.ckpt.metadata.get("arch")
        if not isinstance(arch, dict) or set(arch) - keys:
            raise self.error(f"'arch' must be an object of {network} arguments")
        return arch

    def view_names(self, arch: Mapping[str, Any]) -> list[str]:
        """``arch["view_names"]``: a non-empty list of names."""
        views = arch.get("view_names")
        if not isinstance(views, list) or not views or not all(isinstance(v, str) for v in views):
            raise self.error("arch.view_names must be a list of names")
        return views

    def sizes(self, value: Any, what: str) -> list[int]:
        """``value`` when it is a list of positive integers; else a refusal naming ``what``."""
        if not is_size_list(value):
            raise self.error(f"{what} must be a list of positive integers, got {repr(value)[:80]}")
        return value

    def arrays(self, prefix: str, n_expected: int, described: str) -> dict[str, Any]:
        """The file's arrays under ``prefix`` (the prefix removed), refused unless there are ``n_expected``.

        Counting first refuses metadata of a million layers by arithmetic, before listing their
        shapes; ``described`` says what the metadata declares.
        """
        have = {k[len(prefix) :]: v for k, v in self.ckpt.state.items() if k.startswith(prefix)}
        if n_expected != len(have):
            raise self.error(f"({described}) implies {n_expected} arrays, the file holds {len(have)}")
        return have

    def shapes(
        self, expected: Mapping[str, tuple[int, ...]], have: Mapping[str, Any], prefix: str, described: str
    ) -> None:
        """Refuse the first array of ``have`` whose shape is not ``expected``'s (or that is missing)."""
        mismatch = first_shape_mismatch(expected, have)
        if mismatch is not None:
            key, shape, got = mismatch
            raise self.error(
                f"({described}) needs {prefix}{key} of shape {shape}, the file has "
                f"{'none' if got is None else got}"
            )
