"""Model section: which network, which size, which action-stream layout, which attention kernel."""

from __future__ import annotations

from dataclasses import dataclass

from lbva.config.base import bounded, choice, documented

# Models beyond this many parameters are refused before anything is allocated (a config with num_layers=10**6 would
# otherwise allocate until the machine kills the process): 16 B parameters is 64 GB in float32, about three times the
# largest named size. Raise it with model.max_parameters.
DEFAULT_MAX_PARAMETERS = 16_000_000_000


@dataclass
class ModelConfig:
    size: str = choice("tiny", "tiny", "small", "wan2.2-5b", doc="named size preset")
    layout: str = choice("shared", "shared", "mot", doc="action stream layout")
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
