"""Training maths kept apart from the networks: flow-matching schedule, losses, sampler."""

from lbva.objectives.flow_matching import (
    FlowMatchingSchedule,
    inverse_shift,
    interpolate,
    paper_to_internal,
    internal_to_paper,
    sample_sigmas,
    shift_sigma,
    target_velocity,
    timestep_weight,
)
from lbva.objectives.losses import FlowMatchingObjective, LossOutput
from lbva.objectives.sampler import (
    SamplerConfig,
    denoise_actions,
    denoise_video,
    euler_sigmas,
    guided,
    integrate,
    sample_chunk,
)

__all__ = [
    "FlowMatchingObjective",
    "FlowMatchingSchedule",
    "LossOutput",
    "SamplerConfig",
    "denoise_actions",
    "denoise_video",
    "euler_sigmas",
    "guided",
    "integrate",
    "internal_to_paper",
    "interpolate",
    "inverse_shift",
    "paper_to_internal",
    "sample_chunk",
    "sample_sigmas",
    "shift_sigma",
    "target_velocity",
    "timestep_weight",
]
