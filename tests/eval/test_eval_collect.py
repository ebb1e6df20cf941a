"""`lbva collect`: expert demonstrations become a LeRobot dataset that reads back and replays."""

import numpy as np
import pytest

from lbva.cli import main
from lbva.embodiment import get_embodiment, get_env_factory
from lbva.eval.rollout import episode_seed


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    import os

    from lbva.embodiment import registry

    old = os.environ.get(registry.PLUGINS_ENV)
    os.environ[registry.PLUGINS_ENV] = "metaworld"
    registry.reset_registry()
    try:
        root = tmp_path_factory.mktemp("collect") / "ds"
        assert main(["collect", "metaworld", "--tasks", "reach-v3", "--episodes", "2", "--out", str(root),
                     "--seed", "4", "--no-progress"]) == 0
    finally:
        if old is None:
            os.environ.pop(registry.PLUGINS_ENV, None)
        else:
            os.environ[registry.PLUGINS_ENV] = old
        registry.reset_registry()
    return root


def test_dataset_reads_back_through_lerobot(dataset):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset(repo_id="local/ds", root=dataset)
    spec = get_embodiment("metaworld-sawyer")
    assert ds.meta.total_episodes == 2 and ds.fps == 80 and ds.meta.robot_type == "metaworld-sawyer"
    assert ds.meta.features["action"]["names"] == list(spec.action_names)
    item = ds[0]
    assert tuple(item["observation.images.corner"].shape) == (3, 64, 64)
    assert item["task"] == "reach the red goal position with the gripper"
    lengths = [int(e["length"]) for e in ds.meta.episodes]
    assert len(ds) == sum(lengths) and all(20 < n < 500 for n in lengths)


def test_recorded_actions_replay_to_success(dataset):
    """Replaying episode e's actions from its seed reproduces the recorded states and succeeds."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset(repo_id="local/ds", root=dataset)
    table = ds.hf_dataset.to_pandas()
    _, factory = get_env_factory("metaworld")
    env = factory("reach-v3", seed=0, render=False)
    try:
        for e in range(2):
            rows = table[table["episode_index"] == e].sort_values("frame_index")
            actions, states = np.stack(rows["action"].to_list()), np.stack(rows["observation.state"].to_list())
            assert len(actions) > 20
            obs = env.reset(seed=episode_seed(4, "reach-v3", e))  # no noise: every try succeeds, tries == episodes
            info = {}
            for t, a in enumerate(actions):
                np.testing.assert_allclose(obs["observation.state"], states[t], atol=1e-5)
                obs, _, terminated, _, info = env.step(a)
            assert info["success"] and terminated
    finally:
        env.close()


def test_dataset_reads_through_lbva_data(dataset):
    from lbva.data.lerobot_source import LeRobotSource

    src = LeRobotSource(dataset, get_embodiment("metaworld-sawyer"))
    assert src.num_episodes == 2
    assert src.episode_actions(0).shape[1] == 4
    assert src.episode_task(1) == "reach the red goal position with the gripper"


def test_collect_refuses_a_non_empty_folder(tmp_path, capsys):
    (tmp_path / "x").write_text("keep me")
    assert main(["collect", "metaworld", "--tasks", "reach-v3", "--episodes", "1", "--out", str(tmp_path),
                 "--no-progress"]) == 2
    assert "not empty" in capsys.readouterr().err


def test_parallel_collection_writes_the_same_dataset(tmp_path):
    """Two worker processes simulate the tasks; the episodes, their order and every frame's data are unchanged."""
    import pandas as pd

    from lbva.eval.collect import collect

    tasks = ["reach-v3", "button-press-topdown-v3"]
    a = collect("metaworld", tasks, 1, tmp_path / "one", seed=2, progress=False, workers=1)
    b = collect("metaworld", tasks, 1, tmp_path / "two", seed=2, progress=False, workers=2)
    assert a.kept == b.kept and a.tries == b.tries and a.frames == b.frames > 0

    def table(root):
        df = pd.concat(pd.read_parquet(p) for p in sorted((root / "data").rglob("*.parquet")))
        return df.sort_values("index").reset_index(drop=True)

    ta, tb = table(tmp_path / "one"), table(tmp_path / "two")
    assert list(ta["episode_index"]) == list(tb["episode_index"]) and list(ta["task_index"]) == list(tb["task_index"])
    for col in ("observation.state", "action"):
        np.testing.assert_array_equal(np.stack(ta[col]), np.stack(tb[col]))
