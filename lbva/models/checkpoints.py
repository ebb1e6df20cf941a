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

from lbva.config.model import DEFAULT_MAX_PARAMETERS, ArchConfig, ModelConfig
from lbva.errors import UserError
from lbva.models.lingbot_va import CheckpointError, LingBotVA

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


def safetensors_files(folder: Path) -> list[Path]:
    """The weight files of a folder: those a sharded index names (each inside the folder), else every
    ``*.safetensors`` file."""
    index = sorted(folder.glob("*.safetensors.index.json"))
    files = _index_files(folder, index[0]) if index else sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"no .safetensors weights in {folder}")
    return files


def read_safetensors_folder(folder: Path, dtype: torch.dtype | None = None, prefix: str = "",
                            files: list[Path] | None = None) -> dict[str, torch.Tensor]:
    """All tensors of a folder (or of ``files``), ``prefix`` stripped from the keys that carry it, each cast to
    ``dtype`` as it is read, so the peak is one copy of the weights in the target dtype."""
    from safetensors import SafetensorError, safe_open

    state: dict[str, torch.Tensor] = {}
    for f in files if files is not None else safetensors_files(folder):
        try:
            with safe_open(str(f), framework="pt") as fh:
                for k in fh.keys():
                    t = fh.get_tensor(k)
                    if dtype is not None and t.is_floating_point() and t.dtype != dtype:
                        t = t.to(dtype)
                    state[k.removeprefix(prefix)] = t
        except (OSError, SafetensorError) as e:
            raise CheckpointError(f"{f} cannot be read ({e}); the checkpoint is damaged or incomplete: download or "
                                  "write it again") from e
    return state


def load_state_checked(model: LingBotVA, state: dict[str, torch.Tensor], source: str, assign: bool = False,
                       dtype: torch.dtype | None = None) -> None:
    """Load ``state`` strictly; a mismatch lists missing/unexpected keys and shape mismatches.

    ``assign=True`` puts the given tensors into the model instead of copying them (a model built on the meta
    device gets its storage this way: no random initialisation, no second copy); floating tensors are cast to
    ``dtype`` (default: the model's own dtype, tensor by tensor)."""
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

    def cast(k: str, v: torch.Tensor) -> torch.Tensor:
        if not v.is_floating_point():
            return v
        return v.to(dtype if dtype is not None else own[k].dtype)

    model.load_state_dict({k: cast(k, v) for k, v in state.items()}, assign=assign)


def load_released_transformer(folder: str | Path, dtype: torch.dtype | None = None, device="cpu") -> LingBotVA:
    """A released LingBot-VA transformer folder (``config.json`` + safetensors; or the checkpoint's root with a
    ``transformer/`` folder) as an lbva ``shared`` model, built on the meta device (see :func:`load_pretrained`)."""
    kind, where = checkpoint_kind(folder)
    if kind != "released":
        raise CheckpointError(f"{folder} is {KINDS[kind]}, not a released LingBot-VA transformer; use load_pretrained")
    return load_pretrained(where, dtype=dtype, device=device)


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


ACTION_MODULES = ("action_embedder", "action_proj_out", "condition_embedder_action", "action_blocks",
                  "action_norm_out")


@torch.no_grad()
def _materialise_action_stream(model: LingBotVA) -> None:
    """Give a meta-built model's action stream real, freshly initialised storage (the video stream stays meta
    until its weights are assigned)."""
    for name in ACTION_MODULES:
        mod = getattr(model, name, None)
        if mod is None:
            continue
        mod.to_empty(device="cpu")
        for m in mod.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    if getattr(model, "action_scale_shift_table", None) is not None:
        da = model.action_scale_shift_table.shape[-1]
        model.action_scale_shift_table = torch.nn.Parameter(torch.randn(1, 2, da) / da**0.5)


def _wan_model(cfg: dict, state: dict[str, torch.Tensor], where: str, layout: str, action_dim: int,
               action_width: int | None, config, dtype: torch.dtype | None) -> LingBotVA:
    if cfg.get("image_dim") or cfg.get("added_kv_proj_dim"):
        raise CheckpointError(f"{where} is an image-conditioned Wan variant (image_dim/added_kv_proj_dim); lbva takes "
                              "the text-to-video transformer (e.g. Wan2.2-TI2V-5B)")
    arch = arch_from_diffusers_config(cfg, layout, action_dim, action_width)
    with torch.device("meta"):
        model = LingBotVA(arch, config=config)
    _materialise_action_stream(model)
    video = diffusers_to_video_state(state)
    own = model.state_dict()
    action_keys = {k for k in own if k.startswith(("action_", "condition_embedder_action."))}
    load_state_checked(model, {**{k: own[k] for k in action_keys}, **video}, where, assign=True, dtype=dtype)
    init_action_stream_from_video(model)
    return model


