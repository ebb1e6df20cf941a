"""Classifier-free guidance and sampler determinism."""

import pytest
import torch
from standin_model import StandInVA

from lbva.objectives import SamplerConfig, guided, sample_chunk


def test_cfg_scale_one_equals_the_conditional_prediction_even_when_batched():
    torch.manual_seed(0)
    model = StandInVA()
    x = torch.randn(2, 2, 2, 2, 2)
    sig = torch.full((2, 2), 0.7)
    text, null = torch.randn(2, 3, 4), torch.randn(3, 4)

    def predict(t):
        r = t.shape[0] // 2
        return model(noisy_video=x.repeat(r, 1, 1, 1, 1), video_sigma=sig.repeat(r, 1), text=t).video

    cond = predict(text)
    assert torch.allclose(guided(predict, text, null, 1.0, always_batch=True), cond, atol=1e-6)
    # a scale other than one: uncond + s (cond − uncond) computed from two separate calls
    uncond = predict(null.expand(2, 3, 4))
    assert torch.allclose(guided(predict, text, null, 3.0), uncond + 3.0 * (cond - uncond), atol=1e-5)
    assert not torch.allclose(guided(predict, text, null, 3.0), cond, atol=1e-3)


def test_sampler_is_deterministic_for_a_seed_and_respects_chunk_history():
    torch.manual_seed(0)
    model = StandInVA()
    text = torch.randn(1, 3, 4)
    hist_v, hist_a = torch.randn(1, 2, 2, 2, 2), torch.randn(1, 2, 2, 30)
    sc = SamplerConfig(video_steps=3, action_steps=4, video_stop_sigma=0.4, video_cfg=2.0, action_cfg=1.5,
                       video_shift=5.0, action_shift=1.0)
    run = lambda seed: sample_chunk(model, text, 2, (2, 2, 2), 2, history_video=hist_v, history_actions=hist_a,
                                    config=sc, generator=torch.Generator().manual_seed(seed))
    v1, a1 = run(7)
    v2, a2 = run(7)
    v3, _ = run(8)
    assert v1.shape == (1, 2, 2, 2, 2) and a1.shape == (1, 2, 2, 30)
    assert torch.equal(v1, v2) and torch.equal(a1, a2) and not torch.equal(v1, v3)
    # actions saw the partially denoised video at σ = stop
    last = model.calls[-1]["clean_video_sigma"]
    assert torch.allclose(last[:, 2:], torch.full((1, 2), 0.4)) and torch.all(last[:, :2] == 0)
    with pytest.raises(ValueError, match="multiple of the chunk size"):
        sample_chunk(model, text, 2, (2, 2, 2), 2, history_video=torch.randn(1, 2, 3, 2, 2), config=sc)
