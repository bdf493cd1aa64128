"""Behaviour cloning: a CNN policy over camera views, trained on expert demonstrations.

:class:`BCAgent` maps the views of one step (plus, optionally, the ``proprio`` vector) to a
LocateLift action. It is the task model of the NDPCA paper's locate-and-lift experiment (Sec. 5):
the codec is trained through the *frozen* agent with the task loss
``|| agent(decoded views) - agent(clean views) ||^2``, so :meth:`BCAgent.forward` takes float
images in [0, 1] and is differentiable with respect to them::

    agent = BCAgent.load_shipped()                 # frozen task model for LocateLift
    agent.requires_grad_(False)
    views = agent.preprocess(obs)                  # {"arm": (B,3,84,84) float in [0,1], ...}
    loss = (agent(decoded) - agent(views)).pow(2).sum(-1).mean()

    action = agent.act(obs)                        # one env observation -> (4,) float32

:func:`train_bc` trains one from a :class:`~bwgym.agents.demos.DemoDataset` with random-shift
augmentation (pad and random crop, as in DrQ: the paper's "robust task model"), early stopping on
held-out episodes, TensorBoard logs and optional DAgger rounds. :func:`evaluate_agent` measures
its success rate. The command ``bwgym train agent --algo bc`` does all of it (see
:mod:`bwgym.cli.agents`).

The agent has no batch norm or dropout, so train and eval mode compute the same function: a
frozen agent inside another model's training loop behaves exactly as it does when acting.

**Checkpoints** use the project's one format (:mod:`bwgym.common.checkpoint`, kind ``agent/bc``):
the ``state_dict`` as ``.npy`` arrays plus JSON metadata (env id, views, image shape, proprio size,
architecture, training config, metrics). Loading runs no code from the file, and
:meth:`BCAgent.load` checks the spec it is asked for. A checkpoint of the earlier torch format
(``.pt``) is refused; :func:`convert_legacy` rewrites one (it reads it with
``torch.load(weights_only=True)``, which unpickles no objects).

**The shipped agent** (``checkpoints/bc_locate_lift.ckpt``, 84x84 ``arm`` + ``side`` views, images
only, no proprio) is plain BC (no DAgger) on 200 expert episodes with N(0, 0.1) action noise,
made by::

    bwgym train agent --algo bc --env bwgym/LocateLift-v0 --episodes 200 \
        --out bwgym/agents/checkpoints/bc_locate_lift.ckpt

(trained as ``bc_locate_lift.pt`` and converted by :func:`convert_legacy`, same weights bit for
bit). ``checkpoints/bc_locate_lift.json`` records the full command, the training history and its
success rate on 100 seeded episodes (seeds 10000-10099) with uncompressed views.
"""

from __future__ import annotations

import copy
import math
import os
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bwgym.agents.base import rollout
from bwgym.common.checkpoint import (
    CheckpointError,
    check_spec,
    first_shape_mismatch,
    is_size_list,
    load_checkpoint,
    save_checkpoint,
    shipped_file,
)
from bwgym.common.device import resolve_device
from bwgym.envs.views import link_views

if TYPE_CHECKING:
    import pandas as pd

    from bwgym.agents.demos import DemoDataset

__all__ = [
    "CHECKPOINT_KIND",
    "MAX_BC_IMAGE_SIDE_PIXELS",
    "SHIPPED_CHECKPOINT",
    "BCAgent",
    "check_bc_arrays",
    "convert_legacy",
    "encoder_state_shapes",
    "evaluate_agent",
    "random_shift",
    "resolve_device",
    "train_bc",
]

#: Kind of a BC checkpoint in the project's format (:mod:`bwgym.common.checkpoint`).
CHECKPOINT_KIND = "agent/bc"
#: Format tag of the earlier torch files (``torch.save`` dicts), which :func:`convert_legacy` reads.
LEGACY_FORMAT = "bwgym.bc/1"
#: The shipped LocateLift agent (see ``bc_locate_lift.json`` next to it for how it was made).
SHIPPED_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "bc_locate_lift.ckpt"
PROPRIO_KEY = "proprio"
#: Seeds of DAgger rollouts start here, far from demonstration and evaluation seeds.
DAGGER_SEED_BASE = 1_000_000
FINETUNE_SEED_BASE = 2_000_000


def _writable(value: Any) -> np.ndarray:
    """``value`` as an array torch can wrap without a warning (decoded views may be read-only)."""
    array = np.asarray(value)
    return array if array.flags.writeable else array.copy()


#: Largest image side (pixels) a BC checkpoint may declare: building an encoder runs one zero
#: image through it, so the side bounds that allocation (the envs render 84x84).
MAX_BC_IMAGE_SIDE_PIXELS = 2048
#: Defaults of ``arch`` entries a checkpoint may omit (those of :class:`BCAgent`).
_ARCH_DEFAULTS: dict[str, Any] = {"channels": [32, 64, 64], "features": 128, "hidden": [256], "stem": 4}


def _positive_ints(value: Any, what: str, where: str, allow_zero: bool = False) -> list[int]:
    """``value`` as a list of positive integers (non-negative with ``allow_zero``), else a CheckpointError."""
    low = 0 if allow_zero else 1
    if not is_size_list(value, low):
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise CheckpointError(
            f"{where}: {what} must be a list of integers >= {low}, got {shown}; the file is damaged or "
            "not one bwgym wrote"
        )
    return value


def encoder_state_shapes(
    view_names: Sequence[str],
    image_shape: Sequence[int],
    channels: Sequence[int],
    features: int,
    stem: int,
    prefix: str = "encoders.",
) -> dict[str, tuple[int, ...]]:
    """The ``state_dict`` shapes of BC's per-view encoders, computed without building them.

    Loading compares these with the arrays in a file before any module exists, so a checkpoint
    whose metadata asks for more than its arrays hold allocates nothing.
    """
    h, w = int(image_shape[0]) // stem, int(image_shape[1]) // stem
    for _ in channels[1:]:
        h, w = (h - 1) // 2, (w - 1) // 2  # unpadded 3x3 stride-2 convolutions, as in _ViewEncoder
    shapes: dict[str, tuple[int, ...]] = {}
    for v in view_names:
        base = f"{prefix}{v}."
        in_ch = 3
        for i, out_ch in enumerate(channels):
            kernel = stem if i == 0 else 3
            shapes[f"{base}convs.{2 * i}.weight"] = (out_ch, in_ch, kernel, kernel)
            shapes[f"{base}convs.{2 * i}.bias"] = (out_ch,)
            in_ch = out_ch
        shapes[f"{base}head.1.weight"] = (features, channels[-1] * max(h, 0) * max(w, 0))
        for key in ("head.1.bias", "head.2.weight", "head.2.bias"):
            shapes[base + key] = (features,)
    return shapes


