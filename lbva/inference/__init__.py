"""Closed-loop inference: a :class:`Policy` session per robot, sync / naive async / FDM-grounded async."""

from lbva.inference.bundle import PolicyFolderError, is_policy_folder, load_policy, save_policy
from lbva.inference.errors import PolicyError
from lbva.inference.policy import MODES, Policy, PolicyStats

__all__ = ["MODES", "Policy", "PolicyError", "PolicyFolderError", "PolicyStats", "is_policy_folder", "load_policy",
           "save_policy"]
