"""The websocket policy server, driven over real sockets on 127.0.0.1 (ephemeral ports).

Reads like the spec: a round trip carries observations intact; every malformed request gets a text frame naming
the field and the server keeps serving (the same session and others); sessions are isolated; disconnects free
the policy; /healthz answers 200.
"""

from __future__ import annotations

import concurrent.futures
import gc
import http.client
import json

import hypothesis.strategies as st
import msgpack
import numpy as np
import pytest
import websockets
import websockets.sync.client
from hypothesis import HealthCheck, given, settings
from serving_helpers import FRONT, STATE, WRIST, RecordingFactory, ToySpec, expected_actions, make_obs

from lbva.serving.client import LbvaClient, ServerError
from lbva.serving.fake_policy import FakePolicy
from lbva.serving.msgpack_numpy import packb, unpackb
from lbva.serving.server import PolicyServer


def raw_connect(port: int):
    """A bare websocket (no lbva client logic) and the server's metadata frame."""
    ws = websockets.sync.client.connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None, proxy=None, open_timeout=10)
    return ws, unpackb(ws.recv(timeout=10))


def assert_serves(port: int, seed: int = 11) -> None:
    """A fresh client gets the reference actions: the server is alive and well."""
    obs = make_obs(seed)
    with LbvaClient("127.0.0.1", port, timeout=30) as client:
        np.testing.assert_allclose(client.infer(obs)["actions"], expected_actions(obs, "pick the cube", 0), rtol=0, atol=1e-6)


# ------------------------------------------------------------------ round trip
def test_metadata_describes_the_embodiment(server):
    with LbvaClient("127.0.0.1", server.port) as client:
        meta = client.metadata
    spec = ToySpec()
    assert meta["server"] == "lbva" and meta["protocol"] == "lbva-ws" and meta["protocol_version"] == 1
    assert meta["lbva_version"] == __import__("lbva").__version__
    assert meta["embodiment"] == spec.name
    assert meta["observation"] == {
        cam.key: {"shape": [cam.height, cam.width, 3], "dtype": "uint8"} for cam in spec.cameras
    } | {STATE: {"shape": [spec.native_state_dim], "dtype": "float32"}}
    # the first reply of an episode has one latent frame of actions fewer (that frame is the observation itself)
    assert meta["action"] == {"shape": [None, spec.native_action_dim], "dtype": "float32",
                              "rows_first_chunk": (spec.chunk_frames - 1) * spec.actions_per_frame,
                              "rows_later_chunks": spec.chunk_frames * spec.actions_per_frame}
    assert meta["episodes"]["plain_observations"] == "new_episode" and "reset" in meta["episodes"]["rule"]
    assert meta["observation_aliases"] == {}  # the toy robot declares no other convention
    assert meta["max_size"] == 64 * 1024 and meta["kinds"] == ["infer", "reset", "feedback"]


def test_infer_round_trip_matches_the_reference(server):
    with LbvaClient("127.0.0.1", server.port) as client:
        first = client.infer(make_obs(1))
        second = client.infer(make_obs(2))
    np.testing.assert_allclose(first["actions"], expected_actions(make_obs(1), "pick the cube", 0), rtol=0, atol=1e-6)
    # the client speaks lbva's protocol, so its second observation continues the episode: a full chunk
    np.testing.assert_allclose(second["actions"], expected_actions(make_obs(2), "pick the cube", 0, first=False), rtol=0, atol=1e-6)
    assert first["actions"].dtype == np.float32 and first["actions"].shape == (3, 4) and second["actions"].shape == (6, 4)
    assert set(first["server_timing"]) == {"infer_ms"}  # nothing before the first reply to measure
    assert set(second["server_timing"]) == {"infer_ms", "prev_total_ms"}


