"""The policy server under malformed input and abuse: a seeded fuzz run of well over a thousand malformed messages
(each answered with a clear client-side error, never an internal error, the server serving throughout and its memory
bounded), client mistakes classed as client mistakes, bad feedback refused before it reaches the policy, and the
limits (message size, queued bytes per connection, sessions, prompt length) enforced and raisable.

The server runs in this process on 127.0.0.1; clients are bare websockets (or raw sockets for the flood), so nothing
here depends on lbva's own client.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
from dataclasses import dataclass, field

import msgpack
import numpy as np
import pytest
import websockets
import websockets.sync.client
from serving_helpers import FRONT, STATE, WRIST, ToySpec, expected_actions, make_obs

from lbva.serving.fake_policy import FakePolicy
from lbva.serving.msgpack_numpy import packb, unpackb
from lbva.serving.server import PolicyServer

CLIENT_ERRORS = {"decode_error", "bad_request", "too_large"}


@dataclass(frozen=True)
class LimitedSpec(ToySpec):
    """The serving tests' toy arm (two cameras, 5-dim state, 4-dim actions in chunks of 6) with action limits."""

    action_low: np.ndarray = field(default_factory=lambda: np.full(4, -1.0, np.float32))
    action_high: np.ndarray = field(default_factory=lambda: np.full(4, 2.0, np.float32))


SPEC = LimitedSpec()


def raw_connect(port: int):
    ws = websockets.sync.client.connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None, proxy=None,
                                        open_timeout=30)
    return ws, unpackb(ws.recv(timeout=30))


_IN_EPISODE: dict[int, object] = {}  # connections whose episode has had its first (shorter) chunk (held, so that
# a closed connection's id is not reused by a new one)


def ask(ws, frame) -> str | bytes:
    ws.send(frame if isinstance(frame, (bytes, str)) else packb(frame))
    reply = ws.recv(timeout=60)
    if isinstance(frame, dict) and isinstance(frame.get("__lbva__"), str) and frame["__lbva__"] == "reset" \
            and isinstance(reply, bytes):
        _IN_EPISODE.pop(id(ws), None)  # an accepted reset starts a new episode
    return reply


def assert_client_error(reply, context) -> dict:
    assert isinstance(reply, str), f"expected an error text frame for {context!r}, got a binary reply"
    err = json.loads(reply)
    assert err["error"] in CLIENT_ERRORS, (context, err)
    assert isinstance(err["message"], str) and len(err["message"]) > 10, (context, err)
    return err


def assert_good_infer(ws, seed: int, prompt: str = "pick the cube", feedbacks: int = 0) -> None:
    obs = make_obs(seed, prompt=prompt)
    reply = ask(ws, obs)
    assert isinstance(reply, bytes), reply
    first = id(ws) not in _IN_EPISODE
    _IN_EPISODE[id(ws)] = ws
    np.testing.assert_allclose(unpackb(reply)["actions"], expected_actions(obs, prompt, feedbacks, first=first),
                               rtol=0, atol=1e-6)


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


# ------------------------------------------------------------------------------------------------ the fuzz run
def _array_map(dtype, shape, data) -> dict:
    return {b"__ndarray__": True, b"data": data, b"dtype": dtype, b"shape": shape}


