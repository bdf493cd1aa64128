"""``bwgym/AllocateBandwidth-v0``: learn how to split a time-varying link over the views.

* :class:`AllocateBandwidthEnv` - the allocation policy's env: each step it splits the step's bit
  budget over the views of a task env; a frozen task agent acts on what the codec and the link
  deliver, and the task's reward is the policy's reward;
* :class:`GeneratedTraces` - a family of generated traces, one fresh trace per episode.

One allocation step is one step of the task env, in this order::

    true views v_t, link budget b_t --AllocationObserver--> observation (what a sender knows)
    policy action --action_to_split--> split_t
    v_t --BandwidthLimited(allocator=split_t): codec + link--> decoded views
    frozen task agent --> task action --> task env step --> reward r_t, views v_{t+1}

The send goes through :class:`~bwgym.envs.bandwidth.BandwidthLimited` itself (so the hold-last-frame
rule, latency, losses and every ``info`` key are the scenario runner's), driven through a small gate
wrapper that steps the task env one step ahead: the policy decides for ``v_t`` after seeing
statistics of ``v_t`` and the budget ``b_t``, as a sender would. The observation is built by
:class:`~bwgym.envs.allocators.AllocationObserver`, the same code a
:class:`~bwgym.envs.allocators.LearnedAllocator` runs inside a scenario, so a trained policy sees
the same numbers there.

Layering: envs never import agents, so the frozen task agent is an argument (anything with
``act(obs)`` and optionally ``reset(seed)``). ``gymnasium.make("bwgym/AllocateBandwidth-v0")``
with no arguments goes through :func:`bwgym.agents.allocation.make_allocation_env` (the
registered entry point, one layer up), which loads the shipped behaviour-cloning agent.

Why the ``codec_split`` switch: given explicit shares, :class:`~bwgym.codecs.core.latent.LatentCodec`
sets aside a generous header allowance before splitting (``8 * (7 + 3 + 3 K)`` bits, 128 for two
views), while its own split (``"dpca"``) fits the real header; at NDPCA's lowest budgets (~110-180
bits per step) an explicit split then sends nothing at all. The switch lets a policy fall back to
the codec's split there and choose shares where they pay.

"Send nothing now, bank the bits" is not offered: :class:`~bwgym.traces.link.Link` gives each
step the bits its interval carries and never carries unused bits over, so ``bank=True`` is
refused. A view given a share of 0 is simply not refreshed (a latent codec still sends its header).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from bwgym.envs.allocators import INVALID_ACTION_REASONS, AllocationObserver, action_to_split
from bwgym.envs.bandwidth import START_OPTION, BandwidthLimited
from bwgym.traces.link import Link
from bwgym.traces.trace import BandwidthTrace

__all__ = ["DEFAULT_TASK_ENV", "AllocateBandwidthEnv", "GeneratedTraces", "TraceFamily"]

ObsDict = dict[str, np.ndarray]
#: The task env of the no-argument default.
DEFAULT_TASK_ENV = "bwgym/LocateLift-v1"
#: A trace family: draws one trace per episode from the env's generator.
TraceFamily = Callable[[np.random.Generator], BandwidthTrace]
#: Reset option: run this episode on this trace (e.g. a held-out trace) instead of drawing one.
TRACE_OPTION = "trace"


class GeneratedTraces:
    """A family of generated traces: each draw is a fresh seed and a mean budget in a range.

    Every draw generates ``generator`` (a name of :data:`bwgym.common.registry.TRACE_GENERATORS`)
    with ``params`` and a seed drawn from the caller's generator (offset by ``seed_offset``, so a
    held-out family with another offset never repeats a training trace), then scales it so its
    mean carries a number of bits per step drawn log-uniformly in ``mean_bits_per_step``.

    Args:
        generator: generator name.
        mean_bits_per_step: ``(low, high)`` mean budget per step, bits.
        step_seconds: the link's step (converts bits per step to bit/s).
        params: the generator's keyword arguments (``seed`` excluded).
        seed_offset: added to every drawn seed.

    Example:
        >>> family = GeneratedTraces("lognormal_walk", (100, 300), params={"duration_s": 20.0})
        >>> trace = family(np.random.default_rng(0))
        >>> 100 <= trace.mean_bps * 0.04 <= 300
        True
    """

    def __init__(
        self,
        generator: str = "lognormal_walk",
        mean_bits_per_step: tuple[float, float] = (120.0, 480.0),
        step_seconds: float = 0.04,
        params: Mapping[str, Any] | None = None,
        seed_offset: int = 0,
    ) -> None:
        from bwgym.common.registry import TRACE_GENERATORS

        TRACE_GENERATORS.get(generator)  # an unknown name: the registered ones, with a guess
        low, high = (float(v) for v in mean_bits_per_step)
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
            raise ValueError(
                f"mean_bits_per_step is expected to be (low, high) with 0 < low <= high, got {mean_bits_per_step!r}"
            )
        if not (math.isfinite(step_seconds) and step_seconds > 0):
            raise ValueError(f"step_seconds is expected to be finite and > 0, got {step_seconds!r}")
        params = dict(params or {})
        if "seed" in params:
            raise ValueError("params must not contain 'seed': each draw gets its own")
        self.generator = generator
        self.mean_bits_per_step = (low, high)
        self.step_seconds = float(step_seconds)
        self.params = params
        self.seed_offset = int(seed_offset)

    def __call__(self, rng: np.random.Generator) -> BandwidthTrace:
        """One trace of the family, drawn from ``rng``."""
        from bwgym.traces.generators import generate

        seed = self.seed_offset + int(rng.integers(2**31 - 1))
        low, high = self.mean_bits_per_step
        bits = float(math.exp(rng.uniform(math.log(low), math.log(high))))
        trace = generate(self.generator, seed=seed, **self.params)
        if trace.mean_bps <= 0:
            return trace
        return trace.scale(bits / self.step_seconds / trace.mean_bps)

    def spec(self) -> dict[str, Any]:
        """Plain JSON describing the family (recorded with a trained policy)."""
        return {
            "generator": self.generator,
            "mean_bits_per_step": list(self.mean_bits_per_step),
            "step_seconds": self.step_seconds,
            "params": self.params,
            "seed_offset": self.seed_offset,
        }

    def __repr__(self) -> str:
        return f"GeneratedTraces({self.generator!r}, mean_bits_per_step={self.mean_bits_per_step})"


def default_traces(step_seconds: float = 0.04, seed_offset: int = 0) -> GeneratedTraces:
    """The default training family: a bounded log-normal walk (rates change every 0.2 s).

    Mean budgets of 120-480 bits per step: NDPCA's payloads start at ~110 bits, so this is the
    range where the split decides what the agent sees.
    """
    return GeneratedTraces(
        "lognormal_walk",
        (120.0, 480.0),
        step_seconds=step_seconds,
        params={"sigma": 0.6, "correlation_s": 2.0, "dt_s": 0.2, "duration_s": 30.0},
        seed_offset=seed_offset,
    )


class _Gate(gym.Wrapper[ObsDict, Any, ObsDict, Any]):
    """Steps the task env ahead of the link: ``prefetch_*`` runs it, ``reset``/``step`` replay it."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._cached: tuple[Any, ...] | None = None

    def prefetch_reset(self, seed: int, options: dict[str, Any] | None = None) -> tuple[ObsDict, dict]:
        self._cached = ("reset", self.env.reset(seed=seed, options=options))
        return self._cached[1]

    def prefetch_step(self, action: Any) -> tuple[Any, ...]:
        self._cached = ("step", self.env.step(action))
        return self._cached[1]

    def _replay(self, kind: str) -> Any:
        if self._cached is None or self._cached[0] != kind:
            raise RuntimeError(f"AllocateBandwidthEnv internal error: {kind} without a prefetched {kind}")
        result = self._cached[1]
        self._cached = None
        return result

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        return self._replay("reset")

    def step(self, action: Any):
        return self._replay("step")


