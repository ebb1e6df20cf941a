"""The chunk-causal attention mask (docs/architecture.md#the-attention-mask) — one spec, every kernel.

Axis legend: B batch, L query tokens, S key tokens, Hh heads, Dh head dim.

Every token carries an id (video chunk c → 2c, action chunk c → 2c+1) and a flag: clean (ground truth,
history) or noisy (being denoised). The table:

| query \\ key | clean j           | noisy j |
|-------------|-------------------|---------|
| clean i     | j ≤ i             | never   |
| noisy i     | j < i             | j = i   |

``fdm``: noisy video chunk c additionally sees the clean actions of chunk c (id 2c+1). It may be one flag for
the whole batch or one per sequence (a (B,) bool tensor: training mixes forward- and inverse-dynamics sequences).

``window`` (:class:`AttentionWindow`) limits how far back a key may lie, with one of two meanings:

* ``released`` — the released LingBot-VA rule: a key is visible iff |id_q − id_k| ≤ size, so video and action
  chunks are counted apart (a noisy action chunk 3, id 7, with size 4 sees the clean actions of chunk 1, id 3,
  but not its video, id 2). At inference the release bounds its KV cache by tokens instead (``attn_window``:
  room for attn_window // 2 chunks, the oldest written group evicted first, also by calls that do not write);
  in its call order that cache shows the keys this rule admits with size = 2·(attn_window // 2) − 1, except that
  the real video of chunk c is written after chunk c's action query evicted the oldest actions it would see.
* ``chunks`` — whole chunks: a key is visible iff its chunk is among the last ``size`` chunks of the query's.

``episode`` (packed training sequences, :mod:`lbva.data.packing`): one id per token saying which episode it belongs
to; a token sees only tokens of its own episode, whatever the table says (and chunk ids restart in each episode).

The same window object sizes and evicts the streaming KV cache (:mod:`lbva.models.kv_cache`) and masks each call
against it, so a cached query never sees more than the rule admits.

:class:`MaskSpec` holds the per-token ids/flags once; :meth:`MaskSpec.dense` renders the boolean mask for SDPA,
:meth:`MaskSpec.mask_mod` the same predicate for flex attention's block mask, and the flash kernel (cache
inference) runs only where the mask is all-visible — it checks, it never assumes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

KERNELS = ("sdpa", "flex", "flash")
WINDOW_KINDS = ("released", "chunks")


@dataclass(frozen=True)
class AttentionWindow:
    """How far back a query sees: ``kind`` "released" (``size`` = the largest frame-id distance, video chunk c at
    id 2c and action chunk c at 2c+1) or "chunks" (``size`` = whole chunks, the query's own included).

    ``size`` is an int, or a (B,) integer tensor with one window per training sequence."""

    kind: str
    size: int | torch.Tensor

    def __post_init__(self):
        if self.kind not in WINDOW_KINDS:
            raise ValueError(f"attention window kind {self.kind!r} is unknown; choose one of {WINDOW_KINDS}")
        smallest = int(self.size.min()) if torch.is_tensor(self.size) else int(self.size)
        if smallest < 1:
            raise ValueError(f"attention window size must be >= 1 (a query always sees its own chunk), got {self.size}")

    @classmethod
    def from_attn_window(cls, attn_window: int) -> "AttentionWindow":
        """The window of the released server's cache of ``attn_window`` (room for attn_window // 2 chunks)."""
        if int(attn_window) < 2:
            raise ValueError(f"attn_window {attn_window}: the released cache then holds no chunk; it must be >= 2")
        return cls("released", 2 * (int(attn_window) // 2) - 1)

    @property
    def attn_window(self) -> int:
        """The released ``attn_window`` whose cache shows what this window shows (``released``, odd size)."""
        if self.kind != "released" or int(self.size) % 2 == 0:
            raise ValueError(f"{self} has no exact released attn_window: only a released window of odd size has one")
        return int(self.size) + 1

    def admits(self, q_id: torch.Tensor, k_id: torch.Tensor, size=None) -> torch.Tensor:
        """Elementwise: may a query with id ``q_id`` see a key with id ``k_id`` under this window."""
        size = self.size if size is None else size
        if self.kind == "released":
            return (q_id - k_id).abs() <= size
        return (q_id // 2 - k_id // 2) < size

    def capacity_tokens(self, video_tokens: int, action_tokens: int) -> int:
        """KV-cache room (tokens, the call's own included) for chunks of ``video_tokens`` + ``action_tokens``.

        ``released``, odd size: the release's cache, (attn_window // 2)·(video + action) tokens. An even size (no
        released attn_window gives one) gets room for size // 2 + 1 chunks: in the sync call order it then evicts
        only keys no later call may see, so it shows exactly what the mask admits.
        ``chunks``: ``size`` chunks plus one, so that an asynchronous worker may run one chunk ahead."""
        if torch.is_tensor(self.size):
            raise ValueError("a per-sequence training window has no single cache capacity")
        per_chunk = int(video_tokens) + int(action_tokens)
        if self.kind == "released":
            return (self.size // 2 + 1) * per_chunk
        return (self.size + 1) * per_chunk


def as_window(window: AttentionWindow | int | None) -> AttentionWindow | None:
    """``None`` (no window), an :class:`AttentionWindow`, or an int meaning that many whole chunks."""
    if window is None or isinstance(window, AttentionWindow):
        return window
    if isinstance(window, bool) or not isinstance(window, int):
        raise TypeError(f"window must be an AttentionWindow, an int (whole chunks) or None, got {window!r}")
    return AttentionWindow("chunks", window)


def token_visibility(q_id: torch.Tensor, q_noisy: torch.Tensor, k_id: torch.Tensor, k_noisy: torch.Tensor,
                     fdm: bool | torch.Tensor = False, window: AttentionWindow | int | None = None,
                     q_episode: torch.Tensor | None = None, k_episode: torch.Tensor | None = None) -> torch.Tensor:
    """(L, S) bool — or (B, L, S) with per-sequence ``fdm`` / window sizes: query l may attend to key s.
    ``q_episode`` (L,) / ``k_episode`` (S,): packed episode ids; a token sees only its own episode's."""
    qi, qn = q_id[..., :, None], q_noisy[..., :, None]
    ki, kn = k_id[..., None, :], k_noisy[..., None, :]
    window = as_window(window)
    if torch.is_tensor(fdm):
        fdm = fdm.view(-1, 1, 1)
    size = window.size.view(-1, 1, 1) if window is not None and torch.is_tensor(window.size) else None
    qe = None if q_episode is None else q_episode[:, None]
    ke = None if k_episode is None else k_episode[None, :]
    return _visible(qi, qn, ki, kn, fdm, window, size, qe, ke)


def _visible(qi, qn, ki, kn, fdm, window: AttentionWindow | None, size=None, qe=None, ke=None):
    allowed = (~qn & ~kn & (ki <= qi)) | (qn & ~kn & (ki < qi)) | (qn & kn & (ki == qi))
    if torch.is_tensor(fdm) or fdm:
        allowed = allowed | (fdm & qn & ((qi % 2) == 0) & ~kn & (ki == qi + 1))
    if window is not None:
        allowed = allowed & window.admits(qi, ki, size)
    if qe is not None:
        allowed = allowed & (qe == ke)
    return allowed


def frames_within_episode(frame_episode: torch.Tensor) -> torch.Tensor:
    """(F,) packed episode id of each latent frame (episodes contiguous) -> (F,) frame index within its episode."""
    f = torch.arange(frame_episode.shape[0], device=frame_episode.device)
    starts = torch.ones_like(frame_episode, dtype=torch.bool)
    starts[1:] = frame_episode[1:] != frame_episode[:-1]
    first = torch.cummax(torch.where(starts, f, torch.zeros_like(f)), 0).values  # (F,) first frame of each episode
    return f - first


@dataclass
class MaskSpec:
    """Ids (chunk·2 + modality) and noisy flags of the queries (L,) and keys (S,), plus the variant.

    ``k_valid`` (S,) marks which key slots hold a token at all (a KV cache's free slots do not); (L, S) where it
    differs per query (a joint write-and-query call: the query does not see what it evicted, the writes do).
    ``q_episode`` (L,) / ``k_episode`` (S,): packed episode ids (both or neither); tokens of two episodes never meet."""

    q_ids: torch.Tensor
    q_noisy: torch.Tensor
    k_ids: torch.Tensor
    k_noisy: torch.Tensor
    fdm: bool | torch.Tensor = False
    window: AttentionWindow | int | None = None  # an int: that many whole chunks
    k_valid: torch.Tensor | None = None
    q_episode: torch.Tensor | None = None
    k_episode: torch.Tensor | None = None

    def __post_init__(self):
        self.window = as_window(self.window)
        if (self.q_episode is None) != (self.k_episode is None):
            raise ValueError("give both q_episode and k_episode (packed sequences) or neither")

    @property
    def per_sequence(self) -> bool:
        return torch.is_tensor(self.fdm) or (self.window is not None and torch.is_tensor(self.window.size))

    def dense(self) -> torch.Tensor:
        """(L, S) bool for SDPA, or (B, L, S) when ``fdm`` or the window differs per sequence."""
        m = token_visibility(self.q_ids, self.q_noisy, self.k_ids, self.k_noisy, self.fdm, self.window,
                             self.q_episode, self.k_episode)
        return m if self.k_valid is None else m & self.k_valid

    def mask_mod(self):
        """flex attention's ``mask_mod(b, h, q_idx, kv_idx)`` for the same table."""
        qi, qn, ki, kn, window = self.q_ids, self.q_noisy, self.k_ids, self.k_noisy, self.window
        fdm, valid, qe, ke = self.fdm, self.k_valid, self.q_episode, self.k_episode
        sizes = window.size if window is not None and torch.is_tensor(window.size) else None

        def mod(b, h, q_idx, kv_idx):
            out = _visible(qi[q_idx], qn[q_idx], ki[kv_idx], kn[kv_idx], fdm[b] if torch.is_tensor(fdm) else fdm,
                           window, None if sizes is None else sizes[b],
                           None if qe is None else qe[q_idx], None if ke is None else ke[kv_idx])
            if valid is None:
                return out
            return out & (valid[q_idx, kv_idx] if valid.ndim == 2 else valid[kv_idx])

        return mod


class Attend:
    """One self-attention kernel bound to one mask; built once per forward, called by every layer."""

    def __init__(self, spec: MaskSpec, kernel: str = "sdpa"):
        if kernel not in KERNELS:
            raise ValueError(f"attention kernel {kernel!r} is unknown; choose one of {KERNELS}")
        self.kernel = kernel
        self.spec = spec
        mask = spec.dense()  # (L, S) or (B, L, S)
        self.mask = mask[:, None] if mask.ndim == 3 else mask  # SDPA broadcasts (B, 1, L, S) over heads
        self.block_mask = None
        self._float_mask: torch.Tensor | None = None
        if kernel == "flex":
            from torch.nn.attention.flex_attention import create_block_mask

            L, S = mask.shape[-2:]
            batch = mask.shape[0] if mask.ndim == 3 else None
            self.block_mask = create_block_mask(spec.mask_mod(), batch, None, L, S, device=mask.device)
        elif kernel == "flash":
            if not bool(mask.all()):
                raise ValueError(
                    "the flash kernel runs unmasked attention, but this call's mask hides some keys (a training "
                    "forward with clean+noisy copies, or a cache holding free slots or keys outside the window); use "
                    "attn_kernel='sdpa' or 'flex' for it"
                )
            try:
                from flash_attn import flash_attn_func  # noqa: F401
            except ImportError as e:
                raise ImportError(
                    "attn_kernel='flash' needs the flash-attn package (a CUDA build): install lbva's `gpu` extra "
                    "on a GPU machine, or set model.attn_kernel=sdpa"
                ) from e

    def _additive(self, dtype: torch.dtype) -> torch.Tensor:
        """The mask as 0 / −inf in the query's dtype, made once per forward: SDPA would otherwise convert the
        boolean mask again in every layer."""
        if self._float_mask is None or self._float_mask.dtype != dtype:
            self._float_mask = torch.zeros(self.mask.shape, dtype=dtype, device=self.mask.device).masked_fill(
                ~self.mask, float("-inf"))
        return self._float_mask

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q (B, L, Hh, Dh), k/v (B, S, Hh, Dh) -> (B, L, Hh, Dh). k/v may be strided views (a KV cache's buffer)."""
        if self.kernel == "sdpa":
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                 attn_mask=self._additive(q.dtype))
            return out.transpose(1, 2)
        if self.kernel == "flex":
            from torch.nn.attention.flex_attention import flex_attention

            out = flex_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), block_mask=self.block_mask)
            return out.transpose(1, 2)
        from flash_attn import flash_attn_func

        return flash_attn_func(q, k, v)  # the mask was checked all-visible at construction

