"""LocateLift: find a yellow brick on a table with two cameras and lift it (NDPCA paper, Sec. 5)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces
from gymnasium.utils import EzPickle

from bwgym.envs.rendering import MultiCameraRenderer

__all__ = ["CAMERAS", "LocateLiftEnv"]

#: Cameras the scene has. ``arm`` rides on the wrist; the others are fixed.
CAMERAS = ("arm", "side", "front", "top")
MAX_DISTRACTORS = 3
_FINGER_OPEN_M = 0.045
_REST_Z_M = 0.02  # brick centre when it rests on the table
_LIFT_SUCCESS_M = 0.08
# Where the gripper may be commanded (gripper body origin; the fingertips are 4.5 cm lower).
_WORKSPACE_LOW = np.array([-0.22, -0.25, 0.045])
_WORKSPACE_HIGH = np.array([0.22, 0.25, 0.32])
# Arm geometry of the MJCF (shoulder position, link lengths, wrist-to-gripper offset).
_SHOULDER = np.array([-0.45, 0.0, 0.28])
_UPPER_ARM_M = 0.34
_FOREARM_M = 0.34
_WRIST_TO_GRIPPER_M = 0.07


def _region(
    name: str, region: Sequence[Sequence[float]], low: np.ndarray, high: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(low corner, high corner)`` as float arrays, checked to be ordered and inside ``[low, high]``."""
    try:
        lo, hi = (np.asarray(corner, dtype=np.float64) for corner in region)
    except (TypeError, ValueError):
        lo = hi = np.empty(0)
    if lo.shape != low.shape or hi.shape != low.shape:
        raise ValueError(
            f"{name} must be (low corner, high corner) of {low.size} values each, got {region!r}"
        )
    if not (np.all(np.isfinite(lo)) and np.all(lo <= hi) and np.all(lo >= low) and np.all(hi <= high)):
        raise ValueError(
            f"{name} must have low <= high, inside the workspace {low.tolist()}..{high.tolist()}, "
            f"got {lo.tolist()}..{hi.tolist()}"
        )
    return lo, hi


def _image_size(size: int | tuple[int, int]) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    for v in (height, width):
        if not 16 <= int(v) <= 512:
            raise ValueError(f"image_size must be between 16 and 512 pixels per side, got {size!r}")
    return int(height), int(width)