def test_reset_and_feedback_reach_the_policy(server, factory):
    frames = {FRONT: np.full((2, 6, 8, 3), 7, np.uint8), WRIST: np.full((2, 4, 4, 3), 9, np.uint8), STATE: np.ones((2, 5))}
    executed = np.linspace(-1, 1, 12).reshape(3, 4)
    obs = make_obs(4, prompt=None)
    with LbvaClient("127.0.0.1", server.port) as client:
        assert client.reset("stack the blocks", embodiment="toy-arm") == {"__lbva__": "reset", "ok": True, "session": client.metadata["session"], "prompt": "stack the blocks"}
        assert client.feedback(executed, frames) == {"__lbva__": "feedback", "ok": True, "executed": 3}
        assert client.feedback(executed, {k: v[0] for k, v in frames.items()})["executed"] == 3
        actions = client.infer(obs)["actions"]  # no prompt in the observation: the reset's prompt holds
        policy = factory.made[-1]()
        assert policy.resets == ["stack the blocks"]
        assert len(policy.feedback) == 2
        got_frames, got_actions = policy.feedback[0]
        np.testing.assert_array_equal(got_frames[FRONT], frames[FRONT])
        assert got_frames[STATE].dtype == np.float32
        np.testing.assert_array_equal(got_actions, executed.astype(np.float32))
        client.infer(make_obs(4, prompt="a new task"))  # a new prompt starts a new episode
        assert policy.resets == ["stack the blocks", "a new task"]
    np.testing.assert_allclose(actions, expected_actions(obs, "stack the blocks", 2), rtol=0, atol=1e-6)


