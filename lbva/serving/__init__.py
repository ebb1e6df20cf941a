"""Serving: a websocket policy server speaking openpi's protocol, and a client that needs no torch.

The names below load on first use, so ``import lbva.serving`` itself stays light:

* :class:`PolicyServer` (``lbva.serving.server``) — serve one policy per connection;
* :class:`LbvaClient`, :class:`ServerError` (``lbva.serving.client``) — numpy + msgpack + websockets only;
* :class:`ObservationSchema` (``lbva.serving.schema``) — what requests must look like;
* :class:`FakePolicy` (``lbva.serving.fake_policy``) — a deterministic stand-in for smoke tests;
* ``packb`` / ``unpackb`` (``lbva.serving.msgpack_numpy``) — openpi's msgpack-with-numpy format.

The client, the codec and the protocol messages are the ``lbva-client`` distribution (package ``lbva_client``,
Python >= 3.10, no torch), which lbva depends on; the modules above re-export them.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PolicyServer": "lbva.serving.server",
    "LbvaClient": "lbva.serving.client",
    "ServerError": "lbva.serving.protocol",
    "RequestError": "lbva.serving.protocol",
    "ObservationSchema": "lbva.serving.schema",
    "ArraySpec": "lbva.serving.schema",
    "FakePolicy": "lbva.serving.fake_policy",
    "packb": "lbva.serving.msgpack_numpy",
    "unpackb": "lbva.serving.msgpack_numpy",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lbva.serving' has no attribute {name!r}")
