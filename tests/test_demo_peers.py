"""LeRobot's ACT and Diffusion Policy as the demo's peers: trained by LeRobot's own training code on an lbva-collected
dataset, with exactly the documented changes from LeRobot's defaults, and driven by lbva's rollout loop through
their own processors. The networks are shrunk here (``policy_overrides``) so that training takes seconds."""

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from lbva.eval import peers

TINY = {
    "act": (("dim_model", 32), ("n_heads", 2), ("dim_feedforward", 64), ("n_encoder_layers", 1),
            ("n_vae_encoder_layers", 1), ("chunk_size", 8), ("n_action_steps", 8)),
    "diffusion": (("down_dims", (16, 32)), ("horizon", 8), ("n_action_steps", 4), ("diffusion_step_embed_dim", 16),
                  ("num_inference_steps", 3), ("spatial_softmax_num_keypoints", 4), ("drop_n_last_frames", 3)),
}
TASK = "reach-v3"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A two-episode Meta-World dataset and a tiny ACT and Diffusion Policy trained on it for 4 steps each."""
    from lbva.embodiment import registry
    from lbva.eval.collect import collect

    root = tmp_path_factory.mktemp("peers")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(registry.PLUGINS_ENV, "metaworld")
        registry.reset_registry()
        collect("metaworld", [TASK], 2, root / "dataset", seed=1, progress=False)
    results = {kind: peers.train_peer(peers.PeerRun(kind, str(root / "dataset"), str(root / kind), steps=4, seed=0,
                                                    batch_size=2, policy_overrides=TINY[kind]))
               for kind in peers.PEERS}
    return root, results


@pytest.fixture(autouse=True)
def metaworld_plugin_only(monkeypatch):
    from lbva.embodiment import registry

    monkeypatch.setenv(registry.PLUGINS_ENV, "metaworld")
    registry.reset_registry()
    yield
    registry.reset_registry()


@pytest.mark.parametrize("kind", list(peers.PEERS))
def test_lerobot_trains_each_peer_with_the_documented_settings(trained, kind):
    root, results = trained
    result = results[kind]
    folder = Path(result["policy"])
    config = json.loads((folder / "config.json").read_text())
    train_config = json.loads((folder / "train_config.json").read_text())
    assert config["type"] == peers.PEERS[kind][0] and config["pretrained_backbone_weights"] is None
    assert config["device"] == "cpu"
    assert train_config["steps"] == 4 and train_config["seed"] == 0 and train_config["num_workers"] == 0
    assert Path(train_config["dataset"]["root"]) == root / "dataset"
    # LeRobot logged every step's loss (log_freq = min(10, steps)); the optimiser state is not kept
    assert [p[0] for p in result["losses"]] == [4] and all(np.isfinite(p[1]) for p in result["losses"])
    assert result["cpu_seconds"] > 0 and result["seconds"] > 0 and result["parameters"] > 0
    assert not (folder.parent / "training_state").exists() and (root / kind / "train.log").is_file()


@pytest.mark.parametrize("kind", list(peers.PEERS))
def test_every_change_from_lerobots_defaults_is_documented(tmp_path, kind):
    """Field by field, the peer's policy and training configs differ from LeRobot's own defaults only where
    POLICY_CHANGES / TRAINING_CHANGES say so, and the defaults they quote are LeRobot's."""
    from lerobot.configs.default import DatasetConfig
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.configs.train import TrainPipelineConfig

    default_policy = PreTrainedConfig.get_choice_class(peers.PEERS[kind][0])()
    ours = peers.policy_config(kind)
    changed = {f.name for f in dataclasses.fields(ours) if getattr(ours, f.name) != getattr(default_policy, f.name)}
    documented = {c.setting.removeprefix("policy.") for c in peers.POLICY_CHANGES if c.peers in ("both", kind)}
    assert changed <= documented and "pretrained_backbone_weights" in changed
    assert str(default_policy.pretrained_backbone_weights) == peers.POLICY_CHANGES[0].lerobot_default

    (tmp_path / "ds" / "meta").mkdir(parents=True)
    (tmp_path / "ds" / "meta" / "info.json").write_text("{}")
    run = peers.PeerRun(kind, str(tmp_path / "ds"), str(tmp_path / "out"), steps=1500, seed=2)
    ours_train = peers.train_config(run)
    default_train = TrainPipelineConfig(dataset=DatasetConfig(repo_id="x"))
    changed = {f.name for f in dataclasses.fields(ours_train) if f.init
               and getattr(ours_train, f.name) != getattr(default_train, f.name)}
    documented = {c.setting for c in peers.TRAINING_CHANGES}
    assert changed - {"dataset", "policy", "output_dir"} <= documented
    for change in peers.TRAINING_CHANGES:  # the quoted defaults are LeRobot's
        if change.lerobot_default.isdigit():
            assert getattr(default_train, change.setting) == int(change.lerobot_default), change