def malformed_messages(seed: int, count: int, max_size: int):
    """``count`` messages that are each certainly invalid, drawn from a seeded generator: (frame, field at fault or
    None when the message as a whole is at fault, or ... when either may be named)."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    valid = packb(make_obs(1))
    odd_values = [None, True, 3, -1.5, "text", b"bytes", [1, 2], {"a": 1}, np.zeros(3), np.zeros((2, 2), np.int8),
                  np.array(["a", "b"]), np.float32(1.0)]

    def obs(**changes):
        o = make_obs(rng.randrange(1000))
        for k, v in changes.items():
            if v is None and k in o:
                del o[k]
            else:
                o[k] = v
        return o

    def bad_array(shape, dtype):
        kind = rng.randrange(6)
        if kind == 0:  # wrong shape
            return nrng.integers(0, 255, tuple(max(1, s + rng.choice([-1, 1, 2])) for s in shape)).astype(dtype), None
        if kind == 1:  # wrong dtype
            return np.zeros(shape, rng.choice([np.int16, np.int64, np.float16, np.bool_])
                            if dtype == np.uint8 else rng.choice([np.int32, np.uint8, np.bool_])), None
        if kind == 2:  # not an array
            return rng.choice(odd_values[:8]), None
        if kind == 3 and dtype != np.uint8:  # NaN / inf
            a = np.zeros(shape, dtype)
            a.flat[rng.randrange(a.size)] = rng.choice([np.nan, np.inf, -np.inf])
            return a, None
        if kind == 4:  # a time axis where none is allowed
            return np.zeros((2, *shape), dtype), None
        return np.zeros((), dtype), None

    makers = []

    def maker(fn):
        makers.append(fn)
        return fn

    @maker
    def garbage():
        return bytes([0xC1]) + rng.randbytes(rng.randrange(0, 300)), None  # 0xc1 is never valid msgpack

    @maker
    def truncated():
        return valid[: rng.randrange(1, len(valid) - 1)], None

    @maker
    def not_a_map():
        return packb(rng.choice([None, True, 7, -2.5, "observe", b"raw", [1, 2, 3], [make_obs(2)], np.zeros(3)])), None

    @maker
    def non_string_keys():
        return msgpack.packb({rng.choice([1, 2.5, b"k", None, True]): 1, "prompt": "x"}), None

    @maker
    def text_frame():
        return rng.choice(["", "hello", json.dumps(make_obs(3, prompt="x") | {}, default=str)[:50], "\x00" * 9]), None

    @maker
    def observation_key_missing():
        key = rng.choice([FRONT, WRIST, STATE])
        return obs(**{key: None}), key

    @maker
    def observation_extra_key():
        key = rng.choice(["gripper", "observation.images.side", "", "__proto__", "a" * 300])
        return obs(**{key: np.zeros(3)}), key

    @maker
    def observation_bad_value():
        key, shape, dtype = rng.choice([(FRONT, (6, 8, 3), np.uint8), (WRIST, (4, 4, 3), np.uint8), (STATE, (5,), np.float32)])
        value, _ = bad_array(shape, dtype)
        return obs(**{key: value}), key

    @maker
    def prompt_bad():
        key = rng.choice(["prompt", "task"])
        value = rng.choice([3, None, [1], {"a": 1}, np.zeros(2), b"bytes", "x" * (4097 + rng.randrange(5000))])
        return (obs(**{key: value}) if value is not None else obs(prompt=None) | {key: None}), key

    @maker
    def kind_bad():
        value = rng.choice(["explode", "", "RESET", 3, None, [1], {"k": 1}, np.array(["reset"]), np.zeros(2), b"reset"])
        return {"__lbva__": value, "prompt": "x"}, "__lbva__"

    @maker
    def reset_bad():
        choice = rng.randrange(5)
        if choice == 0:
            return {"__lbva__": "reset"}, "prompt"
        if choice == 1:
            return {"__lbva__": "reset", "prompt": rng.choice([v for v in odd_values if not isinstance(v, str)])}, "prompt"
        if choice == 2:
            return {"__lbva__": "reset", "prompt": "x" * (4097 + rng.randrange(10**4))}, "prompt"
        if choice == 3:
            return {"__lbva__": "reset", "prompt": "x", "embodiment": rng.choice(odd_values + ["aloha", ""])}, "embodiment"
        return {"__lbva__": "reset", "prompt": "x", rng.choice(["seed", "prompts", "x"]): 1}, ...

    def good_frames():
        return {FRONT: np.zeros((2, 6, 8, 3), np.uint8), WRIST: np.zeros((2, 4, 4, 3), np.uint8)}

    @maker
    def feedback_bad():
        choice = rng.randrange(6)
        actions = nrng.uniform(-1, 2, (6, 4)).astype(np.float32)
        if choice == 0:
            return {"__lbva__": "feedback", "observation": good_frames()}, "executed_actions"
        if choice == 1:
            bad = actions.copy()
            bad.flat[rng.randrange(bad.size)] = rng.choice([1e30, -1e30, 1e9, np.nan, np.inf, 3.4e38])
            return {"__lbva__": "feedback", "executed_actions": bad, "observation": good_frames()}, "executed_actions"
        if choice == 2:
            value, _ = bad_array((6, 4), np.float32)
            return {"__lbva__": "feedback", "executed_actions": value, "observation": good_frames()}, "executed_actions"
        if choice == 3:
            return {"__lbva__": "feedback", "executed_actions": actions, "observation": rng.choice(odd_values[:8])}, ...
        if choice == 4:
            frames = good_frames()
            # the cameras disagree on the number of frames, or one sends a frame without its colour axis
            frames[FRONT] = np.zeros((rng.choice([1, 3]), 6, 8, 3), np.uint8) if rng.random() < 0.5 else frames[FRONT][0, :, :, 0]
            return {"__lbva__": "feedback", "executed_actions": actions, "observation": frames}, ...
        return {"__lbva__": "feedback", "executed_actions": actions, "observation": good_frames(), "extra": 1}, "extra"

    @maker
    def forged_array():
        choice = rng.randrange(7)
        if choice == 0:
            m = _array_map("|O", [1], b"\x80\x04N.")  # a pickle: never unpickled
        elif choice == 1:
            m = _array_map("<f4", [rng.randrange(2, 10**6)], b"\x00" * 8)  # shape and data disagree
        elif choice == 2:
            m = _array_map("<f4", [-1], b"")
        elif choice == 3:
            m = _array_map(rng.choice(["nonsense", "<c16", "V8", "|V4", "M8[s]", "x" * 40, 5]), [1], b"\x00" * 8)
        elif choice == 4:
            m = _array_map("<f4", [10**12, 10**12], b"")
        elif choice == 5:
            m = _array_map("<f4", [2], rng.choice(["text", 5, None, [1, 2]]))
        else:
            m = {b"__ndarray__": True, b"dtype": "<f4"}
        return msgpack.packb({STATE: m, "prompt": "x"}), ...

    @maker
    def nested_deeply():
        depth = rng.randrange(200, 2000)
        return b"\x91" * depth + b"\xc0", None  # [[[...nil...]]]: a list, not a map

    @maker
    def oversized():
        return b"\x00" * (max_size + 1 + rng.randrange(1000)), None

    for i in range(count):
        name = makers[i % len(makers)]
        yield name.__name__, *name()


def test_seeded_fuzz_every_malformed_message_gets_a_clear_error_and_the_server_keeps_serving():
    """1,300 malformed messages over 4 connections: a client-side error each, a correct answer after each 20, the
    server's memory growth bounded."""
    max_size = 64 * 1024
    count, checked_every = 1300, 20
    with PolicyServer(lambda: FakePolicy.from_embodiment(SPEC), SPEC, port=0, max_size=max_size, workers=2).start() as srv:
        conns = [raw_connect(srv.port)[0] for _ in range(4)]
        for ws in conns:
            assert isinstance(ask(ws, {"__lbva__": "reset", "prompt": "pick the cube"}), bytes)
        rss_before = rss_bytes()
        kinds = {}
        for i, (maker, frame, field_at_fault) in enumerate(malformed_messages(seed=1234, count=count, max_size=max_size)):
            ws = conns[i % len(conns)]
            err = assert_client_error(ask(ws, frame), (maker, frame if len(repr(frame)) < 300 else repr(frame)[:300]))
            kinds[err["error"]] = kinds.get(err["error"], 0) + 1
            if field_at_fault is not ...:
                assert err["field"] == field_at_fault, (maker, err)
            if i % checked_every == 0:
                assert_good_infer(ws, seed=i)
        rss_growth = rss_bytes() - rss_before
        for ws in conns:
            assert_good_infer(ws, seed=7)
            ws.close()
        other, _ = raw_connect(srv.port)  # a new session after it all
        assert_good_infer(other, seed=8)
        other.close()
    assert sum(kinds.values()) == count and set(kinds) <= CLIENT_ERRORS
    assert rss_growth < 64 * 2**20, f"the server's process grew by {rss_growth / 2**20:.0f} MiB over {count} messages"


