"""Damaged, foreign and hostile checkpoint folders: every one is refused with an error naming the folder (a
``UserError``, which the CLI prints as one line), nothing outside the folder is read, and nothing is unpickled.

The folders are copies of a real tiny policy folder with one thing broken each; the expectation for each is written
here (the error class and words), not taken from an earlier run.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from lbva.atomic_io import atomic_folder, backup_path, leftovers
from lbva.errors import UserError
from lbva.inference import load_policy
from lbva.models import LingBotVA
from lbva.models.checkpoints import CheckpointError, load_released_transformer, read_safetensors_folder


@pytest.fixture(scope="module")
def policy_folder(tmp_path_factory) -> Path:
    from lbva.cli import main

    out = tmp_path_factory.mktemp("good") / "policy"
    assert main(["model", "init", "--size", "tiny", "--embodiment", "metaworld-sawyer", str(out)]) == 0
    return out


def _copy(policy_folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(policy_folder, tmp_path / "policy"))


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


class Payload:
    """Unpickling this would create the file ``witness``: proof that something ran."""

    def __init__(self, witness: Path):
        self.witness = witness

    def __reduce__(self):
        return (Path.touch, (self.witness,))


def _break(kind: str, root: Path, witness: Path) -> None:
    model = root / "transformer"
    if kind == "truncated weights":
        data = (model / "model.safetensors").read_bytes()
        (model / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif kind == "empty config.json":
        (model / "config.json").write_text("")
    elif kind == "garbage config.json":
        (model / "config.json").write_bytes(b"\x80\x04\x95 not json")
    elif kind == "pickle instead of safetensors":
        (model / "model.safetensors").write_bytes(pickle.dumps({"w": Payload(witness)}))
    elif kind == "torch pickle instead of safetensors":
        torch.save({"w": Payload(witness)}, model / "model.safetensors")
    elif kind == "unknown arch key":
        _edit_json(model / "config.json", lambda c: c["lbva_arch"].update(warp_drive=True))
    elif kind == "arch value of the wrong type":
        _edit_json(model / "config.json", lambda c: c["lbva_arch"].update(num_layers="two"))
    elif kind == "eps NaN":
        (model / "config.json").write_text((model / "config.json").read_text().replace('"eps": 1e-06', '"eps": NaN'))
    elif kind == "a million layers":
        _edit_json(model / "config.json", lambda c: c["lbva_arch"].update(num_layers=10**6))
    elif kind == "a folder raising its own size limit":
        _edit_json(model / "config.json", lambda c: (c["lbva_arch"].update(num_layers=10**6),
                                                     c["model_config"].update(max_parameters=10**18)))
    elif kind == "weights of another shape":
        state = {"w": torch.zeros(3)}
        save_file(state, str(model / "model.safetensors"))
    elif kind == "marker not an object":
        (root / "lbva_policy.json").write_text("[1, 2, 3]")
    elif kind == "statistics 1e30":
        _edit_json(root / "lbva_policy.json", lambda m: m["stats"].update(q99=[1e30] * 30))
    elif kind == "statistics of the wrong length":
        _edit_json(root / "lbva_policy.json", lambda m: m["stats"].update(q99=[1.0] * 7))
    elif kind == "config with 10**9 denoising steps":
        _edit_json(root / "lbva_policy.json", lambda m: m["config"]["inference"].update(video_steps=10**9))
    elif kind == "text encoder sizes absurd":
        _edit_json(root / "lbva_policy.json", lambda m: m["encoders"]["text"].update(dim=10**9))
    elif kind == "text encoder weights truncated":
        (root / "text_encoder.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    elif kind == "missing transformer":
        shutil.rmtree(model)
    else:  # pragma: no cover
        raise AssertionError(kind)


DAMAGE = {  # what is broken -> words the error must contain
    "truncated weights": "model.safetensors cannot be read",
    "empty config.json": "config.json cannot be read",
    "garbage config.json": "config.json cannot be read",
    "pickle instead of safetensors": "model.safetensors cannot be read",
    "torch pickle instead of safetensors": "model.safetensors cannot be read",
    "unknown arch key": "warp_drive",
    "arch value of the wrong type": "num_layers='two'",
    "eps NaN": "eps=nan",
    "a million layers": "model.max_parameters",
    "a folder raising its own size limit": "model.max_parameters=16,000,000,000",
    "weights of another shape": "does not fit the model",
    "marker not an object": "not a JSON object",
    "statistics 1e30": "1e+30",
    "statistics of the wrong length": "shape (30,)",
    "config with 10**9 denoising steps": "inference.max_denoising_steps",
    "text encoder sizes absurd": "embedded text encoder sizes",
    "text encoder weights truncated": "text_encoder.safetensors",
    "missing transformer": "no config.json",
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_policy_folder_is_refused_naming_it(kind, policy_folder, tmp_path):
    root, witness = _copy(policy_folder, tmp_path), tmp_path / "unpickled-a-payload"
    _break(kind, root, witness)
    with pytest.raises(UserError) as e:
        load_policy(root)
    message = str(e.value)
    assert str(root) in message and DAMAGE[kind] in message, message
    assert not witness.exists(), "a payload in the folder was unpickled"


def test_damaged_folders_are_one_line_cli_errors(policy_folder, tmp_path, capsys):
    from lbva.cli import main

    root = _copy(policy_folder, tmp_path)
    _break("truncated weights", root, tmp_path / "unused")
    assert main(["export", "lerobot", str(root), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "model.safetensors cannot be read" in err


def _sharded(tmp_path: Path, weight_map: dict) -> Path:
    folder = tmp_path / "sharded"
    folder.mkdir()
    save_file({"a": torch.ones(2)}, str(folder / "shard-1.safetensors"))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return folder


@pytest.mark.parametrize("name", ["../outside.safetensors", "{absolute}", "sub/../../outside.safetensors"])
def test_an_index_may_not_point_outside_its_folder(name, tmp_path):
    save_file({"secret": torch.full((2,), 7.0)}, str(tmp_path / "outside.safetensors"))
    name = name.format(absolute=tmp_path / "outside.safetensors")
    folder = _sharded(tmp_path, {"a": "shard-1.safetensors", "secret": name})
    with pytest.raises(CheckpointError, match="outside"):
        read_safetensors_folder(folder)


def test_an_index_inside_its_folder_still_reads_every_shard(tmp_path):
    folder = _sharded(tmp_path, {"a": "shard-1.safetensors", "b": "shard-2.safetensors"})
    save_file({"b": torch.full((3,), 2.0)}, str(folder / "shard-2.safetensors"))
    state = read_safetensors_folder(folder)
    assert sorted(state) == ["a", "b"] and torch.equal(state["b"], torch.full((3,), 2.0))


def test_released_folder_with_a_damaged_config_or_index(tmp_path):
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(CheckpointError, match="config.json cannot be read"):
        load_released_transformer(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"num_layers": 2}))
    with pytest.raises(CheckpointError, match="describes none of"):
        load_released_transformer(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": [1, 2]}))
    with pytest.raises(CheckpointError, match="weight_map"):
        read_safetensors_folder(tmp_path)


# ---------------------------------------------------------------------------------------------- the folder swap
def test_an_interrupted_swap_is_repaired_by_the_next_load(policy_folder, tmp_path):
    root = _copy(policy_folder, tmp_path)
    # the state a kill between the two renames of a swap leaves: the old version beside, nothing at the target
    root.rename(backup_path(root))
    bundle = load_policy(root)
    assert root.is_dir() and not backup_path(root).exists()
    reference = LingBotVA.from_pretrained(policy_folder / "transformer")
    for (k, v), (k2, v2) in zip(bundle.model.state_dict().items(), reference.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)


def test_a_folder_that_is_not_an_earlier_output_is_never_replaced(tmp_path):
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match="not an earlier version"), atomic_folder(precious, marker="config.json"):
        pass
    assert (precious / "thesis.tex").read_text() == "years of work" and leftovers(tmp_path) == []
    from lbva.config import load_config
    from lbva.models import build_model

    with pytest.raises(FileExistsError, match="no config.json"):  # save_pretrained is guarded the same way
        build_model(load_config(None, ["model.size=tiny"]).model).save_pretrained(precious)
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_a_failed_write_leaves_the_previous_version_and_no_temporaries(tmp_path):
    out = tmp_path / "out"
    with atomic_folder(out, marker="v.txt") as tmp:
        (tmp / "v.txt").write_text("1")
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_folder(out, marker="v.txt") as tmp:
        (tmp / "v.txt").write_text("2")
        raise RuntimeError("disk on fire")
    assert (out / "v.txt").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o077, 0o700), (0o002, 0o775)])
def test_a_written_folder_has_the_mode_a_plain_mkdir_would_give(umask, mode, tmp_path):
    """The temporary folder behind the swap is made private (0700); the output must not stay so, or a server running
    as another user cannot read a policy folder that training wrote."""
    import os
    import stat

    old = os.umask(umask)
    try:
        with atomic_folder(tmp_path / "out", marker="v.txt") as tmp:
            (tmp / "v.txt").write_text("1")
        (tmp_path / "plain").mkdir()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == mode == stat.S_IMODE((tmp_path / "plain").stat().st_mode)


# ---------------------------------------------------------------------------------------------- training checkpoints
@pytest.mark.parametrize("content", ["empty", "truncated zip", "pickle"])
def test_a_damaged_training_checkpoint_is_a_checkpoint_error(content, tmp_path):
    from lbva.training.checkpoint_io import AtomicCheckpointIO, atomic_torch_save

    path, witness = tmp_path / "last.ckpt", tmp_path / "unpickled-a-payload"
    atomic_torch_save({"global_step": 3, "w": torch.ones(2)}, path)
    assert AtomicCheckpointIO().load_checkpoint(path)["global_step"] == 3
    path.write_bytes({"empty": b"", "truncated zip": b"PK\x03\x04 truncated zip",
                      "pickle": pickle.dumps({"state_dict": Payload(witness)})}[content])
    with pytest.raises(CheckpointError, match="last.ckpt cannot be read"):
        AtomicCheckpointIO().load_checkpoint(path)
    assert not witness.exists(), "a payload in the checkpoint was unpickled"
    with pytest.raises(CheckpointError, match="does not exist"):
        AtomicCheckpointIO().load_checkpoint(tmp_path / "missing.ckpt")


def test_statistics_that_cannot_normalise_are_refused():
    from lbva.embodiment import ActionStats

    ones = np.ones(30, np.float32)
    for q01, q99, words in ((-ones, ones * 1e30, "beyond"), (-ones * 2e6, ones, "beyond"), (-ones, ones * np.nan, "non-finite")):
        with pytest.raises(UserError, match=words):
            ActionStats(q01=q01, q99=q99, source="test")
