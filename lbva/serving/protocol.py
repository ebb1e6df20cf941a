"""lbva's websocket protocol, server side: requests, their validation errors, the metadata message.

The wire format, the message kinds, the messages a client builds and the error frames are shared with the
torch-free client and live in :mod:`lbva_client.protocol` (re-exported here); this module adds what only the
server needs: classifying a decoded request (:func:`parse_request`), :class:`RequestError` for requests that
break the protocol, and the metadata map sent on connect (:func:`metadata_message`).

A message above the hard limit (twice ``max_size``) is cut off by the websocket layer, which closes that
connection with code 1009.

Imports only the standard library, numpy and msgpack (no torch).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lbva_client.protocol import (  # noqa: F401  (re-exported: the server and its tests read them from here)
    BAD_REQUEST,
    DECODE_ERROR,
    DEFAULT_MAX_SIZE,
    HEALTH_PATH,
    INTERNAL_ERROR,
    KIND_KEY,
    KINDS,
    PROTOCOL_NAME,
    PROTOCOL_VERSION,
    SERVER_BUSY,
    TOO_LARGE,
    ServerError,
    error_frame,
    feedback_message,
    infer_message,
    parse_error_frame,
    reset_message,
)

from lbva import __version__


class RequestError(ValueError):
    """A request that breaks the protocol; ``field`` names the entry at fault (``None``: the message itself)."""

    def __init__(self, field: str | None, message: str, *, kind: str = BAD_REQUEST) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.kind = kind


@dataclass(frozen=True)
class Request:
    """A decoded client message: its kind, its payload (the map without the reserved kind key), and whether it
    named its kind (``lbva``: a client that speaks lbva's protocol; plain openpi observations do not)."""

    kind: str
    payload: dict[str, Any]
    lbva: bool = False


def parse_request(message: Any) -> Request:
    """Classify a decoded message; raises :class:`RequestError` for non-maps and unknown kinds."""
    if not isinstance(message, Mapping):
        raise RequestError(
            None,
            f"a request must be a msgpack map (a dict), got {type(message).__name__}; send an observation dict "
            f"or {{{KIND_KEY!r}: one of {list(KINDS)}, ...}}",
        )
    bad = [k for k in message if not isinstance(k, str)]
    if bad:
        raise RequestError(None, f"request keys must be strings, got {bad[:5]!r}")
    payload = dict(message)
    if KIND_KEY not in payload:
        return Request("infer", payload)
    kind = payload.pop(KIND_KEY)
    if kind not in KINDS:
        raise RequestError(KIND_KEY, f"unknown message kind {kind!r}; allowed: {list(KINDS)}")
    return Request(kind, payload, lbva=True)


def metadata_message(
    *,
    embodiment: str,
    observation: Mapping[str, Mapping[str, Any]],
    text_keys: tuple[str, ...],
    action_dim: int,
    action_rows: tuple[int, int],
    max_size: int,
    session: int,
    observation_aliases: Mapping[str, Mapping[str, Any]] | None = None,
    episodes: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The map a server sends once on connect: what it expects and what it returns.

    ``action_rows``: (rows of the first reply of an episode, rows of every later reply); ``action.shape`` is
    ``[None, A]`` because the row count depends on the reply. ``episodes`` says when an episode starts."""
    first, later = (int(n) for n in action_rows)
    meta = {
        "server": "lbva",
        "lbva_version": __version__,
        "protocol": PROTOCOL_NAME,
        "protocol_version": PROTOCOL_VERSION,
        "kind_key": KIND_KEY,
        "kinds": list(KINDS),
        "embodiment": embodiment,
        "observation": {k: dict(v) for k, v in observation.items()},
        "observation_aliases": {k: dict(v) for k, v in (observation_aliases or {}).items()},
        "text_keys": list(text_keys),
        "action": {"shape": [None, int(action_dim)], "dtype": "float32", "rows_first_chunk": first,
                   "rows_later_chunks": later},
        "episodes": dict(episodes or {}),
        "max_size": int(max_size),
        "session": int(session),
    }
    if extra:
        meta.update(extra)
    return meta
