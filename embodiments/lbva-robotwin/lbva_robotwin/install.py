"""Write the ``policy/<name>`` folder (default ``policy/lbva_policy``) RoboTwin's ``script/eval_policy.py`` imports (``--policy_name <name>``)."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from importlib import resources
from pathlib import Path

from lbva_robotwin.checkout import RoboTwinCheckoutError, check_checkout

logger = logging.getLogger(__name__)

INIT = '"""lbva policy for RoboTwin: re-exports lbva_robotwin.deploy_policy (get_model, eval, reset_model)."""\n' \
       "from lbva_robotwin.deploy_policy import *  # noqa: F401,F403\n" \
       "from lbva_robotwin.deploy_policy import eval, get_model, reset_model, encode_obs  # noqa: F401\n"

EVAL_SH = """#!/bin/bash
# bash eval.sh TASK_NAME TASK_CONFIG CKPT_SETTING SEED GPU_ID [PORT] [PROTOCOL]   (run from policy/{name})
# PROTOCOL: lingbot-va (default: the released LingBot-VA client's seen instructions and seeds, comparable with the
# paper) or robotwin (RoboTwin's own script/eval_policy.py protocol); see the lbva-robotwin README.
policy_name={name}
task_name=${{1}}
task_config=${{2}}
ckpt_setting=${{3}}
seed=${{4}}
gpu_id=${{5}}
port=${{6:-8000}}
protocol=${{7:-}}
export CUDA_VISIBLE_DEVICES=${{gpu_id}}
cd ../..
PYTHONWARNINGS=ignore::UserWarning \\
python -m lbva_robotwin.evaluate --config policy/$policy_name/deploy_policy.yml \\
    --overrides \\
    --task_name ${{task_name}} \\
    --task_config ${{task_config}} \\
    --ckpt_setting ${{ckpt_setting}} \\
    --seed ${{seed}} \\
    --policy_name ${{policy_name}} \\
    --port ${{port}} ${{protocol:+--protocol ${{protocol}}}}
"""


def install(robotwin_root: str | Path, name: str = "lbva_policy", overwrite: bool = False) -> Path:
    """Create ``<robotwin_root>/policy/<name>/`` with ``__init__.py``, ``deploy_policy.py``,
    ``deploy_policy.yml`` and ``eval.sh``; returns the folder. The checkout must have RoboTwin 2.0's
    ``stable_2.0`` layout (:func:`lbva_robotwin.checkout.check_checkout` says what to do otherwise)."""
    root = check_checkout(robotwin_root).root  # RoboTwin 2.0's stable_2.0 layout, or an error saying what to do
    if not name.isidentifier():
        raise ValueError(f"policy name {name!r} must be a Python identifier (RoboTwin imports it as a module)")
    folder = root / "policy" / name
    found = importlib.util.find_spec(name)
    if found is not None and not (found.origin and Path(found.origin).resolve().parent == folder.resolve()):
        # RoboTwin appends ./policy to sys.path *last*: an installed module of that name would be imported instead
        raise ValueError(f"policy name {name!r} is already an importable module here ({found.origin}); RoboTwin would "
                         f"import that instead of policy/{name}. Pick another --name (default lbva_policy)")
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise FileExistsError(f"{folder} exists and is not empty; pass --overwrite to replace its files")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "__init__.py").write_text(INIT)
    (folder / "deploy_policy.py").write_text(INIT)
    yml = resources.files("lbva_robotwin").joinpath("deploy_policy.yml").read_text()
    (folder / "deploy_policy.yml").write_text(yml)
    (folder / "eval.sh").write_text(EVAL_SH.format(name=name))
    (folder / "eval.sh").chmod(0o755)
    logger.info("wrote %s", folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lbva_robotwin", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("install", help="create policy/<name> in a RoboTwin checkout")
    i.add_argument("robotwin_root")
    i.add_argument("--name", default="lbva_policy")
    i.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        install(args.robotwin_root, args.name, args.overwrite)
    except (RoboTwinCheckoutError, FileNotFoundError, FileExistsError, ValueError) as e:
        logger.error("%s", e)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
