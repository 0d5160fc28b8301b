"""The hybrid policy's decisions, as small pure functions (their boundaries are tested)."""

from __future__ import annotations

from enum import Enum


class DecisionScore(str, Enum):
    """Which score T applies to (``[engine] decision``)."""

    ROUTING = "routing"  # the model's routing.json score when it has one, else the rerank score
    RERANK = "rerank"  # AliMe's rule: the best rerank score, T from thresholds.json


class Decision(str, Enum):
    ANSWER_FROM_KB = "retrieval"
    GENERATE = "generation"


def decide(best_rerank: float | None, threshold: float) -> Decision:
    """AliMe's rule: answer from the KB when the best candidate's score reaches T (>=)."""
    if best_rerank is not None and best_rerank >= threshold:
        return Decision.ANSWER_FROM_KB
    return Decision.GENERATE


# A generated answer's score is its mean per-token probability (alime.seq2seq.generator).
GENERATION_SCORE_MAX = 1.0


def accept_generation(score: float | None, threshold: float) -> bool:
    """A generated answer is used when its score reaches the generation threshold (>=)."""
    return score is not None and score >= threshold


def generation_reachable(threshold: float) -> bool:
    """Whether any generated answer could reach G: a G above the largest possible score (the
    tuned bundled decision turns generation off that way) makes generating pure cost."""
    return threshold <= GENERATION_SCORE_MAX


def accept_chitchat(score: float | None, threshold: float) -> bool:
    """The chit-chat KB's best match is used when its score (character F1) reaches its
    threshold (>=)."""
    return score is not None and score >= threshold
