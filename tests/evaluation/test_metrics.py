import math

import pytest

from alime.evaluation.metrics import (
    corpus_bleu,
    distinct_n,
    mean_length,
    mean_reciprocal_rank,
    most_common_share,
    rank_of_true,
    recall_at_k,
    selection_metrics,
)


def test_rank_counts_ties_against_the_model():
    assert rank_of_true([0.9, 0.1, 0.3], 0) == 1
    assert rank_of_true([0.5, 0.5, 0.1], 0) == 2
    assert rank_of_true([0.5, 0.5, 0.1], 1) == 2
    assert rank_of_true([1.0] * 10, 3) == 10
    assert rank_of_true([0.2, 0.7, 0.7, 0.1], 0) == 3


def test_nan_score_ranks_last():
    assert rank_of_true([float("nan"), 0.1, 0.2], 0) == 3
    assert rank_of_true([0.0, float("nan"), 0.2], 0) == 2


def test_rank_rejects_bad_index():
    with pytest.raises(IndexError):
        rank_of_true([0.1], 1)


def test_recall_and_mrr_hand_computed():
    ranks = [1, 2, 5, 10]
    assert recall_at_k(ranks, 1) == 0.25
    assert recall_at_k(ranks, 2) == 0.5
    assert recall_at_k(ranks, 5) == 0.75
    assert mean_reciprocal_rank(ranks) == pytest.approx((1 + 0.5 + 0.2 + 0.1) / 4)
    assert selection_metrics(ranks) == {
        "r10@1": 0.25,
        "r10@2": 0.5,
        "r10@5": 0.75,
        "mrr": pytest.approx(0.45),
    }
    assert recall_at_k([], 1) == 0.0 and mean_reciprocal_rank([]) == 0.0


def test_bleu_one_substitution():
    # p1 = 4/5; smoothed p2 = (3+1)/(4+1), p3 = (2+1)/(3+1), p4 = (1+1)/(2+1); no brevity penalty.
    got = corpus_bleu([["a", "b", "c", "d", "e"]], [["a", "b", "c", "d", "f"]])
    assert got == pytest.approx((0.8 * 0.8 * 0.75 * (2 / 3)) ** 0.25)


def test_bleu_brevity_penalty():
    # Every precision is 1 (smoothed empties are 1/1); c = 2, r = 4: BP = exp(1 - 4/2).
    assert corpus_bleu([["a", "b", "c", "d"]], [["a", "b"]]) == pytest.approx(math.exp(-1))


def test_bleu_clips_and_sums_over_the_corpus():
    assert corpus_bleu([["a", "b"]], [["a", "a", "a"]]) == pytest.approx((1 / 18) ** 0.25)
    assert corpus_bleu([["a", "b"], ["c"]], [["a", "b"], ["d"]]) == pytest.approx((2 / 3) ** 0.25)


def test_bleu_edge_cases():
    assert corpus_bleu([["a"]], [["b"]]) == 0.0
    assert corpus_bleu([["a"]], [[]]) == 0.0
    assert corpus_bleu([["a", "b"]], [["a", "b"]]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        corpus_bleu([["a"]], [])


def test_text_statistics():
    texts = [["a", "b"], ["a", "b"], ["a", "c", "d"]]
    assert distinct_n(texts, 1) == pytest.approx(4 / 7)
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)
    assert mean_length(texts) == pytest.approx(7 / 3)
    assert most_common_share(texts) == (pytest.approx(2 / 3), "a b")
    assert distinct_n([[]], 2) == 0.0 and most_common_share([]) == (0.0, "")
