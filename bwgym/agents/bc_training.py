"""Behaviour cloning from expert demonstrations, and the pieces DAgger shares with it.

:func:`train_bc` trains a :class:`~bwgym.agents.bc.BCAgent` from a
:class:`~bwgym.agents.demos.DemoDataset` with random-shift augmentation (pad and random crop, as in
DrQ: the NDPCA paper's "robust task model"), early stopping on held-out episodes, TensorBoard logs
and optional DAgger rounds; :class:`BCTraining` holds its hyper-parameters. The command
``bwgym train agent --algo bc`` runs it (see :mod:`bwgym.cli.agents`).

The pieces below it serve :func:`~bwgym.agents.dagger.finetune_bc` too: :class:`StepData` (steps as
padded uint8 tensors), :func:`fit_bc` (Adam with early stopping) and :func:`dagger_rollouts` (the
agent plays, the scripted expert labels every state it visits).
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from bwgym.agents.base import rollout
from bwgym.agents.bc import PROPRIO_KEY, BCAgent, resolve_device

if TYPE_CHECKING:
    from bwgym.agents.dagger import DAggerTuning
    from bwgym.agents.demos import DemoDataset

__all__ = [
    "DAGGER_SEED_BASE",
    "BCTraining",
    "StepData",
    "action_mse",
    "dagger_rollouts",
    "finished",
    "fit_bc",
    "fit_options",
    "random_shift",
    "tensorboard_writer",
    "train_bc",
]

#: Seeds of DAgger rollouts start here, far from demonstration and evaluation seeds.
DAGGER_SEED_BASE = 1_000_000


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


class StepData:
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

    def extend(self, other: StepData) -> None:
        """Append ``other``'s steps (DAgger: the states the policy visited, labelled by the expert)."""
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


def action_mse(agent: BCAgent, data: StepData, device: torch.device, batch_size: int) -> float:
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


def fit_bc(
    agent: BCAgent,
    train: StepData,
    val: StepData,
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
        val_loss = action_mse(agent, val, device, 256) if len(val) else train_loss
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


def fit_options(
    hyper: BCTraining | DAggerTuning, device: torch.device, writer: Any, progress: bool
) -> dict[str, Any]:
    """The keyword arguments of :func:`fit_bc` shared by every round: optimiser, seeded generators, log."""
    return dict(
        batch_size=hyper.batch_size,
        lr=hyper.lr,
        weight_decay=hyper.weight_decay,
        patience=hyper.patience,
        device=device,
        rng=np.random.default_rng(hyper.seed),
        generator=torch.Generator().manual_seed(hyper.seed),
        writer=writer,
        progress=progress,
    )


def dagger_rollouts(
    agent: BCAgent,
    envs: Sequence[Any],
    episodes: int,
    seed: int,
    pad: int,
    progress: bool,
    desc: str = "DAgger rollouts",
) -> tuple[StepData, float]:
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
    return StepData(obs_arrays, labels, agent.view_names, bool(agent.proprio_dim), pad), successes / episodes


def tensorboard_writer(
    log_dir: str | os.PathLike[str] | None, config: Mapping[str, Any] | None = None
) -> Any:
    """A TensorBoard ``SummaryWriter`` on ``log_dir`` (None: no logs), ``config`` as a text table."""
    if log_dir is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(log_dir))
    if config is not None:
        writer.add_text("config", "\n".join(f"| {k} | {v} |" for k, v in config.items()))
    return writer


def finished(
    agent: BCAgent, train_config: dict[str, Any], out_path: str | os.PathLike[str] | None
) -> BCAgent:
    """``agent`` with ``train_config`` recorded, in eval mode, saved to ``out_path`` unless None."""
    agent.train_config = train_config
    agent.eval()
    if out_path is not None:
        agent.save(out_path)
    return agent


@dataclass(frozen=True)
class BCTraining:
    """The hyper-parameters of :func:`train_bc` (the agent's ``train_config`` records them).

    Attributes:
        epochs: maximum epochs of the first fit.
        batch_size: steps per gradient step.
        lr: Adam learning rate.
        val_fraction: share of episodes held out for early stopping.
        seed: seed of initialisation, split, batch order and augmentation.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
        augment_shift_px: maximum random shift in pixels (0: no augmentation).
        dagger_rounds: DAgger rounds after the first fit.
        dagger_episodes: policy episodes per DAgger round.
        dagger_epochs: maximum epochs per DAgger round (None: ``epochs``).
        patience: epochs without validation improvement before stopping.
        weight_decay: Adam weight decay.
        use_proprio: feed the ``proprio`` vector too (the dataset must have it).
        channels: convolution channels per view encoder (see :class:`~bwgym.agents.bc.BCAgent`).
        features: features per view.
        hidden: MLP hidden sizes.
        stem: kernel size and stride of the first convolution.

    """

    epochs: int = 25
    batch_size: int = 64
    lr: float = 1e-3
    val_fraction: float = 0.1
    seed: int = 0
    device: str | torch.device = "auto"
    augment_shift_px: int = 4
    dagger_rounds: int = 0
    dagger_episodes: int = 50
    dagger_epochs: int | None = None
    patience: int = 8
    weight_decay: float = 0.0
    use_proprio: bool = False
    channels: Sequence[int] = (32, 64, 64)
    features: int = 128
    hidden: Sequence[int] = (256,)
    stem: int = 4


#: The :class:`BCTraining` fields a run's ``train_config`` records (the network's sizes are in ``arch``).
_RECORDED = (
    "epochs",
    "batch_size",
    "lr",
    "val_fraction",
    "seed",
    "augment_shift_px",
    "dagger_rounds",
    "dagger_episodes",
    "dagger_epochs",
    "patience",
    "weight_decay",
    "use_proprio",
)