def check_bc_arrays(where: str, meta: Mapping[str, Any], state: Mapping[str, np.ndarray]) -> None:
    """Refuse BC metadata whose architecture disagrees with the arrays in the file.

    Runs before any torch module is built: every declared size must be a non-negative integer,
    images at most :data:`MAX_BC_IMAGE_SIDE_PIXELS` a side, and the ``state_dict`` the metadata
    describes must have exactly the keys and shapes of the file's arrays. The built agent then
    takes no more memory than the file's arrays (which :func:`load_checkpoint` caps).

    Raises:
        CheckpointError: naming the field or the first array that disagrees, and the fix.
    """
    fix = "the file is damaged or crafted; retrain it (`bwgym train agent --algo bc ...`)"
    arch_raw = meta.get("arch")
    if not isinstance(arch_raw, dict) or set(arch_raw) - set(_ARCH_DEFAULTS):
        raise CheckpointError(
            f"{where}: BC checkpoint metadata 'arch' must be an object with keys among "
            f"{sorted(_ARCH_DEFAULTS)}; {fix}"
        )
    arch = {**_ARCH_DEFAULTS, **arch_raw}
    channels = _positive_ints(arch["channels"], "arch.channels", where)
    hidden = _positive_ints(arch["hidden"], "arch.hidden (hidden layer sizes)", where)
    (features,) = _positive_ints([arch["features"]], "arch.features", where)
    (stem,) = _positive_ints([arch["stem"]], "arch.stem", where)
    image_shape = _positive_ints(meta.get("image_shape"), "image_shape", where)
    (action_dim,) = _positive_ints([meta.get("action_dim")], "action_dim", where)
    (proprio_dim,) = _positive_ints([meta.get("proprio_dim")], "proprio_dim", where, allow_zero=True)
    views = meta.get("view_names")
    if not isinstance(views, list) or not views or not all(isinstance(v, str) for v in views):
        raise CheckpointError(f"{where}: BC checkpoint metadata 'view_names' must be a list of names; {fix}")
    if not channels or len(image_shape) != 2:
        raise CheckpointError(
            f"{where}: BC checkpoint needs >= 1 channel size and an (H, W) image_shape; {fix}"
        )
    if max(image_shape) > MAX_BC_IMAGE_SIDE_PIXELS:
        raise CheckpointError(
            f"{where}: image_shape {image_shape} exceeds MAX_BC_IMAGE_SIDE_PIXELS={MAX_BC_IMAGE_SIDE_PIXELS}; {fix}"
        )
    # Count the entries the metadata implies before listing them: a list of a million layers
    # is refused by arithmetic, not by building a million names.
    n_expected = len(views) * (2 * len(channels) + 4) + 2 * (len(hidden) + 1)
    if n_expected != len(state):
        raise CheckpointError(
            f"{where}: BC metadata ({len(views)} views, {len(channels)} convolutions, hidden layer "
            f"sizes {hidden[:8]}{'...' if len(hidden) > 8 else ''}) implies {n_expected} arrays, the file "
            f"holds {len(state)}; {fix}"
        )
    expected = encoder_state_shapes(views, image_shape, channels, features, stem)
    width = len(views) * features + proprio_dim
    for j, size in enumerate([*hidden, action_dim]):
        expected[f"mlp.{2 * j}.weight"] = (size, width)
        expected[f"mlp.{2 * j}.bias"] = (size,)
        width = size
    mismatch = first_shape_mismatch(expected, state)
    if mismatch is not None:
        key, shape, got = mismatch
        got_text = "no such array" if got is None else f"shape {got}"
        raise CheckpointError(
            f"{where}: BC metadata (hidden layer sizes {hidden[:8]}, channels {channels[:8]}, "
            f"features {features}, image_shape {image_shape}) needs {key} of shape {shape}, the "
            f"file has {got_text}; {fix}"
        )


def _spec_text(env_id: Any, views: Any, image_shape: Any) -> str:
    return f"env_id={env_id!r}, views={list(views) if views is not None else None}, image_shape={image_shape}"


class _ViewEncoder(nn.Module):
    """A patch stem, stride-2 convolutions, then linear + LayerNorm + tanh (DrQ's trunk).

    The stem is a ``stem x stem`` convolution with stride ``stem`` (non-overlapping patches, as in
    ViT/ConvNeXt stems): it sees every pixel but leaves no full-resolution activation map, which
    on a CPU is where a 3x3 stride-2 first layer spends most of its time (memory-bound). The
    following layers are unpadded 3x3 stride-2 convolutions.
    """

    def __init__(
        self, image_shape: tuple[int, int], channels: Sequence[int], features: int, stem: int
    ) -> None:
        super().__init__()
        if not channels or stem < 1:
            raise ValueError(f"channels must be non-empty and stem >= 1, got {list(channels)}, {stem}")
        layers: list[nn.Module] = [nn.Conv2d(3, channels[0], kernel_size=stem, stride=stem), nn.ReLU()]
        for in_ch, out_ch in zip(channels[:-1], channels[1:], strict=True):
            layers += [nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=2), nn.ReLU()]
        # channels_last is the layout oneDNN convolutions run fastest in on CPUs (and cuDNN on GPUs).
        self.convs = nn.Sequential(*layers).to(memory_format=torch.channels_last)
        side = min(image_shape) // stem
        for _ in channels[1:]:
            side = (side - 1) // 2  # an unpadded 3x3 stride-2 convolution maps n pixels to (n - 1) // 2
        if side < 1:
            raise ValueError(
                f"image_shape {tuple(image_shape)} is too small for a {stem}x{stem} stem and "
                f"{len(channels) - 1} stride-2 convolutions; use larger images, a smaller stem or "
                "fewer layers"
            )
        with torch.no_grad():
            n_flat = self.convs(torch.zeros(1, 3, *image_shape)).numel()
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(n_flat, features), nn.LayerNorm(features), nn.Tanh()
        )

    def forward(self, x: Tensor) -> Tensor:
        # Centred inputs train faster; the [0, 1] range stays the public contract.
        x = (x - 0.5).contiguous(memory_format=torch.channels_last)
        return self.head(self.convs(x))


