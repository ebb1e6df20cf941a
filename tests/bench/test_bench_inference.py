"""`lbva bench inference`'s long session: each chunk's wall-clock and processor time, and the cache held to its window."""

from lbva.bench import inference as bench


def test_a_long_session_records_both_clocks_per_chunk_and_keeps_the_cache_within_its_window():
    stack = bench._stack("tiny", "metaworld-sawyer")
    times, cpu, memory = bench._session_latencies(stack, 5, window="chunks", window_size=2)
    assert len(times) == len(cpu) == 5
    assert all(t > 0 for t in times) and all(c > 0 for c in cpu)  # process_time advanced: the chunk computed here
    assert 0 < memory["tokens_held"] <= memory["capacity_tokens"] and memory["buffer_mb"] > 0
    _, _, wide = bench._session_latencies(stack, 5, window="chunks", window_size=6)
    assert wide["tokens_held"] > memory["tokens_held"]  # the narrow window evicted; the wide one kept everything


def test_only_runs_the_named_measurements_and_refuses_unknown_ones(tmp_path, capsys):
    import argparse
    import json

    import pytest

    from lbva.cli import main

    assert main(["bench", "inference", "--quick", "--only", "denoise", "--repeats", "1",
                 "--json", str(tmp_path / "r.json")]) == 0
    results = json.loads((tmp_path / "r.json").read_text())
    assert "partial_vs_full_denoise" in results
    assert not {"latency", "long_session", "async_vs_sync_idle", "server_vs_inprocess"} & set(results)
    with pytest.raises(argparse.ArgumentTypeError, match="long_session"):
        bench._parts("latency,sessions")
