"""What a reader looks at in an evaluation report: success bars that show 0 %, intervals on them, videos large
enough to see the gripper."""

import numpy as np
import pytest

from lbva.eval.intervals import wilson_interval
from lbva.eval.report import number, plot_rates, success_cell, upscale


def test_a_zero_success_bar_is_drawn_and_labelled(tmp_path, monkeypatch):
    import matplotlib.axes

    bars, texts, errorbars = [], [], []
    bar, text, errorbar = matplotlib.axes.Axes.bar, matplotlib.axes.Axes.text, matplotlib.axes.Axes.errorbar

    def spy_bar(self, x, height, *a, **kw):
        bars.append((np.atleast_1d(height).tolist(), kw.get("edgecolor")))
        return bar(self, x, height, *a, **kw)

    def spy_text(self, x, y, s, *a, **kw):
        texts.append(s)
        return text(self, x, y, s, *a, **kw)

    def spy_errorbar(self, x, y, yerr=None, *a, **kw):
        errorbars.append((y, yerr))
        return errorbar(self, x, y, yerr, *a, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "bar", spy_bar)
    monkeypatch.setattr(matplotlib.axes.Axes, "text", spy_text)
    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", spy_errorbar)
    low, high = wilson_interval(0, 20)
    path = plot_rates(["a", "b"], {"zero policy": [(0.0, low, high), (0.5, 0.3, 0.7)]}, tmp_path / "s.png", "t")
    assert path.read_bytes()[:4] == b"\x89PNG"
    stubs = [h for h, edge in bars if edge is not None]
    assert stubs and all(0 < v[0] < 0.05 for v in stubs)  # an outlined stub where the 0 % bar would be empty
    assert texts == ["0", "50"]  # every bar says its value
    assert errorbars[0][1] == [[0.0], [pytest.approx(high)]]  # the interval of 0 of 20 reaches 16 %


def test_videos_are_enlarged_by_a_whole_factor_without_blur():
    frames = np.arange(2 * 64 * 48 * 3, dtype=np.uint8).reshape(2, 64, 48, 3)
    big = upscale(frames, min_side=256)
    assert big.shape == (2, 384, 288, 3)  # 48 -> 288 needs a factor of 6 to reach 256 on the short side
    assert (big[:, ::6, ::6] == frames).all() and (big[:, 5::6, 5::6] == frames).all()
    assert upscale(np.zeros((1, 300, 300, 3), np.uint8)).shape == (1, 300, 300, 3)


def test_cells_say_dash_for_what_was_not_measured():
    assert number(float("nan")) == "–" and number(None) == "–" and number(0.1234, ".1f", scale=100) == "12.3"
    assert success_cell({"success_rate": 0.55, "episodes": 20}) == "55 % [34, 74]"
    assert success_cell({}) == "–"
