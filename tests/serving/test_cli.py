"""``lbva serve``: argument checks, the fake policy end to end, and the checkpoint policy factory."""

from __future__ import annotations

import argparse
import sys
import types

import numpy as np
import pytest
from serving_helpers import ToySpec, expected_actions, make_obs

import lbva.serving.cli as serve_cli
from lbva.cli import CLIError, build_parser, main
from lbva.serving.client import LbvaClient
from lbva.serving.fake_policy import FakePolicy


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


@pytest.fixture
def toy_embodiment(monkeypatch):
    """Resolve every --embodiment to the toy spec (the embodiment registry is tested elsewhere)."""
    seen = []

    def load(name):
        seen.append(name)
        return ToySpec(name=name)

    monkeypatch.setattr(serve_cli, "load_embodiment", load)
    return seen


def test_serve_is_registered_with_its_options():
    args = parse("--fake", "--embodiment", "toy-arm")
    assert (args.host, args.port, args.fake, args.checkpoint) == ("127.0.0.1", 8000, True, None)
    assert args.max_size == 32 * 1024 * 1024 and args.func is serve_cli._run


def test_fake_server_built_from_the_command_line_serves(toy_embodiment):
    server = serve_cli.build_server(parse("--fake", "--embodiment", "toy-arm", "--port", "0", "--max-size", "100000"))
    assert toy_embodiment == ["toy-arm"]
    with server.start(), LbvaClient("127.0.0.1", server.port) as client:
        assert client.metadata["policy"] == "fake" and client.metadata["max_size"] == 100000
        # a frame per latent frame (3 actions) for a per-frame policy
        assert client.metadata["feedback"] == {"frame_every_actions": 3, "frames_per_latent_frame": 1,
                                               "actions_per_frame": 3, "chunk_frames": 2}
        obs = make_obs(2)
        np.testing.assert_allclose(client.infer(obs)["actions"], expected_actions(obs, "pick the cube", 0), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--embodiment", "toy-arm"], "exactly one of --checkpoint"),
        (["--fake", "--checkpoint", ".", "--embodiment", "toy-arm"], "exactly one of --checkpoint"),
        (["--fake", "--embodiment", "toy-arm", "--port", "70000"], "--port"),
        (["--fake", "--embodiment", "toy-arm", "--max-size", "10"], "--max-size"),
        (["--fake", "--embodiment", "toy-arm", "--max-sessions", "0"], "--max-sessions"),
        (["--checkpoint", "/no/such/dir", "--embodiment", "toy-arm"], "does not exist"),
    ],
)
def test_bad_arguments_raise_cli_errors(toy_embodiment, argv, words):
    with pytest.raises(CLIError, match=words):
        serve_cli.build_server(parse(*argv))


def _install_inference(monkeypatch, module):
    """Replace lbva.inference for this test, both in sys.modules and as the package attribute (once the real
    module was imported, ``import lbva.inference as x`` reads the attribute)."""
    import lbva

    monkeypatch.setitem(sys.modules, "lbva.inference", module)
    monkeypatch.setattr(lbva, "inference", module, raising=False)


def test_checkpoint_without_a_policy_class_says_so(toy_embodiment, monkeypatch, tmp_path):
    # lbva.inference.Policy is imported directly: a broken install surfaces as the real ImportError naming it
    _install_inference(monkeypatch, types.ModuleType("lbva.inference"))
    with pytest.raises(ImportError, match="Policy"):
        serve_cli.build_server(parse("--checkpoint", str(tmp_path), "--embodiment", "toy-arm"))


def _fake_inference(monkeypatch, *, with_new_session: bool):
    calls = []

    class Policy(FakePolicy):
        @classmethod
        def from_pretrained(cls, path, embodiment):
            calls.append((path, embodiment))
            policy = cls.from_embodiment(ToySpec(name=embodiment or "toy-arm"))  # None: the folder's own (toy-arm)
            policy.spec = ToySpec(name=embodiment or "toy-arm")  # as lbva.inference.Policy carries it
            return policy

        stride = 3  # video frames per latent frame (the Wan VAE's is 4)

        if with_new_session:

            def new_session(self):
                calls.append("new_session")
                return type(self)(self.schema)

    module = types.ModuleType("lbva.inference")
    module.Policy = Policy
    _install_inference(monkeypatch, module)
    return calls


