import pytest
import yaml

from bwgym.scenarios.config import (
    ConfigError,
    Scenario,
    library_scenarios,
    load_scenario,
    scenario_from_dict,
    scenario_to_dict,
)


def write(tmp_path, data, name="s.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_and_round_trip():
    scenario = scenario_from_dict({"name": "x"})
    assert isinstance(scenario, Scenario)
    assert scenario.env.id == "bwgym/LocateLift-v1" and scenario.run.episodes == 20
    assert scenario_from_dict(scenario_to_dict(scenario)) == scenario


def test_unknown_key_names_the_path_and_suggests():
    with pytest.raises(ConfigError, match=r"codec\.nmae: unknown key\. Did you mean 'name'\?"):
        scenario_from_dict({"name": "x", "codec": {"nmae": "jpeg"}})


def test_wrong_type_names_the_path_and_the_expected_type():
    with pytest.raises(ConfigError, match=r"run\.episodes: expected int, got 'ten'"):
        scenario_from_dict({"name": "x", "run": {"episodes": "ten"}})
    with pytest.raises(ConfigError, match=r"link\.loss_prob: expected float, got True"):
        scenario_from_dict({"name": "x", "link": {"loss_prob": True}})


@pytest.mark.parametrize(
    "data, match",
    [
        ({"run": {"episodes": 0}}, r"run\.episodes: invalid value 0"),
        ({"link": {"loss_prob": 1.0}}, r"link\.loss_prob"),
        ({"trace": {"scale": -1.0}}, r"trace\.scale"),
        ({"trace": {"source": "lte_drive", "generator": "constant"}}, "not both"),
    ],
)
def test_bad_values(data, match):
    with pytest.raises(ConfigError, match=match):
        scenario_from_dict({"name": "x", **data})


@pytest.mark.parametrize(
    "section, match",
    [
        (
            {"codec": {"name": "jpg"}},
            r"codec\.name: unknown value 'jpg'\. Did you mean 'jpeg'\? Valid choices:",
        ),
        ({"agent": {"name": "ppo2"}}, r"agent\.name: unknown value 'ppo2'.*Valid choices: .*bc"),
        (
            {"env": {"id": "bwgym/LocateLift-v9"}},
            r"env\.id: unknown value 'bwgym/LocateLift-v9'.*LocateLift-v0",
        ),
        ({"allocator": {"name": "greedy"}}, r"allocator\.name: unknown value 'greedy'"),
        (
            {"trace": {"source": "no_such_trace"}},
            r"trace\.source: 'no_such_trace' is neither a file nor a library",
        ),
        (
            {"trace": {"source": None, "generator": "gilbert"}},
            r"trace\.generator: unknown value 'gilbert'.*gilbert_elliott",
        ),
        (
            {"agent": {"name": "bc", "checkpoint": "missing.pt"}},
            r"agent\.checkpoint: checkpoint 'missing.pt' does not exist",
        ),
    ],
)
def test_load_rejects_unknown_names_before_running(tmp_path, section, match):
    path = write(tmp_path, {"name": "x", **section})
    with pytest.raises(ConfigError, match=match):
        load_scenario(path)


def test_load_applies_overrides_and_resolves_relative_trace(tmp_path):
    (tmp_path / "t.csv").write_text("time_s,kbps\n0,10\n1,20\n2,\n")
    path = write(tmp_path, {"name": "x", "trace": {"source": "t.csv"}})
    scenario = load_scenario(path, {"run.episodes": 3, "codec.name": "raw"})
    assert scenario.run.episodes == 3 and scenario.codec.name == "raw"
    assert scenario.trace.source == str((tmp_path / "t.csv").resolve())


def test_unknown_library_scenario_suggests():
    names = list(library_scenarios())
    assert names, "the library ships scenarios"
    with pytest.raises(ConfigError, match="Did you mean"):
        load_scenario(names[0] + "x")


def test_every_library_scenario_parses():
    for name in library_scenarios():
        scenario = load_scenario(name)
        assert scenario.name == name and scenario.description and scenario.regime
