"""Success rate of an agent on clean views: :func:`evaluate_agent`.

Serial :func:`~bwgym.agents.base.rollout` episodes, seeded; the full protocol with codecs, traces
and workers is ``bwgym evaluate`` (:mod:`bwgym.scenarios`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bwgym.agents.base import rollout
from bwgym.agents.bc import BCAgent
from bwgym.agents.demos import spec_text

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["evaluate_agent"]


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
                    f"the env gives {spec_text(env_id, views, list(shape))}"
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
