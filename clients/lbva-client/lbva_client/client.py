"""A small synchronous client for lbva's policy server (also talks to openpi's, for ``infer``).

    with LbvaClient("127.0.0.1", 8000) as client:
        print(client.metadata["observation"])          # keys, shapes and dtypes the server expects
        client.reset("put the cup on the plate")
        chunk = client.infer(obs)["actions"]           # float32 (T, A)
        client.feedback(executed_actions, {"observation.images.front": frames})

Every call sends one message and reads its one reply, so a reply can only be paired with the wrong request if
a call gives up before its reply came. That is why a call that times out, is interrupted (Ctrl-C, or
``should_stop``) or fails mid-way closes the connection: the late reply can then never be read as the answer to
the next request. Later calls raise :class:`ConnectionLostError` until :meth:`LbvaClient.reconnect`.

Imports only the standard library, numpy, msgpack and websockets — no torch — so it runs on a robot's
computer beside nothing else.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import websockets
import websockets.sync.client

from lbva_client import protocol as P
from lbva_client.msgpack_numpy import packb, unpackb

__all__ = ["CallInterrupted", "ConnectionLostError", "LbvaClient", "ServerError"]

ServerError = P.ServerError

# an abandoned connection is closed without waiting long for the server's half of the closing handshake: a
# server that stopped answering would otherwise hold up Ctrl-C for websockets' default 10 s
_ABANDON_CLOSE_TIMEOUT = 1.0


class ConnectionLostError(ConnectionError):
    """This client's connection was closed (a call timed out, was interrupted, or the server went away), so it
    cannot be used any more; :meth:`LbvaClient.reconnect` opens a new session."""


class CallInterrupted(Exception):
    """A call was abandoned because ``should_stop()`` asked for it while waiting for the reply."""


class LbvaClient:
    """One session on a policy server.

    Errors from the server raise :class:`ServerError` (``.kind``, ``.field``, ``.message``); the connection stays
    usable. A reply slower than ``timeout`` seconds raises ``TimeoutError``, ``should_stop()`` returning true while
    a call waits raises :class:`CallInterrupted`, and Ctrl-C raises ``KeyboardInterrupt``: each of these closes
    the connection first (the server may still answer the abandoned request), and every later call raises
    :class:`ConnectionLostError` until :meth:`reconnect`.

    Args:
        host: ``"127.0.0.1"``, or a URL ``ws://host:port`` (then pass ``port=None``).
        port: the server's port; ``None`` when ``host`` already has one.
        timeout: seconds to wait for each reply (``None``: no limit).
        open_timeout: seconds to wait for the connection and the server's metadata.
        max_size: largest reply accepted in bytes (``None``: no limit).
        should_stop: called every ``poll_interval`` seconds while a call waits; a true result abandons the call
            (e.g. ``EmergencyStop.poll`` of the real-arm loop, so a first Ctrl-C that only sets a flag is still
            honoured while the server is busy or hung).
        poll_interval: how often (seconds) a waiting call checks ``should_stop`` and lets Python handle signals;
            a pending Ctrl-C takes effect within about this long.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = 8000,
        *,
        timeout: float | None = 60.0,
        open_timeout: float = 10.0,
        max_size: int | None = None,
        should_stop: Callable[[], Any] | None = None,
        poll_interval: float = 0.1,
    ) -> None:
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds or None (no limit), got {timeout!r}")
        if not poll_interval > 0:
            raise ValueError(f"poll_interval must be a positive number of seconds, got {poll_interval!r}")
        uri = host if host.startswith(("ws://", "wss://")) else f"ws://{host}"
        if port is not None:
            uri += f":{port}"
        self.uri = uri
        self.timeout = timeout
        self.open_timeout = open_timeout
        self.max_size = max_size
        self.should_stop = should_stop
        self.poll_interval = float(poll_interval)
        self._ws: Any = None
        self._lost: str | None = None
        self._metadata: dict[str, Any] = {}
        self._connect()

    # ------------------------------------------------------------------------------------------ connection
    def _connect(self) -> None:
        kwargs: dict[str, Any] = {"compression": None, "max_size": self.max_size, "open_timeout": self.open_timeout}
        if "proxy" in inspect.signature(websockets.sync.client.connect).parameters:
            kwargs["proxy"] = None  # a policy server is reached directly, never through an HTTP proxy
        ws = websockets.sync.client.connect(self.uri, **kwargs)
        try:
            first = self._wait(ws, self.open_timeout)
            if isinstance(first, str):
                raise P.parse_error_frame(first)
            metadata = unpackb(first)
            if not isinstance(metadata, dict):
                raise ConnectionLostError(f"{self.uri} sent {type(metadata).__name__} instead of a metadata map; is it a policy server?")
        except BaseException:
            _close_quickly(ws)
            raise
        self._ws, self._metadata, self._lost = ws, metadata, None

    def reconnect(self) -> dict[str, Any]:
        """Close this connection (if still open) and open a new one: a **new session** on the server.

        The server-side state of the old session is lost — its prompt, its episode history (the world model's
        KV cache) and any chunk it was still computing — so call :meth:`reset` with the prompt before the next
        :meth:`infer`. Returns the new session's metadata."""
        if self._ws is not None:
            _close_quickly(self._ws)
            self._ws = None
        self._lost = "it was closed for reconnect()"
        self._connect()
        return self._metadata

    @property
    def metadata(self) -> dict[str, Any]:
        """The map the server sent on connect (embodiment, observation keys/shapes/dtypes, action rows, ...)."""
        return self._metadata

    @property
    def connected(self) -> bool:
        """False once a call was abandoned or the connection closed; :meth:`reconnect` makes it usable again."""
        return self._lost is None and self._ws is not None

    @property
    def speaks_lbva(self) -> bool:
        """True when the server is an lbva server (it takes ``reset`` and ``feedback``), False for openpi's."""
        return self._metadata.get("protocol") == P.PROTOCOL_NAME

    # ------------------------------------------------------------------------------------------- one call
    def _wait(self, ws: Any, timeout: float | None) -> str | bytes:
        """The next message, waiting in slices of ``poll_interval`` so that signals (Ctrl-C) are handled and
        ``should_stop`` is asked while the server is busy."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            try:
                return ws.recv(timeout=self.poll_interval if remaining is None else max(0.0, min(self.poll_interval, remaining)))
            except TimeoutError:
                pass  # a slice ended; websockets keeps any part of a message it already has for the next recv
            if self.should_stop is not None and self.should_stop():
                raise CallInterrupted(f"the call to {self.uri} was abandoned because should_stop() asked for it")
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"no reply from {self.uri} within {timeout} s")

    def _abandon(self, reason: str) -> None:
        self._lost = reason
        if self._ws is not None:
            _close_quickly(self._ws)

    def _call(self, message: Mapping[str, Any], what: str) -> dict[str, Any]:
        if not self.connected:
            raise ConnectionLostError(
                f"the connection to {self.uri} is closed ({self._lost}); call client.reconnect() to start a new "
                "session — the server-side history of the old one is lost, so reset(prompt) again"
            )
        data = packb(dict(message))  # bad input fails here, before anything is sent: the session stays in step
        try:
            self._ws.send(data)
            reply = self._wait(self._ws, self.timeout)
        except TimeoutError:
            self._abandon(f"{what} got no reply within {self.timeout} s")
            raise TimeoutError(
                f"{what}: no reply from {self.uri} within {self.timeout} s. The connection was closed so that a late "
                "reply cannot be taken for the answer to a later request; call client.reconnect() for a new "
                "session (the server-side history is lost), or pass a larger timeout"
            ) from None
        except websockets.ConnectionClosed as e:
            self._abandon(f"the server closed it during {what} ({e})")
            raise ConnectionLostError(
                f"{what}: the server at {self.uri} closed the connection ({e}); call client.reconnect() for a new session"
            ) from None
        except BaseException as e:  # Ctrl-C, should_stop, or anything else while a reply may still be on its way
            self._abandon(f"{what} was interrupted ({type(e).__name__})")
            raise
        if isinstance(reply, str):
            raise P.parse_error_frame(reply)
        out = unpackb(reply)
        if not isinstance(out, dict):
            raise ServerError(f"{what}: the server replied with {type(out).__name__}, not a map", kind=P.DECODE_ERROR)
        return out

    # ------------------------------------------------------------------------------------------ the calls
    def infer(self, observation: Mapping[str, Any]) -> dict[str, Any]:
        """Send an observation; returns ``{"actions": float32 (T, A), "server_timing": {...}}``.

        To an lbva server the observation goes as an lbva ``infer`` message, so the server keeps this session's
        episode going between calls (episodes start with :meth:`reset` or a new prompt); to an openpi server it
        goes as the plain map openpi expects."""
        message = P.infer_message(observation)  # refuses an observation holding the reserved kind key
        if not self.speaks_lbva:
            message = dict(observation)  # openpi servers take the observation as it is
        return self._call(message, "infer")

    def reset(self, prompt: str, embodiment: str | None = None) -> dict[str, Any]:
        """Start a new episode with this instruction (and check the server serves ``embodiment``)."""
        return self._call(P.reset_message(prompt, embodiment), "reset")

    def feedback(self, executed_actions: np.ndarray, observation: Mapping[str, Any]) -> dict[str, Any]:
        """Tell the policy which actions were executed (T, A) and which frames the cameras then showed."""
        return self._call(P.feedback_message(executed_actions, observation), "feedback")

    def close(self) -> None:
        if self._ws is not None:
            self._ws.close()
        self._lost = self._lost or "it was closed with close()"

    def __enter__(self) -> LbvaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_quickly(ws: Any) -> None:
    ws.close_timeout = min(ws.close_timeout or _ABANDON_CLOSE_TIMEOUT, _ABANDON_CLOSE_TIMEOUT)
    ws.close()
