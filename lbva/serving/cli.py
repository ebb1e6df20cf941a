"""``lbva serve``: serve a checkpoint (or the deterministic fake policy) over websockets.

    lbva serve --checkpoint runs/posttrain/policy --port 8000      # the embodiment the policy was trained for
    lbva serve --fake --embodiment metaworld-sawyer          # no model: for smoke tests and client work

Clients: ``lbva_client.LbvaClient`` (the torch-free ``lbva-client`` distribution) or openpi's
``WebsocketClientPolicy``, with the embodiment's own observation keys or the other conventions it declares
(openpi's LIBERO keys for ``libero-franka``, DROID's for ``franka``). Each plain openpi observation starts an
episode unless ``--openpi-history`` (see :mod:`lbva.serving.server`, "Episodes"). Health check: ``GET /healthz``.
Nothing heavy is imported until the command runs.
"""

from __future__ import annotations

import argparse
import logging
import threading
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    from lbva.serving.protocol import DEFAULT_MAX_SIZE
    from lbva.serving.schema import MAX_TEXT_CHARS
    from lbva.serving.server import DEFAULT_MAX_SESSIONS

    p = sub.add_parser(
        "serve",
        help="serve a policy over websockets (openpi-compatible)",
        description="Serve one embodiment's policy: each websocket connection gets its own session.",
    )
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint directory (lbva.inference.Policy.from_pretrained)")
    p.add_argument("--embodiment", default=None,
                   help="embodiment name (see `lbva embodiments`); with --checkpoint, default: the one the policy folder "
                        "records (must match it if given); required with --fake")
    p.add_argument("--wan-path", type=Path, default=None,
                   help="LeRobot lingbot_va folders: a local Wan2.2 folder (vae/, text_encoder/, tokenizer/) "
                        "replacing the folder's wan_pretrained_path")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--max-size", type=int, default=DEFAULT_MAX_SIZE, help=f"largest request in bytes (default {DEFAULT_MAX_SIZE})")
    p.add_argument("--max-queued-bytes", type=int, default=None,
                   help="messages one connection may have waiting while its request is computed, in bytes; then the "
                        "server stops reading from it (default 4 x --max-size; at least 2 x --max-size)")
    p.add_argument("--max-sessions", type=int, default=DEFAULT_MAX_SESSIONS,
                   help=f"refuse connections beyond this many open sessions (default {DEFAULT_MAX_SESSIONS})")
    p.add_argument("--max-prompt-chars", type=int, default=MAX_TEXT_CHARS,
                   help=f"longest prompt accepted, in characters (default {MAX_TEXT_CHARS})")
    p.add_argument("--workers", type=int, default=1, help="threads running policy calls, shared by sessions (default 1)")
    p.add_argument("--default-prompt", default=None, help="prompt for clients that never send one (openpi clients)")
    p.add_argument("--openpi-history", action="store_true",
                   help="keep one episode across a plain openpi client's observations until its prompt changes "
                        "(default: each plain observation starts an episode, since openpi's reset() sends nothing); "
                        "only for clients that execute whole chunks and reconnect or change prompt per episode")
    p.add_argument("--fake", action="store_true", help="serve a deterministic fake policy instead of a checkpoint")
    p.set_defaults(func=_run)


def _cli_error(message: str) -> Exception:
    from lbva.errors import CLIError

    return CLIError(message)


def load_embodiment(name: str) -> Any:
    """The EmbodimentSpec called ``name``, or a CLIError listing what to do."""
    from lbva.embodiment import UnknownEmbodimentError, get_embodiment

    try:
        return get_embodiment(name)
    except UnknownEmbodimentError as e:
        raise _cli_error(str(e)) from None


def _policy_class() -> Any:
    """:class:`lbva.inference.Policy`, imported only when a checkpoint is served (``--fake`` never loads torch)."""
    from lbva.inference import Policy

    return Policy


