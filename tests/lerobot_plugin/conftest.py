"""Fixtures for the LeRobot plugin tests: a small LeRobot dataset and lbva policies built through LeRobot's factory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from plugin_helpers import EMBODIMENT, REPO_ID, build_policy

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local datasets only
os.environ.setdefault("MUJOCO_GL", "egl")

@pytest.fixture(autouse=True, scope="package")
def _one_torch_thread():
    """The test machines are shared: one intra-op thread is faster there than two, contended."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def plugin_dataset(tmp_path_factory) -> Path:
    """Two 40-frame metaworld-sawyer episodes (synthetic frames, h264), recorded through LeRobotDataset.create."""
    from lbva.data.synthetic import make_synthetic_dataset

    root = tmp_path_factory.mktemp("lerobot_plugin") / "dataset"
    return make_synthetic_dataset(root, EMBODIMENT, episodes=2, frames=40, repo_id=REPO_ID)


@pytest.fixture(scope="session")
def dataset_meta(plugin_dataset):
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    return LeRobotDatasetMetadata(REPO_ID, root=plugin_dataset)


@pytest.fixture(scope="session")
def saved_folder(dataset_meta, tmp_path_factory) -> Path:
    """A policy built on the dataset and saved (with its processors) the way a LeRobot checkpoint is."""
    import torch

    torch.manual_seed(0)
    policy, pre, post = build_policy(dataset_meta)
    out = tmp_path_factory.mktemp("lerobot_plugin") / "pretrained_model"
    policy.save_pretrained(out)
    pre.save_pretrained(out)
    post.save_pretrained(out)
    return out
