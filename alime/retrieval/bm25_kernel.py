"""The compiled inner loop of BM25 search: block-max MaxScore over document-position windows,
visited best bound first, keeping the exact top k.

Segments number documents by ascending length, so a window of ``2**window_shift`` consecutive
positions holds documents of similar length and similar weights. A query runs in two passes:

1. **Window bounds.** For every window and query term: the term's postings slice there and its
   bound, ``idf *`` the largest weight of its postings in the window (read from the snapshot's
   :func:`window_directory` for frequent terms; found by galloping search and the *block maxima*,
   the largest weight of every run of ``2**BLOCK_SHIFT`` postings, for rare ones). A window's
   bound is the sum of its terms' bounds, capped by length: its longest document holds at most
   ``doc_len`` distinct terms, so at most that many query terms (when the query repeats none),
   and the window bound is the sum of that many largest term bounds.
2. **Windows by descending bound.** The best documents are scored first, so ``theta`` (the k-th
   best score so far) rises early; the first window whose bound is below ``theta`` ends the
   search, since every later window's bound is lower still. Inside a window, MaxScore (Turtle
   and Flood 1995): the terms with the smallest bounds whose bounds sum below ``theta`` are
   *non-essential* (a document holding only those cannot reach the top k). The essential terms'
   postings are scattered, term at a time **in query order**, into a per-window accumulator, so
   a document's sum over them is already rank-bm25's sum (adding a 0.0 for a missing term
   changes no bits). A bitset walks the touched documents in document order; those whose sum
   plus every non-essential bound is below ``theta`` drop, the rest are merged with each
   non-essential term's postings (largest bound first), dropping as soon as they cannot reach
   ``theta``. When non-essential terms were merged, each document's per-term contributions are
   also kept in a small document-major table and a survivor's score is its row summed in query
   order; either way scores equal rank-bm25's to the bit.
3. **Exact top k.** Survivors enter a k-slot list ordered by (score, id), so ties at the k-th
   score are broken by ascending KB id inside the loop and only k documents come back.

Bounds are only valid when every idf is positive (``prune``); otherwise every document of the
union is scored. Measured pitfalls that shaped the code: growing arrays inside the document loop
made numba count references there (5x slower on a one-term query); clearing a full table row per
dropped document cost O(query terms) per document, so only written entries are cleared; capping
the non-essential sums by length too made more terms non-essential and merging them cost more
than it saved; the first pass, galloping through every term once per window, was 27-30% of a
corpus query's kernel time before the window directory.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Bounds are float sums in another order than the exact score; pruning waits for this relative
# margin so that rounding can never drop a document that ties the k-th best.
SLACK = 1.0 + 1e-9
# Postings per block-maximum entry (flat over the postings array, across term boundaries: a
# block's maximum is then an upper bound for every term whose postings it holds).
BLOCK_SHIFT = 6
# Document positions per window: 4,096 keeps the dense table in L2 for ~10 query terms.
WINDOW_SHIFT = 12


def block_maxima(weights: np.ndarray) -> np.ndarray:
    """Largest weight of each run of ``2**BLOCK_SHIFT`` postings (float64)."""
    if not len(weights):
        return np.zeros(0)
    return np.maximum.reduceat(weights, np.arange(0, len(weights), 1 << BLOCK_SHIFT))


def window_directory(
    offsets: np.ndarray,
    postings_doc: np.ndarray,
    weights: np.ndarray,
    n_docs: int,
    window_shift: int = WINDOW_SHIFT,
    min_postings: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each frequent term's postings of each window start, and their largest weight.

    :func:`top_candidates` reads these rows instead of galloping through a frequent term's
    postings once per window and scanning its block maxima (that first pass was 27-30% of a
    corpus query's kernel time, measured); rare terms keep the galloping search.

    Args:
        offsets: Term ``t``'s postings are ``offsets[t]:offsets[t + 1]``.
        postings_doc: Document position of each posting, ascending within a term.
        weights: Each posting's idf-free weight.
        n_docs: Documents (positions) in the segment.
        window_shift: log2 of the window width; the search must use the same.
        min_postings: Terms with at least this many postings get a row; None means twice the
            number of windows (rarer terms' galloping search is short).

    Returns:
        (rows, starts, maxima): per term its row or -1; per row the first posting (absolute
        index) of each window, plus the term's end (``[rows, windows + 1]``, int64); per row the
        largest weight in each window, 0 where the term has none (``[rows, windows]``).
    """
    n_win = ((n_docs - 1) >> window_shift) + 1 if n_docs else 0
    df = np.diff(offsets)
    if min_postings is None:
        min_postings = 2 * n_win
    frequent = np.flatnonzero(df >= max(min_postings, 1))
    rows = np.full(len(df), -1, np.int64)
    rows[frequent] = np.arange(len(frequent))
    bounds = np.arange(n_win + 1, dtype=np.int64) << window_shift
    starts = np.empty((len(frequent), n_win + 1), np.int64)
    maxima = np.zeros((len(frequent), n_win))
    for row, term in enumerate(frequent.tolist()):
        lo, hi = int(offsets[term]), int(offsets[term + 1])
        starts[row] = lo + np.searchsorted(postings_doc[lo:hi], bounds)
        held = np.flatnonzero(starts[row, 1:] > starts[row, :-1])
        # Empty windows between two held ones have no postings, so each reduceat segment is
        # exactly one held window's postings (the last one runs to the term's end).
        maxima[row, held] = np.maximum.reduceat(weights[lo:hi], starts[row, held] - lo)
    return rows, starts, maxima


