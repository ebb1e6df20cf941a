"""Meta-World v3 tasks as ``lbva.eval.env.RobotEnv`` s, and their scripted experts.

Axis legend: h/w camera pixels; 4 native action dims (dx, dy, dz, gripper effort); 4 native state dims
(hand x, y, z, gripper opening); 39 the full Meta-World observation vector.

* Observations (LeRobot keys): ``observation.images.corner`` uint8 (h, w, 3) rendered offscreen by MuJoCo
  (``MUJOCO_GL=egl`` unless set; shadows and reflections off, ~15 ms a 64×64 frame), rotated 180° for the
  corner cameras, whose Meta-World definitions render upside down; ``observation.state`` float32 (4,);
  ``observation.environment_state`` float32 (39,), the full Meta-World vector (goal visible), which the
  scripted experts read; ``task`` the instruction text.
* Seeds: ``reset(seed)`` seeds Meta-World's generator, which then draws the object and goal positions, so the
  same seed gives the same scene.
* ``info["success"]``: Meta-World's own success flag. ``info["progress"]`` in [0, 1]: the best fraction of the
  initial distance to the goal closed so far, ``max_t clip(1 − d_t / d_0, 0, 1)`` with d Meta-World's
  ``obj_to_target`` (hand→goal for reach, object→goal for push, remaining handle/button travel for the
  drawer and button tasks), and 1 once the task succeeded. Tasks whose ``obj_to_target`` is a constant 0
  (door-open, box-close, hammer, assembly, disassemble) use the distance from the main object (observation dims
  4–6) to the goal (the last 3 dims) instead. An episode terminates at success and is truncated at ``max_steps``.

The simulator factory registered with lbva is :func:`make_env`; the scripted expert for collection and the
``scripted`` eval baseline is found through ``make_env.expert`` (the same function as :func:`expert`).
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

# MuJoCo picks its OpenGL backend when it is first imported: headless EGL unless the user chose one.
os.environ.setdefault("MUJOCO_GL", "egl")

EMBODIMENT = "metaworld-sawyer"
CAMERA_KEY = "observation.images.corner"
STATE_KEY = "observation.state"
ENV_STATE_KEY = "observation.environment_state"
DEFAULT_MAX_STEPS = 500  # Meta-World's max_path_length
# Meta-World cameras whose fixed pose renders the scene upside down (rotated by 180°).
FLIPPED_CAMERAS = ("corner", "corner2", "corner3")
# LeRobot's Meta-World env moves corner2 closer to the table (lerobot/envs/metaworld.py); at 64×64 the objects
# stay visible, and datasets recorded here look like LeRobot's.
CORNER2_CLOSE_POS = (0.75, 0.075, 0.7)

# Instructions for the tasks lbva tests and documents; other v3 tasks get their name in words.
INSTRUCTIONS: dict[str, str] = {
    "reach-v3": "reach the red goal position with the gripper",
    "push-v3": "push the puck to the green goal position",
    "button-press-topdown-v3": "press the button down from the top",
    "drawer-open-v3": "pull the drawer open",
    "door-open-v3": "open the door by pulling its handle",
    "drawer-close-v3": "push the drawer closed",
    "pick-place-v3": "pick up the puck and place it at the goal",
    "window-open-v3": "slide the window open",
    "window-close-v3": "slide the window closed",
    "button-press-v3": "press the button from the front",
}

# Expert policy classes whose names do not follow "Sawyer<CamelCase task>V3Policy".
_EXPERT_NAME_EXCEPTIONS = {"peg-insert-side-v3": "SawyerPegInsertionSideV3Policy"}


# Meta-World 3.0.0 steps with mujoco 3.1 ... 3.16; from 3.17 on its action mocap write fails with "could not
# broadcast input array from shape (11,) into shape (12,)" — say what to do instead.
MUJOCO_WORKS_BELOW = (3, 17)


class MujocoVersionError(ValueError):
    """The installed mujoco cannot run Meta-World 3.0.0."""


def check_mujoco(version: str) -> None:
    parts = tuple(int(x) for x in version.split(".")[:2] if x.isdigit())
    if parts >= MUJOCO_WORKS_BELOW:
        raise MujocoVersionError(
            f"mujoco {version} breaks Meta-World 3.0.0 (env.step fails with 'could not broadcast input array from "
            "shape (11,) into shape (12,)'); install a version that works: pip install 'mujoco>=3.1,<3.17'"
        )


def available_tasks() -> list[str]:
    """Every Meta-World v3 task name the installed ``metaworld`` provides."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return sorted(ALL_V3_ENVIRONMENTS)


def check_task(task: str) -> str:
    tasks = available_tasks()
    if task not in tasks:
        close = [t for t in tasks if task.split("-v")[0] in t]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown Meta-World task {task!r}{hint}; valid tasks: {', '.join(tasks)}")
    return task


def instruction(task: str) -> str:
    """The language instruction of a task (a short sentence)."""
    return INSTRUCTIONS.get(task, re.sub(r"-v\d+$", "", task).replace("-", " "))


