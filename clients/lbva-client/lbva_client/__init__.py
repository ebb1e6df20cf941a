"""lbva-client: talk to an ``lbva serve`` policy server (or an openpi one) with numpy, msgpack and websockets only.

* :class:`LbvaClient` — one session: ``reset``, ``infer``, ``feedback``, ``reconnect``;
* :class:`ServerError`, :class:`ConnectionLostError`, :class:`CallInterrupted` — what a call can raise;
* ``packb`` / ``unpackb`` (:mod:`lbva_client.msgpack_numpy`) — openpi's msgpack-with-numpy wire format;
* :mod:`lbva_client.protocol` — message kinds, the messages a client builds, error frames.

Runs on Python >= 3.10 with numpy 1.24 to 2.x; no torch. The lbva library's server uses this same code.
"""

from __future__ import annotations

from lbva_client.client import CallInterrupted, ConnectionLostError, LbvaClient, ServerError
from lbva_client.msgpack_numpy import MsgpackNumpyError, packb, unpackb

__version__ = "0.1.0"

__all__ = ["CallInterrupted", "ConnectionLostError", "LbvaClient", "MsgpackNumpyError", "ServerError", "__version__",
           "packb", "unpackb"]
