"""The client side imports without torch (a robot computer may have numpy, msgpack and websockets only); the
lbva-client distribution imports without lbva itself."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sys

    BLOCKED = ("torch", "lightning", "lerobot", "diffusers", "transformers", "torchvision") + tuple(sys.argv[1:])

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Block())
    try:
        import torch  # the hook must really block it
    except ImportError:
        pass
    else:
        raise SystemExit("the torch blocker does not work")

    import lbva_client.client, lbva_client.protocol
    from lbva_client import LbvaClient, packb, unpackb
    if "lbva" not in BLOCKED:  # lbva's own names for the same client
        import lbva.serving.client
        import lbva.serving.msgpack_numpy
        import lbva.serving.protocol
        from lbva.serving import LbvaClient as Again
        assert Again is LbvaClient
    import numpy as np

    assert unpackb(packb({"a": np.arange(3)}))["a"].tolist() == [0, 1, 2]
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not loaded, loaded
    print("ok")
    """
)


@pytest.mark.parametrize("also_blocked", [(), ("lbva",)], ids=["lbva.serving", "lbva_client-alone"])
def test_client_imports_with_torch_blocked(also_blocked):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *also_blocked], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