class BCAgent(nn.Module):
    """A CNN per view, features concatenated (with ``proprio`` if used), an MLP, tanh actions.

    The agent carries its observation spec (env id, view names, image shape, proprio size), which
    :meth:`save` writes and :meth:`load` checks.

    The policy is deterministic and memoryless (:attr:`memoryless`): one instance can act for
    many envs at once.

    Args:
        view_names: camera views, in the order their features are concatenated.
        image_shape: (H, W) of every view.
        proprio_dim: size of the ``proprio`` vector, 0 for images only.
        action_dim: size of the action (tanh-bounded to [-1, 1]).
        env_id: the env the agent acts in.
        channels: output channels of each view's convolutions: the ``stem`` patch convolution,
            then 3x3 stride-2 ones.
        features: features per view after the encoder's linear layer.
        hidden: sizes of the MLP's hidden layers.
        stem: kernel size and stride of the first convolution.

    """

    #: Actions depend on the current observation only: one instance serves every env of a vector env.
    memoryless: ClassVar[bool] = True

    def __init__(
        self,
        view_names: Sequence[str] = ("arm", "side"),
        image_shape: Sequence[int] = (84, 84),
        proprio_dim: int = 0,
        action_dim: int = 4,
        env_id: str = "bwgym/LocateLift-v0",
        channels: Sequence[int] = (32, 64, 64),
        features: int = 128,
        hidden: Sequence[int] = (256,),
        stem: int = 4,
    ) -> None:
        super().__init__()
        if not view_names or len(set(view_names)) != len(view_names):
            raise ValueError(f"view_names must be distinct and non-empty, got {list(view_names)}")
        if PROPRIO_KEY in view_names:
            raise ValueError(f"{PROPRIO_KEY!r} is not an image view; use proprio_dim")
        self.env_id = str(env_id)
        self.view_names = [str(v) for v in view_names]
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        self.proprio_dim = int(proprio_dim)
        self.action_dim = int(action_dim)
        self.arch = dict(
            channels=[int(c) for c in channels],
            features=int(features),
            hidden=[int(h) for h in hidden],
            stem=int(stem),
        )
        #: How the weights were trained (filled by :func:`train_bc`, saved with the weights).
        self.train_config: dict[str, Any] = {}
        #: Anything else to keep with the weights (e.g. an evaluation result).
        self.extra_meta: dict[str, Any] = {}
        self.encoders = nn.ModuleDict(
            {
                v: _ViewEncoder(
                    self.image_shape, self.arch["channels"], self.arch["features"], self.arch["stem"]
                )
                for v in self.view_names
            }
        )
        layers: list[nn.Module] = []
        width = len(self.view_names) * self.arch["features"] + self.proprio_dim
        for h in self.arch["hidden"]:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers += [nn.Linear(width, self.action_dim), nn.Tanh()]
        self.mlp = nn.Sequential(*layers)

    # ------------------------------------------------------------------ spec
    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return next(self.parameters()).device

    @property
    def spec(self) -> dict[str, Any]:
        """The observation spec: env id, view names, image shape (H, W), proprio size."""
        return dict(
            env_id=self.env_id,
            view_names=list(self.view_names),
            image_shape=list(self.image_shape),
            proprio_dim=self.proprio_dim,
        )

    def _spec_text(self) -> str:
        return _spec_text(self.env_id, self.view_names, list(self.image_shape))

    def check_spec(
        self,
        env_id: str | None = None,
        views: Sequence[str] | None = None,
        image_shape: Sequence[int] | None = None,
        where: str = "the agent",
    ) -> None:
        """Raise ``CheckpointError`` (a ``ValueError``) naming both specs unless the expectations match.

        Args:
            env_id: expected env id (None: any).
            views: expected view names, in order (None: any).
            image_shape: expected (H, W) (None: any; a trailing channel size is ignored).
            where: what the agent is, for the message (e.g. its checkpoint path).

        """
        requested = dict(
            env_id=env_id,
            views=None if views is None else [str(v) for v in views],
            image_shape=None if image_shape is None else [int(v) for v in image_shape][:2],
        )
        saved = dict(env_id=self.env_id, views=list(self.view_names), image_shape=list(self.image_shape))
        check_spec(
            where,
            saved,
            requested,
            "load an agent trained for them, or train one (`bwgym train agent --algo bc --env ...`)",
        )

    # ------------------------------------------------------------------ inference
    def forward(self, views: Mapping[str, Tensor]) -> Tensor:
        """Actions for a batch of views.

        Args:
            views: each of :attr:`view_names` -> float ``(B, 3, H, W)`` in [0, 1] (extra keys are
                ignored), plus ``proprio`` -> ``(B, proprio_dim)`` when the agent uses it.
                Differentiable with respect to the images.

        Returns:
            ``(B, action_dim)`` actions in [-1, 1].

        """
        feats = []
        for v in self.view_names:
            if v not in views:
                raise KeyError(f"view {v!r} missing: the agent needs {self.view_names}, got {sorted(views)}")
            x = views[v]
            if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != self.image_shape:
                raise ValueError(
                    f"view {v!r} must be (B, 3, {self.image_shape[0]}, {self.image_shape[1]}), "
                    f"got {tuple(x.shape)}"
                )
            feats.append(self.encoders[v](x))
        if self.proprio_dim:
            if PROPRIO_KEY not in views:
                raise KeyError(f"the agent uses {PROPRIO_KEY!r} (size {self.proprio_dim}); it is missing")
            feats.append(views[PROPRIO_KEY].reshape(-1, self.proprio_dim).to(feats[0].dtype))
        return self.mlp(torch.cat(feats, dim=-1))

    def preprocess(self, obs: Mapping[str, Any]) -> dict[str, Tensor]:
        """Env observations to :meth:`forward`'s input, on the agent's device.

        Args:
            obs: view -> ``uint8 (B, H, W, 3)`` or ``(H, W, 3)`` (a float array is taken as already
                in [0, 1]), and ``proprio`` -> ``(B, P)`` or ``(P,)`` when used.

        Returns:
            view -> float32 ``(B, 3, H, W)`` in [0, 1]; ``proprio`` -> float32 ``(B, P)``.

        """
        device = self.device
        out: dict[str, Tensor] = {}
        for v in self.view_names:
            if v not in obs:
                raise KeyError(f"view {v!r} missing: the agent needs {self.view_names}, got {sorted(obs)}")
            x = torch.as_tensor(_writable(obs[v]), device=device)
            if x.dim() == 3:
                x = x.unsqueeze(0)
            if x.dim() != 4 or x.shape[-1] != 3:
                raise ValueError(f"view {v!r} must be (B, H, W, 3) or (H, W, 3), got {tuple(x.shape)}")
            x = x.permute(0, 3, 1, 2)
            out[v] = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        if self.proprio_dim:
            if PROPRIO_KEY not in obs:
                raise KeyError(f"the agent uses {PROPRIO_KEY!r} (size {self.proprio_dim}); it is missing")
            out[PROPRIO_KEY] = (
                torch.as_tensor(_writable(obs[PROPRIO_KEY]), device=device)
                .float()
                .reshape(-1, self.proprio_dim)
            )
        return out

    def reset(self, seed: int | None = None) -> None:
        """Start an episode: the policy is deterministic and memoryless, so nothing to do."""

    @torch.no_grad()
    def act_batch(self, obs: Mapping[str, Any]) -> np.ndarray:
        """Actions ``float32 (B, action_dim)`` for a batch of observations (eval mode, no grad)."""
        was_training = self.training
        if was_training:  # a module-tree walk each way: skipped when already in eval mode
            self.eval()
        try:
            return self(self.preprocess(obs)).cpu().numpy().astype(np.float32)
        finally:
            if was_training:
                self.train()

    def act(self, obs: Mapping[str, Any]) -> np.ndarray:
        """Return the action ``float32 (action_dim,)`` for one env observation."""
        return self.act_batch(obs)[0]

    # ------------------------------------------------------------------ persistence
    def metadata(self) -> dict[str, Any]:
        """Return the checkpoint's JSON metadata: spec, architecture, training config, metrics."""
        return dict(
            env_id=self.env_id,
            views={v: {"shape": [*self.image_shape, 3], "dtype": "uint8"} for v in self.view_names},
            # JSON objects are written with sorted keys; the feature order lives in this list.
            view_names=list(self.view_names),
            image_shape=list(self.image_shape),
            proprio_dim=self.proprio_dim,
            action_dim=self.action_dim,
            arch=self.arch,
            config=self.train_config,
            metrics=self.extra_meta,
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the agent as a checkpoint of kind ``agent/bc`` (atomically) and return its path.

        The file is the project's checkpoint format (:mod:`bwgym.common.checkpoint`): the
        ``state_dict`` as ``.npy`` arrays plus :meth:`metadata` as JSON; loading it runs no code.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return save_checkpoint(path, CHECKPOINT_KIND, self.state_dict(), self.metadata())

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        env_id: str | None = None,
        views: Sequence[str] | None = None,
        image_shape: Sequence[int] | None = None,
        device: str | torch.device = "cpu",
    ) -> BCAgent:
        """Rebuild an agent from :meth:`save`'s file, in eval mode.

        Args:
            path: the checkpoint (kind ``agent/bc``).
            env_id: expected env id (None: any).
            views: expected view names, in order (None: any).
            image_shape: expected (H, W) (None: any; a trailing channel size is ignored).
            device: where to put the weights (``"auto"``: CUDA when available).

        Raises:
            FileNotFoundError: no file at ``path``.
            CheckpointError: (a ``ValueError``) the file is not a bwgym checkpoint, is one of
                another kind, is a BC file of the earlier torch format (the message says how to
                convert it), or its spec does not match the expectations (the message names both).

        """
        path = Path(path)
        try:
            ckpt = load_checkpoint(path, kind=CHECKPOINT_KIND)
        except CheckpointError as err:
            if _is_legacy_file(path):
                raise CheckpointError(
                    f"{path} is a BC agent in the earlier torch format; convert it once with "
                    f"`python -c \"from bwgym.agents.bc import convert_legacy; convert_legacy('{path}')\"` "
                    f"(writes {path.with_suffix('.ckpt').name}) or retrain it"
                ) from err
            raise
        meta = ckpt.metadata
        # Shapes first: a module is built only for metadata that the file's arrays confirm.
        check_bc_arrays(f"BC agent {path}", meta, ckpt.state)
        agent = cls._from_meta(path, meta, meta.get("config"), meta.get("metrics"))
        agent.check_spec(env_id, views, image_shape, where=f"BC agent {path}")
        return agent._with_weights(path, ckpt.tensors()).to(resolve_device(device)).eval()

    @classmethod
    def _from_meta(cls, path: Path, meta: Mapping[str, Any], config: Any, metrics: Any) -> BCAgent:
        """The agent that ``meta`` (spec and ``arch``) describes, with its config and metrics."""
        try:
            agent = cls(
                view_names=meta["view_names"],
                image_shape=meta["image_shape"],
                proprio_dim=meta["proprio_dim"],
                action_dim=meta["action_dim"],
                env_id=meta["env_id"],
                **meta["arch"],
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(
                f"{path}: BC checkpoint with invalid metadata ({type(err).__name__}: {err})"
            ) from err
        agent.train_config = dict(config or {})
        agent.extra_meta = dict(metrics or {})
        return agent

    def _with_weights(self, path: Path, state_dict: Mapping[str, Any]) -> BCAgent:
        try:
            self.load_state_dict(state_dict)
        except RuntimeError as err:
            raise CheckpointError(f"{path}: weights do not match the recorded architecture ({err})") from err
        return self

    @classmethod
    def load_shipped(
        cls,
        env_id: str | None = None,
        views: Sequence[str] | None = None,
        image_shape: Sequence[int] | None = None,
        device: str | torch.device = "cpu",
    ) -> BCAgent:
        """Load the shipped LocateLift agent of ``env_id`` (84x84 arm + side views).

        ``bc_locate_lift.ckpt`` serves ``bwgym/LocateLift-v0`` (and ``env_id=None``),
        ``bc_locate_lift_v1.ckpt`` serves ``bwgym/LocateLift-v1``
        (:func:`~bwgym.common.checkpoint.shipped_file`).
        """
        path = SHIPPED_CHECKPOINT.with_name(shipped_file(SHIPPED_CHECKPOINT.name, env_id))
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing from this install; retrain it with the command recorded in "
                f"{path.with_suffix('.json').name} (`bwgym train agent --algo bc --env "
                f"{env_id or 'bwgym/LocateLift-v0'} ... --out {path}`)"
            )
        return cls.load(path, env_id=env_id, views=views, image_shape=image_shape, device=device)

    def env_kwargs(self) -> dict[str, Any]:
        """LocateLift keyword arguments that produce the observations this agent expects."""
        return dict(
            cameras=tuple(self.view_names), image_size=tuple(self.image_shape), proprio=bool(self.proprio_dim)
        )


