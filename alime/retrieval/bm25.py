"""Okapi BM25 over a sparse inverted index, with live edits and exact ``rank_bm25`` parity.

The index is one immutable *main segment* (CSR-like numpy arrays: per term a slice of postings,
each posting a document position and a term frequency) plus a small in-memory *delta* of added
or replaced documents and *tombstones* over deleted main documents. Every edit builds a new
immutable :class:`Snapshot` whose global statistics (document count, average length, document
frequencies, mean idf) are those of the current corpus, so scores always equal those of a fresh
``rank_bm25.BM25Okapi`` built over the current documents. Readers take the current snapshot
reference once per query; writers hold a lock and swap the reference, so a reader never sees a
half-applied edit.

Scores follow ``BM25Okapi`` step by step, in the same floating-point order::

    idf(t)   = log(N - n_t + 0.5) - log(n_t + 0.5)      (negative: epsilon * mean idf)
    norm(d)  = k1 * ((1 - b) + (b * len(d)) / avgdl)
    score(d) = sum over query terms, in query order, duplicates included, of
               idf(t) * ((tf * (k1 + 1)) / (tf + norm(d)))

The bracketed factor is precomputed per posting for the snapshot's ``avgdl``, so a query costs
at most one multiply-add per posting of its terms; the compiled block-max MaxScore loop
(:mod:`alime.retrieval.bm25_kernel`) skips most postings of common terms.
"""

from __future__ import annotations

import json
import math
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from alime import __version__
from alime.config import BM25Config
from alime.retrieval.bm25_kernel import (
    WINDOW_SHIFT,
    block_maxima,
    new_scratch,
    top_candidates,
    window_directory,
)
from alime.types import Hit

FORMAT_VERSION = 1
_ARRAYS = ("offsets", "postings_doc", "postings_tf", "doc_len", "ids", "id_order")


# --------------------------------------------------------------------------- pure formulas


def okapi_idf(n_docs: int, df: int) -> float:
    """rank-bm25's raw idf, before the epsilon floor (``math.log`` as there, for equal bits)."""
    return math.log(n_docs - df + 0.5) - math.log(df + 0.5)


def length_norm(doc_len: np.ndarray, avgdl: float, config: BM25Config) -> np.ndarray:
    """``k1 * (1 - b + b * len / avgdl)`` per document, in rank-bm25's evaluation order."""
    return config.k1 * ((1 - config.b) + (config.b * doc_len) / avgdl)


def posting_weights(tf: np.ndarray, norm: np.ndarray, config: BM25Config) -> np.ndarray:
    """The idf-free part of each posting's score: ``tf * (k1 + 1) / (tf + norm)``."""
    return (tf * (config.k1 + 1)) / (tf + norm)


def mean_idf(n_docs: int, df: np.ndarray) -> float:
    """Mean raw idf over the vocabulary (terms with ``df > 0``), negatives included."""
    df = df[df > 0].astype(np.float64)
    if not len(df):
        return 0.0
    return float(np.sum(np.log(n_docs - df + 0.5) - np.log(df + 0.5)) / len(df))


# --------------------------------------------------------------------------- main segment


@dataclass(frozen=True, eq=False)
class Segment:
    """An immutable inverted index over ``n`` documents.

    Attributes:
        vocab: Term -> term id; ids follow the sorted order of the terms.
        offsets: int64 ``[V + 1]``; term ``t``'s postings are ``offsets[t]:offsets[t + 1]``.
        postings_doc: int32 document positions, ascending within each term.
        postings_tf: uint16 (or int32) term frequencies, parallel to ``postings_doc``.
        doc_len: int32 ``[n]`` token counts (duplicates included, as rank-bm25 counts).
        ids: int64 ``[n]`` KB ids by position.
        id_order: int64 ``[n]`` positions sorted by id, for id -> position look-ups.
    """

    vocab: Mapping[str, int]
    offsets: np.ndarray
    postings_doc: np.ndarray
    postings_tf: np.ndarray
    doc_len: np.ndarray
    ids: np.ndarray
    id_order: np.ndarray

    @property
    def n(self) -> int:
        return len(self.ids)

    def df(self) -> np.ndarray:
        """Documents per term (int64 ``[V]``), tombstones not applied."""
        return np.diff(self.offsets)

    def position(self, doc_id: int) -> int | None:
        """Position of KB id ``doc_id``, or None when this segment does not hold it."""
        i = int(np.searchsorted(self.ids, doc_id, sorter=self.id_order))
        if i < self.n and self.ids[self.id_order[i]] == doc_id:
            return int(self.id_order[i])
        return None

    def term_strings(self) -> list[str]:
        """Terms by term id."""
        terms = [""] * len(self.vocab)
        for term, tid in self.vocab.items():
            terms[tid] = term
        return terms


