"""How often the k-step lookahead oracle sends the split the one-step criterion ranks first.

    python benchmarks/allocation_lookahead.py --k 2,3 --episodes 10 \\
        --points lora_narrowband:150,lora_narrowband:200,lora_narrowband:300,gilbert_elliott:200

Runs ``oracle_kK`` (:class:`~bwgym.envs.allocators.LookaheadOracleAllocator`, ``--keep`` candidates
expanded per step) on the held-out points of ``benchmarks/allocation.py`` (the same traces, the BC
agent, shipped NDPCA; episode i: seed i) and counts, at every step, whether the split it sends is the
one of least one-step distance in the same state (its ``last_scores``): where the two differ the
lookahead changed the decision. Prints a markdown table (steps, agreement, success rate); writes
nothing else.
"""

from __future__ import annotations

import sys
import time

from allocation import ENV_ID, family_trace  # noqa: E402  (run as a script)
from report import script_parser  # noqa: E402  (run as a script)

import bwgym  # noqa: F401  (first: headless GL before mujoco)


def agreement(k: int, keep: int, family: str, bits: float, episodes: int) -> dict:
    """Steps, steps where the lookahead sent the one-step choice, and successes of ``episodes`` episodes."""
    import gymnasium as gym

    from bwgym.agents.allocation import default_task_agent
    from bwgym.agents.base import rollout
    from bwgym.codecs import make_codec
    from bwgym.envs.allocators import LookaheadOracleAllocator
    from bwgym.envs.bandwidth import BandwidthLimited
    from bwgym.envs.views import link_views

    env = gym.make(ENV_ID)
    codec = make_codec("ndpca", link_views(env), env_id=ENV_ID)
    oracle = LookaheadOracleAllocator(default_task_agent(ENV_ID), codec, env, k=k, keep=keep)
    linked = BandwidthLimited(env, codec, family_trace(family, bits), allocator=oracle)
    oracle.bind_link(linked.link)
    counts = {"steps": 0, "same": 0}

    def on_step(step, obs, action, reward, info):
        # one allocator call per step (the reset's included): compare its two rankings of that state
        counts["steps"] += 1
        one_step = min(oracle.last_scores, key=oracle.last_scores.get)
        counts["same"] += one_step == min(oracle.last_totals, key=oracle.last_totals.get)

    agent = default_task_agent(ENV_ID)
    wins = sum(bool(rollout(linked, agent, seed=e, on_step=on_step).success) for e in range(episodes))
    env.close()
    return dict(counts, successes=wins)


def main() -> None:
    import torch

    parser = script_parser(__doc__)
    parser.add_argument("--k", default="2", help="steps looked ahead, comma-separated")
    parser.add_argument("--keep", type=int, default=2, help="candidates expanded per step")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--points", default="lora_narrowband:150", help="FAMILY:BITS,...")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| k | family | bits_per_step | episodes | steps | sent the one-step choice | success |")
    print("|---|---|---|---|---|---|---|")
    for k in (int(v) for v in args.k.split(",")):
        for point in args.points.split(","):
            family, bits = point.split(":")
            t0 = time.perf_counter()
            r = agreement(k, args.keep, family, float(bits), args.episodes)
            print(
                f"| {k} | {family} | {float(bits):.0f} | {args.episodes} | {r['steps']} | "
                f"{r['same'] / r['steps']:.2f} | {r['successes']}/{args.episodes} |",
                flush=True,
            )
            print(f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
