"""The chunk-causal mask, cell by cell on a real model, and streaming through the KV cache equals the full forward,
under both window semantics and past the point where the cache evicts."""

import itertools

import pytest
import torch

from model_inputs import A, N, full_inputs, tiny_model

from lbva.models.attention import AttentionWindow, token_visibility


def naive_visible(qi, qn, ki, kn, fdm=False, window=None):
    """The mask table of docs/architecture.md#the-attention-mask written out literally; ``window`` = (kind, size)."""
    if window is not None:
        kind, size = window
        if kind == "chunks" and qi // 2 - ki // 2 >= size:
            return False
        if kind == "released" and abs(qi - ki) > size:
            return False
    if not qn:  # clean query
        return (not kn) and ki <= qi
    if kn:
        return ki == qi
    if ki < qi:
        return True
    return fdm and qi % 2 == 0 and ki == qi + 1


WINDOWS = [None, ("chunks", 2), ("chunks", 1), ("released", 1), ("released", 2), ("released", 3), ("released", 6)]


@pytest.mark.parametrize("fdm", [False, True])
@pytest.mark.parametrize("window", WINDOWS)
def test_mask_spec_matches_the_table(fdm, window):
    ids = torch.arange(8).repeat_interleave(2)
    noisy = torch.tensor([False, True] * 8)
    m = token_visibility(ids, noisy, ids, noisy, fdm=fdm, window=None if window is None else AttentionWindow(*window))
    for a, b in itertools.product(range(16), range(16)):
        want = naive_visible(int(ids[a]), bool(noisy[a]), int(ids[b]), bool(noisy[b]), fdm, window)
        assert bool(m[a, b]) == want, (a, b)


