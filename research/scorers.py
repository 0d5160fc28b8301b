"""Scorers kept for comparison, not served: construction probes and the response matcher.

Each is an ``alime.evaluation.runner.ExtraScorer``, built from the same ``ScorerEnv`` as the
product's evaluation scorers (``alime.evaluation.scorers``), so ``python -m research.select``
reports them beside the engine's scores on one file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from alime.evaluation.runner import ExtraScorer
from alime.evaluation.scorers import ScorerEnv, ScorerName
from alime.types import Scorer
from research.matcher import CONFIG_FILE, MATCHER_DIR

# Where the bundled matcher lives (trained on data/model's training split, see docs/research.md).
BUNDLED_MATCHER = Path(__file__).resolve().parent / "data" / MATCHER_DIR


class NegatedScorer:
    """Minus another scorer's scores: a probe, not a model.

    ``anti_bm25`` (negated BM25) measures how much a validation file's construction gives away:
    when the wrong replies are BM25's own top hits for the context, the candidate BM25 likes
    least is disproportionately often the real one.
    """

    def __init__(self, part: Scorer) -> None:
        self.part = part

    def score(self, query: str, context: Sequence[str], answers: Sequence[str]) -> list[float]:
        return [-float(s) for s in self.part.score(query, context, answers)]


class WeightedSum:
    """``sum weight_i * score_i`` of several scorers (e.g. the matcher stacked with pmi)."""

    def __init__(self, parts: Sequence[tuple[float, Scorer]]) -> None:
        self.parts = list(parts)

    def score(self, query: str, context: Sequence[str], answers: Sequence[str]) -> list[float]:
        total = np.zeros(len(answers))
        for weight, part in self.parts:
            total += weight * np.asarray(part.score(query, context, answers), np.float64)
        return total.tolist()


def matcher_dir_of(model_dir: str | Path | None, matcher: str | Path | None) -> Path | None:
    """The matcher directory for ``match``: ``matcher`` when given, else MODEL_DIR/matcher when
    it exists, else the bundled one when it exists, else None."""
    if matcher:
        return Path(matcher)
    candidates = [Path(model_dir) / MATCHER_DIR] if model_dir is not None else []
    candidates.append(BUNDLED_MATCHER)
    return next((c for c in candidates if (c / CONFIG_FILE).is_file()), None)


def match_scorer(env: ScorerEnv, matcher_dir: Path | None) -> Scorer:
    """The trained matcher in ``matcher_dir`` as a Scorer.

    Raises:
        ValueError: no matcher given or found.
    """
    if matcher_dir is None:
        raise ValueError(
            "the match scorer needs a trained matcher: give --matcher DIR or "
            "train one with 'python -m research.train_matcher'"
        )
    from research.matcher import MatchScorer, load_matcher_dir

    return MatchScorer(load_matcher_dir(matcher_dir), env.tokenize)


def probes(matcher_dir: Path | None, match_pmi_weight: float = 1.0) -> dict[str, ExtraScorer]:
    """The research scorers by name: ``anti_bm25`` always; ``match`` and ``match_pmi`` when a
    matcher directory is given.

    Args:
        matcher_dir: a matcher directory (``python -m research.train_matcher``), or None.
        match_pmi_weight: w of ``match_pmi`` = match + w * pmi.
    """
    table = {
        "anti_bm25": ExtraScorer(
            lambda env: NegatedScorer(env.get(ScorerName.BM25)),
            False,
            "construction-artifact probe, not a model: minus bm25 (the reply BM25 likes least "
            "wins)",
        )
    }
    if matcher_dir is None:
        return table
    built: dict[int, Scorer] = {}

    def match(env: ScorerEnv) -> Scorer:
        # One matcher per environment, shared by match and match_pmi.
        if id(env) not in built:
            built[id(env)] = match_scorer(env, matcher_dir)
        return built[id(env)]

    table["match"] = ExtraScorer(
        match,
        False,
        "the discriminative matcher (research.train_matcher): ESIM-style context-reply interaction",
    )
    table["match_pmi"] = ExtraScorer(
        lambda env: WeightedSum([(1.0, match(env)), (match_pmi_weight, env.get(ScorerName.PMI))]),
        True,
        "match + w * pmi (w = --match-pmi-weight): the matcher stacked with the seq2seq's pmi",
    )
    return table
