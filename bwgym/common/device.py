"""Where torch work runs."""

from __future__ import annotations

from typing import Any

__all__ = ["resolve_device"]


def resolve_device(device: Any = "auto") -> Any:
    """``"auto"`` is CUDA when available, else CPU; anything else is passed to ``torch.device``.

    Raises:
        ValueError: not a device name, or a CUDA device on a machine without CUDA.
    """
    import torch

    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device {str(device)[:80]!r} is not a torch device: use auto, cpu, cuda or cuda:N ({exc})"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {str(device)!r} asked for CUDA, and this machine has none (torch.cuda.is_available() "
            "is False): use device auto (CUDA when present, else CPU) or cpu"
        )
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(
            f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return resolved
