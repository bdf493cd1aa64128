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

:func:`~bwgym.agents.bc_training.train_bc` trains one from a
:class:`~bwgym.agents.demos.DemoDataset` (random-shift augmentation, early stopping, optional DAgger
rounds), :func:`~bwgym.agents.dagger.finetune_bc` fine-tunes it by DAgger on a scenario's decoded
views, :func:`~bwgym.agents.evaluation.evaluate_agent` measures its success rate. The command
``bwgym train agent --algo bc`` does all of it (see :mod:`bwgym.cli.agents`).

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

import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from bwgym.agents.demos import spec_text
from bwgym.common.arch import conv_stack_shapes
from bwgym.common.checkpoint import (
    CheckpointError,
    check_spec,
    first_shape_mismatch,
    is_size_list,
    load_checkpoint,
    save_checkpoint,
    shipped_file,
    sidecar_path,
)
from bwgym.common.device import resolve_device
from bwgym.common.registry import BuildContext, InputError, register_agent

__all__ = [
    "CHECKPOINT_KIND",
    "MAX_BC_IMAGE_SIDE_PIXELS",
    "SHIPPED_CHECKPOINT",
    "BCAgent",
    "check_bc_arrays",
    "convert_legacy",
    "encoder_state_shapes",
    "resolve_device",
]

#: Kind of a BC checkpoint in the project's format (:mod:`bwgym.common.checkpoint`).
CHECKPOINT_KIND = "agent/bc"
#: Format tag of the earlier torch files (``torch.save`` dicts), which :func:`convert_legacy` reads.
LEGACY_FORMAT = "bwgym.bc/1"
#: The shipped LocateLift agent (see ``bc_locate_lift.json`` next to it for how it was made).
SHIPPED_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "bc_locate_lift.ckpt"
PROPRIO_KEY = "proprio"


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
        shapes.update(conv_stack_shapes(f"{base}convs.", channels, stem))
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


@register_agent(
    "bc",
    description="behaviour cloning / DAgger CNN on the decoded views (checkpoint; none: the shipped one)",
    uses=("checkpoint",),
)
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
        #: How the weights were trained (filled by :func:`~bwgym.agents.bc_training.train_bc`, saved with the weights).
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
        return spec_text(self.env_id, self.view_names, list(self.image_shape))

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
    def from_context(cls, context: BuildContext, options: None) -> BCAgent:
        """The scenario's agent: its checkpoint (or its env's shipped one), checked against the env's views."""
        from bwgym.envs.views import link_view_names

        views = list(link_view_names(context.env))
        kwargs = dict(
            env_id=context.env_id,
            views=views,
            image_shape=context.env.observation_space[views[0]].shape,
            device=context.device,
        )
        try:
            if context.checkpoint:
                return cls.load(context.checkpoint, **kwargs)
            return cls.load_shipped(**kwargs)
        except (FileNotFoundError, ValueError, KeyError) as exc:
            raise InputError("checkpoint", str(exc).strip("'\"")) from None

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
                f"{sidecar_path(path).name} (`bwgym train --all --only {path.stem}`)"
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
