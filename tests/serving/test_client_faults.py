"""The client never pairs a reply with the wrong request, and a call to a hung server can be abandoned.

A scripted server (websockets' own sync server, no lbva code) numbers the requests of each connection and answers
each with its number and kind; it holds back the reply to the first request until the test releases it. Before the
fix, a call that timed out left its late reply on the connection and the next call returned it: ``reset()`` came
back with the observation's reply.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import websockets.sync.server

from lbva_client import CallInterrupted, ConnectionLostError, LbvaClient
from lbva_client.msgpack_numpy import packb, unpackb

ROOT = Path(__file__).resolve().parents[2]


class LateServer:
    """Replies ``{"reply_to": n, "kind": ...}`` to the n-th request of a connection; the first reply of the first
    connection waits for :attr:`release`. :attr:`received` is set when that first request has arrived."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.received = threading.Event()
        self.late_reply_sent = threading.Event()
        self.connections = 0
        self.server = websockets.sync.server.serve(self._handle, "127.0.0.1", 0, compression=None)
        self.port = self.server.socket.getsockname()[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handle(self, ws) -> None:
        self.connections += 1
        held = self.connections == 1
        ws.send(packb({"server": "late", "protocol": "lbva-ws", "connection": self.connections}))
        try:
            for n, message in enumerate(ws, start=1):
                request = unpackb(message)
                if held and n == 1:
                    self.received.set()
                    self.release.wait(60)
                ws.send(packb({"reply_to": n, "kind": request.get("__lbva__", "plain")}))
                if held and n == 1:
                    self.late_reply_sent.set()
        except websockets.ConnectionClosed:
            if held:
                self.late_reply_sent.set()  # the client hung up first: the late reply could not even be sent

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()


@pytest.fixture
def late_server():
    srv = LateServer()
    yield srv
    srv.close()


def test_a_late_reply_is_never_taken_for_the_next_request(late_server):
    client = LbvaClient("127.0.0.1", late_server.port, timeout=0.5)
    with pytest.raises(TimeoutError, match="reconnect"):
        client.infer({"observation.state": np.zeros(3, np.float32)})
    assert not client.connected
    late_server.release.set()
    assert late_server.late_reply_sent.wait(30)  # the answer to the timed-out infer is on its way (or refused)
    with pytest.raises(ConnectionLostError, match=r"reconnect\(\).*reset"):
        client.reset("next task")  # before the fix: returned {"reply_to": 1, "kind": "infer"}
    meta = client.reconnect()
    assert meta["connection"] == 2 and client.connected
    assert client.reset("next task") == {"reply_to": 1, "kind": "reset"}  # its own reply, on the new session
    assert client.infer({"x": np.ones(2)}) == {"reply_to": 2, "kind": "infer"}
    client.close()


def test_should_stop_abandons_a_call_to_a_hung_server(late_server):
    # the arm loop's first Ctrl-C only sets a flag; the client asks that flag while it waits, however long
    client = LbvaClient("127.0.0.1", late_server.port, timeout=None, should_stop=late_server.received.is_set)
    with pytest.raises(CallInterrupted, match="should_stop"):
        client.reset("wipe the table")
    assert not client.connected
    with pytest.raises(ConnectionLostError):
        client.infer({"x": np.ones(2)})
    client.close()


def test_bad_input_fails_before_sending_and_keeps_the_session(late_server):
    late_server.release.set()
    client = LbvaClient("127.0.0.1", late_server.port, timeout=30)
    with pytest.raises(TypeError, match="cannot serialize 'object'"):
        client.infer({"x": object()})
    with pytest.raises(ValueError, match="reserved key"):
        client.infer({"__lbva__": "reset"})
    assert client.connected and client.infer({"x": np.ones(2)}) == {"reply_to": 1, "kind": "infer"}
    client.close()


CTRL_C_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys, threading
    sys.path.insert(0, sys.argv[1])
    from test_client_faults import LateServer
    from lbva_client import CallInterrupted, ConnectionLostError, LbvaClient

    mode = sys.argv[2]
    srv = LateServer()
    flag = threading.Event()
    if mode == "flag":  # a handler like the arm loop's emergency stop: the first Ctrl-C only sets a flag
        signal.signal(signal.SIGINT, lambda *_: flag.set())
    client = LbvaClient("127.0.0.1", srv.port, timeout=None, should_stop=flag.is_set)
    threading.Thread(target=lambda: srv.received.wait(60) and os.kill(os.getpid(), signal.SIGINT), daemon=True).start()
    try:
        client.reset("hold the cup")
        raised = None
    except (KeyboardInterrupt, CallInterrupted) as e:
        raised = type(e).__name__
    connected = client.connected
    srv.release.set()
    srv.late_reply_sent.wait(30)
    try:
        client.reset("next")
        after = "answered"
    except ConnectionLostError:
        after = "ConnectionLostError"
    print(json.dumps({"raised": raised, "connected": connected, "after": after}))
    srv.close()
    """
)


@pytest.mark.parametrize("mode, raised", [("default", "KeyboardInterrupt"), ("flag", "CallInterrupted")])
def test_ctrl_c_ends_a_call_to_a_hung_server_and_closes_the_session(mode, raised):
    """A real SIGINT while the server holds the reply: with Python's default handler the call ends with
    KeyboardInterrupt, with a flag-setting handler through ``should_stop``; either way the connection is closed."""
    proc = subprocess.run([sys.executable, "-c", CTRL_C_SCRIPT, str(Path(__file__).parent), mode],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"raised": raised, "connected": False,
                                                                 "after": "ConnectionLostError"}