def test_checkpoint_factory_reloads_without_new_session(toy_embodiment, monkeypatch, tmp_path):
    calls = _fake_inference(monkeypatch, with_new_session=False)
    server = serve_cli.build_server(parse("--checkpoint", str(tmp_path), "--embodiment", "toy-arm"))
    assert calls == [(str(tmp_path), "toy-arm")]  # loaded once at start-up, errors surface before serving
    first, second = server.policy_factory(), server.policy_factory()
    assert first is server.policy_factory.template and second is not first
    assert calls == [(str(tmp_path), "toy-arm")] * 2


def test_without_embodiment_the_policy_folders_own_is_served_and_reloaded(toy_embodiment, monkeypatch, tmp_path):
    calls = _fake_inference(monkeypatch, with_new_session=False)
    server = serve_cli.build_server(parse("--checkpoint", str(tmp_path)))
    assert server.schema.embodiment == "toy-arm"
    server.policy_factory(), server.policy_factory()
    assert calls == [(str(tmp_path), None), (str(tmp_path), "toy-arm")]  # a reload asks for the same embodiment


def test_checkpoint_factory_prefers_new_session(toy_embodiment, monkeypatch, tmp_path):
    calls = _fake_inference(monkeypatch, with_new_session=True)
    server = serve_cli.build_server(parse("--checkpoint", str(tmp_path), "--embodiment", "toy-arm", "--port", "0"))
    with server.start(), LbvaClient("127.0.0.1", server.port) as a, LbvaClient("127.0.0.1", server.port) as b:
        assert a.metadata["checkpoint"] == str(tmp_path)
        assert a.metadata["feedback"]["frame_every_actions"] == 1  # 3 actions per latent frame / stride 3
        a.infer(make_obs(1))
        b.infer(make_obs(2))
    assert calls == [(str(tmp_path), "toy-arm"), "new_session", "new_session"]


def test_unknown_embodiment_exits_with_code_2(capsys):
    assert main(["serve", "--fake", "--embodiment", "no-such-robot", "--port", "0"]) == 2
    assert "no-such-robot" in capsys.readouterr().err


SERVE_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
from serving_helpers import ToySpec
import lbva.serving.cli as serve_cli
serve_cli.load_embodiment = lambda name: ToySpec(name=name)
from lbva.cli import main
sys.exit(main(["serve", "--fake", "--embodiment", "toy-arm", "--port", "0"]))
"""


def test_lbva_serve_process_serves_until_interrupted():
    import re
    import signal
    import subprocess
    import threading
    from pathlib import Path

    here = Path(__file__).resolve().parent
    # Ctrl-C as from a terminal: a test run started as a background job passes SIGINT on ignored
    proc = subprocess.Popen([sys.executable, "-c", SERVE_SCRIPT, str(here)], stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    killer = threading.Timer(120, proc.kill)  # bound the test even if the server never starts
    killer.start()
    try:
        port = None
        for _ in range(200):  # log lines before the "serving" one; readline returns "" if the process died
            line = proc.stderr.readline()
            match = re.search(r"serving embodiment 'toy-arm' on ws://127\.0\.0\.1:(\d+)", line)
            if match or not line:
                port = int(match.group(1)) if match else None
                break
        assert port is not None, "lbva serve did not report its port"
        with LbvaClient("127.0.0.1", port) as client:
            obs = make_obs(5)
            np.testing.assert_allclose(client.infer(obs)["actions"], expected_actions(obs, "pick the cube", 0), rtol=0, atol=1e-6)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        killer.cancel()
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
        proc.stderr.close()
