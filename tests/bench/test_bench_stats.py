"""The bench's pairing of timings: interleaved, warm-up excluded, back-to-back inner calls divided out."""

import itertools

from lbva.bench import model


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_pair_stats_times_each_call_with_inner_calls_divided_out(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(model.time, "perf_counter", clock)
    calls = {"a": 0, "b": 0}
    a_costs = itertools.cycle([1.0, 3.0])  # a's calls alternate 1 s and 3 s: 4 back-to-back calls average 2 s

    def fa():
        calls["a"] += 1
        clock.now += next(a_costs)

    def fb():
        calls["b"] += 1
        clock.now += 5.0 if calls["b"] > 2 else 100.0  # the two warm-up calls are slow and must not count

    st = model._pair_stats(fa, fb, repeats=6, sync=lambda: None, warmup=2, inner_a=4)
    assert calls == {"a": 2 + 6 * 4, "b": 2 + 6}
    assert st["repeats"] == 6
    assert st["a_median"] == st["a_min"] == 2.0
    assert st["b_median"] == st["b_min"] == 5.0
    entry = model._ratio_entry(st, "cache", "recompute")
    assert entry["ratio"] == 0.4 and entry["cache_s"] == 2.0


def test_pair_stats_takes_at_least_the_minimum_repeats(monkeypatch):
    monkeypatch.setattr(model.time, "perf_counter", FakeClock())
    st = model._pair_stats(lambda: None, lambda: None, repeats=1, sync=lambda: None)
    assert st["repeats"] == model.MIN_REPEATS


def test_interleaved_runs_the_functions_in_turn_each_round(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(model.time, "perf_counter", clock)
    order = []

    def make(name, cost):
        def fn():
            order.append(name)
            clock.now += cost
        return fn

    out = model._interleaved([make("a", 1.0), make("b", 2.0), make("c", 0.5)], repeats=5, sync=lambda: None,
                             warmup=1, inners=[1, 1, 3])
    assert order == ["a", "b", "c"] + ["a", "b", "c", "c", "c"] * 5
    assert out == [(1.0, 1.0), (2.0, 2.0), (0.5, 0.5)]
