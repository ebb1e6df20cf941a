"""``--policy.type=lbva``: the LeRobot configuration of an lbva world-model policy.

The config has three parts:

* **the robot** — ``embodiment`` names a registered lbva embodiment (``lbva embodiments``); it fills
  ``image_size``, ``camera_layout``, ``action_slots``, ``actions_per_frame`` and ``chunk_frames``. Without one,
  they are read from the dataset's features (or take the defaults below). ``camera_keys`` picks the LeRobot image
  features the model sees, in tiling order.
* **lbva's own sections** — ``model``, ``objective``, ``inference`` and ``data`` are lbva's recipe dataclasses, so
  ``--policy.model.layout=mot`` or ``--policy.inference.video_steps=4`` mean what ``model.layout=mot`` means in an
  lbva recipe. Of ``data`` the plugin reads the encoder fields (``encoder``, ``vae_path``, ``text_encoder``,
  ``text_encoder_path``, ``tokenizer_path``, ``text_max_length``, ``encoder_dtype``, ``tile_space``,
  ``embedded_*``) and the training window (``window_frames``, ``chunk_sizes``); LeRobot's loader replaces the rest.
* **LeRobot's training knobs** — optimizer and scheduler presets, the normalisation mapping.

Time alignment (lbva's, see ``lbva.data.segments``): a training sample starting at dataset row t holds
F = ``data.window_frames`` latent frames; video frames at rows t, t + τ, … (τ = N / s, N actions per latent
frame, s the video encoder's temporal stride) and the (F − 1)·N actions from row t on, which lead from latent frame
0 to latent frame F − 1. Frame 0 conditions the rest and carries no actions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lerobot.configs.policies import PreTrainedConfig
from lerobot.configs.types import FeatureType, NormalizationMode
from lerobot.optim.optimizers import AdamWConfig
from lerobot.optim.schedulers import CosineDecayWithWarmupSchedulerConfig
from lerobot.utils.constants import ACTION

from lbva.config.base import choice
from lbva.config.data import DataConfig
from lbva.config.inference import InferenceConfig
from lbva.config.model import ModelConfig
from lbva.config.objective import ObjectiveConfig
from lbva.data.embedded_vae import EmbeddedVAEConfig

POLICY_TYPE = "lbva"
# Temporal stride of the Wan2.2 VAE (video frames per latent frame after the first); the embedded VAE encodes
# each frame on its own.
WAN_TEMPORAL_STRIDE = 4
DEFAULT_ACTIONS_PER_FRAME = 4
DEFAULT_CHUNK_FRAMES = 2


class LBVAConfigError(Exception):
    """A ``--policy.*`` value the lbva policy cannot use, with what was given, what is allowed and what to do.

    Not a ``ValueError``: draccus replaces a ``ValueError`` raised while it builds the config by "Couldn't
    instantiate class", which would hide the message from the command line."""


@dataclass
class PluginModelConfig(ModelConfig):
    """lbva's model section with the paper's action stream as the default layout. (A subclass rather than a
    default instance: draccus builds a nested section from its class defaults as soon as one key is given.)"""

    layout: str = choice("mot", "shared", "mot", doc="action stream layout")


