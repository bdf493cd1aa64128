"""Allocation that sees the content: a scorer ranks candidate splits by what each would do to this frame.

The spec-1 allocators (:mod:`bwgym.agents.allocation`) see statistics of the views (energies,
ages, budgets) and learn a phase rule; the oracle's lead over them is per-frame content those
statistics cannot see (BENCHMARKS "allocation"). Here the sender encodes the frame at every
candidate split (:class:`~bwgym.envs.candidate_features.CandidateObserver`, observation spec 2:
what each view would lose, what the receiver holds) and a scorer learned from the oracle ranks
the candidates:

* :func:`collect_content_data` - the oracle's per-split action errors beside the spec-2
  observation, on the training traces (:func:`~bwgym.agents.allocation.collect_oracle_scores`
  with its exploration), plus the task phase of each step for analysis;
* :func:`fit_content_scorer` - a small network on each candidate's features, the context and
  the latent codes (the receiver's code after the candidate minus the sender's), trained with a
  pairwise ranking loss: for every pair of candidates of a step, a logistic loss on their score
  difference, weighted by how much their action errors differ (the pairs that matter count);
* :func:`content_report` - the scorer's cross-validated action error (folds by episode) against
  every fixed split, the oracle and the spec-1 ridge scorer, and :func:`phase_breakdown`: where
  the remaining gap to the oracle lives (locating, approach, grasp, lift);
* :class:`ContentAllocator` (allocator ``"content"``) - the scorer behind the allocator interface;
  :func:`load_content_allocator` reads it from ``policy.ckpt`` (``bwgym train allocator --content``).

The scores it learns from are privileged (they need the true views and the task agent); the
allocator never sees them, only the spec-2 observation a sender computes.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bwgym.agents.allocation import (
    ALLOCATION_ENV_ID,
    AllocatorTrainConfig,
    DistillConfig,
    _make_env,
    collect_oracle_scores,
    fit_split_scorer,
    shipped_allocator,
)
from bwgym.agents.rl import POLICY_FILE
from bwgym.common.checkpoint import CheckpointError, check_spec, load_checkpoint, save_checkpoint
from bwgym.common.registry import BuildContext, InputError, register_allocator
from bwgym.envs.allocation import DEFAULT_TASK_ENV
from bwgym.envs.candidate_features import CandidateObserver

__all__ = [
    "CONTENT_KIND",
    "PHASES",
    "ContentAllocator",
    "ContentScorer",
    "ScorerConfig",
    "collect_content_data",
    "content_report",
    "fit_content_scorer",
    "load_content_allocator",
    "load_content_scorer",
    "phase_breakdown",
    "save_content_scorer",
    "task_phase",
    "train_content_allocator",
]

#: The checkpoint kind of a content scorer.
CONTENT_KIND = "allocator/content"
#: How to make one (error messages).
RETRAIN = "bwgym train allocator --content --scenario ... --distill-episodes N --out FOLDER"
#: The LocateLift phases of :func:`task_phase`, in task order.
PHASES = ("locating", "approach", "grasp", "lift")
#: The spec-1 keys, the context every candidate shares.
CONTEXT_KEYS = ("budget", "step", "views")


def task_phase(env: Any) -> dict[str, float]:
    """The LocateLift phase of ``env``'s true state, as an index of :data:`PHASES` (analysis only).

    ``lift``: both fingers hold the brick; ``grasp``: the gripper is over the brick (2 cm) and within
    2 cm of its grasp height; ``approach``: within 6 cm horizontally (about the patch of table the
    35-degree wrist camera sees from the start height); else ``locating``.
    """
    sim = env.unwrapped
    gripper, brick = sim.gripper_pos, sim.brick_pos
    xy_m = float(np.linalg.norm(gripper[:2] - brick[:2]))
    if sim.brick_grasped():
        phase = "lift"
    elif xy_m <= 0.02 and gripper[2] - (brick[2] + 0.045) <= 0.02:
        phase = "grasp"
    elif xy_m <= 0.06:
        phase = "approach"
    else:
        phase = "locating"
    return {"phase": float(PHASES.index(phase))}


# ------------------------------------------------------------------------------------- the scorer
@dataclasses.dataclass(frozen=True)
class ScorerConfig:
    """The content scorer's network and fit."""

    hidden: int = 64
    """Units of each of its two hidden layers (0: a linear scorer)."""
    codes: bool = False
    """Also read the latent codes (the sender's, and the receiver's after each candidate minus it);
    off by default: on the shipped scorer's data they added nothing in cross-validation."""
    epochs: int = 30
    """Passes over the recorded steps (``--distill-epochs``)."""
    lr: float = 1e-3
    """Adam's learning rate."""
    weight_decay: float = 1e-4
    """Adam's weight decay."""


