"""The robots lbva ships with, registered through the same hook as any third-party plugin.

Slot placement follows the unified slots (docs/architecture.md#unified-action-slots: left arm for
single-arm robots; grippers in 28/29 scaled to [0, 1], 0 closed and 1 open). Where a released LingBot-VA
checkpoint exists, the used channels follow its config (``used_action_channel_ids`` in Robbyant/lingbot-va
``wan_va/configs``):

* RoboTwin: EEF poses + grippers (slots 0–13, 28, 29); joints are state only.
* LIBERO: the 6 delta channels go to slots 0–5 as they are (3 position + 3 axis-angle, not converted to
  a quaternion, as in the release) and the gripper to slot 28.

Simulators and real-arm drivers are registered by other plugins through ``lbva_register_envs`` /
``lbva_register_robots``; nothing here imports a simulator or a hardware library.
"""

from __future__ import annotations

import numpy as np

from lbva.embodiment.hookspecs import hookimpl
from lbva.embodiment.spec import ActionStats, CameraSpec, EmbodimentSpec, FieldSpec, StateAlias

# LeRobot's SO-100/101 and Koch follower motors, in the order of their action/state features
# (lerobot.robots.so_follower / koch_follower: ``{motor}.pos``).
LEROBOT_ARM_MOTORS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")

# Released RoboTwin post-training statistics (Robbyant/lingbot-va, wan_va/configs/va_robotwin_cfg.py), in slot
# units: positions are offsets from the episode's initial EEF pose, quaternion channels span [-1, 1].
_ROBOTWIN_RELEASE_Q01 = [-0.06172713458538055, -3.6716461181640625e-05, -0.08783501386642456, -1, -1, -1, -1,
                         -0.3547105032205582, -1.3113021850585938e-06, -0.11975435614585876, -1, -1, -1, -1] + [0.0] * 16
_ROBOTWIN_RELEASE_Q99 = [0.3462600058317184, 0.39966784834861746, 0.14745532035827624, 1, 1, 1, 1,
                         0.034201726913452024, 0.39142737388610793, 0.1792279863357542, 1, 1, 1, 1] + [0.0] * 14 + [1.0, 1.0]
ROBOTWIN_RELEASE_STATS = ActionStats(
    q01=np.asarray(_ROBOTWIN_RELEASE_Q01, np.float32),
    q99=np.asarray(_ROBOTWIN_RELEASE_Q99, np.float32),
    source="released LingBot-VA RoboTwin post-training (Robbyant/lingbot-va va_robotwin_cfg norm_stat)",
)


def _xyz(prefix: str, slots) -> FieldSpec:
    return FieldSpec(f"{prefix}pos", "raw", tuple(slots), names=tuple(f"{prefix}{a}" for a in "xyz"))


def _joints(prefix: str, n: int, first_slot: int) -> FieldSpec:
    return FieldSpec(f"{prefix}joints", "raw", tuple(range(first_slot, first_slot + n)),
                     names=tuple(f"{prefix}joint_{i}" for i in range(n)))


def robotwin_aloha_agilex() -> EmbodimentSpec:
    arm = []
    for side, pos0, quat0, grip in (("left_", 0, 3, 28), ("right_", 7, 10, 29)):
        arm += [
            _xyz(side, range(pos0, pos0 + 3)),
            # the release's 16 channels go into the slots unchanged; its client reads them (x, y, z, w)
            FieldSpec(f"{side}quat", "quat", tuple(range(quat0, quat0 + 4)), order="xyzw",
                      names=tuple(f"{side}q{a}" for a in "xyzw")),
            FieldSpec(f"{side}gripper", "gripper", (grip,), closed=0.0, open=1.0, names=(f"{side}gripper",)),
        ]
    state = [
        _joints("left_", 6, 14), FieldSpec("left_gripper", "gripper", (28,), names=("left_gripper",)),
        _joints("right_", 6, 21), FieldSpec("right_gripper", "gripper", (29,), names=("right_gripper",)),
    ]
    per_arm_low = [-1.5, -1.5, -0.5, -1, -1, -1, -1, 0.0]
    per_arm_high = [1.5, 1.5, 1.5, 1, 1, 1, 1, 1.0]
    return EmbodimentSpec(
        name="robotwin-aloha-agilex",
        description="RoboTwin 2.0 aloha-agilex dual arm: EEF pose (xyz + quaternion) and gripper per arm",
        cameras=(
            CameraSpec("observation.images.cam_high", 256, 320),
            CameraSpec("observation.images.cam_left_wrist", 128, 160),
            CameraSpec("observation.images.cam_right_wrist", 128, 160),
        ),
        camera_layout="robotwin_tshape",
        action_fields=tuple(arm),
        state_fields=tuple(state),
        control_hz=50.0,
        actions_per_frame=16,
        chunk_frames=2,
        action_low=np.asarray(per_arm_low * 2, np.float32),
        action_high=np.asarray(per_arm_high * 2, np.float32),
        stats=ROBOTWIN_RELEASE_STATS,
        notes=(
            "Native action per arm: x y z, quaternion x y z w, gripper in [0, 1] (1 open): the released model's 16 "
            "channels (slots 0-6, 28, 7-13, 29) unchanged, read (x, y, z, w) by its RoboTwin client (scipy). "
            "RoboTwin itself uses w x y z; the lbva-robotwin adapter converts. State: RoboTwin's joint_action vector "
            "(6 joints + gripper per arm). The released checkpoint predicts EEF poses relative to the episode's "
            "initial pose (the adapter composes them); its statistics are the default stats here."
        ),
    )