class _PolicySplit:
    """The allocator inside ``BandwidthLimited``: hands over the policy's split and checks the context."""

    def __init__(self, observer: AllocationObserver) -> None:
        self.observer = observer
        self.pending: dict[str, float] | None = None
        self.armed = False
        self.expected_budget: int | None = None

    def __call__(self, views: Mapping[str, np.ndarray], budget_bits: int, info: Mapping[str, Any]):
        if not self.armed:
            raise RuntimeError("AllocateBandwidthEnv internal error: a send without a split")
        if self.expected_budget is not None and int(budget_bits) != self.expected_budget:
            raise RuntimeError(
                f"AllocateBandwidthEnv internal error: the policy observed a budget of "
                f"{self.expected_budget} bits, the link gives {budget_bits}"
            )
        split, self.pending, self.armed = self.pending, None, False
        self.observer.commit(split)
        return split

    def reset(self) -> None:
        """Nothing: the env resets the observer before the first send."""


class AllocateBandwidthEnv(gym.Env[ObsDict, np.ndarray]):
    """Split a time-varying link over the views of a task env whose frozen agent acts on what arrives.

    ## Observation space
    :class:`~bwgym.envs.allocators.AllocationObserver`'s ``Dict`` (float32, all in ``[0, 2]``):
    ``budget`` (the last ``history_steps`` step budgets, ``log2(1 + bits) / 16``, the current one
    last), ``views`` (``K * 5`` values, view-major: each view's share of the latent energy of the frame about to be
    sent, its log energy, the share it got last step, the fraction of last step's latent energy
    left unsent, its frame age) and ``step``. A sender knows all of it before sending.

    ## Action space
    ``Box(-1, 1, (K,), float32)``, one value per view (the codec's order); mapped onto the simplex
    by :func:`~bwgym.envs.allocators.action_to_split` (``(a + 1) / 2``, normalised). With
    ``codec_split=True`` one more value: above 0 it lets the codec split the budget itself
    (``"dpca"``; ``info["split"]`` is then None). NaN,
    infinite, out-of-box or all -1 actions are replaced by a valid split, never passed to the
    codec: ``info["invalid_action"]`` names the reason of this step, ``info["invalid_actions"]``
    counts them over the episode.

    ## Rewards
    ``reward = reward_task + reward_success + reward_bits + reward_action`` (each in ``info``): the
    task env's reward of this step (LocateLift's dense reward by default), ``success_bonus`` on the
    first step the task succeeds, ``-bit_cost`` per kbit the link carried this step, and
    ``-action_error_weight`` times ``info["action_error"]``, the distance between the task agent's
    action on the decoded views and on the true ones. That last term is a privileged training
    signal (the simulator knows the true views; a deployed policy never needs them): unlike the
    task reward, it says at every step how much this step's split cost, which makes the credit
    assignment of PPO much easier. It calls the task agent twice per step, so the agent must be
    memoryless (the shipped BC agents are).

    ## Episode end
    The task env's: terminated on success or failure, truncated by its time limit.
    ``info["is_success"]`` is the task's.

    ## Info
    Every key of :class:`~bwgym.envs.bandwidth.BandwidthLimited` for the send of this step
    (``budget_bits``, ``bits_sent``, ``allocation``, ``components``, ``distortion``, ...), the task
    env's info of the step, ``split`` (the shares sent), ``trace`` (the trace's name), the reward
    terms and the invalid-action counts.

    ## Arguments
    | argument | default | meaning |
    |---|---|---|
    | task_agent | (required) | frozen agent: ``act(obs)``, optionally ``reset(seed)`` |
    | task_env_id | ``bwgym/LocateLift-v1`` | the task env (any env with a Dict of views) |
    | task_env_kwargs | ``{"reward_type": "dense"}`` | its ``gymnasium.make`` arguments |
    | codec | ``"ndpca"`` | a registered codec name or a :class:`~bwgym.codecs.core.protocol.Codec` |
    | codec_checkpoint | None | its checkpoint (None: the shipped one) |
    | traces | :func:`default_traces` | a trace, a sequence of traces (one drawn per episode) or a family ``rng -> trace`` |
    | history_steps | 8 | budgets in the observation |
    | success_bonus | 1.0 | reward on the first successful step |
    | bit_cost | 0.0 | reward per kbit sent (subtracted; >= 0) |
    | action_error_weight | 0.0 | reward per unit of action error (subtracted; >= 0) |
    | step_seconds, latency_steps, loss_prob | None, 0, 0.0 | the link, as in ``BandwidthLimited`` |
    | codec_split | False | add the "let the codec split" action (see Action space) |
    | bank | False | "send nothing now, bank the bits": not supported by the link (refused) |

    ``reset(options={"trace": trace})`` runs the episode on a given trace (held-out evaluation),
    ``options={"trace_start_s": t}`` pins the link clock's start. ``reset(seed=s)`` fixes the
    trace drawn, its offset, the link's losses and the task episode.

    ## Version History
    * v0: initial release.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        task_agent: Any,
        task_env_id: str = DEFAULT_TASK_ENV,
        task_env_kwargs: Mapping[str, Any] | None = None,
        codec: Any = "ndpca",
        codec_checkpoint: str | None = None,
        codec_kwargs: Mapping[str, Any] | None = None,
        traces: BandwidthTrace | Sequence[BandwidthTrace] | TraceFamily | None = None,
        history_steps: int = 8,
        success_bonus: float = 1.0,
        bit_cost: float = 0.0,
        action_error_weight: float = 0.0,
        step_seconds: float | None = None,
        latency_steps: int = 0,
        loss_prob: float = 0.0,
        max_age_steps: int = 10,
        codec_split: bool = False,
        bank: bool = False,
    ) -> None:
        import bwgym  # noqa: F401  (registers the task envs)

        _check_reward_arguments(task_agent, bank, success_bonus, bit_cost, action_error_weight)
        kwargs = {"reward_type": "dense"} if task_env_kwargs is None else dict(task_env_kwargs)
        self.task_env_id = task_env_id
        self.task_env_kwargs = kwargs
        task_env = gym.make(task_env_id, **kwargs)
        if not isinstance(task_env.observation_space, spaces.Dict):
            raise TypeError(f"{task_env_id} has no Dict observation space; expected views to allocate over")
        codec = _task_codec(codec, task_env, task_env_id, codec_checkpoint, codec_kwargs)
        self.codec = codec
        self.task_agent = task_agent
        self.view_names: tuple[str, ...] = tuple(codec.view_names)
        self._task_env = task_env
        self._gate = _Gate(task_env)
        dt = step_seconds if step_seconds is not None else getattr(task_env.unwrapped, "dt", None)
        if dt is None:
            raise ValueError(f"{task_env_id} has no `dt` control period; pass step_seconds")
        self.step_seconds = float(dt)
        self.latency_steps = latency_steps
        self.loss_prob = loss_prob
        self.success_bonus = float(success_bonus)
        self.bit_cost = float(bit_cost)
        self.action_error_weight = float(action_error_weight)
        #: The trace family, ``rng -> BandwidthTrace``: one draw per episode.
        self.traces: TraceFamily = _trace_family(traces, self.step_seconds)
        max_steps = getattr(task_env.spec, "max_episode_steps", None) or 50
        self.observer = AllocationObserver(
            self.view_names,
            codec,
            history_steps=history_steps,
            max_steps=max_steps,
            max_age_steps=max_age_steps,
        )
        self._split = _PolicySplit(self.observer)
        self.codec_split = bool(codec_split)
        # Built once to validate codec and link arguments now; rebuilt per episode with its trace.
        self._wrapper = self._bandwidth_limited(self.traces(np.random.default_rng(0)))
        self.observation_space = self.observer.observation_space
        self.action_space = spaces.Box(-1.0, 1.0, (len(self.view_names) + int(self.codec_split),), np.float32)
        self._episode: dict[str, Any] = {}

    def _bandwidth_limited(self, trace: BandwidthTrace) -> BandwidthLimited:
        return BandwidthLimited(
            self._gate,
            self.codec,
            trace,
            allocator=self._split,
            step_seconds=self.step_seconds,
            latency_steps=self.latency_steps,
            loss_prob=self.loss_prob,
        )

    # -- gymnasium API -------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsDict, dict[str, Any]]:
        """Draw a trace, its offset and a task episode from the env's generator; observe step 0."""
        super().reset(seed=seed)
        options = dict(options or {})
        rng = self.np_random
        trace = options.pop(TRACE_OPTION, None)
        drawn = self.traces(rng)  # drawn even when pinned, so the rest of the stream is the same
        trace = drawn if trace is None else trace
        if not isinstance(trace, BandwidthTrace):
            raise TypeError(
                f"options[{TRACE_OPTION!r}] is expected to be a BandwidthTrace, got {type(trace).__name__}"
            )
        task_seed = int(rng.integers(2**31 - 1))
        link_seed = int(rng.integers(2**31 - 1))
        offset = float(rng.uniform(0.0, trace.duration_s))
        if START_OPTION in options:
            offset = float(options.pop(START_OPTION))
        if options:
            raise ValueError(
                f"unknown reset options {sorted(options)}; expected {TRACE_OPTION!r}, {START_OPTION!r}"
            )

        self._wrapper = self._bandwidth_limited(trace)
        obs, _ = self._gate.prefetch_reset(seed=task_seed)
        agent_reset = getattr(self.task_agent, "reset", None)
        if callable(agent_reset):
            agent_reset(task_seed)
        self.observer.reset()
        probe = Link(trace, self.step_seconds)
        probe.reset(start_s=offset)
        budget = int(probe.peek_budget_bits())
        ages = dict.fromkeys(self.view_names, -1)
        self._episode = dict(
            started=False,
            link_seed=link_seed,
            offset=offset,
            trace=trace,
            views={n: obs[n] for n in self.view_names},
            invalid=dict.fromkeys(INVALID_ACTION_REASONS, 0),
            succeeded=False,
            done=False,
        )
        observation = self._observe(budget, step=0, ages=ages)
        info = {
            "trace": trace.name,
            "budget_bits": budget,
            "trace_start_s": offset,
            "invalid_actions": dict(self._episode["invalid"]),
        }
        return observation, info

    def _observe(self, budget: int, step: int, ages: Mapping[str, int]) -> ObsDict:
        self._split.expected_budget = int(budget)
        context = {"step": step, "budget_bits": int(budget), "frame_age_steps": dict(ages)}
        return self.observer.observe(self._episode["views"], int(budget), context)

    def step(self, action: np.ndarray) -> tuple[ObsDict, SupportsFloat, bool, bool, dict[str, Any]]:
        """Send this step's views with the split ``action`` gives, let the task agent act, step the task."""
        episode = self._episode
        if not episode or episode["done"]:
            raise gym.error.ResetNeeded("call reset() before step() (and after the episode ended)")
        split, reason = action_to_split(action, self.view_names, self.codec_split)
        if reason is not None:
            episode["invalid"][reason] += 1
        self._split.pending, self._split.armed = split, True
        if not episode["started"]:
            shown, send_info = self._wrapper.reset(
                seed=episode["link_seed"], options={START_OPTION: episode["offset"]}
            )
            episode["started"] = True
        else:
            shown, _, _, _, send_info = self._wrapper.step(episode["task_action"])

        task_action = self.task_agent.act(shown)
        episode["task_action"] = task_action
        action_error = 0.0
        if self.action_error_weight:
            clean = self.task_agent.act({**shown, **episode["views"]})
            action_error = float(
                np.linalg.norm(np.asarray(task_action, np.float64) - np.asarray(clean, np.float64))
            )
        obs, task_reward, terminated, truncated, task_info = self._gate.prefetch_step(task_action)
        episode["views"] = {n: obs[n] for n in self.view_names}

        success = bool(task_info.get("is_success", False))
        reward_success = self.success_bonus if success and not episode["succeeded"] else 0.0
        episode["succeeded"] = episode["succeeded"] or success
        reward_bits = -self.bit_cost * send_info["bits_sent_total"] / 1000.0
        reward_action = -self.action_error_weight * action_error
        reward = float(task_reward) + reward_success + reward_bits + reward_action

        info = {k: v for k, v in send_info.items() if k not in task_info}
        info.update(task_info)
        info.update(
            split=split,
            invalid_action=reason,
            invalid_actions=dict(episode["invalid"]),
            trace=episode["trace"].name,
            reward_task=float(task_reward),
            reward_success=reward_success,
            reward_bits=reward_bits,
            reward_action=reward_action,
            action_error=action_error,
            is_success=success,
        )
        done = bool(terminated or truncated)
        episode["done"] = done
        ages = {n: (a + 1 if a >= 0 else -1) for n, a in send_info["frame_age_steps"].items()}
        observation = self._observe(
            self._wrapper.link.peek_budget_bits(), step=self._wrapper.link.step_index, ages=ages
        )
        if done:
            self._split.expected_budget = None
        return observation, reward, bool(terminated), bool(truncated), info

    def close(self) -> None:
        """Close the task env."""
        self._task_env.close()
        super().close()