class CheckpointPolicyFactory:
    """Loads the checkpoint once at start-up; each session then gets ``policy.new_session()`` when the Policy
    offers it (weights shared), otherwise the loaded policy for the first session and a fresh load after."""

    def __init__(self, checkpoint: Path, embodiment: str | None, wan_path: Path | None = None) -> None:
        self.policy_class = _policy_class()
        self.checkpoint = checkpoint
        self.embodiment = embodiment
        self._kwargs = {} if wan_path is None else {"wan_path": str(wan_path)}
        logger.info("loading %s%s", checkpoint, f" for embodiment {embodiment!r}" if embodiment else "")
        self.template = self.policy_class.from_pretrained(str(checkpoint), embodiment=embodiment, **self._kwargs)
        if self.embodiment is None:  # the folder's own; later sessions are loaded for the same one
            self.embodiment = getattr(getattr(self.template, "spec", None), "name", None)
        self._lock = threading.Lock()
        self._handed_out = False

    def __call__(self) -> Any:
        new_session = getattr(self.template, "new_session", None)
        if callable(new_session):
            return new_session()
        with self._lock:
            if not self._handed_out:
                self._handed_out = True
                return self.template
        return self.policy_class.from_pretrained(str(self.checkpoint), embodiment=self.embodiment, **self._kwargs)


def feedback_metadata(spec: Any, stride: int) -> dict[str, int]:
    """How a client feeds a chunk back (the ``feedback`` entry of the metadata message): one frame after every
    ``frame_every_actions`` actions — ``stride`` frames per latent frame (4 for the Wan2.2 VAE, 1 for per-frame
    encoders)."""
    n = int(spec.actions_per_frame)
    return {"frame_every_actions": n // stride, "frames_per_latent_frame": stride, "actions_per_frame": n,
            "chunk_frames": int(spec.chunk_frames)}


def build_server(args: argparse.Namespace) -> Any:
    """The configured (not yet started) PolicyServer for ``lbva serve`` arguments."""
    from lbva.serving.fake_policy import FakePolicy
    from lbva.serving.server import PolicyServer

    if args.fake == (args.checkpoint is not None):
        raise _cli_error("pass exactly one of --checkpoint PATH (serve a trained policy) or --fake (a deterministic stand-in)")
    if not 0 <= args.port <= 65535:
        raise _cli_error(f"--port must be in 0..65535, got {args.port}")
    if args.max_size < 1024:
        raise _cli_error(f"--max-size must be at least 1024 bytes, got {args.max_size}")
    if args.max_sessions is not None and args.max_sessions < 1:
        raise _cli_error(f"--max-sessions must be >= 1, got {args.max_sessions}")
    if args.max_queued_bytes is not None and args.max_queued_bytes < 2 * args.max_size:
        raise _cli_error(f"--max-queued-bytes {args.max_queued_bytes} must be at least 2 x --max-size = "
                         f"{2 * args.max_size} (one message at the hard limit)")
    if args.max_prompt_chars < 1:
        raise _cli_error(f"--max-prompt-chars must be >= 1, got {args.max_prompt_chars}")
    if args.workers < 1:
        raise _cli_error(f"--workers must be >= 1, got {args.workers}")
    if args.fake and args.embodiment is None:
        raise _cli_error("--fake needs --embodiment NAME (the fake policy has no folder to read it from); see "
                         "`lbva embodiments`")
    spec = load_embodiment(args.embodiment) if args.embodiment is not None else None
    if args.fake:
        factory: Any = lambda: FakePolicy.from_embodiment(spec)  # noqa: E731
        extra = {"policy": "fake", "feedback": feedback_metadata(spec, 1)}
    else:
        if not args.checkpoint.exists():
            raise _cli_error(f"--checkpoint {args.checkpoint} does not exist; pass a directory written by training")
        factory = CheckpointPolicyFactory(args.checkpoint, args.embodiment, getattr(args, "wan_path", None))
        spec = getattr(factory.template, "spec", None) or spec
        if spec is None:
            raise _cli_error(f"could not tell which embodiment {args.checkpoint} is for; pass --embodiment NAME")
        extra = {"policy": "checkpoint", "checkpoint": str(args.checkpoint),
                 "feedback": feedback_metadata(spec, int(getattr(factory.template, "stride", 1)))}
    return PolicyServer(
        factory,
        spec,
        host=args.host,
        port=args.port,
        max_size=args.max_size,
        max_queued_bytes=args.max_queued_bytes,
        max_sessions=args.max_sessions,
        max_prompt_chars=args.max_prompt_chars,
        workers=args.workers,
        default_prompt=args.default_prompt,
        openpi_history=bool(getattr(args, "openpi_history", False)),
        metadata=extra,
    )


def _run(args: argparse.Namespace) -> int:
    build_server(args).serve_forever()
    return 0
