"""The lbva policy's processors: LeRobot's standard pair (found by naming convention from ``--policy.type=lbva``).

Preprocessor: rename → batch dim → device → normalise (actions by ``normalization_mapping``, QUANTILES by default;
images and state pass as they are: the policy resizes and encodes the images itself). Postprocessor: unnormalise
the actions → CPU. The statistics are saved with the processors, as for every LeRobot policy.
"""

from __future__ import annotations

from typing import Any

import torch
from lerobot.processor import PolicyAction, PolicyProcessorPipeline
from lerobot.processor.factory import make_default_pre_post_processors

from lerobot_policy_lbva.configuration_lbva import LBVAConfig


def make_lbva_pre_post_processors(
    config: LBVAConfig,
    dataset_stats: dict[str, dict[str, torch.Tensor]] | None = None,
) -> tuple[PolicyProcessorPipeline[dict[str, Any], dict[str, Any]], PolicyProcessorPipeline[PolicyAction, PolicyAction]]:
    return make_default_pre_post_processors(config, dataset_stats)
