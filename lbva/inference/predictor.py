"""One episode's world-model state and chunk prediction: the history session, the sampling noise, FDM grounding.

Axis legend: C latent channels, K latent frames per chunk, h/w latent pixels, N actions per latent frame,
A = 30 unified slots.

Chunk c covers latent frames [c·K, (c+1)·K); chunk 0 starts with the conditioning frame (the first observation,
fixed at σ = 0, its actions zero, as the released model does). :meth:`ChunkPredictor.predict` denoises the video
chunk to ``video_stop_sigma``, writes that imagined video into the session's history, then denoises the action
chunk seeing it, with the sampler's loop (:mod:`lbva.objectives.sampler`) and the session's velocity.
:meth:`ChunkPredictor.commit` replaces an imagined chunk with the real one; :meth:`ChunkPredictor.ground`
re-imagines a chunk from its first real frames and the actions sent (forward dynamics).

The predicted actions of a chunk are written into the history lazily: before the next call that reads or writes
the history, or dropped unwritten when the next call replaces that very chunk (the sync loop's :meth:`commit`).
In the sync loop that saves one model call per chunk (LeRobot's port and the released server make it, then throw
its keys/values away at the feedback), and it changes nothing the model sees: the write's room was already made by
the chunk's own action queries (the same tokens, just before), so it never evicts, and every other call finds the
history exactly as if the write had happened in order. Reading :attr:`ChunkPredictor.session` writes it first, so
callers always see the whole history.

The other writes wait too, for the next velocity query, which carries them into the history in its own model call
(:meth:`~lbva.inference.cached_session.CachedSession.velocity` with ``writes``): the imagined video of chunk c goes
with chunk c's first action query, the real chunk of :meth:`commit` with the next chunk's first video query — the
numbers of the writes made apart, one pass through the weights fewer each (docs/architecture.md, the inference
package). Anything else that touches the history writes what waits first.
"""

from __future__ import annotations

import torch

from lbva.inference.session import Entry, RecomputeSession
from lbva.models.attention import AttentionWindow
from lbva.objectives.sampler import SamplerConfig, denoise_actions, denoise_video


