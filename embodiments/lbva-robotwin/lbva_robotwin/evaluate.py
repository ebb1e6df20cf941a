"""Run RoboTwin's own evaluation (``script/eval_policy.py``) under a named protocol: ``python -m lbva_robotwin.evaluate``.

Run from the RoboTwin root with RoboTwin's arguments (``policy/lbva_policy/eval.sh`` does it)::

    python -m lbva_robotwin.evaluate --config policy/lbva_policy/deploy_policy.yml --overrides \\
        --task_name beat_block_hammer --task_config demo_clean --ckpt_setting my_ckpt --seed 0 \\
        --policy_name lbva_policy --port 8000 [--protocol lingbot-va | robotwin]

Two protocols differ in which test scenes and which instructions a run sees, and so in its numbers:

* ``lingbot-va`` (the default) — what the released LingBot-VA client uses for the paper's RoboTwin numbers
  (Robbyant/lingbot-va ``evaluation/robotwin/eval_polict_client_openpi.py``): instructions of type ``seen``,
  scenes from seed ``10000 * (1 + seed)`` on. Use it to compare with the paper.
* ``robotwin`` — RoboTwin 2.0's own ``script/eval_policy.py`` unchanged: the ``instruction_type`` of
  ``deploy_policy.yml`` (``unseen`` unless set), scenes from seed ``100000 * (1 + seed)`` on. Use it to compare
  with RoboTwin's leaderboard and other policies evaluated by RoboTwin's script.

Everything else is RoboTwin's script as it is: 100 test episodes per task, scenes whose expert demonstration
fails are skipped, the per-task step limit, success from the task's ``check_success``. The start seed is set by
wrapping the script's ``eval_policy`` (its fifth argument, ``st_seed``), which ``main`` computes as
``100000 * (1 + seed)`` in RoboTwin ``stable_2.0``.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lbva_robotwin.checkout import RoboTwinCheckoutError, check_checkout

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Protocol:
    name: str
    instruction_type: str | None  # None: RoboTwin's deploy_policy.yml key decides
    start_seed: Callable[[int], int] | None  # seed -> first scene seed; None: RoboTwin's own 100000 * (1 + seed)
    source: str


PROTOCOLS = {
    "lingbot-va": Protocol("lingbot-va", "seen", lambda seed: 10000 * (1 + seed),
                           "the released LingBot-VA client (Robbyant/lingbot-va evaluation/robotwin)"),
    "robotwin": Protocol("robotwin", None, None, "RoboTwin 2.0's script/eval_policy.py"),
}
DEFAULT_PROTOCOL = "lingbot-va"
ROBOTWIN_INSTRUCTION_TYPE = "unseen"  # RoboTwin's policies ship deploy_policy.yml files with this value


class ProtocolError(ValueError):
    """A protocol name or setting that cannot be honoured; the message says which values are allowed."""


def resolve(usr_args: dict[str, Any]) -> Protocol:
    """Pick the protocol named by ``usr_args["protocol"]`` and set ``usr_args["instruction_type"]`` from it."""
    name = usr_args.get("protocol") or DEFAULT_PROTOCOL
    if name not in PROTOCOLS:
        raise ProtocolError(f"protocol {name!r} is not one of {sorted(PROTOCOLS)}; set protocol in deploy_policy.yml "
                            f"or pass --protocol lingbot-va (comparable with the paper) or --protocol robotwin")
    protocol = PROTOCOLS[name]
    chosen = usr_args.get("instruction_type")
    if protocol.instruction_type is None:
        usr_args["instruction_type"] = chosen or ROBOTWIN_INSTRUCTION_TYPE
    elif chosen not in (None, protocol.instruction_type):
        raise ProtocolError(
            f"instruction_type {chosen!r} contradicts protocol {name!r}, which uses {protocol.instruction_type!r} "
            f"({protocol.source}); drop instruction_type, or use --protocol robotwin to choose it yourself")
    else:
        usr_args["instruction_type"] = protocol.instruction_type
    return protocol


def load_eval_script(root: Path) -> Any:
    """RoboTwin's ``script/eval_policy.py`` as a module (it adds ./, ./policy and ./description/utils to the path
    itself, relative to the working directory, which must be the RoboTwin root)."""
    script = root / "script" / "eval_policy.py"
    sys.path.insert(0, str(root / "script"))  # as `python script/eval_policy.py` would have it (test_render)
    spec = importlib.util.spec_from_file_location("robotwin_eval_policy", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("main", "eval_policy", "parse_args_and_config"):
        if not callable(getattr(module, name, None)):
            raise ProtocolError(f"{script} has no function {name}(); lbva_robotwin follows RoboTwin's stable_2.0 "
                                f"script: run `git -C {root} checkout stable_2.0`")
    return module


def apply_start_seed(module: Any, protocol: Protocol, seed: int) -> None:
    """Make the script's ``main`` hand ``eval_policy`` the protocol's first scene seed."""
    if protocol.start_seed is None:
        return
    original = module.eval_policy
    params = list(inspect.signature(original).parameters)
    if params[4:5] != ["st_seed"]:
        raise ProtocolError(
            f"RoboTwin's eval_policy({', '.join(params)}) does not take st_seed as its fifth argument as in "
            f"stable_2.0, so protocol {protocol.name!r} cannot set the seeds; use --protocol robotwin or check out "
            "stable_2.0")
    first = protocol.start_seed(seed)

    def eval_policy(*args: Any, **kwargs: Any) -> Any:
        args = list(args)
        if len(args) > 4:
            args[4] = first
        else:
            kwargs["st_seed"] = first
        return original(*args, **kwargs)

    module.eval_policy = eval_policy
    logger.info("protocol %s: scenes from seed %d (%s)", protocol.name, first, protocol.source)


def main(root: str | Path = ".") -> int:
    logging.basicConfig(level=logging.INFO, format="[lbva_robotwin] %(message)s")
    root = Path(root).resolve()
    check_checkout(root)
    module = load_eval_script(root)
    usr_args = module.parse_args_and_config()
    protocol = resolve(usr_args)
    apply_start_seed(module, protocol, int(usr_args.get("seed") or 0))
    logger.info("protocol %s: instruction_type %s", protocol.name, usr_args["instruction_type"])
    from test_render import Sapien_TEST  # RoboTwin's renderer check, run first as its script does

    Sapien_TEST()
    module.main(usr_args)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ProtocolError, RoboTwinCheckoutError) as e:
        logging.getLogger(__name__).error("%s", e)
        sys.exit(2)
