"""A latent cache in `lbva prepare`'s layout, written by hand: tests of the sampling and batching code need no
encoders."""

import json

import numpy as np
import torch

from lbva.config.data import DataConfig
from lbva.data.cache import CacheIndex, SegmentEntry, atomic_save_tensors, fingerprint_of, text_key
from lbva.data.prepare import settings_parts
from lbva.data.stats import stats_record
from lbva.embodiment import get_embodiment

TEXT_SHAPE = (4, 8)


def write_cache(root, embodiment: str, frames: list[int], latent_shape=(4, 2, 2), seed=0, data_cfg=None,
                texts: list[str] | None = None):
    """Random latents and raw slot actions for segments of ``frames`` latent frames (instruction per segment:
    ``texts``, default one for the whole cache), and q01/q99 drawn per channel, so that two caches normalise the
    same raw value differently."""
    spec = get_embodiment(embodiment)
    rng = np.random.default_rng(seed)
    n = spec.actions_per_frame
    parts = settings_parts(data_cfg or DataConfig(), spec)
    texts = texts or [f"task of {embodiment}"] * len(frames)
    entries = []
    for ep, (f, text) in enumerate(zip(frames, texts)):
        e = SegmentEntry(ep, 0, f * n, text, text_key(text), f * n, f, f"latents/episode_{ep}_0_{f * n}.safetensors")
        valid = np.ones((f, n), bool)
        valid[0] = False
        atomic_save_tensors(root / e.file, {
            "latents": torch.from_numpy(rng.normal(size=(latent_shape[0], f, *latent_shape[1:])).astype(np.float32)),
            "actions": torch.from_numpy(rng.normal(size=(f, n, 30)).astype(np.float32)),
            "action_valid": torch.from_numpy(valid),
            "frame_ids": torch.arange(f * n),
        })
        entries.append(e)
    for t in sorted({"", *texts}):
        atomic_save_tensors(root / "text" / f"{text_key(t)}.safetensors",
                            {"embedding": torch.from_numpy(rng.normal(size=TEXT_SHAPE).astype(np.float32))})
    q01 = rng.uniform(-3, -1, 30).astype(np.float32)
    q99 = rng.uniform(1, 3, 30).astype(np.float32)
    (root / "stats.json").write_text(json.dumps(stats_record(q01, q99, spec.used_mask, "test", 100)))
    index = CacheIndex(fingerprint_of(parts), parts, "unused", spec.name, 10.0, 1, 1, n, list(latent_shape),
                       list(TEXT_SHAPE), text_key(""), entries)
    (root / "index.json").write_text(index.to_json())
    return root