def _is_legacy_file(path: Path) -> bool:
    """Whether ``path`` looks like a ``torch.save`` file (a zip with a ``data.pkl``); nothing is unpickled."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any(name.endswith("/data.pkl") for name in zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def convert_legacy(
    path: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, overwrite: bool = False
) -> Path:
    """Rewrite a BC agent of the earlier torch format (``.pt``) as a project checkpoint, same weights.

    The old file is read with ``torch.load(weights_only=True)``, which rebuilds tensors and plain
    containers only (no pickled objects or code); its metadata keeps its meaning: ``train_config``
    becomes ``config`` and ``extra`` becomes ``metrics``.

    Args:
        path: the old ``torch.save`` file (format tag ``bwgym.bc/1``).
        out: the checkpoint to write (default: ``path`` with the suffix ``.ckpt``).
        overwrite: replace ``out`` when it exists.

    Returns:
        The path written.

    Raises:
        FileExistsError: ``out`` exists and ``overwrite`` is False.
        CheckpointError: ``path`` is not a BC file of the earlier format.

    """
    path = Path(path)
    out = path.with_suffix(".ckpt") if out is None else Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True to replace it")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises many types for a file it cannot read
        raise CheckpointError(
            f"{path} is not a BC file of the earlier torch format ({type(err).__name__}: {err})"
        ) from err
    if not isinstance(blob, dict) or blob.get("format") != LEGACY_FORMAT:
        got = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise CheckpointError(f"{path} has format {got!r}; convert_legacy reads {LEGACY_FORMAT!r}")
    meta = blob["meta"]
    agent = BCAgent._from_meta(path, meta, meta.get("train_config"), meta.get("extra"))
    return agent._with_weights(path, blob["state_dict"]).save(out)


# ---------------------------------------------------------------------- training
def random_shift(images: Tensor, pad: int, generator: torch.Generator | None = None) -> Tensor:
    """Shift each image by up to ``pad`` pixels: replicate-pad, then crop at a random offset (DrQ).

    Args:
        images: ``(B, C, H, W)`` float.
        pad: maximum shift in pixels (0: no-op).
        generator: torch generator of the offsets (on the CPU), for reproducibility.

    """
    if pad <= 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (2, b), generator=generator).to(images.device)
    rows = offsets[0, :, None] + torch.arange(h, device=images.device)[None]
    cols = offsets[1, :, None] + torch.arange(w, device=images.device)[None]
    batch = torch.arange(b, device=images.device)[:, None, None]
    # Advanced indices around a slice: the result is (B, H, W, C).
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


class _Data:
    """Steps held as edge-padded uint8 tensors (N, 3, H + 2p, W + 2p) per view.

    Padding once up front and cropping uint8 per sample is ~5x cheaper than padding and
    gathering float batches every step, and the crops are the same as :func:`random_shift`'s.
    """

    def __init__(
        self,
        obs: Mapping[str, np.ndarray],
        actions: np.ndarray,
        views: Sequence[str],
        proprio: bool,
        pad: int,
    ) -> None:
        self.pad = int(pad)
        width = ((0, 0), (self.pad, self.pad), (self.pad, self.pad), (0, 0))
        self.images = {
            v: torch.from_numpy(np.pad(np.asarray(obs[v]), width, mode="edge"))
            .permute(0, 3, 1, 2)
            .contiguous()
            for v in views
        }
        self.proprio = torch.from_numpy(np.asarray(obs[PROPRIO_KEY], np.float32)) if proprio else None
        self.actions = torch.from_numpy(np.asarray(actions, np.float32))

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    def extend(self, other: _Data) -> None:
        self.images = {v: torch.cat([x, other.images[v]]) for v, x in self.images.items()}
        if self.proprio is not None and other.proprio is not None:
            self.proprio = torch.cat([self.proprio, other.proprio])
        self.actions = torch.cat([self.actions, other.actions])

    def batch(
        self, idx: Tensor, device: torch.device, shift: bool, generator: torch.Generator | None
    ) -> tuple[dict[str, Tensor], Tensor]:
        """Float views in [0, 1] (randomly shifted by up to ``pad`` pixels when ``shift``) and targets."""
        p, inputs = self.pad, {}
        ids = idx.tolist()
        for v, x in self.images.items():
            h, w = x.shape[2] - 2 * p, x.shape[3] - 2 * p
            if shift and p:
                offsets = torch.randint(0, 2 * p + 1, (2, len(ids)), generator=generator).tolist()
                crop = torch.stack(
                    [x[i, :, dy : dy + h, dx : dx + w] for i, dy, dx in zip(ids, *offsets, strict=True)]
                )
            else:
                crop = x[idx, :, p : p + h, p : p + w]
            inputs[v] = crop.to(device).float().div_(255.0)
        if self.proprio is not None:
            inputs[PROPRIO_KEY] = self.proprio[idx].to(device)
        return inputs, self.actions[idx].to(device)


def _mse(agent: BCAgent, data: _Data, device: torch.device, batch_size: int) -> float:
    """Mean squared action error over ``data`` (no augmentation, eval mode)."""
    if len(data) == 0:
        return float("nan")
    agent.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(data)))
            inputs, target = data.batch(idx, device, False, None)
            total += float(F.mse_loss(agent(inputs), target, reduction="sum"))
    return total / (len(data) * data.actions.shape[1])


def _fit(
    agent: BCAgent,
    train: _Data,
    val: _Data,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    patience: int,
    device: torch.device,
    rng: np.random.Generator,
    generator: torch.Generator,
    writer: Any,
    step0: int,
    epoch0: int,
    progress: bool,
    desc: str,
    best: float = math.inf,
) -> tuple[int, int, float]:
    """Train with Adam and early stopping; leaves the best-validation weights in ``agent``.

    ``best`` is the validation MSE of the weights ``agent`` starts with when they must be beaten
    (fine-tuning), else infinity.

    Returns:
        (global step, global epoch, best validation MSE) after training.

    """
    from tqdm import tqdm

    optimizer = torch.optim.Adam(agent.parameters(), lr=lr, weight_decay=weight_decay)
    best_state, since_best = copy.deepcopy(agent.state_dict()), 0
    step, epoch = step0, epoch0
    bar = tqdm(range(epochs), desc=desc, unit="epoch", disable=not progress)
    for _ in bar:
        agent.train()
        order = torch.from_numpy(rng.permutation(len(train)))
        losses = []
        for start in range(0, len(train), batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < 2:  # a single-sample batch breaks nothing but is pure noise
                continue
            inputs, target = train.batch(idx, device, True, generator)
            loss = F.mse_loss(agent(inputs), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
            if writer is not None and step % 20 == 0:
                writer.add_scalar("train/batch_loss", losses[-1], step)
        epoch += 1
        train_loss = float(np.mean(losses)) if losses else float("nan")
        val_loss = _mse(agent, val, device, 256) if len(val) else train_loss
        if writer is not None:
            writer.add_scalar("train/loss", train_loss, epoch)
            writer.add_scalar("val/loss", val_loss, epoch)
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}", best=f"{min(best, val_loss):.4f}")
        if val_loss < best:
            best, best_state, since_best = val_loss, copy.deepcopy(agent.state_dict()), 0
        else:
            since_best += 1
            if since_best >= patience:
                break
    bar.close()
    agent.load_state_dict(best_state)
    return step, epoch, best


def _fit_options(
    seed: int, device: torch.device, writer: Any, progress: bool, **optimiser: Any
) -> dict[str, Any]:
    """The keyword arguments of :func:`_fit` shared by every round: seeded generators, device, log."""
    return dict(
        optimiser,
        device=device,
        rng=np.random.default_rng(seed),
        generator=torch.Generator().manual_seed(seed),
        writer=writer,
        progress=progress,
    )


def _dagger_rollouts(
    agent: BCAgent,
    envs: Sequence[Any],
    episodes: int,
    seed: int,
    pad: int,
    progress: bool,
    desc: str = "DAgger rollouts",
) -> tuple[_Data, float]:
    """Run the agent, label every visited state with the (noise-free) expert; return data and success.

    Episode ``i`` (seed ``seed + i``) runs in ``envs[i % len(envs)]``.
    """
    from tqdm import tqdm

    from bwgym.agents.demos import ExpertLabeller
    from bwgym.agents.expert import LiftExpert

    keys = agent.view_names + ([PROPRIO_KEY] if agent.proprio_dim else [])
    labellers = [ExpertLabeller(LiftExpert(env, noise_std=0.0), keys, policy=agent) for env in envs]
    successes = 0
    for i in tqdm(range(episodes), desc=desc, unit="ep", disable=not progress):
        k = i % len(envs)
        successes += int(rollout(envs[k], labellers[k], seed + i).success)
    obs_arrays = {k: np.stack([f for lab in labellers for f in lab.frames[k]]) for k in keys}
    labels = np.stack([a for lab in labellers for a in lab.labels])
    return _Data(obs_arrays, labels, agent.view_names, bool(agent.proprio_dim), pad), successes / episodes


def train_bc(
    dataset: DemoDataset | str | os.PathLike[str],
    out_path: str | os.PathLike[str] | None = None,
    epochs: int = 25,
    batch_size: int = 64,
    lr: float = 1e-3,
    val_fraction: float = 0.1,
    seed: int = 0,
    device: str | torch.device = "auto",
    log_dir: str | os.PathLike[str] | None = None,
    augment_shift_px: int = 4,
    dagger_rounds: int = 0,
    dagger_episodes: int = 50,
    dagger_epochs: int | None = None,
    patience: int = 8,
    weight_decay: float = 0.0,
    use_proprio: bool = False,
    channels: Sequence[int] = (32, 64, 64),
    features: int = 128,
    hidden: Sequence[int] = (256,),
    stem: int = 4,
    num_threads: int | None = None,
    progress: bool = True,
) -> BCAgent:
    """Behaviour cloning of the expert's (noise-free) actions from a demonstration dataset.

    Episodes are split into train and validation sets (:meth:`DemoDataset.split`); the loss is
    the action MSE; each training image is shifted by up to ``augment_shift_px`` pixels (replicate
    padding + random crop, per sample and view); training stops when the validation MSE has not
    improved for ``patience`` epochs and keeps the best weights.

    With ``dagger_rounds > 0`` (DAgger, Ross et al. 2011): the current policy runs
    ``dagger_episodes`` episodes in the env (seeds from ``DAGGER_SEED_BASE``), the scripted expert
    labels every state it visits, those steps join the training set, and training continues from
    the current weights for ``dagger_epochs`` epochs. It is still imitation of the same expert;
    it fixes the states plain BC never sees because its own small errors take it there.

    Deterministic for a given ``seed``, device and thread count (torch and numpy generators are
    seeded; batch order and shifts come from them).

    Args:
        dataset: a :class:`DemoDataset` or its folder.
        out_path: where to save the agent (None: not saved).
        epochs: maximum epochs of the first fit.
        batch_size: steps per gradient step.
        lr: Adam learning rate.
        val_fraction: share of episodes held out for early stopping.
        seed: seed of initialisation, split, batch order and augmentation.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
        log_dir: TensorBoard folder (``train/loss``, ``val/loss`` per epoch, ``dagger/success_rate``).
        augment_shift_px: maximum random shift in pixels (0: no augmentation).
        dagger_rounds: DAgger rounds after the first fit.
        dagger_episodes: policy episodes per DAgger round.
        dagger_epochs: maximum epochs per DAgger round (default: ``epochs``).
        patience: epochs without validation improvement before stopping.
        weight_decay: Adam weight decay.
        use_proprio: feed the ``proprio`` vector too (the dataset must have it).
        channels: convolution channels per view encoder (see :class:`BCAgent`).
        features: features per view.
        hidden: MLP hidden sizes.
        stem: kernel size and stride of the first convolution.
        num_threads: ``torch.set_num_threads`` for the run (None: leave as is).
        progress: tqdm progress bars.

    Returns:
        The trained agent (best validation weights), in eval mode, with ``train_config`` filled.

    """
    import gymnasium as gym

    from bwgym.agents.demos import DemoDataset

    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    if not isinstance(dataset, DemoDataset):
        dataset = DemoDataset(dataset)
    if use_proprio and PROPRIO_KEY not in dataset.extra_names:
        raise ValueError(
            f"use_proprio=True but {dataset.path} has no {PROPRIO_KEY!r} (collect with "
            "env_kwargs={'proprio': True})"
        )
    dev = resolve_device(device)
    torch.manual_seed(seed)  # the agent's initial weights

    train_ids, val_ids = dataset.split(val_fraction, seed)
    obs, actions, _ = dataset.arrays(train_ids, progress=progress)
    train = _Data(obs, actions, dataset.view_names, use_proprio, augment_shift_px)
    obs, actions, _ = dataset.arrays(val_ids, progress=progress)
    val = _Data(obs, actions, dataset.view_names, use_proprio, 0)
    del obs, actions

    proprio_dim = int(train.proprio.shape[1]) if train.proprio is not None else 0
    agent = BCAgent(
        dataset.view_names,
        dataset.image_shape[:2],
        proprio_dim,
        train.actions.shape[1],
        dataset.env_id,
        channels,
        features,
        hidden,
        stem,
    ).to(dev)
    config: dict[str, Any] = dict(
        dataset=str(dataset.path),
        dataset_episodes=dataset.n_episodes,
        dataset_steps=dataset.n_steps,
        demo_noise_std=dataset.meta.get("noise_std"),
        train_episodes=len(train_ids),
        val_episodes=len(val_ids),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        val_fraction=val_fraction,
        seed=seed,
        augment_shift_px=augment_shift_px,
        dagger_rounds=dagger_rounds,
        dagger_episodes=dagger_episodes,
        dagger_epochs=dagger_epochs,
        patience=patience,
        weight_decay=weight_decay,
        use_proprio=use_proprio,
        device=str(dev),
        torch_threads=torch.get_num_threads(),
    )
    writer = None
    if log_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(log_dir))
        writer.add_text("config", "\n".join(f"| {k} | {v} |" for k, v in config.items()))
    start = time.perf_counter()
    fit = _fit_options(
        seed,
        dev,
        writer,
        progress,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        patience=patience,
    )
    step, epoch, best = _fit(agent, train, val, epochs=epochs, step0=0, epoch0=0, desc="BC", **fit)
    history = [dict(round=0, epochs=epoch, val_mse=best, train_steps=len(train))]
    env = gym.make(dataset.env_id, **{**dataset.env_kwargs, **agent.env_kwargs()}) if dagger_rounds else None
    try:
        for r in range(1, dagger_rounds + 1):
            new, success = _dagger_rollouts(
                agent, [env], dagger_episodes, DAGGER_SEED_BASE + 10_000 * r, augment_shift_px, progress
            )
            train.extend(new)
            if writer is not None:
                writer.add_scalar("dagger/success_rate", success, r)
                writer.add_scalar("dagger/train_steps", len(train), r)
            step, epoch, best = _fit(
                agent,
                train,
                val,
                epochs=dagger_epochs or epochs,
                step0=step,
                epoch0=epoch,
                desc=f"DAgger {r}/{dagger_rounds}",
                **fit,
            )
            history.append(
                dict(round=r, epochs=epoch, val_mse=best, train_steps=len(train), rollout_success=success)
            )
    finally:
        if env is not None:
            env.close()
    config.update(history=history, seconds=round(time.perf_counter() - start, 1))
    if writer is not None:
        writer.close()
    agent.train_config = config
    agent.eval()
    if out_path is not None:
        agent.save(out_path)
    return agent


def finetune_bc(
    agent: BCAgent,
    env_factory: Callable[[], Any] | Sequence[Callable[[], Any]],
    out_path: str | os.PathLike[str] | None = None,
    rounds: int = 4,
    episodes: int = 40,
    val_episodes: int = 20,
    epochs: int = 8,
    batch_size: int = 64,
    lr: float = 3e-4,
    weight_decay: float = 0.0,
    patience: int = 3,
    augment_shift_px: int = 4,
    seed: int = 0,
    log_dir: str | os.PathLike[str] | None = None,
    describe: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> BCAgent:
    """DAgger on the views a codec and a link deliver: imitation where the prior was never trained.

    A BC agent trained on clean frames meets decoded views at low budgets (blur, coarse
    components, dropped frames held). Here the agent drives ``env_factory()`` (e.g. a scenario's
    ``BandwidthLimited`` env; with several factories, episode ``i`` runs in env ``i mod n``, so
    one agent learns several budgets, clean views included), the scripted expert labels every
    state it visits from the simulator's true pose, and the agent trains on everything collected
    so far, from its current weights, for ``rounds`` rounds (early stopping on ``val_episodes``
    episodes of the starting agent, other seeds). Round ``r`` plays seeds
    ``FINETUNE_SEED_BASE + 10_000 * r + i``.

    Each round's rollouts also score the policy that played them (its success rate; the last
    policy plays one more set of ``episodes`` that is not trained on), and the agent returned is
    the policy with the highest score, the starting one included: the action error the fit lowers
    is not the task success, and with views this coarse the two can part. Scores are logged as
    ``dagger/success_rate``; the returned agent's ``train_config["finetune"]["history"]`` has them
    per policy. Select on these seeds, report on others.

    It is still imitation of the expert, not reinforcement learning: it needs the privileged
    expert at training time, never at run time.

    Args:
        agent: the starting agent (trained by :func:`train_bc`); trained in place.
        env_factory: builds the env the agent will run in (its observation spec must match), or
            a sequence of them (a mixture: episodes take turns).
        out_path: where to save the agent (None: not saved).
        rounds: DAgger rounds.
        episodes: policy episodes per round.
        val_episodes: episodes of the starting policy held out for early stopping.
        epochs: maximum epochs per round.
        batch_size: steps per gradient step.
        lr: Adam learning rate (lower than from scratch: the prior is a good start).
        weight_decay: Adam weight decay.
        patience: epochs without validation improvement before a round stops.
        augment_shift_px: maximum random shift in pixels.
        seed: seed of batch order and augmentation.
        log_dir: TensorBoard folder.
        describe: extra entries for ``train_config`` (e.g. the scenario).
        progress: tqdm progress bars.

    Returns:
        The selected agent, in eval mode.

    Raises:
        ValueError: a count below 1, or (``CheckpointError``) an agent whose spec (env id, views,
            image size) is not the env's: the message names both.

    """
    if rounds < 1 or episodes < 1 or val_episodes < 1:
        raise ValueError(
            f"rounds, episodes and val_episodes must be >= 1, got {rounds}, {episodes}, {val_episodes}"
        )
    writer = None
    if log_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(log_dir))
    fit = _fit_options(
        seed,
        agent.device,
        writer,
        progress,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        patience=patience,
    )
    start = time.perf_counter()
    factories = [env_factory] if callable(env_factory) else list(env_factory)
    if not factories:
        raise ValueError("env_factory: expected a callable or a non-empty sequence of them")
    envs: list[Any] = []
    history: list[dict[str, Any]] = []

    def score(policy: int, success: float, n: int) -> None:
        """Record a rollout success rate for the policy of round ``policy`` (0: the start)."""
        entry = history[policy]
        played = entry.get("rollout_episodes", 0)
        entry["rollout_success"] = (entry.get("rollout_success", 0.0) * played + success * n) / (played + n)
        entry["rollout_episodes"] = played + n
        if writer is not None:
            writer.add_scalar("dagger/success_rate", entry["rollout_success"], policy)

    try:
        for factory in factories:
            envs.append(factory())
            views = link_views(envs[-1])
            agent.check_spec(
                getattr(envs[-1].spec, "id", None),
                [v.name for v in views],
                views[0].shape,
                where="the agent to fine-tune",
            )
        val, val_success = _dagger_rollouts(
            agent, envs, val_episodes, FINETUNE_SEED_BASE, 0, progress, desc="validation rollouts"
        )
        best = _mse(agent, val, agent.device, 256)
        history.append(dict(round=0, val_mse=best, train_steps=0))
        score(0, val_success, val_episodes)
        states = [copy.deepcopy(agent.state_dict())]
        train = None
        step = epoch = 0
        for r in range(1, rounds + 2):
            new, success = _dagger_rollouts(
                agent,
                envs,
                episodes,
                FINETUNE_SEED_BASE + 10_000 * r,
                augment_shift_px,
                progress,
                desc=f"DAgger {r}/{rounds} rollouts" if r <= rounds else "last policy's rollouts",
            )
            score(r - 1, success, episodes)
            if r > rounds:
                break
            if train is None:
                train = new
            else:
                train.extend(new)
            step, epoch, best = _fit(
                agent,
                train,
                val,
                epochs=epochs,
                step0=step,
                epoch0=epoch,
                desc=f"DAgger {r}/{rounds}",
                best=best,
                **fit,
            )
            history.append(dict(round=r, epochs=epoch, val_mse=best, train_steps=len(train)))
            states.append(copy.deepcopy(agent.state_dict()))
    finally:
        for env in envs:
            env.close()
        if writer is not None:
            writer.close()
    chosen = max(range(len(history)), key=lambda i: (history[i]["rollout_success"], i))
    agent.load_state_dict(states[chosen])
    agent.train_config = dict(
        agent.train_config,
        finetune=dict(
            dict(describe or {}),
            rounds=rounds,
            episodes=episodes,
            val_episodes=val_episodes,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            patience=patience,
            augment_shift_px=augment_shift_px,
            seed=seed,
            history=history,
            selected_round=chosen,
            seconds=round(time.perf_counter() - start, 1),
        ),
    )
    agent.eval()
    if out_path is not None:
        agent.save(out_path)
    return agent


# ---------------------------------------------------------------------- evaluation
def evaluate_agent(
    agent: Any,
    env_id: str = "bwgym/LocateLift-v0",
    episodes: int = 100,
    seed: int = 10_000,
    env_kwargs: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run ``agent.act`` for ``episodes`` episodes with env seeds ``seed, seed + 1, ...``.

    Serial :func:`~bwgym.agents.base.rollout` episodes on clean views (the full protocol with
    codecs, traces and workers is ``bwgym evaluate``); ``agent.reset(seed)`` starts each episode.
    The default seeds (10 000 onwards) are disjoint from the demonstration seeds (0 onwards) and
    the DAgger rollouts' (1 000 000 onwards).

    Args:
        agent: a :class:`BCAgent` (or any :class:`~bwgym.agents.base.Agent`, or anything with
            ``act(obs) -> action``).
        env_id: the env to run.
        episodes: number of episodes.
        seed: env seed of the first episode.
        env_kwargs: ``gymnasium.make`` keyword arguments; by default those matching a
            :class:`BCAgent`'s views, image size and proprio flag.
        progress: tqdm progress bar.

    Returns:
        One row per episode: ``episode, seed, success, steps, return``.

    """
    import gymnasium as gym
    import pandas as pd
    from tqdm import tqdm

    if isinstance(agent, BCAgent):
        agent.check_spec(env_id=env_id)
        kwargs = {**agent.env_kwargs(), **(env_kwargs or {})}
    else:
        kwargs = dict(env_kwargs or {})
    env = gym.make(env_id, **kwargs)
    rows = []
    try:
        if isinstance(agent, BCAgent):
            space = env.observation_space
            views = [k for k, s in space.spaces.items() if len(s.shape) == 3]
            shape = space.spaces[views[0]].shape[:2]
            if not set(agent.view_names) <= set(views) or tuple(shape) != agent.image_shape:
                raise ValueError(
                    f"the agent was trained for {agent._spec_text()}, "
                    f"the env gives {_spec_text(env_id, views, list(shape))}"
                )
        for i in tqdm(range(episodes), desc="evaluating", unit="ep", disable=not progress):
            result = rollout(env, agent, seed + i)
            rows.append(
                {
                    "episode": i,
                    "seed": seed + i,
                    "success": result.success,
                    "steps": result.steps,
                    "return": result.ret,
                }
            )
    finally:
        env.close()
    return pd.DataFrame(rows, columns=["episode", "seed", "success", "steps", "return"])
