"""The closed-loop policy: one session of a world model driving one robot, chunk by chunk.

Axis legend: C latent channels, K latent frames per chunk, h/w latent pixels, N actions per latent frame,
A = 30 unified slots, D native action width, T actions in a chunk (K·N, or (K−1)·N for chunk 0).

Each chunk c covers latent frames [c·K, (c+1)·K). Chunk 0 starts with the conditioning frame (the first
observation, fixed at σ = 0, its actions zero — as the released model does). For each chunk the policy
1. denoises the video chunk from σ = 1 to ``video_stop_sigma`` (partial denoising, CFG ``video_cfg``),
2. writes that imagined video into the session's history,
3. denoises the action chunk from σ = 1 to 0 seeing it (inverse dynamics, CFG ``action_cfg``),
4. returns the actions in the robot's native format (denormalised q01/q99, unused slots dropped).
After execution, :meth:`observe` replaces the imagined chunk with the real observations and the executed
actions. Real frames go through the video encoder's stream (``encoder.stream()``): a per-frame encoder takes
one frame per latent frame, the Wan2.2 VAE (temporal stride 4) takes four and carries its causal convolution
caches from chunk to chunk, so the history holds exactly the latents training computed for the same frames.

The history the model sees is bounded by the attention window (``inference.window`` / ``window_size``, see
:class:`~lbva.models.attention.AttentionWindow`): the session's KV cache is sized from it and evicts by it, so
a long episode runs at a flat cost per chunk. The default is the released model's (attn_window 30).

Modes (``inference.mode``):
* ``sync`` — predict, execute, observe, predict …; the robot waits for every prediction.
* ``naive_async`` — while chunk c executes, a background worker predicts c+1 from the *imagined* video of c.
* ``fdm_async`` — while chunk c executes, as soon as its first real keyframe arrives the worker drops the
  imagined video of c, writes the actions actually sent, re-imagines the rest of c from the real frames and
  those actions (forward dynamics: video chunk c sees actions of chunk c), then predicts c+1 from that.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

from lbva.errors import UserError
from lbva.inference.session import Entry, RecomputeSession
from lbva.models.attention import AttentionWindow
from lbva.objectives.sampler import SamplerConfig, denoise_actions, denoise_video

logger = logging.getLogger(__name__)

MODES = ("sync", "naive_async", "fdm_async")


def inference_window(inference) -> AttentionWindow:
    """The attention window an ``inference`` config section names (shared by the mask and the KV cache)."""
    return AttentionWindow(inference.window, int(inference.window_size))


class PolicyError(UserError, ValueError):
    """Bad input to a policy (wrong observation, call order), with what was expected."""


@dataclass
class ChunkTiming:
    chunk: int
    latency_s: float  # wall time of the prediction (worker or inline)
    wait_s: float  # how long the robot waited for it (idle time)
    mode: str
    overlap_actions: int = 0  # actions the robot executed while the prediction ran (0 when it waited for it)

    def modelled_wait_s(self, control_hz: float) -> float:
        """The robot's idle time on real hardware at ``control_hz``: the latency the executing actions did not hide."""
        return max(0.0, self.latency_s - self.overlap_actions / float(control_hz))


@dataclass
class PolicyStats:
    chunks: list[ChunkTiming] = field(default_factory=list)

    def summary(self, control_hz: float | None = None) -> dict[str, float]:
        """Latency percentiles and idle time; with ``control_hz`` also ``modelled_idle_s``, the idle time a robot
        running at that rate would have had (simulators step faster than real time, so their measured waits
        understate it)."""
        if not self.chunks:
            return {"chunks": 0}
        lat = np.array([c.latency_s for c in self.chunks])
        wait = np.array([c.wait_s for c in self.chunks])
        out = {"chunks": len(self.chunks), "latency_p50_s": float(np.percentile(lat, 50)),
               "latency_p95_s": float(np.percentile(lat, 95)), "idle_mean_s": float(wait.mean()),
               "idle_total_s": float(wait.sum())}
        if control_hz:
            out["modelled_idle_s"] = float(sum(c.modelled_wait_s(control_hz) for c in self.chunks))
        return out