class Observation(dict):
    """An observation whose camera image is rendered when first read.

    Rendering is most of a simulated step's cost on a CPU, and many readers never look at most frames: a
    world-model policy takes one keyframe every few actions, the zero and random baselines none. The image is
    the state at the step that produced this observation; once the env steps again an image never read cannot
    be rendered any more, and reading it raises. Anything that lists, copies or pickles the observation gets the
    image rendered first, so it behaves as a plain dict for every reader."""

    __slots__ = ("_render", "_expired")

    def __init__(self, values: dict, render):
        super().__init__(values)
        self._render, self._expired = render, False

    def _fill(self) -> None:
        if self._render is not None:
            if self._expired:
                raise RuntimeError(
                    f"{CAMERA_KEY} of this observation was never read and the env has stepped since; read the "
                    "image before the next env.step (or keep a copy of the observation made before it)"
                )
            render, self._render = self._render, None
            dict.__setitem__(self, CAMERA_KEY, render())

    def expire(self) -> None:
        self._expired = True

    def __missing__(self, key):
        if key == CAMERA_KEY and self._render is not None:
            self._fill()
            return dict.__getitem__(self, key)
        raise KeyError(key)

    def __contains__(self, key) -> bool:
        return dict.__contains__(self, key) or (key == CAMERA_KEY and self._render is not None)

    def get(self, key, default=None):
        return self[key] if key in self else default

    def __iter__(self):
        self._fill()
        return dict.__iter__(self)

    def __len__(self) -> int:
        return dict.__len__(self) + (self._render is not None)

    def keys(self):
        self._fill()
        return dict.keys(self)

    def values(self):
        self._fill()
        return dict.values(self)

    def items(self):
        self._fill()
        return dict.items(self)

    def copy(self) -> dict:
        self._fill()
        return dict(dict.items(self))

    def __eq__(self, other) -> bool:
        self._fill()
        return dict.__eq__(self, other)

    __hash__ = None

    def __reduce__(self):
        return (dict, (self.copy(),))

    def __repr__(self) -> str:
        self._fill()
        return dict.__repr__(self)