class ChunkPredictor:
    """Predicts chunk after chunk against one episode's history (a :class:`~lbva.inference.session.Session`)."""

    def __init__(self, model, sampler: SamplerConfig, chunk_frames: int, actions_per_frame: int, action_dim: int,
                 used: torch.Tensor, window: AttentionWindow, device: torch.device, session_kind: str = "cached"):
        self.model = model
        self.sampler = sampler
        self.K, self.N, self.A = chunk_frames, actions_per_frame, action_dim
        self.used = used  # (A,) float: 0 for unused slots
        self.window = window
        self.device = device
        self.session_kind = session_kind
        self.reset(0)

    @property
    def session(self):
        """The episode's history (a :class:`~lbva.inference.session.Session`), with every predicted chunk in it."""
        self._write_deferred()
        return self._session

    def _waiting(self) -> list[tuple[Entry, ...]]:
        """Every write still waiting, oldest first, taken off the queue (see the module's note)."""
        groups = ([(self._deferred,)] if self._deferred is not None else []) + self._queued
        self._deferred, self._queued = None, []
        return groups

    def _write_deferred(self) -> None:
        """Write what still waits (the predicted action chunk, then the queued writes), each its own call."""
        self._session.write_all(self._waiting())

    def _velocity(self, c: int, modality: str, x: torch.Tensor, sigma: torch.Tensor, text: torch.Tensor,
                  fdm: bool = False) -> torch.Tensor:
        """The session's velocity, writing what waits in the same call."""
        return self._session.velocity(c, modality, x, sigma, text, fdm=fdm, writes=self._waiting())

    def _replacing(self, c: int) -> None:
        """Chunk c's imagined entries are about to be dropped: a waiting write of chunk c is discarded unwritten
        (what the drop would remove), any other is written first, in order."""
        if self._deferred is not None and self._deferred.chunk == c:
            self._deferred = None
        self._write_deferred()

    def reset(self, seed: int) -> None:
        """Forget the episode: no history yet, noise from ``seed``."""
        self._session = None
        self._deferred: Entry | None = None  # predicted actions not yet written into the history
        self._queued: list[tuple[Entry, ...]] = []  # writes the next velocity call makes (write / write_chunk groups)
        self.text: torch.Tensor | None = None
        self.null: torch.Tensor | None = None
        self.latent_shape: tuple[int, int, int] | None = None
        self.cond_latent: torch.Tensor | None = None
        self.next_chunk = 0  # next chunk to predict
        self.observed = -1  # last chunk whose real observations are in the history
        self.imagined_video: dict[int, torch.Tensor] = {}
        self.pending: dict[int, torch.Tensor] = {}  # predicted normalised actions per chunk (1, K, N, A)
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        self.generator = torch.Generator(device="cpu").manual_seed(int(seed))

    def start(self, cond_latent: torch.Tensor, text: torch.Tensor, null: torch.Tensor | None) -> None:
        """Open the episode's history: ``cond_latent`` (1, C, 1, h, w) is the first observation."""
        from lbva.inference.cached_session import CachedSession

        self.latent_shape = tuple(cond_latent.shape[i] for i in (1, 3, 4))
        self.cond_latent = cond_latent
        self.text, self.null = text, null
        kind = RecomputeSession if self.session_kind == "recompute" else CachedSession
        self._deferred, self._queued = None, []
        self._session = kind(self.model, self.K, self.latent_shape, (self.N, self.A), window=self.window)
        self._session.set_text(text, null)

    def frame_sigmas(self, sigma: float, fixed: int) -> torch.Tensor:
        """(1, K) σ of a chunk's latent frames: ``sigma``, the first ``fixed`` (real) frames at 0."""
        s = torch.full((1, self.K), float(sigma), device=self.device)
        s[:, :fixed] = 0.0
        return s

    @torch.no_grad()
    def imagine_video(self, c: int, fixed: torch.Tensor | None, fdm: bool = False) -> torch.Tensor:
        """Denoise video chunk c to the stop σ; ``fixed`` (1, C, k, h, w) real frames stay at σ = 0."""
        C, h, w = self.latent_shape
        noise = torch.randn(1, C, self.K, h, w, generator=self.generator).to(self.device)
        return denoise_video(noise, lambda x, sigma, t: self._velocity(c, "video", x, sigma, t, fdm=fdm),
                             self.sampler, self.text, self.null, fixed)

    @torch.no_grad()
    def decode_actions(self, c: int, zero_first: bool) -> torch.Tensor:
        """Denoise action chunk c from σ = 1 to 0 (inverse dynamics: it sees video chunk c); (1, K, N, A)."""
        noise = torch.randn(1, self.K, self.N, self.A, generator=self.generator).to(self.device)
        return denoise_actions(noise, lambda x, sigma, t: self._velocity(c, "actions", x, sigma, t),
                               self.sampler, self.text, self.null, self.used, zero_frames=1 if zero_first else 0)

    def _write_imagined_video(self, c: int, fixed: torch.Tensor | None, fdm: bool) -> None:
        k = 0 if fixed is None else fixed.shape[2]
        video = self.imagine_video(c, fixed, fdm=fdm)
        self.imagined_video[c] = video
        self._queued.append((Entry(c, "video", video, self.frame_sigmas(self.sampler.video_stop_sigma, k), True),))

    def predict(self, c: int, fixed: torch.Tensor | None = None) -> torch.Tensor:
        """Imagine video chunk c, write it, decode its actions, write them; returns (1, K, N, A) normalised."""
        self._write_imagined_video(c, fixed, fdm=False)
        actions = self.decode_actions(c, zero_first=(c == 0))
        self._deferred = Entry(c, "actions", actions, torch.zeros(1, self.K, device=self.device), True)
        self.pending[c] = actions
        self.next_chunk = max(self.next_chunk, c + 1)
        return actions

    def ground(self, c: int, fixed: torch.Tensor | None, sent: torch.Tensor) -> None:
        """FDM grounding: chunk c's imagined video is re-imagined from its real frames so far (``fixed``,
        (1, C, k, h, w)) and the actions sent (``sent``, (1, K, N, A)), which replace the predicted ones."""
        self._replacing(c)
        self._session.drop(c, imagined_only=True)
        self._queued.append((Entry(c, "actions", sent, torch.zeros(1, self.K, device=self.device), False),))
        self._write_imagined_video(c, fixed, fdm=True)

    def commit(self, c: int, latents: torch.Tensor, actions: torch.Tensor) -> None:
        """Chunk c really happened: its video ``latents`` (1, C, K, h, w) and ``actions`` replace the imagined ones."""
        self._replacing(c)
        self._session.drop(c, imagined_only=True)
        zeros = torch.zeros(1, self.K, device=self.device)
        self._queued.append((Entry(c, "video", latents, zeros, False), Entry(c, "actions", actions, zeros, False)))
        self.imagined_video.pop(c, None)
        self.pending.pop(c, None)
        self.observed = c
