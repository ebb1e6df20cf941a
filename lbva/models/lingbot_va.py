"""LingBot-VA: a Wan2.2 video DiT whose sequence interleaves video latents and actions, causally by chunk.

Axis legend: B batch, C latent channels, F latent frames, H/W latent height/width, N actions per latent
frame, A action dim (30), L tokens, S key tokens, D width, Hh heads, Dh head dim, Lt text tokens, Dt text width.

Parameter names follow the released LingBot-VA transformer (diffusers' Wan key layout plus
``action_embedder``, ``condition_embedder_action``, ``action_proj_out``), so a released checkpoint loads
with an identity key map.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.attention import FeedForward
from diffusers.models.embeddings import PixArtAlphaTextProjection, TimestepEmbedding, Timesteps
from diffusers.models.normalization import FP32LayerNorm
from torch import nn
from torch.utils.checkpoint import checkpoint

from lbva.config import ConfigError
from lbva.config.model import DEFAULT_MAX_PARAMETERS, ArchConfig
from lbva.errors import UserError
from lbva.models.attention import Attend, AttentionWindow, MaskSpec, as_window, frames_within_episode


@dataclass
class ModelOutput:
    video: torch.Tensor | None = None  # (B, C, F, H, W)
    actions: torch.Tensor | None = None  # (B, F, N, A)


# ------------------------------------------------------------------------------------------------ RoPE
def rope_freqs(head_dim: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-axis inverse frequencies (fp32): height and width get 2·(Dh//6) dims each (an even count, so
    rotation pairs never straddle two axes), time the rest — Wan's split (44/42/42 for Dh = 128).

    Built once per model (float64 then rounded, like the release's table); the hot path is fp32 only."""
    h_dim = w_dim = 2 * (head_dim // 6)
    f_dim = head_dim - h_dim - w_dim

    def base(d):
        # on the CPU explicitly: a model built under ``torch.device("meta")`` still needs real frequencies
        return (1.0 / theta ** (torch.arange(0, d, 2, device="cpu")[: d // 2].double() / d)).float()

    return base(f_dim), base(h_dim), base(w_dim)


def rope_angles(pos: torch.Tensor, freqs) -> torch.Tensor:
    """pos (L, 3) float (time, height, width) -> angles (L, Dh/2), fp32."""
    f, h, w = (t.to(pos.device) for t in freqs)
    pos = pos.float()
    return torch.cat([pos[:, 0:1] * f, pos[:, 1:2] * h, pos[:, 2:3] * w], dim=-1)


def rope_tables(angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """angles (L, Dh/2) -> the (cos, sin) tables :func:`apply_rope` reads, (L, Dh) each: cos repeated per pair,
    sin as (−sin, +sin) per pair. Built once per forward, read by every layer."""
    cos, sin = angles.cos(), angles.sin()
    return cos.repeat_interleave(2, -1), torch.stack([-sin, sin], -1).flatten(-2)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, L, Hh, Dh) rotated pairwise (x[2i], x[2i+1]) by angles; cos/sin (L, Dh) from :func:`rope_tables`.

    Pair (a, b) becomes (a·c − b·s, b·c + a·s): x·cos plus x with each pair swapped times the signed sin — four
    elementwise kernels instead of splitting and re-stacking the pairs, with the same roundings (negation is exact,
    and IEEE addition commutes), so the result is bit-identical to the pairwise formula."""
    xf = x.float()
    swapped = xf.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
    return (xf * cos[None, :, None, :] + swapped * sin[None, :, None, :]).type_as(x)


# ------------------------------------------------------------------------------------------------ blocks
# The blocks' hot path reads their submodules' parameters with the functional ops those modules' own forward calls
# make (same ops, same numbers), not through ``Module.__call__``: a streaming call of a few tokens is per-op overhead
# bound, and each module call (hooks, dispatch, a Dropout(0.0) that returns its input) costs about as much as the op.
# FSDP's units are the blocks themselves (their parameters are gathered around pre/post_attention) and the text K/V
# projections, which :meth:`Attention.kv` still calls as modules.
def _linear(m: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, m.weight, m.bias)


def _rms(norm: nn.RMSNorm, x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, norm.normalized_shape, norm.weight, norm.eps)


def _norm32(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """diffusers' FP32LayerNorm (or Identity) on ``x``, in float32."""
    if isinstance(norm, nn.Identity):
        return x.float()
    w, b = norm.weight, norm.bias
    return F.layer_norm(x.float(), norm.normalized_shape, None if w is None else w.float(),
                        None if b is None else b.float(), norm.eps)


def _lean_ffn(ffn: FeedForward) -> bool:
    """Whether ``ffn`` is the tanh-GELU FeedForward the blocks build (up-projection, Dropout(0.0), down-projection),
    which :func:`_ffn` computes without module calls."""
    net = getattr(ffn, "net", ())
    return (len(net) == 3 and isinstance(getattr(net[0], "proj", None), nn.Linear) and isinstance(net[1], nn.Dropout)
            and net[1].p == 0.0 and isinstance(net[2], nn.Linear) and getattr(net[0], "approximate", None) == "tanh")


def _ffn(ffn: FeedForward, h: torch.Tensor) -> torch.Tensor:
    up, _, down = ffn.net
    return _linear(down, F.gelu(_linear(up.proj, h), approximate="tanh"))


class Attention(nn.Module):
    """Q/K/V/out projections with RMS q/k norm over the full inner width (Hh·Dh).

    ``dim`` is the stream's width; ``inner`` the attention width (the video width for both MoT streams, so
    their tokens meet in one attention call); ``kv_dim`` the width keys/values are projected from."""

    def __init__(self, dim: int, heads: int, inner: int, eps: float, kv_dim: int | None = None, qkv: bool = True):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, inner)
        if qkv:
            self.to_k = nn.Linear(kv_dim or dim, inner)
            self.to_v = nn.Linear(kv_dim or dim, inner)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(0.0)])
        self.norm_q = nn.RMSNorm(inner, eps=eps, elementwise_affine=True)
        if qkv:
            self.norm_k = nn.RMSNorm(inner, eps=eps, elementwise_affine=True)

    def q(self, x: torch.Tensor) -> torch.Tensor:
        return _rms(self.norm_q, _linear(self.to_q, x)).unflatten(-1, (self.heads, -1))  # (B, L, Hh, Dh)

    def qkv(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None):
        q = self.q(x)
        k = _rms(self.norm_k, _linear(self.to_k, x)).unflatten(-1, (self.heads, -1))
        v = _linear(self.to_v, x).unflatten(-1, (self.heads, -1))
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        return q, k, v  # (B, L, Hh, Dh)

    def kv(self, ctx: torch.Tensor):
        """Keys/values of a context through the modules (the text K/V projections are an FSDP unit of their own)."""
        k = self.norm_k(self.to_k(ctx)).unflatten(-1, (self.heads, -1))
        v = self.to_v(ctx).unflatten(-1, (self.heads, -1))
        return k, v

    def out(self, o: torch.Tensor) -> torch.Tensor:
        return _linear(self.to_out[0], o.flatten(-2))  # to_out[1] is Dropout(0.0), kept for the released key names


class Block(nn.Module):
    """One Wan2.2 block of one stream: AdaLN-modulated self-attention, un-gated text cross-attention, FFN.

    The self-attention is split in two phases (:meth:`pre_attention` → joint kernel → :meth:`post_attention`) so
    that the streams of a Mixture-of-Transformers layer meet in one attention call (openpi's gemma pattern).
    ``text_kv=False`` (the MoT action expert): the cross-attention has its own query/out projections and
    reads the video expert's text keys/values, computed once per prompt."""

    def __init__(self, dim: int, ffn_dim: int, heads: int, inner: int, eps: float, cross_attn_norm: bool = True,
                 text_kv: bool = True):
        super().__init__()
        self.norm1 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.attn1 = Attention(dim, heads, inner, eps)
        self.attn2 = Attention(dim, heads, inner, eps, qkv=text_kv)
        self.norm2 = FP32LayerNorm(dim, eps, elementwise_affine=True) if cross_attn_norm else nn.Identity()
        self.ffn = FeedForward(dim, inner_dim=ffn_dim, activation_fn="gelu-approximate")
        self.norm3 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)
        self._ffn_lean = _lean_ffn(self.ffn)

    def pre_attention(self, x: torch.Tensor, mod: torch.Tensor, rope):
        """x (B, L, D); mod (B, L, 6, D) -> q, k, v (B, L, Hh, Dh) and the modulation e, six (B, L, D) fp32.

        ``unbind``, not six ``e[:, :, i]``: in the backward each indexing op writes a zero tensor of e's full size
        and adds them up (a third of the non-matmul time of a training step), where unbind stacks once."""
        e = (self.scale_shift_table[None].float() + mod.float()).unbind(2)
        shift, scale = e[0], e[1]
        h = (_norm32(self.norm1, x) * (1 + scale) + shift).type_as(x)
        q, k, v = self.attn1.qkv(h, rope)
        return (q, k, v), e

    def post_attention(self, x: torch.Tensor, o: torch.Tensor, e: torch.Tensor, text_kv) -> torch.Tensor:
        """o (B, L, Hh, Dh) the joint attention's output for this stream's tokens; e the six modulations of
        :meth:`pre_attention`; text_kv (B, Lt, Hh, Dh)×2."""
        gate, c_shift, c_scale, c_gate = e[2:]
        x = (x.float() + self.attn1.out(o).float() * gate).type_as(x)
        h = _norm32(self.norm2, x).type_as(x)
        q2 = self.attn2.q(h)
        tk, tv = text_kv
        o2 = F.scaled_dot_product_attention(q2.transpose(1, 2), tk.transpose(1, 2), tv.transpose(1, 2)).transpose(1, 2)
        x = x + self.attn2.out(o2)
        h = (_norm32(self.norm3, x) * (1 + c_scale) + c_shift).type_as(x)
        f = _ffn(self.ffn, h) if self._ffn_lean else self.ffn(h)
        return (x.float() + f.float() * c_gate).type_as(x)


