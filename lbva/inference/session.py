"""One closed-loop session's world-model state: the history the model attends to, chunk by chunk.

Axis legend: B batch (1, or 2 with classifier-free guidance: cond then uncond), C latent channels,
K latent frames per chunk, h/w latent pixels, N actions per latent frame, A = 30 unified slots,
Lt text tokens, Dt text width.

The history is a list of *entries*, one per (chunk, modality). An entry is either real (an encoded
observation, executed actions) or imagined (the partially denoised video the policy predicted, the actions it
decoded). The sampler asks the session for one velocity at a time for the chunk being generated; the
session answers from its history. Two implementations give the same numbers:

* :class:`RecomputeSession` runs the model's full masked forward over the whole history on every call —
  the plain reference (slow, obviously right: the mask table decides what each token sees);
* :class:`CachedSession` keeps the history as per-layer keys/values in the model's KV cache and runs only the
  new tokens — what deployment uses.

Which entries exist at prediction time is the policy's business (sync, naive async, FDM-grounded async);
the session only stores, drops and attends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from lbva.models.attention import AttentionWindow
from lbva.objectives.sampler import repeat_rows

Modality = Literal["video", "actions"]


@dataclass
class Entry:
    chunk: int
    modality: Modality
    value: torch.Tensor  # video (1, C, K, h, w) | actions (1, K, N, A)
    sigma: torch.Tensor  # (1, K) σ of each latent frame (0 for real observations)
    imagined: bool


class Session(Protocol):
    chunk_frames: int

    def set_text(self, text: torch.Tensor, null_text: torch.Tensor | None) -> None: ...
    def velocity(self, chunk: int, modality: Modality, x: torch.Tensor, sigma: torch.Tensor, text: torch.Tensor,
                 fdm: bool = False, writes: Sequence[tuple[Entry, ...]] = ()) -> torch.Tensor: ...
    def write(self, entry: Entry) -> None: ...
    def write_chunk(self, video: Entry, actions: Entry) -> None: ...
    def drop(self, chunk: int, modality: Modality | None = None, imagined_only: bool = True) -> None: ...
    def entries(self) -> list[Entry]: ...
    def write_all(self, groups: Sequence[tuple[Entry, ...]]) -> None: ...


class EntryBook:
    """The (chunk, modality) -> Entry bookkeeping both sessions share."""

    def __init__(self):
        self._entries: dict[tuple[int, str], Entry] = {}

    def _record(self, entry: Entry) -> bool:
        """Store ``entry``; True if it replaced one for the same chunk and modality."""
        key = (entry.chunk, entry.modality)
        replaced = key in self._entries
        self._entries[key] = entry
        return replaced

    def _forget(self, chunk: int, modality: Modality | None, imagined_only: bool) -> None:
        for key in [k for k in self._entries if k[0] == chunk and (modality is None or k[1] == modality)]:
            if not imagined_only or self._entries[key].imagined:
                del self._entries[key]

    def entries(self) -> list[Entry]:
        return sorted(self._entries.values(), key=lambda e: (e.chunk, e.modality))

    def write_all(self, groups: Sequence[tuple[Entry, ...]]) -> None:
        """Write each group in order: one entry as ``write`` takes it, a chunk's (video, actions) as ``write_chunk``."""
        for group in groups:
            if len(group) == 2:
                self.write_chunk(*group)
            else:
                self.write(*group)


class RecomputeSession(EntryBook):
    """Reference session: every velocity is a full masked forward over the stored history plus the query chunk.

    The history is laid out as the training sequence (a clean copy of every chunk, the query chunk in the
    noisy copy), so the model's own mask decides what the query sees: video chunk c sees clean video and
    actions of chunks < c; action chunk c sees clean video ≤ c and actions < c; with ``fdm`` video chunk c
    also sees the clean actions of chunk c. History slots of the noisy copy are ignored by the mask, and
    ``window`` (an :class:`~lbva.models.attention.AttentionWindow`) limits how far back the query sees.
    """

    def __init__(self, model, chunk_frames: int, video_shape: tuple[int, int, int], action_shape: tuple[int, int],
                 window: AttentionWindow | None = None):
        super().__init__()
        self.model = model
        self.chunk_frames = chunk_frames
        self.video_shape = video_shape  # (C, h, w)
        self.action_shape = action_shape  # (N, A)
        self.window = window

    def set_text(self, text: torch.Tensor, null_text: torch.Tensor | None) -> None:
        """Nothing to precompute: every call carries its text."""

    def write(self, entry: Entry) -> None:
        self._record(entry)

    def write_chunk(self, video: Entry, actions: Entry) -> None:
        self.write(video)
        self.write(actions)

    def drop(self, chunk: int, modality: Modality | None = None, imagined_only: bool = True) -> None:
        self._forget(chunk, modality, imagined_only)

    @torch.no_grad()
    def velocity(self, chunk: int, modality: Modality, x: torch.Tensor, sigma: torch.Tensor, text: torch.Tensor,
                 fdm: bool = False, writes: Sequence[tuple[Entry, ...]] = ()) -> torch.Tensor:
        """u = ε − x0 for query chunk ``chunk`` of ``modality`` (x: batch 1, σ: (1, K)); one row per text row.
        ``writes``: groups of entries (:meth:`write`, or :meth:`write_chunk` for two) stored first."""
        self.write_all(writes)
        K = self.chunk_frames
        C, h, w = self.video_shape
        N, A = self.action_shape
        F = (chunk + 1) * K
        dev = x.device
        clean_v = torch.zeros(1, C, F, h, w, device=dev)
        clean_vs = torch.zeros(1, F, device=dev)
        clean_a = torch.zeros(1, F, N, A, device=dev)
        for e in self._entries.values():
            if e.chunk > chunk:
                continue
            sl = slice(e.chunk * K, (e.chunk + 1) * K)
            if e.modality == "video":
                clean_v[:, :, sl] = e.value
                clean_vs[:, sl] = e.sigma
            else:
                clean_a[:, sl] = e.value
        sl = slice(chunk * K, (chunk + 1) * K)
        r = text.shape[0]
        if modality == "video":
            noisy = clean_v.clone()
            noisy[:, :, sl] = x
            sig = torch.zeros(1, F, device=dev)
            sig[:, sl] = sigma
            out = self.model(noisy_video=repeat_rows(noisy, r), video_sigma=repeat_rows(sig, r), noisy_actions=None,
                             action_sigma=None, text=text, clean_video=repeat_rows(clean_v, r),
                             clean_video_sigma=repeat_rows(clean_vs, r), clean_actions=repeat_rows(clean_a, r),
                             chunk_size=K, window=self.window, fdm=fdm)
            return out.video[:, :, sl]
        noisy = clean_a.clone()
        noisy[:, sl] = x
        sig = torch.zeros(1, F, device=dev)
        sig[:, sl] = sigma
        out = self.model(noisy_video=None, video_sigma=None, noisy_actions=repeat_rows(noisy, r), action_sigma=repeat_rows(sig, r),
                         text=text, clean_video=repeat_rows(clean_v, r), clean_video_sigma=repeat_rows(clean_vs, r),
                         clean_actions=repeat_rows(clean_a, r), chunk_size=K, window=self.window, fdm=fdm)
        return out.actions[:, sl]