# openpi's LIBERO example client (examples/libero/main.py): two 224x224 views rotated by 180 degrees, as
# lbva-libero's default preprocessing, and the 8-dim state eef_pos + axis-angle + gripper_qpos, as ours.
_LIBERO_STATE_NAMES = ("eef_x", "eef_y", "eef_z", "eef_rx", "eef_ry", "eef_rz", "finger_left", "finger_right")


def libero_franka() -> EmbodimentSpec:
    return EmbodimentSpec(
        name="libero-franka",
        description="LIBERO Franka Panda (robosuite OSC delta EEF control), LeRobot's libero env keys",
        cameras=(
            CameraSpec("observation.images.image", 256, 256, aliases=("observation/image",)),
            CameraSpec("observation.images.image2", 256, 256, aliases=("observation/wrist_image",)),
        ),
        camera_layout="width_concat",
        action_fields=(
            FieldSpec("delta_pos", "raw", (0, 1, 2), names=("dx", "dy", "dz")),
            FieldSpec("delta_rot", "raw", (3, 4, 5), names=("drx", "dry", "drz")),
            FieldSpec("gripper", "raw", (28,), names=("gripper",)),  # as the release: -1 open, +1 close
        ),
        state_fields=(
            FieldSpec("eef_pos", "raw", (0, 1, 2), names=_LIBERO_STATE_NAMES[:3]),
            FieldSpec("eef_rot", "axis_angle", (3, 4, 5, 6), names=_LIBERO_STATE_NAMES[3:6]),
            FieldSpec("gripper_qpos", "raw", (28, 29), names=_LIBERO_STATE_NAMES[6:]),
        ),
        state_aliases=(StateAlias("openpi-libero", (("observation/state", _LIBERO_STATE_NAMES),)),),
        control_hz=20.0,
        actions_per_frame=4,
        chunk_frames=4,
        action_low=-np.ones(7, np.float32),
        action_high=np.ones(7, np.float32),
        notes=(
            "Action: 3 position + 3 axis-angle deltas in [-1, 1] copied to slots 0-5 unconverted (the released "
            "LIBERO config's used channels 0-5 and 28); the gripper command (-1 open, +1 close) goes to slot 28 "
            "unchanged, as the released LIBERO client sends the model's channel to env.step (its q01/q99 are -1/+1). "
            "State (LeRobot libero, 8 dims): EEF position, EEF orientation as axis-angle (stored as a quaternion "
            "in slots 3-6), the two finger joint positions (slots 28, 29)."
        ),
    )


# openpi's DROID example client (examples/droid/main.py): one exterior and the wrist view at 224x224 (padded),
# the 7 joint positions (rad) and the Robotiq gripper position (0 open .. 1 closed). DROID sends no end-effector
# pose, and its gripper is not the Franka Hand's width, so that convention fills only the joints of the state.
_DROID_STATE = StateAlias("openpi-droid", (
    ("observation/joint_position", tuple(f"joint_{i}" for i in range(7))),
    ("observation/gripper_position", (None,)),
))


def franka() -> EmbodimentSpec:
    return EmbodimentSpec(
        name="franka",
        description="Real Franka Panda: absolute EEF pose (xyz + quaternion x y z w) and gripper width",
        cameras=(
            CameraSpec("observation.images.front", 256, 320, aliases=("observation/exterior_image_1_left",)),
            CameraSpec("observation.images.wrist", 256, 320, aliases=("observation/wrist_image_left",)),
        ),
        camera_layout="width_concat",
        action_fields=(
            _xyz("eef_", (0, 1, 2)),
            FieldSpec("eef_quat", "quat", (3, 4, 5, 6), order="xyzw", names=("eef_qx", "eef_qy", "eef_qz", "eef_qw")),
            FieldSpec("gripper", "gripper", (28,), closed=0.0, open=0.08, names=("gripper_width",)),
        ),
        state_fields=(
            _xyz("eef_", (0, 1, 2)),
            FieldSpec("eef_quat", "quat", (3, 4, 5, 6), order="xyzw", names=("eef_qx", "eef_qy", "eef_qz", "eef_qw")),
            _joints("", 7, 14),
            FieldSpec("gripper", "gripper", (28,), closed=0.0, open=0.08, names=("gripper_width",)),
        ),
        control_hz=15.0,
        actions_per_frame=4,
        chunk_frames=4,
        action_low=np.asarray([-0.9, -0.9, 0.0, -1, -1, -1, -1, 0.0], np.float32),
        action_high=np.asarray([0.9, 0.9, 1.2, 1, 1, 1, 1, 0.08], np.float32),
        state_aliases=(_DROID_STATE,),
        notes=(
            "Positions in metres in the robot base frame; gripper width 0 (closed) to 0.08 m (open). Also takes "
            "openpi DROID-style observations (observation/exterior_image_1_left, observation/wrist_image_left, "
            "observation/joint_position, observation/gripper_position); the actions stay this robot's EEF poses."
        ),
    )


