"""lbva's websocket protocol, the part both ends share: message kinds, the messages a client builds, error frames.

Transport: one websocket per session; every message is a msgpack map (arrays as in
:mod:`lbva_client.msgpack_numpy`). Compatible with openpi's ``WebsocketClientPolicy``:

* On connect the server sends one binary **metadata** map: the embodiment, the observation keys with their
  shapes and dtypes, the action rows of each reply, the episode rule (see the server's documentation).
* **infer** — a plain observation map (the embodiment's keys, optionally ``"prompt"``/``"task"`` strings) is
  answered by ``{"actions": float32 (T, A), "server_timing": {"infer_ms": ..., "prev_total_ms": ...}}``.
  That is everything an openpi client sends and reads.
* lbva kinds carry the reserved key ``"__lbva__"`` so plain openpi observations are never mistaken for them:

  - ``{"__lbva__": "reset", "prompt": str, "embodiment": str (optional)}`` starts a new episode;
    reply ``{"__lbva__": "reset", "ok": True, "session": int, "prompt": str}``.
  - ``{"__lbva__": "feedback", "executed_actions": float (T, A), "observation": {camera keys: uint8 (h, w, 3)
    or (T', h, w, 3); state key (optional): float (S,) or (T', S)}}`` hands the actions the robot really
    executed and the frames it really saw to the policy's KV cache; reply
    ``{"__lbva__": "feedback", "ok": True, "executed": T}``. ``T'`` is one frame after every
    ``metadata["feedback"]["frame_every_actions"]`` actions.
  - ``{"__lbva__": "infer", **observation}`` is an observation from a client that speaks lbva's protocol (it
    resets and feeds back itself, so the server keeps its history between requests).

* **Errors** come back as a *text* frame (openpi's client raises on any text frame) holding a JSON object
  ``{"error": kind, "field": name | null, "message": str, "protocol_version": int}``; the session stays open.

Imports only the standard library and numpy (no torch).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "BAD_REQUEST", "DECODE_ERROR", "DEFAULT_MAX_SIZE", "HEALTH_PATH", "INTERNAL_ERROR", "KINDS", "KIND_KEY",
    "PROTOCOL_NAME", "PROTOCOL_VERSION", "SERVER_BUSY", "TOO_LARGE", "ServerError", "error_frame",
    "feedback_message", "infer_message", "parse_error_frame", "reset_message",
]

PROTOCOL_NAME = "lbva-ws"
PROTOCOL_VERSION = 1
KIND_KEY = "__lbva__"
KINDS = ("infer", "reset", "feedback")
DEFAULT_MAX_SIZE = 32 * 1024 * 1024  # bytes; a few 480x640 RGB cameras fit comfortably
HEALTH_PATH = "/healthz"

# error kinds carried in the text frame's "error" entry
BAD_REQUEST = "bad_request"
DECODE_ERROR = "decode_error"
TOO_LARGE = "too_large"
INTERNAL_ERROR = "internal_error"
SERVER_BUSY = "server_busy"


class ServerError(RuntimeError):
    """An error reply from an lbva (or openpi) policy server. ``field`` names the offending entry, if any.

    The request was answered (with this error), so the connection stays usable."""

    def __init__(self, message: str, *, kind: str = INTERNAL_ERROR, field: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.field = field
        self.message = message


def error_frame(kind: str, message: str, field: str | None = None) -> str:
    """The text frame a server sends for an error."""
    return json.dumps({"error": kind, "field": field, "message": message, "protocol_version": PROTOCOL_VERSION})


def parse_error_frame(text: str) -> ServerError:
    """Turn a text frame into a :class:`ServerError` (openpi servers send a traceback: kept whole)."""
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("message"), str):
        return ServerError(obj["message"], kind=str(obj.get("error", INTERNAL_ERROR)), field=obj.get("field"))
    return ServerError(f"error in policy server:\n{text}")


def infer_message(observation: Mapping[str, Any]) -> dict[str, Any]:
    """An observation marked as coming from a client that speaks lbva's protocol."""
    if KIND_KEY in observation:
        raise ValueError(f"an observation cannot hold the reserved key {KIND_KEY!r}; remove it")
    return {KIND_KEY: "infer", **observation}


def reset_message(prompt: str, embodiment: str | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {KIND_KEY: "reset", "prompt": prompt}
    if embodiment is not None:
        msg["embodiment"] = embodiment
    return msg


def feedback_message(executed_actions: np.ndarray, observation: Mapping[str, Any]) -> dict[str, Any]:
    return {KIND_KEY: "feedback", "executed_actions": np.asarray(executed_actions), "observation": dict(observation)}
