"""`lbva bench model`'s chunk_vs_lerobot key: lbva's and LeRobot's closed loops give the same actions on the same
weights, inputs and injected noise, and the key reports a ratio only then (no timing is asserted).

Histories of 1 and 2 chunks on the quick (tiny) models keep it short; the bench runs 4, 16 and 32.
"""

import pytest
import torch

from lbva.bench import lerobot_chunk, model

HISTORIES = (1, 2)


def _measure(monkeypatch, compiled=()):
    monkeypatch.setattr(model, "HISTORIES", HISTORIES)
    monkeypatch.setattr(model, "COMPILED_HISTORIES", compiled)
    return model.chunk_vs_lerobot(torch.device("cpu"), quick=True, reps=1, sync=lambda: None)


def test_reports_a_ratio_per_history_where_the_actions_agree(monkeypatch):
    entries = _measure(monkeypatch)
    assert list(entries) == [str(h) for h in HISTORIES]
    for hist, e in zip(HISTORIES, entries.values()):
        assert e["outputs_equal"] and e["max_abs_difference"] <= lerobot_chunk.TOLERANCE["atol"]
        # every chunk compared: grown past the history, then 2 warm-ups and the timed repeats of each side
        assert e["chunks_compared"] == hist + 1 + 2 + e["repeats"] and e["repeats"] == model.FAST_REPEATS
        assert e["cache_chunks"] == hist and e["device"] == "cpu" and e["size"] == "tiny"
        assert e["ratio"] > 0 and e["ratio_min"] > 0 and e["lbva_s"] > 0 and e["lerobot_s"] > 0
    lines = model.chunk_vs_lerobot_lines(entries)
    assert len(lines) == len(HISTORIES)
    assert all("×) LeRobot's closed-loop chunk time" in line and "NO RATIO" not in line for line in lines)


@pytest.mark.slow
def test_lbva_with_model_compile_gives_lerobots_actions_too(monkeypatch):
    """The compiled entry: lbva's blocks through torch.compile (inductor) still give LeRobot's actions, so the
    ratio is reported, under its own key and line, and the goal line shows it beside the eager verdict."""
    monkeypatch.setattr(model, "HISTORIES", ())
    monkeypatch.setattr(model, "COMPILED_HISTORIES", ("1",))
    entries = model.chunk_vs_lerobot(torch.device("cpu"), quick=True, reps=1, sync=lambda: None)
    assert list(entries) == ["1 compiled"]
    e = entries["1 compiled"]
    assert e["compiled"] and e["outputs_equal"] and e["ratio"] > 0
    assert e["max_abs_difference"] <= lerobot_chunk.TOLERANCE["atol"]
    (line,) = model.chunk_vs_lerobot_lines(entries)
    assert line.startswith("chunk_vs_lerobot[1 chunks, lbva with model.compile]: ")
    eager = dict(e, compiled=False, ratio=0.9)
    monkeypatch.setattr(model, "GOAL_CHUNK_VS_LEROBOT", ("1", 0.6))
    goals = model.goal_lines({"chunk_vs_lerobot": {"1": eager, "1 compiled": dict(e, ratio=0.5)},
                              "kv_cache_vs_recompute": {"32": {"ratio": 0.01}},
                              "train_step_mfu": {"mfu": 0.7, "layers": 2, "dim": 64, "size": "small"}})
    assert "eager (lbva's default) measured 0.900×: not met; with model.compile measured 0.500×: met" in goals[0]
    assert goals[0].startswith("goal: chunk ≤ 0.6× LeRobot's at 1 history chunks (tiny's transformer): ")  # --quick's


def test_the_injected_noise_decides_the_actions():
    """The agreement is not a fixed point of the loop: other noise gives other actions on both sides."""
    pair = lerobot_chunk.SideBySide(1, quick=True)
    pair.grow()
    other = lerobot_chunk.SideBySide(1, quick=True)
    other.noise.seed = 1
    other.grow()
    assert pair.agreement()["outputs_equal"] and other.agreement()["outputs_equal"]
    for side in ("lbva", "lerobot"):
        assert abs(pair.outputs[side][-1] - other.outputs[side][-1]).max() > 1e-3


def test_refuses_a_ratio_when_one_side_has_another_weight(monkeypatch):
    loaded = lerobot_chunk.lbva_policy

    def perturbed(*args):
        policy = loaded(*args)
        with torch.no_grad():
            next(policy.model.parameters()).add_(0.05)  # one weight tensor, lbva's side only
        return policy

    monkeypatch.setattr(lerobot_chunk, "lbva_policy", perturbed)
    entries = _measure(monkeypatch)
    for e in entries.values():
        assert not e["outputs_equal"] and e["max_abs_difference"] > lerobot_chunk.TOLERANCE["atol"]
        assert not {"ratio", "ratio_min", "lbva_s", "lerobot_s"} & set(e)
    lines = model.chunk_vs_lerobot_lines(entries)
    assert all("NO RATIO" in line and "×" not in line for line in lines)
    monkeypatch.setattr(model, "GOAL_CHUNK_VS_LEROBOT", ("2", 0.6))
    goals = model.goal_lines({"chunk_vs_lerobot": entries, "kv_cache_vs_recompute": {"32": {"ratio": 0.01}},
                              "train_step_mfu": {"mfu": 0.7, "layers": 2, "dim": 64, "size": "small"}})
    assert "not measured (the actions differ)" in goals[0]
    assert goals[1].endswith(": met") and goals[2].endswith(": met")
