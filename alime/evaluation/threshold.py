"""The threshold sweep: how many questions the KB answers at T, and how often it is right.

For each group the engine would answer from the KB when the best candidate's score is >= T;
the answer is right when that best candidate is the real response (a tie with a wrong candidate
counts as wrong, as in selection). Over a grid of T (the observed top scores): the share of
groups answered and the precision among them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import Enum

import numpy as np

from alime.evaluation.metrics import rank_of_true

DEFAULT_PRECISION_TARGET = 0.8
DEFAULT_GRID_POINTS = 200
DEFAULT_MIN_ANSWERED = 10  # a precision measured on fewer answered groups is too noisy to pick
DEFAULT_GENERATION_QUANTILE = 0.1
# With no generator to calibrate on, every generated reply is used (no hand-off to a human).
DEFAULT_GENERATION_THRESHOLD = 0.0


class ThresholdRule(str, Enum):
    """How T is chosen from the sweep."""

    PRECISION = "precision"  # smallest T whose precision >= the target (most answers at that bar)
    MAX_F = "max_f"  # T with the highest F1 of precision and answered share


@dataclass(frozen=True)
class SweepPoint:
    """One T of the sweep. ``precision`` is None when no group is answered."""

    threshold: float
    n_answered: int
    answered: float
    precision: float | None
    f1: float


@dataclass(frozen=True)
class Choice:
    """The chosen T and why."""

    threshold: float
    rule: str
    point: SweepPoint | None


def top_outcomes(
    scores: Sequence[Sequence[float]], true_indices: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Per group: the best score, and whether the real response alone holds it."""
    best = np.array([max(s) for s in scores], dtype=np.float64)
    correct = np.array([rank_of_true(s, t) == 1 for s, t in zip(scores, true_indices, strict=True)])
    return best, correct


def threshold_grid(best: np.ndarray, points: int = DEFAULT_GRID_POINTS) -> np.ndarray:
    """Candidate T values: the distinct top scores, thinned to ``points`` quantiles if many."""
    values = np.unique(best[np.isfinite(best)])
    if len(values) > points:
        values = np.unique(np.quantile(values, np.linspace(0.0, 1.0, points)))
    return values


def sweep_point(best: np.ndarray, correct: np.ndarray, threshold: float) -> SweepPoint:
    """Answered share and precision at one T."""
    answered = best >= threshold
    share = float(answered.mean()) if len(best) else 0.0
    precision = float(correct[answered].mean()) if answered.any() else None
    f1 = 0.0 if not precision or not share else 2 * precision * share / (precision + share)
    return SweepPoint(float(threshold), int(answered.sum()), share, precision, f1)


def sweep(best: np.ndarray, correct: np.ndarray, grid: np.ndarray) -> list[SweepPoint]:
    """The sweep over ``grid`` (ascending T)."""
    return [sweep_point(best, correct, t) for t in grid]


def choose_threshold(
    points: Sequence[SweepPoint],
    rule: ThresholdRule = ThresholdRule.PRECISION,
    target: float = DEFAULT_PRECISION_TARGET,
    min_answered: int = DEFAULT_MIN_ANSWERED,
) -> Choice:
    """Pick T from a sweep.

    ``PRECISION``: the smallest T whose precision reaches ``target`` on at least
    ``min_answered`` answered groups (so the KB answers as much as it can at that precision);
    if no T reaches it, falls back to ``MAX_F`` and says so in
    ``rule``. ``MAX_F``: the T with the highest F1 of precision and answered share (the smallest
    such T on ties).
    """
    if not points:
        raise ValueError("empty sweep")
    if rule is ThresholdRule.PRECISION:
        for p in points:
            if p.precision is not None and p.precision >= target and p.n_answered >= min_answered:
                return Choice(
                    p.threshold,
                    f"smallest T with precision >= {target} (on >= {min_answered} answered groups)",
                    p,
                )
        best = _max_f(points)
        return Choice(best.threshold, f"no T reaches precision {target}: max F1 instead", best)
    best = _max_f(points)
    return Choice(best.threshold, "max F1 of precision and answered share", best)


def _max_f(points: Sequence[SweepPoint]) -> SweepPoint:
    return max(points, key=lambda p: (p.f1, -p.threshold))


def generation_threshold(
    scores: Sequence[float], quantile: float = DEFAULT_GENERATION_QUANTILE
) -> float:
    """G: the ``quantile`` of generated answers' scores on held-out contexts.

    The engine then hands the least confident ``quantile`` share of generated replies to the
    fallback (a human). Non-finite scores are ignored.
    """
    if not 0.0 <= quantile < 1.0:
        raise ValueError(f"quantile must be in [0, 1), got {quantile}")
    finite = [s for s in scores if math.isfinite(s)]
    if not finite:
        raise ValueError("no finite generated-answer scores")
    return float(np.quantile(np.asarray(finite), quantile))


def points_json(points: Sequence[SweepPoint]) -> list[dict]:
    return [asdict(p) for p in points]


def plot_sweep(points: Sequence[SweepPoint], choice: Choice, path, title: str) -> None:
    """PNG: answered share and precision against T, with the chosen T marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [p.threshold for p in points]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(t, [p.answered for p in points], label="answered from KB")
    ax.plot(t, [np.nan if p.precision is None else p.precision for p in points], label="precision")
    ax.plot(t, [p.f1 for p in points], label="F1", linestyle=":")
    ax.axvline(choice.threshold, color="grey", linestyle="--", label=f"T = {choice.threshold:.4g}")
    ax.set_xlabel("threshold T (best candidate's score)")
    ax.set_ylabel("share")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
