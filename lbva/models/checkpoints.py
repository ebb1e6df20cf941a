"""Foreign checkpoints: the released LingBot-VA transformer, and LeRobot ``lingbot_va`` policy weights.

The released transformer folder is diffusers-style: ``config.json`` (``patch_size``, ``num_attention_heads``,
``attention_head_dim``, ``in_channels``, ``out_channels``, ``action_dim``, ``text_dim``, ``freq_dim``,
``ffn_dim``, ``num_layers``, ``cross_attn_norm``, ``eps``, …) and ``diffusion_pytorch_model.safetensors``
(possibly sharded, with ``*.safetensors.index.json``). lbva's parameter names equal the release's, so the key
map is the identity (LeRobot adds a ``transformer.`` prefix).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from lbva.errors import UserError
from lbva.models.lingbot_va import ArchConfig, CheckpointError, LingBotVA

RELEASED_KEYS = ("num_attention_heads", "attention_head_dim", "in_channels", "action_dim", "text_dim", "freq_dim",
                 "ffn_dim", "num_layers")


def arch_from_released_config(cfg: dict, layout: str = "shared") -> ArchConfig:
    missing = [k for k in RELEASED_KEYS if k not in cfg]
    if missing:
        raise CheckpointError(f"the transformer config lacks {missing}; is this a LingBot-VA transformer folder?")
    return ArchConfig(
        num_layers=cfg["num_layers"], num_attention_heads=cfg["num_attention_heads"],
        attention_head_dim=cfg["attention_head_dim"], ffn_dim=cfg["ffn_dim"], in_channels=cfg["in_channels"],
        out_channels=cfg.get("out_channels"), text_dim=cfg["text_dim"], freq_dim=cfg["freq_dim"],
        action_dim=cfg["action_dim"], patch_size=tuple(cfg.get("patch_size", (1, 2, 2))),
        cross_attn_norm=cfg.get("cross_attn_norm", True), eps=cfg.get("eps", 1e-6), layout=layout,
    )


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path} cannot be read as JSON ({e}); the {what} is damaged: download or write it again") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, not the JSON object a {what} needs")
    return data


def _index_files(folder: Path, index: Path) -> list[Path]:
    """The shard files a ``*.safetensors.index.json`` names, each checked to lie inside ``folder`` (an index may not
    make us read an arbitrary file elsewhere on the machine)."""
    weight_map = _read_json(index, "checkpoint index").get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{index} has no 'weight_map' of tensor name -> shard file name; the index is damaged")
    root = folder.resolve()
    files = []
    for name in sorted(set(weight_map.values())):
        shard = (folder / name).resolve()
        if not shard.is_relative_to(root) or shard == root:
            raise CheckpointError(f"{index} points at {name!r}, outside {folder}; an index may only name shard files "
                                  "inside its own folder. The checkpoint is damaged or not to be trusted")
        if not shard.name.endswith(".safetensors"):
            raise CheckpointError(f"{index} names {name!r}, which is not a .safetensors file; only safetensors shards "
                                  "are read")
        files.append(shard)
    return files


def read_safetensors_folder(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a folder: a sharded index if present, else every ``*.safetensors`` file."""
    from safetensors import SafetensorError

    index = sorted(folder.glob("*.safetensors.index.json"))
    files = _index_files(folder, index[0]) if index else sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"no .safetensors weights in {folder}")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            state.update(load_file(str(f)))
        except (OSError, SafetensorError) as e:
            raise CheckpointError(f"{f} cannot be read ({e}); the checkpoint is damaged or incomplete: download or "
                                  "write it again") from e
    return state