def build_segment(
    terms: Sequence[str],
    tid: np.ndarray,
    doc: np.ndarray,
    tf: np.ndarray,
    doc_len: np.ndarray,
    ids: np.ndarray,
) -> Segment:
    """Assemble a segment from unique (term id, doc position, tf) triples in any order.

    Term ids are renumbered so that they follow the sorted terms: the saved vocabulary is then
    deterministic whatever order the documents came in. Document positions are reassigned in
    ascending length (then id): a posting's weight falls as its document grows, so each window of
    positions holds documents of similar length and the block maxima the search prunes with are
    tight (short documents, which score highest, also come first and raise the k-th best early).
    """
    doc_len = np.asarray(doc_len, dtype=np.int64)
    ids = np.asarray(ids, dtype=np.int64)
    by_length = np.lexsort((ids, doc_len))
    new_pos = np.empty(len(by_length), dtype=np.int64)
    new_pos[by_length] = np.arange(len(by_length))
    doc = new_pos[doc] if len(doc) else doc
    doc_len, ids = doc_len[by_length], ids[by_length]
    order = sorted(range(len(terms)), key=terms.__getitem__)
    rank = np.empty(len(terms), dtype=np.int64)
    rank[order] = np.arange(len(terms))
    tid = rank[tid] if len(tid) else tid.astype(np.int64)
    by_term_doc = np.lexsort((doc, tid))
    counts = np.bincount(tid, minlength=len(terms)) if len(tid) else np.zeros(len(terms), int)
    offsets = np.zeros(len(terms) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    ids = np.asarray(ids, dtype=np.int64)
    return Segment(
        vocab={terms[old]: new for new, old in enumerate(order)},
        offsets=offsets,
        postings_doc=doc[by_term_doc].astype(np.int32),
        # Term frequencies are small: two bytes each unless a doc repeats a term 65,535 times.
        postings_tf=tf[by_term_doc].astype(np.uint16 if tf.max(initial=0) < 2**16 else np.int32),
        doc_len=np.asarray(doc_len, dtype=np.int32),
        ids=ids,
        id_order=np.argsort(ids, kind="stable"),
    )


def segment_from_docs(docs: Sequence[Sequence[str]], ids: Sequence[int]) -> Segment:
    """Index token lists: one flat pass over the tokens, then numpy counts the (term, doc) pairs."""
    if len(docs) != len(ids):
        raise ValueError(f"{len(docs)} documents but {len(ids)} ids")
    ids_arr = np.asarray(ids, dtype=np.int64)
    if len(np.unique(ids_arr)) != len(ids_arr):
        raise ValueError("document ids must be unique")
    vocab: dict[str, int] = {}
    flat: list[int] = []
    doc_len = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
    for d in docs:
        flat.extend([vocab.setdefault(t, len(vocab)) for t in d])
    tids = np.asarray(flat, dtype=np.int64)
    doc_of_token = np.repeat(np.arange(len(docs), dtype=np.int64), doc_len)
    # One key per (term, doc) pair: np.unique both deduplicates and counts tf.
    keys, tf = np.unique(tids * max(len(docs), 1) + doc_of_token, return_counts=True)
    tid, doc = np.divmod(keys, max(len(docs), 1))
    return build_segment(list(vocab), tid, doc, tf, doc_len, ids_arr)


# --------------------------------------------------------------------------- snapshots


@dataclass(frozen=True)
class DeltaDoc:
    """A live-added document: its term counts and its length."""

    counts: Mapping[str, int]
    length: int


@dataclass(frozen=True, eq=False)
class Snapshot:
    """One consistent view of the corpus; never mutated after construction.

    Attributes:
        main: The immutable main segment.
        dead: bool per main position (deleted or replaced), or None when nothing is deleted.
        df: Current document frequency of each main-vocabulary term (main minus dead plus delta).
        delta: KB id -> live-added document.
        delta_postings: Term -> ((id, tf, length), ...) over the delta documents.
        new_df: Document frequency of terms that only the delta has.
        n_docs: Documents in the current corpus.
        total_len: Sum of their lengths.
        weights: Per main posting, ``tf * (k1 + 1) / (tf + norm)`` for this snapshot's avgdl.
        block_max: Per run of ``2**BLOCK_SHIFT`` main postings, the largest weight (for pruning).
        directory: :func:`~alime.retrieval.bm25_kernel.window_directory` of the main segment
            for these weights: (row per term, window starts, window maxima).
        term_idf: Per main term, its current idf (0 when no current document has it), so that a
            query's idfs are one array look-up.
        eps_idf: The idf given to terms whose raw idf is negative.
    """

    config: BM25Config
    main: Segment
    dead: np.ndarray | None
    df: np.ndarray
    delta: Mapping[int, DeltaDoc]
    delta_postings: Mapping[str, tuple[tuple[int, int, int], ...]]
    new_df: Mapping[str, int]
    n_docs: int
    total_len: int
    weights: np.ndarray = field(repr=False)
    block_max: np.ndarray = field(repr=False)
    directory: tuple[np.ndarray, np.ndarray, np.ndarray] = field(repr=False)
    term_idf: np.ndarray = field(repr=False)
    eps_idf: float

    @property
    def avgdl(self) -> float:
        # Python int / int, exactly as rank-bm25 computes it.
        return self.total_len / self.n_docs if self.n_docs else 0.0

    def idf(self, term: str) -> float:
        """The term's idf in the current corpus; 0 for a term no current document has."""
        tid = self.main.vocab.get(term)
        df = int(self.df[tid]) if tid is not None else self.new_df.get(term, 0)
        if df == 0:
            return 0.0
        idf = okapi_idf(self.n_docs, df)
        return self.eps_idf if idf < 0 else idf

    def delta_weight(self, tf: int, length: int) -> float:
        """``posting_weights`` for one delta posting, with Python floats (same IEEE arithmetic)."""
        c = self.config
        norm = c.k1 * ((1 - c.b) + (c.b * length) / self.avgdl)
        return (tf * (c.k1 + 1)) / (tf + norm)


def make_snapshot(
    config: BM25Config,
    main: Segment,
    dead: np.ndarray | None = None,
    delta: Mapping[int, DeltaDoc] | None = None,
) -> Snapshot:
    """Derive every global statistic of (main minus dead) plus delta."""
    delta = dict(delta or {})
    df = main.df().copy()
    n_docs, total_len = main.n, int(main.doc_len.sum(dtype=np.int64))
    if dead is not None and dead.any():
        # Dead postings per term from a running count: O(postings), independent of #dead.
        running = np.concatenate([[0], np.cumsum(dead[main.postings_doc], dtype=np.int64)])
        df -= running[main.offsets[1:]] - running[main.offsets[:-1]]
        n_docs -= int(dead.sum())
        total_len -= int(main.doc_len[dead].sum(dtype=np.int64))
    else:
        dead = None
    new_df: Counter[str] = Counter()
    postings: dict[str, list[tuple[int, int, int]]] = {}
    for doc_id, doc in delta.items():
        n_docs += 1
        total_len += doc.length
        for term, tf in doc.counts.items():
            postings.setdefault(term, []).append((doc_id, tf, doc.length))
            tid = main.vocab.get(term)
            if tid is None:
                new_df[term] += 1
            else:
                df[tid] += 1
    all_df = np.concatenate([df, np.fromiter(new_df.values(), np.int64, len(new_df))])
    avgdl = total_len / n_docs if n_docs else 0.0
    eps_idf = config.epsilon * mean_idf(n_docs, all_df)
    weights = np.zeros(0)
    if total_len:
        weights = posting_weights(
            main.postings_tf, length_norm(main.doc_len, avgdl, config)[main.postings_doc], config
        )
    return Snapshot(
        config=config,
        main=main,
        dead=dead,
        df=df,
        delta=delta,
        delta_postings={t: tuple(p) for t, p in postings.items()},
        new_df=dict(new_df),
        n_docs=n_docs,
        total_len=total_len,
        weights=weights,
        block_max=block_maxima(weights),
        directory=window_directory(main.offsets, main.postings_doc, weights, main.n),
        term_idf=term_idfs(n_docs, df, eps_idf),
        eps_idf=eps_idf,
    )


def term_idfs(n_docs: int, df: np.ndarray, eps_idf: float) -> np.ndarray:
    """Each term's idf as :meth:`Snapshot.idf` gives it (``math.log``, for rank-bm25's bits)."""
    out = np.zeros(len(df))
    for tid, n_t in enumerate(df.tolist()):
        if n_t:
            idf = okapi_idf(n_docs, n_t)
            out[tid] = eps_idf if idf < 0 else idf
    return out


def merged_segment(snap: Snapshot) -> Segment:
    """Fold the delta and the tombstones of ``snap`` into a new main segment."""
    main = snap.main
    alive = np.ones(main.n, bool) if snap.dead is None else ~snap.dead
    new_pos = np.cumsum(alive) - 1
    tid = np.repeat(np.arange(len(main.vocab), dtype=np.int64), main.df())
    keep = alive[main.postings_doc]
    terms = main.term_strings()
    vocab = dict(main.vocab)
    d_tid, d_doc, d_tf = [], [], []
    n_alive = int(alive.sum())
    for i, doc in enumerate(snap.delta.values()):
        for term, tf in doc.counts.items():
            if term not in vocab:
                vocab[term] = len(terms)
                terms.append(term)
            d_tid.append(vocab[term])
            d_doc.append(n_alive + i)
            d_tf.append(tf)
    tid = np.concatenate([tid[keep], np.asarray(d_tid, np.int64)])
    doc = np.concatenate([new_pos[main.postings_doc[keep]], np.asarray(d_doc, np.int64)])
    tf = np.concatenate([main.postings_tf[keep], np.asarray(d_tf, np.int64)])
    # Terms only dead documents had are dropped, as a fresh build would not know them.
    used = np.zeros(len(terms), bool)
    used[tid] = True
    remap = np.cumsum(used) - 1
    doc_len = np.concatenate(
        [main.doc_len[alive], np.fromiter((d.length for d in snap.delta.values()), np.int64)]
    )
    ids = np.concatenate([main.ids[alive], np.fromiter(snap.delta.keys(), np.int64)])
    kept_terms = [t for t, u in zip(terms, used, strict=True) if u]
    return build_segment(kept_terms, remap[tid], doc, tf, doc_len, ids)


# --------------------------------------------------------------------------- scoring


def _main_terms(snap: Snapshot, query_terms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(term ids, idfs) of the query's main-vocabulary terms that add something, in query order."""
    vocab = snap.main.vocab
    found = [vocab.get(t) for t in query_terms]
    tids = np.array([t for t in found if t is not None], np.int64)
    idfs = snap.term_idf[tids]
    keep = idfs != 0
    return tids[keep], idfs[keep]


def _score_main(
    snap: Snapshot, tids: np.ndarray, idfs: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """(ids, scores) of the main segment's ``k`` best documents, ties broken by ascending id.

    The compiled block-max MaxScore loop of :mod:`alime.retrieval.bm25_kernel` does the work; it
    adds each document's contributions in query order, so scores equal rank-bm25's to the bit.
    """
    if not len(tids):
        return np.zeros(0, np.int64), np.zeros(0)
    main = snap.main
    rows, dir_starts, dir_maxima = snap.directory
    scratch = getattr(_SCRATCH, "arrays", None)
    if scratch is None or len(scratch[0]) < len(scratch[1]) * len(tids):
        scratch = _SCRATCH.arrays = new_scratch(max(len(tids), 16))
    positions, scores, _ = top_candidates(
        main.postings_doc,
        snap.weights,
        snap.block_max,
        main.offsets[tids],
        main.offsets[tids + 1],
        idfs,
        _NO_DEAD if snap.dead is None else snap.dead,
        # The length cap counts distinct terms: a repeated query term would break it.
        main.doc_len if len(set(tids.tolist())) == len(tids) else _NO_LENGTHS,
        main.ids,
        rows[tids],
        dir_starts,
        dir_maxima,
        k,
        bool((idfs > 0).all()),
        WINDOW_SHIFT,
        scratch,
    )
    return main.ids[positions], scores


_NO_DEAD = np.zeros(0, bool)
_NO_LENGTHS = np.zeros(0, np.int32)
# Every query with positive idfs is pruned, however long: since windows go by descending bound,
# pruning all beat leaving queries of more than 12 terms unpruned (kernel only, 1M, one run:
# 3,407 against 2,733 q/s on the corpus workload, 1,997 against 1,763 on the synthetic one).
# Each thread's kernel work arrays (the kernel leaves them zeroed): a query then neither allocates
# nor clears ~130 KB.
_SCRATCH = threading.local()


def _score_delta(snap: Snapshot, terms: list[tuple[str, float]]) -> dict[int, float]:
    """Scores of the delta documents that contain a query term."""
    scores: dict[int, float] = {}
    for term, idf in terms:
        for doc_id, tf, length in snap.delta_postings.get(term, ()):
            scores[doc_id] = scores.get(doc_id, 0.0) + idf * snap.delta_weight(tf, length)
    return scores


def top_k(ids: np.ndarray, scores: np.ndarray, k: int) -> list[Hit]:
    """The ``k`` best positive scores, ties broken by ascending id."""
    keep = scores > 0
    ids, scores = ids[keep], scores[keep]
    order = np.lexsort((ids, -scores))[:k]
    return _hits(ids[order], scores[order])


def _hits(ids: np.ndarray, scores: np.ndarray) -> list[Hit]:
    # tolist() converts every element at once: Python ints and floats without numpy scalars.
    return [Hit(i, s) for i, s in zip(ids.tolist(), scores.tolist(), strict=True)]


# --------------------------------------------------------------------------- the index


class BM25Index:
    """A BM25 index with live edits; thread-safe for concurrent readers and writers.

    Build with :meth:`build` or :meth:`load`. Edits (:meth:`add`, :meth:`update`,
    :meth:`delete`, :meth:`apply`) go to the delta; :meth:`merge` folds the delta into a new
    main segment when :attr:`pending_edits` grows (``RetrievalConfig.merge_every``).
    """

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._write_lock = threading.Lock()

    @classmethod
    def build(
        cls, docs: Sequence[Sequence[str]], ids: Sequence[int], config: BM25Config | None = None
    ) -> BM25Index:
        """Index ``docs`` (token lists) under KB ``ids``."""
        config = config or BM25Config()
        return cls(make_snapshot(config, segment_from_docs(docs, ids)))

    # ------------------------------------------------------------------ reading

    @property
    def snapshot(self) -> Snapshot:
        """The current consistent view (grab once, use for a whole query)."""
        return self._snapshot

    @property
    def config(self) -> BM25Config:
        return self._snapshot.config

    def __len__(self) -> int:
        return self._snapshot.n_docs

    def __contains__(self, doc_id: int) -> bool:
        return _locate(self._snapshot, doc_id) is not None

    @property
    def pending_edits(self) -> int:
        """Delta documents plus tombstones: what :meth:`merge` would fold in."""
        snap = self._snapshot
        dead = 0 if snap.dead is None else int(snap.dead.sum())
        return len(snap.delta) + dead

    def search(self, query_terms: Sequence[str], k: int = 10) -> list[Hit]:
        """The ``k`` best documents with a positive score, ties broken by ascending id.

        Args:
            query_terms: Query tokens; repeated terms count each time, unknown terms add 0.
            k: How many hits at most.
        """
        snap = self._snapshot
        if k <= 0 or snap.n_docs == 0:
            return []
        ids, scores = _score_main(snap, *_main_terms(snap, query_terms), k)
        delta = _score_delta(snap, _weighted_terms(snap, query_terms)) if snap.delta else {}
        if not delta:  # the kernel's k best are already ranked (score desc, id asc), all > 0
            return _hits(ids, scores)
        ids = np.concatenate([ids, np.fromiter(delta.keys(), np.int64, len(delta))])
        scores = np.concatenate([scores, np.fromiter(delta.values(), np.float64, len(delta))])
        return top_k(ids, scores, k)

    def scores_for(self, query_terms: Sequence[str], ids: Sequence[int]) -> np.ndarray:
        """BM25 scores of the given KB ids (float64, in the order given).

        Raises:
            KeyError: An id is not in the index.
        """
        snap = self._snapshot
        terms = _weighted_terms(snap, query_terms)
        out = np.zeros(len(ids))
        main_rows, main_pos = [], []
        for row, doc_id in enumerate(ids):
            where = _locate(snap, int(doc_id))
            if where is None:
                raise KeyError(doc_id)
            if where == "delta":
                out[row] = _score_delta_doc(snap, terms, int(doc_id))
            else:
                main_rows.append(row)
                main_pos.append(where)
        if main_rows:
            out[main_rows] = _score_main_positions(snap, terms, np.asarray(main_pos, np.int64))
        return out

    # ------------------------------------------------------------------ writing

    def add(self, doc_id: int, terms: Sequence[str]) -> None:
        """Add a new document. Raises ValueError when ``doc_id`` is already indexed."""
        self.apply(adds={doc_id: terms})

    def update(self, doc_id: int, terms: Sequence[str]) -> None:
        """Replace a document's terms. Raises KeyError when ``doc_id`` is not indexed."""
        self.apply(updates={doc_id: terms})

    def delete(self, doc_id: int) -> None:
        """Remove a document. Raises KeyError when ``doc_id`` is not indexed."""
        self.apply(deletes=[doc_id])

    def apply(
        self,
        adds: Mapping[int, Sequence[str]] | None = None,
        updates: Mapping[int, Sequence[str]] | None = None,
        deletes: Iterable[int] = (),
    ) -> None:
        """Apply a batch of edits as one new snapshot (statistics are recomputed once)."""
        with self._write_lock:
            snap = self._snapshot
            dead = None if snap.dead is None else snap.dead.copy()
            delta = dict(snap.delta)
            for doc_id in adds or {}:
                if _locate(snap, int(doc_id)) is not None:
                    raise ValueError(f"document {doc_id} is already indexed")
            for doc_id in [*deletes, *(updates or {})]:
                dead = _remove(snap, dead, delta, int(doc_id))
            for doc_id, terms in {**(adds or {}), **(updates or {})}.items():
                delta[int(doc_id)] = DeltaDoc(counts=dict(Counter(terms)), length=len(terms))
            self._snapshot = make_snapshot(snap.config, snap.main, dead, delta)

    def merge(self) -> None:
        """Fold the delta and tombstones into a new main segment; scores do not change."""
        with self._write_lock:
            snap = self._snapshot
            if snap.delta or snap.dead is not None:
                self._snapshot = make_snapshot(snap.config, merged_segment(snap))

    # ------------------------------------------------------------------ persistence

    def save(self, directory: str | Path) -> None:
        """Write ``.npy`` arrays, ``vocab.json`` and ``params.json`` (last) into ``directory``.

        Pending edits are merged first, so the files hold exactly the current corpus.
        """
        self.merge()
        snap = self._snapshot
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        for name in _ARRAYS:
            np.save(out / f"{name}.npy", getattr(snap.main, name), allow_pickle=False)
        (out / "vocab.json").write_text(
            json.dumps(snap.main.term_strings(), ensure_ascii=False), encoding="utf-8"
        )
        params = {
            "format_version": FORMAT_VERSION,
            "alime_version": __version__,
            "kind": "bm25_okapi",
            "config": asdict(snap.config),
            "n_docs": snap.n_docs,
        }
        (out / "params.json").write_text(json.dumps(params, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = True) -> BM25Index:
        """Load what :meth:`save` wrote; ``mmap`` maps the arrays instead of reading them."""
        src = Path(directory)
        params = json.loads((src / "params.json").read_text(encoding="utf-8"))
        if params.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{src}: BM25 index format {params.get('format_version')}, "
                f"this alime reads {FORMAT_VERSION}"
            )
        arrays = {
            name: np.load(src / f"{name}.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
            for name in _ARRAYS
        }
        terms = json.loads((src / "vocab.json").read_text(encoding="utf-8"))
        main = Segment(vocab={t: i for i, t in enumerate(terms)}, **arrays)
        return cls(make_snapshot(BM25Config(**params["config"]), main))


# --------------------------------------------------------------------------- helpers


def _weighted_terms(snap: Snapshot, query_terms: Sequence[str]) -> list[tuple[str, float]]:
    """(term, idf) in query order with duplicates; terms that add nothing are dropped."""
    idfs = {t: snap.idf(t) for t in set(query_terms)}
    return [(t, idfs[t]) for t in query_terms if idfs[t] != 0]


def _locate(snap: Snapshot, doc_id: int) -> int | str | None:
    """``"delta"``, a live main position, or None."""
    if doc_id in snap.delta:
        return "delta"
    pos = snap.main.position(doc_id)
    if pos is None or (snap.dead is not None and snap.dead[pos]):
        return None
    return pos


def _remove(
    snap: Snapshot, dead: np.ndarray | None, delta: dict[int, DeltaDoc], doc_id: int
) -> np.ndarray | None:
    """Drop ``doc_id`` from ``delta`` or tombstone it in ``dead``; returns the dead mask."""
    if doc_id in delta:
        del delta[doc_id]
        return dead
    pos = snap.main.position(doc_id)
    if pos is None or (dead is not None and dead[pos]):
        raise KeyError(doc_id)
    if dead is None:
        dead = np.zeros(snap.main.n, bool)
    dead[pos] = True
    return dead


def _score_delta_doc(snap: Snapshot, terms: list[tuple[str, float]], doc_id: int) -> float:
    doc = snap.delta[doc_id]
    score = 0.0
    for term, idf in terms:
        tf = doc.counts.get(term, 0)
        if tf:
            score += idf * snap.delta_weight(tf, doc.length)
    return score


def _score_main_positions(
    snap: Snapshot, terms: list[tuple[str, float]], pos: np.ndarray
) -> np.ndarray:
    """Scores of main positions ``pos``: a binary search in each term's postings."""
    main = snap.main
    out = np.zeros(len(pos))
    for term, idf in terms:
        tid = main.vocab.get(term)
        if tid is None:
            continue
        lo, hi = int(main.offsets[tid]), int(main.offsets[tid + 1])
        docs = main.postings_doc[lo:hi]
        j = np.minimum(np.searchsorted(docs, pos), max(hi - lo - 1, 0))
        if hi > lo:
            hit = docs[j] == pos
            out[hit] += idf * snap.weights[lo + j[hit]]
    return out