# ------------------------------------------------------------------------------------------------ client mistakes
@pytest.fixture
def server():
    policies = []

    def factory():
        policies.append(FakePolicy.from_embodiment(SPEC))
        return policies[-1]

    with PolicyServer(factory, SPEC, port=0, max_size=64 * 1024).start() as srv:
        srv.policies = policies
        yield srv


@pytest.mark.parametrize("message, field", [
    ({"__lbva__": np.array(["reset"]), "prompt": "x"}, "__lbva__"),
    ({"__lbva__": np.zeros(2), "prompt": "x"}, "__lbva__"),
    ({"__lbva__": ["reset"], "prompt": "x"}, "__lbva__"),
    ({"__lbva__": "reset", "prompt": "x", "embodiment": np.array(["toy-arm", "toy-arm"])}, "embodiment"),
    ({"__lbva__": "reset", "prompt": "x", "embodiment": 5}, "embodiment"),
    ({"__lbva__": "reset", "prompt": np.array(["x"])}, "prompt"),
])
def test_array_valued_protocol_fields_are_client_errors(server, message, field):
    ws, _ = raw_connect(server.port)
    err = assert_client_error(ask(ws, message), message)
    assert err["error"] == "bad_request" and err["field"] == field
    assert_good_infer(ws, seed=3)
    ws.close()


