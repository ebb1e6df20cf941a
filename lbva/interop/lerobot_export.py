"""Writing a LeRobot ``lingbot_va`` folder from an lbva policy folder or a ``shared`` model checkpoint."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from lbva.atomic_io import atomic_folder
from lbva.interop.lerobot import is_lerobot_folder
from lbva.interop.lerobot_config import lbva_to_lerobot_fields
from lbva.interop.lerobot_folder import (
    CONFIG_NAME,
    HINT_NAME,
    PREFIX,
    WEIGHTS_NAME,
    LeRobotFolderError,
    _read_json,
    lerobot_defaults,
)
from lbva.interop.lerobot_stats import stats_to_native

logger = logging.getLogger(__name__)


def _read_lbva_source(source: Path):
    """(model, config | None, embodiment | None, stats | None) from an lbva policy folder or a model checkpoint."""
    from lbva.config import from_dict
    from lbva.embodiment import ActionStats
    from lbva.inference.bundle import MARKER, is_policy_folder
    from lbva.models.checkpoints import load_released_transformer
    from lbva.models.lingbot_va import LingBotVA

    if is_policy_folder(source):
        meta = _read_json(source / MARKER, "the policy folder is damaged")
        model = LingBotVA.from_pretrained(source / "transformer")
        stats = ActionStats(**meta["stats"]) if meta.get("stats") else None
        return model, from_dict(meta["config"]), meta.get("embodiment"), stats
    if is_lerobot_folder(source):
        raise LeRobotFolderError(f"{source} is already a LeRobot lingbot_va folder; nothing to export")
    cfg_file = source / CONFIG_NAME
    if not cfg_file.is_file():
        raise LeRobotFolderError(
            f"{source} is neither an lbva policy folder (lbva_policy.json) nor a model checkpoint (config.json); "
            "pass the folder `lbva train` wrote (<output_dir>/policy) or a model.save_pretrained folder"
        )
    meta = _read_json(cfg_file, "the checkpoint is damaged")
    model = LingBotVA.from_pretrained(source) if "lbva_arch" in meta else load_released_transformer(source)
    return model, None, None, None


def _wan_root_out(config, wan_path) -> str:
    if wan_path is not None:
        return str(wan_path)
    d = config.data if config is not None else None
    if d is None:
        return lerobot_defaults()["wan_pretrained_path"]
    if d.encoder != "wan2.2" or not d.vae_path:
        raise LeRobotFolderError(
            f"this policy encodes video with lbva's {d.encoder!r} encoder; LeRobot's lingbot_va runs only the Wan2.2 "
            "VAE and umT5 found under wan_pretrained_path. Pass wan_path (CLI --wan-path) to write one anyway"
        )
    root = Path(d.vae_path).parent
    te = Path(d.text_encoder_path) if d.text_encoder_path else None
    tok = Path(d.tokenizer_path) if d.tokenizer_path else te
    if Path(d.vae_path).name != "vae" or te != root / "text_encoder" or tok not in (root / "tokenizer", te):
        raise LeRobotFolderError(
            f"LeRobot finds the frozen models as <wan_pretrained_path>/vae, /text_encoder, /tokenizer; this policy uses "
            f"vae {d.vae_path}, text encoder {d.text_encoder_path}, tokenizer {d.tokenizer_path}. Pass wan_path "
            "(CLI --wan-path) pointing at such a folder"
        )
    return str(root)


def export_lerobot(source: str | Path, out: str | Path, *, embodiment: str | None = None, stats=None,
                   wan_path: str | Path | None = None, dtype: str = "float32", approximate: bool = False,
                   progress: bool = True) -> Path:
    """Write a LeRobot lingbot_va folder at ``out`` from an lbva policy folder or a ``shared`` model checkpoint.

    ``embodiment`` / ``stats`` (ActionStats or a q01/q99 JSON path) are needed for a bare model checkpoint (a policy
    folder carries both; the embodiment's own statistics are the fallback). The folder is written to a temporary
    sibling and renamed into place, so an interrupted export never leaves a half-written folder at ``out``."""
    import torch
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from lbva.embodiment import ActionStats, get_embodiment

    source, out = Path(source), Path(out)
    if dtype not in ("float32", "bfloat16", "float16"):
        raise LeRobotFolderError(f"dtype {dtype!r}: allowed 'float32', 'bfloat16', 'float16'")
    model, config, emb_name, src_stats = _read_lbva_source(source)
    if embodiment is not None and emb_name is not None and embodiment != emb_name:
        raise LeRobotFolderError(f"{source} is a policy for {emb_name!r}, not {embodiment!r}")
    name = embodiment or emb_name
    if name is None:
        raise LeRobotFolderError(f"{source} is a bare model checkpoint: pass the embodiment it runs on (--embodiment)")
    spec = get_embodiment(name)
    if isinstance(stats, (str, Path)):
        stats = ActionStats.load(stats)
    stats = stats or src_stats or spec.stats
    if stats is None:
        raise LeRobotFolderError(
            f"no action statistics for {source}: LeRobot needs q01/q99 in the postprocessor. Pass stats (--stats "
            "q01/q99 JSON) or use a policy folder"
        )
    fields, approx = lbva_to_lerobot_fields(model, config, spec, _wan_root_out(config, wan_path), dtype, approximate)
    q01, q99 = stats_to_native(spec, stats)

    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.lingbot_va import LingBotVAConfig, make_lingbot_va_pre_post_processors

    cams = [(c.key, c.height, c.width) for c in spec.cameras]
    lr_cfg = LingBotVAConfig(
        **fields,
        input_features={k: PolicyFeature(type=FeatureType.VISUAL, shape=(3, h, w)) for k, h, w in cams},
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(len(q01),))},
    )
    with atomic_folder(out, marker=CONFIG_NAME) as tmp:
        logger.info("exporting %s -> %s (LeRobot lingbot_va, embodiment %s)", source, out, name)
        lr_cfg._save_pretrained(tmp)
        written = json.loads((tmp / CONFIG_NAME).read_text())
        written["device"] = None  # LeRobot picks the machine's device when it loads (not the exporting machine's)
        (tmp / CONFIG_NAME).write_text(json.dumps(written, indent=4))
        want = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        state = {}
        items = list(model.state_dict().items())
        for k, v in tqdm(items, desc="weights", unit="tensor", disable=not progress):
            state[PREFIX + k] = v.detach().to("cpu", want).contiguous()
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        pre, post = make_lingbot_va_pre_post_processors(
            lr_cfg, {"action": {"q01": torch.from_numpy(q01), "q99": torch.from_numpy(q99)}})
        pre.save_pretrained(tmp)
        post.save_pretrained(tmp)
        (tmp / HINT_NAME).write_text(json.dumps({
            "format": "lbva-lerobot-export", "version": 1, "embodiment": name, "source": str(source),
            "stats_source": stats.source, "approximations": approx,
        }, indent=2))
    logger.info("wrote %s (%d tensors)", out, len(state))
    return out
