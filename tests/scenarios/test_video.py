import importlib.util
import math

import pytest
from PIL import Image

from bwgym.cli import main
from bwgym.scenarios.config import load_scenario
from bwgym.scenarios.runner import run_scenario
from bwgym.scenarios.video import episode_frames, write_episode_video


@pytest.fixture
def scenario_path(tiny_scenario):
    return tiny_scenario()


def test_gif_has_one_frame_per_step_plus_reset_of_the_runners_episode(scenario_path, tmp_path):
    scenario = load_scenario(scenario_path, {"trace.scale": 4.0})
    run = run_scenario(scenario, tmp_path / "run", progress=False, plots=False)
    for episode in (0, 1):
        path = write_episode_video(scenario, tmp_path / f"episode_{episode}.gif", episode=episode)
        steps = int(run.episodes.steps[episode])
        with Image.open(path) as gif:
            assert gif.format == "GIF" and gif.n_frames == steps + 1
            assert gif.info["duration"] == 40  # real time: one frame per 0.04 s step


def _tiles(frame, size=32):
    from bwgym.scenarios import video

    tile = size * max(1, math.ceil(120 / size))
    top, x = video._LINE_H + video._PAD, video._LABEL_W
    second = top + tile + video._LINE_H + video._PAD
    return frame[top : top + tile, x : x + tile], frame[second : second + tile, x : x + tile]


def test_frames_show_true_and_decoded_views(scenario_path):
    # A link too thin for any JPEG pair: the agent sees black (nothing ever arrived), the sensor does not.
    frames = episode_frames(load_scenario(scenario_path, {"trace.scale": 0.01}))
    assert len({f.shape for f in frames}) == 1 and frames[0].dtype == "uint8"
    true, decoded = _tiles(frames[-1])
    assert true.max() > 0 and decoded.max() == 0
    # No codec, no link: the agent sees the true views.
    frames = episode_frames(load_scenario(scenario_path, {"codec.name": "none"}))
    true, decoded = _tiles(frames[-1])
    assert (true == decoded).all() and true.max() > 0


def test_video_path_checks(scenario_path, tmp_path):
    scenario = load_scenario(scenario_path)
    with pytest.raises(ValueError, match=r"\.gif or \.mp4"):
        write_episode_video(scenario, tmp_path / "x.avi")
    if importlib.util.find_spec("imageio_ffmpeg") is None:
        with pytest.raises(ModuleNotFoundError, match="imageio-ffmpeg"):
            write_episode_video(scenario, tmp_path / "x.mp4")


def test_cli_run_video_writes_the_gif_and_prints_its_path(scenario_path, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(scenario_path), "--episodes", "1", "--out", str(out), "--video"]) == 0
    gif = out / "plots" / "episode_000.gif"
    assert gif.is_file() and str(gif) in capsys.readouterr().out
