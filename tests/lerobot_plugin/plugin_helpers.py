"""Shared helpers of the LeRobot plugin tests: the tiny policy settings and how LeRobot builds a policy from them."""

from __future__ import annotations

EMBODIMENT = "metaworld-sawyer"
REPO_ID = "local/plugin"
# A tiny policy that trains and predicts in a second on a CPU: short windows, a small embedded VAE, few denoising
# steps. These are LeRobot config fields (``--policy.<key>``), the same as the CLI test passes.
TINY = {
    "embodiment": EMBODIMENT,
    "device": "cpu",
    "push_to_hub": False,
    "data.window_frames": 3,
    "data.chunk_sizes": [1, 2],
    "data.embedded_vae_steps": 20,
    "data.embedded_vae_frames": 16,
    "embedded_vae.hidden": 16,
    "inference.video_steps": 2,
    "inference.action_steps": 3,
    "inference.video_cfg": 2.0,
    "model.num_layers": 1,
}


def cli_args(settings: dict) -> list[str]:
    """``--policy.key=value`` arguments for LeRobot's CLIs (lists in draccus' bracket syntax)."""
    def text(v):
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, list):
            return "[" + ",".join(str(x) for x in v) + "]"
        return str(v)

    return [f"--policy.{k}={text(v)}" for k, v in settings.items()]


def make_config(**overrides):
    """An ``LBVAConfig`` parsed the way LeRobot's CLI parses ``--policy.*`` (``TINY`` with ``overrides``)."""
    import draccus
    from lerobot_policy_lbva import LBVAConfig

    settings = {k: v for k, v in {**TINY, **overrides}.items() if v is not None}  # None drops a TINY key
    args = ["--" + a.removeprefix("--policy.") for a in cli_args(settings)]
    return draccus.parse(LBVAConfig, args=args)


def build_policy(dataset_meta, **overrides):
    """A fresh policy through LeRobot's ``make_policy`` (which trains the embedded VAE on the dataset) and its
    processors, as lerobot-train builds them."""
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    cfg = make_config(**overrides)
    policy = make_policy(cfg, ds_meta=dataset_meta)
    pre, post = make_pre_post_processors(cfg, dataset_stats=dataset_meta.stats)
    return policy, pre, post


def training_batch(policy, pre, root, starts):
    """A preprocessed LeRobot training batch of the samples at ``starts``, with the policy's delta timestamps."""
    import torch
    from lerobot.datasets.factory import resolve_delta_timestamps
    from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata

    meta = LeRobotDatasetMetadata(REPO_ID, root=root)
    ds = LeRobotDataset(REPO_ID, root=root, delta_timestamps=resolve_delta_timestamps(policy.config, meta))
    return pre(torch.utils.data.default_collate([ds[i] for i in starts]))