def test_absurd_feedback_is_refused_and_does_not_poison_the_session(server):
    """Finite but absurd executed actions (1e30) used to reach the policy; every later chunk was then NaN."""
    ws, _ = raw_connect(server.port)
    ask(ws, {"__lbva__": "reset", "prompt": "pick the cube"})
    frames = {FRONT: np.zeros((2, 6, 8, 3), np.uint8), WRIST: np.zeros((2, 4, 4, 3), np.uint8)}
    for value in (1e30, -1e9, 3.4e38, 1e6, 33.0):
        actions = np.zeros((6, 4), np.float32)
        actions[2, 1] = value
        err = assert_client_error(ask(ws, {"__lbva__": "feedback", "executed_actions": actions, "observation": frames}),
                                  value)
        assert err["field"] == "executed_actions" and "executed_actions[2, 1]" in err["message"], err
        assert "[-31, 32]" in err["message"], err  # the plausible range: the limits [-1, 2] widened by ten ranges
    assert server.policies[-1].feedback == []  # nothing reached the policy
    assert_good_infer(ws, seed=4)  # the session is as it was: no feedback counted
    # a robot a little beyond its nominal limits is still fed back
    ok = ask(ws, {"__lbva__": "feedback", "executed_actions": np.full((6, 4), 3.5, np.float32), "observation": frames})
    assert unpackb(ok)["ok"] is True
    assert_good_infer(ws, seed=5, feedbacks=1)
    ws.close()


class _PickyPolicy(FakePolicy):
    """Rejects feedback the way lbva.inference.Policy does: with a UserError naming what is wrong."""

    def observe(self, frames, executed_actions):
        from lbva.inference.policy import PolicyError

        if len(next(iter(frames.values()))) != 2:
            raise PolicyError(f"observe() needs 2 frames per chunk; got {len(next(iter(frames.values())))}")
        super().observe(frames, executed_actions)


def test_a_policy_refusing_its_input_is_a_bad_request_not_an_internal_error():
    with PolicyServer(lambda: _PickyPolicy.from_embodiment(SPEC), SPEC, port=0).start() as srv:
        ws, _ = raw_connect(srv.port)
        ask(ws, {"__lbva__": "reset", "prompt": "pick the cube"})
        frames = {FRONT: np.zeros((3, 6, 8, 3), np.uint8), WRIST: np.zeros((3, 4, 4, 3), np.uint8)}
        err = assert_client_error(ask(ws, {"__lbva__": "feedback", "executed_actions": np.zeros((6, 4), np.float32),
                                           "observation": frames}), "3 frames")
        assert err["error"] == "bad_request" and "needs 2 frames" in err["message"]
        assert_good_infer(ws, seed=6)
        ws.close()


# ------------------------------------------------------------------------------------------------ limits
def test_prompt_length_is_limited_in_reset_and_infer_and_the_limit_can_be_raised():
    long = "p" * 5000
    with PolicyServer(lambda: FakePolicy.from_embodiment(SPEC), SPEC, port=0).start() as srv:
        ws, meta = raw_connect(srv.port)
        assert meta["limits"]["max_prompt_chars"] == 4096
        for message in ({"__lbva__": "reset", "prompt": long}, make_obs(1, prompt=long)):
            err = assert_client_error(ask(ws, message), "long prompt")
            assert err["field"] == "prompt" and "5000" in err["message"] and "4096" in err["message"]
        ws.close()
    with PolicyServer(lambda: FakePolicy.from_embodiment(SPEC), SPEC, port=0, max_prompt_chars=6000).start() as srv:
        ws, meta = raw_connect(srv.port)
        reply = unpackb(ask(ws, {"__lbva__": "reset", "prompt": long}))
        assert reply["ok"] and len(reply["prompt"]) == 5000
        assert_good_infer(ws, seed=2, prompt=long)
        ws.close()


