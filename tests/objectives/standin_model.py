"""A tiny stand-in for ``lbva.models.LingBotVA`` with the same call signature (``LingBotVA.forward``).

Per latent frame it sees only what the chunk-causal mask allows a noisy frame of that chunk to see
through its inputs: the video head gets its own noisy frame, σ, the text and a learned frame-position
embedding; the action head additionally gets the (clean copy of the) video of its own frame. Small MLPs,
so the objectives and the sampler can be tested before (and independently of) the real network.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class StandInOutput:
    video: torch.Tensor | None
    actions: torch.Tensor | None


class StandInVA(nn.Module):
    def __init__(self, channels=2, height=2, width=2, actions_per_frame=2, action_dim=30, text_dim=4,
                 max_frames=8, hidden=128):
        super().__init__()
        self.dims = (channels, height, width, actions_per_frame, action_dim)
        self.in_channels, self.text_dim, self.patch_size = channels, text_dim, (1, height // 2, width // 2)
        dv, da = channels * height * width, actions_per_frame * action_dim
        self.pos = nn.Embedding(max_frames, 16)
        self.video_net = nn.Sequential(nn.Linear(dv + 1 + 16 + text_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                                       nn.SiLU(), nn.Linear(hidden, dv))
        self.action_net = nn.Sequential(nn.Linear(da + 1 + 16 + text_dim + dv + 1, hidden), nn.SiLU(),
                                        nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, da))
        self.calls: list[dict] = []

    def forward(self, noisy_video=None, video_sigma=None, noisy_actions=None, action_sigma=None, text=None,
                clean_video=None, clean_video_sigma=None, clean_actions=None, chunk_size=1, window=None, fdm=False):
        self.calls.append({"fdm": fdm, "chunk_size": chunk_size, "clean_video_sigma": clean_video_sigma,
                           "window": window})
        C, H, W, N, A = self.dims
        t = text.mean(dim=1)  # (B, Dt)
        video = actions = None
        if noisy_video is not None:
            B, _, F = noisy_video.shape[:3]
            x = noisy_video.permute(0, 2, 1, 3, 4).reshape(B, F, -1)  # (B, F, C·H·W)
            pos = self.pos(torch.arange(F, device=x.device)).expand(B, F, -1)
            h = torch.cat([x, video_sigma.unsqueeze(-1), pos, t.unsqueeze(1).expand(B, F, -1)], dim=-1)
            video = self.video_net(h).reshape(B, F, C, H, W).permute(0, 2, 1, 3, 4)
        if noisy_actions is not None:
            B, F = noisy_actions.shape[:2]
            x = noisy_actions.reshape(B, F, -1)
            pos = self.pos(torch.arange(F, device=x.device)).expand(B, F, -1)
            cv = clean_video.permute(0, 2, 1, 3, 4).reshape(B, F, -1)
            cs = torch.zeros(B, F, device=x.device) if clean_video_sigma is None else clean_video_sigma
            h = torch.cat([x, action_sigma.unsqueeze(-1), pos, t.unsqueeze(1).expand(B, F, -1), cv, cs.unsqueeze(-1)], dim=-1)
            actions = self.action_net(h).reshape(B, F, N, A)
        return StandInOutput(video, actions)


def synthetic_episode(seed=0, B=1, C=2, F=4, H=2, W=2, N=2, A=30, Lt=3, Dt=4, used=7, chunk_size=2):
    """One fixed episode in the training batch format of lbva.data.datamodule (used channels 0..used-1)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(B, F, N, A, dtype=torch.bool)
    mask[:, 1:, :, :used] = True  # frame 0 of a segment carries no action
    actions = torch.rand(B, F, N, A, generator=g) * 2 - 1
    actions = actions * mask
    return {
        "video": torch.randn(B, C, F, H, W, generator=g),
        "actions": actions,
        "action_mask": mask,
        "text": torch.randn(B, Lt, Dt, generator=g),
        "chunk_size": chunk_size,
        "episode_index": torch.zeros(B, dtype=torch.int64),
        "segment_start": torch.zeros(B, dtype=torch.int64),
    }
