"""Malformed or unmappable LeRobot lingbot_va folders fail with an error naming what is wrong."""

import json
import shutil

import pytest
from lerobot_interop import lerobot_config, save_lerobot_policy
from safetensors.torch import load_file, save_file

from lbva.inference import PolicyFolderError, load_policy
from lbva.interop.lerobot import is_lerobot_folder, load_lerobot_policy
from lbva.interop.lerobot_folder import LeRobotFolderError, read_lerobot_folder


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    out = tmp_path_factory.mktemp("lr") / "good"
    save_lerobot_policy(out)
    return out


@pytest.fixture
def folder(good, tmp_path):
    out = tmp_path / "lr"
    shutil.copytree(good, out)
    return out


def _edit_config(folder, **changes):
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))


def _load(folder, **kw):
    return load_lerobot_policy(folder, encoders=False, **kw)


def test_the_good_folder_loads(folder):
    bundle = _load(folder)
    assert bundle.embodiment == "metaworld-sawyer" and bundle.model.arch.layout == "shared"
    assert is_lerobot_folder(folder)


def test_wrong_type_is_named(folder):
    _edit_config(folder, type="act")
    assert not is_lerobot_folder(folder)
    with pytest.raises(LeRobotFolderError, match=r"type 'act', not 'lingbot_va'"):
        read_lerobot_folder(folder)


def test_missing_config(folder):
    (folder / "config.json").unlink()
    with pytest.raises(LeRobotFolderError, match="has no config.json"):
        read_lerobot_folder(folder)


def test_load_policy_still_refuses_a_plain_folder_and_names_both_formats(tmp_path):
    with pytest.raises(PolicyFolderError, match="LeRobot lingbot_va policy folder"):
        load_policy(tmp_path)


def test_missing_postprocessor_means_missing_stats(folder):
    (folder / "policy_postprocessor.json").unlink()
    with pytest.raises(LeRobotFolderError, match="no policy_postprocessor.json.*q01/q99"):
        read_lerobot_folder(folder)


def test_missing_stats_state_file(folder):
    for f in folder.glob("policy_postprocessor_step_*unnormalizer*.safetensors"):
        f.unlink()
    with pytest.raises(LeRobotFolderError, match="state file .* is missing"):
        read_lerobot_folder(folder)


def test_stats_without_q01(folder):
    f = next(folder.glob("policy_postprocessor_step_*unnormalizer*.safetensors"))
    state = load_file(str(f))
    del state["action.q01"]
    save_file(state, str(f))
    with pytest.raises(LeRobotFolderError, match=r"lacks \['action.q01'\]"):
        read_lerobot_folder(folder)


def test_stats_of_the_wrong_width(folder):
    _edit_config(folder, used_action_channel_ids=[0, 1, 2])
    with pytest.raises(LeRobotFolderError, match=r"action.q01 has shape \(4,\) but the config uses 3 action channels"):
        read_lerobot_folder(folder)


def test_not_quantiles(folder):
    f = folder / "policy_postprocessor.json"
    data = json.loads(f.read_text())
    data["steps"][0]["config"]["norm_map"]["ACTION"] = "MEAN_STD"
    f.write_text(json.dumps(data))
    with pytest.raises(LeRobotFolderError, match="uses 'MEAN_STD', not 'QUANTILES'"):
        read_lerobot_folder(folder)


def test_weight_shape_mismatch_lists_the_tensor(folder):
    _edit_config(folder, ffn_dim=128)
    with pytest.raises(LeRobotFolderError, match=r"shape mismatches: blocks\.0\.ffn.*\(96, 48\) vs model \(128, 48\)"):
        _load(folder)


def test_missing_weights(folder):
    (folder / "model.safetensors").unlink()
    with pytest.raises(LeRobotFolderError, match="no model.safetensors"):
        read_lerobot_folder(folder)


def test_tensors_outside_the_transformer_prefix(folder):
    state = load_file(str(folder / "model.safetensors"))
    state["extra.weight"] = state["transformer.proj_out.bias"].clone()
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(LeRobotFolderError, match=r"outside the 'transformer\.' prefix \(\['extra.weight'\]\)"):
        read_lerobot_folder(folder)


@pytest.mark.parametrize("changes, message", [
    (dict(image_hflip=True), "image_hflip=True"),
    (dict(video_exec_step=1), "video_exec_step 1 leaves 1 video call"),
    (dict(patch_size=[1, 4, 4]), r"patch_size \[1, 4, 4\]"),
    (dict(freq_dim=48), "freq_dim 48"),
    (dict(n_obs_steps=2), "n_obs_steps 2"),
])
def test_unmappable_settings_are_named(folder, changes, message):
    _edit_config(folder, **changes)
    with pytest.raises(LeRobotFolderError, match=message):
        _load(folder)


@pytest.mark.parametrize("changes, message", [
    (dict(obs_cam_keys=["observation.images.top"]), r"no registered embodiment fits"),
    (dict(used_action_channel_ids=[2, 1, 0, 28]), "used_action_channel_ids"),
])
def test_no_fitting_embodiment(folder, changes, message):
    _edit_config(folder, **changes)
    with pytest.raises(LeRobotFolderError, match=message):
        _load(folder)


def test_a_named_embodiment_that_does_not_fit_lists_every_difference(folder):
    with pytest.raises(LeRobotFolderError) as e:
        _load(folder, embodiment="aloha")
    msg = str(e.value)
    assert "does not fit embodiment 'aloha'" in msg and "obs_cam_keys" in msg and "frame_chunk_size" not in msg
    assert "action_per_frame 4 vs the embodiment's actions_per_frame 16" in msg


def test_wan_path_that_is_not_local(folder):
    with pytest.raises(LeRobotFolderError, match="robbyant/lingbot-va-base.*downloads nothing"):
        load_lerobot_policy(folder)


def test_frame_chunk_mismatch(tmp_path):
    save_lerobot_policy(tmp_path / "lr", lerobot_config(frame_chunk_size=4))
    with pytest.raises(LeRobotFolderError, match="frame_chunk_size 4 vs the embodiment's chunk_frames 2"):
        _load(tmp_path / "lr", embodiment="metaworld-sawyer")