def _check_reward_arguments(
    task_agent: Any, bank: bool, success_bonus: Any, bit_cost: Any, action_error_weight: Any
) -> None:
    """Refuse a task agent without ``act``, banking, and reward weights that are not finite (costs >= 0)."""
    if not callable(getattr(task_agent, "act", None)):
        raise TypeError(f"task_agent is expected to have act(obs) -> action, got {type(task_agent).__name__}")
    if bank:
        raise ValueError(
            "bank=True is not supported: bwgym.traces.Link gives each step the bits of its own "
            "interval and never carries unused bits over to later steps"
        )
    weights = {
        "success_bonus": success_bonus,
        "bit_cost": bit_cost,
        "action_error_weight": action_error_weight,
    }
    for label, value in weights.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float, np.number))
            or not math.isfinite(value)
        ):
            raise ValueError(f"{label} is expected to be a finite number, got {value!r}")
    # The two costs are subtracted: a negative one would pay the policy for bits or for errors.
    for label in ("bit_cost", "action_error_weight"):
        if weights[label] < 0:
            raise ValueError(
                f"{label} is expected to be >= 0 (it is a cost, subtracted), got {weights[label]!r}"
            )


def _task_codec(
    codec: Any,
    task_env: gym.Env,
    task_env_id: str,
    checkpoint: str | None,
    codec_kwargs: Mapping[str, Any] | None,
) -> Any:
    """``codec`` itself, or the registered codec of that name built for the task env's link views."""
    from bwgym.codecs.core.protocol import Codec
    from bwgym.envs.views import link_views

    views = link_views(task_env)
    if isinstance(codec, str):
        from bwgym.codecs import make_codec

        return make_codec(codec, views, env_id=task_env_id, checkpoint=checkpoint, **dict(codec_kwargs or {}))
    if not isinstance(codec, Codec):
        raise TypeError(f"codec is expected to be a codec name or a Codec, got {type(codec).__name__}")
    return codec


def _trace_family(
    traces: BandwidthTrace | Sequence[BandwidthTrace] | TraceFamily | None, step_seconds: float
) -> TraceFamily:
    if traces is None:
        return default_traces(step_seconds)
    if isinstance(traces, BandwidthTrace):
        one = traces
        return lambda rng: one
    if callable(traces):
        return traces
    if isinstance(traces, Sequence) and traces and all(isinstance(t, BandwidthTrace) for t in traces):
        pool = tuple(traces)
        return lambda rng: pool[int(rng.integers(len(pool)))]
    raise TypeError(
        "traces is expected to be a BandwidthTrace, a non-empty sequence of them, or a callable "
        f"rng -> BandwidthTrace, got {type(traces).__name__}"
    )
