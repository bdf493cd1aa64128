"""DAgger on the views a codec and a link deliver: :func:`finetune_bc`.

A BC agent trained on clean frames (:func:`~bwgym.agents.bc_training.train_bc`) meets decoded views
at low budgets. :func:`finetune_bc` lets it drive a scenario's env, has the scripted expert label
every state it visits and trains on what it collected, round after round (DAgger, Ross et al.
2011); :class:`DAggerTuning` holds the hyper-parameters. ``bwgym train agent --algo bc --scenario``
runs it.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from torch import Tensor

from bwgym.agents.bc import BCAgent
from bwgym.agents.bc_training import (
    action_mse,
    dagger_rollouts,
    finished,
    fit_bc,
    fit_options,
    tensorboard_writer,
)
from bwgym.envs.views import link_views

__all__ = ["FINETUNE_SEED_BASE", "DAggerTuning", "finetune_bc"]

#: Seeds of fine-tuning rollouts start here, far from demonstration, evaluation and DAgger seeds.
FINETUNE_SEED_BASE = 2_000_000


@dataclass(frozen=True)
class DAggerTuning:
    """The hyper-parameters of :func:`finetune_bc` (recorded in ``train_config["finetune"]``).

    Attributes:
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

    Raises:
        ValueError: ``rounds``, ``episodes`` or ``val_episodes`` below 1.

    """

    rounds: int = 4
    episodes: int = 40
    val_episodes: int = 20
    epochs: int = 8
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 0.0
    patience: int = 3
    augment_shift_px: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.episodes < 1 or self.val_episodes < 1:
            raise ValueError(
                "rounds, episodes and val_episodes must be >= 1, got "
                f"{self.rounds}, {self.episodes}, {self.val_episodes}"
            )


def finetune_bc(
    agent: BCAgent,
    env_factory: Callable[[], Any] | Sequence[Callable[[], Any]],
    out_path: str | os.PathLike[str] | None = None,
    tuning: DAggerTuning | None = None,
    *,
    log_dir: str | os.PathLike[str] | None = None,
    describe: Mapping[str, Any] | None = None,
    progress: bool = True,
    **options: Any,
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
        agent: the starting agent (trained by :func:`~bwgym.agents.bc_training.train_bc`); trained
            in place.
        env_factory: builds the env the agent will run in (its observation spec must match), or
            a sequence of them (a mixture: episodes take turns).
        out_path: where to save the agent (None: not saved).
        tuning: the hyper-parameters (None: :class:`DAggerTuning`'s defaults).
        log_dir: TensorBoard folder.
        describe: extra entries for ``train_config`` (e.g. the scenario).
        progress: tqdm progress bars.
        **options: :class:`DAggerTuning` fields that replace those of ``tuning`` (``rounds=2``...).

    Returns:
        The selected agent, in eval mode.

    Raises:
        ValueError: a count below 1, or (``CheckpointError``) an agent whose spec (env id, views,
            image size) is not the env's: the message names both.
        TypeError: an option that is not a :class:`DAggerTuning` field.

    """
    hyper = replace(tuning or DAggerTuning(), **options)
    writer = tensorboard_writer(log_dir)
    fit = fit_options(hyper, agent.device, writer, progress)
    start = time.perf_counter()
    factories = [env_factory] if callable(env_factory) else list(env_factory)
    if not factories:
        raise ValueError("env_factory: expected a callable or a non-empty sequence of them")
    envs: list[Any] = []
    history: list[dict[str, Any]] = []
    try:
        _open_envs(agent, factories, envs)
        states = _play_label_fit(agent, envs, hyper, fit, history, progress)
    finally:
        for env in envs:
            env.close()
        if writer is not None:
            writer.close()
    chosen = max(range(len(history)), key=lambda i: (history[i]["rollout_success"], i))
    agent.load_state_dict(states[chosen])
    seconds = round(time.perf_counter() - start, 1)
    record = dict(
        dict(describe or {}), **asdict(hyper), history=history, selected_round=chosen, seconds=seconds
    )
    return finished(agent, dict(agent.train_config, finetune=record), out_path)


def _open_envs(agent: BCAgent, factories: Sequence[Callable[[], Any]], envs: list[Any]) -> None:
    """Build each factory's env into ``envs`` (the caller closes all that were built); check the agent fits it."""
    for factory in factories:
        envs.append(factory())
        views = link_views(envs[-1])
        agent.check_spec(
            getattr(envs[-1].spec, "id", None),
            [v.name for v in views],
            views[0].shape,
            where="the agent to fine-tune",
        )


def _play_label_fit(
    agent: BCAgent,
    envs: Sequence[Any],
    hyper: DAggerTuning,
    fit: Mapping[str, Any],
    history: list[dict[str, Any]],
    progress: bool,
) -> list[dict[str, Tensor]]:
    """The DAgger rounds: the weights of every policy played, the starting one first.

    ``history`` gets one entry per policy: its validation MSE, training steps and success rate.
    """
    val, val_success = dagger_rollouts(
        agent, envs, hyper.val_episodes, FINETUNE_SEED_BASE, 0, progress, desc="validation rollouts"
    )
    best = action_mse(agent, val, agent.device, 256)
    history.append(dict(round=0, val_mse=best, train_steps=0))
    _score(history[0], val_success, hyper.val_episodes, fit["writer"], 0)
    states = [copy.deepcopy(agent.state_dict())]
    train = None
    step = epoch = 0
    for r in range(1, hyper.rounds + 2):
        new, success = dagger_rollouts(
            agent,
            envs,
            hyper.episodes,
            FINETUNE_SEED_BASE + 10_000 * r,
            hyper.augment_shift_px,
            progress,
            desc=f"DAgger {r}/{hyper.rounds} rollouts" if r <= hyper.rounds else "last policy's rollouts",
        )
        _score(history[r - 1], success, hyper.episodes, fit["writer"], r - 1)
        if r > hyper.rounds:
            break
        if train is None:
            train = new
        else:
            train.extend(new)
        step, epoch, best = fit_bc(
            agent,
            train,
            val,
            epochs=hyper.epochs,
            step0=step,
            epoch0=epoch,
            desc=f"DAgger {r}/{hyper.rounds}",
            best=best,
            **fit,
        )
        history.append(dict(round=r, epochs=epoch, val_mse=best, train_steps=len(train)))
        states.append(copy.deepcopy(agent.state_dict()))
    return states


def _score(entry: dict[str, Any], success: float, n: int, writer: Any, policy: int) -> None:
    """Add ``n`` rollouts of success rate ``success`` to the policy of round ``policy`` (0: the start)."""
    played = entry.get("rollout_episodes", 0)
    entry["rollout_success"] = (entry.get("rollout_success", 0.0) * played + success * n) / (played + n)
    entry["rollout_episodes"] = played + n
    if writer is not None:
        writer.add_scalar("dagger/success_rate", entry["rollout_success"], policy)