def candidate_inputs(obs: Mapping[str, np.ndarray], codes: bool = True) -> np.ndarray:
    """The scorer's input per candidate, ``(steps, candidates, D)``, from spec-2 observations.

    Each candidate's features, the context (spec 1's keys) and with ``codes`` the receiver's code
    after the candidate minus the sender's, and the sender's code. One observation (no step axis)
    gives one step.
    """
    if np.asarray(obs["candidates"]).ndim == 2:
        obs = {k: np.asarray(v)[None] for k, v in obs.items()}
    candidates = np.asarray(obs["candidates"], np.float32)
    n, c = candidates.shape[:2]
    context = np.concatenate([np.asarray(obs[k], np.float32).reshape(n, -1) for k in CONTEXT_KEYS], axis=1)
    parts = [candidates, np.broadcast_to(context[:, None], (n, c, context.shape[1]))]
    if codes:
        code = np.asarray(obs["code"], np.float32)
        parts += [
            np.asarray(obs["candidate_codes"], np.float32) - code[:, None],
            np.broadcast_to(code[:, None], (n, c, code.shape[1])),
        ]
    return np.concatenate(parts, axis=2)


class ContentScorer:
    """A network scoring each candidate of a step (lower: a smaller expected action error).

    Args:
        config: the network's shape.
        n_inputs: the input size per candidate (:func:`candidate_inputs`).
        mean, scale: the per-input standardisation (from the training rows).
    """

    def __init__(self, config: ScorerConfig, n_inputs: int, mean: np.ndarray, scale: np.ndarray) -> None:
        import torch

        self.config = config
        self.n_inputs = int(n_inputs)
        self.mean = np.asarray(mean, np.float32)
        self.scale = np.asarray(scale, np.float32)
        h = int(config.hidden)
        layers: list[Any] = (
            [
                torch.nn.Linear(n_inputs, h),
                torch.nn.ReLU(),
                torch.nn.Linear(h, h),
                torch.nn.ReLU(),
                torch.nn.Linear(h, 1),
            ]
            if h
            else [torch.nn.Linear(n_inputs, 1)]
        )
        self.net = torch.nn.Sequential(*layers)

    def standardised(self, inputs: np.ndarray) -> Any:
        """The inputs as a standardised float tensor."""
        import torch

        return torch.as_tensor((np.asarray(inputs, np.float32) - self.mean) / self.scale)

    def __call__(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Scores ``(steps, candidates)`` of spec-2 observations (one observation: one row)."""
        import torch

        x = self.standardised(candidate_inputs(obs, self.config.codes))
        with torch.no_grad():
            return self.net(x).squeeze(-1).numpy().astype(np.float64)

    def state(self) -> dict[str, np.ndarray]:
        """The arrays a checkpoint stores."""
        return {
            **{f"net.{k}": v.detach().numpy() for k, v in self.net.state_dict().items()},
            "input_mean": self.mean,
            "input_scale": self.scale,
        }

    @classmethod
    def from_state(
        cls, config: ScorerConfig, n_inputs: int, state: Mapping[str, np.ndarray]
    ) -> ContentScorer:
        """Rebuild a scorer from :meth:`state` (a ``KeyError`` or ``RuntimeError`` when it does not fit)."""
        import torch

        scorer = cls(config, n_inputs, state["input_mean"], state["input_scale"])
        weights = {
            k.removeprefix("net."): torch.from_numpy(np.array(v))
            for k, v in state.items()
            if k.startswith("net.")
        }
        scorer.net.load_state_dict(weights)
        if scorer.mean.shape != (n_inputs,) or scorer.scale.shape != (n_inputs,):
            raise RuntimeError(f"standardisation of {scorer.mean.shape} for {n_inputs} inputs")
        return scorer


def _pairwise_loss(scores: Any, errors: Any, usable: Any) -> Any:
    """Logistic loss on every pair's score difference, weighted by how much their errors differ.

    For candidates ``i, j`` of a step with action errors ``e_i < e_j``, the loss is
    ``(e_j - e_i) * log(1 + exp(s_i - s_j))``: the scorer should put ``i`` below ``j``, the more so
    the more it matters. Candidates that do not fit are left out (the allocator never picks them).
    """
    import torch

    weight = torch.relu(errors[:, None, :] - errors[:, :, None]) * usable[:, :, None] * usable[:, None, :]
    loss = torch.nn.functional.softplus(scores[:, :, None] - scores[:, None, :])
    return (weight * loss).sum() / weight.sum().clamp_min(1e-12)


def fit_content_scorer(
    obs: Mapping[str, np.ndarray], scores: np.ndarray, config: ScorerConfig = ScorerConfig(), seed: int = 0
) -> tuple[ContentScorer, list[float]]:
    """Fit a :class:`ContentScorer` to rank each step's candidates as ``scores`` (action errors) do.

    Args:
        obs: spec-2 observations, a row per step (``candidates`` ``fits`` column marks usable ones).
        scores: steps x candidates, the oracle's action error of each candidate.
        config: the network and its fit.
        seed: seeds the initial weights and the batches.

    Returns:
        The scorer and its training loss per epoch.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a network this small runs fastest on one thread (8x on a busy 2-core machine)
    try:
        return _fit(obs, scores, config, seed)
    finally:
        torch.set_num_threads(threads)


def _fit(
    obs: Mapping[str, np.ndarray], scores: np.ndarray, config: ScorerConfig, seed: int
) -> tuple[ContentScorer, list[float]]:
    import torch

    torch.manual_seed(seed)
    inputs = candidate_inputs(obs, config.codes)
    rows = inputs.reshape(-1, inputs.shape[2])
    scorer = ContentScorer(config, inputs.shape[2], rows.mean(0), rows.std(0) + 1e-6)
    x = scorer.standardised(inputs)
    errors = torch.as_tensor(np.asarray(scores, np.float32))
    usable = torch.as_tensor(_fits(obs).astype(np.float32))
    optimizer = torch.optim.Adam(scorer.net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(config.epochs):
        order = rng.permutation(len(x))
        total = 0.0
        for start in range(0, len(order), 128):
            idx = torch.as_tensor(order[start : start + 128])
            loss = _pairwise_loss(scorer.net(x[idx]).squeeze(-1), errors[idx], usable[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        losses.append(total / max(len(order), 1))
    scorer.net.eval()
    return scorer, losses


def _fits(obs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Which candidates fit, per step: the ``fits`` column of the candidate features."""
    column = CandidateObserver.PER_CANDIDATE.index("fits") - len(CandidateObserver.PER_CANDIDATE)
    return np.asarray(obs["candidates"])[..., column] > 0.5


def pick(scores: np.ndarray, fits: np.ndarray) -> np.ndarray:
    """Per step the candidate of lowest score among those that fit (the first when none fits)."""
    masked = np.where(fits, np.asarray(scores, np.float64), np.inf)
    return np.where(fits.any(1), masked.argmin(1), 0)


# ------------------------------------------------------------------------------------------ data
class _SenderObservations:
    """A :class:`CandidateObserver` as :func:`collect_oracle_scores` records it (the observation dict)."""

    def __init__(self, observer: CandidateObserver) -> None:
        self.observer = observer

    def observe(self, views: Mapping[str, np.ndarray], budget_bits: int, context: Mapping[str, Any]):
        return self.observer.observe(views, budget_bits, context).observation

    def commit(self, split: Mapping[str, float] | None) -> None:
        self.observer.commit(split)

    def reset(self) -> None:
        self.observer.reset()


def collect_content_data(
    env: Any, observer: CandidateObserver, distill: DistillConfig, seed: int = 0, progress: bool = False
) -> dict[str, Any]:
    """The oracle's per-split action errors beside the spec-2 observation, and each step's task phase.

    :func:`~bwgym.agents.allocation.collect_oracle_scores` on ``env``'s training traces (with the
    oracle's exploration ``distill.explore``); the observer's candidates must be the oracle's grid.
    """
    from bwgym.envs.allocators import simplex_grid

    if env.codec_split:
        raise ValueError(
            "the content allocator chooses among explicit splits; train it without --codec-split"
        )
    grid = [tuple(s) for s in simplex_grid(len(env.view_names), distill.levels)]
    if list(observer.splits) != grid:
        raise ValueError(f"the observer's candidates {observer.splits} are not the oracle's grid {grid}")
    data = collect_oracle_scores(
        env, distill, seed=seed, progress=progress, observer=_SenderObservations(observer), extras=task_phase
    )
    data["spec"] = observer.spec()
    return data


def save_content_data(path: Path, data: Mapping[str, Any]) -> None:
    """Write what :func:`collect_content_data` returned as a numpy archive (no pickles)."""
    np.savez_compressed(
        path,
        scores=data["scores"],
        episode=data["episode"],
        success=data["success"],
        spec=np.array(json.dumps(data["spec"])),
        candidates=np.asarray(data["spec"]["candidates"], np.float64),
        **{f"obs_{k}": v for k, v in data["obs"].items()},
        **{f"extra_{k}": v for k, v in data["extras"].items()},
    )


def load_content_data(path: str | os.PathLike[str], spec: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read :func:`save_content_data`'s archive; with ``spec``, refuse data of another observation.

    Raises:
        ValueError: not such an archive, or recorded for another observation spec (naming both).
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            raw = {k: f[k] for k in f.files}
        data = {
            "obs": {k.removeprefix("obs_"): v for k, v in raw.items() if k.startswith("obs_")},
            "extras": {k.removeprefix("extra_"): v for k, v in raw.items() if k.startswith("extra_")},
            "scores": raw["scores"],
            "episode": raw["episode"],
            "success": raw["success"],
            "spec": json.loads(str(raw["spec"])),
        }
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(f"{path} is not a content.npz written by `{RETRAIN}` ({err})") from err
    data["candidates"] = data["spec"].get("candidates")
    if spec is not None:
        check_spec(
            f"content data {path}",
            data["spec"],
            dict(spec),
            f"collect it for this codec and env: `{RETRAIN}`",
        )
    return data


# ---------------------------------------------------------------------------------------- report
def _folds(episode: np.ndarray, folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) masks of k folds by episode (a single episode: in-sample)."""
    out = []
    for fold in range(folds):
        test = episode % folds == fold
        if test.any():
            out.append((~test if (~test).any() else test, test))
    return out


def cross_validated_picks(
    data: Mapping[str, Any], config: ScorerConfig = ScorerConfig(), folds: int = 5, seed: int = 0
) -> dict[str, np.ndarray]:
    """Each step's pick by the content scorer and by the spec-1 ridge scorer, fitted without its episode."""
    obs, scores, episode = data["obs"], np.asarray(data["scores"]), np.asarray(data["episode"])
    fits = _fits(obs)
    content = np.zeros(len(scores), np.int64)
    ridge = np.zeros(len(scores), np.int64)
    spec1 = [k for k in CONTEXT_KEYS if k in obs]
    for train, test in _folds(episode, folds):
        scorer, _ = fit_content_scorer({k: v[train] for k, v in obs.items()}, scores[train], config, seed)
        content[test] = pick(scorer({k: v[test] for k, v in obs.items()}), fits[test])
        predict = fit_split_scorer({k: obs[k][train] for k in spec1}, scores[train])
        ridge[test] = pick(predict({k: obs[k][test] for k in spec1}), fits[test])
    return {"content": content, "ridge_spec1": ridge}


def phase_breakdown(
    scores: np.ndarray, picks: Mapping[str, np.ndarray], phase: np.ndarray, fixed: int
) -> list[dict[str, Any]]:
    """Where the gap to the oracle lives: mean action error per task phase of each pick and the references.

    Args:
        scores: steps x candidates, the oracle's action errors.
        picks: per allocator (e.g. ``content``), the candidate picked at each step.
        phase: the :data:`PHASES` index of each step.
        fixed: the candidate of the best fixed split (the reference a scorer must beat).

    Returns:
        One row per phase (and ``all``): ``steps``, the mean action error of ``oracle``, ``fixed``
        and every pick, and per pick ``<name>_gap_share``: its share of that pick's whole excess
        over the oracle (summed over steps) that falls in this phase.
    """
    scores = np.asarray(scores, np.float64)
    rows_idx = np.arange(len(scores))
    oracle = scores.min(1)
    chosen = {name: scores[rows_idx, p] for name, p in picks.items()}
    excess = {name: float(np.sum(c - oracle)) for name, c in chosen.items()}
    out = []
    for label, mask in [
        *((p, np.asarray(phase) == i) for i, p in enumerate(PHASES)),
        ("all", np.ones(len(scores), bool)),
    ]:
        if not mask.any():
            continue
        row: dict[str, Any] = {
            "phase": label,
            "steps": int(mask.sum()),
            "oracle": float(oracle[mask].mean()),
            "fixed": float(scores[mask, fixed].mean()),
        }
        for name, c in chosen.items():
            row[name] = float(c[mask].mean())
            row[f"{name}_gap_share"] = (
                float(np.sum((c - oracle)[mask]) / excess[name]) if excess[name] > 0 else 0.0
            )
        out.append(row)
    return out


def breakdown_markdown(rows: Sequence[Mapping[str, Any]], names: Sequence[str], fixed_label: str) -> str:
    """:func:`phase_breakdown`'s rows as a Markdown table."""
    header = ["phase", "steps", "oracle", fixed_label, *names, *(f"{n}: share of its gap" for n in names)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["phase"], str(r["steps"]), f"{r['oracle']:.3f}", f"{r['fixed']:.3f}"]
        cells += [f"{r[n]:.3f}" for n in names] + [f"{r[f'{n}_gap_share']:.2f}" for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def content_report(
    data: Mapping[str, Any], config: ScorerConfig = ScorerConfig(), folds: int = 5, seed: int = 0
) -> dict[str, Any]:
    """The scorer's cross-validated action error against every fixed split, the oracle and spec-1 ridge.

    As ``distill.json`` reports the spec-1 scorer, plus ``gap_closed`` (the share of the gap between
    the best fixed split and the oracle that each scorer's picks close) and, when the data hold
    the task phase, :func:`phase_breakdown` (``phases``, and as Markdown ``phases_markdown``).
    """
    scores, episode = np.asarray(data["scores"], np.float64), np.asarray(data["episode"])
    picks = cross_validated_picks(data, config, folds, seed)
    per_candidate = scores.mean(0)
    fixed = int(per_candidate.argmin())
    oracle = float(scores.min(1).mean())
    chosen = {name: float(scores[np.arange(len(scores)), p].mean()) for name, p in picks.items()}
    gap = float(per_candidate[fixed]) - oracle
    report: dict[str, Any] = {
        "steps": len(scores),
        "episodes": int(len(np.unique(episode))),
        "oracle_success_rate": float(np.mean(data["success"])) if len(data["success"]) else None,
        "candidates": data.get("candidates"),
        "mean_score_per_candidate": [float(v) for v in per_candidate],
        "best_fixed_candidate": fixed,
        "mean_score_best_fixed": float(per_candidate[fixed]),
        "mean_score_oracle": oracle,
        **{f"mean_score_{name}_cross_validated": v for name, v in chosen.items()},
        **{
            f"gap_closed_{name}": (float(per_candidate[fixed]) - v) / gap if gap > 0 else None
            for name, v in chosen.items()
        },
        **{
            f"choices_{name}": [int(v) for v in np.bincount(p, minlength=scores.shape[1])]
            for name, p in picks.items()
        },
        "scorer": dataclasses.asdict(config),
        "folds": folds,
    }
    phase = (data.get("extras") or {}).get("phase")
    if phase is not None and len(phase) == len(scores):
        rows = phase_breakdown(scores, picks, phase, fixed)
        split = (data.get("candidates") or [None] * (fixed + 1))[fixed]
        report["phases"] = rows
        report["phases_markdown"] = breakdown_markdown(rows, list(picks), f"best fixed {split}")
    return report


# ------------------------------------------------------------------------------------ the allocator
class ContentAllocator:
    """A content scorer behind the :class:`~bwgym.envs.allocators.Allocator` interface.

    Each step the observer encodes the views at every candidate split (observation spec 2), the
    scorer ranks them, and the candidate of lowest score among those whose payload fits the
    budget is sent. When none fits (a budget below the smallest frame), it says so in the step's
    ``info["allocation_note"]`` (written through the context's ``env_info``, which
    :class:`~bwgym.envs.bandwidth.BandwidthLimited` copies into the step's ``info``) and returns the
    even split, under which the codec finds no frame either: nothing is sent, never more than the
    budget. ``last_note`` keeps the note (None on a step that sent a candidate).

    Args:
        scorer: ``scorer(observation) -> scores (1, candidates)``, lower is better.
        observer: the spec-2 observer the scorer was trained on.
    """

    def __init__(self, scorer: Any, observer: CandidateObserver) -> None:
        self.scorer = scorer
        self.observer = observer
        self.last_note: str | None = None
        self.last_scores: np.ndarray | None = None

    def __call__(
        self, views: Mapping[str, np.ndarray], budget_bits: int, info: Mapping[str, Any]
    ) -> dict[str, float]:
        """The split of the best-scored candidate that fits (the even split, sending nothing, when none does)."""
        candidates = self.observer.observe(views, budget_bits, info)
        names = self.observer.view_names
        if not candidates.fits.any():
            self.last_note = f"no candidate split fits {int(budget_bits)} bits (the smallest frame is larger): nothing sent"
            env_info = info.get("env_info") if isinstance(info, Mapping) else None
            if isinstance(env_info, dict):
                env_info["allocation_note"] = self.last_note
            self.last_scores = None
            self.observer.commit(None)
            return {n: 1.0 / len(names) for n in names}
        self.last_note = None
        self.last_scores = np.asarray(self.scorer(candidates.observation), np.float64).reshape(-1)
        index = int(pick(self.last_scores[None], candidates.fits[None])[0])
        self.observer.commit(index)
        return dict(zip(names, candidates.splits[index], strict=True))

    def reset(self) -> None:
        """Start an episode (the record of the receiver's frames)."""
        self.observer.reset()
        self.last_note = None

    def __repr__(self) -> str:
        return f"ContentAllocator(views={list(self.observer.view_names)}, candidates={len(self.observer.splits)})"


def load_content_scorer(path: str | os.PathLike[str]) -> tuple[ContentScorer, dict[str, Any]]:
    """The scorer of a ``bwgym train allocator --content`` checkpoint file and its ``allocation`` metadata.

    Raises:
        FileNotFoundError: no file there.
        ValueError: (``CheckpointError``) a policy of observation spec 1 (``bwgym train allocator``
            without ``--content``): the message names both specs and the command that retrains
            it; or damaged metadata or weights.
    """
    from bwgym.agents.rl import CHECKPOINT_KINDS

    ckpt = load_checkpoint(path, kind=(CONTENT_KIND, *CHECKPOINT_KINDS.values()))
    saved = ckpt.metadata.get("allocation") if isinstance(ckpt.metadata.get("allocation"), dict) else {}
    observation = saved.get("observation") if isinstance(saved.get("observation"), dict) else {}
    version = observation.get("version", 1)
    if ckpt.kind != CONTENT_KIND or version != CandidateObserver.VERSION:
        raise CheckpointError(
            f"{path} holds an allocation policy of observation spec v{version} (sender statistics: budgets, "
            f"energies, ages), but allocator 'content' needs spec v{CandidateObserver.VERSION} (per-candidate "
            f"features); retrain it with `{RETRAIN}`"
        )
    try:
        scorer = ContentScorer.from_state(ScorerConfig(**saved["scorer"]), int(saved["n_inputs"]), ckpt.state)
    except (KeyError, TypeError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{path}: damaged content scorer ({err!r})") from err
    return scorer, saved


def load_content_allocator(
    path: str | os.PathLike[str] | None, codec: Any, env_id: str = DEFAULT_TASK_ENV
) -> ContentAllocator:
    """Load a scorer written by ``bwgym train allocator --content`` as an allocator for ``codec``.

    Args:
        path: the training folder or its ``policy.ckpt``; None: the shipped one for the codec and env.
        codec: the codec on the link (a latent codec with one stream per view).
        env_id: the task env (only to find the shipped scorer).

    Raises:
        FileNotFoundError: no checkpoint there (or none shipped).
        ValueError: (``CheckpointError``) a policy of observation spec 1 (:func:`load_content_scorer`),
            or a scorer for another codec or views: the message names both and the command that
            retrains it.
    """
    file = (
        Path(path)
        if path is not None
        else shipped_allocator(codec.name, env_id, "allocator_content", RETRAIN)
    )
    if file.is_dir():
        file = file / POLICY_FILE
    if not file.exists():
        raise FileNotFoundError(
            f"content scorer {file} does not exist (expected a folder or {POLICY_FILE} of `{RETRAIN}`)"
        )
    scorer, saved = load_content_scorer(file)
    observation = saved["observation"]
    try:
        observer = CandidateObserver(
            codec,
            splits=observation["candidates"],
            history_steps=int(observation["history_steps"]),
            max_steps=int(observation["max_steps"]),
            max_age_steps=int(observation["max_age_steps"]),
            error_grid=int(observation["error_grid"]),
        )
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{file}: damaged content-scorer metadata ({err!r})") from err
    check_spec(
        f"content scorer {file}", observation, observer.spec(), f"retrain it for this codec: `{RETRAIN}`"
    )
    recorded = saved.get("env_kwargs") or {}
    if recorded.get("codec") not in (None, getattr(codec, "name", None)):
        raise CheckpointError(
            f"content scorer {file} was trained for codec {recorded.get('codec')!r}, but codec "
            f"{getattr(codec, 'name', None)!r} was requested; retrain it with `{RETRAIN}`"
        )
    return ContentAllocator(scorer, observer)


@register_allocator(
    "content",
    description="a scorer ranks candidate splits by what each would lose of this frame (checkpoint: "
    "`bwgym train allocator --content` folder; none: the shipped one)",
    uses=("checkpoint",),
)
def content_allocator(context: BuildContext, options: None) -> ContentAllocator:
    """The scenario's content allocator: its checkpoint, or the one shipped for its codec and env."""
    try:
        return load_content_allocator(context.checkpoint, context.codec, env_id=context.env_id)
    except FileNotFoundError as exc:
        raise InputError(
            "checkpoint", f"required for allocator 'content' unless one is shipped ({exc})"
        ) from None
    except (TypeError, ValueError) as exc:
        raise InputError("checkpoint", str(exc)) from None


# -------------------------------------------------------------------------------------- training
def train_content_allocator(
    config: AllocatorTrainConfig, scorer_config: ScorerConfig = ScorerConfig(), progress: bool = False
) -> Path:
    """Collect the oracle's data (or read ``config.distill.data``), report, fit and save; the checkpoint's path.

    Uses the allocation env's parts (``config.rl.env_kwargs``), the training traces, the
    oracle's exploration and grid (``config.distill``) and ``config.rl.seed``; writes
    ``content.npz`` (the data), ``content.json`` (:func:`content_report`), ``content.md`` (its
    phase table) and ``policy.ckpt`` into ``config.rl.out_dir``.
    """
    out = Path(config.rl.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(
        json.dumps(
            {**dataclasses.asdict(config), "scorer": dataclasses.asdict(scorer_config)},
            indent=1,
            sort_keys=True,
        )
    )
    env = _make_env(config.rl.env_kwargs, config.train_traces)
    try:
        observer = CandidateObserver(
            env.codec,
            levels=config.distill.levels,
            history_steps=env.observer.history_steps,
            max_steps=env.observer.max_steps,
            max_age_steps=env.observer.max_age_steps,
        )
        if config.distill.data:
            data = load_content_data(config.distill.data, observer.spec())
        else:
            data = collect_content_data(env, observer, config.distill, seed=config.rl.seed, progress=progress)
            save_content_data(out / "content.npz", data)
    finally:
        env.close()
    if not len(data["scores"]):
        raise ValueError("the oracle recorded no steps; raise --distill-episodes")
    report = content_report(data, scorer_config, seed=config.rl.seed)
    scorer, losses = fit_content_scorer(data["obs"], data["scores"], scorer_config, seed=config.rl.seed)
    report["fit_loss_per_epoch"] = losses
    (out / "content.json").write_text(json.dumps(report, indent=1))
    (out / "content.md").write_text(report.get("phases_markdown", "") + "\n")
    summary = {k: v for k, v in report.items() if isinstance(v, (int, float)) or v is None}
    return save_content_scorer(
        out / POLICY_FILE, scorer, observer, config.rl.env_kwargs, config.train_traces, summary
    )


def save_content_scorer(
    path: str | os.PathLike[str],
    scorer: ContentScorer,
    observer: CandidateObserver,
    env_kwargs: Mapping[str, Any],
    train_traces: Mapping[str, Any] | None = None,
    report: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``scorer`` for ``observer``'s spec as a checkpoint :func:`load_content_allocator` reads.

    Args:
        path: the file.
        scorer: the fitted scorer.
        observer: the spec-2 observer it was fitted on (its spec is recorded and checked on load).
        env_kwargs: the allocation env's parts (``codec``, task env, link), plain JSON.
        train_traces: the training trace family, plain JSON.
        report: numbers to keep beside it (the cross-validated action errors).
    """
    return save_checkpoint(
        path,
        CONTENT_KIND,
        scorer.state(),
        {
            "env_id": ALLOCATION_ENV_ID,
            "allocation": {
                "observation": observer.spec(),
                "env_kwargs": dict(env_kwargs),
                "train_traces": dict(train_traces or {}),
                "scorer": dataclasses.asdict(scorer.config),
                "n_inputs": scorer.n_inputs,
                "report": dict(report or {}),
            },
        },
    )