class ConditionEmbedder(nn.Module):
    def __init__(self, dim: int, freq_dim: int, text_dim: int | None):
        super().__init__()
        self.timesteps_proj = Timesteps(num_channels=freq_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedder = TimestepEmbedding(in_channels=freq_dim, time_embed_dim=dim)
        self.act_fn = nn.SiLU()
        self.time_proj = nn.Linear(dim, dim * 6)
        if text_dim is not None:  # one shared text embedder: the action embedders of the release carry an unused one
            self.text_embedder = PixArtAlphaTextProjection(text_dim, dim, act_fn="gelu_tanh")

    def forward(self, timesteps: torch.Tensor):
        """timesteps (B, L) = 1000·σ -> temb (B, L, D), mod (B, L, 6, D)."""
        B, L = timesteps.shape
        t = self.timesteps_proj(timesteps.reshape(-1)).to(self.time_embedder.linear_1.weight.dtype)
        temb = self.time_embedder(t)
        mod = self.time_proj(self.act_fn(temb))
        return temb.reshape(B, L, -1), mod.reshape(B, L, 6, -1)


# ------------------------------------------------------------------------------------------------ errors, size guard
class CheckpointError(UserError, ValueError):
    """A checkpoint folder that cannot be read or does not fit the model, with what is wrong and what to do."""


def count_parameters(arch: ArchConfig) -> int:
    """The parameter count of ``LingBotVA(arch)``, computed without allocating it: one- and two-layer copies are built
    on the meta device and the per-layer difference is scaled to ``num_layers``."""
    def built(layers: int) -> int:
        with torch.device("meta"):
            return sum(p.numel() for p in LingBotVA(replace(arch, num_layers=layers)).parameters())

    one = built(1)
    return one + (arch.num_layers - 1) * (built(2) - one)


def check_model_size(arch: ArchConfig, max_parameters: int = DEFAULT_MAX_PARAMETERS) -> int:
    """The parameter count, or a ConfigError with the estimated size when it is above ``max_parameters``."""
    count = count_parameters(arch)
    if count > max_parameters:
        raise ConfigError(
            f"this model would have {count:,} parameters ({count * 4 / 2**30:,.1f} GiB in float32; num_layers="
            f"{arch.num_layers}, width {arch.dim}, ffn_dim {arch.ffn_dim}), more than model.max_parameters="
            f"{max_parameters:,}. Check the sizes; if you mean it, raise the limit (model.max_parameters=N)"
        )
    return count


# ------------------------------------------------------------------------------------------------ model
VIDEO, ACTION = 0, 1  # the experts of a layer, in the order of LingBotVA._experts; also a segment's modality


@dataclass
class _Segment:
    """Tokens of one modality copy in a forward: where they sit, which chunk ids, clean or noisy."""

    modality: int  # VIDEO or ACTION: which embedders made the tokens and which head reads them
    noisy: bool
    tokens: torch.Tensor  # (B, L, D)
    ids: torch.Tensor  # (L,)
    pos: torch.Tensor  # (L, 3)
    timesteps: torch.Tensor  # (B, L)
    episode: torch.Tensor | None = None  # (L,) packed episode of each token (lbva.data.packing)


def _pre(block: Block, x, mod, rope):
    return block.pre_attention(x, mod, rope)


def _post(block: Block, x, o, e, text_kv):
    return block.post_attention(x, o, e, text_kv)


_COMPILED: dict[str, Any] = {}


def _compiled_pre():
    """``_pre`` through ``torch.compile``, made once per process. A module-level function, not an attribute of the
    model, so the model deep-copies (EMA) and pickles as before; the block is an argument and its parameters are
    inputs of the graph (Dynamo inlines built-in modules), so every layer of both streams shares one compilation
    per input shape. The masked attention between the two halves stays eager (its kernel is chosen at run time)."""
    if "pre" not in _COMPILED:
        _COMPILED["pre"] = torch.compile(_pre, dynamic=None)
    return _COMPILED["pre"]


def _compiled_post():
    if "post" not in _COMPILED:
        _COMPILED["post"] = torch.compile(_post, dynamic=None)
    return _COMPILED["post"]


class LingBotVA(nn.Module):
    """The composed model. Parameter counts (exact, ``wan2.2-5b`` with action_dim 30, text 4096):

    * ``shared`` (the released layout): 5,088,872,670 parameters (incl. the release's unused action text embedder)
    * ``mot`` (d_a = 768, FFN 3584):     5,594,997,726 parameters (action stream ≈ 0.51B)

    Streaming API (one modality per call, like the released model's inference)::

        window = AttentionWindow("released", 29)       # or None, or AttentionWindow("chunks", W)
        cache = model.new_cache(window.capacity_tokens(*model.chunk_tokens(h, w, K, N)), window)
        tkv = model.text_context(text)                 # per-layer text K/V, once per prompt
        u = model.stream(cache, tkv, "video", x, sigma, chunk=c, chunk_size=K)          # velocity, no write
        model.stream(cache, tkv, "video", x0, zeros, chunk=c, chunk_size=K, write=(c, "video", imagined))
        cache.drop(c, "video")                         # forget imagined entries of chunk c

    A query attends to its own tokens plus every cached entry allowed by the mask
    (docs/architecture.md#the-attention-mask) under the cache's window, in place in the cache's buffer; the cache evicts
    by the same window. Streaming chunk by chunk gives the numbers of the full masked :meth:`forward` with that window.
    """

    def __init__(self, arch: ArchConfig, config=None, max_parameters: int | None = None):
        super().__init__()
        if torch.get_default_device().type != "meta":  # the meta device allocates nothing: any size may be counted
            limit = max_parameters or getattr(config, "max_parameters", None) or DEFAULT_MAX_PARAMETERS
            check_model_size(arch, int(limit))
        self.arch = arch
        self.config = config if config is not None else arch  # has .action_dim either way
        self.attn_kernel = getattr(config, "attn_kernel", "sdpa")
        self.activation_checkpointing = bool(getattr(config, "activation_checkpointing", False))
        d, da = arch.dim, arch.action_width
        mot = arch.layout == "mot"
        p = arch.patch_size
        inner = arch.dim
        self.patch_embedding_mlp = nn.Linear(arch.in_channels * p[0] * p[1] * p[2], d)
        self.action_embedder = nn.Linear(arch.action_dim, da if mot else d)
        self.condition_embedder = ConditionEmbedder(d, arch.freq_dim, arch.text_dim)
        self.condition_embedder_action = ConditionEmbedder(da if mot else d, arch.freq_dim,
                                                           None if mot else arch.text_dim)
        self.blocks = nn.ModuleList(
            [Block(d, arch.ffn_dim, arch.num_attention_heads, inner, arch.eps, arch.cross_attn_norm)
             for _ in range(arch.num_layers)]
        )
        self.norm_out = FP32LayerNorm(d, arch.eps, elementwise_affine=False)
        self.proj_out = nn.Linear(d, (arch.out_channels or arch.in_channels) * p[0] * p[1] * p[2])
        self.action_proj_out = nn.Linear(da if mot else d, arch.action_dim)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, d) / d**0.5)
        if mot:
            self.action_blocks = nn.ModuleList(
                [Block(da, arch.action_ffn_dim, arch.num_attention_heads, inner, arch.eps, arch.cross_attn_norm,
                       text_kv=False) for _ in range(arch.num_layers)]
            )
            self.action_scale_shift_table = nn.Parameter(torch.randn(1, 2, da) / da**0.5)
            self.action_norm_out = FP32LayerNorm(da, arch.eps, elementwise_affine=False)
        else:  # no action expert: the action tokens pass through the video expert's blocks, norm and table
            self.action_blocks = self.action_scale_shift_table = self.action_norm_out = None
        self._freqs = rope_freqs(arch.attention_head_dim, arch.rope_theta)

    # the shape callers read from the model itself (trainer, exporters), not from .arch
    @property
    def in_channels(self) -> int:
        return self.arch.in_channels

    @property
    def text_dim(self) -> int:
        return self.arch.text_dim

    @property
    def patch_size(self) -> tuple[int, int, int]:
        return self.arch.patch_size

    # ---- token building
    def _video_tokens(self, x: torch.Tensor, sigma: torch.Tensor, f0: int | torch.Tensor, chunk_size: int,
                      noisy: bool) -> _Segment:
        if x.ndim != 5 or x.shape[1] != self.arch.in_channels:
            raise ValueError(f"video latents must be (B, C={self.arch.in_channels}, F, H, W), got {tuple(x.shape)}")
        B, C, F_, H, W = x.shape
        p = self.arch.patch_size
        if H % p[1] or W % p[2]:
            raise ValueError(f"latent height/width {H}x{W} must be multiples of the patch {p[1]}x{p[2]}")
        if sigma is None or tuple(sigma.shape) != (B, F_):
            raise ValueError(f"video σ must be (B, F) = {(B, F_)}, got {None if sigma is None else tuple(sigma.shape)}")
        h, w = H // p[1], W // p[2]
        # channel-major packing: (c p1 p2) per token, as the release's patch_embedding_mlp expects
        t = x.reshape(B, C, F_, h, p[1], w, p[2]).permute(0, 2, 3, 5, 1, 4, 6).reshape(B, F_ * h * w, C * p[1] * p[2])
        tokens = self.patch_embedding_mlp(t.to(self.patch_embedding_mlp.weight.dtype))  # (B, L, D), in the weights' dtype
        frames = f0 if torch.is_tensor(f0) else torch.arange(f0, f0 + F_, device=x.device)
        ff, hh, ww = torch.meshgrid(frames, torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
        pos = torch.stack([ff, hh, ww], -1).reshape(-1, 3).float()
        ids = (frames // chunk_size * 2).repeat_interleave(h * w)
        ts = (sigma.float() * 1000.0).repeat_interleave(h * w, dim=1)
        return _Segment(VIDEO, noisy, tokens, ids, pos, ts)

    def _action_tokens(self, a: torch.Tensor, sigma: torch.Tensor, f0: int | torch.Tensor, chunk_size: int,
                       noisy: bool) -> _Segment:
        if a.ndim != 4 or a.shape[-1] != self.arch.action_dim:
            raise ValueError(f"actions must be (B, F, N, A={self.arch.action_dim}), got {tuple(a.shape)}")
        B, F_, N, A = a.shape
        if sigma is None or tuple(sigma.shape) != (B, F_):
            raise ValueError(f"action σ must be (B, F) = {(B, F_)}, got {None if sigma is None else tuple(sigma.shape)}")
        tokens = self.action_embedder(a.reshape(B, F_ * N, A).to(self.action_embedder.weight.dtype))
        frames = f0 if torch.is_tensor(f0) else torch.arange(f0, f0 + F_, device=a.device)
        tpos = frames[:, None].float() + (torch.arange(N, device=a.device).float()[None] + 1) / (N + 1)
        pos = torch.stack([tpos.reshape(-1), torch.full((F_ * N,), -1.0, device=a.device),
                           torch.full((F_ * N,), -1.0, device=a.device)], -1)
        ids = (frames // chunk_size * 2 + 1).repeat_interleave(N)
        ts = (sigma.float() * 1000.0).repeat_interleave(N, dim=1)
        return _Segment(ACTION, noisy, tokens, ids, pos, ts)

    def text_context(self, text: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-layer cross-attention K/V (B, Lt, Hh, Dh) of a prompt: computed once per prompt, reused by every
        call (both MoT streams read the video expert's)."""
        if text.ndim != 3 or text.shape[-1] != self.arch.text_dim:
            raise ValueError(f"text embeddings must be (B, Lt, Dt={self.arch.text_dim}), got {tuple(text.shape)}")
        ctx = self.condition_embedder.text_embedder(text)
        return [blk.attn2.kv(ctx) for blk in self.blocks]

    @property
    def compiled(self) -> bool:
        """Whether the blocks' per-token parts run through ``torch.compile`` (``model.compile``)."""
        return bool(getattr(self.config, "compile", False))

    def _experts(self, i: int) -> tuple[Block, Block | None]:
        """Layer ``i``'s experts (video, action); no action expert in ``shared``, where action tokens pass
        through the video expert's blocks."""
        return self.blocks[i], (self.action_blocks[i] if self.action_blocks is not None else None)

    def _expert_of(self, seg: _Segment) -> int:
        return seg.modality if self.action_blocks is not None else VIDEO

    def _layer(self, i: int, xs: list[torch.Tensor | None], mods: list[torch.Tensor | None], ropes, text_kv, attend,
               cache_call, kv_only: bool = False) -> list[torch.Tensor | None] | None:
        """One joint layer (openpi's gemma pattern): one hidden state (B, L, D) per expert of :meth:`_experts`, None
        for an expert with no tokens in this call. Each expert projects its own Q/K/V, one attention call runs over
        the concatenation under the mask, and each expert takes its part back. With ``cache_call`` the new
        keys/values go into the KV cache's buffer and the call attends over the history there, in place.
        ``kv_only`` (a cache write's last layer when nobody reads the output): store the keys/values and stop."""
        pre, post = (_compiled_pre(), _compiled_post()) if self.compiled else (_pre, _post)
        experts = self._experts(i)
        parts = [None if x is None else pre(block, x, mod, rope)
                 for block, x, mod, rope in zip(experts, xs, mods, ropes)]
        qkv = [t for t, _ in (p for p in parts if p is not None)]
        q, k, v = (torch.cat([t[j] for t in qkv], 1) if len(qkv) > 1 else qkv[0][j] for j in range(3))
        if cache_call is not None:
            k, v = cache_call.store(i, k, v)  # (B, S, Hh, Dh) views over the cache's slots, this call's included
        if kv_only:
            return None
        o = attend(q, k, v)
        outs = iter(o.split([x.shape[1] for x in xs if x is not None], 1))
        return [None if x is None else post(block, x, next(outs), part[1], text_kv)
                for block, x, part in zip(experts, xs, parts)]

    def _run(self, segments: list[_Segment], text_kv, fdm, window: AttentionWindow | None, cache_call=None,
             output: bool = True):
        """The one layer loop: the segments are grouped by expert (their token order in the joint sequence: the
        video expert's, then the action expert's, each in the caller's order); ``cache_call`` reads and extends the
        history in a KV cache. Returns one hidden state per segment, in the caller's order — or None with
        ``output=False`` (a cache write nobody reads: the last layer stops at its keys/values)."""
        groups = [[j for j, s in enumerate(segments) if self._expert_of(s) == e] for e in (VIDEO, ACTION)]
        order = [segments[j] for g in groups for j in g]
        ids = torch.cat([s.ids for s in order])
        noisy = torch.cat([torch.full_like(s.ids, int(s.noisy), dtype=torch.bool) for s in order])
        episode = torch.cat([s.episode for s in order]) if order[0].episode is not None else None
        xs, mods, temb, ropes = ([None] * len(groups) for _ in range(4))  # per expert; None: no tokens this call
        for e, g in enumerate(groups):
            if not g:
                continue
            st = [segments[j] for j in g]
            xs[e] = torch.cat([s.tokens for s in st], 1)
            tm = [(self.condition_embedder if s.modality == VIDEO else self.condition_embedder_action)(s.timesteps)
                  for s in st]
            temb[e] = torch.cat([t for t, _ in tm], 1)
            mods[e] = torch.cat([m for _, m in tm], 1)
            ang = rope_angles(torch.cat([s.pos for s in st]), self._freqs)
            ropes[e] = rope_tables(ang)
        if cache_call is None:
            spec = MaskSpec(ids, noisy, ids, noisy, fdm=fdm, window=window, q_episode=episode, k_episode=episode)
        else:
            spec = MaskSpec(ids, noisy, cache_call.key_ids, cache_call.key_noisy, fdm=fdm, window=window,
                            k_valid=cache_call.key_valid)
        attend = Attend(spec, self.attn_kernel)
        for i in range(len(self.blocks)):
            if self.activation_checkpointing and self.training and torch.is_grad_enabled() and cache_call is None:
                xs = checkpoint(self._layer, i, xs, mods, ropes, text_kv[i], attend, None, use_reentrant=False)
            else:
                last = i == len(self.blocks) - 1
                xs = self._layer(i, xs, mods, ropes, text_kv[i], attend, cache_call, kv_only=last and not output)
        if not output:
            return None
        heads = ((self.scale_shift_table, self.norm_out), (self.action_scale_shift_table, self.action_norm_out))
        hs: list[torch.Tensor | None] = [None] * len(segments)
        for g, x, t, (table, norm) in zip(groups, xs, temb, heads):
            if x is None:
                continue
            shift, scale = (table[None].float() + t[:, :, None].float()).unbind(2)
            x = (norm(x.float()) * (1 + scale) + shift).type_as(x)
            for j, part in zip(g, x.split([segments[j].tokens.shape[1] for j in g], 1)):
                hs[j] = part
        return hs

    def _video_out(self, x: torch.Tensor, shape) -> torch.Tensor:
        B, C, F_, H, W = shape
        p = self.arch.patch_size
        h, w = H // p[1], W // p[2]
        out = self.proj_out(x)  # (B, L, p1·p2·C) sub-patch-major, as the release unpacks it
        out = out.reshape(B, F_, h, w, p[1], p[2], -1).permute(0, 6, 1, 2, 4, 3, 5)
        return out.reshape(B, -1, F_, H, W)

    # ---- training / reference forward
    def forward(self, noisy_video=None, video_sigma=None, noisy_actions=None, action_sigma=None, text=None,
                clean_video=None, clean_video_sigma=None, clean_actions=None, chunk_size: int = 1,
                window: AttentionWindow | int | None = None, fdm: bool | torch.Tensor = False,
                frame_episode: torch.Tensor | None = None) -> ModelOutput:
        """Velocities u = ε − x0 of the noisy copies, under the chunk-causal mask
        (docs/architecture.md#the-attention-mask).

        ``frame_episode`` (F,): a packed sequence's episode id per latent frame (:mod:`lbva.data.packing`); each
        episode then gets its own frame positions, chunk ids and mask, as if it ran alone.

        ``window``: an :class:`~lbva.models.attention.AttentionWindow` (its size may be a (B,) tensor, one per
        sequence), an int (whole chunks) or None. ``fdm``: one flag, or a (B,) bool tensor marking the sequences
        whose video chunks also see their own chunk's clean actions (forward dynamics)."""
        if text is None:
            raise ValueError("forward needs text embeddings (B, Lt, Dt); use zeros for an unconditional call")
        if noisy_video is None and noisy_actions is None:
            raise ValueError("forward needs noisy_video and/or noisy_actions: there is nothing to predict")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        window = as_window(window)
        B = text.shape[0]
        for name, value in (("fdm", fdm), ("window size", None if window is None else window.size)):
            if torch.is_tensor(value) and tuple(value.shape) != (B,):
                raise ValueError(f"a per-sequence {name} must have one entry per sequence, shape ({B},); "
                                 f"got {tuple(value.shape)}")
        if frame_episode is not None:
            frames = noisy_video.shape[2] if noisy_video is not None else noisy_actions.shape[1]
            if tuple(frame_episode.shape) != (frames,):
                raise ValueError(f"frame_episode must have one entry per latent frame, shape ({frames},); "
                                 f"got {tuple(frame_episode.shape)}")
        segs: list[_Segment] = []
        def zeros(x):
            return torch.zeros(x.shape[0], x.shape[2] if x.ndim == 5 else x.shape[1], device=x.device)
        f0 = 0 if frame_episode is None else frames_within_episode(frame_episode)
        if noisy_video is not None:
            segs.append(self._video_tokens(noisy_video, video_sigma, f0, chunk_size, True))
        if clean_video is not None:
            segs.append(self._video_tokens(clean_video, clean_video_sigma if clean_video_sigma is not None else zeros(clean_video), f0, chunk_size, False))
        if noisy_actions is not None:
            segs.append(self._action_tokens(noisy_actions, action_sigma, f0, chunk_size, True))
        if clean_actions is not None:
            segs.append(self._action_tokens(clean_actions, zeros(clean_actions), f0, chunk_size, False))
        if frame_episode is not None:
            for s in segs:  # tokens are frame-major: each frame's tokens share its episode
                s.episode = frame_episode.repeat_interleave(s.ids.shape[0] // frame_episode.shape[0])
        hs = self._run(segs, self.text_context(text), fdm, window)
        out = ModelOutput()
        for s, h in zip(segs, hs):
            if s.noisy and s.modality == VIDEO:
                out.video = self._video_out(h, noisy_video.shape)
            elif s.noisy:
                out.actions = self.action_proj_out(h).reshape(noisy_actions.shape)
        return out

    # ---- streaming (one modality per call, history in a KV cache)
    def chunk_tokens(self, height: int, width: int, chunk_frames: int, actions_per_frame: int) -> tuple[int, int]:
        """(video, action) tokens of one chunk of ``chunk_frames`` latent frames of height × width."""
        p = self.arch.patch_size
        return chunk_frames * (height // p[1]) * (width // p[2]), chunk_frames * actions_per_frame

    def query_slack(self, height: int, width: int, chunk_frames: int, actions_per_frame: int) -> int:
        """Slots a session's cache keeps beyond its window's capacity: one query's tokens (the larger modality of a
        chunk), so that a query may carry the writes before it (:meth:`stream_after_writes`) even when it evicts."""
        return max(self.chunk_tokens(height, width, chunk_frames, actions_per_frame))

    def new_cache(self, capacity: int, window: AttentionWindow | int | None = None,
                  rows: int | None = None, slack: int = 0) -> "KVCache":
        """A KV cache of ``capacity`` token slots (see :meth:`AttentionWindow.capacity_tokens`) evicting by
        ``window``; ``rows`` batch rows (1, or 2 with classifier-free guidance; the first write decides if None);
        ``slack`` more slots for :meth:`stream_after_writes` (a query's tokens: its eviction then costs no second call)."""
        from lbva.models.kv_cache import KVCache

        return KVCache(len(self.blocks), capacity, as_window(window), rows, slack=slack)

    def _tokens(self, modality: str, x: torch.Tensor, sigma: torch.Tensor, chunk: int, chunk_size: int,
                noisy: bool) -> _Segment:
        """One streaming chunk's tokens of ``modality`` ("video" or "actions") for chunk ``chunk``."""
        maker = self._video_tokens if modality == "video" else self._action_tokens
        return maker(x, sigma, chunk * chunk_size, chunk_size, noisy)

    def stream(self, cache, text_kv, modality: str, x: torch.Tensor, sigma: torch.Tensor, chunk: int,
               chunk_size: int, write: tuple | None = None, fdm: bool = False,
               output: bool = True) -> torch.Tensor | None:
        """Velocity for one chunk of one modality, attending to the cache and to itself under the cache's window.

        ``x``: video (B, C, K, H, W) or actions (B, K, N, A) of chunk ``chunk``; σ (B, K). With ``write`` a tag
        ``(chunk, modality, imagined)``, the tokens are clean history: they attend as clean tokens, and their
        per-layer K/V stay in ``cache`` under that tag. Every call, writing or not, first lets the cache evict
        what its window says to make room for the call's tokens. ``output=False`` (writes only): return None and
        skip what only the output needs — the last layer's attention, text cross-attention and FFN, and the head."""
        if modality not in ("video", "actions"):
            raise ValueError(f"modality {modality!r} is unknown; choose 'video' or 'actions'")
        if not output and write is None:
            raise ValueError("output=False is for cache writes (a query's output is its velocity); give write=")
        noisy = write is None
        seg = self._tokens(modality, x, sigma, chunk, chunk_size, noisy)
        call = cache.open(seg.ids, torch.full_like(seg.ids, noisy, dtype=torch.bool), chunk, rows=x.shape[0])
        try:
            hs = self._run([seg], text_kv, fdm, cache.window, cache_call=call, output=output)
        except BaseException:
            cache.close(call)  # give the slots back
            raise
        cache.close(call, write)
        if hs is None:
            return None
        (h,) = hs
        if modality == "video":
            return self._video_out(h, x.shape)
        return self.action_proj_out(h).reshape(x.shape)

    def stream_write(self, cache, text_kv, chunk: int, chunk_size: int,
                     writes: list[tuple[str, torch.Tensor, torch.Tensor, bool]]) -> None:
        """Write chunk ``chunk``'s video and actions into ``cache`` in one call: ``writes`` holds
        ``(modality, x, σ, imagined)`` for "video" and then "actions" (the feedback of a real chunk).

        The joint call computes what two :meth:`stream` writes in that order compute — under the mask the clean
        actions see the clean video of their chunk and the video does not see them, layer by layer the same
        keys/values — as long as neither write would evict: so the cache must have room for both
        (:attr:`~lbva.models.kv_cache.KVCache.free_tokens`), else this refuses and the caller writes them apart."""
        mods = [w[0] for w in writes]
        if mods != ["video", "actions"]:
            raise ValueError(f"stream_write takes one video and then one action write, got {mods}")
        segs = [self._tokens(m, x, sigma, chunk, chunk_size, False) for m, x, sigma, _ in writes]
        need = sum(int(sg.ids.numel()) for sg in segs)
        if need > cache.free_tokens:
            raise ValueError(f"a joint write of {need} tokens needs that much free room, but the cache has "
                             f"{cache.free_tokens}: write the entries one by one (each may evict)")
        ids = torch.cat([sg.ids for sg in segs])
        call = cache.open(ids, torch.zeros_like(ids, dtype=torch.bool), chunk, rows=writes[0][1].shape[0])
        try:
            self._run(segs, text_kv, False, cache.window, cache_call=call, output=False)
        except BaseException:
            cache.close(call)
            raise
        cache.close(call, [((chunk, m, imagined), int(sg.ids.numel())) for (m, _, _, imagined), sg in zip(writes, segs)])

    def stream_after_writes(self, cache, text_kv, chunk_size: int,
                            writes: list[tuple[str, torch.Tensor, torch.Tensor, tuple]],
                            query: tuple[str, torch.Tensor, torch.Tensor, int], fdm: bool = False) -> torch.Tensor | None:
        """The velocity of ``query`` = ``(modality, x, σ, chunk)`` with ``writes`` = ``[(modality, x, σ, (chunk,
        modality, imagined)), ...]`` written first, in one model call: the numbers of one :meth:`stream` write per
        entry, in order, and then the :meth:`stream` query — a session saves a whole pass through the weights per
        chunk by writing what it learnt (the imagined video, the real chunk) with its next query.

        Exact because under the mask clean tokens never see noisy ones, a write never sees a later write (their ids
        must rise; a write of an earlier chunk or modality after a later one is refused), and the cache keeps the
        keys the query evicts readable by the writes (:meth:`~lbva.models.kv_cache.KVCache.open_joint`). Returns None
        where one call cannot give those numbers (the writes would evict, the rows differ, the ids do not rise, no
        slack): the caller then makes the calls apart."""
        qmod, qx, qsigma, qchunk = query
        for m in [w[0] for w in writes] + [qmod]:
            if m not in ("video", "actions"):
                raise ValueError(f"modality {m!r} is unknown; choose 'video' or 'actions'")
        if not writes or any(w[1].shape[0] != qx.shape[0] for w in writes):
            return None
        segs = [self._tokens(m, x, sigma, tag[0], chunk_size, False) for m, x, sigma, tag in writes]
        if any(int(a.ids.max()) >= int(b.ids.min()) for a, b in zip(segs, segs[1:])):
            return None  # an earlier write would see a later one
        segs.append(self._tokens(qmod, qx, qsigma, qchunk, chunk_size, True))
        tags = [w[3] for w in writes] + [None]
        order = sorted(range(len(segs)), key=lambda j: self._expert_of(segs[j]))  # _run's token order
        segs, tags = [segs[j] for j in order], [tags[j] for j in order]
        ids = torch.cat([sg.ids for sg in segs])
        noisy = torch.cat([torch.full_like(sg.ids, tag is None, dtype=torch.bool) for sg, tag in zip(segs, tags)])
        call = cache.open_joint(ids, noisy, ~noisy, qchunk, qx.shape[0])
        if call is None:
            return None
        try:
            hs = self._run(segs, text_kv, fdm, cache.window, cache_call=call)
        except BaseException:
            cache.close(call)
            raise
        cache.close(call, [(tuple(tag), int(sg.ids.numel())) for sg, tag in zip(segs, tags) if tag is not None])
        h = hs[tags.index(None)]
        if qmod == "video":
            return self._video_out(h, qx.shape)
        return self.action_proj_out(h).reshape(qx.shape)

    # ---- inference
    def inference_layout(self) -> "LingBotVA":
        """Store every CPU linear weight input-major: the same (out, in) parameter with the same values and
        ``state_dict``, its memory laid out as the transpose of a contiguous (in, out) matrix. ``F.linear`` then hands
        the GEMM a contiguous right-hand side, which on the CPU it reads for the few rows of a streaming call without
        repacking the weight first: a 16-row call through the FFN's up-projection takes about half the time. Weights on
        other devices are left as they are (cuBLAS reads either layout alike); idempotent; returns the model."""
        with torch.no_grad():
            for m in self.modules():
                w = m.weight if isinstance(m, nn.Linear) else None
                if w is not None and w.device.type == "cpu" and w.ndim == 2 and w.is_contiguous() and w.shape[0] > 1:
                    m.weight.data = w.t().contiguous().t()
        return self

    # ---- checkpoints
    def save_pretrained(self, directory) -> Path:
        """Write ``config.json`` + ``model.safetensors`` to ``directory``, replacing an earlier save atomically
        (:func:`lbva.atomic_io.atomic_folder`: a killed save leaves the previous version or the new one)."""
        from safetensors.torch import save_file

        from lbva.atomic_io import atomic_folder

        d = Path(directory)
        meta = {"lbva_arch": asdict(self.arch)}
        if self.config is not self.arch:
            meta["model_config"] = asdict(self.config)
        with atomic_folder(d, marker="config.json") as tmp:
            save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(tmp / "model.safetensors"))
            (tmp / "config.json").write_text(json.dumps(meta, indent=2))
        return d

    @classmethod
    def from_pretrained(cls, directory, dtype=None, device="cpu",
                        max_parameters: int = DEFAULT_MAX_PARAMETERS) -> "LingBotVA":
        """A model saved by :meth:`save_pretrained` (or any checkpoint :func:`lbva.models.checkpoints.load_pretrained`
        reads), built on the meta device and loaded in ``dtype`` onto ``device``. Anything wrong with the folder — a
        missing or damaged file, a config this version cannot build, weights that do not fit — is a
        :class:`CheckpointError` naming it. ``max_parameters`` is the caller's limit (a folder's own config cannot
        raise it)."""
        from lbva.models.checkpoints import load_pretrained

        return load_pretrained(directory, dtype=dtype, device=device, max_parameters=max_parameters)
