"""The compiled inner loop of BM25 search: document-at-a-time MaxScore over postings lists.

Measured first (bench/retrieval.py, 1M synthetic QA pairs): a query touches ~126K postings and
numpy's fancy-indexed scatter-add over them dominated the time. This loop, compiled by numba,
walks the query terms' postings in document order instead, so every document's contributions are
added in query order (rank-bm25's order: the scores stay bit-equal) and MaxScore can skip most
postings of the common, low-idf terms.

MaxScore (Turtle and Flood 1995): each query term has an upper bound on what it can add to a
document (idf * its largest posting weight). With the k-th best score so far ``theta``, the terms
with the smallest bounds whose bounds sum below ``theta`` are *non-essential*: a document holding
only those cannot reach the top k, so only the *essential* terms' postings propose candidates, and
the non-essential lists are probed (galloping search) for those candidates, largest bound first,
until the candidate's best possible score falls below ``theta``. Bounds only prune when every idf
is positive; otherwise (rank-bm25's epsilon rule can't make an idf negative, but a caller may pass
one) every document of the union is scored.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Bounds are float sums in another order than the exact score; pruning waits for this relative
# margin so that rounding can never drop a document that ties the k-th best.
SLACK = 1.0 + 1e-9


@njit(cache=True, nogil=True)
def _keep_largest(best: np.ndarray, filled: int, score: float) -> int:
    """Insert ``score`` into ``best`` (ascending, the ``len(best)`` largest seen); new fill."""
    k = len(best)
    if filled < k:
        j = filled
        filled += 1
        while j > 0 and best[j - 1] > score:
            best[j] = best[j - 1]
            j -= 1
        best[j] = score
    elif score > best[0]:
        j = 0
        while j + 1 < k and best[j + 1] < score:
            best[j] = best[j + 1]
            j += 1
        best[j] = score
    return filled


@njit(cache=True, nogil=True)
def _seek(postings_doc: np.ndarray, p: int, end: int, doc: int) -> int:
    """First position in ``p:end`` whose document is >= ``doc`` (galloping, then bisection)."""
    if p >= end or postings_doc[p] >= doc:
        return p
    step = 1
    while p + step < end and postings_doc[p + step] < doc:
        step *= 2
    lo, hi = p + step // 2 + 1, min(p + step, end)
    while lo < hi:
        mid = (lo + hi) >> 1
        if postings_doc[mid] < doc:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def top_candidates(
    postings_doc: np.ndarray,
    weights: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    idfs: np.ndarray,
    bounds: np.ndarray,
    dead: np.ndarray,
    k: int,
    prune: bool,
):
    """Every document that can be in the top ``k``, with its exact score.

    Args:
        postings_doc: Document position of each posting, ascending within a term's slice.
        weights: The idf-free weight of each posting.
        starts, ends: Each query term's postings slice, in query order (a repeated term twice).
        idfs: Each query term's idf.
        bounds: Each query term's upper bound (idf * its largest weight); used when ``prune``.
        dead: Per document, True when deleted; an empty array when none is.
        k: How many best documents are wanted (>= 1).
        prune: Skip documents by the bounds (only valid when every idf is positive).

    Returns:
        (positions, scores, scored): the documents whose positive score reaches the final k-th
        best (ties with it included, so the caller's id tie-break is exact), their scores summed
        in query order, and how many documents were scored in full.
    """
    n = len(starts)
    cur = starts.copy()
    order = np.argsort(bounds)  # ascending: the first ``n_lazy`` are non-essential
    prefix = np.zeros(n + 1)
    for j in range(n):
        prefix[j + 1] = prefix[j] + bounds[order[j]]
    essential = np.ones(n, np.bool_)
    n_lazy = 0
    best = np.zeros(k)
    filled = 0
    theta = 0.0
    contrib = np.zeros(n)
    out_pos = np.empty(64, np.int64)
    out_score = np.empty(64)
    m = 0
    scored = 0
    has_dead = len(dead) > 0
    none = np.iinfo(np.int64).max
    while True:
        doc = none
        for s in range(n):
            if essential[s] and cur[s] < ends[s] and postings_doc[cur[s]] < doc:
                doc = postings_doc[cur[s]]
        if doc == none:
            break
        partial = 0.0
        for s in range(n):
            contrib[s] = 0.0
            if essential[s] and cur[s] < ends[s] and postings_doc[cur[s]] == doc:
                contrib[s] = idfs[s] * weights[cur[s]]
                partial += contrib[s]
                cur[s] += 1
        out_of_reach = False
        for j in range(n_lazy - 1, -1, -1):
            if (partial + prefix[j + 1]) * SLACK < theta:
                out_of_reach = True
                break
            s = order[j]
            cur[s] = _seek(postings_doc, cur[s], ends[s], doc)
            if cur[s] < ends[s] and postings_doc[cur[s]] == doc:
                contrib[s] = idfs[s] * weights[cur[s]]
                partial += contrib[s]
        if out_of_reach or (has_dead and dead[doc]):
            continue
        scored += 1
        score = 0.0
        for s in range(n):  # query order, as rank-bm25 adds: equal bits
            score += contrib[s]
        if score <= 0.0 or (filled == k and score < theta):
            continue
        if m == len(out_pos):
            out_pos = np.concatenate((out_pos, np.empty(m, np.int64)))
            out_score = np.concatenate((out_score, np.empty(m)))
        out_pos[m] = doc
        out_score[m] = score
        m += 1
        filled = _keep_largest(best, filled, score)
        if filled == k and best[0] > theta:
            theta = best[0]
            while prune and n_lazy < n and prefix[n_lazy + 1] * SLACK < theta:
                essential[order[n_lazy]] = False
                n_lazy += 1
    keep = out_score[:m] >= theta
    return out_pos[:m][keep], out_score[:m][keep], scored
