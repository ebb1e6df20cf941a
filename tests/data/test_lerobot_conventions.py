"""Datasets in LeRobot's own conventions prepare unchanged: its one-camera key ``observation.image`` (PushT,
Meta-World), other key names through ``data.key_map``, and its ``meta/stats.json`` compared with lbva's own
statistics. The datasets are written here with LeRobot's ``LeRobotDataset`` API, not lbva's writer."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from lbva.config.data import DataConfig
from lbva.data.errors import MissingCameraError
from lbva.data.lerobot_source import LeRobotSource
from lbva.data.prepare import prepare_dataset
from lbva.embodiment import get_embodiment

SPEC = "metaworld-sawyer"  # one 64x64 camera observation.images.corner, 4-dim state and action


def lerobot_dataset(root, camera_key="observation.image", dtype="image", episodes=2, frames=13, action_scale=1.0):
    """A LeRobot dataset written through LeRobot: frames whose pixel values encode (episode, frame)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    feats = {
        camera_key: {"dtype": dtype, "shape": (64, 64, 3), "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": (4,), "names": None},
        "action": {"dtype": "float32", "shape": (4,), "names": None},
    }
    ds = LeRobotDataset.create("local/conventions", fps=80, features=feats, root=root, use_videos=dtype == "video")
    rng = np.random.default_rng(0)
    for e in range(episodes):
        for t in range(frames):
            img = np.zeros((64, 64, 3), np.uint8)
            img[..., 0], img[..., 1] = 10 * e + 5, 15 * t
            ds.add_frame({camera_key: img, "observation.state": rng.normal(size=4).astype(np.float32),
                          "action": (action_scale * rng.uniform(-1, 1, size=4)).astype(np.float32), "task": "push"})
        ds.save_episode()
    ds.finalize()
    return root


def data_cfg(**kw):
    return DataConfig(**{"embedded_vae_steps": 5, "embedded_vae_frames": 16, "embedded_vae_batch": 4, **kw})


def test_lerobot_single_camera_key_reads_as_the_embodiment_camera(tmp_path):
    root = lerobot_dataset(tmp_path / "ds")
    src = LeRobotSource(root, get_embodiment(SPEC))
    assert src.keys["observation.images.corner"] == "observation.image"
    frames = src.read_tiled(1, [0, 4, 12])  # lossless PNG frames: the exact pixels written
    assert frames.shape == (3, 64, 64, 3)
    assert (frames[..., 0] == 15).all() and [int(f[0, 0, 1]) for f in frames] == [0, 60, 180]


def test_a_lerobot_video_dataset_keyed_observation_image_prepares(tmp_path):
    root = lerobot_dataset(tmp_path / "ds", dtype="video")
    report = prepare_dataset(root, SPEC, out=tmp_path / "cache", data_cfg=data_cfg())
    assert report.planned == 2
    stats = json.loads((tmp_path / "cache" / "stats.json").read_text())
    assert stats["lerobot_stats"] == {"compared": True, "differ": []}


def test_other_key_names_map_through_data_key_map_and_a_missing_camera_says_how(tmp_path):
    root = lerobot_dataset(tmp_path / "ds", camera_key="observation.images.top")
    with pytest.raises(MissingCameraError, match=r"data\.key_map") as e:
        LeRobotSource(root, get_embodiment(SPEC))
    assert "observation.images.top" in str(e.value)
    src = LeRobotSource(root, get_embodiment(SPEC), key_map={"observation.images.top": "observation.images.corner"})
    assert int(src.read_tiled(0, [2])[0, 0, 0, 1]) == 30
    with pytest.raises(Exception, match="does not have"):
        LeRobotSource(root, get_embodiment(SPEC), key_map={"observation.images.nope": "observation.images.corner"})


def test_lerobot_stats_that_disagree_with_the_actions_are_named(tmp_path, caplog):
    root = lerobot_dataset(tmp_path / "ds")
    stats_file = root / "meta" / "stats.json"
    stats = json.loads(stats_file.read_text())
    assert "q01" in stats["action"] and "q99" in stats["action"]  # LeRobot 0.6 writes quantiles
    stats["action"]["q99"][1] = stats["action"]["q99"][1] + 5.0  # as if the file came from other data
    stats_file.write_text(json.dumps(stats))
    with caplog.at_level(logging.WARNING):
        prepare_dataset(root, SPEC, out=tmp_path / "cache", data_cfg=data_cfg())
    rec = json.loads((tmp_path / "cache" / "stats.json").read_text())["lerobot_stats"]
    assert rec["compared"] and len(rec["differ"]) == 1 and rec["differ"][0].startswith("dy:")
    assert "differ from LeRobot's meta/stats.json" in caplog.text
