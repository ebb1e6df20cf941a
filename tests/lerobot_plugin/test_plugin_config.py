"""The plugins as LeRobot finds them, and ``--policy.*`` values checked with messages that reach the command line."""

from __future__ import annotations

import pytest
from plugin_helpers import make_config


def test_lerobot_discovers_the_plugins():
    """LeRobot imports installed distributions by name prefix; the policy class and processors resolve by convention."""
    from lbva_lerobot_arms.sim import SimSO101Config
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.envs.configs import EnvConfig
    from lerobot.policies.factory import (
        _make_processors_from_policy_config,
        get_policy_class,
    )
    from lerobot.robots.config import RobotConfig
    from lerobot.robots.utils import make_robot_from_config
    from lerobot.utils.import_utils import register_third_party_plugins
    from lerobot_env_lbva_metaworld import LbvaMetaWorldEnvConfig
    from lerobot_policy_lbva import (
        LBVAConfig,
        LBVAPolicy,
        make_lbva_pre_post_processors,
    )

    register_third_party_plugins()
    assert RobotConfig.get_choice_class("lbva_sim_so101") is SimSO101Config
    assert type(make_robot_from_config(SimSO101Config(render=False))).__name__ == "SimSO101"
    assert PreTrainedConfig.get_choice_class("lbva") is LBVAConfig
    assert EnvConfig.get_choice_class("lbva_metaworld") is LbvaMetaWorldEnvConfig
    assert get_policy_class("lbva") is LBVAPolicy
    cfg = make_config()
    cfg.input_features, cfg.output_features = {}, {}
    pre, post = _make_processors_from_policy_config(cfg)
    assert type(pre.steps[-1]).__name__ == "NormalizerProcessorStep"
    assert type(post.steps[0]).__name__ == "UnnormalizerProcessorStep"
    assert make_lbva_pre_post_processors.__module__ == "lerobot_policy_lbva.processor_lbva"


def test_embodiment_fills_the_robot_fields():
    cfg = make_config()
    assert (cfg.image_size, cfg.camera_layout, cfg.action_slots) == ([64, 64], "single", [0, 1, 2, 28])
    assert (cfg.actions_per_frame, cfg.chunk_frames, cfg.chunk_size) == (4, 2, 8)
    assert cfg.model.layout == "mot"  # the paper's layout stays the default when other model keys are given
    F = cfg.data.window_frames
    assert cfg.observation_delta_indices == [0, 4, 8][:F] and cfg.action_delta_indices == list(range((F - 1) * 4))
    lbva = cfg.lbva_config()
    assert lbva.embodiment.name == "metaworld-sawyer" and lbva.model.num_layers == 1


def test_derived_robot_without_an_embodiment():
    """Without --policy.embodiment the cameras, image size and action slots come from the dataset's features."""
    from lerobot.configs.types import FeatureType, PolicyFeature

    cfg = make_config(embodiment=None)
    cfg.input_features = {"observation.image": PolicyFeature(FeatureType.VISUAL, (3, 48, 80)),
                          "observation.state": PolicyFeature(FeatureType.STATE, (6,))}
    cfg.output_features = {"action": PolicyFeature(FeatureType.ACTION, (6,))}
    cfg.validate_features()
    assert cfg.camera_keys == ["observation.image"] and cfg.image_size == [48, 80]
    assert cfg.action_slots == list(range(6)) and cfg.camera_layout == "single"
    from lerobot_policy_lbva.robot import PluginRobot

    robot = PluginRobot.from_config(cfg)
    assert [c.key for c in robot.spec.cameras] == ["observation.images.image"] and robot.slots == tuple(range(6))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"chunk_frames": 3}, r"--policy.chunk_frames=3 differs from 2, the value of embodiment 'metaworld-sawyer'"),
        ({"model.layout": "moe"}, r"bad value for 'model.layout': 'moe'. Allowed values: 'shared', 'mot'"),
        ({"data.encoder": "wan2.2", "actions_per_frame": 6, "embodiment": None},
         r"actions_per_frame=6 must be a multiple of the video encoder's temporal stride 4"),
        ({"data.window_frames": 1}, r"'data.window_frames': 1 is outside the allowed range \[2, inf\]"),
        ({"image_size": [64], "embodiment": None}, r"image_size=\[64\] must be \[height, width\]"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    from lerobot_policy_lbva.configuration_lbva import LBVAConfigError

    with pytest.raises(Exception) as info:
        make_config(**overrides)
    chain, e = [], info.value
    while e is not None:  # draccus wraps what __post_init__ raised
        chain.append(e)
        e = e.__cause__ or e.__context__
    assert any(isinstance(x, LBVAConfigError) for x in chain)
    import re

    assert any(re.search(message, str(x)) for x in chain), [str(x) for x in chain]


def test_unknown_embodiment_lists_the_registered_ones():
    with pytest.raises(Exception, match="unknown embodiment 'nope'; valid names: .*metaworld-sawyer"):
        make_config(embodiment="nope")


def test_camera_keys_must_be_input_features():
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot_policy_lbva.configuration_lbva import LBVAConfigError

    cfg = make_config(camera_keys=["observation.images.top"])
    cfg.input_features = {"observation.images.corner": PolicyFeature(FeatureType.VISUAL, (3, 64, 64))}
    cfg.output_features = {"action": PolicyFeature(FeatureType.ACTION, (4,))}
    with pytest.raises(LBVAConfigError, match=r"camera_keys names \['observation.images.top'\].*--rename_map"):
        cfg.validate_features()