def test_the_adapter_feeds_the_policy_what_lerobots_training_feeds_it(trained):
    """A dataset frame given to the adapter as the simulator gives it (uint8 (h, w, 3) camera, state vector) yields
    the action LeRobot's own pipeline computes from the same frame as its dataset loader delivers it."""
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    root, results = trained
    folder = results["act"]["policy"]
    item = LeRobotDataset("local/dataset", root=root / "dataset")[5]
    camera = "observation.images.corner"
    obs = {camera: (item[camera].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy(),
           "observation.state": item["observation.state"].numpy()}
    adapter = peers.LeRobotPeerPolicy(folder, "metaworld-sawyer")
    adapter.reset("reach the goal")
    got = adapter.select_action(obs)

    policy = ACTPolicy.from_pretrained(folder).eval()
    pre, post = make_pre_post_processors(policy.config, pretrained_path=folder)
    batch = {camera: item[camera][None], "observation.state": item["observation.state"][None], "task": ["reach the goal"]}
    with torch.inference_mode():
        expected = post(policy.select_action(pre(batch)))[0].numpy()
    assert got.shape == (4,) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # the processors matter: without the folder's normaliser the action would differ
    with torch.inference_mode():
        policy.reset()
        raw = policy.select_action({camera: item[camera][None], "observation.state": item["observation.state"][None]})
    assert not np.allclose(got, raw[0].numpy(), atol=1e-3)


def test_a_peer_runs_in_lbvas_rollout_and_its_episodes_repeat_with_the_seed(trained):
    """Diffusion Policy samples noise; the rollout's per-episode seed makes its episodes repeat exactly."""
    from lbva.eval.rollout import rollout

    _, results = trained
    factory = peers.PeerPolicyFactory(results["diffusion"]["policy"], "metaworld-sawyer")
    runs = [rollout("metaworld", factory, [TASK], 1, seed=7, max_steps=10, progress=False) for _ in range(2)]
    assert runs[0][0].steps == 10 and runs[0][0].reward == runs[1][0].reward


def test_bad_peer_runs_are_refused_naming_the_value(tmp_path):
    with pytest.raises(ValueError, match="'pi0'.*act, diffusion"):
        peers.PeerRun("pi0", str(tmp_path), str(tmp_path / "o"), steps=10, seed=0)
    with pytest.raises(ValueError, match="steps=0"):
        peers.PeerRun("act", str(tmp_path), str(tmp_path / "o"), steps=0, seed=0)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nowhere"))):
        peers.train_peer(peers.PeerRun("act", str(tmp_path / "nowhere"), str(tmp_path / "o"), steps=1, seed=0))


def test_the_readme_lists_every_change_from_lerobots_defaults():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index("Changes from LeRobot's defaults"):]
    for change in (*peers.POLICY_CHANGES, *peers.TRAINING_CHANGES, *peers.EVALUATION_CHANGES):
        assert f"`{change.setting}`" in section, change.setting


def test_the_plan_trains_what_a_budget_needs_before_it_and_everything_once():
    from lbva.demo_evidence import LBVA, Unit, plan

    units = plan(30, [10, 30], 3, ["act", "diffusion"])
    assert len(units) == len(set(units))
    expected = {Unit(LBVA, 30, k) for k in (1, 2)} | {Unit(LBVA, 10, k) for k in (0, 1, 2)}
    expected |= {Unit(p, n, k, "steps") for p in ("act", "diffusion") for n in (10, 30) for k in (0, 1, 2)}
    expected |= {Unit(p, 30, k, "time") for p in ("act", "diffusion") for k in (0, 1, 2)}
    assert set(units) == expected
    where = {u: i for i, u in enumerate(units)}
    for p in ("act", "diffusion"):
        for k in (0, 1, 2):  # a training-time run needs lbva's time for its seed and the peer's measured step cost
            assert where[Unit(p, 30, k, "time")] > where[Unit(p, 30, 0, "steps")]
            if k:
                assert where[Unit(p, 30, k, "time")] > where[Unit(LBVA, 30, k)]
    # the most expensive units (further seeds of the peers' step budget) come last
    assert {u.seed for u in units[-8:]} == {1, 2} and {u.budget for u in units[-8:]} == {"steps"}


def test_a_peers_cost_per_step_comes_from_its_logged_clock():
    from lbva.demo_evidence import step_cost, time_budget_steps

    # 30 s of start-up, then 4 processor seconds a step, logged every 10 steps
    losses = [[s, 1.0 / s, 2.0 * s, 30.0 + 4.0 * s - 30.0] for s in range(10, 101, 10)]
    startup, per_step = step_cost({"steps": 100, "cpu_seconds": 30.0 + 4.0 * 100, "losses": losses})
    assert per_step == pytest.approx(4.0) and startup == pytest.approx(30.0)
    assert time_budget_steps(630.0, startup, per_step) == 150  # (630 - 30) / 4
    assert time_budget_steps(10.0, startup, per_step) == 1  # at least one step
    with pytest.raises(ValueError, match="train lbva and the peer's step-budget run first"):
        time_budget_steps(0.0, 30.0, 4.0)