@njit(cache=True, nogil=True)
def new_scratch(n_terms: int, window_shift: int = WINDOW_SHIFT):
    """Zeroed work arrays for queries of up to ``n_terms`` terms in windows of ``window_shift``.

    Returns:
        (table, acc, seen, surv_off, surv_partial): per window, each document's contribution of
        each term (document-major, so one document's contributions share a cache line or two),
        its essential-term sum (in any order: for the bounds only), a bitset of the touched
        documents (walked in document order), and the surviving documents with their sums.
    """
    size = 1 << window_shift
    return (
        np.zeros(size * n_terms),
        np.zeros(size),
        np.zeros((size + 63) >> 6, np.uint64),
        np.empty(size, np.int64),
        np.empty(size),
    )


@njit(cache=True, nogil=True, inline="always")
def _beats(score: float, doc_id: int, other_score: float, other_id: int) -> bool:
    """True when (score, doc_id) ranks before the other: higher score, then smaller id."""
    return score > other_score or (score == other_score and doc_id < other_id)


@njit(cache=True, nogil=True, inline="always")
def _keep_best(
    best_score: np.ndarray,
    best_id: np.ndarray,
    best_pos: np.ndarray,
    filled: int,
    score: float,
    doc_id: int,
    pos: int,
) -> int:
    """Insert a document into the best ``len(best_score)`` seen, kept worst first (ascending
    score, descending id at equal scores, so slot 0 is the current k-th); returns the new fill."""
    k = len(best_score)
    if filled < k:
        j = filled
        filled += 1
        while j > 0 and _beats(best_score[j - 1], best_id[j - 1], score, doc_id):
            best_score[j], best_id[j], best_pos[j] = (
                best_score[j - 1],
                best_id[j - 1],
                best_pos[j - 1],
            )
            j -= 1
    elif _beats(score, doc_id, best_score[0], best_id[0]):
        j = 0
        while j + 1 < k and _beats(score, doc_id, best_score[j + 1], best_id[j + 1]):
            best_score[j], best_id[j], best_pos[j] = (
                best_score[j + 1],
                best_id[j + 1],
                best_pos[j + 1],
            )
            j += 1
    else:
        return filled
    best_score[j], best_id[j], best_pos[j] = score, doc_id, pos
    return filled


@njit(cache=True, nogil=True, inline="always")
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


@njit(cache=True, nogil=True, inline="always")
def _block_bound(block_max: np.ndarray, lo: int, hi: int, block_shift: int) -> float:
    """Largest block maximum over postings ``lo:hi`` (``hi > lo``); weights are positive."""
    m = 0.0
    for b in range(lo >> block_shift, ((hi - 1) >> block_shift) + 1):
        if block_max[b] > m:
            m = block_max[b]
    return m


# De Bruijn multiply-and-look-up: the index of the lowest set bit of a 64-bit word, no loop.
_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_BIT_INDEX = np.zeros(64, np.int64)
for _i in range(64):
    _BIT_INDEX[((1 << _i) * 0x03F79D71B4CB0A89 % 2**64) >> 58] = _i


@njit(cache=True, nogil=True, inline="always")
def _lowest_bit(word: np.uint64, bit_index: np.ndarray) -> int:
    """Index of the lowest set bit of ``word`` (non-zero)."""
    low = word & (~word + np.uint64(1))
    return bit_index[(low * _DEBRUIJN) >> np.uint64(58)]


@njit(cache=True, nogil=True, inline="always")
def _largest_sum(values: np.ndarray, count: int, work: np.ndarray) -> float:
    """Sum of the ``count`` largest of ``values`` (all of them when ``count >= len``)."""
    n = len(values)
    if count <= 0:  # a window of empty documents (they hold no postings)
        return 0.0
    if count >= n:
        total = 0.0
        for v in values:
            total += v
        return total
    # Insertion into a descending top list: a handful of terms.
    for i in range(count):
        work[i] = 0.0
    for v in values:
        if v > work[count - 1]:
            j = count - 1
            while j > 0 and work[j - 1] < v:
                work[j] = work[j - 1]
                j -= 1
            work[j] = v
    total = 0.0
    for i in range(count):
        total += work[i]
    return total


