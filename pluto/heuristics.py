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


class LrSchedule:
    """The learning rate of every step: replica scaling, warm-up and plateau reduction in one place.

    ``rate(step)`` is ``scale * warmup_learning_rate(step, scaled, base, warmup_steps)`` where
    ``scaled = scaled_learning_rate(base, replicas, scaling)`` and ``scale`` is the plateau
    reducer's cumulative multiplier (1 when plateau reduction is off). Validation losses go to
    :meth:`on_validation`. Every trainer of the project (``pluto.training.Trainer`` and through it
    ``alime train``) asks this object for its rate, so the rule lives once.

    Args:
        base_lr: Learning rate tuned for one replica.
        replicas: Number of replicas.
        scaling: ``none``, ``linear`` or ``sqrt``.
        warmup_steps: Steps of the linear ramp from ``base_lr`` to the scaled rate.
        plateau: A :class:`PlateauReducer`, or ``None`` for no reduction.
    """

    def __init__(
        self,
        base_lr: float,
        replicas: int = 1,
        scaling: LrScaling | str = LrScaling.NONE,
        warmup_steps: int = 0,
        plateau: PlateauReducer | None = None,
    ) -> None:
        self.base_lr = float(base_lr)
        self.replicas = replicas
        self.scaling = LrScaling.parse(scaling)
        self.warmup_steps = warmup_steps
        self.plateau = plateau
        self.target_lr = scaled_learning_rate(self.base_lr, replicas, self.scaling)

    @property
    def scale(self) -> float:
        """The plateau reducer's cumulative multiplier (1 without one)."""
        return 1.0 if self.plateau is None else self.plateau.scale

    def rate(self, step: int) -> float:
        """Learning rate for 0-based ``step``."""
        ramp = warmup_learning_rate(step, self.target_lr, self.base_lr, self.warmup_steps)
        return self.scale * ramp

    def on_validation(self, val_loss: float) -> float:
        """Record a validation loss; returns the (possibly reduced) plateau multiplier."""
        if self.plateau is not None:
            self.plateau.update(val_loss)
        return self.scale

    def describe(self) -> dict:
        """The effective schedule, JSON-ready (for run records such as ``training.json``)."""
        return {
            "base_lr": self.base_lr,
            "replicas": self.replicas,
            "scaling": self.scaling.value,
            "scaled_lr": self.target_lr,
            "warmup_steps": self.warmup_steps,
            "plateau": None
            if self.plateau is None
            else {
                "factor": self.plateau.factor,
                "patience": self.plateau.patience,
                "min_delta": self.plateau.min_delta,
            },
        }

    def state(self) -> dict:
        """What a resumed run needs to continue the schedule (JSON-ready)."""
        if self.plateau is None:
            return {}
        p = self.plateau
        best = None if math.isinf(p._best) else p._best
        return {"scale": p.scale, "best": best, "waited": p._waited}

    def load_state(self, state: dict) -> None:
        """Continue from :meth:`state`'s output."""
        if self.plateau is None or not state:
            return
        self.plateau.scale = float(state["scale"])
        self.plateau._best = math.inf if state["best"] is None else float(state["best"])
        self.plateau._waited = int(state["waited"])


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
