"""Reports and summaries are strict JSON: a non-finite number is written as null, never as NaN/Infinity."""

import json
import math

import numpy as np
import pytest

from lbva import strict_json
from lbva.eval.report import write_report
from lbva.eval.rollout import EpisodeResult


def strict_loads(text: str):
    def refuse(literal):
        raise ValueError(f"non-standard JSON literal {literal}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_and_numpy_values_become_standard_json():
    obj = {"a": float("nan"), "b": [1.0, float("inf"), -float("inf")], "c": np.float32(0.5), "d": np.array([1, 2]),
           "e": (np.nan, 3), "f": {"g": np.float64("nan")}}
    assert strict_loads(strict_json.dumps(obj)) == {"a": None, "b": [1.0, None, None], "c": 0.5, "d": [1, 2],
                                                    "e": [None, 3], "f": {"g": None}}
    assert "NaN" in json.dumps({"a": float("nan")})  # what the standard library writes by default


def test_an_evaluation_report_with_undefined_numbers_parses_strictly(tmp_path):
    r = EpisodeResult(task="reach-v3", episode=0, seed=1, success=False, progress=0.0, steps=0,
                      reward=float("nan"), safety_events=0, safety_reasons=[], frames=None)
    write_report([r], tmp_path, tensorboard=False, settings={"max_delta": float("inf")})
    data = strict_loads((tmp_path / "results.json").read_text())
    assert data["settings"]["max_delta"] is None
    assert data["episodes"][0]["reward"] is None
    assert not any(isinstance(v, float) and not math.isfinite(v) for v in data["episodes"][0].values())


def test_strict_dumps_refuses_what_cannot_be_made_standard():
    with pytest.raises(TypeError):
        strict_json.dumps({"x": object()})
