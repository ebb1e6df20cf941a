"""The websocket policy server: openpi's wire protocol, one isolated policy per connection.

    server = PolicyServer(lambda: FakePolicy.from_embodiment(spec), spec, port=8000)
    server.serve_forever()                  # or: with server.start(): ...  (a background thread)

Each connection is a session with its own policy instance, made by ``policy_factory()`` when the client
connects and released (``policy.close()`` when it has one) when it disconnects. Policy calls run in a thread
pool, so the event loop keeps answering other sessions and the ``/healthz`` check while a chunk is being
computed; one session's calls never overlap. The message kinds are described in :mod:`lbva.serving.protocol`.
A malformed request gets a text frame naming the problem and the session stays open.

**Episodes.** A world-model policy keeps a history, so the server must know when an episode starts:

* a ``reset`` message starts one, and so does an observation whose prompt differs from the episode's;
* an observation sent *without* lbva's message kinds (an openpi client: its ``reset()`` sends nothing, and it
  never reports which of the actions it executed) starts one too — every time. Such a client is answered from
  the observation it sends alone, as openpi's own servers answer, so a repeated prompt after the client's
  ``reset()`` can never continue an old history. ``openpi_history=True`` (``lbva serve --openpi-history``)
  instead keeps one history per connection until the prompt changes, for clients that execute every chunk to its
  end and start each episode on a new connection or with a new prompt.

Clients that speak lbva's protocol (``lbva_client.LbvaClient`` marks its observations) keep the history between
requests and feed it back. The metadata's ``episodes`` entry states this rule, and its ``action`` entry the rows
of each reply: the first reply of an episode holds ``(chunk_frames - 1) * actions_per_frame`` actions, later ones
``chunk_frames * actions_per_frame``; the server refuses to send a policy's chunk of any other length.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import http
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import websockets
from websockets.asyncio.server import Request, Response, ServerConnection, serve

from lbva.errors import UserError
from lbva.policy_like import PolicyLike
from lbva.serving import protocol as P
from lbva.serving.msgpack_numpy import MsgpackNumpyError, packb, unpackb
from lbva.serving.schema import MAX_TEXT_CHARS, ObservationSchema, check_text

logger = logging.getLogger(__name__)

# Limits a server starts with unless told otherwise (``lbva serve --max-sessions``, ``--max-queued-bytes``,
# ``--max-prompt-chars``): each open session holds a policy (its KV cache) and up to max_queued_bytes of waiting
# messages, so an unbounded count of either is unbounded memory.
DEFAULT_MAX_SESSIONS = 16
# Executed actions fed back may lie outside the embodiment's action limits by at most this many full ranges
# (high - low): real robots report poses a little beyond a spec's nominal limits (RoboTwin joints at ±π against
# ±1.5), but 1e30 is not what a robot executed and would poison the session's KV cache. Without limits on the spec,
# their magnitude is capped at MAX_ABS_FEEDBACK.
FEEDBACK_RANGES = 10.0
MAX_ABS_FEEDBACK = 1e6


@dataclass
class Connection:
    """One websocket connection's state (the protocol calls it a session; a model's history is
    :class:`lbva.inference.session.EntryBook`). ``policy`` is ``None`` until the factory has made it."""

    id: int
    remote: str
    policy: Any = None
    prompt: str | None = None
    requests: int = 0
    prev_total_ms: float | None = None
    lbva: bool = False  # the client has sent lbva message kinds: it resets and feeds back itself
    replies: int = 0  # action chunks sent in the current episode


class PolicyServer:
    """Serve ``policy_factory()`` policies for one embodiment over websockets (openpi-compatible).

    Args:
        policy_factory: called (in a worker thread) once per connection; returns a fresh PolicyLike.
        spec: the embodiment spec whose cameras/state/action dims requests are checked against; or pass
            ``schema`` directly.
        host, port: where to listen; port 0 picks a free port (read :attr:`port` after start).
        max_size: largest accepted request in bytes. Larger ones (up to twice this) get a ``too_large`` error
            reply; beyond that the websocket layer closes the connection (code 1009).
        max_queued_bytes: messages a connection may have waiting (received, not yet handled) while its previous
            request is being computed; then the server stops reading from it and TCP holds the client back.
            Counted in messages of the hard limit (2 × max_size), at least one; default 4 × max_size. A connection
            holds about this plus two messages (one being read, one being handled).
        max_sessions: refuse further connections (``server_busy`` text frame, close code 1013) when this many
            are open (default 16). ``None``: no limit.
        max_prompt_chars: longest prompt accepted in a reset or an observation (default 4096 characters).
        workers: threads running policy calls, shared by all sessions.
        default_prompt: the prompt used when a session's first observation carries none (openpi clients
            that never send one); ``None``: such a request gets an error asking for a prompt.
        openpi_history: keep one episode across plain (openpi) observations until the prompt changes, instead of
            starting an episode with each of them (see "Episodes" above).
        metadata: extra entries for the metadata message.
    """

    def __init__(
        self,
        policy_factory: Callable[[], PolicyLike],
        spec: Any = None,
        *,
        schema: ObservationSchema | None = None,
        host: str = "127.0.0.1",
        port: int = 8000,
        max_size: int = P.DEFAULT_MAX_SIZE,
        max_queued_bytes: int | None = None,
        max_sessions: int | None = DEFAULT_MAX_SESSIONS,
        max_prompt_chars: int = MAX_TEXT_CHARS,
        workers: int = 1,
        default_prompt: str | None = None,
        openpi_history: bool = False,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if schema is None:
            if spec is None:
                raise ValueError("PolicyServer needs the embodiment: pass spec=EmbodimentSpec or schema=ObservationSchema")
            schema = ObservationSchema.from_embodiment(spec)
        if not isinstance(max_size, int) or max_size < 1024:
            raise ValueError(f"max_size must be an int of at least 1024 bytes, got {max_size!r}")
        if max_queued_bytes is None:
            max_queued_bytes = 4 * max_size
        if not isinstance(max_queued_bytes, int) or max_queued_bytes < 2 * max_size:
            raise ValueError(f"max_queued_bytes must be at least 2 * max_size = {2 * max_size} bytes (one message at the "
                             f"hard limit), got {max_queued_bytes!r}")
        if max_sessions is not None and max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1 or None, got {max_sessions!r}")
        if not isinstance(max_prompt_chars, int) or max_prompt_chars < 1:
            raise ValueError(f"max_prompt_chars must be >= 1, got {max_prompt_chars!r}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers!r}")
        self.policy_factory = policy_factory
        self.schema = dataclasses.replace(schema, max_text_chars=max_prompt_chars)
        self.host = host
        self.max_size = max_size
        self.max_queued_bytes = max_queued_bytes
        self.max_sessions = max_sessions
        self.max_prompt_chars = max_prompt_chars
        self._feedback_bounds = _feedback_bounds(spec, self.schema.action_dim)
        self.workers = workers
        self.default_prompt = default_prompt
        self.openpi_history = bool(openpi_history)
        self.extra_metadata = dict(metadata or {})
        self._requested_port = port
        self._port: int | None = None
        self._ids = itertools.count(1)
        self._sessions: dict[int, Connection] = {}
        self._changed = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._thread_error: BaseException | None = None

    # ------------------------------------------------------------------ running
    @property
    def port(self) -> int:
        """The port listened on (the real one when constructed with port 0)."""
        if self._port is None:
            raise RuntimeError("the server is not listening yet; start it first")
        return self._port

    @property
    def active_sessions(self) -> int:
        with self._changed:
            return len(self._sessions)

    def wait_for_sessions(self, count: int, timeout: float = 30.0) -> bool:
        """Block until exactly ``count`` connections are open (True) or ``timeout`` seconds pass (False)."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._sessions) == count, timeout=timeout)

    async def serve(self, ready: Callable[[], None] | None = None) -> None:
        """Listen until :meth:`stop`; call ``ready()`` once the socket is bound."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix="lbva-policy")
        try:
            async with serve(
                self._handle,
                self.host,
                self._requested_port,
                compression=None,
                max_size=2 * self.max_size,
                # frames waiting per connection: reading pauses above this, so TCP holds the client back
                max_queue=max(1, self.max_queued_bytes // (2 * self.max_size)) - 1,
                process_request=_health_check,
            ) as server:
                self._port = int(next(iter(server.sockets)).getsockname()[1])
                logger.info(
                    "serving embodiment %r on ws://%s:%d (health check http://%s:%d%s)",
                    self.schema.embodiment, self.host, self._port, self.host, self._port, P.HEALTH_PATH,
                )
                if ready is not None:
                    ready()
                await self._stop.wait()
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        asyncio.run(self.serve())

    def start(self, timeout: float = 30.0) -> PolicyServer:
        """Serve from a background thread; returns once listening (use as ``with server.start(): ...``)."""
        if self._thread is not None:
            raise RuntimeError("the server is already running")
        ready = threading.Event()

        def main() -> None:
            try:
                asyncio.run(self.serve(ready.set))
            except BaseException as e:  # surfaced by start() when it happens before the socket is bound
                self._thread_error = e
                logger.exception("policy server stopped with an error")
            finally:
                ready.set()

        self._thread = threading.Thread(target=main, name="lbva-serve", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or self._port is None:
            raise RuntimeError(f"the policy server did not start within {timeout} s: {self._thread_error!r}")
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop serving (thread-safe); joins the background thread when :meth:`start` made one."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:
                pass  # the loop has already finished
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> PolicyServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ sessions
    def episode_rule(self) -> dict[str, Any]:
        """The metadata's ``episodes`` entry: when this server starts a new episode."""
        plain = "continue_until_prompt_changes" if self.openpi_history else "new_episode"
        rule = ("An episode starts with a reset message, or with an observation whose prompt differs from the "
                "episode's. ")
        if self.openpi_history:
            rule += ("Plain observations (no lbva message kind) continue the connection's episode until the prompt "
                     "changes; start each episode on a new connection or with a new prompt.")
        else:
            rule += ("Each plain observation (no lbva message kind, as openpi clients send) starts an episode and is "
                     "answered from that observation alone, with action.rows_first_chunk actions; clients that "
                     "send lbva's infer/reset/feedback kinds keep the history between requests.")
        return {"plain_observations": plain, "rule": rule}

    def _metadata(self, session: Connection) -> dict[str, Any]:
        return P.metadata_message(
            embodiment=self.schema.embodiment,
            observation=self.schema.describe(),
            text_keys=self.schema.text_keys,
            action_dim=self.schema.action_dim,
            action_rows=(self.schema.reply_rows(True), self.schema.reply_rows(False)),
            max_size=self.max_size,
            session=session.id,
            observation_aliases=self.schema.describe_aliases(),
            episodes=self.episode_rule(),
            extra={"limits": {"max_size": self.max_size, "max_queued_bytes": self.max_queued_bytes,
                              "max_sessions": self.max_sessions, "max_prompt_chars": self.max_prompt_chars},
                   **self.extra_metadata},
        )

    def _open(self, remote: str) -> Connection | None:
        with self._changed:
            if self.max_sessions is not None and len(self._sessions) >= self.max_sessions:
                return None
            session = Connection(next(self._ids), remote)
            self._sessions[session.id] = session
            self._changed.notify_all()
            return session

    def _close(self, session: Connection) -> None:
        with self._changed:
            self._sessions.pop(session.id, None)
            self._changed.notify_all()

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A policy call, on the shared worker threads."""
        assert self._loop is not None
        return await self._loop.run_in_executor(self._executor, fn, *args)

    async def _run_aside(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Making or closing a policy: on the loop's default threads, so busy workers never hold up a connect."""
        assert self._loop is not None
        return await self._loop.run_in_executor(None, fn, *args)

    async def _handle(self, ws: ServerConnection) -> None:
        remote = f"{ws.remote_address}"
        session = self._open(remote)
        if session is None:
            try:
                await ws.send(P.error_frame(P.SERVER_BUSY, f"the server already holds {self.max_sessions} sessions; retry later"))
                await ws.close(1013, "server busy")
            except websockets.ConnectionClosed:
                pass
            return
        logger.info("session %d opened from %s", session.id, remote)
        try:
            try:
                session.policy = await self._run_aside(self.policy_factory)
            except Exception as e:
                logger.exception("session %d: the policy factory failed", session.id)
                await ws.send(P.error_frame(P.INTERNAL_ERROR, f"could not create a policy for this session: {type(e).__name__}: {e}"))
                await ws.close(1011, "policy creation failed")
                return
            await ws.send(packb(self._metadata(session)))
            async for message in ws:
                start = time.monotonic()
                reply, is_infer = await self._reply(session, message)
                await ws.send(reply)
                if is_infer:
                    session.prev_total_ms = (time.monotonic() - start) * 1000.0
        except websockets.ConnectionClosed:
            pass
        finally:
            policy, session.policy = session.policy, None
            if policy is not None and callable(getattr(policy, "close", None)):
                try:
                    await self._run_aside(policy.close)
                except Exception:
                    logger.exception("session %d: policy.close() failed", session.id)
            del policy
            self._close(session)
            logger.info("session %d closed (%d requests)", session.id, session.requests)

    async def _reply(self, session: Connection, message: bytes | str) -> tuple[bytes | str, bool]:
        """One request -> (binary reply, True if it was an infer) or (text error frame, False)."""
        session.requests += 1
        try:
            if isinstance(message, str):
                raise P.RequestError(None, "text frames are not requests; send msgpack in a binary frame", kind=P.DECODE_ERROR)
            if len(message) > self.max_size:
                raise P.RequestError(
                    None,
                    f"the message is {len(message)} bytes, more than this server's max_size of {self.max_size} bytes; "
                    "send smaller images or restart the server with a larger --max-size",
                    kind=P.TOO_LARGE,
                )
            try:
                obj = unpackb(message)
            except MsgpackNumpyError as e:
                raise P.RequestError(None, str(e), kind=P.DECODE_ERROR) from None
            if isinstance(obj, Mapping) and P.KIND_KEY in obj and not isinstance(obj[P.KIND_KEY], str):
                raise P.RequestError(P.KIND_KEY, f"must be one of the strings {list(P.KINDS)}, got "
                                                 f"{type(obj[P.KIND_KEY]).__name__}")
            request = P.parse_request(obj)
            session.lbva = session.lbva or request.lbva
            if request.kind == "infer":
                return await self._infer(session, request.payload), True
            if request.kind == "reset":
                return await self._reset(session, request.payload), False
            return await self._feedback(session, request.payload), False
        except P.RequestError as e:
            logger.info("session %d: rejected request: %s", session.id, e)
            return P.error_frame(e.kind, str(e), e.field), False
        except UserError as e:  # the policy refused its input (lbva.inference's PolicyError): the client's mistake
            logger.info("session %d: the policy refused the request: %s", session.id, e)
            return P.error_frame(P.BAD_REQUEST, f"the policy refused the request: {e}"), False
        except Exception as e:
            logger.exception("session %d: the policy failed", session.id)
            return P.error_frame(P.INTERNAL_ERROR, f"the policy failed: {type(e).__name__}: {e}"), False

    async def _infer(self, session: Connection, payload: dict[str, Any]) -> bytes:
        obs = self.schema.check_observation(payload)
        prompt = obs.get("prompt", obs.get("task"))
        if prompt is None and session.prompt is None:
            if self.default_prompt is None:
                raise P.RequestError(
                    "prompt",
                    "this session has no prompt yet: put a 'prompt' string in the observation or send "
                    f"{{{P.KIND_KEY!r}: 'reset', 'prompt': ...}} first",
                )
            prompt = self.default_prompt
        policy = session.policy
        # a new instruction starts a new episode; so does every plain (openpi) observation, see "Episodes"
        new_episode = (prompt is not None and prompt != session.prompt) or not (session.lbva or self.openpi_history)
        episode_prompt = prompt if prompt is not None else session.prompt

        def work() -> tuple[Any, float, int]:
            if new_episode:
                policy.reset(episode_prompt)
                session.prompt, session.replies = episode_prompt, 0
            t0 = time.monotonic()
            actions = policy.predict_action_chunk(obs)
            return actions, (time.monotonic() - t0) * 1000.0, session.replies

        actions, infer_ms, replies = await self._run(work)
        try:
            actions = self.schema.check_actions(np.asarray(actions), "actions")
        except P.RequestError as e:
            raise RuntimeError(f"the policy returned invalid actions: {e}") from None
        rows = self.schema.reply_rows(first_of_episode=replies == 0)
        if actions.shape[0] != rows:  # the metadata promises this length; never send another
            raise RuntimeError(
                f"the policy returned {actions.shape[0]} actions, but this server announces {rows} for "
                f"{'the first' if replies == 0 else 'a later'} reply of an episode (metadata 'action'); the policy and "
                f"the embodiment's chunk_frames/actions_per_frame disagree"
            )
        session.replies = replies + 1
        timing = {"infer_ms": infer_ms}
        if session.prev_total_ms is not None:
            timing["prev_total_ms"] = session.prev_total_ms
        return packb({"actions": np.ascontiguousarray(actions, dtype=np.float32), "server_timing": timing})

    async def _reset(self, session: Connection, payload: dict[str, Any]) -> bytes:
        allowed = ("prompt", "embodiment")
        for key in payload:
            if key not in allowed:
                raise P.RequestError(key, f"unexpected key in a reset message; allowed: {list(allowed)}")
        if "prompt" not in payload:
            raise P.RequestError("prompt", "a reset message needs a 'prompt' string (the task instruction)")
        prompt = check_text(payload["prompt"], "prompt", self.max_prompt_chars)
        embodiment = payload.get("embodiment", self.schema.embodiment)
        if not isinstance(embodiment, str):
            raise P.RequestError("embodiment", f"expected the embodiment's name as a string, got {type(embodiment).__name__}")
        if embodiment != self.schema.embodiment:
            raise P.RequestError(
                "embodiment",
                f"this server serves {self.schema.embodiment!r}, not {embodiment!r}; connect to a server started "
                f"with --embodiment {embodiment}",
            )
        await self._run(session.policy.reset, prompt)
        session.prompt, session.replies = prompt, 0
        return packb({P.KIND_KEY: "reset", "ok": True, "session": session.id, "prompt": prompt})

    async def _feedback(self, session: Connection, payload: dict[str, Any]) -> bytes:
        frames, actions = self.schema.check_feedback(payload)
        self._check_plausible(actions)
        if session.prompt is None:
            raise P.RequestError(None, "feedback before the session has a prompt: send a reset (or an infer with a prompt) first")
        await self._run(session.policy.observe, frames, actions)
        return packb({P.KIND_KEY: "feedback", "ok": True, "executed": int(actions.shape[0])})


    def _check_plausible(self, actions: np.ndarray) -> None:
        """Executed actions (T, A) far outside what the robot can do are refused: fed to the policy, they turn every
        later chunk of the session into NaN."""
        low, high = self._feedback_bounds
        outside = (actions < low) | (actions > high)  # (T, A)
        if outside.any():
            t, j = (int(i) for i in np.argwhere(outside)[0])
            raise P.RequestError(
                "executed_actions",
                f"executed_actions[{t}, {j}] = {float(actions[t, j]):g} is outside the plausible range "
                f"[{float(low[j]):g}, {float(high[j]):g}] for {self.schema.embodiment!r} (its action limits widened by "
                f"{FEEDBACK_RANGES:g} ranges); send the actions the robot executed, in native units",
            )


def _feedback_bounds(spec: Any, action_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) per action channel for fed-back executed actions: the spec's limits widened by FEEDBACK_RANGES
    full ranges, or ±MAX_ABS_FEEDBACK when the spec declares no limits."""
    low, high = getattr(spec, "action_low", None), getattr(spec, "action_high", None)
    if low is None or high is None:
        return np.full(action_dim, -MAX_ABS_FEEDBACK), np.full(action_dim, MAX_ABS_FEEDBACK)
    low, high = np.asarray(low, np.float64).reshape(-1), np.asarray(high, np.float64).reshape(-1)
    span = high - low
    return low - FEEDBACK_RANGES * span, high + FEEDBACK_RANGES * span


def _health_check(connection: ServerConnection, request: Request) -> Response | None:
    """``GET /healthz`` -> 200 OK (openpi's path); anything else goes on to the websocket handshake."""
    if request.path.split("?", 1)[0] == P.HEALTH_PATH:
        return connection.respond(http.HTTPStatus.OK, "OK\n")
    return None