def metaworld_sawyer() -> EmbodimentSpec:
    return EmbodimentSpec(
        name="metaworld-sawyer",
        description="Meta-World v3 Sawyer (MuJoCo): xyz delta + gripper effort, 64x64 corner camera",
        cameras=(CameraSpec("observation.images.corner", 64, 64),),
        camera_layout="single",
        action_fields=(
            FieldSpec("delta_pos", "raw", (0, 1, 2), names=("dx", "dy", "dz")),
            FieldSpec("gripper", "gripper", (28,), closed=1.0, open=-1.0, names=("gripper_effort",)),
        ),
        state_fields=(
            _xyz("hand_", (0, 1, 2)),
            FieldSpec("gripper", "gripper", (28,), closed=0.0, open=1.0, names=("gripper_opening",)),
        ),
        control_hz=80.0,
        actions_per_frame=4,
        chunk_frames=2,
        action_low=-np.ones(4, np.float32),
        action_high=np.ones(4, np.float32),
        notes=(
            "Control at 80 Hz (MuJoCo timestep 2.5 ms x frame_skip 5). State is the first 4 dims of the 39-dim "
            "Meta-World observation: hand xyz and gripper opening (0 closed, 1 open). Action gripper effort: "
            "+1 closes, -1 opens."
        ),
    )


def _lerobot_arm(name: str, description: str, joint_limit: float, notes: str) -> EmbodimentSpec:
    body = LEROBOT_ARM_MOTORS[:-1]
    fields = (
        FieldSpec("joints", "raw", tuple(range(14, 19)), names=tuple(f"{m}.pos" for m in body)),
        FieldSpec("gripper", "gripper", (28,), closed=0.0, open=100.0, names=("gripper.pos",)),
    )
    return EmbodimentSpec(
        name=name,
        description=description,
        cameras=(CameraSpec("observation.images.front", 256, 320), CameraSpec("observation.images.wrist", 256, 320)),
        camera_layout="width_concat",
        action_fields=fields,
        state_fields=fields,
        control_hz=30.0,
        actions_per_frame=8,
        chunk_frames=4,
        action_low=np.asarray([-joint_limit] * 5 + [0.0], np.float32),
        action_high=np.asarray([joint_limit] * 5 + [100.0], np.float32),
        notes=notes,
    )


def so101() -> EmbodimentSpec:
    return _lerobot_arm(
        "so101", "LeRobot SO-101 follower arm (Feetech): 5 joints + gripper", 180.0,
        "LeRobot so_follower features shoulder_pan.pos ... gripper.pos; joints in degrees (use_degrees=True, "
        "LeRobot's default), gripper 0-100 (0 closed).",
    )


def koch() -> EmbodimentSpec:
    return _lerobot_arm(
        "koch", "LeRobot Koch v1.1 follower arm (Dynamixel): 5 joints + gripper", 100.0,
        "LeRobot koch_follower features shoulder_pan.pos ... gripper.pos; joints in [-100, 100] "
        "(RANGE_M100_100, LeRobot's default), gripper 0-100 (0 closed).",
    )


def aloha() -> EmbodimentSpec:
    fields = []
    for side, j0, grip in (("left_", 14, 28), ("right_", 21, 29)):
        fields += [_joints(side, 6, j0), FieldSpec(f"{side}gripper", "gripper", (grip,), names=(f"{side}gripper",))]
    return EmbodimentSpec(
        name="aloha",
        description="ALOHA bimanual simulation (gym-aloha): 6 joints + gripper per arm, top camera",
        cameras=(CameraSpec("observation.images.top", 256, 320),),
        camera_layout="single",
        action_fields=tuple(fields),
        state_fields=tuple(fields),
        control_hz=50.0,
        actions_per_frame=16,
        chunk_frames=2,
        action_low=np.asarray(([-np.pi] * 6 + [0.0]) * 2, np.float32),
        action_high=np.asarray(([np.pi] * 6 + [1.0]) * 2, np.float32),
        notes="gym-aloha 14-dim action/agent_pos: joint angles (rad) and normalised gripper (0 closed, 1 open) per arm.",
    )


BUILTIN_SPECS = (robotwin_aloha_agilex, libero_franka, franka, metaworld_sawyer, so101, koch, aloha)


@hookimpl
def lbva_register_embodiments(register):
    for make in BUILTIN_SPECS:
        register(make())