class MetaWorldEnv:
    """One Meta-World v3 task with a rendered camera, following ``lbva.eval.env.RobotEnv``.

    ``camera`` names the Meta-World camera behind ``observation.images.corner`` (default ``corner2``, placed as
    in LeRobot); ``width``/``height`` its resolution (64×64 for the ``metaworld-sawyer`` embodiment).
    MuJoCo and the renderer are created lazily on the first ``reset`` (so a forked or spawned worker owns its
    own OpenGL context).
    """

    embodiment = EMBODIMENT

    def __init__(
        self,
        task: str,
        seed: int = 0,
        max_steps: int = DEFAULT_MAX_STEPS,
        camera: str = "corner2",
        width: int = 64,
        height: int = 64,
        render: bool = True,
    ):
        self.task = check_task(task)
        self.instruction = instruction(task)
        if not 1 <= int(max_steps) <= DEFAULT_MAX_STEPS:
            raise ValueError(f"max_steps={max_steps} must be in 1..{DEFAULT_MAX_STEPS} (Meta-World's episode limit)")
        self.max_steps = int(max_steps)
        self.camera, self.width, self.height, self.render_enabled = camera, int(width), int(height), bool(render)
        self.seed = int(seed)
        self._env: Any = None
        self._renderer: Any = None
        self._last_obs: Observation | None = None  # expired when the simulator steps on
        self._steps = 0
        self._d0 = 1.0
        self._object_distance = False
        self._progress = 0.0
        self._done = False

    # -- construction --------------------------------------------------------------------------------
    def _build(self) -> None:
        import mujoco
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        check_mujoco(mujoco.__version__)
        env = ALL_V3_ENVIRONMENTS[self.task]()
        # The goal-observable MT1 setting, with object/goal positions drawn from the env's seeded generator
        # (what Meta-World's MT1 tasks and LeRobot's env do through these same attributes).
        env._partially_observable = False
        del env.sawyer_observation_space  # a cached property that depends on the observability
        env._set_task_called = True
        env._freeze_rand_vec = False
        env.seeded_rand_vec = True
        cams = [mujoco.mj_id2name(env.model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(env.model.ncam)]
        if self.camera not in cams:
            raise ValueError(f"Meta-World has no camera {self.camera!r}; cameras: {', '.join(cams)}")
        if self.camera == "corner2":
            env.model.cam_pos[cams.index("corner2")] = CORNER2_CLOSE_POS
        self._env = env
        if self.render_enabled:
            self._renderer = mujoco.Renderer(env.model, self.height, self.width)

    def _frame(self) -> np.ndarray:
        if self._renderer is None:
            return np.zeros((self.height, self.width, 3), np.uint8)
        import mujoco

        r = self._renderer
        r.update_scene(self._env.data, camera=self.camera)
        r.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0  # 4-6x faster offscreen, barely visible at 64x64
        r.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        img = r.render()  # (h, w, 3) uint8
        if self.camera in FLIPPED_CAMERAS:
            img = img[::-1, ::-1]
        return np.ascontiguousarray(img)

    def _observation(self, raw: np.ndarray) -> dict:
        raw = np.asarray(raw, dtype=np.float32)  # (39,)
        if self._last_obs is not None:
            self._last_obs.expire()  # the simulator state it would render is gone
        obs = Observation({STATE_KEY: raw[:4].copy(), ENV_STATE_KEY: raw, "task": self.instruction}, self._frame)
        self._last_obs = obs
        return obs

    # -- RobotEnv ------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> dict:
        if self._env is None:
            self._build()
        import mujoco

        self.seed = self.seed if seed is None else int(seed)
        self._env.seed(self.seed)
        raw, _ = self._env.reset()
        if self.camera == "corner2":
            mujoco.mj_forward(self._env.model, self._env.data)  # camera poses follow the moved corner2
        # d_0: the task's distance to its goal at the start (Meta-World's reward terms, no side effects on state)
        _, info = self._env.evaluate_state(raw, np.zeros(4, np.float32))
        d0 = float(info.get("obj_to_target", 0.0))
        self._object_distance = not d0 > 1e-6  # obj_to_target is a constant 0 for some tasks (door-open ...)
        self._d0 = max(self._distance(raw, info), 1e-6)
        self._steps, self._progress, self._done = 0, 0.0, False
        return self._observation(raw)

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        if self._env is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            raise RuntimeError(f"the episode ended (success or {self.max_steps} steps); call reset() first")
        a = np.asarray(action, dtype=np.float32)
        if a.shape != (4,):
            raise ValueError(f"Meta-World actions have shape (4,) (dx, dy, dz, gripper effort); got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action has non-finite values {a.tolist()}; filter it (lbva.eval.safety.SafetyFilter)")
        raw, reward, _, _, info = self._env.step(np.clip(a, -1.0, 1.0))
        self._steps += 1
        success = bool(info.get("success", 0.0))
        d = self._distance(raw, info)
        self._progress = max(self._progress, float(np.clip(1.0 - d / self._d0, 0.0, 1.0)), 1.0 if success else 0.0)
        terminated = success
        truncated = not success and self._steps >= self.max_steps
        self._done = terminated or truncated
        out = {k: (float(v) if np.isscalar(v) else v) for k, v in info.items()}
        out.update(success=success, progress=self._progress, steps=self._steps)
        return self._observation(raw), float(reward), terminated, truncated, out

    def _distance(self, raw: np.ndarray, info: dict) -> float:
        """The task's distance to its goal (see the module docstring)."""
        if self._object_distance:
            return float(np.linalg.norm(np.asarray(raw[4:7]) - np.asarray(raw[-3:])))  # main object -> goal
        return float(info.get("obj_to_target", 0.0))

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        if self._env is not None:
            self._env.close()
            self._env = None

    def __del__(self):  # release the OpenGL context before the interpreter tears EGL down
        try:
            self.close()
        except Exception:
            pass


def make_env(task: str, seed: int = 0, **kwargs) -> MetaWorldEnv:
    """The factory lbva calls (``get_env_factory("metaworld")``): keyword arguments go to :class:`MetaWorldEnv`."""
    return MetaWorldEnv(task, seed=seed, **kwargs)


class ScriptedExpert:
    """Meta-World's hand-written policy for one task, in the PolicyLike shape lbva drives.

    It reads the full Meta-World vector (``observation.environment_state``), so it only works in
    :class:`MetaWorldEnv`.
    """

    def __init__(self, task: str):
        import metaworld.policies as policies

        check_task(task)
        name = _EXPERT_NAME_EXCEPTIONS.get(task) or "Sawyer" + "".join(
            p.capitalize() for p in task.split("-")[:-1]) + "V3Policy"
        cls = getattr(policies, name, None)
        if cls is None:
            raise ValueError(f"metaworld.policies has no scripted expert {name} for task {task!r}")
        self.task = task
        self._policy = cls()

    def reset(self, prompt: str = "") -> None:  # stateless
        pass

    def select_action(self, observation: dict) -> np.ndarray:
        if ENV_STATE_KEY not in observation:
            raise KeyError(f"the Meta-World expert needs {ENV_STATE_KEY!r} in the observation; got {sorted(observation)}")
        import warnings

        with warnings.catch_warnings():  # its gains trip a "constant may be too high" warning every step
            warnings.simplefilter("ignore")
            a = self._policy.get_action(np.asarray(observation[ENV_STATE_KEY], dtype=np.float64))
        return np.clip(np.asarray(a, dtype=np.float32), -1.0, 1.0)

    def predict_action_chunk(self, observation: dict) -> np.ndarray:
        return self.select_action(observation)[None]  # (1, 4)

    def observe(self, frames: dict, executed_actions: np.ndarray) -> None:
        pass


def expert(task: str) -> ScriptedExpert:
    """The scripted expert for ``task`` (found by lbva as ``make_env.expert``)."""
    return ScriptedExpert(task)


make_env.expert = expert  # type: ignore[attr-defined]
