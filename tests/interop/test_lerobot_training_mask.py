"""LeRobot's lingbot_va training mask (its flex mask_mod, evaluated densely on the CPU) against lbva's mask spec.

LeRobot lays a training sequence out as [noisy video, clean video, noisy actions, clean actions] with
``frame_ids`` = 2·chunk (video) / 2·chunk + 1 (actions) and ``noise_ids`` 0 = noisy, 1 = clean. Without a window
the two masks are the same cell by cell, and with lbva's ``released`` window of the same size they are the same
too: both keep keys with |id_q − id_k| ≤ w, counting video and action ids separately. lbva's ``chunks`` window
(the last W whole chunks) is a different rule, which no size makes equal.
"""

import pytest
import torch

from lbva.models.attention import AttentionWindow, token_visibility


def _layout(F: int, N: int, tokens_per_frame: int, chunk_size: int):
    """ids, noisy flags for [noisy video, clean video, noisy actions, clean actions]."""
    frame = torch.arange(F)
    v_ids = (frame // chunk_size * 2).repeat_interleave(tokens_per_frame)
    a_ids = (frame // chunk_size * 2 + 1).repeat_interleave(N)
    ids = torch.cat([v_ids, v_ids, a_ids, a_ids])
    noisy = torch.cat([torch.ones_like(v_ids), torch.zeros_like(v_ids), torch.ones_like(a_ids), torch.zeros_like(a_ids)]).bool()
    return ids, noisy


def _lerobot_dense(ids, noisy, window):
    from lerobot.policies.lingbot_va.utils import FlexAttnFunc

    L = ids.numel()
    seq_ids = torch.zeros(L, dtype=torch.long)  # one sample
    noise_ids = (~noisy).long()  # LeRobot: 1 = clean (condition), 0 = noisy
    mod = FlexAttnFunc._get_mask_mod(seq_ids, ids.long(), noise_ids, window)
    q = torch.arange(L)[:, None].expand(L, L)
    k = torch.arange(L)[None, :].expand(L, L)
    zero = torch.zeros((), dtype=torch.long)
    return mod(zero, zero, q, k)


def test_no_window_masks_are_identical_cell_by_cell():
    for chunk_size in (1, 2, 3):
        ids, noisy = _layout(F=6, N=3, tokens_per_frame=2, chunk_size=chunk_size)
        theirs = _lerobot_dense(ids, noisy, window=10_000)
        ours = token_visibility(ids, noisy, ids, noisy)
        assert torch.equal(theirs, ours), chunk_size


@pytest.mark.parametrize("chunk_size,window", [(1, 4), (1, 3), (2, 4), (3, 1), (1, 64)])
def test_released_window_is_lerobots_training_window_cell_by_cell(chunk_size, window):
    ids, noisy = _layout(F=8, N=2, tokens_per_frame=2, chunk_size=chunk_size)
    theirs = _lerobot_dense(ids, noisy, window=window)
    ours = token_visibility(ids, noisy, ids, noisy, window=AttentionWindow("released", window))
    assert torch.equal(theirs, ours)


def test_whole_chunk_windows_differ_exactly_as_documented():
    ids, noisy = _layout(F=8, N=2, tokens_per_frame=1, chunk_size=1)
    w_lerobot, w_lbva = 3, 2  # LeRobot counts ids (2 per chunk), lbva's chunks window counts chunks
    theirs = _lerobot_dense(ids, noisy, window=w_lerobot)
    ours = token_visibility(ids, noisy, ids, noisy, window=AttentionWindow("chunks", w_lbva))
    full = token_visibility(ids, noisy, ids, noisy)
    qi, ki = ids[:, None], ids[None, :]
    # LeRobot's rule, written out: the unwindowed table AND |id_q - id_k| <= w
    assert torch.equal(theirs, full & ((qi - ki).abs() <= w_lerobot))
    # lbva's chunks rule: the unwindowed table AND chunk_q - chunk_k < W
    assert torch.equal(ours, full & ((qi // 2 - ki // 2) < w_lbva))
    # where they disagree: a video query sees action keys one chunk older under LeRobot's id window
    diff = theirs & ~ours
    assert diff.any() and bool(((qi % 2 == 0) & (ki % 2 == 1) & (qi // 2 - ki // 2 == w_lbva))[diff].all())
    assert not (ours & ~theirs).any()