class LocateLiftEnv(gym.Env[dict[str, np.ndarray], np.ndarray], EzPickle):
    """Locate a yellow brick on a table from camera views and lift it.

    The "locate and lift" task of Li et al., *Task-aware Distributed Source Coding under Dynamic
    Bandwidth* (NeurIPS 2023): an arm camera and a side camera watch a table with one yellow brick
    at a random place; the agent moves the gripper over it, grasps it and lifts it. The scene is a
    light MJCF of its own (``assets/locate_lift.xml``): a 5-joint capsule arm whose gripper follows a
    Cartesian target through a mocap weld, as in the Fetch tasks the paper used.

    ## Action space
    ``Box(-1, 1, (4,), float32)``; values outside [-1, 1] are clipped.

    | index | meaning |
    |---|---|
    | 0-2 | gripper displacement x, y, z, scaled by ``max_step_m`` (default 4 cm per step) |
    | 3 | finger opening target: -1 closed, +1 fully open (4.5 cm per finger) |

    ## Observation space
    ``Dict`` with one ``uint8 (H, W, 3)`` image per camera in ``cameras`` (default ``arm``, ``side``;
    ``front`` and ``top`` exist for K > 2 views) and, with ``proprio=True``, a ``float32 (7,)`` vector
    ``proprio`` = gripper position (3, m), finger opening (1, m), gripper velocity (3, m/s).

    ## Rewards
    ``reward_type="sparse"``: 1 on the step the brick is lifted, else 0. ``reward_type="dense"``
    (for RL): ``reward_reach + reward_grasp + reward_lift``, each in ``info``:
    ``0.25 * (1 - tanh(10 d))`` with ``d`` the fingertip-to-brick distance in m, ``0.25`` while
    both fingers touch the brick, ``0.5 * min(height above rest / 8 cm, 1)``.

    ## Episode end
    ``info["is_success"]``: both fingers touch the brick and it is at least 8 cm above its rest
    height. Success terminates the episode (``terminate_on_success=True``), as does the brick falling
    off the table (failure). The 50-step limit is a truncation applied by ``TimeLimit`` at
    registration. One control step is ``dt = 0.04`` s (10 physics steps of 4 ms).

    ## Arguments
    | argument | default | meaning |
    |---|---|---|
    | cameras | ("arm", "side") | views, any of ``CAMERAS`` |
    | image_size | 84 | pixels per side, or (height, width); 16 to 512 |
    | proprio | False | add the ``proprio`` vector |
    | reward_type | "sparse" | "sparse" or "dense" |
    | n_distractors | 0 | red, blue, green cubes on the table (0 to 3) |
    | terminate_on_success | True | end the episode on success |
    | max_step_m | 0.04 | gripper displacement per unit action |
    | render_mode | None | "rgb_array": the views side by side |
    | xml_file | None | another MJCF with the same named bodies, joints and cameras |
    | arm_fovy | None: the MJCF's, 78 (v1: 35.0) | vertical field of view of the wrist camera, degrees |
    | brick_region | ((-0.12, -0.15), (0.15, 0.15)) (v1: ((-0.16, -0.20), (0.19, 0.20))) | brick x, y box (m) |
    | gripper_start_region | ((-0.15, -0.12, 0.18), (0.05, 0.12, 0.26)) (v1: ((-0.20, -0.18, 0.26), (0.10, 0.18, 0.30))) | gripper start box (m) |
    | max_finger_opening_m | 0.045 (v1: 0.03) | finger travel at action[3] = +1 (per finger, m) |
    | min_start_distance_m | 0.0 (v1: 0.15) | least horizontal gripper-to-brick distance at reset (m) |

    ## Version History
    * v1 (``bwgym/LocateLift-v1``, same class, the registration's kwargs
      ``bwgym.envs.LOCATE_LIFT_V1_KWARGS``): both views are needed (issue 11). In v0 the arm camera
      (78 degrees, starting 18-26 cm up) sees the brick at reset in 82 % of episodes, and the
      shipped BC agent ignores the side view (success 1.00 with it blanked). v1 changes the defaults
      of five constructor arguments, and nothing else:

      - *Locating needs the side view.* The wrist camera narrows to 35 degrees, the brick region
        widens to 35 x 40 cm, and the gripper starts 16-22 cm up (v0: 18-26), over a wider box and at
        least 15 cm (horizontally) from the brick. From there the wrist camera sees a patch of table
        about 12 cm across: the brick is in the first arm frame in none of seeds 0-199 (yellow-pixel
        count; 82 % in v0), and a gripper heading straight for the table centre at start height, not
        knowing where the brick is, sees it in 23 of 100 episodes (seeds 30000-30099). The fixed side
        camera sees the brick at reset in 98.5 % of episodes (the gripper hides it in the others,
        until it moves).
      - *Grasping needs the arm view.* The fingers open 3 cm each instead of 4.5 (a 6 cm gap around
        the 4 cm brick), so the gripper must be centred within about 1 cm instead of 2.5: the expert
        aiming 1 / 1.5 / 2 / 2.5 cm beside a squared-up brick grasps it in 19 / 4 / 11 / 4 of 20
        episodes in v1 (a finger lands on the brick and only sometimes tips it into the gap), in 20 of
        20 in v0. The side camera, ~50 cm away, draws the 4 cm brick 5-10 pixels wide at 84 px (4-8 mm
        per pixel); from 8-10 cm above the brick the narrow wrist camera draws it 75-84 pixels wide,
        so the last centimetres are resolved there.

      Rendering cost, views (84 px, ``arm`` and ``side``), spaces, dynamics, rewards and the
      50-step limit are those of v0. The scripted expert centres to half the finger slack
      (5 mm in v1, 12 mm in v0). Both views are needed in v1: blanking or freezing either one
      costs the shipped BC agent most of its success (``benchmarks/ablation.py``, BENCHMARKS.md
      "View ablation"; ``tests/envs/test_lift_v1.py`` keeps the control).
    * v0: initial release.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}

    def __init__(
        self,
        cameras: tuple[str, ...] | list[str] = ("arm", "side"),
        image_size: int | tuple[int, int] = 84,
        proprio: bool = False,
        reward_type: str = "sparse",
        n_distractors: int = 0,
        terminate_on_success: bool = True,
        max_step_m: float = 0.04,
        render_mode: str | None = None,
        xml_file: str | Path | None = None,
        arm_fovy: float | None = None,
        brick_region: Sequence[Sequence[float]] = ((-0.12, -0.15), (0.15, 0.15)),
        gripper_start_region: Sequence[Sequence[float]] = ((-0.15, -0.12, 0.18), (0.05, 0.12, 0.26)),
        max_finger_opening_m: float = _FINGER_OPEN_M,
        min_start_distance_m: float = 0.0,
    ) -> None:
        # MuJoCo models and GL contexts do not pickle: EzPickle rebuilds from these arguments.
        EzPickle.__init__(
            self,
            cameras,
            image_size,
            proprio,
            reward_type,
            n_distractors,
            terminate_on_success,
            max_step_m,
            render_mode,
            xml_file,
            arm_fovy,
            brick_region,
            gripper_start_region,
            max_finger_opening_m,
            min_start_distance_m,
        )
        cameras = tuple(cameras)
        _check_task_arguments(cameras, reward_type, n_distractors, max_step_m, render_mode, arm_fovy)
        self.brick_region = _region("brick_region", brick_region, _WORKSPACE_LOW[:2], _WORKSPACE_HIGH[:2])
        self.gripper_start_region = _region(
            "gripper_start_region", gripper_start_region, _WORKSPACE_LOW, _WORKSPACE_HIGH
        )
        _check_gripper_arguments(max_finger_opening_m, min_start_distance_m)
        self.min_start_distance_m = float(min_start_distance_m)
        self.max_finger_opening_m = float(max_finger_opening_m)
        self.cameras = cameras
        #: The observation keys that cross the link (:func:`bwgym.envs.views.link_views`): the
        #: cameras; ``proprio`` is the robot's own state, known at the controller.
        self.link_views = tuple(cameras)
        self.image_size = _image_size(image_size)
        self.proprio = bool(proprio)
        self.reward_type = reward_type
        self.n_distractors = int(n_distractors)
        self.terminate_on_success = bool(terminate_on_success)
        self.max_step_m = float(max_step_m)
        self.render_mode = render_mode
        self._build_scene(xml_file, arm_fovy)
        views: dict[str, spaces.Space] = {
            c: spaces.Box(0, 255, (*self.image_size, 3), dtype=np.uint8) for c in cameras
        }
        if self.proprio:
            views["proprio"] = spaces.Box(-np.inf, np.inf, (7,), dtype=np.float32)
        self.observation_space = spaces.Dict(views)
        self.action_space = spaces.Box(-1.0, 1.0, (4,), dtype=np.float32)

    def _build_scene(self, xml_file: str | Path | None, arm_fovy: float | None) -> None:
        """The MuJoCo model (with the distractors) and its data, the control period, the wrist camera."""
        self.model = mujoco.MjModel.from_xml_string(self._load_xml(xml_file, self.n_distractors))
        self.data = mujoco.MjData(self.model)
        self.frame_skip = 10
        self.dt = self.model.opt.timestep * self.frame_skip
        self._ids = _SceneIds(self.model, self.n_distractors)
        arm_id = self.model.camera("arm").id
        if arm_fovy is not None:
            self.model.cam_fovy[arm_id] = float(arm_fovy)
        #: Vertical field of view of the wrist camera (degrees).
        self.arm_fovy = float(self.model.cam_fovy[arm_id])
        self._renderer: MultiCameraRenderer | None = None

    @staticmethod
    def _load_xml(xml_file: str | Path | None, n_distractors: int) -> str:
        if xml_file is None:
            text = resources.files("bwgym.envs").joinpath("assets/locate_lift.xml").read_text()
        else:
            path = Path(xml_file)
            if not path.is_file():
                raise OSError(f"xml_file {str(path)!r} does not exist")
            text = path.read_text()
        root = ET.fromstring(text)
        world = root.find("worldbody")
        for body in list(world.findall("body")):
            name = body.get("name", "")
            if name.startswith("distractor_") and int(name.rsplit("_", 1)[1]) >= n_distractors:
                world.remove(body)
        return ET.tostring(root, encoding="unicode")

    # ---------------------------------------------------------------- state helpers
    @property
    def gripper_pos(self) -> np.ndarray:
        """Position of the gripper body origin (m)."""
        return self.data.xpos[self._ids.gripper].copy()

    @property
    def grip_site_pos(self) -> np.ndarray:
        """Point between the fingertips (m)."""
        return self.data.site_xpos[self._ids.grip_site].copy()

    @property
    def brick_pos(self) -> np.ndarray:
        """Brick centre (m)."""
        return self.data.xpos[self._ids.brick].copy()

    @property
    def finger_opening_m(self) -> float:
        """Mean opening of the two fingers (m; 0 closed, 0.045 open)."""
        return float(self.data.qpos[self._ids.finger_qpos].mean())

    def brick_grasped(self) -> bool:
        """Both fingers touch the brick."""
        geom1, geom2 = self.data.contact.geom1, self.data.contact.geom2
        brick = self._ids.brick_geom
        others = np.concatenate([geom2[geom1 == brick], geom1[geom2 == brick]])
        return all(finger in others for finger in self._ids.finger_geoms)

    # ---------------------------------------------------------------- gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Place the brick (and distractors) and the gripper at random; fingers open."""
        super().reset(seed=seed)
        rng = self.np_random
        mujoco.mj_resetData(self.model, self.data)

        placed: list[np.ndarray] = []
        for qpos_adr in [self._ids.brick_qpos, *self._ids.distractor_qpos]:
            while True:
                xy = rng.uniform(*self.brick_region)
                if all(np.linalg.norm(xy - p) > 0.07 for p in placed):
                    break
            placed.append(xy)
            yaw = rng.uniform(-math.pi / 4, math.pi / 4)
            self.data.qpos[qpos_adr : qpos_adr + 7] = [
                *xy,
                _REST_Z_M,
                math.cos(yaw / 2),
                0,
                0,
                math.sin(yaw / 2),
            ]

        target = rng.uniform(*self.gripper_start_region)
        # Redrawn (v1) until the gripper starts far enough from the brick; v0 draws once (distance 0).
        for _ in range(1000):
            if np.linalg.norm(target[:2] - placed[0]) >= self.min_start_distance_m:
                break
            target = rng.uniform(*self.gripper_start_region)
        else:
            raise RuntimeError(
                f"no gripper start in gripper_start_region at least min_start_distance_m="
                f"{self.min_start_distance_m} from the brick at {placed[0].tolist()} after 1000 draws; "
                "widen the region or lower the distance"
            )
        self.data.qpos[self._ids.arm_qpos] = _arm_ik(target)
        self.data.qpos[self._ids.finger_qpos] = self.max_finger_opening_m
        self.data.ctrl[:] = self.max_finger_opening_m
        self.data.mocap_pos[0] = target
        self.data.mocap_quat[0] = (1, 0, 0, 0)
        mujoco.mj_forward(self.model, self.data)
        self._success = False
        obs = self._get_obs()
        if self.render_mode == "rgb_array":
            self._last_frames = {c: obs[c] for c in self.cameras}
        return obs, {"is_success": False}

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Move the gripper target, set the fingers, simulate ``dt`` seconds."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape not in ((4,), (1, 4)):  # (1, 4): a batch of one, as SB3's predict gives
            raise ValueError(f"Action dimension mismatch. Expected (4,), found {action.shape}")
        action = action.reshape(-1)
        if not np.all(np.isfinite(action)):
            raise ValueError(
                f"action must be finite values in [-1, 1] (larger ones are clipped), got {action}"
            )
        action = np.clip(action, -1.0, 1.0)
        target = self.data.mocap_pos[0] + action[:3] * self.max_step_m
        self.data.mocap_pos[0] = np.clip(target, _WORKSPACE_LOW, _WORKSPACE_HIGH)
        self.data.ctrl[:] = (action[3] + 1.0) / 2.0 * self.max_finger_opening_m
        mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)

        lift_m = float(self.data.xpos[self._ids.brick][2] - _REST_Z_M)
        grasped = self.brick_grasped()
        success = grasped and lift_m >= _LIFT_SUCCESS_M
        fell = self.data.xpos[self._ids.brick][2] < -0.05
        info: dict[str, Any] = {"is_success": success, "lift_m": lift_m, "grasped": grasped}
        if self.reward_type == "sparse":
            info["reward_success"] = float(success)
        else:
            distance = float(np.linalg.norm(self.grip_site_pos - self.brick_pos))
            info["reward_reach"] = 0.25 * (1.0 - math.tanh(10.0 * distance))
            info["reward_grasp"] = 0.25 * float(grasped)
            info["reward_lift"] = 0.5 * min(max(lift_m, 0.0) / _LIFT_SUCCESS_M, 1.0)
        reward = float(sum(v for k, v in info.items() if k.startswith("reward_")))
        terminated = bool((success and self.terminate_on_success) or fell)
        obs = self._get_obs()
        if self.render_mode == "rgb_array":
            self._last_frames = {c: obs[c] for c in self.cameras}
        return obs, reward, terminated, False, info

    def render(self) -> np.ndarray | None:
        """With ``render_mode="rgb_array"``: the camera views of the last observation, side by side."""
        if self.render_mode != "rgb_array":
            return None
        if not hasattr(self, "_last_frames"):
            raise gym.error.ResetNeeded("call reset() before render()")
        return np.concatenate([self._last_frames[c] for c in self.cameras], axis=1)

    def close(self) -> None:
        """Release the renderer (safe to call twice)."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def _get_obs(self) -> dict[str, np.ndarray]:
        if self._renderer is None:
            self._renderer = MultiCameraRenderer(self.model, self.cameras, *self.image_size)
        obs: dict[str, np.ndarray] = self._renderer.render(self.data)
        if self.proprio:
            velocity = self.data.cvel[self._ids.gripper][3:]
            obs["proprio"] = np.concatenate([self.gripper_pos, [self.finger_opening_m], velocity]).astype(
                np.float32
            )
        return obs


def _check_task_arguments(
    cameras: tuple[str, ...],
    reward_type: str,
    n_distractors: int,
    max_step_m: float,
    render_mode: str | None,
    arm_fovy: float | None,
) -> None:
    """Refuse cameras, reward type, distractor count, step size, render mode or wrist view out of range."""
    if not cameras:
        raise ValueError(f"cameras must name at least one of {CAMERAS}, got an empty list")
    bad = [c for c in cameras if c not in CAMERAS]
    if bad or len(set(cameras)) != len(cameras):
        raise ValueError(f"cameras must be distinct names from {CAMERAS}, got {cameras}")
    if reward_type not in ("sparse", "dense"):
        raise ValueError(f"reward_type must be 'sparse' or 'dense', got {reward_type!r}")
    if not 0 <= int(n_distractors) <= MAX_DISTRACTORS:
        raise ValueError(f"n_distractors must be between 0 and {MAX_DISTRACTORS}, got {n_distractors}")
    if not (math.isfinite(max_step_m) and max_step_m > 0):
        raise ValueError(f"max_step_m must be a positive finite number, got {max_step_m}")
    render_modes = LocateLiftEnv.metadata["render_modes"]
    if render_mode is not None and render_mode not in render_modes:
        raise ValueError(f"render_mode must be None or one of {render_modes}, got {render_mode!r}")
    if arm_fovy is not None and not (math.isfinite(arm_fovy) and 10.0 <= arm_fovy <= 120.0):
        raise ValueError(f"arm_fovy must be None or between 10 and 120 degrees, got {arm_fovy}")


def _check_gripper_arguments(max_finger_opening_m: float, min_start_distance_m: float) -> None:
    """Refuse a finger opening the brick cannot be grasped with, or a start distance out of range."""
    if not (math.isfinite(max_finger_opening_m) and 0.025 <= max_finger_opening_m <= _FINGER_OPEN_M):
        raise ValueError(
            f"max_finger_opening_m must be between 0.025 (the brick's half-width plus a finger "
            f"clearance) and {_FINGER_OPEN_M} m, got {max_finger_opening_m}"
        )
    if not (math.isfinite(min_start_distance_m) and 0.0 <= min_start_distance_m <= 0.25):
        raise ValueError(f"min_start_distance_m must be between 0 and 0.25 m, got {min_start_distance_m}")


class _SceneIds:
    """Integer ids and qpos addresses of the named parts of the scene, looked up once."""

    def __init__(self, model: mujoco.MjModel, n_distractors: int) -> None:
        def jnt_qpos(name: str) -> int:
            return int(model.jnt_qposadr[model.joint(name).id])

        self.gripper = model.body("gripper").id
        self.brick = model.body("brick").id
        self.brick_geom = model.geom("brick").id
        self.grip_site = model.site("grip").id
        self.finger_geoms = {model.geom("finger_left").id, model.geom("finger_right").id}
        self.brick_qpos = jnt_qpos("brick")
        self.distractor_qpos = [jnt_qpos(f"distractor_{i}") for i in range(n_distractors)]
        self.arm_qpos = [
            jnt_qpos(j)
            for j in ("shoulder_yaw", "shoulder_pitch", "elbow_pitch", "wrist_pitch", "wrist_roll")
        ]
        self.finger_qpos = [jnt_qpos("finger_left"), jnt_qpos("finger_right")]


def _arm_ik(target: np.ndarray) -> np.ndarray:
    """Joint angles that put the gripper origin at ``target``, pointing down, world-aligned (elbow up).

    The mocap weld does the tracking during an episode; this only starts each episode without the
    arm snapping across the table.
    """
    rel = np.asarray(target, dtype=np.float64) - _SHOULDER
    yaw = math.atan2(rel[1], rel[0])
    reach = math.hypot(rel[0], rel[1])
    drop = -(rel[2] + _WRIST_TO_GRIPPER_M)  # wrist below the shoulder, positive downwards
    cos_elbow = (reach**2 + drop**2 - _UPPER_ARM_M**2 - _FOREARM_M**2) / (2 * _UPPER_ARM_M * _FOREARM_M)
    elbow = math.acos(min(max(cos_elbow, -1.0), 1.0))
    shoulder = math.atan2(drop, reach) - math.atan2(
        _FOREARM_M * math.sin(elbow), _UPPER_ARM_M + _FOREARM_M * math.cos(elbow)
    )
    return np.array([yaw, shoulder, elbow, -(shoulder + elbow), -yaw])
