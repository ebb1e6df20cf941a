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
actions.

``Policy`` is the facade over four parts (docs/architecture.md, "The deployed policy"):
:class:`~lbva.inference.observations.ObservationEncoder` (camera views -> latents),
:class:`~lbva.inference.action_codec.ActionCodec` (native actions <-> normalised slots),
:class:`~lbva.inference.predictor.ChunkPredictor` (the history session, chunk prediction, FDM grounding) and
:class:`~lbva.inference.runner.ActionRunner` (``select_action``'s queue, the async worker, the timings).

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

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from lbva.inference.action_codec import ActionCodec
from lbva.inference.errors import PolicyError
from lbva.inference.observations import ObservationEncoder
from lbva.inference.predictor import ChunkPredictor
from lbva.inference.runner import ActionRunner, ChunkTiming, PolicyStats
from lbva.models.attention import AttentionWindow
from lbva.objectives.sampler import SamplerConfig

MODES = ("sync", "naive_async", "fdm_async")


def inference_window(inference) -> AttentionWindow:
    """The attention window an ``inference`` config section names (shared by the mask and the KV cache)."""
    return AttentionWindow(inference.window, int(inference.window_size))


class Policy:
    """A world-model policy for one embodiment; one instance is one session (see :meth:`new_session`)."""

    def __init__(self, model, spec, video_encoder, text_encoder, config, *, stats=None, prompts=None,
                 device: str = "cpu", session: str = "cached"):
        self.model = model.eval()
        if hasattr(model, "inference_layout"):
            model.inference_layout()  # the CPU's fast weight layout for few-row calls (values unchanged)
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
        inf = config.inference
        if inf.mode not in MODES:
            raise PolicyError(f"inference.mode {inf.mode!r} is not one of {MODES}")
        self.mode = inf.mode
        self.K = int(self.spec.chunk_frames)
        self.N = int(self.spec.actions_per_frame)
        self.A = int(model.config.action_dim)
        self.observations = ObservationEncoder(self.spec, video_encoder, self.device,
                                               tile_space=getattr(config.data, "tile_space", "pixels"),
                                               video_context=inf.video_context)
        self.stride = self.observations.stride  # video frames per latent frame
        if self.N % self.stride:
            raise PolicyError(
                f"embodiment {self.spec.name!r} has {self.N} actions per latent frame, not a multiple of the video "
                f"encoder's temporal stride {self.stride}: a keyframe must fall every N / stride actions"
            )
        self.codec = ActionCodec(self.spec, self.K, self.N, self.A, self.device)
        self.predictor = ChunkPredictor(self.model, SamplerConfig.from_config(config), self.K, self.N, self.A,
                                        self.codec.used, inference_window(inf), self.device, session)
        self._seed = int(inf.seed)
        self._prompt: str | None = None
        self._text: torch.Tensor | None = None
        self._null: torch.Tensor | None = None
        self.runner = ActionRunner(self)
        self.reset(None)

    @property
    def stats(self) -> PolicyStats:
        """This episode's chunk timings."""
        return self.runner.stats

    # ---------------------------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, path, embodiment: str | None = None, device: str = "cpu", wan_path=None,
                        **overrides) -> Policy:
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

    def new_session(self, **overrides) -> Policy:
        """A fresh session sharing this policy's weights and encoders (what the server gives each client)."""
        from dataclasses import replace

        config = self.config if not overrides else replace(self.config, inference=replace(self.config.inference, **overrides))
        return Policy(self.model, self.spec, self.video_encoder, self.text_encoder, config, prompts=self.prompts,
                      device=str(self.device), session=self.session_kind)

    # ---------------------------------------------------------------------------------------------- session
    def reset(self, prompt: str | None = None) -> None:
        """Start a new episode (a new prompt, an empty history)."""
        self.runner.reset()
        if prompt is None or prompt != self._prompt or self._text is None:
            self._text = None if prompt is None else self._encode_prompt(prompt)
            self._null = None if prompt is None else self._encode_prompt("")
        # else: the same instruction again (a server starts an episode per openpi request): same embeddings
        self._prompt = prompt
        self.predictor.reset(self._seed)

    def seed(self, seed: int) -> None:
        """Seed the sampling noise of the following episodes (the rollout loop calls it before reset)."""
        self._seed = int(seed)
        self.predictor.reseed(self._seed)

    def report_executed(self, action) -> None:
        """The action the robot really received for the last :meth:`select_action` (after safety clamping)."""
        self.runner.report_executed(action)

    def _encode_prompt(self, prompt: str) -> torch.Tensor:
        from lbva.inference.bundle import prompt_key

        key = prompt_key(prompt)
        if key in self.prompts:
            return self.prompts[key].to(self.device).reshape(1, *self.prompts[key].shape[-2:])
        return self.text_encoder.encode([prompt]).to(self.device)  # (1, Lt, Dt)

    def feedback_frames(self, c: int) -> int:
        """Real frames :meth:`observe` takes for chunk c: ``stride`` per latent frame (chunk 0 starts with the
        conditioning frame, already seen)."""
        return (self.K - 1 if c == 0 else self.K) * self.stride

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
        p = self.predictor
        if p.next_chunk == 0:
            if observation is None:
                raise PolicyError("the first chunk of an episode needs an observation (it conditions the prediction)")
            self.observations.start()
            p.start(self.observations.encode(self.observations.views(observation)), self._text, self._null)
        elif p.observed < p.next_chunk - 1:
            if observation is None:
                raise PolicyError(
                    f"chunk {p.next_chunk - 1} was not fed back: call observe(frames, executed_actions) or pass the "
                    "current observation"
                )
            self._observe_last_frame(p.next_chunk - 1, observation)
        c = p.next_chunk
        actions = p.predict(c, fixed=p.cond_latent if c == 0 else None)
        dt = time.perf_counter() - t0
        self.stats.chunks.append(ChunkTiming(c, dt, dt, "sync"))
        return self.codec.to_native(c, actions)

    def observe(self, frames, executed_actions) -> None:
        """Feed back the chunk just executed: its real keyframes and the actions actually sent.

        ``frames``: the tiled frames (k, H, W, 3) uint8, or a dict camera key -> (k, h, w, 3);
        k = :meth:`feedback_frames` (``stride`` per latent frame: one every N / stride actions; chunk 0 has one
        latent frame fewer, its first being the conditioning observation). Replaces the imagined chunk in the
        history."""
        p = self.predictor
        c = p.observed + 1
        if c >= p.next_chunk:
            raise PolicyError(f"observe() for chunk {c}, but only chunks < {p.next_chunk} were predicted")
        frames, n = self.observations.clip(frames)
        k = self.feedback_frames(c)
        if n != k:
            every = self.N // self.stride
            raise PolicyError(
                f"observe() for chunk {c} needs {k} frames ({self.stride} per latent frame, one after every "
                f"{f'{every} actions' if every > 1 else 'action'}); got {n}"
            )
        latents = self.observations.encode(frames)
        if c == 0:
            latents = torch.cat([p.cond_latent, latents], dim=2)
        p.commit(c, latents, self.codec.to_model(c, executed_actions))

    def _observe_last_frame(self, c: int, observation: Mapping[str, Any]) -> None:
        # only the chunk's last frame is real; a causal encoder sees it held for the latent frame's ``stride``
        # frames (the frames before it were never seen: clients that can should send feedback instead)
        latents = self.predictor.imagined_video[c].clone()
        views = {k: np.repeat(v[None], self.stride, axis=0) for k, v in self.observations.views(observation).items()}
        latents[:, :, -1:] = self.observations.encode(views)
        self.predictor.commit(c, latents, self.predictor.pending[c])

    # ---------------------------------------------------------------------------------------------- LeRobot-style
    def select_action(self, observation: Mapping[str, Any]) -> np.ndarray:
        """One action (D,), refilling the queue chunk by chunk; keyframes and executed actions are fed back
        automatically (every N actions is one latent frame). In the async modes the next chunk is predicted
        by a background worker while this one executes."""
        return self.runner.select(observation)

    def close(self) -> None:
        """Wait for the background worker and stop it."""
        self.runner.close()
