"""Pluto's heuristics: batch size, learning rate and averaging period, each switchable off.

All functions and classes here are pure Python so they can be tested on synthetic curves; the
trainer feeds them measurements.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pluto.choices import Choice


class LrScaling(Choice):
    """How the learning rate grows with the number of replicas."""

    NONE = "none"
    LINEAR = "linear"
    SQRT = "sqrt"


_SCALE = {
    LrScaling.NONE: lambda n: 1.0,
    LrScaling.LINEAR: float,
    LrScaling.SQRT: math.sqrt,
}


def scaled_learning_rate(base_lr: float, replicas: int, rule: LrScaling | str) -> float:
    """Learning rate for ``replicas`` replicas from a one-replica ``base_lr``.

    Args:
        base_lr: Learning rate tuned for one replica.
        replicas: Number of replicas.
        rule: ``none``, ``linear`` (Goyal et al.) or ``sqrt``.

    Returns:
        The scaled learning rate.
    """
    return base_lr * _SCALE[LrScaling.parse(rule)](replicas)


def warmup_learning_rate(step: int, target_lr: float, base_lr: float, warmup_steps: int) -> float:
    """Linear ramp from ``base_lr`` to ``target_lr`` over ``warmup_steps`` steps.

    Large scaled learning rates diverge on a fresh model; ramping from the one-replica rate
    avoids that (Goyal et al., 2017).
    """
    if warmup_steps <= 0 or step >= warmup_steps:
        return target_lr
    return base_lr + (target_lr - base_lr) * step / warmup_steps


def select_batch_size(
    measure: Callable[[int], float | None],
    candidates: Sequence[int],
    margin: float = 0.1,
) -> int:
    """Largest batch size that fits and still raises throughput by more than ``margin``.

    Candidates are tried in increasing order; the search stops at the first that does not fit
    (``measure`` returns ``None`` or raises ``MemoryError``/``tf.errors.ResourceExhaustedError``)
    or whose throughput is not more than ``(1 + margin)`` times the best so far.

    Args:
        measure: Runs a short pre-run at a batch size and returns examples per second, or
            ``None`` when the batch does not fit.
        candidates: Batch sizes to try.
        margin: Relative throughput gain a larger batch must bring.

    Returns:
        The chosen batch size.

    Raises:
        ValueError: No candidate fits.
    """
    chosen: int | None = None
    best = 0.0
    for size in sorted(candidates):
        try:
            throughput = measure(size)
        except MemoryError:
            throughput = None
        except Exception as err:  # noqa: BLE001 - only out-of-memory errors mean "does not fit"
            if type(err).__name__ != "ResourceExhaustedError":
                raise
            throughput = None
        if throughput is None:
            break
        if chosen is not None and throughput <= best * (1.0 + margin):
            break
        chosen, best = size, throughput
    if chosen is None:
        raise ValueError(f"no batch size in {list(candidates)} fits")
    return chosen


@dataclass
class PlateauReducer:
    """Multiply the learning rate by ``factor`` when validation loss stalls.

    Attributes:
        factor: Multiplier applied on a plateau.
        patience: Evaluations without an improvement of ``min_delta`` (relative) before reducing.
        min_delta: Relative improvement that counts as progress.
        min_scale: Floor for the cumulative multiplier.
        scale: Current cumulative multiplier.
    """

    factor: float = 0.5
    patience: int = 2
    min_delta: float = 1e-3
    min_scale: float = 1e-3
    scale: float = 1.0
    _best: float = math.inf
    _waited: int = 0

    def update(self, val_loss: float) -> float:
        """Record a validation loss and return the learning-rate multiplier to use."""
        if val_loss < self._best * (1.0 - self.min_delta):
            self._best = val_loss
            self._waited = 0
        else:
            self._waited += 1
            if self._waited >= self.patience:
                self.scale = max(self.min_scale, self.scale * self.factor)
                self._waited = 0
        return self.scale


@dataclass
class AdaptivePeriod:
    """Averaging period that follows how far the replicas drift apart.

    Replicas that stay close to their mean (relative distance below ``low``) can train longer
    alone, so the period doubles; when they drift beyond ``high`` the period halves.

    Attributes:
        period: Current averaging period K.
        min_period: Smallest K.
        max_period: Largest K.
        low: Drift below which K grows.
        high: Drift above which K shrinks.
    """

    period: int
    min_period: int = 1
    max_period: int = 64
    low: float = 0.002
    high: float = 0.02

    def __post_init__(self) -> None:
        if not 1 <= self.min_period <= self.period <= self.max_period:
            raise ValueError("need 1 <= min_period <= period <= max_period")
        if not 0 <= self.low < self.high:
            raise ValueError("need 0 <= low < high")

    def update(self, drift: float) -> int:
        """Record the drift measured at an averaging step and return the next period."""
        if drift < self.low:
            self.period = min(self.max_period, self.period * 2)
        elif drift > self.high:
            self.period = max(self.min_period, self.period // 2)
        return self.period