def test_health_check_returns_200(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/healthz")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == b"OK\n"
    conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/")  # a plain HTTP request elsewhere is not a health check
    assert conn.getresponse().status != 200
    conn.close()


# ------------------------------------------------------------------ malformed requests
def _obs_with(**changes):
    obs = make_obs(5)
    for key, value in changes.items():
        key = {"front": FRONT, "wrist": WRIST, "state": STATE}.get(key, key)
        if value is _DROP:
            del obs[key]
        else:
            obs[key] = value
    return obs


_DROP = object()
_FORGED = {b"__ndarray__": True, b"data": b"\x80\x04N.", b"dtype": "|O", b"shape": [1]}

BAD_REQUESTS = [
    # (id, frame sent (bytes/str) or message packed, error kind, field named, words in the message)
    ("garbage-bytes", b"\xc1\xff\x00", "decode_error", None, "msgpack"),
    ("truncated-msgpack", packb(make_obs())[:-5], "decode_error", None, "msgpack"),
    ("text-frame", "hello", "decode_error", None, "binary frame"),
    ("int-keys", msgpack.packb({1: 2}), "decode_error", None, "msgpack"),
    ("forged-object-array", msgpack.packb({STATE: _FORGED}), "decode_error", None, "not allowed"),
    ("list-not-map", [1, 2, 3], "bad_request", None, "map"),
    ("int-not-map", 5, "bad_request", None, "map"),
    ("missing-state", _obs_with(state=_DROP), "bad_request", STATE, "missing"),
    ("missing-camera", _obs_with(wrist=_DROP), "bad_request", WRIST, "missing"),
    ("extra-key", _obs_with(gripper=np.zeros(1)), "bad_request", "gripper", "unexpected"),
    ("image-shape", _obs_with(front=np.zeros((8, 6, 3), np.uint8)), "bad_request", FRONT, "(6, 8, 3)"),
    ("image-channels-first", _obs_with(wrist=np.zeros((3, 4, 4), np.uint8)), "bad_request", WRIST, "shape"),
    ("image-dtype", _obs_with(front=np.zeros((6, 8, 3), np.float32)), "bad_request", FRONT, "uint8"),
    ("state-shape", _obs_with(state=np.zeros(4, np.float32)), "bad_request", STATE, "(5,)"),
    ("state-dtype", _obs_with(state=np.zeros(5, np.int64)), "bad_request", STATE, "int64"),
    ("state-nan", _obs_with(state=np.array([0, np.nan, 0, 0, 0], np.float32)), "bad_request", STATE, "NaN"),
    ("state-inf", _obs_with(state=np.array([0, 0, -np.inf, 0, 0])), "bad_request", STATE, "infinite"),
    ("state-list", _obs_with(state=[0.0] * 5), "bad_request", STATE, "numpy"),
    ("prompt-not-str", _obs_with(prompt=3), "bad_request", "prompt", "string"),
    ("unknown-kind", {"__lbva__": "explode"}, "bad_request", "__lbva__", "unknown message kind"),
    ("reset-no-prompt", {"__lbva__": "reset"}, "bad_request", "prompt", "prompt"),
    ("reset-extra", {"__lbva__": "reset", "prompt": "x", "seed": 1}, "bad_request", "seed", "unexpected"),
    ("reset-embodiment", {"__lbva__": "reset", "prompt": "x", "embodiment": "aloha"}, "bad_request", "embodiment", "toy-arm"),
    ("feedback-no-actions", {"__lbva__": "feedback", "observation": {}}, "bad_request", "executed_actions", "missing"),
    ("feedback-action-dim", {"__lbva__": "feedback", "executed_actions": np.zeros((3, 5)), "observation": {}}, "bad_request", "executed_actions", "(T, 4)"),
    ("feedback-action-nan", {"__lbva__": "feedback", "executed_actions": np.full((3, 4), np.nan), "observation": {}}, "bad_request", "executed_actions", "NaN"),
    ("feedback-frame-shape", {"__lbva__": "feedback", "executed_actions": np.zeros((3, 4)), "observation": {FRONT: np.zeros((6, 8), np.uint8), WRIST: np.zeros((4, 4, 3), np.uint8)}}, "bad_request", FRONT, "shape"),
    ("feedback-text-key", {"__lbva__": "feedback", "executed_actions": np.zeros((3, 4)), "observation": {FRONT: np.zeros((6, 8, 3), np.uint8), WRIST: np.zeros((4, 4, 3), np.uint8), "prompt": "x"}}, "bad_request", "prompt", "unexpected"),
    ("oversized", b"\x00" * (64 * 1024 + 1), "too_large", None, "max_size"),
    ("oversized-valid-msgpack", packb({**make_obs(), "pad": np.zeros(70_000, np.uint8)}), "too_large", None, "65536"),
]


@pytest.mark.parametrize("frame, kind, field, words", [r[1:] for r in BAD_REQUESTS], ids=[r[0] for r in BAD_REQUESTS])
def test_bad_request_gets_a_text_error_naming_the_field_and_serving_goes_on(server, frame, kind, field, words):
    ws, _ = raw_connect(server.port)
    try:
        ws.send(packb({"__lbva__": "reset", "prompt": "pick the cube"}))
        assert isinstance(ws.recv(timeout=10), bytes)
        ws.send(frame if isinstance(frame, (bytes, str)) else packb(frame))
        reply = ws.recv(timeout=10)
        assert isinstance(reply, str), "errors must come back as text frames"
        err = json.loads(reply)
        assert err["error"] == kind and err["field"] == field
        assert words in err["message"]
        if field is not None:
            assert field in err["message"]
        # the same session still serves a good request
        obs = make_obs(6)
        ws.send(packb(obs))
        ok = ws.recv(timeout=10)
        assert isinstance(ok, bytes)
        np.testing.assert_allclose(unpackb(ok)["actions"], expected_actions(obs, "pick the cube", 0), rtol=0, atol=1e-6)
    finally:
        ws.close()
    assert_serves(server.port)


def test_client_raises_server_error_with_the_field(server):
    with LbvaClient("127.0.0.1", server.port) as client:
        with pytest.raises(ServerError, match="observation.state") as e:
            client.infer(_obs_with(state=np.zeros(3, np.float32)))
        assert e.value.field == STATE and e.value.kind == "bad_request"


def test_request_without_any_prompt_is_refused_unless_a_default_exists(spec):
    obs = make_obs(8, prompt=None)
    with PolicyServer(RecordingFactory(spec), spec, port=0).start() as srv, LbvaClient("127.0.0.1", srv.port) as client:
        with pytest.raises(ServerError, match="no prompt") as e:
            client.infer(obs)
        assert e.value.field == "prompt"
    with PolicyServer(RecordingFactory(spec), spec, port=0, default_prompt="do it").start() as srv, LbvaClient("127.0.0.1", srv.port) as client:
        np.testing.assert_allclose(client.infer(obs)["actions"], expected_actions(obs, "do it", 0), rtol=0, atol=1e-6)


def test_message_beyond_the_hard_limit_closes_only_that_connection(server):
    other, _ = raw_connect(server.port)
    ws, _ = raw_connect(server.port)
    ws.send(b"\x00" * (2 * 64 * 1024 + 1))
    with pytest.raises(websockets.ConnectionClosed) as e:
        ws.recv(timeout=10)
    assert e.value.rcvd is not None and e.value.rcvd.code == 1009  # message too big
    obs = make_obs(9)
    other.send(packb(obs))
    np.testing.assert_allclose(unpackb(other.recv(timeout=10))["actions"], expected_actions(obs, "pick the cube", 0), rtol=0, atol=1e-6)
    other.close()
    assert_serves(server.port)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzzed_frames_never_break_the_session(server, data):
    """Random bytes, and valid requests with bytes flipped: each gets a reply; the session keeps serving."""
    valid = packb(make_obs(12))
    frames = data.draw(
        st.lists(
            st.one_of(
                st.binary(max_size=200),
                st.lists(st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 255)), min_size=1, max_size=4).map(
                    lambda flips: bytes(
                        b if i not in dict(flips) else dict(flips)[i] for i, b in enumerate(valid)
                    )
                ),
            ),
            min_size=1,
            max_size=4,
        )
    )
    with LbvaClient("127.0.0.1", server.port, timeout=30) as client:
        for frame in frames:
            client._ws.send(frame)
            reply = client._ws.recv(timeout=30)
            if isinstance(reply, str):
                assert json.loads(reply)["error"] in {"decode_error", "bad_request", "too_large"}
            else:
                assert unpackb(reply)["actions"].shape == (3, 4)  # a flip that kept the request valid: an episode of its own
        obs = make_obs(13)
        client.reset("pick the cube")
        np.testing.assert_allclose(client.infer(obs)["actions"], expected_actions(obs, "pick the cube", 0), rtol=0, atol=1e-6)