def load_state_checked(model: LingBotVA, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` strictly; a mismatch lists missing/unexpected keys and shape mismatches."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in set(own) & set(state) if state[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        def few(xs):
            return ", ".join(xs[:8]) + (f" … ({len(xs)} in all)" if len(xs) > 8 else "")
        raise CheckpointError(
            f"{source} does not fit the model: "
            + "; ".join(part for part in (
                f"missing keys: {few(missing)}" if missing else "",
                f"unexpected keys: {few(unexpected)}" if unexpected else "",
                f"shape mismatches: {few(shapes)}" if shapes else "") if part)
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def load_released_transformer(folder: str | Path) -> LingBotVA:
    """A released LingBot-VA transformer folder (``config.json`` + safetensors) as an lbva ``shared`` model."""
    folder = Path(folder)
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        raise CheckpointError(f"{folder} has no config.json; point at the checkpoint's transformer/ folder")
    try:
        model = LingBotVA(arch_from_released_config(_read_json(cfg_file, "transformer config")))
    except CheckpointError:
        raise
    except (UserError, TypeError, ValueError) as e:
        raise CheckpointError(f"{cfg_file} describes no model lbva can build ({e})") from e
    load_state_checked(model, read_safetensors_folder(folder), str(folder))
    return model


def released_config(model: LingBotVA) -> dict:
    """The release's ``config.json`` for a ``shared`` model (what LeRobot's transformer is built from)."""
    a = model.arch
    if a.layout != "shared":
        raise CheckpointError(
            f"a {a.layout!r} model has no released-layout equivalent: the release (and LeRobot) only know the "
            "shared layout, where action tokens pass through the video blocks"
        )
    return {"patch_size": list(a.patch_size), "num_attention_heads": a.num_attention_heads,
            "attention_head_dim": a.attention_head_dim, "in_channels": a.in_channels,
            "out_channels": a.out_channels or a.in_channels, "action_dim": a.action_dim, "text_dim": a.text_dim,
            "freq_dim": a.freq_dim, "ffn_dim": a.ffn_dim, "num_layers": a.num_layers,
            "cross_attn_norm": a.cross_attn_norm, "eps": a.eps}


# ------------------------------------------------------------------------------------------------ diffusers Wan
def arch_from_diffusers_config(cfg: dict, layout: str = "shared", action_dim: int = 30,
                               action_width: int | None = None) -> ArchConfig:
    """An lbva architecture whose video stream is a diffusers ``WanTransformer3DModel`` config."""
    need = ("num_attention_heads", "attention_head_dim", "in_channels", "text_dim", "freq_dim", "ffn_dim", "num_layers")
    missing = [k for k in need if k not in cfg]
    if missing:
        raise CheckpointError(f"the diffusers config lacks {missing}; is this a WanTransformer3DModel folder?")
    dim = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    return ArchConfig(
        num_layers=cfg["num_layers"], num_attention_heads=cfg["num_attention_heads"],
        attention_head_dim=cfg["attention_head_dim"], ffn_dim=cfg["ffn_dim"], in_channels=cfg["in_channels"],
        out_channels=cfg.get("out_channels"), text_dim=cfg["text_dim"], freq_dim=cfg["freq_dim"],
        action_dim=action_dim, patch_size=tuple(cfg.get("patch_size", (1, 2, 2))),
        cross_attn_norm=cfg.get("cross_attn_norm", True), eps=cfg.get("eps", 1e-6), layout=layout,
        action_width=action_width or max(cfg["attention_head_dim"], dim // 4),
    )


def diffusers_to_video_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a diffusers Wan state dict to lbva's video-stream keys: the patch Conv3d (D, C, p0, p1, p2)
    becomes the ``patch_embedding_mlp`` Linear (D, C·p0·p1·p2) — the same channel-major packing."""
    out = {}
    for k, v in state.items():
        if k.startswith("patch_embedding."):
            k = k.replace("patch_embedding.", "patch_embedding_mlp.")
            if v.ndim == 5:
                v = v.reshape(v.shape[0], -1)
        out[k] = v
    return out


def _resize_axis(t: torch.Tensor, axis: int, src: int, dst: int) -> torch.Tensor:
    """Linear interpolation of ``t`` along ``axis`` from ``src`` to ``dst`` entries (blocks of ``src``
    when the axis is a multiple of it, e.g. the 6·D modulation rows)."""
    n = t.shape[axis]
    if n == dst or n % src:
        return t
    reps = n // src
    x = t.movedim(axis, -1).float()
    lead = x.shape[:-1]
    x = x.reshape(-1, 1, src)  # one row per block of ``src``
    x = F.interpolate(x, size=dst, mode="linear", align_corners=True)
    x = x.reshape(*lead, reps * dst)
    return x.movedim(-1, axis).to(t.dtype)


@torch.no_grad()
def init_action_stream_from_video(model: LingBotVA) -> None:
    """Initialise a ``mot`` action stream from the video stream's weights (paper): every width-d_v axis is
    interpolated to d_a (FFN axes from its FFN width), and a weight whose input axis shrank is scaled by
    α = sqrt(d_v / d_a) to keep the activation scale. The shared layout only copies the time embedder."""
    a = model.arch
    if model.action_blocks is None:
        model.condition_embedder_action.load_state_dict(model.condition_embedder.state_dict())
        return
    dv, da = a.dim, a.action_width
    alpha = (dv / da) ** 0.5

    def fit(src: torch.Tensor, dst: torch.Tensor, is_weight: bool) -> torch.Tensor:
        x = src
        for axis in range(src.ndim):
            if x.shape[axis] == dst.shape[axis]:
                continue
            if x.shape[axis] == a.ffn_dim and dst.shape[axis] == a.action_ffn_dim:
                x = _resize_axis(x, axis, a.ffn_dim, a.action_ffn_dim)
            elif x.shape[axis] % dv == 0 and dst.shape[axis] == x.shape[axis] // dv * da:
                x = _resize_axis(x, axis, dv, da)
        if x.shape != dst.shape:
            raise CheckpointError(f"cannot interpolate {tuple(src.shape)} to {tuple(dst.shape)}")
        if is_weight and src.ndim == 2 and src.shape[1] != dst.shape[1]:
            x = x * alpha
        return x

    pairs = [(blk, ablk) for blk, ablk in zip(model.blocks, model.action_blocks)]
    pairs.append((model.condition_embedder, model.condition_embedder_action))
    for src_mod, dst_mod in pairs:
        src_state = src_mod.state_dict()
        for name, p in dst_mod.named_parameters():
            p.copy_(fit(src_state[name], p, name.endswith("weight")))
    model.action_scale_shift_table.copy_(fit(model.scale_shift_table, model.action_scale_shift_table, False))


def load_diffusers_wan(source, layout: str = "shared", action_dim: int = 30, action_width: int | None = None,
                       config=None) -> LingBotVA:
    """A diffusers ``WanTransformer3DModel`` (a module, or a folder with config.json + safetensors) as the video
    stream of an lbva model; the action stream is initialised from it (:func:`init_action_stream_from_video`),
    the action embedder and head stay randomly initialised."""
    if isinstance(source, torch.nn.Module):
        cfg, state = dict(source.config), source.state_dict()
        where = type(source).__name__
    else:
        folder = Path(source)
        if not (folder / "config.json").is_file():
            raise CheckpointError(f"{folder} has no config.json; point at a WanTransformer3DModel folder")
        cfg, state, where = _read_json(folder / "config.json", "transformer config"), read_safetensors_folder(folder), str(folder)
    if cfg.get("image_dim") or cfg.get("added_kv_proj_dim"):
        raise CheckpointError(f"{where} is an image-conditioned Wan variant (image_dim/added_kv_proj_dim); lbva takes "
                              "the text-to-video transformer (e.g. Wan2.2-TI2V-5B)")
    arch = arch_from_diffusers_config(cfg, layout, action_dim, action_width)
    model = LingBotVA(arch, config=config)
    video = diffusers_to_video_state(state)
    own = model.state_dict()
    action_keys = {k for k in own if k.startswith(("action_", "condition_embedder_action."))}
    full = {**{k: own[k] for k in action_keys}, **video}
    load_state_checked(model, full, where)
    init_action_stream_from_video(model)
    return model
