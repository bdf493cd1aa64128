"""Agents on the received code at lora_ndpca: success, ablations and per-step cost against decoded pixels.

    python benchmarks/latent_agent.py --episodes 100 --bc-checkpoint runs/latent/bc.ckpt --write

On ``lora_ndpca`` (~115 bits per step, task-aware NDPCA), with the same seeded episodes for every
row (seeds from ``--seed``; neither a demonstration, DAgger nor selection seed of the agents), it
measures the success rate with 95 % Wilson intervals of: the shipped clean-trained BC agent on
the decoded pixels (the scenario as shipped); the latent agent before DAgger (``--bc-checkpoint``,
the ``--bc-out`` of its training, when given); the shipped latent agent (``lora_ndpca_latent``);
and ablations of the latter: each stream's code blanked (zeros, in its history too), the held
code's ages shuffled within the episode, and its history (past codes and own actions) blanked.
Then the receiver's and agent's work per step on the frames of those episodes, one CPU thread:
``decompress`` + BC on the pixels against ``decoded_coefficients`` + the latent agent. With
``--write`` it writes the ``latent_agent`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import shlex
import sys
import time

import numpy as np
from report import machine_line, script_parser, write_section  # noqa: E402  (run as a script)

import bwgym  # noqa: F401  (first: headless GL before mujoco)
from bwgym.envs.latent_views import AGE_KEY


class Ablated:
    """A latent agent acting on an altered observation (one ablation)."""

    def __init__(self, agent, blank=(), shuffle_ages=False, blank_history=False) -> None:
        self.agent, self.blank, self.shuffle_ages, self.blank_history = (
            agent,
            blank,
            shuffle_ages,
            blank_history,
        )
        self.rng, self.ages = np.random.default_rng(0), []
        self.memoryless = False

    def reset(self, seed=None) -> None:
        self.agent.reset(seed)
        self.rng, self.ages = np.random.default_rng([0 if seed is None else seed, 7]), []

    def act(self, obs):
        obs = dict(obs)
        for stream in self.blank:
            obs[stream] = np.zeros_like(obs[stream])
        if self.shuffle_ages:  # the age of a random step of this episode so far, not this step's
            self.ages.append(obs[AGE_KEY])
            obs[AGE_KEY] = self.ages[int(self.rng.integers(len(self.ages)))]
        if self.blank_history:
            self.agent.reset()
        return self.agent.act(obs)


def rate(scenario, seeds, agent=None) -> tuple[int, list[bool], float]:
    """Successes of ``agent`` (None: the scenario's) on ``seeds``, each episode's outcome and env steps/s."""
    from bwgym.agents.base import rollout
    from bwgym.scenarios.factory import make_agent, make_env

    start = time.perf_counter()
    env = make_env(scenario)
    try:
        actor = agent if agent is not None else make_agent(scenario, env)
        results = [rollout(env, actor, seed=s) for s in seeds]
    finally:
        env.close()
    outcomes = [bool(r.success) for r in results]
    return sum(outcomes), outcomes, sum(r.steps for r in results) / (time.perf_counter() - start)


def received_frames(scenario, seeds) -> list:
    """The frames the link delivered in ``seeds`` of ``scenario`` (its own agent acting), as parsed payloads."""
    from bwgym.agents.base import rollout
    from bwgym.codecs.core.protocol import Payload
    from bwgym.scenarios.factory import make_agent, make_env

    env = make_env(scenario)
    agent, frames = make_agent(scenario, env), []
    transmit = env.link.transmit

    def spy(item, nbits):
        result = transmit(item, nbits)
        for d in result.delivered:
            if d.item[2]:
                frames.append(Payload.from_bytes(d.item[2], codec=env.codec.name, session=env.codec.session))
        return result

    env.link.transmit = spy
    for s in seeds:
        rollout(env, agent, seed=s)
    return env, frames


def per_step_ms(work, frames, rounds: int = 3) -> float:
    """Median over ``rounds`` of the milliseconds ``work(frame)`` takes per frame."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for f in frames:
            work(f)
        times.append((time.perf_counter() - start) / len(frames) * 1e3)
    return float(np.median(times))


def main() -> None:
    import torch

    from bwgym.agents.bc import BCAgent
    from bwgym.agents.latent_bc import LatentBCAgent
    from bwgym.common.stats import paired_difference, wilson_interval
    from bwgym.scenarios.config import load_scenario

    parser = script_parser(__doc__)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20_000, help="first episode seed")
    parser.add_argument("--bc-checkpoint", default=None, help="the latent agent before DAgger (--bc-out)")
    parser.add_argument("--ablation-episodes", type=int, default=None, help="episodes per ablation row")
    parser.add_argument("--write", action="store_true", help="write the section of BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = list(range(args.seed, args.seed + args.episodes))
    pixels, latent = load_scenario("lora_ndpca"), load_scenario("lora_ndpca_latent")

    def row(label, scenario, agent=None, over=seeds):
        wins, outcomes, speed = rate(scenario, over, agent)
        low, high = wilson_interval(wins, len(over))
        print(f"{label}: {wins}/{len(over)} at {speed:.0f} steps/s", flush=True)
        return dict(label=label, wins=wins, n=len(over), low=low, high=high, outcomes=outcomes, speed=speed)

    rows = [row("clean-trained BC on decoded pixels (`lora_ndpca`)", pixels)]
    if args.bc_checkpoint:
        bc_latent = LatentBCAgent.load(args.bc_checkpoint)
        rows.append(row("latent agent, BC only (before DAgger)", latent, bc_latent))
    rows.append(row("latent agent, BC + DAgger (`lora_ndpca_latent`)", latent))
    shipped = rows[-1]

    from bwgym.scenarios.factory import make_agent, make_env

    env = make_env(latent)
    agent = make_agent(latent, env)
    env.close()
    over = seeds[: args.ablation_episodes or args.episodes]
    ablations = [
        row(f"ablation: {s} code blanked", latent, Ablated(agent, blank=(s,)), over) for s in ("arm", "side")
    ]
    ablations.append(
        row("ablation: code ages shuffled in the episode", latent, Ablated(agent, shuffle_ages=True), over)
    )
    if agent.arch["history_steps"]:
        ablations.append(
            row(
                "ablation: history (past codes, own actions) blanked",
                latent,
                Ablated(agent, blank_history=True),
                over,
            )
        )
    diff = paired_difference(shipped["outcomes"], rows[0]["outcomes"])

    # Receiver + agent per step on the frames the link delivered (one thread).
    penv, frames = received_frames(pixels, seeds[:10])
    codec, bc = penv.codec, BCAgent.load_shipped("bwgym/LocateLift-v1")
    lenv = make_env(latent)
    views = lenv.latent_views
    ages = dict.fromkeys(codec.view_names, 0)
    agent.reset()
    pixel_ms = per_step_ms(lambda f: bc.act(codec.decompress(f)), frames)
    latent_ms = per_step_ms(lambda f: agent.act(views.observation({}, views.decode(f), ages)), frames)
    decode_ms = per_step_ms(codec.decompress, frames)
    code_ms = per_step_ms(views.decode, frames)
    penv.close()
    lenv.close()

    def table(rs):
        lines = ["| agent | success | 95 % Wilson | episodes | loop steps/s |", "|---|---|---|---|---|"]
        lines += [
            f"| {r['label']} | {r['wins'] / r['n']:.2f} | [{r['low']:.2f}, {r['high']:.2f}] | {r['n']} "
            f"| {r['speed']:.0f} |"
            for r in rs
        ]
        return "\n".join(lines)

    command = "python benchmarks/latent_agent.py " + shlex.join(sys.argv[1:])
    body = f"""## Agents on the received code at `lora_ndpca` (issue 27)

Command: `{command}`. {machine_line()} CPU, torch on one thread.

`lora_ndpca`: ~115 bits per 0.04 s step on the LoRa trace, task-aware NDPCA (~20 arm and ~5 side
components per frame). Episode seeds {seeds[0]}..{seeds[-1]}, the same for every row, none of them a
demonstration, DAgger or selection seed. The latent agent (`bwgym.agents.latent_bc`, shipped as
`latent_bc_locate_lift_v1_lora_ndpca.ckpt`, its command in `bwgym zoo`) is an MLP on the code the
receiver holds (`link: {{observation: latent}}`), history {agent.arch["history_steps"]} steps.

{table(rows)}

Latent agent (BC + DAgger) minus clean-trained BC, paired on the episodes: {diff["difference"]:+.2f}
[{diff["low"]:+.2f}, {diff["high"]:+.2f}], McNemar p = {diff["p_value"]:.2g} ({diff["a_only"]} episodes won only by
the latent agent, {diff["b_only"]} only by BC). `loop steps/s`: the whole loop (env, sender, link,
receiver, agent) over the row's episodes.

Ablations of the shipped latent agent (first {len(over)} of those seeds):

{table(ablations)}

Receiver + agent per step, on the {len(frames)} frames the link delivered in 10 of those episodes
(ms, median of 3 passes): decoded pixels + BC {pixel_ms:.2f} (of it `decompress` {decode_ms:.2f}),
received code + latent agent {latent_ms:.2f} (of it `decoded_coefficients` {code_ms:.2f}): the latent
path costs {latent_ms / pixel_ms:.2f} of the pixel path. The sender's encoder and rate search are the
same in both.
"""
    print(body)
    if args.write:
        write_section("latent_agent", body)


if __name__ == "__main__":
    main()
