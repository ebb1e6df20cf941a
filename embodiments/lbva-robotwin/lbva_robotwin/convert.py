"""RoboTwin 2.0 observations and actions <-> the ``robotwin-aloha-agilex`` embodiment (numpy only).

Axis legend: h/w camera pixels, T actions of a chunk, 16 native action dims
(per arm: x y z, quaternion, gripper — left arm first), 14 native state dims (per arm: 6 joints, gripper).

RoboTwin's ``TASK_ENV.get_obs()`` (``envs/_base_task.py``) returns::

    {"observation": {"head_camera": {"rgb": uint8 (h, w, 3), ...}, "left_camera": {...}, "right_camera": {...}},
     "joint_action": {"left_arm": [6], "left_gripper": float, "right_arm": [6], "right_gripper": float,
                      "vector": (14,)},
     "endpose": {"left_endpose": [x, y, z, qw, qx, qy, qz], "left_gripper": float,
                 "right_endpose": [...], "right_gripper": float},
     "pointcloud": [...], ...}

Its quaternions are (w, x, y, z) (transforms3d's ``mat2quat`` in ``envs/robot/robot.py``), grippers are in
[0, 1] with 1 open. ``TASK_ENV.take_action(a, action_type="ee")`` takes 16 numbers: left x y z qw qx qy qz
gripper, then the right arm the same way.

Pose modes (``pose_mode``):

* ``relative`` — the released LingBot-VA RoboTwin model. Its arm poses are offsets from the pose at the start
  of the episode. The official client (Robbyant/lingbot-va ``evaluation/robotwin/eval_polict_client_openpi.py``,
  ``add_eef_pose``) composes them with scipy: ``from_quat(init[3:7]) * from_quat(new[3:7])``, positions added,
  the gripper taken as is, the quaternion normalised, and the 4 result numbers passed to RoboTwin unchanged.
  scipy reads quaternions as (x, y, z, w) while RoboTwin's numbers are (w, x, y, z); the released model was
  trained in that convention, so :func:`compose_relative` repeats exactly this arithmetic on the raw numbers.
* ``absolute`` — a model whose native actions are absolute poses with (x, y, z, w) quaternions (lbva's slot
  order): only the quaternion order changes, (x, y, z, w) -> (w, x, y, z).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

CAMERAS = {  # RoboTwin camera name -> lbva observation key (the release's format_obs)
    "head_camera": "observation.images.cam_high",
    "left_camera": "observation.images.cam_left_wrist",
    "right_camera": "observation.images.cam_right_wrist",
}
# The sizes lbva's robotwin-aloha-agilex embodiment declares for these cameras (tiled head below the two wrists)
# and its actions per latent frame. The adapter takes both from the server's metadata; these are the defaults for
# encode_obs without a server and for servers that do not announce them (tests check them against lbva's spec).
CAMERA_SIZES = {
    "observation.images.cam_high": (256, 320),
    "observation.images.cam_left_wrist": (128, 160),
    "observation.images.cam_right_wrist": (128, 160),
}
ACTIONS_PER_FRAME = 16
STATE_KEY = "observation.state"
POSE_MODES = ("relative", "absolute")
ARM_DIM = 8  # x y z + 4 quaternion numbers + gripper
ACTION_DIM = 2 * ARM_DIM
STATE_DIM = 14


class RoboTwinFormatError(ValueError):
    """A RoboTwin observation, or an action chunk, that does not have the expected structure."""


# ------------------------------------------------------------------------------------------ observations
def _get(tree: Any, path: Sequence[str], hint: str) -> Any:
    node = tree
    for i, key in enumerate(path):
        if not isinstance(node, Mapping) or key not in node:
            where = "observation" + "".join(f"[{k!r}]" for k in path[: i + 1])
            have = sorted(node) if isinstance(node, Mapping) else type(node).__name__
            raise RoboTwinFormatError(f"{where} is missing (found {have}); {hint}")
        node = node[key]
    return node


def camera_rgb(observation: Mapping[str, Any], camera: str) -> np.ndarray:
    """``observation["observation"][camera]["rgb"]`` checked to be uint8 (h, w, 3)."""
    img = _get(observation, ("observation", camera, "rgb"),
               "RoboTwin writes camera images there when the task config has data_type.rgb: true and "
               "collect_head_camera / collect_wrist_camera enabled")
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[-1] != 3 or img.shape[0] < 1 or img.shape[1] < 1:
        raise RoboTwinFormatError(f"observation['observation'][{camera!r}]['rgb'] must be (h, w, 3); got shape {img.shape}")
    if img.dtype != np.uint8:
        raise RoboTwinFormatError(
            f"observation['observation'][{camera!r}]['rgb'] must be uint8 RGB; got dtype {img.dtype}")
    return img


def joint_vector(observation: Mapping[str, Any]) -> np.ndarray:
    """``observation["joint_action"]["vector"]``: float32 (14,) = 6 joints + gripper per arm."""
    v = np.asarray(_get(observation, ("joint_action", "vector"),
                        "RoboTwin writes it when the task config has data_type.qpos: true"), dtype=np.float64)
    if v.shape != (STATE_DIM,):
        raise RoboTwinFormatError(
            f"observation['joint_action']['vector'] must hold {STATE_DIM} numbers (aloha-agilex: 6 joints + gripper "
            f"per arm); got shape {v.shape}. Other RoboTwin embodiments need their own lbva embodiment")
    if not np.all(np.isfinite(v)):
        raise RoboTwinFormatError(f"observation['joint_action']['vector'] has non-finite values {v.tolist()}")
    return v.astype(np.float32)


def end_poses(observation: Mapping[str, Any]) -> np.ndarray:
    """The 16 numbers of RoboTwin's ``endpose`` entry in take_action('ee') order (float64):
    left x y z qw qx qy qz gripper, right the same."""
    hint = "RoboTwin writes it when the task config has data_type.endpose: true"
    out = []
    for side in ("left", "right"):
        pose = np.asarray(_get(observation, ("endpose", f"{side}_endpose"), hint), dtype=np.float64).reshape(-1)
        if pose.shape != (7,):
            raise RoboTwinFormatError(
                f"observation['endpose']['{side}_endpose'] must be 7 numbers (x, y, z, qw, qx, qy, qz); got {pose.shape}")
        grip = np.asarray(_get(observation, ("endpose", f"{side}_gripper"), hint), dtype=np.float64).reshape(-1)
        if grip.shape != (1,):
            raise RoboTwinFormatError(f"observation['endpose']['{side}_gripper'] must be one number; got shape {grip.shape}")
        out += [pose, grip]
    v = np.concatenate(out)
    if not np.all(np.isfinite(v)):
        raise RoboTwinFormatError(f"observation['endpose'] has non-finite values {v.tolist()}")
    return v


def resize_bilinear(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 (h, w, 3) -> uint8 (height, width, 3), bilinear with half-pixel centres and no antialiasing
    (what ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` computes, as the released
    server resizes), rounded to the nearest integer."""
    h, w = img.shape[:2]
    if (h, w) == (height, width):
        return np.ascontiguousarray(img)

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
        src = np.maximum(src, 0.0)
        i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    y0, y1, fy = axis(h, height)
    x0, x1, fx = axis(w, width)
    f = img.astype(np.float64)
    top = f[y0][:, x0] * (1 - fx)[None, :, None] + f[y0][:, x1] * fx[None, :, None]
    bot = f[y1][:, x0] * (1 - fx)[None, :, None] + f[y1][:, x1] * fx[None, :, None]
    out = top * (1 - fy)[:, None, None] + bot * fy[:, None, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def camera_frames(observation: Mapping[str, Any], sizes: Mapping[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    """lbva camera key -> uint8 (h, w, 3) resized to ``sizes[key]`` (the served embodiment's camera sizes)."""
    return {key: resize_bilinear(camera_rgb(observation, cam), *sizes[key]) for cam, key in CAMERAS.items()}


def to_lbva_observation(observation: Mapping[str, Any], sizes: Mapping[str, tuple[int, int]], prompt: str) -> dict:
    """A RoboTwin observation as ``lbva serve`` takes it: the three cameras, the joint vector, the prompt."""
    obs: dict[str, Any] = camera_frames(observation, sizes)
    obs[STATE_KEY] = joint_vector(observation)
    obs["prompt"] = prompt
    return obs


# ------------------------------------------------------------------------------------------------ actions
def quat_mul_xyzw(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of (..., 4) quaternions stored (x, y, z, w) (scipy's ``Rotation`` composition)."""
    ax, ay, az, aw = np.moveaxis(np.asarray(a, dtype=np.float64), -1, 0)
    bx, by, bz, bw = np.moveaxis(np.asarray(b, dtype=np.float64), -1, 0)
    return np.stack([
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    ], axis=-1)


def _unit(q: np.ndarray, what: str) -> np.ndarray:
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(n < 1e-12):
        raise RoboTwinFormatError(f"{what} has a zero quaternion; cannot make a rotation from {q.tolist()}")
    return q / n


def compose_relative(init: np.ndarray, rel: np.ndarray) -> np.ndarray:
    """The released client's ``add_init_pose``: (16,) episode-start end poses (RoboTwin's numbers) and a (16,)
    relative action -> the (16,) take_action('ee') command. Per arm: position added, quaternions multiplied
    ``init ⊗ rel`` in (x, y, z, w) arithmetic on the raw numbers and normalised, gripper from ``rel``."""
    init, rel = np.asarray(init, np.float64), np.asarray(rel, np.float64)
    out = np.empty(ACTION_DIM, np.float64)
    for o in (0, ARM_DIM):
        q0 = _unit(init[o + 3 : o + 7], "the episode's initial end pose")
        q1 = _unit(rel[o + 3 : o + 7], "the action")
        out[o : o + 3] = rel[o : o + 3] + init[o : o + 3]
        out[o + 3 : o + 7] = _unit(quat_mul_xyzw(q0, q1), "the composed pose")
        out[o + 7] = rel[o + 7]
    return out


def absolute_to_robotwin(action: np.ndarray) -> np.ndarray:
    """(16,) absolute poses with (x, y, z, w) quaternions -> RoboTwin's (w, x, y, z) order, normalised."""
    a = np.asarray(action, np.float64)
    out = a.copy()
    for o in (0, ARM_DIM):
        q = _unit(a[o + 3 : o + 7], "the action")
        out[o + 3 : o + 7] = (q[3], q[0], q[1], q[2])
    return out


def to_robotwin_action(action: np.ndarray, pose_mode: str, init: np.ndarray | None) -> np.ndarray:
    """One native lbva action (16,) -> the 16 numbers for ``TASK_ENV.take_action(..., action_type="ee")``;
    grippers clipped to RoboTwin's [0, 1]."""
    a = np.asarray(action, np.float64)
    if a.shape != (ACTION_DIM,) or not np.all(np.isfinite(a)):
        raise RoboTwinFormatError(f"an action must be {ACTION_DIM} finite numbers; got shape {a.shape}: {a.tolist()}")
    if pose_mode == "relative":
        if init is None:
            raise RoboTwinFormatError("pose_mode 'relative' needs the episode's initial end poses; none were recorded")
        out = compose_relative(init, a)
    elif pose_mode == "absolute":
        out = absolute_to_robotwin(a)
    else:
        raise RoboTwinFormatError(f"unknown pose_mode {pose_mode!r}; allowed: {', '.join(POSE_MODES)}")
    out[[7, 15]] = np.clip(out[[7, 15]], 0.0, 1.0)
    return out
