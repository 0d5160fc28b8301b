"""Pure metric functions: response selection (R10@k, MRR) and generation (BLEU, distinct-n).

Every function takes plain sequences and returns plain numbers, so each is checked against
hand-computed values in the tests.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

SELECTION_CUTOFFS = (1, 2, 5)


def _as_comparable(x: float) -> float:
    """NaN scores rank last (as -inf), so a broken score can never win."""
    return -math.inf if math.isnan(x) else x


def rank_of_true(scores: Sequence[float], true_index: int) -> int:
    """1-based rank of the true candidate, ties counted against the model.

    The rank is 1 plus the number of *other* candidates whose score is >= the true one's, so a
    scorer that gives every candidate the same score ranks the true one last.

    Args:
        scores: one score per candidate (higher is better).
        true_index: position of the true candidate in ``scores``.

    Raises:
        IndexError: ``true_index`` is outside ``scores``.
    """
    if not 0 <= true_index < len(scores):
        raise IndexError(f"true_index {true_index} outside {len(scores)} scores")
    true = _as_comparable(scores[true_index])
    return 1 + sum(1 for j, s in enumerate(scores) if j != true_index and _as_comparable(s) >= true)


def recall_at_k(ranks: Sequence[int], k: int) -> float:
    """Share of groups whose true candidate ranks within the top ``k``."""
    if not ranks:
        return 0.0
    return sum(1 for r in ranks if r <= k) / len(ranks)


def mean_reciprocal_rank(ranks: Sequence[int]) -> float:
    """Mean of 1 / rank over the groups."""
    if not ranks:
        return 0.0
    return sum(1.0 / r for r in ranks) / len(ranks)


def selection_metrics(ranks: Sequence[int], n_candidates: int = 10) -> dict[str, float]:
    """R{n}@1, R{n}@2, R{n}@5 and MRR for a list of true-candidate ranks."""
    out = {f"r{n_candidates}@{k}": recall_at_k(ranks, k) for k in SELECTION_CUTOFFS}
    out["mrr"] = mean_reciprocal_rank(ranks)
    return out


def ngrams(tokens: Sequence[str], n: int) -> Counter:
    """Counts of the ``n``-grams of ``tokens`` (as tuples)."""
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(
    references: Sequence[Sequence[str]], hypotheses: Sequence[Sequence[str]], max_n: int = 4
) -> float:
    """Corpus BLEU-``max_n`` with one reference per hypothesis, add-one smoothed for n >= 2.

    Clipped n-gram matches and n-gram totals are summed over the corpus (Papineni et al., 2002).
    Precisions of order n >= 2 are smoothed as ``(matches + 1) / (total + 1)`` (Lin and Och,
    2004), so a corpus of short replies with no 4-gram match still gets a graded score; the
    unigram precision is not smoothed. Brevity penalty ``exp(1 - r / c)`` when ``c <= r``.

    Args:
        references: the reference token lists.
        hypotheses: the hypothesis token lists, parallel to ``references``.
        max_n: the highest n-gram order (4 for BLEU-4).

    Returns:
        BLEU in [0, 1]; 0.0 when no hypothesis token matches or the hypotheses are empty.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references for {len(hypotheses)} hypotheses")
    matches = [0] * max_n
    totals = [0] * max_n
    ref_len = hyp_len = 0
    for ref, hyp in zip(references, hypotheses, strict=True):
        ref_len += len(ref)
        hyp_len += len(hyp)
        for n in range(1, max_n + 1):
            hyp_counts = ngrams(hyp, n)
            ref_counts = ngrams(ref, n)
            matches[n - 1] += sum(min(c, ref_counts[g]) for g, c in hyp_counts.items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    if hyp_len == 0 or matches[0] == 0:
        return 0.0
    log_p = math.log(matches[0] / totals[0])
    log_p += sum(math.log((matches[i] + 1) / (totals[i] + 1)) for i in range(1, max_n))
    brevity = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return brevity * math.exp(log_p / max_n)


def distinct_n(texts: Sequence[Sequence[str]], n: int) -> float:
    """Distinct n-grams over all n-grams in ``texts`` (Li et al., 2016); 0.0 when there are none."""
    counts: Counter = Counter()
    for tokens in texts:
        counts.update(ngrams(tokens, n))
    total = sum(counts.values())
    return len(counts) / total if total else 0.0


def mean_length(texts: Sequence[Sequence[str]]) -> float:
    """Mean number of tokens per text."""
    return sum(len(t) for t in texts) / len(texts) if texts else 0.0


def most_common_share(texts: Sequence[Sequence[str]]) -> tuple[float, str]:
    """Share of the most common text (a generic-reply indicator) and that text (space-joined)."""
    if not texts:
        return 0.0, ""
    text, count = Counter(" ".join(t) for t in texts).most_common(1)[0]
    return count / len(texts), text