class Policy:
    """A world-model policy for one embodiment; one instance is one session (see :meth:`new_session`)."""

    def __init__(self, model, spec, video_encoder, text_encoder, config, *, stats=None, prompts=None,
                 device: str = "cpu", session: str = "cached"):
        self.model = model.eval()
        self.config = config
        self.spec = spec if stats is None else spec.with_stats(stats)
        if self.spec.stats is None:
            raise PolicyError(
                f"embodiment {self.spec.name!r} has no action statistics; set embodiment.stats_path or load a "
                "policy folder that carries them"
            )
        self.video_encoder = video_encoder
        self.text_encoder = text_encoder
        self.prompts = dict(prompts or {})
        self.device = torch.device(device)
        self.session_kind = session
        self.sampler = SamplerConfig.from_config(config)
        inf = config.inference
        if inf.mode not in MODES:
            raise PolicyError(f"inference.mode {inf.mode!r} is not one of {MODES}")
        self.mode = inf.mode
        self.K = int(self.spec.chunk_frames)
        self.N = int(self.spec.actions_per_frame)
        self.A = int(model.config.action_dim)
        self.used = torch.as_tensor(np.array(self.spec.used_mask, dtype=np.float32), device=self.device)
        self.stride = int(getattr(video_encoder, "temporal_stride", 1))  # video frames per latent frame
        if self.N % self.stride:
            raise PolicyError(
                f"embodiment {self.spec.name!r} has {self.N} actions per latent frame, not a multiple of the video "
                f"encoder's temporal stride {self.stride}: a keyframe must fall every N / stride actions"
            )
        self._tile_map = None  # per-camera encoding placed in latent space (data.tile_space=latents), as LeRobot does
        if getattr(config.data, "tile_space", "pixels") == "latents":
            from lbva.data.prepare import latent_tile_map

            self._tile_map = latent_tile_map(self.spec, int(video_encoder.spatial_stride))
        self.stats = PolicyStats()
        self._executor: ThreadPoolExecutor | None = None
        self._seed = int(inf.seed)
        self.reset(None)

    # ---------------------------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, path, embodiment: str | None = None, device: str = "cpu", wan_path=None,
                        **overrides) -> "Policy":
        """Load a policy folder written by ``lbva train`` (``lbva_policy.json``) or a LeRobot ``lingbot_va``
        policy folder (``wan_path``: a local Wan2.2 folder for its VAE and text encoder, replacing the folder's
        ``wan_pretrained_path``).

        ``overrides`` are ``inference`` fields (``mode="fdm_async"``, ``video_steps=…``)."""
        from dataclasses import replace

        from lbva.embodiment import get_embodiment
        from lbva.inference.bundle import load_policy

        bundle = load_policy(path, embodiment=embodiment, device=device, wan_path=wan_path)
        config = bundle.config
        if overrides:
            config = replace(config, inference=replace(config.inference, **overrides))
        spec = get_embodiment(bundle.embodiment)
        return cls(bundle.model, spec, bundle.video_encoder, bundle.text_encoder, config, stats=bundle.stats,
                   prompts=bundle.prompts, device=device)

    def new_session(self, **overrides) -> "Policy":
        """A fresh session sharing this policy's weights and encoders (what the server gives each client)."""
        from dataclasses import replace

        config = self.config if not overrides else replace(self.config, inference=replace(self.config.inference, **overrides))
        return Policy(self.model, self.spec, self.video_encoder, self.text_encoder, config, prompts=self.prompts,
                      device=str(self.device), session=self.session_kind)

    # ---------------------------------------------------------------------------------------------- session
    def reset(self, prompt: str | None = None) -> None:
        """Start a new episode (a new prompt, an empty history)."""
        self._wait_worker()
        if prompt is None or prompt != getattr(self, "_prompt", None) or self._text is None:
            self._text = None if prompt is None else self._encode_prompt(prompt)
            self._null = None if prompt is None else self._encode_prompt("")
        # else: the same instruction again (a server starts an episode per openpi request): same embeddings
        self._prompt = prompt
        self._session = None
        self._vstream = None  # the video encoder's streaming state (causal VAEs carry caches between chunks)
        self._chunk = 0  # next chunk to predict
        self._cond_latent: torch.Tensor | None = None
        self._imagined_video: dict[int, torch.Tensor] = {}
        self._pending: dict[int, torch.Tensor] = {}  # predicted normalised actions per chunk (1, K, N, A)
        self._observed = -1  # last chunk whose real observations are in the history
        self._queue: list[np.ndarray] = []
        self._exec_chunk = -1
        self._executed: list[np.ndarray] = []
        self._keyframes: list[dict[str, np.ndarray]] = []  # camera key -> (h, w, 3), one per keyframe
        self._future: Future | None = None
        self._submitted_at = 0  # len(self._executed) when the worker was given the next chunk
        self._generator = torch.Generator(device="cpu").manual_seed(self._seed)
        self.stats = PolicyStats()

    def seed(self, seed: int) -> None:
        """Seed the sampling noise of the following episodes (the rollout loop calls it before reset)."""
        self._seed = int(seed)
        self._generator = torch.Generator(device="cpu").manual_seed(self._seed)

    def report_executed(self, action) -> None:
        """The action the robot really received for the last :meth:`select_action` (after safety clamping)."""
        if self._executed:
            self._executed[-1] = np.asarray(action, dtype=np.float32)

    def _encode_prompt(self, prompt: str) -> torch.Tensor:
        from lbva.inference.bundle import prompt_key

        key = prompt_key(prompt)
        if key in self.prompts:
            return self.prompts[key].to(self.device).reshape(1, *self.prompts[key].shape[-2:])
        return self.text_encoder.encode([prompt]).to(self.device)  # (1, Lt, Dt)

    def _new_session(self, latent_shape):
        C, h, w = latent_shape
        window = inference_window(self.config.inference)
        if self.session_kind == "recompute":
            return RecomputeSession(self.model, self.K, (C, h, w), (self.N, self.A), window=window)
        from lbva.inference.cached_session import CachedSession

        return CachedSession(self.model, self.K, (C, h, w), (self.N, self.A), window=window)

    # ---------------------------------------------------------------------------------------------- frames
    def _views(self, observation: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The camera views (camera key -> (h, w, 3) uint8) of an observation dict."""
        missing = [c.key for c in self.spec.cameras if c.key not in observation]
        if missing:
            raise PolicyError(
                f"observation lacks camera(s) {missing} of embodiment {self.spec.name!r}; got keys {sorted(observation)}"
            )
        views = {c.key: np.asarray(observation[c.key]) for c in self.spec.cameras}
        bad = {k: str(v.dtype) for k, v in views.items() if v.dtype != np.uint8}
        if bad:
            raise PolicyError(f"camera frames must be uint8 (h, w, 3) images; got {bad}: convert them before the policy")
        return views

    def feedback_frames(self, c: int) -> int:
        """Real frames :meth:`observe` takes for chunk c: ``stride`` per latent frame (chunk 0 starts with the
        conditioning frame, already seen)."""
        return (self.K - 1 if c == 0 else self.K) * self.stride

    def _encode_frames(self, frames: Mapping[str, np.ndarray] | np.ndarray, commit: bool = True) -> torch.Tensor:
        """Real frames in episode order -> latents (1, C, F, h, w), F = T / stride (1 for the first frame).

        ``frames``: camera key -> (T, h, w, 3), or tiled frames (T, H, W, 3). Pixel tiling (the default) encodes
        the tiled frame; latent tiling encodes each camera with its own stream and places the latents as
        ``lbva prepare`` did. ``commit=False`` leaves a causal encoder's state as it was (a look ahead)."""
        if self._tile_map is None:
            if isinstance(frames, Mapping):
                frames = self.spec.tile({c.key: np.asarray(frames[c.key]) for c in self.spec.cameras})
            frames = np.asarray(frames, dtype=np.uint8)
            latents = self._vstream[None].encode(frames[None] if frames.ndim == 3 else frames, commit=commit)
        else:
            from lbva.data.prepare import place_latent_views

            if not isinstance(frames, Mapping) and len(self.spec.cameras) == 1:
                frames = {self.spec.cameras[0].key: frames}  # one view: the tiled frame is the view
            if not isinstance(frames, Mapping):
                raise PolicyError(
                    "this policy encodes each camera on its own (data.tile_space=latents): pass frames as a dict "
                    f"camera key -> (k, h, w, 3) for {[c.key for c in self.spec.cameras]}, not tiled frames"
                )
            parts = []
            for cam in self.spec.cameras:
                v = np.asarray(frames[cam.key], dtype=np.uint8)
                parts.append(self._vstream[cam.key].encode(v[None] if v.ndim == 3 else v, commit=commit))
            latents = place_latent_views(parts, self._tile_map)
        latents = latents.to(self.device).float()
        if self.config.inference.video_context == "none":  # ablation: the model never sees the camera
            latents = torch.zeros_like(latents)
        return latents

    # ---------------------------------------------------------------------------------------------- one chunk
    def _frame_sigmas(self, sigma: float, fixed: int) -> torch.Tensor:
        s = torch.full((1, self.K), float(sigma), device=self.device)
        s[:, :fixed] = 0.0
        return s

    @torch.no_grad()
    def _imagine_video(self, c: int, fixed: torch.Tensor | None, fdm: bool = False) -> torch.Tensor:
        """Denoise video chunk c to the stop σ; ``fixed`` (1, C, k, h, w) real frames stay at σ = 0."""
        C, h, w = self._latent_shape
        noise = torch.randn(1, C, self.K, h, w, generator=self._generator).to(self.device)
        return denoise_video(noise, lambda x, sigma, t: self._session.velocity(c, "video", x, sigma, t, fdm=fdm),
                             self.sampler, self._text, self._null, fixed)

    @torch.no_grad()
    def _decode_actions(self, c: int, zero_first: bool) -> torch.Tensor:
        noise = torch.randn(1, self.K, self.N, self.A, generator=self._generator).to(self.device)
        return denoise_actions(noise, lambda x, sigma, t: self._session.velocity(c, "actions", x, sigma, t),
                               self.sampler, self._text, self._null, self.used, zero_frames=1 if zero_first else 0)

    def _predict_chunk(self, c: int, fixed: torch.Tensor | None = None, fdm: bool = False) -> torch.Tensor:
        """Imagine video chunk c, write it, decode its actions, write them; returns (1, K, N, A) normalised."""
        k = 0 if fixed is None else fixed.shape[2]
        video = self._imagine_video(c, fixed, fdm=fdm)
        self._imagined_video[c] = video
        self._session.write(Entry(c, "video", video, self._frame_sigmas(self.sampler.video_stop_sigma, k), True))
        actions = self._decode_actions(c, zero_first=(c == 0))
        self._session.write(Entry(c, "actions", actions, torch.zeros(1, self.K, device=self.device), True))
        self._pending[c] = actions
        return actions

    def _to_native(self, c: int, actions: torch.Tensor) -> np.ndarray:
        """(1, K, N, A) normalised -> (T, D) native; chunk 0 drops its conditioning frame."""
        a = actions[0, 1:] if c == 0 else actions[0]
        slots = self.spec.denormalize_actions(a.reshape(-1, self.A).cpu().numpy())
        return self.spec.slots_to_action(slots).astype(np.float32)

    def _to_model_actions(self, c: int, executed: np.ndarray) -> torch.Tensor:
        executed = np.asarray(executed, dtype=np.float32)
        T = (self.K - 1) * self.N if c == 0 else self.K * self.N
        if executed.shape != (T, self.spec.native_action_dim):
            raise PolicyError(
                f"executed_actions for chunk {c} must have shape ({T}, {self.spec.native_action_dim}) "
                f"(the chunk's actions as sent to the robot); got {executed.shape}"
            )
        slots = self.spec.normalize_actions(self.spec.action_to_slots(executed))
        a = torch.as_tensor(np.asarray(slots), dtype=torch.float32, device=self.device).reshape(-1, self.N, self.A)
        if c == 0:
            a = torch.cat([torch.zeros(1, self.N, self.A, device=self.device), a], 0)
        return a[None] * self.used.view(1, 1, 1, -1)

    # ---------------------------------------------------------------------------------------------- public API
    def predict_action_chunk(self, observation: Mapping[str, Any] | None = None) -> np.ndarray:
        """The next chunk's actions (T, D) in the robot's native format.

        The first call of an episode needs the observation (it conditions chunk 0). Later calls expect
        :meth:`observe` to have fed the previous chunk back; if it was not (an openpi-style client that only
        sends observations), ``observation`` is taken as the real last frame of the previous chunk, the
        executed actions as the predicted ones, and the other frames stay imagined."""
        if self._text is None:
            prompt = None if observation is None else (observation.get("prompt") or observation.get("task"))
            if not prompt:
                raise PolicyError("no prompt: call reset(prompt) first or put 'prompt' in the observation")
            self.reset(str(prompt))
        t0 = time.perf_counter()
        if self._chunk == 0:
            if observation is None:
                raise PolicyError("the first chunk of an episode needs an observation (it conditions the prediction)")
            self._start(observation)
        elif self._observed < self._chunk - 1:
            if observation is None:
                raise PolicyError(
                    f"chunk {self._chunk - 1} was not fed back: call observe(frames, executed_actions) or pass the "
                    "current observation"
                )
            self._observe_last_frame(self._chunk - 1, observation)
        c = self._chunk
        actions = self._predict_chunk(c, fixed=self._cond_latent if c == 0 else None)
        self._chunk += 1
        dt = time.perf_counter() - t0
        self.stats.chunks.append(ChunkTiming(c, dt, dt, "sync"))
        return self._to_native(c, actions)

    def _start(self, observation: Mapping[str, Any]) -> None:
        from lbva.data.encoders import FrameStream

        stream = getattr(self.video_encoder, "stream", None)
        keys = [None] if self._tile_map is None else [c.key for c in self.spec.cameras]
        self._vstream = {k: stream() if stream is not None else FrameStream(self.video_encoder) for k in keys}
        latent = self._encode_frames(self._views(observation))  # (1, C, 1, h, w)
        self._latent_shape = tuple(latent.shape[i] for i in (1, 3, 4))
        self._cond_latent = latent
        self._session = self._new_session(self._latent_shape)
        self._session.set_text(self._text, self._null)

    def observe(self, frames, executed_actions) -> None:
        """Feed back the chunk just executed: its real keyframes and the actions actually sent.

        ``frames``: the tiled frames (k, H, W, 3) uint8, or a dict camera key -> (k, h, w, 3);
        k = :meth:`feedback_frames` (``stride`` per latent frame: one every N / stride actions; chunk 0 has one
        latent frame fewer, its first being the conditioning observation). Replaces the imagined chunk in the
        history."""
        c = self._observed + 1
        if c >= self._chunk:
            raise PolicyError(f"observe() for chunk {c}, but only chunks < {self._chunk} were predicted")
        if isinstance(frames, Mapping):
            missing = [cam.key for cam in self.spec.cameras if cam.key not in frames]
            if missing:
                raise PolicyError(f"observe() frames lack camera(s) {missing}; got keys {sorted(frames)}")
            frames = {cam.key: np.asarray(frames[cam.key], dtype=np.uint8) for cam in self.spec.cameras}
            frames = {key: v[None] if v.ndim == 3 else v for key, v in frames.items()}
            counts = {v.shape[0] for v in frames.values()}
            n = counts.pop() if len(counts) == 1 else None
            if n is None:
                raise PolicyError(f"observe() frames: every camera needs the same number of frames; got "
                                  f"{ {key: v.shape[0] for key, v in frames.items()} }")
        else:
            frames = np.asarray(frames, dtype=np.uint8)
            if frames.ndim == 3:
                frames = frames[None]
            n = frames.shape[0]
        k = self.feedback_frames(c)
        if n != k:
            every = self.N // self.stride
            raise PolicyError(
                f"observe() for chunk {c} needs {k} frames ({self.stride} per latent frame, one after every "
                f"{f'{every} actions' if every > 1 else 'action'}); got {n}"
            )
        latents = self._encode_frames(frames)
        if c == 0:
            latents = torch.cat([self._cond_latent, latents], dim=2)
        self._commit(c, latents, self._to_model_actions(c, executed_actions))

    def _commit(self, c: int, latents: torch.Tensor, actions: torch.Tensor) -> None:
        self._session.drop(c, imagined_only=True)
        self._session.write(Entry(c, "video", latents, torch.zeros(1, self.K, device=self.device), False))
        self._session.write(Entry(c, "actions", actions, torch.zeros(1, self.K, device=self.device), False))
        self._imagined_video.pop(c, None)
        self._pending.pop(c, None)
        self._observed = c

    def _observe_last_frame(self, c: int, observation: Mapping[str, Any]) -> None:
        # only the chunk's last frame is real; a causal encoder sees it held for the latent frame's ``stride``
        # frames (the frames before it were never seen: clients that can should send feedback instead)
        latents = self._imagined_video[c].clone()
        views = {k: np.repeat(v[None], self.stride, axis=0) for k, v in self._views(observation).items()}
        latents[:, :, -1:] = self._encode_frames(views)
        self._commit(c, latents, self._pending[c])

    # ---------------------------------------------------------------------------------------------- LeRobot-style
    def select_action(self, observation: Mapping[str, Any]) -> np.ndarray:
        """One action (D,), refilling the queue chunk by chunk; keyframes and executed actions are fed back
        automatically (every N actions is one latent frame). In the async modes the next chunk is predicted
        by a background worker while this one executes."""
        if self._exec_chunk < 0:  # first call of an episode
            self._queue = list(self.predict_action_chunk(observation))
            self._exec_chunk = 0
            self._executed, self._keyframes = [], []
            self._maybe_submit()
        else:
            if len(self._executed) % (self.N // self.stride) == 0:
                self._keyframes.append(self._views(observation))
            self._maybe_submit()
            if not self._queue:
                self._finish_chunk()
        action = self._queue.pop(0)
        self._executed.append(action)
        return action

    def _finish_chunk(self) -> None:
        c = self._exec_chunk
        frames, executed = self._stack_views(self._keyframes), np.stack(self._executed)
        if self.mode == "sync":
            self.observe(frames, executed)
            self._queue = list(self.predict_action_chunk())
        else:
            t0 = time.perf_counter()
            if self._future is None:  # the worker never started (e.g. fdm with no keyframe yet)
                self._maybe_submit(force=True)
            nxt, latency = self._future.result()
            wait = time.perf_counter() - t0
            self._future = None
            self.observe(frames, executed)  # real chunk c replaces its imagined (or re-imagined) video
            overlap = len(self._executed) - self._submitted_at  # actions sent while the worker predicted c+1
            self.stats.chunks.append(ChunkTiming(c + 1, latency, wait, self.mode, overlap))
            self._queue = list(nxt)
        self._exec_chunk = c + 1
        self._executed, self._keyframes = [], []
        self._maybe_submit()

    def _maybe_submit(self, force: bool = False) -> None:
        if self.mode == "sync" or self._future is not None:
            return
        c = self._exec_chunk
        self._submitted_at = len(self._executed)
        if self.mode == "naive_async":
            self._future = self._worker().submit(self._timed, self._predict_next, c + 1)
        elif len(self._keyframes) >= self.stride or force:
            whole = len(self._keyframes) // self.stride * self.stride  # whole latent frames only
            real = self._stack_views(self._keyframes[:whole]) if whole else None
            sent = np.stack(self._executed + self._queue)  # every action of chunk c is committed to the robot
            self._future = self._worker().submit(self._timed, self._ground_and_predict, c, real, sent)

    def _stack_views(self, keyframes: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {c.key: np.stack([kf[c.key] for kf in keyframes]) for c in self.spec.cameras}  # (k, h, w, 3)

    def _timed(self, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        return out, time.perf_counter() - t0

    def _predict_next(self, c: int) -> np.ndarray:
        actions = self._predict_chunk(c)
        self._chunk = max(self._chunk, c + 1)
        return self._to_native(c, actions)

    def _ground_and_predict(self, c: int, real_frames: dict[str, np.ndarray] | None, sent: np.ndarray) -> np.ndarray:
        """FDM grounding: re-imagine chunk c from its real keyframes so far and the actions sent, then predict c+1."""
        fixed = self._cond_latent if c == 0 else None
        if real_frames is not None:
            lat = self._encode_frames(real_frames, commit=False)  # observe() encodes the whole chunk later
            fixed = lat if fixed is None else torch.cat([fixed, lat], dim=2)
            fixed = fixed[:, :, : self.K]
        self._session.drop(c, imagined_only=True)
        self._session.write(Entry(c, "actions", self._to_model_actions(c, sent), torch.zeros(1, self.K), False))
        k = 0 if fixed is None else fixed.shape[2]
        video = self._imagine_video(c, fixed, fdm=True)
        self._imagined_video[c] = video
        self._session.write(Entry(c, "video", video, self._frame_sigmas(self.sampler.video_stop_sigma, k), True))
        return self._predict_next(c + 1)

    def _worker(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lbva-policy")
        return self._executor

    def _wait_worker(self) -> None:
        fut = getattr(self, "_future", None)
        if fut is not None:
            fut.result()
            self._future = None

    def close(self) -> None:
        self._wait_worker()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
