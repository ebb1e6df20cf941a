"""Kill a writer with SIGKILL at seeded points, then check what is left (run by ``test_kill9_writers.py``).

    python kill9_writers_child.py SEED ROUNDS WORKDIR REPORT  ->  a JSON report in REPORT, one entry per case

The cases are every writer, and the model folder once more the way folders are written on systems without
``renameat2(RENAME_EXCHANGE)``: two renames through ``.NAME.old``, repaired by the next load or write. One process
runs them all, so torch, lbva and LeRobot are imported once.

The process builds the writer's objects once, then for each round forks a child that writes version i+1 over version
i and SIGKILLs itself right before its n-th call that changes the file system (``os`` functions such as ``mkdir``,
``replace``, ``unlink``; ``open`` and file-object writes and closes; safetensors' and torch's serialisers), counted by
a profile hook. n is drawn from a seeded generator over the calls one complete write makes, plus the points before
every rename and before each of the last calls of a write (the swap and the clean-up). After each kill the parent
records what is in the folder and which version the loader reads (the previous one, the new one, or an error), then
writes version i+1 completely (the "next write") and records the folder's listing again, so the test can check that
nothing else is left.

Forking keeps a round at a fraction of a second (torch is imported once); the children run no Python threads.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
from pathlib import Path

import torch

IO_MODULES = ("posix", "_io", "safetensors._safetensors_rust")
# the calls that change what is on disk (or hand data to it): a kill before any other call leaves the same state
# as a kill before the next one of these
CHANGING = {"open", "write", "writelines", "flush", "truncate", "close", "__exit__", "fsync", "mkdir", "rmdir", "unlink",
            "remove", "replace", "rename", "symlink", "serialize_file"}


def is_io_call(fn) -> bool:
    """A call that changes the file system: os functions, open(), file-object methods, the serialisers."""
    module = getattr(fn, "__module__", None) or type(getattr(fn, "__self__", None)).__module__
    name, qualname = getattr(fn, "__name__", ""), getattr(fn, "__qualname__", "")
    return (module in IO_MODULES and name in CHANGING) or "PyTorchFileWriter" in qualname


def run_hooked(write, stop_at: int | None) -> int:
    """Run ``write()`` counting file-system calls; SIGKILL this process right before call number ``stop_at``."""
    count = 0
    names: list[str] = []

    def hook(frame, event, arg):
        nonlocal count
        if event == "c_call" and is_io_call(arg):
            count += 1
            names.append(getattr(arg, "__name__", "?"))
            if count == stop_at:
                os.kill(os.getpid(), signal.SIGKILL)

    sys.setprofile(hook)
    try:
        write()
    finally:
        sys.setprofile(None)
    run_hooked.names = names
    return count


# ------------------------------------------------------------------------------------------------ the writers
def fill(model: torch.nn.Module, version: int) -> None:
    """Every parameter holds the version number: a folder mixing two versions cannot pass :func:`version_of`."""
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(version)


def version_of(model: torch.nn.Module) -> int:
    """The version a model was filled with by :func:`fill` (every parameter must agree)."""
    values = {float(v) for p in model.parameters() for v in p.detach().unique()}
    if len(values) != 1:
        raise AssertionError(f"the parameters hold {sorted(values)[:5]}: a mix of versions")
    return round(values.pop())


def tiny_model():
    from lbva.config import load_config
    from lbva.models import build_model

    cfg = load_config(None, ["model.size=tiny"])
    return build_model(cfg.model), cfg


def writer_checkpoint(work: Path):
    from lbva.training.checkpoint_io import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    target = work / "checkpoints" / "last.ckpt"
    weights = torch.zeros(300_000)  # ~1.2 MB, so torch writes it in several records

    def write(v: int, where: Path = target) -> None:
        weights.fill_(v)
        io.save_checkpoint({"global_step": v, "state_dict": {"w": weights}}, where)

    def read(where: Path = target) -> int:
        ckpt = io.load_checkpoint(where)
        assert torch.all(ckpt["state_dict"]["w"] == ckpt["global_step"]), "weights and step disagree"
        return int(ckpt["global_step"])

    return target, write, read


def writer_policy(work: Path):
    import numpy as np

    from lbva.data.embedded_vae import EmbeddedVAE, EmbeddedVAEConfig
    from lbva.data.encoders import EmbeddedTextEncoder, EmbeddedVideoEncoder
    from lbva.embodiment import ActionStats
    from lbva.inference import load_policy, save_policy

    text = EmbeddedTextEncoder(16, 8, 0)
    vae = EmbeddedVAE(EmbeddedVAEConfig())
    from lbva.config import load_config
    from lbva.models import build_model

    cfg = load_config(None, ["model.size=tiny", f"model.text_dim={text.dim}",
                             f"model.in_channels={vae.config.latent_channels}", "embodiment.name=metaworld-sawyer"])
    model = build_model(cfg.model)
    stats = ActionStats(q01=-np.ones(30, np.float32), q99=np.ones(30, np.float32), source="unit")
    target = work / "out" / "policy"

    def write(v: int, where: Path = target) -> None:
        fill(model, v)
        save_policy(where, model, cfg, "metaworld-sawyer", stats, EmbeddedVideoEncoder(vae), text)

    def read(where: Path = target) -> int:
        return version_of(load_policy(where).model)

    return target, write, read


def writer_save_pretrained(work: Path):
    from lbva.models import LingBotVA

    model, _ = tiny_model()
    target = work / "out" / "model"

    def write(v: int, where: Path = target) -> None:
        fill(model, v)
        model.save_pretrained(where)

    def read(where: Path = target) -> int:
        return version_of(LingBotVA.from_pretrained(where))

    return target, write, read


def writer_export(work: Path):
    import numpy as np
    from lerobot.policies.lingbot_va import LingBotVAPolicy

    from lbva.embodiment import ActionStats
    from lbva.interop.lerobot_export import export_lerobot

    model, _ = tiny_model()
    stats = ActionStats(q01=-np.ones(30, np.float32), q99=np.ones(30, np.float32), source="unit")
    target = work / "out" / "lerobot"
    sources = work / "sources"
    for v in range(MAX_VERSIONS):  # the source of each version is written before any write is counted or killed
        fill(model, v)
        model.save_pretrained(sources / f"v{v}")

    def write(v: int, where: Path = target) -> None:
        export_lerobot(sources / f"v{v}", where, embodiment="metaworld-sawyer", stats=stats, approximate=True,
                       progress=False)

    def read(where: Path = target) -> int:
        policy = LingBotVAPolicy.from_pretrained(str(where))  # LeRobot's own loader
        return version_of(policy.transformer)

    return target, write, read


MAX_VERSIONS = 40  # rounds + targeted points stay below this
LAST_CALLS = 8  # the calls at the end of a write that each get a kill point (the swap and the clean-up)

WRITERS = {"checkpoint": writer_checkpoint, "policy": writer_policy, "save_pretrained": writer_save_pretrained,
           "export": writer_export}


# ------------------------------------------------------------------------------------------------ the rounds
def main(name: str, seed: int, rounds: int, work: Path) -> dict:
    import logging

    logging.disable(logging.WARNING)  # the restore warnings are expected here
    torch.set_num_threads(1)
    target, write, read = WRITERS[name](work)
    scratch = work / "scratch" / target.name
    write(0, scratch)  # warm-up: lazy imports happen here, not in the children
    write(1, scratch)
    calls = run_hooked(lambda: write(2, scratch), None)  # a complete replacing write: the calls it makes
    # the swap at the end of a write gets extra points: before each rename, and every one of the last calls
    renames = [i + 1 for i, n in enumerate(run_hooked.names) if n in ("replace", "rename")]
    targeted = set(renames) | set(range(max(1, calls - LAST_CALLS + 1), calls + 1))
    rng = random.Random(seed)
    points = sorted(targeted | {rng.randint(1, calls) for _ in range(rounds)})
    assert len(points) < MAX_VERSIONS
    write(0)
    report = {"writer": name, "calls_per_write": calls, "rename_points": renames, "rounds": []}
    for i, point in enumerate(points):
        pid = os.fork()
        if pid == 0:
            try:
                run_hooked(lambda: write(i + 1), point)
            finally:
                os._exit(0)  # the kill point lay beyond this write's last call: it finished
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        listing_after_kill = sorted(p.name for p in target.parent.iterdir())
        try:
            after_kill: int | str = read()
        except Exception as e:  # noqa: BLE001 - reported to the test, which fails on it
            after_kill = f"{type(e).__name__}: {e}"
        write(i + 1)  # the next write, complete
        report["rounds"].append({
            "kill_before_call": point, "killed": killed, "listing_after_kill": listing_after_kill,
            "read_after_kill": after_kill, "previous": i, "new": i + 1,
            "listing_after_next_write": sorted(p.name for p in target.parent.iterdir()),
            "read_after_next_write": read(),
        })
    return report


CASES = [("checkpoint", True), ("policy", True), ("save_pretrained", True), ("export", True),
         ("save_pretrained", False)]  # (writer, the file system can exchange two names)

if __name__ == "__main__":
    import warnings

    import lbva.atomic_io

    # LeRobot's imports start native threads; the children only write files and are killed, so fork is safe here
    warnings.filterwarnings("ignore", message=".*use of fork\\(\\) may lead to deadlocks", category=DeprecationWarning)
    seed, rounds, work, out = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    exchange = lbva.atomic_io._exchange
    reports = []
    for name, can_exchange in CASES:
        # without the exchange, folder writes take the two-rename path, as on a file system that cannot swap names
        lbva.atomic_io._exchange = exchange if can_exchange else (lambda a, b: False)
        report = main(name, seed, rounds, work / f"{name}-{can_exchange}")
        reports.append(report | {"exchange": can_exchange})
    out.write_text(json.dumps(reports))
