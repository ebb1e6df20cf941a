"""Fine-tune a released-layout LingBot-VA checkpoint on your own robot's LeRobot dataset, then run it.

    .venv/bin/python examples/finetune_on_my_robot.py --dataset PATH --embodiment NAME --checkpoint TRANSFORMER_DIR

Without arguments it runs end to end on the tiny config with stand-ins for everything it would otherwise
need from you: a small synthetic LeRobot dataset for `metaworld-sawyer`, and a random tiny checkpoint written
in the released LingBot-VA folder layout. Replace them with your dataset, your embodiment (see
examples/add_a_robot) and a released transformer folder (with data.encoder=wan2.2 and the Wan2.2 VAE / umT5
paths for a real checkpoint).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path


def tiny_released_checkpoint(out: Path, text_dim: int, in_channels: int) -> Path:
    """A random tiny transformer saved the way the release ships it (config.json + diffusers safetensors)."""
    from safetensors.torch import save_file

    from lbva.config import load_config
    from lbva.models import build_model
    from lbva.models.checkpoints import released_config

    model = build_model(load_config(None, ["model.size=tiny", f"model.text_dim={text_dim}",
                                           f"model.in_channels={in_channels}"]).model)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(released_config(model)))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "diffusion_pytorch_model.safetensors"))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=Path, help="your LeRobot dataset (default: a synthetic one)")
    p.add_argument("--embodiment", default="metaworld-sawyer")
    p.add_argument("--checkpoint", type=Path, help="a released LingBot-VA transformer folder (default: a tiny random one)")
    p.add_argument("--recipe", default="posttrain/real_50_demos", help="the fine-tuning recipe")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--encoder", default="embedded",
                   help="embedded (no downloads) or wan2.2 (pass data.vae_path=... via --set for a real checkpoint)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more recipe overrides")
    args = p.parse_args()

    import numpy as np

    from lbva.config import load_config
    from lbva.data.cache import LatentCache
    from lbva.data.encoders import EmbeddedVideoEncoder
    from lbva.data.prepare import prepare_dataset
    from lbva.data.synthetic import make_synthetic_dataset
    from lbva.inference import Policy
    from lbva.training.fit import fit

    out = args.out or Path(tempfile.mkdtemp(prefix="lbva-finetune-"))
    dataset = args.dataset or make_synthetic_dataset(out / "dataset", args.embodiment, episodes=3, frames=40)
    cfg = load_config(args.recipe, [
        f"embodiment.name={args.embodiment}", f"data.encoder={args.encoder}", "data.text_encoder=auto", f"data.dataset={dataset}", f"data.cache_dir={out / 'cache'}",
        "data.embedded_vae_steps=50", "data.window_frames=6", "data.batch_size=2",
        f"trainer.max_steps={args.steps}", f"trainer.output_dir={out / 'train'}", "trainer.precision=32-true",
        "trainer.accelerator=cpu", "trainer.strategy=auto", "trainer.devices=1", "trainer.num_nodes=1",
        f"trainer.checkpoint_every_n_steps={args.steps}", "trainer.warmup_steps=2",
        *args.set,
    ])

    # 1. your frames -> latents, instructions -> text embeddings, actions -> q01/q99 statistics
    prepare_dataset(dataset, args.embodiment, out=out / "cache", data_cfg=cfg.data)
    cache = LatentCache(out / "cache")
    video = EmbeddedVideoEncoder(str(out / "cache" / "embedded_vae"))
    text_dim = int(cache.empty_text().shape[-1])

    # 2. the released checkpoint as the starting point: model.init_from takes its folder directly (root or
    #    transformer/); the recipe's architecture must match it (the tiny stand-in is `tiny`, a real one
    #    `model.size=wan2.2-5b model.layout=shared`), its kernel and checkpointing settings are used as given
    released = args.checkpoint or tiny_released_checkpoint(out / "released" / "transformer", text_dim, video.latent_channels)
    if args.checkpoint is None:
        cfg = replace(cfg, model=replace(cfg.model, size="tiny", layout="shared"))
    cfg = replace(cfg, model=replace(cfg.model, init_from=str(released)))

    # 3. fine-tune with the recipe (lightning.Trainer, atomic checkpoints, TensorBoard under OUT/train); it ends by
    #    writing the policy folder OUT/train/policy (the same as `lbva export policy` on the last checkpoint)
    fit(cfg)

    # 4. one closed-loop chunk from the policy folder
    policy = Policy.from_pretrained(out / "train" / "policy", embodiment=args.embodiment)
    policy.reset("do the task")
    obs = {cam.key: np.zeros((cam.height, cam.width, 3), np.uint8) for cam in policy.spec.cameras}
    chunk = policy.predict_action_chunk(obs)
    print(f"fine-tuned policy at {out / 'train' / 'policy'}; first action chunk {chunk.shape}:\n{chunk}")


if __name__ == "__main__":
    main()
