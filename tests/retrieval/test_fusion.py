"""Fusion of ranked lists: hand-computed RRF and weighted scores, and the hybrid searcher."""

import pytest

from alime.retrieval.fusion import (
    FusionMode,
    FusionSettings,
    HybridSearcher,
    reciprocal_rank_fusion,
    weighted_score_fusion,
)
from alime.types import Hit

BM25 = [Hit(1, 9.0), Hit(2, 5.0), Hit(3, 1.0)]
DENSE = [Hit(3, 1.0), Hit(4, 0.75), Hit(1, 0.5)]  # binary-exact: ties stay ties


def test_rrf_on_hand_computed_rankings():
    hits = reciprocal_rank_fusion([BM25, DENSE], [1.0, 1.0], k=4, c=60)
    expected = {1: 1 / 61 + 1 / 63, 2: 1 / 62, 3: 1 / 63 + 1 / 61, 4: 1 / 62}
    # 1 and 3 tie, as do 2 and 4: the lower id goes first.
    assert [h.id for h in hits] == [1, 3, 2, 4]
    for h in hits:
        assert h.score == pytest.approx(expected[h.id], abs=1e-15)


def test_rrf_weights_and_k():
    hits = reciprocal_rank_fusion([BM25, DENSE], [0.25, 0.75], k=2, c=0)
    # c=0: id 3 gets 0.25/3 + 0.75/1, id 1 gets 0.25/1 + 0.75/3, id 4 gets 0.75/2.
    assert [(h.id, round(h.score, 6)) for h in hits] == [(3, round(0.25 / 3 + 0.75, 6)), (1, 0.5)]


def test_weighted_scores_are_min_max_normalized_per_list():
    hits = weighted_score_fusion([BM25, DENSE], [0.5, 0.5], k=4)
    # BM25 norm: 1 -> 1, 2 -> 0.5, 3 -> 0; dense norm: 3 -> 1, 4 -> 0.5, 1 -> 0.
    got = {h.id: h.score for h in hits}
    assert got == pytest.approx({1: 0.5, 2: 0.25, 3: 0.5, 4: 0.25})
    assert [h.id for h in hits] == [1, 3, 2, 4]
    assert weighted_score_fusion([[Hit(7, 3.0)], []], [0.4, 0.6], k=3) == [Hit(7, 0.4)]


class Fixed:
    def __init__(self, hits):
        self.hits, self.calls = hits, []

    def search(self, query, k):
        self.calls.append((query, k))
        return self.hits[:k]


def test_hybrid_searcher_fuses_both_retrievers():
    bm25, dense = Fixed(BM25), Fixed(DENSE)
    searcher = HybridSearcher(bm25, dense, FusionSettings(mode="rrf", depth=3))
    assert [h.id for h in searcher.search("q", 2)] == [1, 3]
    assert bm25.calls == [("q", 3)] and dense.calls == [("q", 3)]
    assert searcher.search("q", 0) == []


def test_settings_validate():
    assert FusionSettings(mode="weighted").mode is FusionMode.WEIGHTED
    with pytest.raises(ValueError, match="valid: rrf, weighted"):
        FusionSettings(mode="max")
    with pytest.raises(ValueError, match="dense_weight"):
        FusionSettings(dense_weight=1.5)