def load_diffusers_wan(source, layout: str = "shared", action_dim: int = 30, action_width: int | None = None,
                       config=None, dtype: torch.dtype | None = None) -> LingBotVA:
    """A diffusers ``WanTransformer3DModel`` (a module, or a folder with config.json + safetensors, or a diffusers
    pipeline root with ``transformer/``) as the video stream of an lbva model; the action stream is initialised
    from it (:func:`init_action_stream_from_video`: interpolation scaled by α = sqrt(d_v/d_a) for ``mot``), the
    action embedder and head are freshly initialised."""
    if isinstance(source, torch.nn.Module):
        return _wan_model(dict(source.config), source.state_dict(), type(source).__name__, layout, action_dim,
                          action_width, config, dtype)
    kind, folder = checkpoint_kind(source)
    if kind != "wan":
        raise CheckpointError(f"{source} is {KINDS[kind]}, not a diffusers WanTransformer3DModel folder")
    return _wan_model(_read_config(folder), read_safetensors_folder(folder, dtype), str(folder), layout, action_dim,
                      action_width, config, dtype)


# ------------------------------------------------------------------------------------------- one way in
KINDS = {
    "lbva": "an lbva model folder (save_pretrained, or the transformer/ of a policy folder)",
    "released": "a released LingBot-VA transformer",
    "lerobot": "a LeRobot lingbot_va policy folder",
    "wan": "a diffusers WanTransformer3DModel (e.g. Wan2.2-TI2V-5B)",
}
POLICY_MARKER = "lbva_policy.json"  # lbva.inference.bundle.MARKER (not imported: models sit below inference)


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path} cannot be read as JSON ({e}); the {what} is damaged: copy or write it again") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, not the JSON object a {what} needs")
    return data


def _read_config(folder: Path) -> dict:
    return _read_json(folder / "config.json", "checkpoint config")


def checkpoint_kind(path: str | Path) -> tuple[str, Path]:
    """What ``path`` holds — one of :data:`KINDS` — and the folder with its weights.

    Accepted: an lbva policy folder (its ``transformer/``), an lbva ``save_pretrained`` folder, a released
    LingBot-VA checkpoint (its root or ``transformer/``), a LeRobot ``lingbot_va`` policy folder, a diffusers
    Wan2.2 folder (the pipeline root or ``transformer/``)."""
    p = Path(path).expanduser()
    if not p.is_dir():
        what = "is a file, not a folder" if p.exists() else "does not exist (no folder, no config.json)"
        raise CheckpointError(f"{p} {what}; give a checkpoint folder ({'; '.join(KINDS.values())})")
    if (p / POLICY_MARKER).is_file():
        if not (p / "transformer" / "config.json").is_file():
            raise CheckpointError(f"{p} is a policy folder with no config.json in transformer/; the folder is "
                                  "incomplete: export or train it again")
        return checkpoint_kind(p / "transformer")
    if (p / "config.json").is_file():
        cfg = _read_config(p)
        if "lbva_arch" in cfg:
            return "lbva", p
        if cfg.get("type") == "lingbot_va":
            return "lerobot", p
        if all(k in cfg for k in RELEASED_KEYS):
            return "released", p
        if cfg.get("_class_name") == "WanTransformer3DModel" or (
                "action_dim" not in cfg and all(k in cfg for k in RELEASED_KEYS if k != "action_dim")):
            return "wan", p
        if not (p / "transformer" / "config.json").is_file():
            raise CheckpointError(
                f"{p / 'config.json'} describes none of: {'; '.join(KINDS.values())} (its keys: "
                f"{sorted(cfg)[:12]}). Point model.init_from at one of those.")
    if (p / "transformer" / "config.json").is_file():  # a released checkpoint or diffusers pipeline root
        return checkpoint_kind(p / "transformer")
    raise CheckpointError(
        f"{p} holds no config.json and no transformer/ folder; give a checkpoint folder ({'; '.join(KINDS.values())})")


ARCH_FIELDS = ("layout", "num_layers", "num_attention_heads", "attention_head_dim", "ffn_dim", "in_channels",
               "text_dim", "freq_dim", "action_dim")


def arch_conflicts(want: ArchConfig, have: ArchConfig, fields=ARCH_FIELDS) -> list[str]:
    """``model.<field>: recipe X, checkpoint Y`` for every field where the recipe contradicts the checkpoint."""
    out = [f"model.{f}: recipe {getattr(want, f)!r}, checkpoint {getattr(have, f)!r}" for f in fields
           if getattr(want, f) != getattr(have, f)]
    if want.layout == have.layout == "mot" and "layout" in fields and want.action_width != have.action_width:
        out.append(f"model.action_width: recipe {want.action_width!r}, checkpoint {have.action_width!r}")
    return out


def _lbva_arch(folder: Path) -> tuple[ArchConfig, dict | None]:
    meta = _read_config(folder)
    if not isinstance(meta.get("lbva_arch"), dict):
        raise CheckpointError(f"{folder / 'config.json'} is not an lbva model config (its 'lbva_arch' is not a map)")
    saved = meta.get("model_config")
    if saved is not None and not isinstance(saved, dict):
        raise CheckpointError(f"{folder / 'config.json'}: 'model_config' is a {type(saved).__name__}, not a map")
    try:
        arch = dict(meta["lbva_arch"])
        arch["patch_size"] = tuple(arch["patch_size"])
        return ArchConfig(**arch), saved
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{folder / 'config.json'}: lbva_arch does not describe an lbva model ({e})") from e


