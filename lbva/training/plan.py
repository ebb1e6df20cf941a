"""``lbva plan``: per-device peak memory of a training step and of streaming inference, traced, not estimated.

Axis legend: B batch, C latent channels, F latent frames, H/W latent height/width, N actions per latent frame,
A action dim, Lt text tokens, Dt text width, R text rows (2 with classifier-free guidance), K frames of a chunk.

The model of the recipe is built under :class:`~torch._subclasses.fake_tensor.FakeTensorMode`: its tensors have
shapes, dtypes and strides but no data, so the 5B model costs no memory. One real training step of it runs —
:class:`~lbva.objectives.FlowMatchingObjective` forward (under autocast for the ``-mixed`` precisions, with the
recipe's activation checkpointing) and the backward pass — while :class:`LiveBytes` counts the bytes of every storage
it allocates until that storage is freed. Activations, the attention mask, recomputation under checkpointing and the
gradients as they appear are therefore whatever the code allocates, step by step. Inference is traced the same way:
a streaming session fills its KV cache (:meth:`~lbva.models.LingBotVA.new_cache`) chunk by chunk and queries it.

What is counted, not traced: parameters and AdamW's two moments (``exp_avg``, ``exp_avg_sq``, like each parameter);
across devices — ``ddp``: a full copy per device, plus the gradient buckets DDP's reducer copies the gradients into
(its default, ``gradient_as_bucket_view=False``); ``fsdp`` (full shard): parameters, gradients and optimiser state
divided by the device count, plus the working set of one FSDP unit per layer — the layer being computed and the next,
prefetched, gathered in the compute dtype, and one layer's unsharded gradients before their reduce-scatter. The
optimiser step's own temporaries (foreach kernels) are not included.

Values never matter for memory, only shapes, so a data-dependent read (``.item()``, ``bool(t)``) sees 1: the branch
that allocates (a re-noised history) is taken and a drawn window size is valid.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import asdict, dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils._pytree import tree_flatten

from lbva.config import LbvaConfig


@dataclass(frozen=True)
class TokenShape:
    """The tensors of one training sample (and of the streaming session): ``frames`` latent frames of ``height`` ×
    ``width`` latents with ``actions_per_frame`` actions each; ``batch`` samples per device."""

    batch: int
    frames: int
    height: int
    width: int
    actions_per_frame: int
    chunk_frames: int

    def __post_init__(self):
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PlanError(f"{name}={value!r} is not allowed; it must be a whole number >= 1")

    def video_tokens(self, patch: tuple[int, int, int]) -> int:
        """Tokens of one latent frame."""
        if self.height % patch[1] or self.width % patch[2]:
            raise PlanError(f"latent size {self.height}x{self.width} is not a multiple of the model's patch "
                            f"{patch[1]}x{patch[2]}; give even latent sizes")
        return self.height // patch[1] * (self.width // patch[2])

    def training_tokens(self, patch: tuple[int, int, int]) -> int:
        """Tokens of one training sequence: clean and noisy copies of every video frame and action."""
        return 2 * self.frames * (self.video_tokens(patch) + self.actions_per_frame)


class PlanError(ValueError):
    """A plan that cannot be made from what was given; the message names the value and what is allowed."""


class LiveBytes(TorchDispatchMode):
    """Counts the bytes of every fake storage allocated while it is active, until the storage is freed.

    Each allocation and free is an event; :meth:`timeline` replays them with a label per storage (a gradient or
    not), so one trace answers for any sharding of the gradients. Runs above a ``FakeTensorMode``: ops whose
    inputs are all real tensors made before the trace (a KV cache's slot bookkeeping on the CPU) run for real."""

    def __init__(self):
        super().__init__()
        self.events: list[tuple[int, int]] = []  # (storage number, +bytes on allocation / -bytes on free)
        self._numbers: dict[int, tuple[int, weakref.ref]] = {}  # id(storage) -> (storage number, weak reference)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        if tensors and not any(_is_fake(t) for t in tensors):
            with _disable_current_modes():
                return func(*args, **kwargs)
        if func is torch.ops.aten._local_scalar_dense.default:
            return 1
        out = func(*args, **kwargs)
        held = [t.untyped_storage() for t in tensors]  # alive while compared: a view or in-place result is no allocation
        inputs = {id(st) for st in held}
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and _is_fake(t) and id(t.untyped_storage()) not in inputs:
                self._allocated(t.untyped_storage())
        return out

    def _allocated(self, storage) -> None:
        key = id(storage)
        if key in self._numbers:
            return
        number, nbytes = len(self.events), storage.nbytes()
        self.events.append((number, nbytes))

        def freed(_, key=key, number=number, nbytes=nbytes):
            self.events.append((number, -nbytes))
            self._numbers.pop(key, None)

        self._numbers[key] = (number, weakref.ref(storage, freed))

    def number_of(self, t: torch.Tensor) -> int:
        """The storage number of a live tensor allocated during the trace."""
        return self._numbers[id(t.untyped_storage())][0]

    def timeline(self, labelled: set[int] = frozenset(), since: int = 0) -> tuple[list[int], list[int]]:
        """(other bytes, labelled bytes) live after each allocation from event ``since`` on."""
        other = lab = 0
        others, labs = [], []
        for i, (number, nbytes) in enumerate(self.events):
            if number in labelled:
                lab += nbytes
            else:
                other += nbytes
            if nbytes > 0 and i >= since:
                others.append(other)
                labs.append(lab)
        return others, labs

    def peak(self, since: int = 0) -> int:
        """The most bytes live at once, from event ``since`` on."""
        return max(self.timeline(since=since)[0], default=0)


def _is_fake(t: torch.Tensor) -> bool:
    from torch._subclasses.fake_tensor import FakeTensor

    return isinstance(t, FakeTensor)


# --------------------------------------------------------------------------------------------------- precision
def precision_dtypes(precision: str) -> tuple[torch.dtype, torch.dtype, torch.dtype | None]:
    """(parameter dtype, compute dtype, autocast dtype or None) of a Lightning precision."""
    table = {"32-true": (torch.float32, torch.float32, None), "bf16-mixed": (torch.float32, torch.bfloat16, torch.bfloat16),
             "16-mixed": (torch.float32, torch.float16, torch.float16),
             "bf16-true": (torch.bfloat16, torch.bfloat16, None), "16-true": (torch.float16, torch.float16, None)}
    if precision not in table:
        raise PlanError(f"trainer.precision={precision!r} is unknown; allowed: {', '.join(table)}")
    return table[precision]


def _text_length(cfg: LbvaConfig) -> int:
    """Text tokens the recipe's encoder gives: umt5 pads to data.text_max_length, the embedded one to its own."""
    encoder = cfg.data.text_encoder
    if encoder == "auto":
        encoder = "embedded" if cfg.data.encoder == "embedded" else "umt5"
    return cfg.data.text_max_length if encoder == "umt5" else cfg.data.embedded_text_max_length


def _fake_model(cfg: LbvaConfig, dtype: torch.dtype):
    from lbva.models import build_model

    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in the dtype: converting fake parameters afterwards is refused
    try:
        return build_model(cfg.model)
    finally:
        torch.set_default_dtype(before)


# --------------------------------------------------------------------------------------------------- training
@dataclass
class TrainingTrace:
    """What one traced training step allocated: parameter counts per layer and the live-bytes timeline."""

    parameters: int  # trainable parameters (count)
    layer_parameters: int  # the largest layer's (video block + action block)
    activations: list[int]  # live bytes of everything but the parameters' gradients, after each allocation
    gradients: list[int]  # live bytes of the parameters' gradients, at the same moments
    gradient_bytes: int  # all gradients, in the dtype the step ran with
    tokens_per_sequence: int


def trace_training_step(cfg: LbvaConfig, shape: TokenShape, param_dtype: torch.dtype,
                        autocast: torch.dtype | None) -> TrainingTrace:
    """Run the objective's forward and backward once on fake tensors of ``shape`` and record what is live."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from lbva.objectives import FlowMatchingObjective

    with FakeTensorMode(allow_non_fake_inputs=True):
        model = _fake_model(cfg, param_dtype).train()
        arch = model.arch
        tokens = shape.training_tokens(arch.patch_size)  # refuses a latent size the patch does not divide
        trainable = [p for p in model.parameters() if p.requires_grad]
        per_layer = max(sum(p.numel() for p in model.blocks[i].parameters())
                        + (sum(p.numel() for p in model.action_blocks[i].parameters())
                           if model.action_blocks is not None else 0) for i in range(arch.num_layers))
        objective = FlowMatchingObjective(cfg.objective)
        tracer = LiveBytes()
        with tracer:
            B, F_, N = shape.batch, shape.frames, shape.actions_per_frame
            data_dtype = param_dtype if autocast is None else torch.float32
            batch = {
                "video": torch.randn(B, arch.in_channels, F_, shape.height, shape.width, dtype=data_dtype),
                "actions": torch.randn(B, F_, N, arch.action_dim, dtype=data_dtype),
                "action_mask": torch.ones(B, F_, N, arch.action_dim, dtype=torch.bool),
                "text": torch.randn(B, _text_length(cfg), arch.text_dim, dtype=data_dtype),
                "chunk_size": shape.chunk_frames,
            }
            with torch.autocast("cpu", dtype=autocast, enabled=autocast is not None):
                loss = objective(model, batch).loss
            loss.backward()
            del loss, batch
            grads = {tracer.number_of(p.grad) for p in trainable if p.grad is not None}
            activations, gradients = tracer.timeline(grads)
    return TrainingTrace(
        parameters=sum(p.numel() for p in trainable), layer_parameters=per_layer,
        activations=activations, gradients=gradients,
        gradient_bytes=sum(p.numel() * p.element_size() for p in trainable),
        tokens_per_sequence=tokens)


@dataclass
class TrainingPlan:
    """Per-device bytes at the step's peak; the parts add up to ``total``."""

    recipe: str
    size: str
    layout: str
    precision: str
    strategy: str
    devices: int
    activation_checkpointing: bool
    shape: TokenShape
    tokens_per_sequence: int
    parameters_count: int
    parameters: int
    optimizer_state: int
    gradients: int  # live at the peak (sharded with fsdp)
    activations: int  # live at the peak
    communication: int  # ddp gradient buckets / fsdp gathered layers
    total: int = field(init=False)

    def __post_init__(self):
        self.total = self.parameters + self.optimizer_state + self.gradients + self.activations + self.communication


def plan_training(cfg: LbvaConfig, shape: TokenShape, recipe: str = "") -> TrainingPlan:
    """Per-device peak memory of one training step of ``cfg`` (its precision, strategy, device count and activation
    checkpointing) on batches of ``shape``."""
    t = cfg.trainer
    devices = t.devices * t.num_nodes
    strategy = "ddp" if t.strategy == "auto" else t.strategy
    param_dtype, compute_dtype, autocast = precision_dtypes(t.precision)
    fsdp = strategy == "fsdp" and devices > 1
    # FSDP's mixed precision gathers parameters in the compute dtype: no autocast copies of the weights
    trace = trace_training_step(cfg, shape, compute_dtype if fsdp else param_dtype, autocast)
    param_bytes = torch.finfo(param_dtype).bits // 8
    n = trace.parameters
    params, grads, opt = n * param_bytes, n * param_bytes, 2 * n * param_bytes
    # the traced gradients, in the parameters' dtype (a fsdp trace ran in the compute dtype)
    scale = grads / trace.gradient_bytes
    share = devices if fsdp else 1
    moments = [(a + g * scale / share, a, g * scale / share) for a, g in zip(trace.activations, trace.gradients)]
    _, act, grad = max(moments)
    if fsdp:
        compute_bytes = torch.finfo(compute_dtype).bits // 8
        communication = 3 * trace.layer_parameters * compute_bytes
    else:
        communication = grads if devices > 1 else 0
    return TrainingPlan(
        recipe=recipe, size=cfg.model.size, layout=cfg.model.layout, precision=t.precision, strategy=strategy,
        devices=devices, activation_checkpointing=cfg.model.activation_checkpointing, shape=shape,
        tokens_per_sequence=trace.tokens_per_sequence, parameters_count=n,
        parameters=math.ceil(params / share), optimizer_state=math.ceil(opt / share), gradients=round(grad),
        activations=act, communication=communication)


# --------------------------------------------------------------------------------------------------- inference
@dataclass
class InferencePlan:
    """Bytes on the one device a streaming session runs on, at its peak; the parts add up to ``total``."""

    recipe: str
    size: str
    layout: str
    dtype: str
    window: str
    rows: int
    cache_tokens: int  # what the history holds (the window's capacity)
    parameters_count: int
    parameters: int
    kv_cache: int
    text_context: int
    activations: int  # live at the peak, besides the cache and the text keys/values
    cache_slack: int = 0  # slots beyond the capacity, for one query (LingBotVA.query_slack); in kv_cache
    total: int = field(init=False)

    def __post_init__(self):
        self.total = self.parameters + self.kv_cache + self.text_context + self.activations


def inference_dtype(precision: str) -> torch.dtype:
    """The dtype a policy trained with ``precision`` is served in: its compute dtype."""
    return precision_dtypes(precision)[1]


def plan_inference(cfg: LbvaConfig, shape: TokenShape, recipe: str = "") -> InferencePlan:
    """Peak memory of a streaming session of ``cfg``'s inference settings: the KV cache sized from
    ``inference.window``/``window_size`` is filled chunk by chunk (video, then actions, of ``shape.chunk_frames``
    frames; ``shape.batch`` is ignored), then one more chunk is queried; with classifier-free guidance
    (``video_cfg`` or ``action_cfg`` not 1) every call carries two text rows."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from lbva.models.attention import AttentionWindow

    dtype = inference_dtype(cfg.trainer.precision)
    inf = cfg.inference
    rows = 2 if (inf.video_cfg != 1 or inf.action_cfg != 1) else 1
    window = AttentionWindow(inf.window, inf.window_size)
    K, N = shape.chunk_frames, shape.actions_per_frame
    with FakeTensorMode(allow_non_fake_inputs=True):
        model = _fake_model(cfg, dtype).eval()
        arch = model.arch
        shape.video_tokens(arch.patch_size)  # refuses a latent size the patch does not divide
        video, actions = model.chunk_tokens(shape.height, shape.width, K, N)
        capacity = window.capacity_tokens(video, actions)
        params = sum(p.numel() for p in model.parameters())
        param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        with _disable_current_modes():  # the cache's slot bookkeeping is real (and tiny); its buffers are traced
            slack = model.query_slack(shape.height, shape.width, K, N)
            cache = model.new_cache(capacity, window, rows=rows, slack=slack)
        tracer = LiveBytes()
        with tracer, torch.no_grad():
            tkv = model.text_context(torch.randn(rows, _text_length(cfg), arch.text_dim, dtype=dtype))
            text_bytes = sum(k.untyped_storage().nbytes() + v.untyped_storage().nbytes() for k, v in tkv)
            def chunk_of(frames):
                return (torch.randn(rows, arch.in_channels, frames, shape.height, shape.width, dtype=dtype),
                        torch.randn(rows, frames, N, arch.action_dim, dtype=dtype), torch.zeros(rows, frames, dtype=dtype))

            # the history the cache holds, written at once, then one chunk: queried, written, evicting the oldest
            held = capacity // (video + actions) - 1
            if held:
                x, a, sigma = chunk_of(held * K)
                model.stream(cache, tkv, "video", x, sigma, chunk=0, chunk_size=K, write=(0, "video", False))
                model.stream(cache, tkv, "actions", a, sigma, chunk=0, chunk_size=K, write=(0, "actions", False))
            x, a, sigma = chunk_of(K)
            steady = len(tracer.events)
            for modality, value in (("video", x), ("actions", a)):
                model.stream(cache, tkv, modality, value, sigma, chunk=held, chunk_size=K)
                model.stream(cache, tkv, modality, value, sigma, chunk=held, chunk_size=K, write=(held, modality, False))
            cache_bytes = sum(t.untyped_storage().nbytes() for t in cache._k + cache._v)
    peak = tracer.peak(since=steady)
    return InferencePlan(
        recipe=recipe, size=cfg.model.size, layout=cfg.model.layout, dtype=str(dtype).removeprefix("torch."),
        window=f"{inf.window} {inf.window_size}", rows=rows, cache_tokens=capacity, parameters_count=params,
        parameters=param_bytes, kv_cache=cache_bytes, text_context=text_bytes,
        activations=peak - cache_bytes - text_bytes, cache_slack=slack)
