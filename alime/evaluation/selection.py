"""Response selection: score every group's candidates with each scorer, then R10@k and MRR."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TextIO

from alime.evaluation.corpus import Group
from alime.evaluation.metrics import rank_of_true, selection_metrics
from alime.types import Scorer


@dataclass(frozen=True)
class GroupScores:
    """All scorers' scores for one group: ``scores[name][i]`` is candidate ``i``'s score."""

    group: Group
    scores: Mapping[str, list[float]]


def score_groups(
    groups: Sequence[Group], scorers: Mapping[str, Scorer], progress: bool = True
) -> list[GroupScores]:
    """Run every scorer over every group (a progress bar on stderr)."""
    from tqdm import tqdm

    out = []
    for group in tqdm(groups, desc="scoring groups", unit="group", disable=not progress):
        scores = {}
        for name, scorer in scorers.items():
            values = [float(s) for s in scorer.score(group.query, group.context, group.responses)]
            if len(values) != len(group.responses):
                raise ValueError(
                    f"scorer {name} returned {len(values)} scores for "
                    f"{len(group.responses)} candidates"
                )
            scores[name] = values
        out.append(GroupScores(group, scores))
    return out


def true_ranks(scored: Sequence[GroupScores], name: str) -> list[int]:
    """The true response's rank in each group under scorer ``name`` (ties against the model)."""
    return [rank_of_true(g.scores[name], g.group.true_index) for g in scored]


def selection_report(scored: Sequence[GroupScores], names: Sequence[str]) -> dict:
    """``{"groups": N, "scorers": {name: {"r10@1", "r10@2", "r10@5", "mrr"}}}``."""
    n_candidates = len(scored[0].group.responses) if scored else 10
    return {
        "groups": len(scored),
        "scorers": {n: selection_metrics(true_ranks(scored, n), n_candidates) for n in names},
    }


def dump_scores(scored: Sequence[GroupScores], out: TextIO) -> int:
    """One JSON line per candidate: ``{"group", "label", "scores": {name: x}}``; returns lines."""
    n = 0
    for gi, g in enumerate(scored):
        for i in range(len(g.group.responses)):
            row = {
                "group": gi,
                "label": int(i == g.group.true_index),
                "scores": {name: s[i] for name, s in g.scores.items()},
            }
            out.write(json.dumps(row) + "\n")
            n += 1
    return n


def combined_ranks(scored: Sequence[GroupScores], a: str, b: str, weight: float) -> list[int]:
    """True-response ranks under the score ``a - weight * b`` (e.g. PMI from logprob and prior)."""
    ranks = []
    for g in scored:
        values = [x - weight * y for x, y in zip(g.scores[a], g.scores[b], strict=True)]
        ranks.append(rank_of_true(values, g.group.true_index))
    return ranks


def weight_sweep(scored: Sequence[GroupScores], a: str, b: str, weights: Sequence[float]) -> dict:
    """Choose ``weight`` of ``a - weight * b`` on half the groups, report it on the other half.

    Groups at even positions tune (highest R10@1, then MRR, then the smallest weight); groups
    at odd positions test, so the reported figure is not chosen on its own data.

    Returns:
        ``{"weights": {w: metrics on all groups}, "chosen": w, "tune": metrics, "test": metrics}``.
    """
    if not weights:
        raise ValueError("no weights to sweep")
    tune, test = scored[0::2], scored[1::2]

    def metrics(groups: Sequence[GroupScores], w: float) -> dict[str, float]:
        return selection_metrics(combined_ranks(groups, a, b, w))

    chosen = max(weights, key=lambda w: (metrics(tune, w)["r10@1"], metrics(tune, w)["mrr"], -w))
    return {
        "score": f"{a} - weight * {b}",
        "weights": {str(w): metrics(scored, w) for w in weights},
        "chosen": chosen,
        "tune_groups": len(tune),
        "test_groups": len(test),
        "tune": metrics(tune, chosen),
        "test": metrics(test, chosen),
    }
