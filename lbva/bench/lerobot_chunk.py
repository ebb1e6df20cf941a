"""Closed-loop chunk latency of lbva's streaming :class:`~lbva.inference.Policy` against LeRobot's own
``lingbot_va`` policy on the same weights, settings, inputs and noise.

One closed-loop step is what a robot waits for between chunks: feed back the previous chunk (its real keyframes
and executed actions written into the KV cache), imagine the next chunk's video, decode its actions, and return
them in the robot's units. LeRobot does the feedback inside ``predict_action_chunk`` from its keyframe buffer;
lbva in :meth:`~lbva.inference.Policy.observe`. A history of ``n`` chunks is a session past chunk ``n`` whose
cache holds ``n`` chunks (LeRobot's ``attn_window`` = 2n, its released window on the lbva side).

Both sides are a LeRobot-built policy with perturbed random weights, saved by LeRobot and read by lbva's
:func:`~lbva.interop.lerobot.load_lerobot_policy`. The frozen encoders are replaced on both sides by one table
(a frame whose pixels all equal j encodes to ``frames[j]``; one fixed prompt embedding), so the timing covers the
transformer, the cache and the sampling loop. LeRobot draws its noise from the global generator and lbva from its
own, so the initial noise is injected: ``torch.randn`` for the chunk's video and action shapes returns the i-th
draw of one seeded sequence on each side. Every chunk's actions (grown, warm-up and timed) are kept for
:meth:`SideBySide.agreement`, which decides whether a ratio may be reported. Both run on the CPU (the LeRobot
config names device cpu). LeRobot has no public hook for encoders or keyframes given per chunk, so
:class:`LeRobotLoop` sets the private state its ``predict_action_chunk`` reads (``_frozen``, the prompt embeddings,
``_encode_frames``, ``_obs_buffer``): a LeRobot release that renames them makes this key fail or refuse its ratio.

Axis legend: C latent channels, K latent frames per chunk, h/w latent height/width, N actions per latent frame,
A = 30 action slots.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import numpy as np
import torch

EMBODIMENT = "metaworld-sawyer"  # one 64×64 camera, K = 2, N = 4, native (dx, dy, dz, gripper) -> slots 0, 1, 2, 28
CAMERA = "observation.images.corner"
C, K, N, A, LATENT_HW = 48, 2, 4, 30, 4  # 64×64 frames, spatial stride 16
USED_SLOTS = [0, 1, 2, 28]
FRAMES = 64  # distinct encoded frames; frame ids wrap around
TOLERANCE = dict(rtol=1e-4, atol=1e-4)  # LeRobot rotates in float64, lbva in float32
# both sides' sampling settings: CFG on both streams, partial video denoising, shifted schedules
SAMPLING = dict(guidance_scale=2.0, action_guidance_scale=1.5, num_inference_steps=4, video_exec_step=3,
                action_num_inference_steps=3, snr_shift=3.0, action_snr_shift=0.5)
TEXT_DIM, TEXT_TOKENS = 64, 7  # the text width of lbva's tiny and small presets


def preset_transformer(size: str) -> dict:
    """The transformer shape of lbva's ``size`` preset (``tiny``, ``small``), in LeRobot's config fields; the
    latent channels stay LeRobot's 48."""
    from lbva.config.model import SIZES

    dims = ("num_layers", "num_attention_heads", "attention_head_dim", "ffn_dim", "freq_dim")
    return {d: getattr(SIZES[size], d) for d in dims}


class FrameTable:
    """The frozen VAE on both sides: a frame whose pixels all equal j encodes to ``table[j]``."""

    temporal_stride = 1
    latent_channels = C
    spatial_stride = 16

    def __init__(self, table: torch.Tensor):
        self.table = table  # (FRAMES, C, h, w)

    def encode(self, frames) -> torch.Tensor:  # uint8 (1, T, H, W, 3) -> (1, C, T, h, w)
        ids = torch.as_tensor(frames)[0, :, 0, 0, 0].long()
        return self.table[ids].permute(1, 0, 2, 3)[None].clone()

    def encode_lerobot(self, raw: list[dict]) -> torch.Tensor:  # LeRobot's keyframes, floats j / 255
        ids = [round(float(fb[CAMERA].flatten()[0]) * 255) for fb in raw]
        return torch.cat([self.table[j][None, :, None] for j in ids], 2)