@njit(cache=True, nogil=True)
def top_candidates(
    postings_doc: np.ndarray,
    weights: np.ndarray,
    block_max: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    idfs: np.ndarray,
    dead: np.ndarray,
    doc_len: np.ndarray,
    ids: np.ndarray,
    rows: np.ndarray,
    dir_starts: np.ndarray,
    dir_maxima: np.ndarray,
    k: int,
    prune: bool,
    window_shift: int = WINDOW_SHIFT,
    scratch=None,
):
    """The ``k`` best documents with a positive score, ties broken by ascending id, exactly.

    Args:
        postings_doc: Document position of each posting, ascending within a term's slice.
        weights: The idf-free weight of each posting (positive).
        block_max: :func:`block_maxima` of ``weights``.
        starts, ends: Each query term's postings slice, in query order (a repeated term twice).
        idfs: Each query term's idf.
        dead: Per document, True when deleted; an empty array when none is.
        doc_len: Per document, its token count, ascending with the position (a document holds
            at most that many distinct terms, so at most that many query terms when the query
            repeats none); an empty array when the query repeats a term (no length cap).
        ids: Per document, its KB id (the tie-break: equal scores rank by ascending id).
        rows, dir_starts, dir_maxima: Each query term's :func:`window_directory` row (-1: none,
            search its postings) and that directory's starts and maxima, built with the same
            ``window_shift`` and ``weights``.
        k: How many best documents are wanted (>= 1).
        prune: Skip documents and windows by the bounds (only valid when every idf is positive).
        window_shift: log2 of the window width in document positions.
        scratch: :func:`new_scratch` arrays to reuse (all zero, and left all zero), so that a
            query does not allocate and clear them; None allocates them for this call.

    Returns:
        (positions, scores, scored): the ``min(k, documents with a positive score)`` best
        documents, best first (descending score, then ascending id), their scores summed in
        query order, and how many documents were scored in full.
    """
    n = len(starts)
    bit_index = _BIT_INDEX
    cur = np.empty(n, np.int64)
    stop = np.empty(n, np.int64)
    ub = np.zeros(n)
    order = np.arange(n)
    lazy = np.zeros(n, np.bool_)
    prefix = np.zeros(n + 1)
    if scratch is None:
        table, acc, seen, surv_off, surv_partial = new_scratch(n, window_shift)
    else:
        table, acc, seen, surv_off, surv_partial = scratch
    best_score = np.zeros(k)
    best_id = np.zeros(k, np.int64)
    best_pos = np.zeros(k, np.int64)
    filled = 0
    theta = 0.0
    scored = 0
    has_dead = len(dead) > 0
    capped = len(doc_len) > 0
    n_docs = len(doc_len)
    # Pass 1: each term's postings slice in each window (window-major) and its bound there.
    lo_doc, hi_doc = np.iinfo(np.int64).max, -1
    for s in range(n):
        if ends[s] > starts[s]:
            lo_doc = min(lo_doc, postings_doc[starts[s]])
            hi_doc = max(hi_doc, postings_doc[ends[s] - 1])
    if hi_doc < 0:
        return best_pos[:0], best_score[:0], 0
    w_first = lo_doc >> window_shift
    n_win = (hi_doc >> window_shift) - w_first + 1
    at = np.empty((n_win + 1, n), np.int64)
    win_ub = np.zeros((n_win, n))
    for s in range(n):
        r = rows[s]
        if r >= 0:  # a frequent term: its directory row holds the window slices and maxima
            for w in range(n_win):
                at[w, s] = dir_starts[r, w_first + w]
                if prune:
                    win_ub[w, s] = idfs[s] * dir_maxima[r, w_first + w]
            at[n_win, s] = dir_starts[r, w_first + n_win]
            continue
        p = starts[s]
        for w in range(n_win):
            at[w, s] = p
            q = _seek(postings_doc, p, ends[s], (w_first + w + 1) << window_shift)
            if prune and q > p:
                win_ub[w, s] = idfs[s] * _block_bound(block_max, p, q, BLOCK_SHIFT)
            p = q
        at[n_win, s] = p
    # A window's longest document (positions ascend with length) holds at most ``cap`` query
    # terms, so none of its documents scores above the ``cap`` largest bounds. Windows go by
    # descending bound: the best documents come first, theta rises early, and once one window's
    # bound is below theta every later one's is too.
    win_bound = np.zeros(n_win)
    if prune:
        for w in range(n_win):
            cap = n
            if capped:
                cap = min(n, doc_len[min((w_first + w + 1) << window_shift, n_docs) - 1])
            win_bound[w] = _largest_sum(win_ub[w], cap, ub)
    win_order = np.argsort(-win_bound, kind="mergesort")
    for wi in range(n_win):
        w = win_order[wi]
        if prune and win_bound[w] * SLACK < theta:
            break
        empty = True
        for s in range(n):
            cur[s] = at[w, s]
            stop[s] = at[w + 1, s]
            ub[s] = win_ub[w, s]
            empty = empty and stop[s] == cur[s]
        if empty:
            continue
        w0 = (w_first + w) << window_shift
        # Ascending bounds (insertion sort: a handful of terms); the first n_lazy are
        # non-essential in this window.
        for j in range(1, n):
            s = order[j]
            i = j
            while i > 0 and ub[order[i - 1]] > ub[s]:
                order[i] = order[i - 1]
                i -= 1
            order[i] = s
        for j in range(n):
            prefix[j + 1] = prefix[j] + ub[order[j]]
        # The length cap bounds whole windows only: capping the non-essential sums as well made
        # more terms non-essential, and merging them cost more than it saved (measured on the
        # corpus workload at 1M: 0.45 against 0.39 ms per query).
        n_lazy = 0
        while prune and n_lazy < n and prefix[n_lazy + 1] * SLACK < theta:
            n_lazy += 1
        for j in range(n):
            lazy[order[j]] = j < n_lazy
        # Essential terms in query order: a document's ``acc`` is then its exact score over them
        # (rank-bm25's order, zeros skipped: adding 0.0 changes no bits). The per-term table is
        # only needed, and written, when non-essential terms will be merged in afterwards.
        for s in range(n):
            if lazy[s]:
                continue
            idf = idfs[s]
            for p in range(cur[s], stop[s]):
                off = postings_doc[p] - w0
                c = idf * weights[p]
                if n_lazy:
                    table[off * n + s] = c
                acc[off] += c
                seen[off >> 6] |= np.uint64(1) << np.uint64(off & 63)
        # Touched documents in document order; those whose essential sum plus every lazy bound
        # cannot reach theta are dropped at once, the rest become survivors.
        lazy_bound = prefix[n_lazy]
        alive = 0
        for word_at in range(len(seen)):
            word = seen[word_at]
            if word == 0:
                continue
            seen[word_at] = 0
            while word:
                off = (word_at << 6) + _lowest_bit(word, bit_index)
                word &= word - np.uint64(1)
                partial = acc[off]
                acc[off] = 0.0
                hopeless = prune and (partial + lazy_bound) * SLACK < theta
                if hopeless or (has_dead and dead[w0 + off]):
                    continue  # its table entries are cleared below, from the postings
                surv_off[alive] = off
                surv_partial[alive] = partial
                alive += 1
        # Non-essential terms, largest bound first, each merged with the (doc-ordered) survivors:
        # a short forward walk, galloping when the gap is long; survivors that can no longer
        # reach theta drop out before the next term.
        for j in range(n_lazy - 1, -1, -1):
            s = order[j]
            p, end, idf = cur[s], stop[s], idfs[s]
            rest = prefix[j + 1]
            kept = 0
            for i in range(alive):
                off = surv_off[i]
                partial = surv_partial[i]
                if (partial + rest) * SLACK < theta:
                    for t in range(j + 1, n_lazy):  # the terms merged before this one
                        table[off * n + order[t]] = 0.0
                    continue
                doc = w0 + off
                steps = 0
                while p < end and postings_doc[p] < doc and steps < 8:
                    p += 1
                    steps += 1
                if p < end and postings_doc[p] < doc:
                    p = _seek(postings_doc, p, end, doc)
                if p < end and postings_doc[p] == doc:
                    c = idf * weights[p]
                    table[off * n + s] = c
                    partial += c
                surv_off[kept] = off
                surv_partial[kept] = partial
                kept += 1
            alive = kept
        for i in range(alive):
            score = surv_partial[i]
            if n_lazy:
                row = surv_off[i] * n
                score = 0.0
                for s in range(n):  # query order, as rank-bm25 adds: equal bits
                    score += table[row + s]
                    table[row + s] = 0.0
            scored += 1
            if score <= 0.0 or (filled == k and score < theta):
                continue
            pos = w0 + surv_off[i]
            filled = _keep_best(best_score, best_id, best_pos, filled, score, ids[pos], pos)
            if filled == k:
                theta = best_score[0]
        if n_lazy:
            for s in range(n):
                if not lazy[s]:
                    for p in range(cur[s], stop[s]):
                        table[(postings_doc[p] - w0) * n + s] = 0.0
    # Best first: descending score, ascending id.
    return best_pos[:filled][::-1].copy(), best_score[:filled][::-1].copy(), scored