# ------------------------------------------------------------------ sessions
_FRAMES_0 = {FRONT: np.zeros((6, 8, 3), np.uint8), WRIST: np.zeros((4, 4, 3), np.uint8)}
_FRAMES_1 = {FRONT: np.ones((6, 8, 3), np.uint8), WRIST: np.ones((4, 4, 3), np.uint8)}
SCRIPT_A = [
    ("reset", ("open the drawer",)),
    ("infer", (make_obs(20, prompt=None),)),
    ("feedback", (np.ones((6, 4)), _FRAMES_0)),
    ("infer", (make_obs(21, prompt=None),)),
]
SCRIPT_B = [
    ("reset", ("close the drawer",)),
    ("feedback", (np.zeros((2, 4)), _FRAMES_1)),
    ("feedback", (np.zeros((2, 4)), _FRAMES_1)),
    ("infer", (make_obs(22, prompt=None),)),
]


def _steps(script, client):
    """Run a script one request at a time (a generator), so two scripts can be interleaved."""
    for name, args in script:
        reply = getattr(client, name)(*args)
        reply.pop("session", None)
        reply.pop("server_timing", None)
        yield reply


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


def test_interleaved_sessions_get_what_each_gets_alone(server, factory):
    with LbvaClient("127.0.0.1", server.port) as client:
        alone_a = list(_steps(SCRIPT_A, client))
    with LbvaClient("127.0.0.1", server.port) as client:
        alone_b = list(_steps(SCRIPT_B, client))
    # the reference itself: feedback counts matter (2 feedbacks after the reset in b)
    np.testing.assert_allclose(alone_b[3]["actions"], expected_actions(make_obs(22), "close the drawer", 2), rtol=0, atol=1e-6)

    with LbvaClient("127.0.0.1", server.port) as ca, LbvaClient("127.0.0.1", server.port) as cb:
        assert ca.metadata["session"] != cb.metadata["session"]
        ga, gb = _steps(SCRIPT_A, ca), _steps(SCRIPT_B, cb)
        mixed_a, mixed_b = [], []
        for _ in range(4):  # each script has 4 steps; alternate b, a
            mixed_b.append(next(gb))
            mixed_a.append(next(ga))
    _assert_same(mixed_a, alone_a)
    _assert_same(mixed_b, alone_b)
    assert len(factory.made) == 4  # one policy per connection