class PromptTable:
    """The frozen text encoder on the lbva side: fixed embeddings per prompt."""

    max_length = TEXT_TOKENS

    def __init__(self, table: dict[str, torch.Tensor]):
        self.table, self.dim = table, TEXT_DIM

    def encode(self, texts: list[str]) -> torch.Tensor:
        return torch.cat([self.table[t] for t in texts])


class InjectedNoise:
    """``torch.randn`` for the chunk's initial noise, the i-th video (action) draw the same on every side."""

    def __init__(self, seed: int):
        self.seed, self.counts = seed, {}

    def _draw(self, randn, kind: str, side: str, shape) -> torch.Tensor:
        n = self.counts[side, kind] = self.counts.get((side, kind), -1) + 1
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + 2 * n + (kind == "actions"))
        return randn(*shape, generator=g)

    @contextlib.contextmanager
    def drawing_for(self, side: str):
        real = torch.randn

        def randn(*shape, **kw):
            shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
            if shape == (1, C, K, LATENT_HW, LATENT_HW):
                return self._draw(real, "video", side, shape)
            if shape == (1, K, N, A):
                return self._draw(real, "actions", side, shape)
            if shape == (1, A, K, N, 1):  # LeRobot's action layout
                return self._draw(real, "actions", side, (1, K, N, A)).permute(0, 3, 1, 2)[..., None].contiguous()
            return real(*shape, **kw)

        torch.randn = randn
        try:
            yield
        finally:
            torch.randn = real


def keyframes(c: int) -> list[int]:
    """Frame ids of chunk c's real keyframes: frame 1 after the conditioning frame 0, then two per chunk."""
    return [1] if c == 0 else [(2 * c) % FRAMES, (2 * c + 1) % FRAMES]


def save_lerobot_policy(out: Path, arch: dict, history: int, seed: int = 0):
    """A LeRobot-built lingbot_va policy on metaworld-sawyer (:func:`save_random_lerobot_policy`); returns it with
    its postprocessor."""
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.lingbot_va import LingBotVAConfig

    cfg = LingBotVAConfig(
        **arch, **SAMPLING, text_dim=TEXT_DIM, in_channels=C, out_channels=C, dtype="float32", device="cpu",
        obs_cam_keys=[CAMERA], camera_layout="width_concat", height=64, width=64, action_per_frame=N,
        frame_chunk_size=K, used_action_channel_ids=USED_SLOTS, attn_window=2 * history,
        input_features={CAMERA: PolicyFeature(type=FeatureType.VISUAL, shape=(3, 64, 64))},
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(len(USED_SLOTS),))})
    policy, post = save_random_lerobot_policy(out, cfg, torch.tensor([-0.5, -1.0, 0.2, 1.0]),
                                              torch.tensor([0.5, 2.0, 0.9, -1.0]), seed)
    return policy.eval(), post


def save_random_lerobot_policy(out: Path, cfg, q01: torch.Tensor, q99: torch.Tensor, seed: int):
    """LeRobot builds a lingbot_va policy from ``cfg``, every transformer weight is perturbed (no identity
    initialisation hides a mis-mapped tensor), and LeRobot saves it with processors holding the action q01/q99;
    returns the policy and its postprocessor."""
    from lerobot.policies.lingbot_va import LingBotVAPolicy, make_lingbot_va_pre_post_processors

    torch.manual_seed(seed)
    policy = LingBotVAPolicy(cfg)
    with torch.no_grad():
        for p in policy.transformer.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    policy.save_pretrained(out)
    pre, post = make_lingbot_va_pre_post_processors(cfg, {"action": {"q01": q01, "q99": q99}})
    pre.save_pretrained(out)
    post.save_pretrained(out)
    return policy, post


class LeRobotLoop:
    """LeRobot's policy in closed loop: keyframes buffered, then ``predict_action_chunk`` feeds them back."""

    def __init__(self, policy, post, frames: FrameTable, text: torch.Tensor, null: torch.Tensor):
        from types import SimpleNamespace

        self.policy, self.post = policy, post
        policy._frozen = {"streaming_vae": SimpleNamespace(clear_cache=lambda: None)}  # no VAE to load or reset
        policy.reset()
        policy._prompt_embeds, policy._negative_prompt_embeds = text.clone(), null.clone()
        policy._encode_frames = frames.encode_lerobot
        self.chunk = 0

    @staticmethod
    def _batch(j: int) -> dict[str, torch.Tensor]:
        return {CAMERA: torch.full((1, 3, 64, 64), j / 255.0)}

    def step(self) -> np.ndarray:
        if self.chunk == 0:
            actions = self.policy.predict_action_chunk(self._batch(0))
        else:
            self.policy._obs_buffer = [self._batch(j) for j in keyframes(self.chunk - 1)]
            actions = self.policy.predict_action_chunk(None)
        self.chunk += 1
        return self.post(actions)[0].numpy()


