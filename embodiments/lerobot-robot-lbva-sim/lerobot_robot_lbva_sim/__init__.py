"""lbva's MuJoCo SO-101 stand-in (``lbva_lerobot_arms.SimSO101``) registered as LeRobot robot type ``lbva_sim_so101``.

It already is a ``lerobot.robots.Robot``; LeRobot's CLIs only need its config registered under a type name, which
importing this package does (LeRobot imports it because the distribution name starts with ``lerobot_robot_``).
LeRobot then finds ``SimSO101`` beside ``SimSO101Config`` by its naming convention. MuJoCo loads on ``connect()``.
"""

from lbva_lerobot_arms.sim import SimSO101, SimSO101Config
from lerobot.robots.config import RobotConfig

ROBOT_TYPE = "lbva_sim_so101"

RobotConfig.register_subclass(ROBOT_TYPE)(SimSO101Config)

__all__ = ["ROBOT_TYPE", "SimSO101", "SimSO101Config"]
