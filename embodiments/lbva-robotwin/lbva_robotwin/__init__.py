"""RoboTwin 2.0 (aloha-agilex) side of lbva: the policy adapter RoboTwin's evaluation script loads.

RoboTwin is a checkout with its own environment (Python 3.10, numpy 1.26), so this package installs there and
never imports the lbva library: it talks to ``lbva serve --embodiment robotwin-aloha-agilex`` (running in lbva's
environment) through the torch-free ``lbva-client``. It provides :mod:`lbva_robotwin.deploy_policy`
(``get_model`` / ``eval`` / ``reset_model``), ``python -m lbva_robotwin install ROBOTWIN_ROOT`` (checks the
checkout and writes ``policy/lbva_policy``), and ``python -m lbva_robotwin.evaluate`` (RoboTwin's evaluation under
the ``lingbot-va`` or ``robotwin`` protocol). The ``robotwin-aloha-agilex`` embodiment is built into lbva.
"""

from __future__ import annotations

EMBODIMENT = "robotwin-aloha-agilex"
POLICY_NAME = "lbva_policy"  # not "lbva": RoboTwin would import the lbva library instead

__all__ = ["EMBODIMENT", "POLICY_NAME", "install"]


def __getattr__(name: str):  # lazy
    if name == "install":
        from lbva_robotwin.install import install

        return install
    raise AttributeError(f"module 'lbva_robotwin' has no attribute {name!r}")
