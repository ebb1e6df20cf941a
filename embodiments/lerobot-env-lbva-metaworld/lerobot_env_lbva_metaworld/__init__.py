"""lbva's Meta-World tasks as a LeRobot env plugin: ``--env.type=lbva_metaworld``.

LeRobot's CLIs import this package (its distribution name starts with ``lerobot_env_``); importing it registers
:class:`LbvaMetaWorldEnvConfig`. Meta-World and MuJoCo load only when an environment is made.
"""

from lerobot_env_lbva_metaworld.config import LbvaMetaWorldEnvConfig

__all__ = ["LbvaMetaWorldEnvConfig"]