def load_pretrained(source: str | Path, model_cfg=None, *, dtype: torch.dtype | str | None = None,
                    device: str | torch.device = "cpu", max_parameters: int | None = None) -> LingBotVA:
    """A model from any checkpoint lbva reads (see :func:`checkpoint_kind`), built on the meta device and given
    the checkpoint's tensors directly, so the peak memory is about one copy of the weights in ``dtype``
    (default: the checkpoint's own dtype per tensor, fp32 for a diffusers Wan2.2 folder's action stream).

    ``model_cfg`` (a ``ModelConfig``, e.g. a recipe's ``model`` section) supplies the run-time settings — the
    attention kernel, activation checkpointing, compile — and is checked against the checkpoint: a layout or
    width that contradicts it raises :class:`CheckpointError` naming both values. For a diffusers Wan2.2 folder
    the recipe chooses the action stream (``layout``, ``action_width``), initialised from the video weights.
    ``max_parameters`` (default: the recipe's ``model.max_parameters``) bounds the size a folder's config may
    ask for; a folder cannot raise it."""
    from lbva.atomic_io import recover

    if max_parameters is None:
        max_parameters = getattr(model_cfg, "max_parameters", None) or DEFAULT_MAX_PARAMETERS

    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    recover(Path(source).expanduser())  # a writer killed between the two renames of a folder swap
    kind, folder = checkpoint_kind(source)
    want = model_cfg.arch() if model_cfg is not None else None
    if kind == "wan":
        layout = want.layout if want is not None else "shared"
        width = want.action_width if want is not None and layout == "mot" else None
        model = _wan_model(_read_config(folder), read_safetensors_folder(folder, dtype), str(folder), layout,
                           want.action_dim if want is not None else 30, width, model_cfg, dtype)
        if want is not None:
            _refuse_conflicts(want, model.arch, kind, folder)
        return model.to(device)
    saved_cfg = None
    if kind == "lbva":
        arch, saved = _lbva_arch(folder)
        if saved is not None:
            try:
                saved_cfg = ModelConfig(**{**saved, "max_parameters": max_parameters})
            except (UserError, TypeError, ValueError) as e:
                raise CheckpointError(f"{folder / 'config.json'}: its model_config is not one this version of lbva "
                                      f"builds ({type(e).__name__}: {e}); write the folder again") from e
        _check_buildable(arch, folder, max_parameters)
        state = read_safetensors_folder(folder, dtype)
    else:  # released or LeRobot: the released architecture, shared layout, identity key map
        try:
            arch = arch_from_released_config(_read_config(folder))
        except CheckpointError:
            raise
        except (UserError, TypeError, ValueError) as e:
            raise CheckpointError(f"{folder / 'config.json'} describes no model lbva can build ({e})") from e
        _check_buildable(arch, folder, max_parameters)
        # a LeRobot folder also holds its processors' statistics as safetensors: only model.safetensors is weights
        files = [folder / "model.safetensors"] if kind == "lerobot" else None
        state = read_safetensors_folder(folder, dtype, prefix="transformer." if kind == "lerobot" else "", files=files)
    if want is not None:
        _refuse_conflicts(want, arch, kind, folder)
    try:
        with torch.device("meta"):
            model = LingBotVA(arch, config=model_cfg if model_cfg is not None else saved_cfg,
                              max_parameters=max_parameters)
    except CheckpointError:
        raise
    except (UserError, TypeError, ValueError) as e:
        raise CheckpointError(f"{folder / 'config.json'} describes no model lbva can build ({e})") from e
    load_state_checked(model, state, str(folder), assign=True, dtype=dtype)
    return model.to(device)


def _check_buildable(arch: ArchConfig, folder: Path, max_parameters: int) -> None:
    """Refuse, before any weight is read, an architecture above ``max_parameters`` (the meta device would count a
    million layers happily, and slowly)."""
    from lbva.models.lingbot_va import check_model_size

    try:
        check_model_size(arch, int(max_parameters))
    except (UserError, TypeError, ValueError) as e:
        raise CheckpointError(f"{folder / 'config.json'}: {e}") from e


def _refuse_conflicts(want: ArchConfig, have: ArchConfig, kind: str, folder: Path) -> None:
    conflicts = arch_conflicts(want, have)
    if conflicts:
        raise CheckpointError(
            f"model.init_from={str(folder)!r} is {KINDS[kind]} whose architecture contradicts the recipe's model "
            f"section: {'; '.join(conflicts)}. Set those keys to the checkpoint's values (e.g. model.size / "
            "model.layout / model.num_layers=…) or start from a checkpoint that matches the recipe."
        )
