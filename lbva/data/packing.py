"""Packing windows to a token budget (``data.pack_tokens``): one long training sequence per batch.

Axis legend: C latent channels, F latent frames (all packed windows together), h/w latent pixels, N actions per
latent frame, W packed windows, Lt text tokens, Dt text width.

A packed batch holds one sequence: the windows' frames concatenated along F, so a batch of B = 1 carries as many
tokens as ``pack_tokens`` allows (the paper trains on sequences of 1e5–1.5e5 tokens). ``frame_episode`` (F,)
says which window each latent frame belongs to; the model restarts frame positions and chunk ids in each window
and masks every pair of tokens from different windows (``LingBotVA.forward(frame_episode=...)``), so each window
is computed exactly as if it ran alone. Every window of a sequence comes from one cache and has one
instruction, since the sequence has one text (B = 1).

Packed batch contract (the single-window contract of :mod:`lbva.data.datamodule`, concatenated)::

    video         float32 (1, C, F, h, w)
    actions       float32 (1, F, N, 30)
    action_mask   bool    (1, F, N, 30)    each window's first frame masked, as unpacked
    text          float32 (1, Lt, Dt)      the windows' shared instruction
    chunk_size    int
    frame_episode int64   (F,)             window 0, 1, … of each latent frame (contiguous)
    episode_index, segment_start, window_start  int64 (W,)   per packed window
    state         float32 (1, F, 30)       (only when every window has one)
    source        int64   (W,)             (mixtures only)
"""

from __future__ import annotations

from typing import Any

import torch

from lbva.data.datamodule import WindowRef


def pack_windows(items: list[WindowRef], tokens: list[int], budget: int) -> list[list[WindowRef]]:
    """Greedy, in order: each pack takes the next windows while their ``tokens`` sum stays within ``budget``."""
    packs: list[list[WindowRef]] = []
    used = budget + 1
    for w, t in zip(items, tokens):
        if used + t > budget:
            packs.append([])
            used = 0
        packs[-1].append(w)
        used += t
    return packs


def collate_packed(items: list[dict[str, Any]]) -> dict[str, Any]:
    """One packed sequence (the contract above) from the items of :class:`~lbva.data.datamodule.LatentWindowDataset`."""
    sizes = {it["chunk_size"] for it in items}
    if len(sizes) != 1:
        raise ValueError(f"a packed sequence has one chunk size; got {sorted(sizes)}")
    if any(not torch.equal(it["text"], items[0]["text"]) for it in items):
        raise ValueError("a packed sequence has one instruction; its windows have different text embeddings")
    frames = torch.tensor([it["video"].shape[1] for it in items])
    batch = {
        "video": torch.cat([it["video"] for it in items], dim=1)[None],
        "actions": torch.cat([it["actions"] for it in items])[None],
        "action_mask": torch.cat([it["action_mask"] for it in items])[None],
        "text": items[0]["text"][None],
        "chunk_size": sizes.pop(),
        "frame_episode": torch.arange(len(items)).repeat_interleave(frames),
    }
    for key in ("episode_index", "segment_start", "window_start", "source"):
        if key in items[0]:
            batch[key] = torch.tensor([it[key] for it in items], dtype=torch.int64)
    if all("state" in it for it in items):
        batch["state"] = torch.cat([it["state"] for it in items])[None]
    return batch