def _released_training_layout(F, chunk_size, tokens_per_frame, actions_per_frame):
    """The released training sequence [noisy video, clean video, noisy actions, clean actions] with its frame ids
    (video frame f at 2·(f // chunk), action frame f at 2·(f // chunk) + 1) and noise ids (1 = clean)."""
    frame_v = [f // chunk_size * 2 for f in range(F) for _ in range(tokens_per_frame)]
    frame_a = [f // chunk_size * 2 + 1 for f in range(F) for _ in range(actions_per_frame)]
    frame_ids = frame_v + frame_v + frame_a + frame_a
    noise_ids = [0] * len(frame_v) + [1] * len(frame_v) + [0] * len(frame_a) + [1] * len(frame_a)
    return frame_ids, noise_ids


def released_training_visible(fq, nq, fk, nk, window_size):
    """The released training code's predicate, transcribed: clean→clean causal, noisy→clean strictly earlier,
    noisy→noisy same frame id, and |frame id distance| ≤ window_size."""
    rule = (nq == 1 and nk == 1 and fk <= fq) or (nq == 0 and nk == 1 and fk < fq) or (nq == 0 and nk == 0 and fk == fq)
    return rule and abs(fq - fk) <= window_size


@pytest.mark.parametrize("chunk_size,window_size", [(1, 4), (2, 4), (1, 5), (3, 2), (1, 1), (2, 64)])
def test_released_window_reproduces_the_released_training_mask_cell_by_cell(chunk_size, window_size):
    F = 6
    frame_ids, noise_ids = _released_training_layout(F, chunk_size, tokens_per_frame=2, actions_per_frame=3)
    ids = torch.tensor(frame_ids)
    noisy = torch.tensor(noise_ids) == 0
    ours = token_visibility(ids, noisy, ids, noisy, window=AttentionWindow("released", window_size))
    L = len(frame_ids)
    want = torch.tensor([[released_training_visible(frame_ids[q], noise_ids[q], frame_ids[k], noise_ids[k], window_size)
                          for k in range(L)] for q in range(L)])
    assert torch.equal(ours, want)
    if window_size < 2 * (F // chunk_size):  # the window hides something here, so the test has teeth
        assert not torch.equal(ours, token_visibility(ids, noisy, ids, noisy))


def test_no_whole_chunk_window_reproduces_the_released_one():
    """Why 'released' is a kind of its own: with size 4 a noisy action chunk 3 (id 7) sees the clean actions of chunk
    1 (id 3) but not its clean video (id 2); no whole-chunk window shows the one without the other."""
    frame_ids, noise_ids = _released_training_layout(8, 1, tokens_per_frame=1, actions_per_frame=1)
    ids, noisy = torch.tensor(frame_ids), torch.tensor(noise_ids) == 0
    released = token_visibility(ids, noisy, ids, noisy, window=AttentionWindow("released", 4))
    q = 16 + 3  # layout: noisy video 0-7, clean video 8-15, noisy actions 16-23, clean actions 24-31
    clean_actions_1, clean_video_1 = 24 + 1, 8 + 1
    assert released[q, clean_actions_1] and not released[q, clean_video_1]
    for w in range(1, 9):
        chunks = token_visibility(ids, noisy, ids, noisy, window=AttentionWindow("chunks", w))
        assert not torch.equal(chunks, released), w


def test_per_sequence_fdm_and_window_give_each_sequence_its_own_mask():
    ids = torch.arange(6).repeat_interleave(2)
    noisy = torch.tensor([False, True] * 6)
    fdm = torch.tensor([True, False, False])
    window = AttentionWindow("released", torch.tensor([1, 3, 10]))
    m = token_visibility(ids, noisy, ids, noisy, fdm=fdm, window=window)
    assert m.shape == (3, 12, 12)
    for b, (f, w) in enumerate([(True, 1), (False, 3), (False, 10)]):
        assert torch.equal(m[b], token_visibility(ids, noisy, ids, noisy, fdm=f, window=AttentionWindow("released", w)))


@pytest.fixture(scope="module")
def model():
    return tiny_model("shared")


@pytest.fixture(scope="module")
def models(model):
    return {"shared": model, "mot": tiny_model("mot")}


_inputs = full_inputs


# (which stream, which chunk) -> its slices: video frames [2c, 2c+2) or action frames
SEGMENTS = [(kind, copy, c) for kind in ("video", "actions") for copy in ("clean", "noisy") for c in range(3)]


def _perturb(inp, kind, copy, c, K=2):
    out = {k: v.clone() if torch.is_tensor(v) else v for k, v in inp.items()}
    key = f"{copy}_{'video' if kind == 'video' else 'actions'}"
    sl = slice(c * K, (c + 1) * K)
    if kind == "video":
        out[key][:, :, sl] += 3.0
    else:
        out[key][:, sl] += 3.0
    return out


@pytest.mark.parametrize("fdm", [False, True])
def test_outputs_see_exactly_the_allowed_chunks(model, fdm):
    """Perturb each key chunk; a query chunk's output changes iff the table allows it to see that chunk.

    Only noisy outputs are observable, so the clean→clean rows are checked through their effect: a clean chunk
    j is visible to a noisy query i when j < i (or fdm), and clean tokens only ever see clean ones."""
    K, F = 2, 6
    inp = _inputs(F)
    with torch.no_grad():
        base = model(**inp, chunk_size=K, fdm=fdm)
        for kind, copy, c in SEGMENTS:
            out = model(**_perturb(inp, kind, copy, c), chunk_size=K, fdm=fdm)
            kid = 2 * c + (kind == "actions")
            for qkind in ("video", "actions"):
                for qc in range(3):
                    qid = 2 * qc + (qkind == "actions")
                    sl = slice(qc * K, (qc + 1) * K)
                    a = base.video[:, :, sl] if qkind == "video" else base.actions[:, sl]
                    b = out.video[:, :, sl] if qkind == "video" else out.actions[:, sl]
                    changed = not torch.allclose(a, b, atol=1e-6)
                    if copy == "noisy":
                        want = kid == qid
                    else:
                        # clean id k reaches every clean id >= k (clean sees clean j <= i); a noisy query sees
                        # clean ids < qid, plus qid + 1 for fdm video: it changes iff one of those is >= k
                        highest_seen = qid + 1 if (fdm and qkind == "video") else qid - 1
                        want = kid <= highest_seen
                    assert changed == want, (kind, copy, c, qkind, qc, fdm)


def _capacity(model, K, window, n_chunks):
    lv, la = model.chunk_tokens(4, 4, K, N)
    return (n_chunks + 1) * (lv + la) if window is None else window.capacity_tokens(lv, la)


STREAM_WINDOWS = [(1, None), (2, None), (2, ("chunks", 2)), (3, ("chunks", 1)), (1, ("released", 1)),
                  (2, ("released", 2)), (2, ("released", 3)), (1, ("released", 5)), (2, ("released", 29))]


@pytest.mark.parametrize("layout", ["shared", "mot"])
@pytest.mark.parametrize("K,window", STREAM_WINDOWS)
def test_streaming_equals_full_forward(models, layout, K, window):
    """The released call order (video query, video written, action query, actions written; chunk by chunk) through a
    cache sized from the window — five chunks, so windows of up to two chunks evict — equals the full masked
    forward with that window for every query."""
    model = models[layout]
    window = None if window is None else AttentionWindow(*window)
    n_chunks = 5
    F = n_chunks * K
    inp = _inputs(F, seed=K)
    evicted = False
    with torch.no_grad():
        full = model(**inp, chunk_size=K, window=window)
        cache, tkv = model.new_cache(_capacity(model, K, window, n_chunks), window), model.text_context(inp["text"])
        for c in range(n_chunks):
            sl = slice(c * K, (c + 1) * K)
            uv = model.stream(cache, tkv, "video", inp["noisy_video"][:, :, sl], inp["video_sigma"][:, sl], c, K)
            torch.testing.assert_close(uv, full.video[:, :, sl], rtol=1e-5, atol=1e-5)
            model.stream(cache, tkv, "video", inp["clean_video"][:, :, sl], inp["clean_video_sigma"][:, sl], c, K,
                         write=(c, "video", False))
            ua = model.stream(cache, tkv, "actions", inp["noisy_actions"][:, sl], inp["action_sigma"][:, sl], c, K)
            torch.testing.assert_close(ua, full.actions[:, sl], rtol=1e-5, atol=1e-5)
            model.stream(cache, tkv, "actions", inp["clean_actions"][:, sl], torch.zeros(1, K), c, K,
                         write=(c, "actions", False))
            evicted = evicted or cache.tags()[0][0] > 0
    assert cache.size <= cache.capacity
    if window is not None and window.size <= 3:
        assert evicted, "the cache should have evicted within five chunks"
        assert not torch.allclose(full.actions, model(**inp, chunk_size=K).actions), "the window hides something"


@pytest.mark.parametrize("layout", ["shared", "mot"])
def test_per_sequence_fdm_and_windows_equal_one_forward_per_sequence(models, layout):
    """A batch whose sequences differ in forward dynamics and window size gives each sequence what it gets alone."""
    model = models[layout]
    a, b = _inputs(6, seed=1), _inputs(6, seed=2)
    both = {k: torch.cat([a[k], b[k]]) for k in a}
    with torch.no_grad():
        out = model(**both, chunk_size=2, fdm=torch.tensor([True, False]),
                    window=AttentionWindow("released", torch.tensor([2, 5])))
        alone = [model(**a, chunk_size=2, fdm=True, window=AttentionWindow("released", 2)),
                 model(**b, chunk_size=2, fdm=False, window=AttentionWindow("released", 5))]
        swapped = model(**a, chunk_size=2, fdm=False, window=AttentionWindow("released", 5))
    for i, ref in enumerate(alone):
        torch.testing.assert_close(out.video[i:i + 1], ref.video, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.actions[i:i + 1], ref.actions, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(swapped.video, alone[0].video, atol=1e-4)  # the variant matters for sequence 0
    with pytest.raises(ValueError, match=r"one entry per sequence, shape \(2,\)"):
        model(**both, chunk_size=2, fdm=torch.tensor([True, False, True]))


def test_dropping_imagined_entries_restores_the_history(model):
    K = 2
    inp = _inputs(4, seed=7)
    with torch.no_grad():
        cache, tkv = model.new_cache(64), model.text_context(inp["text"])
        model.stream(cache, tkv, "video", inp["clean_video"][:, :, :2], torch.zeros(1, 2), 0, K, write=(0, "video", False))
        before = model.stream(cache, tkv, "actions", inp["noisy_actions"][:, :2], inp["action_sigma"][:, :2], 0, K)
        model.stream(cache, tkv, "actions", torch.randn(1, 2, N, A), torch.zeros(1, 2), 0, K, write=(0, "actions", True))
        cache.drop(0, "actions", imagined_only=True)
        after = model.stream(cache, tkv, "actions", inp["noisy_actions"][:, :2], inp["action_sigma"][:, :2], 0, K)
    assert cache.tags() == [(0, "video", False)]
    torch.testing.assert_close(before, after)


def test_every_layer_attends_over_the_cache_buffer_in_place(model, monkeypatch):
    """No per-layer concatenation of the history: the keys/values each layer's attention reads are views of the one
    preallocated buffer (same storage), whose storage never changes however many chunks stream through."""
    import lbva.models.lingbot_va as lv

    K = 2
    window = AttentionWindow("released", 3)
    inp = _inputs(12, seed=11)
    seen = []
    real_attend = lv.Attend

    class Spy(real_attend):
        def __call__(self, q, k, v):
            seen.append((k.untyped_storage().data_ptr(), v.untyped_storage().data_ptr(), k.shape[1]))
            return super().__call__(q, k, v)

    monkeypatch.setattr(lv, "Attend", Spy)
    with torch.no_grad():
        cache = model.new_cache(window.capacity_tokens(*model.chunk_tokens(4, 4, K, N)), window)
        tkv = model.text_context(inp["text"])
        buffers = None
        for c in range(6):
            sl = slice(c * K, (c + 1) * K)
            model.stream(cache, tkv, "video", inp["noisy_video"][:, :, sl], inp["video_sigma"][:, sl], c, K)
            model.stream(cache, tkv, "video", inp["clean_video"][:, :, sl], torch.zeros(1, K), c, K,
                         write=(c, "video", False))
            model.stream(cache, tkv, "actions", inp["clean_actions"][:, sl], torch.zeros(1, K), c, K,
                         write=(c, "actions", False))
            now = [(k.untyped_storage().data_ptr(), v.untyped_storage().data_ptr()) for k, v in zip(cache._k, cache._v)]
            buffers = buffers or now
            assert now == buffers  # allocated once, never reallocated
    layers = len(model.blocks)
    assert len(seen) == 6 * 3 * layers
    for call in range(0, len(seen), layers):
        for i in range(layers):
            assert seen[call + i][:2] == buffers[i]
    assert max(s for _, _, s in seen) == cache.capacity  # keys read span the buffer, never more


def test_save_load_round_trip_is_exact(model, tmp_path):
    from lbva.models import LingBotVA

    model.save_pretrained(tmp_path / "m")
    again = LingBotVA.from_pretrained(tmp_path / "m")
    for (k, v), (k2, v2) in zip(model.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    inp = _inputs(2)
    with torch.no_grad():
        torch.testing.assert_close(model(**inp, chunk_size=1).video, again(**inp, chunk_size=1).video, rtol=0, atol=0)
