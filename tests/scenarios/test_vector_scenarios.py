"""Vector scenarios: N envs stepped together give the table of N single envs, row by row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bwgym.codecs.core.protocol import Payload
from bwgym.envs.bandwidth import BandwidthLimited, VectorBandwidthLimited
from bwgym.scenarios.config import ConfigError, load_scenario
from bwgym.scenarios.factory import make_env, make_vector_env
from bwgym.scenarios.runner import run_scenario


def _tables(scenario, out):
    result = run_scenario(scenario, out, progress=False, plots=False)
    return result.episodes, pd.read_parquet(result.out_dir / "steps.parquet")


def test_vector_run_gives_the_single_env_table(tmp_path, tiny_scenario):
    path = tiny_scenario(agent="random", episodes=5)
    one = _tables(load_scenario(path), tmp_path / "one")
    three = _tables(load_scenario(path, {"run.num_envs": 3}), tmp_path / "three")
    pd.testing.assert_frame_equal(one[0], three[0])
    pd.testing.assert_frame_equal(one[1], three[1])


@pytest.mark.slow
def test_vector_lora_ndpca_matches_single_envs_row_by_row(tmp_path):
    """The main job's loop (NDPCA + link + BC) on 4 envs at once: the same episodes as one at a time."""
    overrides = {"run.episodes": 5, "run.seed": 100}
    one = _tables(load_scenario("lora_ndpca", overrides), tmp_path / "one")
    four = _tables(load_scenario("lora_ndpca", {**overrides, "run.num_envs": 4}), tmp_path / "four")
    pd.testing.assert_frame_equal(one[0], four[0])
    pd.testing.assert_frame_equal(one[1], four[1])
    assert one[0].mean_bits_sent.gt(0).all()


def test_vector_run_with_losses_and_latency_gives_the_single_env_table(tmp_path, tiny_scenario):
    """Each env's link draws its own losses and delays its own frames: held frames and sessions match."""
    path = tiny_scenario(agent="random", episodes=4)
    link = {
        "link.loss_prob": 0.3,
        "link.latency_steps": 2,
        "codec.name": "linear_dpca",  # lean frames under a session, at 84 px
        "env.kwargs": {"image_size": 84},
    }
    one = _tables(load_scenario(path, link), tmp_path / "one")
    two = _tables(load_scenario(path, {**link, "run.num_envs": 2}), tmp_path / "two")
    pd.testing.assert_frame_equal(one[0], two[0])
    pd.testing.assert_frame_equal(one[1], two[1])
    assert one[1]["lost"].any() and one[1]["dropped.arm"].any()


def test_shared_stateless_codec_and_per_env_links(tiny_scenario):
    venv = make_vector_env(load_scenario(tiny_scenario(agent="random")), num_envs=3)
    assert isinstance(venv, VectorBandwidthLimited) and venv.shared_codec is venv.envs[0].codec
    assert len({id(env.link) for env in venv.envs}) == 3
    obs, infos = venv.reset(seed=[1, 2, 3])
    assert obs["arm"].shape[0] == 3 and infos["_budget_bits"].all()
    venv.close()


def test_autoreset_and_reset_mask_keep_links_and_sessions_apart():
    """An env reset mid-batch starts a new link clock and session; the others go on untouched."""
    scenario = load_scenario("lora_ndpca", {"trace.scale": 4.0})
    venv = make_vector_env(scenario, num_envs=2)
    venv.reset(seed=[7, 8])
    actions = np.zeros((2, 4), np.float32)
    for _ in range(4):
        venv.step(actions)
    other = venv.envs[1]
    before = (other.link.step_index, other.transport.tx_session, other._shown_step.copy())
    assert venv.envs[0].transport.tx_session is not None  # the session header went through
    venv.reset(seed=[9, None], options={"reset_mask": np.array([True, False])})
    assert venv.envs[0].link.step_index == 1 and venv.env_infos[0]["session_bits"] > 0
    assert (other.link.step_index, other.transport.tx_session, other._shown_step) == before
    venv.step(actions)
    assert venv.env_infos[1]["session_bits"] == 0 and other.link.step_index == before[0] + 1
    # the single env with seed 9 sees what env 0 saw after its reset
    single = make_env(scenario)
    single.reset(seed=9)
    obs, *_, info = single.step(actions[0])
    assert info["bits_sent_total"] == venv.env_infos[0]["bits_sent_total"]
    venv.close()


def test_env_whose_episode_ended_autoresets_on_the_next_step(tiny_scenario):
    venv = make_vector_env(load_scenario(tiny_scenario(agent="random")), num_envs=2)
    venv.reset(seed=0)
    actions = np.zeros((2, *venv.single_action_space.shape), np.float32)
    done_at = None
    for t in range(200):
        _, rewards, terminated, truncated, _ = venv.step(actions)
        if terminated[0] or truncated[0]:
            done_at = t
            break
    assert done_at is not None
    _, rewards, terminated, truncated, _ = venv.step(actions)
    assert rewards[0] == 0.0 and not terminated[0] and not truncated[0]
    assert venv.envs[0].link.step_index == 1  # reset, then its first frame sent
    venv.close()


def test_stateful_codec_gets_one_instance_per_env_and_says_so():
    scenario = load_scenario("sensors_narrowband_predictive")
    with pytest.warns(UserWarning, match="own codec instances"):
        venv = make_vector_env(scenario, num_envs=2)
    assert venv.shared_codec is None and venv.envs[0].codec is not venv.envs[1].codec
    venv.close()


def test_bad_num_envs_and_device_are_refused():
    with pytest.raises(ConfigError, match="run.num_envs"):
        load_scenario("lora_ndpca", {"run.num_envs": 0})
    with pytest.raises(ConfigError, match="MAX_NUM_ENVS"):
        load_scenario("lora_ndpca", {"run.num_envs": 65})
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="run.device.*no.*CUDA|run.device.*has none"):
            load_scenario("lora_ndpca", {"run.device": "cuda"})
    with pytest.raises(ConfigError, match="run.device"):
        load_scenario("lora_ndpca", {"run.device": "gpu0"})


def test_vector_env_refuses_mixed_envs(tiny_scenario):
    scenario = load_scenario(tiny_scenario(agent="random"))
    env = make_env(scenario)
    assert isinstance(env, BandwidthLimited)
    with pytest.raises(ValueError, match="at least one env"):
        VectorBandwidthLimited([])
    with pytest.raises(TypeError, match="not a BandwidthLimited"):
        VectorBandwidthLimited([env, env.env])
    assert isinstance(Payload.empty("jpeg"), Payload)


def test_agent_acts_on_the_batch_off_cpu_and_per_env_on_cpu():
    from types import SimpleNamespace

    from gymnasium import spaces

    from bwgym.scenarios.run_folder import act_all

    class Agent:
        memoryless = True

        def __init__(self, device: str) -> None:
            self.device, self.calls = SimpleNamespace(type=device), []

        def act(self, obs):
            self.calls.append("act")
            return obs["x"].astype(np.float32)[:2]

        def act_batch(self, obs):
            self.calls.append("batch")
            return obs["x"].astype(np.float32)[:, :2]

    obs = {"x": np.arange(12).reshape(3, 4)}
    active = np.array([True, False, True])
    space = spaces.Box(-1, 1, (2,))
    for device, calls in (("cuda", ["batch"]), ("cpu", ["act", "act"])):
        agent = Agent(device)
        actions = act_all([agent] * 3, obs, active, space)
        assert agent.calls == calls
        np.testing.assert_array_equal(actions, [[0, 1], [0, 0], [8, 9]])
