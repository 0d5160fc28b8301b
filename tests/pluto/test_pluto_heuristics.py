"""Heuristics on synthetic curves (pure Python, no TensorFlow)."""

from __future__ import annotations

import pytest

from pluto import heuristics as h
from pluto.comm import ring_allreduce_bytes


def saturating(capacity: int | None = None, knee: float = 64.0):
    """Throughput that saturates around ``knee`` examples; ``None`` past ``capacity``."""

    def measure(batch: int) -> float | None:
        if capacity is not None and batch > capacity:
            return None
        return 1000.0 * batch / (batch + knee)

    return measure


def test_batch_size_stops_when_gain_falls_below_margin():
    # 1000b/(b+64): 16->200, 32->333, 64->500, 128->667, 256->800 (+20%), 512->889 (+11%)
    assert h.select_batch_size(saturating(), [16, 32, 64, 128, 256, 512], margin=0.15) == 256
    assert h.select_batch_size(saturating(), [16, 32, 64, 128, 256, 512], margin=0.10) == 512


def test_batch_size_respects_memory_limit():
    assert h.select_batch_size(saturating(capacity=100), [16, 32, 64, 128, 256]) == 64

    def oom(batch: int) -> float:
        if batch > 32:
            raise MemoryError
        return float(batch)

    assert h.select_batch_size(oom, [8, 16, 32, 64]) == 32
    with pytest.raises(ValueError, match="fits"):
        h.select_batch_size(saturating(capacity=1), [16, 32])


def test_learning_rate_scaling_and_warmup():
    assert h.scaled_learning_rate(0.1, 4, "linear") == pytest.approx(0.4)
    assert h.scaled_learning_rate(0.1, 4, "sqrt") == pytest.approx(0.2)
    assert h.scaled_learning_rate(0.1, 4, "none") == pytest.approx(0.1)
    with pytest.raises(ValueError, match="linear"):
        h.scaled_learning_rate(0.1, 4, "cubic")
    assert h.warmup_learning_rate(0, 0.4, 0.1, 10) == pytest.approx(0.1)
    assert h.warmup_learning_rate(5, 0.4, 0.1, 10) == pytest.approx(0.25)
    assert h.warmup_learning_rate(10, 0.4, 0.1, 10) == pytest.approx(0.4)


def test_plateau_halves_after_patience():
    red = h.PlateauReducer(factor=0.5, patience=2, min_delta=0.01)
    scales = [red.update(v) for v in [3.0, 2.5, 2.49, 2.48, 2.0, 1.99, 1.99]]
    assert scales == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]


def test_adaptive_period_follows_drift():
    period = h.AdaptivePeriod(period=4, min_period=1, max_period=16, low=0.01, high=0.1)
    assert [period.update(d) for d in [0.001, 0.001, 0.001, 0.05, 0.5, 0.5, 0.5, 0.5]] == [
        8,
        16,
        16,
        16,
        8,
        4,
        2,
        1,
    ]
    with pytest.raises(ValueError):
        h.AdaptivePeriod(period=0)


def test_ring_allreduce_bytes():
    assert ring_allreduce_bytes(1000, 4) == pytest.approx(1500)
    assert ring_allreduce_bytes(1000, 1) == 0


def test_schedule_reaches_four_times_the_rate_and_halves_on_a_flat_curve():
    schedule = h.LrSchedule(
        0.001, replicas=4, scaling="linear", warmup_steps=4, plateau=h.PlateauReducer(patience=2)
    )
    assert [schedule.rate(s) for s in range(6)] == pytest.approx(
        [0.001, 0.00175, 0.0025, 0.00325, 0.004, 0.004]
    )
    assert schedule.on_validation(2.0) == 1.0  # first measurement: the best so far
    assert schedule.on_validation(2.0) == 1.0  # flat once: patience 2 not reached
    assert schedule.on_validation(2.0) == 0.5  # flat twice: halved
    assert schedule.rate(100) == pytest.approx(0.002)
    restored = h.LrSchedule(
        0.001, replicas=4, scaling="linear", warmup_steps=4, plateau=h.PlateauReducer(patience=2)
    )
    restored.load_state(schedule.state())
    assert restored.rate(100) == pytest.approx(0.002)
    assert restored.describe()["scaled_lr"] == pytest.approx(0.004)
    assert h.LrSchedule(0.001, replicas=4).rate(0) == 0.001  # scaling "none"
