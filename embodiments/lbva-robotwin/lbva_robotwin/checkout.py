"""Is this folder a RoboTwin checkout the adapter can plug into? (RoboTwin 2.0's ``stable_2.0`` layout.)

The adapter follows ``script/eval_policy.py``'s policy contract (``policy/<name>/deploy_policy.py``), which lives on
RoboTwin's ``stable_2.0`` branch. Its ``main`` branch dropped that script and moved policies to XPolicyLab
(``scripts/eval_policy_*.py``), so a checkout of ``main`` is recognised and the user is told how to switch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

SUPPORTED_BRANCH = "stable_2.0"
CLONE = f"git clone -b {SUPPORTED_BRANCH} https://github.com/RoboTwin-Platform/RoboTwin.git"
# what script/eval_policy.py imports or reads from the checkout, and where the policy folder goes
REQUIRED = ("script/eval_policy.py", "script/test_render.py", "policy", "envs", "task_config",
            "description/utils/generate_episode_instructions.py")
# signs of RoboTwin's newer layout (the main branch), which has no script/eval_policy.py
NEWER_LAYOUT = ("XPolicyLab", "scripts/eval_policy_xpolicylab.py")


class RoboTwinCheckoutError(FileNotFoundError):
    """The folder is not a RoboTwin checkout the adapter supports; the message says what to do."""


@dataclass(frozen=True)
class Checkout:
    root: Path
    branch: str | None  # None: not a git checkout (or a detached HEAD, see ``head``)
    head: str | None  # what .git/HEAD says: "ref: refs/heads/<branch>" or a commit id


def git_head(root: Path) -> str | None:
    """The content of the checkout's HEAD (read from the files, so git itself is not needed); None without git."""
    dot_git = root / ".git"
    if dot_git.is_file():  # a worktree or submodule: ".git" holds "gitdir: <path>"
        text = dot_git.read_text().strip()
        if not text.startswith("gitdir:"):
            return None
        git_dir = Path(text.split(":", 1)[1].strip())
        dot_git = git_dir if git_dir.is_absolute() else root / git_dir
    head = dot_git / "HEAD"
    return head.read_text().strip() if head.is_file() else None


def check_checkout(robotwin_root: str | Path) -> Checkout:
    """The checkout at ``robotwin_root``, or :class:`RoboTwinCheckoutError` saying exactly what to do."""
    root = Path(robotwin_root)
    if not root.is_dir():
        raise RoboTwinCheckoutError(f"{root} is not a folder; pass the folder you cloned RoboTwin into ({CLONE})")
    head = git_head(root)
    branch = head.removeprefix("ref: refs/heads/") if head and head.startswith("ref: refs/heads/") else None
    missing = [p for p in REQUIRED if not (root / p).exists()]
    on = f" (git branch {branch!r})" if branch else ""
    if missing and (branch not in (None, SUPPORTED_BRANCH) or any((root / p).exists() for p in NEWER_LAYOUT)):
        switch = (f"`git -C {root} checkout {SUPPORTED_BRANCH}`" if head else f"a fresh clone: `{CLONE}`")
        raise RoboTwinCheckoutError(
            f"{root}{on} has RoboTwin's newer layout, without {', '.join(missing)}: its policies moved to "
            f"XPolicyLab and script/eval_policy.py is gone. lbva's adapter plugs into RoboTwin 2.0's "
            f"{SUPPORTED_BRANCH} branch. Switch with {switch}, set up RoboTwin's environment as its README for that "
            f"branch says, then run `python -m lbva_robotwin install {root}` again."
        )
    if missing:
        raise RoboTwinCheckoutError(
            f"{root}{on} is not a RoboTwin 2.0 checkout: {', '.join(missing)} missing. Clone the supported branch "
            f"with `{CLONE}` and pass that folder."
        )
    if head and branch != SUPPORTED_BRANCH:
        logger.warning(
            "%s is on %s, not %s; the adapter was written against %s's script/eval_policy.py. If the evaluation "
            "fails, run `git -C %s checkout %s`.", root, f"branch {branch!r}" if branch else f"commit {head[:12]}",
            SUPPORTED_BRANCH, SUPPORTED_BRANCH, root, SUPPORTED_BRANCH,
        )
    return Checkout(root, branch, head)
