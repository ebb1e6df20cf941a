"""Model section: which network, which size, which action-stream layout, which attention kernel.

:class:`ArchConfig` is the network's shape — every field that decides its parameters — and its one description:
the named sizes (:data:`SIZES`) are values of it, the recipe section resolves to it (:meth:`ModelConfig.arch`), the
model is built from it, and checkpoint loaders map a released, LeRobot or diffusers ``config.json`` onto it. A value
that exists is buildable: it is checked when made (docs/architecture.md, on why models import it from here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from lbva.config.base import ConfigError, bounded, choice, documented

# Models beyond this many parameters are refused before anything is allocated (a config with num_layers=10**6 would
# otherwise allocate until the machine kills the process): 16 B parameters is 64 GB in float32, about three times the
# largest named size. Raise it with model.max_parameters.
DEFAULT_MAX_PARAMETERS = 16_000_000_000

LAYOUTS = ("shared", "mot")  # the action stream: through the video blocks (released), or its own experts (paper)

_POSITIVE_INTS = ("num_layers", "num_attention_heads", "attention_head_dim", "ffn_dim", "in_channels", "text_dim",
                  "freq_dim", "action_dim", "action_width")


@dataclass(frozen=True)
class ArchConfig:
    """The network's shape (field names as in the released transformer's ``config.json``)."""

    num_layers: int = 2
    num_attention_heads: int = 2
    attention_head_dim: int = 24
    ffn_dim: int = 96
    in_channels: int = 16
    out_channels: int | None = None
    text_dim: int = 64
    freq_dim: int = 32
    action_dim: int = 30
    patch_size: tuple[int, int, int] = (1, 2, 2)
    cross_attn_norm: bool = True
    eps: float = 1e-6
    rope_theta: float = 10000.0
    layout: str = "shared"
    action_width: int = 24  # d_a of the mot action stream (unused by shared)

    def __post_init__(self) -> None:
        """Refuse a shape that cannot be built: non-positive sizes, a non-finite or non-positive ``eps``, an unknown
        layout."""
        for name in _POSITIVE_INTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model {name}={value!r} is not allowed; it must be a whole number >= 1")
        if self.out_channels is not None and (not isinstance(self.out_channels, int) or self.out_channels < 1):
            raise ConfigError(f"model out_channels={self.out_channels!r} is not allowed; it must be None or a whole "
                              "number >= 1")
        if len(self.patch_size) != 3 or not all(isinstance(p, int) and p >= 1 for p in self.patch_size):
            raise ConfigError(f"model patch_size={self.patch_size!r} is not allowed; it must be three whole numbers "
                              ">= 1")
        for name, high in (("eps", 1.0), ("rope_theta", None)):
            value = getattr(self, name)
            finite = isinstance(value, (int, float)) and math.isfinite(value)
            if not finite or value <= 0 or (high and value >= high):
                bound = f"in (0, {high})" if high else "finite and > 0"
                raise ConfigError(f"model {name}={value!r} is not allowed; it must be {bound}")
        if self.layout not in LAYOUTS:
            raise ConfigError(f"model layout={self.layout!r} is unknown; choose 'shared' (released) or 'mot' (paper)")

    @property
    def dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @property
    def action_ffn_dim(self) -> int:
        return max(1, self.ffn_dim * self.action_width // self.dim)


SIZES: dict[str, ArchConfig] = {
    # tests: milliseconds per forward
    "tiny": ArchConfig(num_layers=2, num_attention_heads=2, attention_head_dim=24, ffn_dim=96, in_channels=16,
                       text_dim=64, freq_dim=32, action_width=24),
    # the CPU demo (shared 9.5M parameters, mot 10.3M)
    "small": ArchConfig(num_layers=6, num_attention_heads=6, attention_head_dim=48, ffn_dim=1152, in_channels=16,
                        text_dim=64, freq_dim=128, action_width=96),
    # Wan2.2-TI2V-5B, the released LingBot-VA transformer; the paper's action width 768 for mot
    "wan2.2-5b": ArchConfig(num_layers=30, num_attention_heads=24, attention_head_dim=128, ffn_dim=14336,
                            in_channels=48, text_dim=4096, freq_dim=256, action_width=768),
}

# the shape fields a recipe may set over its named size (None there = the size's value)
OVERRIDES = ("num_layers", "num_attention_heads", "attention_head_dim", "ffn_dim", "in_channels", "text_dim",
             "action_width")


@dataclass
class ModelConfig:
    size: str = choice("tiny", *SIZES, doc="named size preset")
    layout: str = choice("shared", *LAYOUTS, doc="action stream layout")
    attn_kernel: str = choice("sdpa", "sdpa", "flex", "flash", doc="attention kernel")
    action_dim: int = bounded(30, 1, None, doc="unified action space width")
    activation_checkpointing: bool = documented(False, doc="recompute each block in the backward pass (less memory)")
    compile: bool = documented(False, doc="torch.compile each block's per-token parts (projections, norms, MLP; the masked attention between them stays eager): one compilation shared by every layer and both streams, made on the first call of each input shape")
    init_from: str | None = documented(
        None, doc="start from this checkpoint: a released LingBot-VA root or transformer/, a LeRobot lingbot_va "
                  "folder, a diffusers Wan2.2 folder, an lbva policy or model folder")
    # overrides of the named size (None = the preset's value)
    num_layers: int | None = bounded(None, 1, None, doc="transformer blocks")
    num_attention_heads: int | None = bounded(None, 1, None, doc="attention heads")
    attention_head_dim: int | None = bounded(None, 1, None, doc="width of one head")
    ffn_dim: int | None = bounded(None, 1, None, doc="feed-forward width")
    in_channels: int | None = bounded(None, 1, None, doc="latent channels (must match the video encoder)")
    text_dim: int | None = bounded(None, 1, None, doc="text embedding width (must match the text encoder)")
    action_width: int | None = bounded(None, 1, None, doc="mot action-stream width d_a (768 in the paper)")
    max_parameters: int = bounded(
        DEFAULT_MAX_PARAMETERS, 1, None,
        doc="refuse to build a model with more parameters (16e9 = 64 GB in float32); raise it if you mean it",
    )

    def arch(self) -> ArchConfig:
        """The network this section describes: the named size with the section's overrides, action width and
        layout."""
        if self.size not in SIZES:
            raise ConfigError(f"model.size={self.size!r} is unknown; choose one of {sorted(SIZES)}")
        overrides = {k: getattr(self, k) for k in OVERRIDES if getattr(self, k) is not None}
        return replace(SIZES[self.size], **overrides, action_dim=self.action_dim, layout=self.layout)