def test_many_concurrent_clients(server, factory):
    def run(i: int):
        with LbvaClient("127.0.0.1", server.port, timeout=60) as client:
            client.reset(f"task {i}")
            return [client.infer(make_obs(100 * i + k, prompt=None))["actions"] for k in range(3)]

    n = 8
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        results = list(pool.map(run, range(n), timeout=120))
    for i, chunks in enumerate(results):
        for k, actions in enumerate(chunks):
            want = expected_actions(make_obs(100 * i + k), f"task {i}", 0, first=k == 0)
            np.testing.assert_allclose(actions, want, rtol=0, atol=1e-6)
    assert len(factory.made) == n


def test_disconnect_frees_the_session_policy(server, factory):
    clients = [LbvaClient("127.0.0.1", server.port) for _ in range(3)]
    for c in clients:
        c.infer(make_obs(1))
    assert server.wait_for_sessions(3, timeout=30)
    assert all(ref() is not None for ref in factory.made)
    for c in clients:
        c.close()
    assert server.wait_for_sessions(0, timeout=30)
    gc.collect()
    assert [ref() for ref in factory.made] == [None, None, None]


def test_max_sessions_refuses_with_a_text_frame_then_recovers(spec):
    with PolicyServer(RecordingFactory(spec), spec, port=0, max_sessions=1).start() as srv:
        first = LbvaClient("127.0.0.1", srv.port)
        with pytest.raises(ServerError) as e:
            LbvaClient("127.0.0.1", srv.port)
        assert e.value.kind == "server_busy"
        first.close()
        assert srv.wait_for_sessions(0, timeout=30)
        assert_serves(srv.port)


class _FailingPolicy(FakePolicy):
    def predict_action_chunk(self, observation):
        if observation.get("prompt") == "explode":
            raise RuntimeError("kaboom")
        if observation.get("prompt") == "nan":
            return np.full(self.schema.action_shape, np.nan, np.float32)
        if observation.get("prompt") == "short":
            return np.zeros((6, 3), np.float32)
        if observation.get("prompt") == "full chunk first":  # 6 rows where the metadata announces 3
            return np.zeros(self.schema.action_shape, np.float32)
        return super().predict_action_chunk(observation)


@pytest.mark.parametrize("prompt, words", [("explode", "kaboom"), ("nan", "NaN"), ("short", "(T, 4)"),
                                           ("full chunk first", "returned 6 actions.*announces 3 for the first reply")])
def test_policy_failure_is_an_internal_error_and_the_session_goes_on(spec, prompt, words):
    with PolicyServer(lambda: _FailingPolicy.from_embodiment(spec), spec, port=0).start() as srv:
        with LbvaClient("127.0.0.1", srv.port) as client:
            with pytest.raises(ServerError, match=words) as e:
                client.infer(make_obs(3, prompt=prompt))
            assert e.value.kind == "internal_error"
            obs = make_obs(4)
            np.testing.assert_allclose(client.infer(obs)["actions"], expected_actions(obs, "pick the cube", 0), rtol=0, atol=1e-6)
        assert_serves(srv.port)


def test_factory_failure_is_reported_on_connect(spec):
    def factory():
        raise MemoryError("no room for another session")

    with PolicyServer(factory, spec, port=0).start() as srv:
        with pytest.raises(ServerError, match="no room for another session"):
            LbvaClient("127.0.0.1", srv.port)
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200


