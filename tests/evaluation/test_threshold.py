import numpy as np
import pytest

from alime.evaluation.threshold import (
    ThresholdRule,
    choose_threshold,
    generation_threshold,
    plot_sweep,
    sweep,
    sweep_point,
    threshold_grid,
    top_outcomes,
)


def _data():
    # Four groups: best scores 0.9 (right), 0.7 (right), 0.5 (wrong), 0.3 (wrong).
    scores = [[0.9, 0.1], [0.2, 0.7], [0.5, 0.4], [0.3, 0.3]]
    return top_outcomes(scores, [0, 1, 1, 0])


def test_top_outcomes_count_a_tie_as_wrong():
    best, correct = _data()
    assert best.tolist() == [0.9, 0.7, 0.5, 0.3]
    assert correct.tolist() == [True, True, False, False]


def test_sweep_points_at_the_boundaries():
    best, correct = _data()
    at = sweep_point(best, correct, 0.7)  # >= T answers: 0.9 and 0.7
    assert (at.n_answered, at.answered, at.precision) == (2, 0.5, 1.0)
    just_above = sweep_point(best, correct, 0.7000001)
    assert (just_above.answered, just_above.precision) == (0.25, 1.0)
    below = sweep_point(best, correct, 0.5)
    assert below.answered == 0.75 and below.precision == pytest.approx(2 / 3)
    none = sweep_point(best, correct, 1.0)
    assert none.precision is None and none.f1 == 0.0


def test_choose_threshold_rules():
    best, correct = _data()
    points = sweep(best, correct, threshold_grid(best))
    assert [p.threshold for p in points] == [0.3, 0.5, 0.7, 0.9]
    assert choose_threshold(points, ThresholdRule.PRECISION, 0.8, min_answered=1).threshold == 0.7
    assert choose_threshold(points, ThresholdRule.PRECISION, 2 / 3, min_answered=1).threshold == 0.5
    assert choose_threshold(points, ThresholdRule.PRECISION, 0.8, min_answered=3).threshold == 0.5
    # F1: 0.3 -> 2/3, 0.5 -> 2*(2/3)*.75/(2/3+.75) = 12/17, 0.7 -> 2/3, 0.9 -> 0.4
    assert choose_threshold(points, ThresholdRule.MAX_F).threshold == 0.5
    fallback = choose_threshold(points[:1], ThresholdRule.PRECISION, 0.9, min_answered=1)
    assert "max F1 instead" in fallback.rule


def test_grid_is_thinned():
    grid = threshold_grid(np.linspace(0, 1, 1000), points=11)
    assert len(grid) == 11 and grid[0] == 0.0 and grid[-1] == 1.0


def test_generation_threshold_quantile():
    assert generation_threshold([0.1, 0.2, 0.3, 0.4, 0.5], 0.25) == pytest.approx(0.2)
    assert generation_threshold([0.4, float("nan")], 0.1) == pytest.approx(0.4)
    with pytest.raises(ValueError):
        generation_threshold([], 0.1)


def test_plot_writes_png(tmp_path):
    best, correct = _data()
    points = sweep(best, correct, threshold_grid(best))
    plot_sweep(points, choose_threshold(points), tmp_path / "t.png", "tiny")
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
