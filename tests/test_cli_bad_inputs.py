"""Every ``lbva`` verb, given bad input, answers with one line ``error: ...`` naming the value, and exit code 2 — never
a traceback. (argparse's own errors — an unknown flag, a value of the wrong type — print its usage and an error line,
also with exit code 2.)

Each case names the words its message must contain: the value given, or the key to change. Cases run in this process
through :func:`lbva.cli.main`, which lets any exception that is not a user error escape (so a traceback would fail the
test); one runs the installed console script to check the same holds there.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lbva.cli import COMMANDS, main

# (verb words, then arguments with {file} = an existing plain file, {tmp} = an empty folder, {missing} = a path
# that does not exist, {damaged} = a policy folder with truncated weights, {bad_ckpt} = a truncated .ckpt); words
CASES = [
    ("config show no/such/recipe", ["no/such/recipe", "Known recipes"]),
    ("config show model.size=huge", ["model.size", "huge"]),
    ("config show trainer.lr=abc", ["trainer.lr"]),
    ("config show inference.video_steps=1000000000", ["inference.max_denoising_steps"]),
    ("config show inference.video_cfg=nan", ["inference.video_cfg", "nan"]),
    ("config show nope.key=1", ["nope"]),
    ("embodiments show no-such-robot", ["no-such-robot", "so101"]),
    ("model init {file}/sub", ["{file}", "not a folder"]),
    ("model init {file}", ["{file}", "is a file"]),
    ("model init {tmp}/m --size huge", ["model.size", "huge"]),
    ("model init {tmp}/m --embodiment no-such-robot", ["no-such-robot"]),
    ("model init {tmp}/m model.num_layers=1000000", ["model.max_parameters", "GiB"]),
    ("model init {tmp}/m model.num_layers=0", ["model.num_layers", "0"]),
    ("bench model --device tpu", ["--device", "tpu"]),
    ("bench model --repeats -1", ["--repeats", "-1"]),
    ("bench model --repeats 0", ["--repeats", "0"]),
    ("bench model --json {missing}/x.json", ["{missing}", "does not exist"]),
    ("bench inference --json {tmp}", ["--json", "is a folder"]),
    ("bench inference --repeats 0", ["--repeats"]),
    ("train no/such/recipe", ["no/such/recipe"]),
    ("train demo/tiny trainer.output_dir={file}", ["trainer.output_dir", "{file}"]),
    ("train demo/tiny trainer.max_steps=0", ["trainer.max_steps"]),
    ("train demo/tiny trainer.resume={missing}.ckpt", ["{missing}.ckpt"]),
    ("train demo/tiny trainer.resume={bad_ckpt} trainer.synthetic_batches=1 trainer.output_dir={tmp}/run",
     ["{bad_ckpt}", "cannot be read"]),
    ("plan no/such/recipe", ["no/such/recipe", "Known recipes"]),
    ("plan demo/tiny model.size=huge", ["model.size", "huge", "wan2.2-5b"]),
    ("plan demo/tiny trainer.devices=0", ["trainer.devices", "0"]),
    ("plan demo/tiny --frames 0", ["--frames", "0"]),
    ("plan demo/tiny --batch -2", ["--batch", "-2"]),
    ("plan demo/tiny --latent 0x8", ["--latent", "0x8", "HEIGHTxWIDTH"]),
    ("plan demo/tiny --latent 7x8 --phase infer", ["7x8", "patch"]),
    ("plan demo/tiny --latent 8x9 --phase train", ["8x9", "patch"]),
    ("prepare {missing} --embodiment so101", ["{missing}"]),
    ("prepare {tmp} --embodiment no-such-robot", ["no-such-robot"]),
    ("prepare {tmp} --embodiment so101 --shard 3/2", ["--shard", "3/2"]),
    ("dataset info {missing}", ["{missing}"]),
    ("dataset info {file}", ["{file}"]),
    ("serve --checkpoint {missing} --embodiment so101", ["{missing}", "does not exist"]),
    ("serve --fake --embodiment no-such-robot", ["no-such-robot"]),
    ("serve --fake", ["--fake needs --embodiment"]),
    ("serve --fake --embodiment so101 --max-queued-bytes 10", ["--max-queued-bytes", "10"]),
    ("serve --fake --embodiment so101 --max-prompt-chars 0", ["--max-prompt-chars"]),
    ("serve --checkpoint {damaged} --embodiment metaworld-sawyer", ["{damaged}", "model.safetensors"]),
    ("eval no-such-sim --tasks x", ["no-such-sim", "metaworld"]),
    ("eval metaworld --tasks nope-v3", ["nope-v3", "reach-v3"]),
    ("eval metaworld --tasks reach-v3 --policy {missing}", ["{missing}", "zero"]),
    ("eval metaworld --tasks reach-v3 --episodes 0", ["--episodes", "0"]),
    ("eval metaworld --tasks reach-v3 --out {file}", ["--out", "{file}"]),
    ("eval metaworld --tasks reach-v3 --policy {damaged}", ["{damaged}", "model.safetensors"]),
    ("collect metaworld --tasks reach-v3 --episodes 1 --out {file}", ["--out", "{file}"]),
    ("collect metaworld --tasks nope-v3 --episodes 1 --out {tmp}/ds", ["nope-v3"]),
    ("collect metaworld --tasks reach-v3 --episodes 0 --out {tmp}/ds", ["--episodes"]),
    ("rollout --robot sim-so101 --server ws://127.0.0.1:1 --prompt x --no-keys", ["ws://127.0.0.1:1", "lbva serve"]),
    ("rollout --robot sim-so101 --server not-a-url:: --prompt x --no-keys", ["not-a-url::"]),
    ("rollout --robot no-such-robot --checkpoint {tmp} --prompt x --no-keys", ["no-such-robot", "sim-so101"]),
    ("rollout --robot sim-so101 --checkpoint {missing} --prompt x --no-keys", ["{missing}"]),
    ("rollout --robot sim-so101 --checkpoint {damaged} --prompt x --no-keys", ["{damaged}", "metaworld-sawyer"]),
    ("rollout --robot sim-so101 --checkpoint {tmp} --prompt x --no-keys --summary {missing}/s.json", ["{missing}"]),
    ("rollout --robot sim-so101 --checkpoint {tmp} --prompt x --no-keys --max-failed-steps -1", ["--max-failed-steps"]),
    ("rollout --robot sim-so101 --checkpoint {tmp} --prompt x --no-keys --policy-timeout 0", ["--policy-timeout"]),
    ("demo --tasks nope-v3 --out {tmp}/demo", ["nope-v3", "reach-v3"]),
    ("demo --out {file}", ["--out", "{file}"]),
    ("demo --out {tmp}/demo --demos 0", ["--demos", "0"]),
    ("demo --out {tmp}/demo --recipe no/such/recipe", ["no/such/recipe"]),
    ("export lerobot {missing} {tmp}/out", ["{missing}"]),
    ("export lerobot {tmp} {tmp}/out --stats {missing}.json", ["{missing}.json", "does not exist"]),
    ("export lerobot {damaged} {tmp}/out", ["{damaged}", "model.safetensors"]),
    ("export lerobot {damaged} {file}", ["{file}"]),
]

# argparse refuses these itself (usage + an error line, exit code 2)
ARGPARSE_CASES = [
    "doctor --bogus",
    "model init",
    "bench model --repeats many",
    "rollout --robot sim-so101 --prompt x",
    "export lerobot a b --dtype float8",
    "serve --embodiment so101 --port http",
]


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("cli-bad")
    (root / "file.txt").write_text("not a folder")
    (root / "empty").mkdir()
    damaged = root / "damaged"
    assert main(["model", "init", "--size", "tiny", "--embodiment", "metaworld-sawyer", str(damaged)]) == 0
    weights = damaged / "transformer" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    (root / "bad.ckpt").write_bytes(b"PK\x03\x04 not a whole checkpoint")
    return {"file": str(root / "file.txt"), "tmp": str(root / "empty"), "missing": str(root / "missing"),
            "damaged": str(damaged), "bad_ckpt": str(root / "bad.ckpt")}


def _argv(template: str, paths: dict[str, str], tmp_path: Path) -> list[str]:
    fresh = dict(paths, tmp=str(tmp_path))  # every case writes (or fails to write) in its own empty folder
    return [part.format(**fresh) for part in template.split()]


def test_every_verb_has_bad_input_cases():
    verbs = {case.split()[0] for case, _ in CASES} | {case.split()[0] for case in ARGPARSE_CASES}
    assert verbs == set(COMMANDS), sorted(set(COMMANDS) - verbs)


@pytest.mark.parametrize("case, words", CASES, ids=[c for c, _ in CASES])
def test_bad_input_is_one_line_and_exit_code_2(case, words, paths, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LBVA_PLUGINS", "metaworld,lerobot_arms")
    monkeypatch.chdir(tmp_path)  # anything a verb writes by default lands here
    code = main(_argv(case, paths, tmp_path))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, (case, err)
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1, (case, err)
    for word in words:
        assert word.format(**dict(paths, tmp=str(tmp_path))) in errors[0], (case, word, errors[0])
    assert not (Path(paths["file"]).parent / "missing").exists(), "a verb created the missing folder"


@pytest.mark.parametrize("case", ARGPARSE_CASES)
def test_argparse_errors_are_usage_and_exit_code_2(case, capsys):
    with pytest.raises(SystemExit) as e:
        main(case.split())
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("lbva") and ": error: " in err[-1] and "Traceback" not in "\n".join(err)


def test_the_console_script_prints_no_traceback(paths, tmp_path):
    lbva = shutil.which("lbva", path=str(Path(sys.executable).parent))
    assert lbva, "the lbva console script is installed beside this Python"
    done = subprocess.run([lbva, "model", "init", f"{paths['file']}/sub"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: OUT {paths['file']}/sub cannot be created: {paths['file']} is a file, not a folder; pass another "
        "folder path"]


def test_verbose_mode_logs_the_traceback_of_a_user_error(paths, tmp_path, capsys, caplog):
    with caplog.at_level("DEBUG", logger="lbva.cli"):
        code = main(["-v", "export", "lerobot", paths["damaged"], str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: ")  # -v prints the traceback first, then the one line
    assert err[0] == "DEBUG lbva.cli: the command failed on bad input" and "Traceback" in err[1]
    [record] = [r for r in caplog.records if r.name == "lbva.cli"]
    assert record.exc_info is not None and record.exc_info[0].__name__ == "CheckpointError"
