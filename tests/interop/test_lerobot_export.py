"""``lbva export lerobot``: a folder LeRobot loads unchanged, that lbva reads back to the same policy, written
atomically; a mot model is refused with the reason; settings LeRobot cannot express are named."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from lerobot_interop import EMBODIMENT, make_wan_root, slot_stats, tiny_model

from lbva.cli import main
from lbva.config import LbvaConfig, load_config
from lbva.inference import load_policy, save_policy
from lbva.interop.lerobot_export import export_lerobot
from lbva.interop.lerobot_folder import HINT_NAME, LeRobotFolderError


def _config(root):
    cfg = load_config(None, [
        "model.size=tiny", "model.in_channels=4", "data.encoder=wan2.2", "data.text_encoder=umt5",
        f"data.vae_path={root / 'vae'}", f"data.text_encoder_path={root / 'text_encoder'}",
        f"data.tokenizer_path={root / 'tokenizer'}", "data.text_max_length=16", "data.tile_space=latents",
        "inference.video_steps=2", "inference.video_stop_sigma=0.0", "inference.action_steps=3",
        "inference.video_cfg=2.0", "inference.action_cfg=1.0", "inference.window_size=5",
        "objective.video_shift=4.0", "objective.action_shift=0.5", f"embodiment.name={EMBODIMENT}",
    ])
    return cfg


@pytest.fixture(scope="module")
def lbva_policy(tmp_path_factory):
    base = tmp_path_factory.mktemp("exp")
    root = make_wan_root(base / "wan", z_dim=4, text_dim=64)
    cfg = _config(root)
    model = tiny_model(seed=2, in_channels=4)
    save_policy(base / "policy", model, cfg, EMBODIMENT, slot_stats(3))
    return base, model, cfg


def test_cli_export_loads_in_lerobot_and_reads_back_as_the_same_policy(lbva_policy, tmp_path):
    from lerobot.policies.lingbot_va import LingBotVAPolicy
    from lerobot.processor import PolicyProcessorPipeline
    from lerobot.processor.converters import policy_action_to_transition, transition_to_policy_action

    base, model, cfg = lbva_policy
    out = tmp_path / "lerobot"
    assert main(["export", "lerobot", str(base / "policy"), str(out)]) == 0

    lr = LingBotVAPolicy.from_pretrained(str(out))  # LeRobot's own loader, unchanged
    c = lr.config
    assert (c.num_inference_steps, c.video_exec_step, c.action_num_inference_steps) == (2, -1, 3)
    assert (c.guidance_scale, c.action_guidance_scale, c.snr_shift, c.action_snr_shift) == (2.0, 1.0, 4.0, 0.5)
    assert (c.attn_window, c.frame_chunk_size, c.action_per_frame, c.max_sequence_length) == (6, 2, 4, 16)
    assert c.used_action_channel_ids == [0, 1, 2, 28] and c.obs_cam_keys == ["observation.images.corner"]
    assert c.wan_pretrained_path == str(base / "wan") and (c.height, c.width) == (64, 64)
    for k, v in model.state_dict().items():
        assert torch.equal(lr.transformer.state_dict()[k], v), k

    # LeRobot's postprocessor maps y in [-1, 1] to native actions: dx, dy, dz raw; gripper effort = 1 − 2·slot
    post = PolicyProcessorPipeline.from_pretrained(str(out), config_filename="policy_postprocessor.json",
                                                   to_transition=policy_action_to_transition,
                                                   to_output=transition_to_policy_action)
    s = slot_stats(3)
    y = torch.tensor([[-1.0, 1.0, 0.0, 1.0]])
    want = [s.q01[0], s.q99[1], (s.q01[2] + s.q99[2]) / 2, 1 - 2 * s.q99[28]]
    np.testing.assert_allclose(post(y)[0].numpy(), want, rtol=1e-6, atol=1e-6)

    back = load_policy(out)  # lbva's loader dispatches on the LeRobot config
    assert back.embodiment == EMBODIMENT
    i0, i1 = cfg.inference, back.config.inference
    assert (i1.video_steps, i1.video_stop_sigma, i1.action_steps, i1.video_cfg, i1.action_cfg, i1.window,
            i1.window_size) == (i0.video_steps, i0.video_stop_sigma, i0.action_steps, i0.video_cfg, i0.action_cfg,
                                "released", 5)
    assert (back.config.objective.video_shift, back.config.objective.action_shift) == (4.0, 0.5)
    np.testing.assert_allclose(back.stats.q01, s.q01, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(back.stats.q99, s.q99, rtol=1e-6, atol=1e-7)
    for k, v in model.state_dict().items():
        assert torch.equal(back.model.state_dict()[k], v), k
    assert type(back.video_encoder).__name__ == "WanVideoEncoder" and back.video_encoder.temporal_stride == 4
    assert type(back.text_encoder).__name__ == "UMT5TextEncoder" and back.text_encoder.max_length == 16
    assert json.loads((out / HINT_NAME).read_text())["embodiment"] == EMBODIMENT
    assert json.loads((out / "config.json").read_text())["device"] is None  # LeRobot picks the loading machine's


def test_policy_from_pretrained_runs_a_lerobot_folder_closed_loop(lbva_policy, tmp_path):
    from lbva.inference import Policy

    base, _, _ = lbva_policy
    export_lerobot(base / "policy", tmp_path / "lr", progress=False)
    pol = Policy.from_pretrained(tmp_path / "lr")
    assert pol.config.data.encoder == "wan2.2" and pol.spec.name == EMBODIMENT
    rng = np.random.default_rng(0)
    obs = lambda: {"observation.images.corner": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),  # noqa: E731
                   "task": "pick up the block"}
    chunk = pol.predict_action_chunk(obs())
    assert chunk.shape == (4, 4) and np.isfinite(chunk).all()  # (K − 1)·N actions of chunk 0, native width 4
    pol.reset(None)
    actions = [pol.select_action(obs()) for _ in range(4 + 8 + 1)]  # chunk 0, chunk 1 (feedback), into chunk 2
    assert all(a.shape == (4,) and np.isfinite(a).all() for a in actions)
    pol.close()


def test_a_mot_model_is_refused_with_the_reason(tmp_path):
    from lbva.models import build_model

    cfg = load_config(None, ["model.size=tiny", "model.layout=mot"])
    build_model(cfg.model).save_pretrained(tmp_path / "mot")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("old")
    with pytest.raises(Exception, match="'mot' model has no released-layout equivalent.*shared layout"):
        export_lerobot(tmp_path / "mot", tmp_path / "out", embodiment=EMBODIMENT, stats=slot_stats(), progress=False)
    # nothing half-written: the old folder is intact and no temporary folder is left
    assert (tmp_path / "out" / "keep.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mot", "out"]


def test_export_replaces_an_existing_folder_atomically(lbva_policy, tmp_path):
    base, _, _ = lbva_policy
    out = tmp_path / "lr"
    out.mkdir()
    (out / "config.json").write_text("{}")  # an earlier export: replaced whole
    (out / "stale.txt").write_text("old")
    export_lerobot(base / "policy", out, progress=False)
    assert not (out / "stale.txt").exists() and (out / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr"]
    other = tmp_path / "notes"  # a folder that is not an export is never replaced
    other.mkdir()
    (other / "stale.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an earlier version"):
        export_lerobot(base / "policy", other, progress=False)
    assert (other / "stale.txt").read_text() == "mine"


def test_settings_lerobot_cannot_express_need_approximate(tmp_path):
    model = tiny_model(seed=0)
    cfg = LbvaConfig()  # video_steps 3, stop σ 0.4: not on LeRobot's grid; a whole-chunk window of 4
    cfg = replace(cfg, inference=replace(cfg.inference, window="chunks", window_size=4))
    save_policy(tmp_path / "p", model, cfg, EMBODIMENT, slot_stats())
    with pytest.raises(LeRobotFolderError) as e:
        export_lerobot(tmp_path / "p", tmp_path / "lr", wan_path="wan", progress=False)
    msg = str(e.value)
    assert "video_stop_sigma 0.4" in msg and "window=chunks window_size=4" in msg and "approximate=True" in msg
    export_lerobot(tmp_path / "p", tmp_path / "lr", wan_path="wan", approximate=True, progress=False)
    hint = json.loads((tmp_path / "lr" / HINT_NAME).read_text())
    assert len(hint["approximations"]) == 2
    lr_cfg = json.loads((tmp_path / "lr" / "config.json").read_text())
    assert lr_cfg["video_exec_step"] == 4 and lr_cfg["attn_window"] == 8


def test_embedded_encoders_and_bare_checkpoints_need_more_information(tmp_path):
    model = tiny_model(seed=0)
    cfg = replace(LbvaConfig(), inference=replace(LbvaConfig().inference, video_stop_sigma=0.0))
    save_policy(tmp_path / "p", model, cfg, EMBODIMENT, slot_stats())
    with pytest.raises(LeRobotFolderError, match="lbva's 'embedded' encoder.*--wan-path"):
        export_lerobot(tmp_path / "p", tmp_path / "lr", progress=False)
    model.save_pretrained(tmp_path / "m")
    assert main(["export", "lerobot", str(tmp_path / "m"), str(tmp_path / "lr")]) == 2  # user error, no traceback
    with pytest.raises(LeRobotFolderError, match="bare model checkpoint: pass the embodiment"):
        export_lerobot(tmp_path / "m", tmp_path / "lr", progress=False)


def test_a_released_transformer_on_robotwin_round_trips_through_lerobot(tmp_path):
    """A released-layout transformer folder exported for RoboTwin (T-shape cameras, quaternion fields, the release's
    statistics, the embodiment's own) loads in LeRobot and reads back onto the same embodiment, statistics, weights."""
    from lerobot.policies.lingbot_va import LingBotVAPolicy
    from safetensors.torch import save_file

    from lbva.embodiment import get_embodiment
    from lbva.interop.lerobot import load_lerobot_policy
    from lbva.models.checkpoints import released_config

    model = tiny_model(seed=6)
    rel = tmp_path / "transformer"
    rel.mkdir()
    (rel / "config.json").write_text(json.dumps(released_config(model)))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(rel / "diffusion_pytorch_model.safetensors"))
    spec = get_embodiment("robotwin-aloha-agilex")
    export_lerobot(rel, tmp_path / "lr", embodiment=spec.name, wan_path="wan", approximate=True, progress=False)
    c = LingBotVAPolicy.from_pretrained(str(tmp_path / "lr")).config
    assert c.camera_layout == "robotwin_tshape" and (c.height, c.width) == (256, 320)
    assert c.used_action_channel_ids == [0, 1, 2, 3, 4, 5, 6, 28, 7, 8, 9, 10, 11, 12, 13, 29]
    back = load_lerobot_policy(tmp_path / "lr", encoders=False)
    assert back.embodiment == spec.name
    np.testing.assert_allclose(back.stats.q01, spec.stats.q01, atol=1e-7)
    np.testing.assert_allclose(back.stats.q99, spec.stats.q99, atol=1e-7)
    for k, v in model.state_dict().items():
        assert torch.equal(back.model.state_dict()[k], v), k


def test_policy_from_pretrained_takes_a_local_wan_path_for_a_hub_id(lbva_policy, tmp_path):
    """A LeRobot folder naming its Wan weights by hub id loads when the caller points at a local copy."""
    from lbva.inference import Policy
    from lbva.interop.lerobot_folder import LeRobotFolderError

    base, _, _ = lbva_policy
    export_lerobot(base / "policy", tmp_path / "lr", progress=False)
    cfg_path = tmp_path / "lr" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    local = cfg["wan_pretrained_path"]
    cfg_path.write_text(json.dumps({**cfg, "wan_pretrained_path": "someone/not-downloaded-wan"}))
    with pytest.raises(LeRobotFolderError, match="not-downloaded-wan"):
        Policy.from_pretrained(tmp_path / "lr")
    pol = Policy.from_pretrained(tmp_path / "lr", wan_path=local)
    assert type(pol.video_encoder).__name__ == "WanVideoEncoder"