def test_sessions_are_capped_by_default():
    with PolicyServer(lambda: FakePolicy.from_embodiment(SPEC), SPEC, port=0).start() as srv:
        assert srv.max_sessions == 16
        conns = [raw_connect(srv.port)[0] for _ in range(16)]
        extra = websockets.sync.client.connect(f"ws://127.0.0.1:{srv.port}", proxy=None, open_timeout=30)
        busy = extra.recv(timeout=30)
        assert isinstance(busy, str) and json.loads(busy)["error"] == "server_busy"
        with pytest.raises(websockets.ConnectionClosed):
            extra.recv(timeout=30)
        conns.pop().close()
        assert srv.wait_for_sessions(15, timeout=30)
        again, _ = raw_connect(srv.port)  # a place came free
        assert_good_infer(again, seed=9)
        for ws in [*conns, again]:
            ws.close()


def _handshake(port: int) -> socket.socket:
    """A websocket client on a bare socket: we send frames ourselves and never read the replies."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(4096)
    assert response.startswith(b"HTTP/1.1 101"), response[:200]
    return sock


def _frame(payload: bytes) -> bytes:
    """One masked binary frame; the mask key is zero, so the payload goes out as it is (no per-frame copy)."""
    return struct.pack("!BBQ", 0x82, 0x80 | 127, len(payload)) + b"\x00\x00\x00\x00" + payload


class _GatedPolicy(FakePolicy):
    gate = threading.Event()

    def predict_action_chunk(self, observation):
        assert _GatedPolicy.gate.wait(120), "the test never opened the gate"
        return super().predict_action_chunk(observation)


def test_pipelined_large_messages_while_busy_stay_within_the_queued_bytes_limit():
    """Three connections send messages of almost max_size back to back, without reading a reply, while the policy is
    busy: each connection may hold at most about max_queued_bytes, not every message sent."""
    max_size = 4 * 2**20
    _GatedPolicy.gate.clear()
    srv = PolicyServer(lambda: _GatedPolicy.from_embodiment(SPEC), SPEC, port=0, max_size=max_size, workers=1).start()
    socks = []
    try:
        assert srv.max_queued_bytes == 4 * max_size  # the default: two messages at the hard limit
        big = _frame(b"\xc1" * (max_size - 4096))  # not msgpack: each would get a decode_error once read
        busy = _frame(packb(make_obs(1)))  # an infer the gated policy holds
        socks = [_handshake(srv.port) for _ in range(3)]
        rss_before = rss_bytes()
        sent = [0, 0, 0]

        def flood(i: int, sock: socket.socket) -> None:
            sock.sendall(busy)
            sock.settimeout(3.0)  # once the server stops reading, sendall blocks: that is the back-pressure we want
            try:
                for _ in range(40):
                    sock.sendall(big)
                    sent[i] += 1
            except (TimeoutError, OSError):
                pass

        threads = [threading.Thread(target=flood, args=(i, s)) for i, s in enumerate(socks)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        growth = rss_bytes() - rss_before
        message_mb = len(big) / 2**20
        # sent counts what left this process: the kernel buffers hold a few MB of it on both sides of each connection
        assert max(sent) < 40, f"the server read every message ({sent}); nothing held the clients back"
        per_connection_limit = srv.max_queued_bytes + 2 * (2 * max_size)  # the queue, one message read, one in parsing
        assert growth < 3 * per_connection_limit, (
            f"the server grew by {growth / 2**20:.0f} MiB holding {sent} messages of {message_mb:.1f} MiB "
            f"(limit {3 * per_connection_limit / 2**20:.0f} MiB for three connections)")
    finally:
        _GatedPolicy.gate.set()
        for s in socks:
            s.close()
        srv.stop()


def test_the_limits_are_command_line_flags():
    import lbva.serving.cli as serve_cli
    from lbva.cli import build_parser

    args = build_parser().parse_args(["serve", "--fake", "--embodiment", "so101", "--port", "0", "--max-size", "2048",
                                      "--max-queued-bytes", "10000", "--max-sessions", "3", "--max-prompt-chars", "9"])
    server = serve_cli.build_server(args)
    assert (server.max_size, server.max_queued_bytes, server.max_sessions, server.max_prompt_chars) == (2048, 10000, 3, 9)
    defaults = serve_cli.build_server(build_parser().parse_args(["serve", "--fake", "--embodiment", "so101"]))
    assert (defaults.max_queued_bytes, defaults.max_sessions, defaults.max_prompt_chars) == (
        4 * defaults.max_size, 16, 4096)
