"""``LingBotVA.inference_layout``: every CPU linear weight laid out input-major, nothing else changed — the same values,
state_dict, saved file and (within float rounding) outputs; training still works on it. (The Policy applies it:
tests/inference/test_policy.py.)"""

import copy

import pytest
import torch
from torch import nn

from model_inputs import full_inputs, tiny_model

from lbva.models import LingBotVA


def _linears(model):
    return {name: m.weight for name, m in model.named_modules() if isinstance(m, nn.Linear)}


@pytest.mark.parametrize("layout", ["shared", "mot"])
def test_values_and_state_dict_are_unchanged_and_every_linear_is_input_major(layout):
    model = tiny_model(layout)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert model.inference_layout() is model
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k
    weights = _linears(model)
    assert len(weights) > 10
    for name, w in weights.items():
        if w.shape[0] > 1:  # a one-row weight has a single layout
            assert not w.is_contiguous() and w.t().is_contiguous(), name
    model.inference_layout()  # idempotent: still the transpose of a contiguous matrix, values unchanged
    for name, w in _linears(model).items():
        assert w.t().is_contiguous(), name
        assert torch.equal(w, before[f"{name}.weight"]), name


@pytest.mark.parametrize("layout", ["shared", "mot"])
def test_outputs_equal_the_standard_layout(layout):
    ref = tiny_model(layout)
    fast = copy.deepcopy(ref).inference_layout()
    inp = full_inputs(3)
    with torch.no_grad():
        a, b = ref(**inp, chunk_size=1), fast(**inp, chunk_size=1)
    torch.testing.assert_close(b.video, a.video, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.actions, a.actions, rtol=1e-5, atol=1e-5)
    # a streaming query with two rows (CFG), the few-row call the layout is for
    text = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(3))
    outs = []
    for m in (ref, fast):
        cache, tkv = m.new_cache(200), m.text_context(text)
        with torch.no_grad():
            m.stream(cache, tkv, "video", inp["clean_video"][:, :, :1].repeat(2, 1, 1, 1, 1), torch.zeros(2, 1), 0, 1,
                     write=(0, "video", False))
            outs.append(m.stream(cache, tkv, "actions", inp["noisy_actions"][:, 1:2].repeat(2, 1, 1, 1),
                                 torch.full((2, 1), 0.5), 1, 1))
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)


def test_a_saved_model_reloads_with_the_same_weights(tmp_path):
    model = tiny_model().inference_layout()
    model.save_pretrained(tmp_path / "m")
    back = LingBotVA.from_pretrained(tmp_path / "m")
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_training_on_the_layout_gives_the_standard_gradients():
    ref = tiny_model().train()
    fast = copy.deepcopy(ref).inference_layout().train()
    inp = full_inputs(2, seed=5)
    for m in (ref, fast):
        out = m(**inp, chunk_size=1)
        (out.video.square().mean() + out.actions.square().mean()).backward()
    grads = dict(fast.named_parameters())
    for name, p in ref.named_parameters():
        torch.testing.assert_close(grads[name].grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)
