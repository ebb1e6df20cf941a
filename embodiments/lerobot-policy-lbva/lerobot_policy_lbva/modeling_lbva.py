"""``LBVAPolicy``: lbva's world model, objective and streaming Policy behind LeRobot's ``PreTrainedPolicy``.

Axis legend: B batch, T video frames, C latent channels, F latent frames, h/w latent pixels, N actions per latent
frame, D native action dims, A = 30 unified slots, Lt/Dt text tokens/width.

* Training (``forward``): a LeRobot batch holds raw camera clips (B, T, 3, H, W) in [0, 1] and normalised actions
  (B, (F − 1)·N, D). The frozen video encoder turns the clips into latents (B, C, F, h, w) — lbva's embedded VAE
  (trained on the dataset's own frames when the policy is created, stored in the checkpoint) or the Wan2.2 VAE
  from a local folder — the text encoder turns ``task`` into (B, Lt, Dt), the actions go into their slots
  (frame 0 conditions and carries none), and :class:`lbva.objectives.FlowMatchingObjective` gives the loss.
* Inference (``select_action`` / ``predict_action_chunk``): each batch row is one :class:`lbva.inference.Policy`
  session (KV cache, keyframe feedback, sync / async modes) on the model-space embodiment (``robot.py``); actions
  come out normalised and LeRobot's postprocessor maps them back.
* Saving: LeRobot's folder (``config.json``, ``model.safetensors`` with the transformer and the embedded encoders)
  and, for a registered embodiment, lbva's policy layout beside it (``export_lbva``), so lbva loads the folder.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lerobot.configs.types import NormalizationMode
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.utils.constants import ACTION
from torch import Tensor

from lerobot_policy_lbva.configuration_lbva import LBVAConfig
from lerobot_policy_lbva.robot import PluginRobot

logger = logging.getLogger(__name__)


class LBVAPolicy(PreTrainedPolicy):
    """An lbva world-model policy with LeRobot's interface (see the module docstring)."""

    config_class = LBVAConfig
    name = "lbva"

    def __init__(self, config: LBVAConfig, dataset_stats: dict | None = None, dataset_meta=None, **kwargs):
        from lbva.data.encoders import EmbeddedTextEncoder
        from lbva.models import build_model
        from lbva.objectives import FlowMatchingObjective

        super().__init__(config)
        config.validate_features()
        self.config = config
        self.robot = PluginRobot.from_config(config)
        data = config.data
        # Frozen encoders loaded from local folders (Wan2.2 VAE, umT5) live outside the module: not saved with the
        # policy, not moved by .to(); the small embedded ones are submodules, so the checkpoint carries them.
        self._frozen: dict[str, Any] = {}
        self.video_vae = self._embedded_vae(dataset_meta) if data.encoder == "embedded" else None
        self.text_net = None
        if _text_kind(data) == "embedded":
            self.text_net = EmbeddedTextEncoder(data.embedded_text_dim, data.embedded_text_max_length,
                                                data.embedded_text_seed).net.requires_grad_(False)
        self._match_encoders()
        self.model = build_model(config.model)
        self.objective = FlowMatchingObjective(config.objective)
        # The native action values LeRobot's normaliser maps to -1 and +1 (D,), for lbva's slot statistics.
        dim = len(self.robot.slots)
        self.register_buffer("action_norm_low", torch.full((dim,), float("nan")))
        self.register_buffer("action_norm_high", torch.full((dim,), float("nan")))
        if dataset_stats is not None and ACTION in dataset_stats:
            self.set_action_stats(dataset_stats[ACTION])
        self._prompts: dict[str, Tensor] = {}  # task text -> (Lt, Dt) embedding, on the CPU
        self._sessions: list = []
        self.reset()

    def set_action_stats(self, stats: dict) -> None:
        """Record the native values LeRobot's processors normalise the actions to −1 and +1 with (the dataset's
        statistics under ``normalization_mapping["ACTION"]``)."""
        low, high = action_bounds(stats, self.config.normalization_mapping.get("ACTION"))
        if low.shape != tuple(self.action_norm_low.shape):
            raise ValueError(f"action statistics have {low.shape[0]} dims; the policy's action has "
                             f"{self.action_norm_low.shape[0]}")
        self.action_norm_low.copy_(torch.as_tensor(low))
        self.action_norm_high.copy_(torch.as_tensor(high))

    # ------------------------------------------------------------------------------------------------ encoders
    def _embedded_vae(self, dataset_meta):
        """The embedded VAE: trained on the dataset (fresh training), from ``data.vae_path``, or rebuilt from the
        config for a saved policy (its weights then come from the checkpoint)."""
        from lbva.data.embedded_vae import EmbeddedVAE

        cfg = self.config
        fresh = dataset_meta is not None and cfg.pretrained_path is None
        if cfg.data.vae_path and (fresh or cfg.embedded_vae is None):
            vae = EmbeddedVAE.from_pretrained(cfg.data.vae_path)
        elif fresh:
            vae = self._train_embedded_vae(dataset_meta)
        elif cfg.embedded_vae is not None:
            vae = EmbeddedVAE(replace(cfg.embedded_vae))
        else:
            raise ValueError(
                "data.encoder=embedded needs a trained embedded VAE: train the policy on a dataset (lerobot-train "
                "trains one on its frames), load a saved policy, or set --policy.data.vae_path to an embedded VAE folder"
            )
        cfg.embedded_vae = vae.config  # saved in config.json: the architecture and latent statistics
        return vae.requires_grad_(False).eval()

    def _train_embedded_vae(self, dataset_meta):
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        from lbva.data.embedded_vae import train_embedded_vae

        data = self.config.data
        dataset = LeRobotDataset(dataset_meta.repo_id, root=dataset_meta.root)
        picks = np.unique(np.linspace(0, len(dataset) - 1, num=min(data.embedded_vae_frames, len(dataset))).round())
        frames = []
        for i in picks.astype(int).tolist():
            item = dataset[i]
            frames.append(self.robot.tile(self.robot.views({k: item[k][None] for k in self.robot.camera_keys}))[0])
        logger.info("training the embedded VAE on %d frames of %s (%d steps)", len(frames), dataset_meta.repo_id,
                    data.embedded_vae_steps)
        arch = self.config.embedded_vae  # --policy.embedded_vae.hidden=... picks the architecture; stats are measured
        arch = None if arch is None else replace(arch, latents_mean=[], latents_std=[])
        return train_embedded_vae(np.stack(frames), steps=data.embedded_vae_steps, batch_size=data.embedded_vae_batch,
                                  seed=self.config.inference.seed, config=arch, progress=False)

    def _match_encoders(self) -> None:
        """The model's input widths follow the encoders (an explicit different value is an error), and the video
        encoder's temporal stride is the one the delta indices assumed."""
        cfg, data = self.config, self.config.data
        if data.encoder == "embedded":
            channels = self.video_vae.config.latent_channels
        else:
            encoder = self._video_encoder()
            channels = int(encoder.latent_channels)
            if int(encoder.temporal_stride) != cfg.temporal_stride:
                raise ValueError(
                    f"the video encoder at data.vae_path={data.vae_path!r} has temporal stride {encoder.temporal_stride}; "
                    f"the lbva LeRobot policy takes data.encoder={data.encoder!r} to have {cfg.temporal_stride} (the "
                    "Wan2.2 VAE's): point --policy.data.vae_path at a Wan2.2 VAE folder"
                )
        text_dim = data.embedded_text_dim if _text_kind(data) == "embedded" else int(self._text_encoder().dim)
        for name, value in (("in_channels", channels), ("text_dim", text_dim)):
            mine = getattr(cfg.model, name)
            if mine is not None and mine != value:
                raise ValueError(f"--policy.model.{name}={mine} does not match the encoder's {value}; leave it unset")
        cfg.model = replace(cfg.model, in_channels=channels, text_dim=text_dim)

    def _video_encoder(self):
        if "video" not in self._frozen:
            from lbva.data.encoders import EmbeddedVideoEncoder, build_video_encoder

            device = str(self.config.device)
            if self.video_vae is not None:
                self._frozen["video"] = EmbeddedVideoEncoder(self.video_vae, device=device)
            else:
                self._frozen["video"] = build_video_encoder(replace(self.config.data, device=device))
        return self._frozen["video"]

    def _text_encoder(self):
        if "text" not in self._frozen:
            from lbva.data.encoders import EmbeddedTextEncoder, build_text_encoder

            data = self.config.data
            if self.text_net is not None:
                # A CPU copy carrying the saved weights: the encoder keeps its position table on the CPU.
                enc = EmbeddedTextEncoder(data.embedded_text_dim, data.embedded_text_max_length, data.embedded_text_seed)
                enc.net.load_state_dict({k: v.cpu() for k, v in self.text_net.state_dict().items()})
                self._frozen["text"] = enc
            else:
                self._frozen["text"] = build_text_encoder(replace(data, device=str(self.config.device)))
        return self._frozen["text"]

    def _embed_tasks(self, tasks: list[str]) -> Tensor:
        """(B, Lt, Dt) text embeddings on the policy's device, each distinct task encoded once."""
        new = sorted({t for t in tasks if t not in self._prompts})
        if new:
            for text, emb in zip(new, self._text_encoder().encode(new).float().cpu()):
                self._prompts[text] = emb
        return torch.stack([self._prompts[t] for t in tasks]).to(self.config.device)

    # ------------------------------------------------------------------------------------------------ training
    def get_optim_params(self) -> list[dict]:
        from lbva.training.optim import param_groups

        return param_groups(self.model, self.config.optimizer_weight_decay)  # the encoders stay frozen

    def forward(self, batch: dict[str, Any], reduction: str = "mean") -> tuple[Tensor, dict]:
        """The flow-matching training loss of a LeRobot batch (see the module docstring)."""
        if reduction != "mean":
            raise ValueError(f"the lbva policy returns the batch's mean loss only; got reduction={reduction!r} "
                             "(per-sample weighting is not supported: drop --sample_weighting)")
        inputs = self.training_inputs(batch)
        self.objective.null_text = self._embed_tasks([""])[0]  # what text dropout puts in (classifier-free guidance)
        out = self.objective(self.model, inputs)
        return out.loss, {k: float(v) for k, v in out.terms.items() if k != "loss"}

    @torch.no_grad()
    def training_inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        """lbva's training batch for a LeRobot batch: ``video`` (B, C, F, h, w), ``actions`` and ``action_mask``
        (B, F, N, A), ``text`` (B, Lt, Dt) and a ``chunk_size`` drawn from ``data.chunk_sizes``."""
        video = self.encode_clips(batch)
        B, _, F, _, _ = video.shape
        actions, mask = self._slot_actions(batch, F)
        tasks = batch.get("task")
        if tasks is None:
            raise KeyError("the batch lacks 'task' (the instruction text lbva conditions on)")
        tasks = [tasks] * B if isinstance(tasks, str) else list(tasks)
        sizes = [k for k in self.config.data.chunk_sizes if k <= F] or [1]
        chunk = sizes[int(torch.randint(len(sizes), ()))]
        return {"video": video, "actions": actions, "action_mask": mask, "text": self._embed_tasks(tasks),
                "chunk_size": chunk}

    @torch.no_grad()
    def encode_clips(self, batch: dict[str, Any]) -> Tensor:
        """Camera clips (B, T, 3, H, W) in [0, 1], T = (F − 1)·s + 1 -> normalised latents (B, C, F, h, w)."""
        cfg = self.config
        F = cfg.data.window_frames
        want = (F - 1) * cfg.temporal_stride + 1
        for key in self.robot.camera_keys:
            pad = batch.get(f"{key}_is_pad")
            if pad is not None and bool(pad.any()):
                raise ValueError(
                    f"{key}: the batch has padded frames past an episode's end; lbva trains on whole windows of "
                    f"{F} latent frames (LeRobot's sampler skips the last {cfg.drop_n_last_frames} rows of each episode "
                    "for this policy: train with lerobot-train, or drop such windows)"
                )
            got = batch[key].shape[1] if torch.is_tensor(batch.get(key)) and batch[key].ndim == 5 else None
            if got != want:
                raise ValueError(
                    f"{key}: lbva trains on clips of {want} frames (data.window_frames={F} latent frames, temporal "
                    f"stride {cfg.temporal_stride}); got {got}. The policy's observation_delta_indices ask the dataset "
                    "for them"
                )
        views = self.robot.views(batch, frames=True)  # key -> (B, T, h, w, 3) uint8
        encoder = self._video_encoder()
        if cfg.data.tile_space == "latents":
            from lbva.data.prepare import latent_tile_map, place_latent_views

            tile_map = latent_tile_map(self.robot.spec, int(encoder.spatial_stride))
            parts = [encoder.encode(views[cam.key].cpu()) for cam in self.robot.spec.cameras]
            latents = place_latent_views(parts, tile_map)
        else:
            latents = encoder.encode(self.robot.tile(views))
        return latents.float().to(cfg.device)

    def _slot_actions(self, batch: dict[str, Any], F: int) -> tuple[Tensor, Tensor]:
        """Normalised native actions (B, (F − 1)·N, D) -> slots (B, F, N, A) and the loss mask (B, F, N, A)."""
        cfg = self.config
        N, A = cfg.actions_per_frame, cfg.model.action_dim
        a = batch[ACTION]
        if a.ndim != 3 or a.shape[1] != (F - 1) * N or a.shape[2] != len(self.robot.slots):
            raise ValueError(
                f"{ACTION}: expected (B, {(F - 1) * N}, {len(self.robot.slots)}) — (F − 1)·N actions of the window; "
                f"got {tuple(a.shape)}"
            )
        B = a.shape[0]
        valid = torch.ones(B, (F - 1) * N, dtype=torch.bool, device=a.device)
        pad = batch.get(f"{ACTION}_is_pad")
        if pad is not None:
            valid = ~pad.to(a.device).bool()
        slots = torch.as_tensor(self.robot.slots, device=a.device)
        actions = torch.zeros(B, F, N, A, device=a.device)
        actions[:, 1:, :, slots] = a.float().reshape(B, F - 1, N, -1)
        mask = torch.zeros(B, F, N, A, dtype=torch.bool, device=a.device)
        mask[:, 1:, :, slots] = valid.reshape(B, F - 1, N, 1)
        return actions * mask, mask

    # ------------------------------------------------------------------------------------------------ inference
    def reset(self) -> None:
        """A new episode for every session; the prompt comes from the next batch's ``task``."""
        for session in self._sessions:
            session.reset(None)

    def _session_list(self, batch_size: int) -> list:
        """One lbva Policy session per batch row, sharing the weights (row i samples with seed + i)."""
        if len(self._sessions) != batch_size:
            from lbva.inference import Policy

            for s in self._sessions:
                s.close()
            first = Policy(self.model, self.robot.spec, self._video_encoder(), self._text_encoder(),
                           self.config.lbva_config(), device=str(self.config.device))
            seed = self.config.inference.seed
            self._sessions = [first] + [first.new_session(seed=seed + i) for i in range(1, batch_size)]
        return self._sessions

    def _observations(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """A LeRobot batch -> one lbva observation per row (uint8 views keyed by the model-space spec, the task)."""
        views = {k: v.cpu().numpy() for k, v in self.robot.views(batch).items()}  # key -> (B, h, w, 3)
        B = next(iter(views.values())).shape[0]
        tasks = batch.get("task")
        tasks = [tasks] * B if isinstance(tasks, str) or tasks is None else list(tasks)
        if not all(tasks):
            raise ValueError(
                f"the lbva policy conditions on the task text, and the batch's 'task' is {batch.get('task')!r}: give "
                "lerobot-rollout --task=..., or use an env whose task_description names the task"
            )
        return [{**{k: v[b] for k, v in views.items()}, "task": tasks[b]} for b in range(B)]

    def select_action(self, batch: dict[str, Any], **kwargs) -> Tensor:
        """One normalised action per row (B, D): each session queues its chunk and feeds observed keyframes and the
        executed actions back itself (see docs/lerobot.md for how this maps onto LeRobot's loop)."""
        obs = self._observations(batch)
        # LeRobot calls this under inference_mode; the async modes write the KV cache from a worker thread,
        # where inference tensors may not be updated in place, so the sessions run in plain no-grad mode.
        with torch.inference_mode(False), torch.no_grad():
            actions = [s.select_action(o) for s, o in zip(self._session_list(len(obs)), obs)]
        return torch.as_tensor(np.stack(actions), dtype=torch.float32, device=self.config.device)

    def predict_action_chunk(self, batch: dict[str, Any], **kwargs) -> Tensor:
        """The next chunk per row (B, T, D), normalised: T = (K − 1)·N for an episode's first chunk, K·N after.
        Later calls take the batch as the real last frame of the previous chunk (lbva's ``Policy`` contract)."""
        obs = self._observations(batch)
        with torch.inference_mode(False), torch.no_grad():
            chunks = [s.predict_action_chunk(o) for s, o in zip(self._session_list(len(obs)), obs)]
        return torch.as_tensor(np.stack(chunks), dtype=torch.float32, device=self.config.device)

    # ------------------------------------------------------------------------------------------------ saving
    @classmethod
    def from_pretrained(cls, pretrained_name_or_path, *, dataset_stats: dict | None = None, **kwargs) -> LBVAPolicy:
        policy = super().from_pretrained(pretrained_name_or_path, dataset_stats=dataset_stats, **kwargs)
        if dataset_stats is not None and ACTION in dataset_stats:
            # Fine-tuning on a dataset: LeRobot's processors now normalise with its statistics, so lbva's must follow.
            policy.set_action_stats(dataset_stats[ACTION])
        return policy

    @classmethod
    def _load_as_safetensor(cls, model, model_file: str, map_location: str, strict: bool):
        # LeRobot loads non-strictly by default; a missing key here would silently leave random weights.
        return super()._load_as_safetensor(model, model_file, map_location, True)

    def _save_pretrained(self, save_directory: Path, state_dict: dict[str, Tensor] | None = None) -> None:
        super()._save_pretrained(save_directory, state_dict=state_dict)
        if not self.config.export_lbva:
            return
        if self.config.embodiment is None:
            logger.info("%s: no --policy.embodiment, so no lbva policy layout beside LeRobot's", save_directory)
            return
        if state_dict is not None:
            logger.warning("%s: weights were gathered across ranks; export the lbva layout afterwards with "
                           "lerobot_policy_lbva.export_lbva_policy", save_directory)
            return
        if not bool(torch.isfinite(self.action_norm_low).all() and torch.isfinite(self.action_norm_high).all()):
            logger.warning("%s: no action statistics (the policy was not built from a dataset), so no lbva layout",
                           save_directory)
            return
        with tempfile.TemporaryDirectory(prefix=".lbva-", dir=save_directory) as tmp:
            staged = self.save_lbva(Path(tmp) / "policy")
            for entry in staged.iterdir():
                target = Path(save_directory) / entry.name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
                os.replace(entry, target)

    def save_lbva(self, out: str | Path) -> Path:
        """Write lbva's policy folder (``lbva.inference.save_policy``) for the registered embodiment: the robot's
        own embodiment, with LeRobot's action statistics converted to slot units."""
        from lbva.embodiment import get_embodiment
        from lbva.inference import save_policy
        from lbva.interop.lerobot_stats import stats_to_slots

        if self.config.embodiment is None:
            raise ValueError("lbva loads policies of registered embodiments only: train with --policy.embodiment=NAME "
                             "(`lbva embodiments` lists them)")
        spec = get_embodiment(self.config.embodiment)
        low, high = self.action_norm_low.cpu().numpy(), self.action_norm_high.cpu().numpy()
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ValueError("the policy has no action statistics: it was not trained from a dataset")
        stats = stats_to_slots(spec, low, high, source="LeRobot dataset statistics (lerobot_policy_lbva)")
        embedded_video = self.video_vae is not None
        return save_policy(out, self.model, self.config.lbva_config(), spec.name, stats,
                           video_encoder=self._video_encoder() if embedded_video else None,
                           text_encoder=self._text_encoder() if self.text_net is not None else None)


def export_lbva_policy(pretrained: str | Path, out: str | Path) -> Path:
    """Write lbva's policy folder for a saved lbva LeRobot policy (e.g. ``…/checkpoints/last/pretrained_model``)."""
    policy = LBVAPolicy.from_pretrained(pretrained)
    return policy.save_lbva(out)


def action_bounds(stats: dict, mode) -> tuple[np.ndarray, np.ndarray]:
    """The native values LeRobot's normaliser maps to −1 and +1 for ``mode`` (every mode it has is affine)."""
    def get(name: str) -> np.ndarray:
        if name not in stats:
            raise KeyError(f"action statistics lack {name!r} for {mode} normalisation; the dataset has {sorted(stats)}")
        return torch.as_tensor(stats[name]).double().cpu().numpy()

    mode = NormalizationMode(mode) if mode is not None else NormalizationMode.IDENTITY
    if mode is NormalizationMode.QUANTILES:
        return get("q01"), get("q99")
    if mode is NormalizationMode.QUANTILE10:
        return get("q10"), get("q90")
    if mode is NormalizationMode.MIN_MAX:
        return get("min"), get("max")
    if mode is NormalizationMode.MEAN_STD:
        half = get("std") + 1e-8  # LeRobot divides by std + eps
        return get("mean") - half, get("mean") + half
    if mode is NormalizationMode.IDENTITY:
        dim = len(get("min")) if "min" in stats else len(get("mean"))
        return -np.ones(dim), np.ones(dim)
    raise ValueError(f"normalisation mode {mode} is not supported for actions; use QUANTILES (the default)")


def _text_kind(data) -> str:
    from lbva.data.encoders import text_encoder_kind

    return text_encoder_kind(data)
