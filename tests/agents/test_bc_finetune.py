"""DAgger on decoded views: the shipped BC agent fine-tuned where a codec and a link feed it."""

from __future__ import annotations

import functools
import json

import pytest
import torch

import bwgym  # noqa: F401
from bwgym.agents.bc import SHIPPED_CHECKPOINT, BCAgent
from bwgym.agents.dagger import finetune_bc
from bwgym.cli import main
from bwgym.scenarios.config import load_scenario
from bwgym.scenarios.factory import count_successes, make_env

ENV_ID = "bwgym/LocateLift-v1"
SHIPPED_DIR = SHIPPED_CHECKPOINT.parent


def test_agent_of_another_env_is_refused_naming_both():
    agent = BCAgent.load_shipped("bwgym/LocateLift-v0")
    with pytest.raises(ValueError, match=r"LocateLift-v0.*LocateLift-v1|LocateLift-v1.*LocateLift-v0"):
        finetune_bc(agent, functools.partial(make_env, load_scenario("lora_ndpca")), progress=False)


@pytest.mark.slow
def test_cli_finetunes_on_a_mixture_of_views_and_lowers_the_held_out_error(tmp_path):
    out = tmp_path / "bc_lora.ckpt"
    command = (
        f"train agent --algo bc --env {ENV_ID} --scenario lora_ndpca,uncompressed --dagger-rounds 1 "
        "--dagger-episodes 12 --epochs 4 --lr 1e-3 --eval-episodes 2 --threads 1"
    )
    status = main([*command.split(), "--log-dir", str(tmp_path / "tb"), "--out", str(out)])
    assert status == 0
    report = json.loads(out.with_suffix(".json").read_text())
    history = report["train_config"]["finetune"]["history"]
    # Held-out decoded episodes, labelled by the expert: the clean-trained prior errs on them,
    # and four epochs on twelve episodes already lower that error.
    assert history[1]["val_mse"] < history[0]["val_mse"]
    assert history[1]["train_steps"] >= 12
    # Two scenarios take turns (episode i in scenario i mod 2); each is evaluated on its own.
    assert [e["views"] for e in report["eval"]] == ["decoded (lora_ndpca)", "decoded (uncompressed)"]
    assert "--scenario lora_ndpca,uncompressed" in report["command"]

    tuned = BCAgent.load(out, env_id=ENV_ID)
    shipped = BCAgent.load_shipped(ENV_ID)
    assert tuned.spec == shipped.spec
    # The policy kept is the one with the best rollout success (the start included).
    finetune = report["train_config"]["finetune"]
    scores = [h["rollout_success"] for h in history]
    assert finetune["selected_round"] == max(range(len(scores)), key=lambda i: (scores[i], i))
    assert [h["rollout_episodes"] for h in history] == [6 + 12, 12]
    unchanged = all(torch.equal(p, shipped.state_dict()[k]) for k, p in tuned.state_dict().items())
    assert unchanged == (finetune["selected_round"] == 0)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_shipped_fine_tuned_agents_hold_the_clean_trained_twin_on_decoded_views():
    """The control for the shipped fine-tuned agents: same scenarios, same held-out seeds, BC twin.

    ``bc_locate_lift_v1_narrowband_ndpca`` is tuned on narrowband views only;
    ``bc_locate_lift_v1_narrowband_clean`` on narrowband and clean views in turn, and keeps the
    clean-view success. With the task-aware codec retrained (reconstruction weighted 300) the
    clean-trained twin already succeeds in ~0.8 of narrowband episodes, and DAgger's gain depends
    on the seeds (here 47 / 48 / 50 of 60 for twin / DAgger / mixture; 76 / 92 of 100 on the
    reported seeds 50000..): what is checked is that fine-tuning does not cost narrowband success,
    that the scenario still costs the twin episodes, and that the mixture keeps the clean views.
    (With the first task-aware codec, whose PSNR was 8 dB lower, DAgger added 0.31.)
    """
    seeds = range(60_000, 60_060)  # neither a DAgger, a validation nor a reported evaluation seed
    mixed = BCAgent.load(SHIPPED_DIR / "bc_locate_lift_v1_narrowband_clean.ckpt", env_id=ENV_ID)

    def wins(name: str, agent: BCAgent | None = None, over: range = seeds) -> int:
        return count_successes(load_scenario(name), over, agent)

    twin = wins("narrowband_ndpca")
    assert twin <= 54, "the twin no longer loses on narrowband views: the scenario is not bandwidth-limited"
    assert wins("narrowband_ndpca_dagger") >= twin - 2
    assert wins("narrowband_ndpca", mixed) >= twin - 2
    assert wins("uncompressed", mixed, range(60_000, 60_030)) >= 27