def train_bc(
    dataset: DemoDataset | str | os.PathLike[str],
    out_path: str | os.PathLike[str] | None = None,
    training: BCTraining | None = None,
    *,
    log_dir: str | os.PathLike[str] | None = None,
    num_threads: int | None = None,
    progress: bool = True,
    **options: Any,
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
        training: the hyper-parameters (None: :class:`BCTraining`'s defaults).
        log_dir: TensorBoard folder (``train/loss``, ``val/loss`` per epoch, ``dagger/success_rate``).
        num_threads: ``torch.set_num_threads`` for the run (None: leave as is).
        progress: tqdm progress bars.
        **options: :class:`BCTraining` fields that replace those of ``training`` (``epochs=5``...).

    Returns:
        The trained agent (best validation weights), in eval mode, with ``train_config`` filled.

    Raises:
        TypeError: an option that is not a :class:`BCTraining` field.
        ValueError: ``use_proprio`` with a dataset that has no ``proprio``.

    """
    from bwgym.agents.demos import DemoDataset

    hyper = replace(training or BCTraining(), **options)
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    if not isinstance(dataset, DemoDataset):
        dataset = DemoDataset(dataset)
    if hyper.use_proprio and PROPRIO_KEY not in dataset.extra_names:
        raise ValueError(
            f"use_proprio=True but {dataset.path} has no {PROPRIO_KEY!r} (collect with "
            "env_kwargs={'proprio': True})"
        )
    device = resolve_device(hyper.device)
    torch.manual_seed(hyper.seed)  # the agent's initial weights
    train, val, config = _episode_split(dataset, hyper, progress)
    agent = _new_agent(dataset, train, hyper).to(device)
    config.update(
        {k: getattr(hyper, k) for k in _RECORDED}, device=str(device), torch_threads=torch.get_num_threads()
    )
    writer = tensorboard_writer(log_dir, config)
    start = time.perf_counter()
    fit = fit_options(hyper, device, writer, progress)
    step, epoch, best = fit_bc(agent, train, val, epochs=hyper.epochs, step0=0, epoch0=0, desc="BC", **fit)
    history = [dict(round=0, epochs=epoch, val_mse=best, train_steps=len(train))]
    history += _dagger_rounds(agent, dataset, train, val, hyper, fit, (step, epoch), progress)
    config.update(history=history, seconds=round(time.perf_counter() - start, 1))
    if writer is not None:
        writer.close()
    return finished(agent, config, out_path)


def _episode_split(
    dataset: DemoDataset, hyper: BCTraining, progress: bool
) -> tuple[StepData, StepData, dict[str, Any]]:
    """Training steps (padded for the shifts) and validation steps, split by episodes; what was split."""
    train_ids, val_ids = dataset.split(hyper.val_fraction, hyper.seed)
    obs, actions, _ = dataset.arrays(train_ids, progress=progress)
    train = StepData(obs, actions, dataset.view_names, hyper.use_proprio, hyper.augment_shift_px)
    obs, actions, _ = dataset.arrays(val_ids, progress=progress)
    val = StepData(obs, actions, dataset.view_names, hyper.use_proprio, 0)
    data = dict(
        dataset=str(dataset.path),
        dataset_episodes=dataset.n_episodes,
        dataset_steps=dataset.n_steps,
        demo_noise_std=dataset.meta.get("noise_std"),
        train_episodes=len(train_ids),
        val_episodes=len(val_ids),
    )
    return train, val, data


def _new_agent(dataset: DemoDataset, train: StepData, hyper: BCTraining) -> BCAgent:
    """An untrained agent for the dataset's views, image size, proprio and action sizes."""
    proprio_dim = int(train.proprio.shape[1]) if train.proprio is not None else 0
    return BCAgent(
        dataset.view_names,
        dataset.image_shape[:2],
        proprio_dim,
        train.actions.shape[1],
        dataset.env_id,
        hyper.channels,
        hyper.features,
        hyper.hidden,
        hyper.stem,
    )


def _dagger_rounds(
    agent: BCAgent,
    dataset: DemoDataset,
    train: StepData,
    val: StepData,
    hyper: BCTraining,
    fit: Mapping[str, Any],
    counters: tuple[int, int],
    progress: bool,
) -> list[dict[str, Any]]:
    """DAgger after the first fit: the agent plays, the expert labels, the fit goes on; one entry a round.

    ``counters`` are the first fit's global step and epoch, which the rounds continue.
    """
    if not hyper.dagger_rounds:
        return []
    import gymnasium as gym

    writer, (step, epoch), history = fit["writer"], counters, []
    env = gym.make(dataset.env_id, **{**dataset.env_kwargs, **agent.env_kwargs()})
    try:
        for r in range(1, hyper.dagger_rounds + 1):
            seed = DAGGER_SEED_BASE + 10_000 * r
            new, success = dagger_rollouts(
                agent, [env], hyper.dagger_episodes, seed, hyper.augment_shift_px, progress
            )
            train.extend(new)
            if writer is not None:
                writer.add_scalar("dagger/success_rate", success, r)
                writer.add_scalar("dagger/train_steps", len(train), r)
            step, epoch, best = fit_bc(
                agent,
                train,
                val,
                epochs=hyper.dagger_epochs or hyper.epochs,
                step0=step,
                epoch0=epoch,
                desc=f"DAgger {r}/{hyper.dagger_rounds}",
                **fit,
            )
            history.append(
                dict(round=r, epochs=epoch, val_mse=best, train_steps=len(train), rollout_success=success)
            )
    finally:
        env.close()
    return history