def test_server_arguments_are_checked(spec):
    with pytest.raises(ValueError, match="max_size"):
        PolicyServer(RecordingFactory(spec), spec, max_size=10)
    with pytest.raises(ValueError, match="embodiment"):
        PolicyServer(RecordingFactory(spec))


class _GatedPolicy(FakePolicy):
    """Blocks inside predict_action_chunk until the test opens the gate (prompt "wait")."""

    entered = None
    gate = None

    def predict_action_chunk(self, observation):
        if observation.get("prompt") == "wait":
            _GatedPolicy.entered.set()
            assert _GatedPolicy.gate.wait(60), "the test never opened the gate"
        return super().predict_action_chunk(observation)


def test_a_busy_policy_does_not_stall_other_sessions(spec):
    import threading

    _GatedPolicy.entered, _GatedPolicy.gate = threading.Event(), threading.Event()
    with PolicyServer(lambda: _GatedPolicy.from_embodiment(spec), spec, port=0, workers=2).start() as srv:
        slow, _ = raw_connect(srv.port)
        try:
            slow.send(packb(make_obs(30, prompt="wait")))
            assert _GatedPolicy.entered.wait(30)
            # while that chunk is being computed: health check, a new connection and its inference all answer
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            conn.request("GET", "/healthz")
            assert conn.getresponse().status == 200
            assert_serves(srv.port, seed=31)
            _GatedPolicy.gate.set()
            obs = make_obs(30, prompt="wait")
            np.testing.assert_allclose(unpackb(slow.recv(timeout=30))["actions"], expected_actions(obs, "wait", 0), rtol=0, atol=1e-6)
        finally:
            _GatedPolicy.gate.set()
            slow.close()


# ------------------------------------------------------------------ episodes and reply lengths
def test_each_plain_observation_starts_an_episode(server, factory):
    """openpi clients send nothing on reset(): a plain observation never continues an earlier history."""
    ws, meta = raw_connect(server.port)
    try:
        replies = []
        for seed in (40, 41, 41):  # the same prompt throughout, as openpi's LIBERO example sends it
            ws.send(packb(make_obs(seed)))
            replies.append(unpackb(ws.recv(timeout=30))["actions"])
        assert factory.made[-1]().resets == ["pick the cube"] * 3
    finally:
        ws.close()
    assert [len(r) for r in replies] == [meta["action"]["rows_first_chunk"]] * 3 == [3, 3, 3]
    for seed, got in zip((40, 41, 41), replies):
        np.testing.assert_allclose(got, expected_actions(make_obs(seed), "pick the cube", 0), rtol=0, atol=1e-6)


def test_openpi_history_keeps_one_episode_until_the_prompt_changes(spec, factory):
    with PolicyServer(factory, spec, port=0, openpi_history=True).start() as srv:
        ws, meta = raw_connect(srv.port)
        try:
            lengths = []
            for prompt in ("pick the cube", "pick the cube", "place it"):
                ws.send(packb(make_obs(50, prompt=prompt)))
                lengths.append(len(unpackb(ws.recv(timeout=30))["actions"]))
            policy = factory.made[-1]()
            assert policy.resets == ["pick the cube", "place it"]
        finally:
            ws.close()
    assert meta["episodes"]["plain_observations"] == "continue_until_prompt_changes"
    assert lengths == [meta["action"]["rows_first_chunk"], meta["action"]["rows_later_chunks"],
                       meta["action"]["rows_first_chunk"]] == [3, 6, 3]


def test_an_lbva_client_continues_its_episode_until_reset(server, factory):
    with LbvaClient("127.0.0.1", server.port) as client:
        client.reset("stack the blocks")
        lengths = [len(client.infer(make_obs(60 + k, prompt=None))["actions"]) for k in range(3)]
        client.reset("stack the blocks")  # the same prompt again: a reset still starts a new episode
        lengths.append(len(client.infer(make_obs(63, prompt=None))["actions"]))
        assert factory.made[-1]().resets == ["stack the blocks"] * 2
    assert lengths == [3, 6, 6, 3]