class LbvaLoop:
    """lbva's Policy in closed loop: ``observe`` feeds the previous chunk back, then ``predict_action_chunk``."""

    def __init__(self, policy):
        self.policy, self.chunk, self.last = policy, 0, None
        policy.reset("bench")

    @staticmethod
    def _frame(j: int) -> np.ndarray:
        return np.full((64, 64, 3), j, dtype=np.uint8)

    def step(self) -> np.ndarray:
        if self.chunk == 0:
            self.last = self.policy.predict_action_chunk({CAMERA: self._frame(0)})
        else:
            self.policy.observe(np.stack([self._frame(j) for j in keyframes(self.chunk - 1)]), self.last)
            self.last = self.policy.predict_action_chunk()
        self.chunk += 1
        return self.last


def lbva_policy(folder: Path, frames: FrameTable, prompts: PromptTable):
    """lbva's Policy on the LeRobot folder, as ``lbva`` loads it (weights, window and sampling from its config)."""
    from lbva.embodiment import get_embodiment
    from lbva.inference import Policy
    from lbva.interop.lerobot import load_lerobot_policy

    bundle = load_lerobot_policy(folder, embodiment=EMBODIMENT, encoders=False)
    return Policy(bundle.model, get_embodiment(EMBODIMENT), frames, prompts, bundle.config, stats=bundle.stats)


class SideBySide:
    """lbva's and LeRobot's closed loops for one history length, on one LeRobot folder, with one noise sequence;
    every chunk's actions are kept for :meth:`agreement`."""

    def __init__(self, history: int, quick: bool, seed: int = 0, compiled: bool = False):
        g = torch.Generator().manual_seed(seed)
        frames = FrameTable(torch.randn(FRAMES, C, LATENT_HW, LATENT_HW, generator=g))
        text, null = torch.randn(1, TEXT_TOKENS, TEXT_DIM, generator=g), torch.zeros(1, TEXT_TOKENS, TEXT_DIM)
        text[:, 5:] = 0  # a shorter prompt, zero-padded like umT5's
        self.history, self.size = history, "tiny" if quick else "small"
        self.arch = preset_transformer(self.size)
        with tempfile.TemporaryDirectory() as tmp:
            lr_policy, post = save_lerobot_policy(Path(tmp), self.arch, history, seed)
            policy = lbva_policy(Path(tmp), frames, PromptTable({"bench": text, "": null}))
            if compiled:  # lbva's ``model.compile``: the blocks' per-token parts through torch.compile
                from dataclasses import replace

                policy.model.config = replace(policy.model.config, compile=True)
            self.loops = {"lbva": LbvaLoop(policy), "lerobot": LeRobotLoop(lr_policy, post, frames, text, null)}
        self.compiled = compiled
        self.noise = InjectedNoise(seed)
        self.outputs: dict[str, list[np.ndarray]] = {side: [] for side in self.loops}

    def _step(self, side: str) -> None:
        with self.noise.drawing_for(side), torch.no_grad():
            self.outputs[side].append(self.loops[side].step())

    def step_lbva(self) -> None:
        self._step("lbva")

    def step_lerobot(self) -> None:
        self._step("lerobot")

    def grow(self) -> None:
        """Both loops past chunk ``history``: from there on each cache holds ``history`` chunks."""
        for _ in range(self.history + 1):
            self.step_lbva(), self.step_lerobot()

    def agreement(self) -> dict:
        """Whether every chunk's actions so far agree within :data:`TOLERANCE`, and by how much they differ."""
        pairs = list(zip(self.outputs["lbva"], self.outputs["lerobot"], strict=True))
        equal = all(a.shape == b.shape and np.allclose(a, b, **TOLERANCE) for a, b in pairs)
        diff = max(float(np.abs(a - b).max()) if a.shape == b.shape else float("inf") for a, b in pairs)
        return {"outputs_equal": equal, "max_abs_difference": diff, "chunks_compared": len(pairs),
                "tolerance": TOLERANCE, "cache_chunks": self.history, "size": self.size, "device": "cpu",
                "compiled": self.compiled}
