"""`lbva bench model`'s kv_cache_vs_recompute key: which chunks it times, that the cached query it times gives the
recompute's actions, and what it prints (no timing is asserted)."""

import pytest

from lbva.bench import model as bench
from lbva.models.attention import Attend


def test_the_key_times_the_papers_chunk_and_single_frames_and_the_cached_query_equals_the_recompute(monkeypatch):
    monkeypatch.setattr(bench, "HISTORIES", (2,))
    monkeypatch.setattr(bench, "FAST_REPEATS", 1)
    monkeypatch.setattr(bench, "CACHED_CALLS", 1)
    seen = []  # the query length of every attention call, to check the token counts the entries state
    call = Attend.__call__
    monkeypatch.setattr(Attend, "__call__", lambda self, q, k, v: seen.append(q.shape[1]) or call(self, q, k, v))
    kv = bench.kv_cache_vs_recompute("cpu", True, 1, lambda: None)
    lengths = set(seen)
    assert list(kv) == ["2", "2 1-frame"]
    four, one = kv["2"], kv["2 1-frame"]
    assert four["history_chunks"] == one["history_chunks"] == 2
    assert (four["chunk_frames"], four["query_tokens"]) == (4, 16)  # K = 4 latent frames of τ = 4 actions
    assert (one["chunk_frames"], one["query_tokens"]) == (1, 4)
    # 8×8 latents, patch 2: 16 video tokens a frame; 3 chunks of K frames, each with its clean video (16·K), clean
    # actions (4·K) and noisy actions (4·K), as the training forward lays them out
    assert four["recompute_tokens"] == 3 * 24 * 4 and one["recompute_tokens"] == 3 * 24
    # what the model attended: those two recomputes, the two queries, and the history writes of 16·K and 4·K tokens
    assert lengths == {288, 72, 16, 4, 64}
    for entry in (four, one):
        assert entry["max_abs_difference"] < 1e-5  # the cache answers what the full forward answers
        assert entry["ratio"] == pytest.approx(entry["cache_s"] / entry["recompute_s"])
        assert entry["repeats"] >= bench.MIN_REPEATS


def _entry(ratio, frames):
    return {"history_chunks": 32, "ratio": ratio, "ratio_min": ratio, "cache_s": 0.01, "recompute_s": 0.01 / ratio, "chunk_frames": frames,
            "query_tokens": 4 * frames, "recompute_tokens": 100, "max_abs_difference": 1e-7, "repeats": 21}


def test_lines_name_the_chunk_size_and_the_goal_reads_the_papers_chunk():
    entries = {"32": _entry(0.02, 4), "32 1-frame": _entry(0.08, 1)}
    lines = bench.kv_cache_lines(entries)
    assert lines[0].startswith("kv_cache_vs_recompute[32 chunks of 4 latent frames]: 0.020×")
    assert lines[1].startswith("kv_cache_vs_recompute[32 chunks of 1 latent frame]: 0.080×")
    assert "16-token query" in lines[0] and "4-token query" in lines[1]
    base = {"chunk_vs_lerobot": {"16": {"outputs_equal": False}},
            "train_step_mfu": {"size": "stand-in", "mfu": 0.5, "layers": 2, "dim": 64}}
    goal = bench.goal_lines({**base, "kv_cache_vs_recompute": entries})[1]
    assert "measured 0.020×: met (with 1-frame chunks 0.080×)" in goal
    goal = bench.goal_lines({**base, "kv_cache_vs_recompute": {"32": _entry(0.06, 4), "32 1-frame": _entry(0.01, 1)}})[1]
    assert "measured 0.060×: not met" in goal  # the verdict is the paper chunk's, whatever the 1-frame ratio
