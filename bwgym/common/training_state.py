"""What resuming a training run needs besides its weights: optimiser states and RNG states.

Everything is stored in the project's checkpoint format (:mod:`bwgym.common.checkpoint`: arrays and
JSON, nothing pickled): :func:`optimizer_arrays` turns an optimiser into named arrays and JSON
settings, :func:`load_optimizer` puts them back into a fresh optimiser of the rebuilt model after
checking every entry against its parameter; :func:`rng_state` / :func:`set_rng_state` do the same
for the torch, numpy and Python generators. A damaged entry is a :class:`CheckpointError` naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from bwgym.common.checkpoint import CheckpointError

__all__ = ["load_optimizer", "load_state_dict_checked", "optimizer_arrays", "rng_state", "set_rng_state"]


def _plain_number_or_list(value: Any) -> bool:
    """None, a number or flag, or a list of them: all an optimiser setting may be in a checkpoint."""
    number = (bool, int, float)
    return (
        value is None
        or isinstance(value, number)
        or (isinstance(value, list) and all(isinstance(v, number) for v in value))
    )


def _group_to_json(group: Mapping[str, Any]) -> dict[str, Any]:
    """An optimiser's param group as plain JSON (numbers, flags, lists of numbers)."""
    out = {}
    for key, value in group.items():
        value = list(value) if isinstance(value, tuple) else value
        value = value.item() if hasattr(value, "item") and getattr(value, "ndim", 1) == 0 else value
        if not _plain_number_or_list(value):  # e.g. a tensor learning rate: not a setting we store
            raise ValueError(f"optimiser setting {key}={value!r} cannot be stored as JSON numbers")
        out[key] = value
    return out


def optimizer_arrays(name: str, optimizer: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """An optimiser's state as ``optim/<name>/<param index>/<field>`` tensors and its param groups as JSON."""
    saved = optimizer.state_dict()
    arrays = {
        f"optim/{name}/{index}/{key}": value
        for index, entries in saved["state"].items()
        for key, value in entries.items()
    }
    return arrays, [_group_to_json(g) for g in saved["param_groups"]]


def rng_state() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The torch, numpy and Python RNG states of this process: arrays and JSON numbers."""
    import random

    import torch

    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    arrays = {
        "rng/torch": torch.get_rng_state().numpy(),
        "rng/numpy": np.asarray(keys, dtype=np.uint32),
        "rng/python": np.asarray(internal, dtype=np.uint32),
    }
    meta = {
        "numpy": {"name": str(name), "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": int(version), "gauss_next": gauss_next},
    }
    return arrays, meta


def set_rng_state(state: Mapping[str, np.ndarray], meta: Any, what: str) -> None:
    """Restore what :func:`rng_state` saved; anything malformed is a :class:`CheckpointError`."""
    import random

    import torch

    try:
        torch_state = state["rng/torch"]
        if torch_state.dtype != np.uint8 or torch_state.shape != tuple(torch.get_rng_state().shape):
            raise ValueError(f"torch RNG state of {torch_state.dtype} {torch_state.shape}")
        # MT19937 keeps 624 words (Python adds its position): checked before any tuple is built.
        if state["rng/numpy"].shape != (624,) or state["rng/python"].shape != (625,):
            raise ValueError(f"RNG states of {state['rng/numpy'].shape} and {state['rng/python'].shape}")
        np_meta, py_meta = meta["numpy"], meta["python"]
        numpy_state = (
            str(np_meta["name"]),
            np.asarray(state["rng/numpy"], dtype=np.uint32),
            int(np_meta["pos"]),
            int(np_meta["has_gauss"]),
            float(np_meta["cached"]),
        )
        gauss = py_meta["gauss_next"]
        python_state = (
            int(py_meta["version"]),
            tuple(int(v) for v in state["rng/python"]),
            None if gauss is None else float(gauss),
        )
        # Each setter validates its own state (sizes, positions) and raises before changing anything.
        np.random.RandomState().set_state(numpy_state)
        random.Random().setstate(python_state)
    except (KeyError, TypeError, ValueError, IndexError, OverflowError) as err:
        raise CheckpointError(f"{what}: damaged RNG state ({type(err).__name__}: {err})") from err
    torch.set_rng_state(torch.from_numpy(np.array(torch_state, copy=True)))
    np.random.set_state(numpy_state)
    random.setstate(python_state)


def load_state_dict_checked(module: Any, state: Mapping[str, Any], what: str, label: str) -> None:
    """``module.load_state_dict`` after checking names and shapes (a clear error, not a traceback)."""
    own = module.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or extra or bad:
        detail = (
            f"missing {missing[:3]}"
            if missing
            else f"unexpected {extra[:3]}"
            if extra
            else f"{bad[0]} is {tuple(state[bad[0]].shape)}, the model's {tuple(own[bad[0]].shape)}"
        )
        raise CheckpointError(f"{what}: {label} does not fit the rebuilt model ({detail}); start a new run")
    module.load_state_dict(state)


def load_optimizer(optimizer: Any, ckpt: Any, name: str, groups: Any, what: str) -> None:
    """Load one optimiser's state saved by :func:`save_training_state` into a fresh optimiser."""
    import torch

    fresh = optimizer.state_dict()
    if not isinstance(groups, list) or len(groups) != len(fresh["param_groups"]):
        raise CheckpointError(f"{what}: optimiser {name!r} has no matching param groups")
    merged = []
    for saved, group in zip(groups, fresh["param_groups"], strict=True):
        if not isinstance(saved, dict) or saved.get("params") != group["params"]:
            raise CheckpointError(f"{what}: optimiser {name!r} param groups do not fit the rebuilt model")
        group = dict(group)
        for key, value in saved.items():
            if key == "params" or key not in group:
                continue
            if not _plain_number_or_list(value):
                raise CheckpointError(f"{what}: optimiser {name!r} setting {key}={value!r} is not a number")
            group[key] = tuple(value) if isinstance(group[key], tuple) and isinstance(value, list) else value
        merged.append(group)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    prefix = f"optim/{name}/"
    entries: dict[int, dict[str, Any]] = {}
    for key, array in ckpt.state.items():
        if not key.startswith(prefix):
            continue
        index, _, field_name = key[len(prefix) :].partition("/")
        if not index.isdigit() or int(index) >= len(params) or not field_name.isidentifier():
            raise CheckpointError(f"{what}: optimiser entry {key!r} names no parameter of the model")
        param = params[int(index)]
        if field_name != "step" and tuple(array.shape) != tuple(param.shape):
            raise CheckpointError(
                f"{what}: optimiser entry {key!r} is {tuple(array.shape)}, its parameter {tuple(param.shape)}"
            )
        if array.dtype.kind not in "fiub" or (field_name == "step" and array.size != 1):
            raise CheckpointError(f"{what}: optimiser entry {key!r} is not a numeric state of its parameter")
        entries.setdefault(int(index), {})[field_name] = torch.from_numpy(np.array(array, copy=True))
    optimizer.load_state_dict({"state": entries, "param_groups": merged})
