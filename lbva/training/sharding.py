"""FSDP2 (``torch.distributed.fsdp.fully_shard``) that shards a LingBot-VA network block by block.

Each rank keeps 1/world of every parameter; a block's parameters are all-gathered just before the block runs and
freed after, so peak memory holds one block whole, not the model. :class:`~lbva.models.lingbot_va.LingBotVA` does
not run its blocks through ``forward`` — FSDP only hooks ``forward`` — so the units follow the calls it makes:

* each block (``blocks``, and ``action_blocks`` in the ``mot`` layout) is a unit whose ``pre_attention`` and
  ``post_attention`` are registered as forward methods (``register_fsdp_forward_method``): the joint attention
  of a layer sits between the two calls, across streams;
* the cross-attention's text key/value projections of each block (``attn2.to_k``, ``attn2.norm_k``,
  ``attn2.to_v``) are a unit of their own: ``text_context`` runs them, once per prompt, before the layer loop;
* the root unit holds the rest (embedders, condition embedders, output heads, tables).

Parameter names and the numbers the network computes are unchanged; ``model.activation_checkpointing`` still
recomputes each layer in the backward pass (the recomputation runs inside the unit's backward all-gather).
With ``trainer.strategy=fsdp`` the Fabric loop hands :func:`parallelize_fn` to Lightning's ``ModelParallelStrategy``;
under ``lightning.Trainer``, :meth:`~lbva.training.system.LbvaSystem.configure_model` calls :func:`shard_model`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

_BLOCK_METHODS = ("pre_attention", "post_attention")


def mixed_precision(precision: str):
    """The ``MixedPrecisionPolicy`` for a Lightning precision: ``*-mixed`` computes in bf16/fp16 and reduces
    gradients in fp32; ``32-true`` and ``bf16-true`` keep the parameters' own dtype."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    compute = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    if compute is None:
        return MixedPrecisionPolicy()
    return MixedPrecisionPolicy(param_dtype=compute, reduce_dtype=torch.float32)


def _blocks(model: nn.Module) -> list[nn.Module]:
    blocks = list(model.blocks)
    if getattr(model, "action_blocks", None) is not None:
        blocks += list(model.action_blocks)
    return blocks


def shard_model(model: nn.Module, mesh, precision: str = "32-true") -> nn.Module:
    """Shard ``model`` (a LingBotVA; in place) over the 1-D device ``mesh``: per block, the text K/V projections
    per block, then the root. Returns ``model``."""
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    if not hasattr(model, "blocks"):
        raise TypeError(f"trainer.strategy=fsdp shards LingBotVA's blocks; {type(model).__name__} has no .blocks")
    kwargs = dict(mesh=mesh, mp_policy=mixed_precision(precision))
    for block in _blocks(model):
        attn2 = block.attn2
        if hasattr(attn2, "to_k"):
            fully_shard([attn2.to_k, attn2.norm_k, attn2.to_v], **kwargs)
        fully_shard(block, **kwargs)
        for name in _BLOCK_METHODS:
            register_fsdp_forward_method(block, name)
    fully_shard(model, **kwargs)
    return model


def parallelize_fn(precision: str) -> Callable[[nn.Module, object], nn.Module]:
    """For ``ModelParallelStrategy(parallelize_fn=...)``: FSDP over the mesh's data-parallel dimension."""

    def parallelize(model: nn.Module, device_mesh) -> nn.Module:
        return shard_model(model, device_mesh["data_parallel"], precision)

    return parallelize


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def reshard(model: nn.Module) -> None:
    """Put every FSDP unit of ``model`` back to its shards. A forward without a backward (sampling, validation)
    leaves the root unit gathered — FSDP2 reshards the root only after the backward — and its parameters then
    are plain tensors, which the optimizer and the EMA (DTensors) cannot mix with. A no-op when not sharded."""
    from torch.distributed.fsdp import FSDPModule

    for m in model.modules():
        if isinstance(m, FSDPModule):
            m.reshard()


def unsharded_copy(model: nn.Module, model_cfg, rank: int) -> nn.Module | None:
    """What rank 0 exports: ``model`` itself when it is not sharded; under FSDP an unsharded model built from
    ``model_cfg`` holding the gathered weights (every rank must call this: the gather is a collective), None on the
    other ranks."""
    if not is_sharded(model):
        return model
    state = full_state_dict(model)
    if rank != 0:
        return None
    from lbva.models import build_model

    copy = build_model(model_cfg)
    copy.load_state_dict(state)
    return copy


def local_numel(model: nn.Module) -> int:
    """Parameter elements this rank holds (its shards when sharded)."""
    return sum((p.to_local() if hasattr(p, "to_local") else p).numel() for p in model.parameters())


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole, unsharded state dict on the CPU; a collective: every rank calls it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
