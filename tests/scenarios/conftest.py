import pytest
import yaml


@pytest.fixture
def tiny_scenario(tmp_path):
    """Write a small, fast scenario YAML (32 px views, JPEG over a bursty generated trace)."""

    def make(agent: str = "expert", episodes: int = 2, seed: int = 10, name: str = "tiny"):
        data = {
            "name": name,
            "description": "test scenario",
            "regime": "bursty: 200 to 10,000 bits per step",
            "env": {"id": "bwgym/LocateLift-v0", "kwargs": {"image_size": 32}},
            "trace": {
                "source": None,
                "generator": "gilbert_elliott",
                "params": {"good_bps": 250_000.0, "bad_bps": 5_000.0, "duration_s": 30.0, "seed": 3},
            },
            "codec": {"name": "jpeg"},
            "agent": {"name": agent},
            "run": {"episodes": episodes, "seed": seed},
        }
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    return make