@PreTrainedConfig.register_subclass(POLICY_TYPE)
@dataclass
class LBVAConfig(PreTrainedConfig):
    """The lbva policy's LeRobot config (see the module docstring)."""

    # -- the robot ---------------------------------------------------------------------------------------------
    embodiment: str | None = None
    camera_keys: list[str] | None = None
    image_size: list[int] | None = None  # [h, w] every camera view is resized to
    camera_layout: str | None = None  # single / width_concat / robotwin_tshape
    action_slots: list[int] | None = None  # unified slot of each native action dim, in order
    actions_per_frame: int | None = None  # N
    chunk_frames: int | None = None  # K, latent frames predicted per chunk

    # -- lbva's sections ---------------------------------------------------------------------------------------
    model: PluginModelConfig = field(default_factory=PluginModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    data: DataConfig = field(default_factory=DataConfig)
    # The embedded VAE's architecture and measured latent statistics: filled when the policy trains or loads one,
    # so a saved policy rebuilds it without the dataset.
    embedded_vae: EmbeddedVAEConfig | None = None
    # Also write lbva's policy layout (lbva_policy.json, transformer/, encoders) into every saved folder, so
    # `Policy.from_pretrained`, `lbva serve --checkpoint` and `lbva eval` read it (needs `embodiment`). It stores
    # the transformer a second time; turn it off for large models and export with `export_lbva_policy` later.
    export_lbva: bool = True

    # -- LeRobot -----------------------------------------------------------------------------------------------
    # Actions are normalised by LeRobot's processors (QUANTILES: q01 -> -1, q99 -> +1, as lbva does); the model
    # sees no state and takes images as they are.
    normalization_mapping: dict[str, NormalizationMode] = field(
        default_factory=lambda: {
            "VISUAL": NormalizationMode.IDENTITY,
            "STATE": NormalizationMode.IDENTITY,
            "ENV": NormalizationMode.IDENTITY,
            "ACTION": NormalizationMode.QUANTILES,
        }
    )
    optimizer_lr: float = 1e-4
    optimizer_betas: tuple[float, float] = (0.9, 0.999)
    optimizer_eps: float = 1e-8
    optimizer_weight_decay: float = 0.01  # on matrices only, as lbva trains
    optimizer_grad_clip_norm: float = 2.0
    scheduler_warmup_steps: int = 100
    scheduler_decay_steps: int = 30_000  # LeRobot shortens warm-up and decay proportionally for shorter runs
    scheduler_decay_lr: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        self.lbva_config()  # validates the lbva sections (choices, ranges) with their key paths
        if self.embodiment is not None:
            self._fill_from_embodiment()
        if self.actions_per_frame is None:
            self.actions_per_frame = DEFAULT_ACTIONS_PER_FRAME
        if self.chunk_frames is None:
            self.chunk_frames = DEFAULT_CHUNK_FRAMES
        if self.camera_layout is not None:
            from lbva.embodiment import CAMERA_LAYOUTS

            if self.camera_layout not in CAMERA_LAYOUTS:
                raise LBVAConfigError(
                    f"--policy.camera_layout={self.camera_layout!r} is not one of {CAMERA_LAYOUTS}; leave it unset to "
                    "take the embodiment's (or single/width_concat by camera count)"
                )
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) < 1):
            raise LBVAConfigError(f"--policy.image_size={self.image_size} must be [height, width] in pixels, e.g. [64, 64]")
        for name in ("actions_per_frame", "chunk_frames"):
            value = getattr(self, name)
            if value < 1:
                raise LBVAConfigError(f"--policy.{name}={value} must be a positive integer")
        if self.actions_per_frame % self.temporal_stride:
            raise LBVAConfigError(
                f"--policy.actions_per_frame={self.actions_per_frame} must be a multiple of the video encoder's temporal "
                f"stride {self.temporal_stride} (data.encoder={self.data.encoder!r}): one keyframe every N / stride actions"
            )
        if self.n_obs_steps != 1:
            raise LBVAConfigError(f"--policy.n_obs_steps={self.n_obs_steps}: lbva keeps its own history (KV cache); use 1")

    # -- lbva ---------------------------------------------------------------------------------------------------
    def lbva_config(self):
        """The same settings as an lbva :class:`~lbva.config.LbvaConfig` (validated like a recipe)."""
        from lbva.config import ConfigError, LbvaConfig, from_dict, to_dict
        from lbva.config.embodiment import EmbodimentConfig

        embodiment = EmbodimentConfig() if self.embodiment is None else EmbodimentConfig(name=self.embodiment)
        cfg = LbvaConfig(model=self.model, objective=self.objective, inference=self.inference, data=self.data,
                         embodiment=embodiment)
        try:
            return from_dict(to_dict(cfg))
        except ConfigError as e:
            raise LBVAConfigError(f"lbva policy config: {e} (on LeRobot's command line the key is --policy.<key>)") from None

    def _fill_from_embodiment(self) -> None:
        """Take the robot fields from the registered embodiment; a differing explicit value is an error."""
        from lbva.embodiment import get_embodiment
        from lbva.interop.lerobot_stats import native_slot_map

        spec = get_embodiment(self.embodiment)  # an unknown name raises a KeyError listing the registered ones
        try:
            slots = [slot for slot, _, _ in native_slot_map(spec)]
        except ValueError as e:
            raise LBVAConfigError(
                f"{e}. LeRobot's processors normalise each action dim on its own, so the lbva policy needs such a "
                "one-dim-per-slot robot: describe the actions as raw/quaternion/gripper fields"
            ) from None
        sizes = {(c.height, c.width) for c in spec.cameras}
        wanted = {
            "camera_layout": spec.camera_layout,
            "action_slots": slots,
            "actions_per_frame": spec.actions_per_frame,
            "chunk_frames": spec.chunk_frames,
        }
        if spec.camera_layout != "robotwin_tshape":
            if len(sizes) != 1:
                raise LBVAConfigError(
                    f"embodiment {spec.name!r} has cameras of different sizes {sorted(sizes)}; the lbva LeRobot policy "
                    "resizes every view to one image_size: describe the robot without --policy.embodiment"
                )
            wanted["image_size"] = list(next(iter(sizes)))
        else:
            wanted["image_size"] = [spec.cameras[0].height, spec.cameras[0].width]  # the head view; wrists are half
        for name, value in wanted.items():
            mine = getattr(self, name)
            if mine is None:
                setattr(self, name, value)
            elif (list(mine) if isinstance(value, list) else mine) != value:
                raise LBVAConfigError(
                    f"--policy.{name}={mine} differs from {value}, the value of embodiment {spec.name!r}; leave it unset (the "
                    "embodiment decides), or drop --policy.embodiment to describe another robot"
                )

    # -- derived sizes ------------------------------------------------------------------------------------------
    @property
    def temporal_stride(self) -> int:
        """Video frames per latent frame (after the first) of the configured video encoder."""
        return WAN_TEMPORAL_STRIDE if self.data.encoder == "wan2.2" else 1

    @property
    def chunk_size(self) -> int:
        """Actions in a predicted chunk after the first (K·N; the first chunk has (K − 1)·N)."""
        return self.chunk_frames * self.actions_per_frame

    @property
    def n_action_steps(self) -> int:
        return self.chunk_size

    # -- LeRobot's PreTrainedConfig ------------------------------------------------------------------------------
    @property
    def observation_delta_indices(self) -> list[int]:
        n, s, f = self.actions_per_frame, self.temporal_stride, self.data.window_frames
        return list(range(0, (f - 1) * n + 1, n // s))  # (F − 1)·s + 1 video frames, one every τ = N / s rows

    @property
    def action_delta_indices(self) -> list[int]:
        return list(range((self.data.window_frames - 1) * self.actions_per_frame))

    @property
    def reward_delta_indices(self) -> None:
        return None

    @property
    def drop_n_last_frames(self) -> int:
        """LeRobot's sampler skips these last rows of every episode as window starts: every window is whole."""
        return (self.data.window_frames - 1) * self.actions_per_frame

    def validate_features(self) -> None:
        visual = [k for k, ft in self.input_features.items() if ft.type is FeatureType.VISUAL]
        if not visual:
            raise LBVAConfigError(
                "the lbva policy needs at least one camera (a VISUAL input feature); got input features "
                f"{sorted(self.input_features)}"
            )
        if self.camera_keys is None:
            self.camera_keys = visual
        missing = [k for k in self.camera_keys if k not in self.input_features]
        if missing:
            raise LBVAConfigError(
                f"--policy.camera_keys names {missing}, which are not input features ({sorted(self.input_features)}); "
                "pick from those, or rename them with --rename_map"
            )
        if ACTION not in self.output_features:
            raise LBVAConfigError(f"the lbva policy predicts {ACTION!r}; output features are {sorted(self.output_features)}")
        dim = int(self.output_features[ACTION].shape[0])
        if self.action_slots is None:
            self.action_slots = list(range(dim))
        if len(self.action_slots) != dim:
            raise LBVAConfigError(
                f"--policy.action_slots has {len(self.action_slots)} entries for a {dim}-dim action "
                f"({self.action_slots}); give one unified slot (0-29) per action dim"
            )
        if self.image_size is None:
            h, w = _image_hw(self.input_features[self.camera_keys[0]].shape)
            self.image_size = [h, w]
        if self.camera_layout is None:
            self.camera_layout = "single" if len(self.camera_keys) == 1 else "width_concat"

    def get_optimizer_preset(self) -> AdamWConfig:
        return AdamWConfig(lr=self.optimizer_lr, betas=self.optimizer_betas, eps=self.optimizer_eps,
                           weight_decay=self.optimizer_weight_decay, grad_clip_norm=self.optimizer_grad_clip_norm)

    def get_scheduler_preset(self) -> CosineDecayWithWarmupSchedulerConfig:
        return CosineDecayWithWarmupSchedulerConfig(
            num_warmup_steps=self.scheduler_warmup_steps, num_decay_steps=self.scheduler_decay_steps,
            peak_lr=self.optimizer_lr, decay_lr=self.scheduler_decay_lr,
        )


def _image_hw(shape) -> tuple[int, int]:
    """(h, w) of a LeRobot image feature, channel-first (3, h, w) as datasets give it, or channel-last."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise LBVAConfigError(f"an image feature must have 3 dims (channels, height, width); got {shape}")
    return (shape[1], shape[2]) if shape[0] in (1, 3) else (shape[0], shape[1])
