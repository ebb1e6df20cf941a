"""``lbva train`` ends in a policy folder (EMA weights when EMA is on), ``lbva export policy`` makes one from any
training checkpoint, and ``--resume last`` continues the run it names, never a sibling."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from lbva.cli import main

TINY = ["train", "demo/tiny", "trainer.log_every_n_steps=1"]


def policy_weights(folder):
    return load_file(str(folder / "transformer" / "model.safetensors"))


def ckpt_weights(path, prefix):
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


def test_train_writes_the_policy_folder_with_the_ema_weights(tmp_path):
    out = tmp_path / "run"
    assert main([*TINY, "trainer.ema_decay=0.5", f"trainer.output_dir={out}"]) == 0
    got = policy_weights(out / "policy")
    ema = ckpt_weights(out / "checkpoints" / "last.ckpt", "ema.module.")
    raw = ckpt_weights(out / "checkpoints" / "last.ckpt", "model.")
    assert set(got) == set(ema) == set(raw)
    assert all(torch.equal(got[k], ema[k]) for k in got)
    assert any(not torch.equal(ema[k], raw[k]) for k in got)  # the average is not the last weights


def test_an_ema_that_never_moves_exports_the_weights_of_its_first_update(tmp_path):
    """decay 1: the average is the model as it stood after the first optimizer step (torch's AveragedModel starts
    from a copy) and never moves after it, while training goes on moving the model."""
    out = tmp_path / "run"
    assert main([*TINY, "trainer.ema_decay=1.0", "trainer.checkpoint_every_n_steps=1", f"trainer.output_dir={out}"]) == 0
    first = ckpt_weights(out / "checkpoints" / "step-0000001.ckpt", "model.")
    got = policy_weights(out / "policy")
    assert all(torch.equal(got[k], first[k]) for k in first)
    raw = ckpt_weights(out / "checkpoints" / "last.ckpt", "model.")
    assert any(not torch.equal(raw[k], first[k]) for k in first)


def test_without_ema_the_policy_holds_the_trained_weights(tmp_path):
    out = tmp_path / "run"
    assert main([*TINY, f"trainer.output_dir={out}"]) == 0
    got = policy_weights(out / "policy")
    raw = ckpt_weights(out / "checkpoints" / "last.ckpt", "model.")
    assert all(torch.equal(got[k], raw[k]) for k in raw)


def test_a_second_fresh_run_is_refused_and_resume_last_continues_the_same_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TINY, f"trainer.output_dir={out}"]) == 0
    before = {p.name: p.read_bytes() for p in (out / "checkpoints").iterdir()}
    assert main([*TINY, f"trainer.output_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert "already holds a run's checkpoints" in err and "--resume last" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in (out / "checkpoints").iterdir()} == before  # nothing overwritten

    assert main([*TINY, "trainer.max_steps=6", f"trainer.output_dir={out}", "--resume", "last"]) == 0
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["last.ckpt", "step-0000002.ckpt", "step-0000004.ckpt", "step-0000006.ckpt"]  # no last-v1
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6


def test_resuming_with_other_ema_settings_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TINY, "trainer.ema_decay=0.9", f"trainer.output_dir={out}"]) == 0
    assert main([*TINY, "trainer.max_steps=6", f"trainer.output_dir={out}", "--resume", "last"]) == 2
    assert "keeps an EMA" in capsys.readouterr().err


def test_export_policy_turns_any_checkpoint_into_a_policy_folder(tmp_path):
    from lbva.inference import Policy

    out = tmp_path / "run"
    assert main([*TINY, "trainer.ema_decay=0.5", f"trainer.output_dir={out}"]) == 0
    ckpt = out / "checkpoints" / "step-0000002.ckpt"
    assert main(["export", "policy", str(ckpt), str(tmp_path / "p_ema")]) == 0
    assert main(["export", "policy", str(ckpt), str(tmp_path / "p_raw"), "--raw"]) == 0
    for folder, prefix in ((tmp_path / "p_ema", "ema.module."), (tmp_path / "p_raw", "model.")):
        want = ckpt_weights(ckpt, prefix)
        got = policy_weights(folder)
        assert all(torch.equal(got[k], want[k]) for k in want)
    policy = Policy.from_pretrained(tmp_path / "p_ema", embodiment="metaworld-sawyer")
    policy.reset("reach the goal")
    chunk = policy.predict_action_chunk({"observation.images.corner": torch.zeros(64, 64, 3, dtype=torch.uint8).numpy()})
    assert chunk.shape[1] == 4 and len(chunk) > 0


def test_export_policy_refuses_a_damaged_checkpoint_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x80\x04not a checkpoint")
    assert main(["export", "policy", str(bad), str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "not a readable training checkpoint" in err and "Traceback" not in err
    assert not (tmp_path / "p").exists()
