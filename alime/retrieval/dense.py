"""A faiss inner-product index over question embeddings, with live edits.

Layout mirrors the BM25 index: an immutable *main* faiss index (``IndexIDMap2`` over an exact
``IndexFlatIP`` for small KBs, over ``IndexIVFFlat`` (or ``IndexHNSWFlat``) above
``DenseConfig.approx_threshold``), plus a
small *delta* of added or replaced vectors searched by brute force in numpy, plus *tombstones* over
main ids that were deleted or replaced. Tombstones are excluded inside faiss through an
``IDSelector`` passed with the search parameters, so the main search still returns ``k`` live hits.
The parameters and selector are built afresh for every search, never shared between threads:
faiss's ``IndexIDMap2::search`` temporarily swaps ``params->sel`` for a selector on its own stack
(a ``const_cast``), so two threads sharing one parameters object read each other's freed stack
objects (issue 12: worker SIGSEGVs under concurrent chat once a pair was deleted or edited).

Centering: averaged word embeddings all lie in a narrow cone (their mean has norm ~0.9), where
near neighbours differ by a few thousandths of cosine; HNSW then navigates badly (recall@10 vs
exact 0.80 at efSearch 256 over 100,000 questions). Subtracting the mean vector of the indexed
questions and re-normalizing spreads them out (0.976 at the same setting). The mean is computed
once at build time, stored with the index and applied to every query and every live edit.

Every edit builds a new frozen :class:`DenseSnapshot` and swaps one reference; a query reads the
reference once, so it never sees a half-applied edit. :meth:`DenseIndex.merge` folds delta and
tombstones into a new main index (a rebuild: HNSW cannot delete).

Saved as ``index.faiss`` (``faiss.write_index``) plus ``params.json``; no pickle.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from alime import __version__
from alime.config import DenseConfig
from alime.types import Hit
from pluto.choices import parse_choice

FORMAT_VERSION = 1
INDEX_FILE = "index.faiss"
PARAMS_FILE = "params.json"
CENTER_FILE = "center.npy"


class IndexKind(str, Enum):
    """Which faiss structure holds the main vectors."""

    AUTO = "auto"  # FLAT below DenseConfig.approx_threshold vectors, IVF from there on
    FLAT = "flat"  # exact inner product
    HNSW = "hnsw"  # approximate: graph search
    IVF = "ivf"  # approximate: inverted lists over k-means cells


def set_search_threads(n: int) -> None:
    """faiss's OpenMP threads for the calling thread (OpenMP keeps the setting per thread).

    One query at a time gains nothing from OpenMP, and on a busy 2-core machine its spin-waiting
    threads made single-query searches 20-80x slower (measured: 0.5 ms vs 40 ms for exact search
    over 20,000 vectors), so searches use ``DenseConfig.search_threads`` (1) and set it on every
    call, whichever request thread runs them; concurrent requests use the cores instead. Builds
    use every core.
    """
    import faiss

    faiss.omp_set_num_threads(max(1, int(n)))


def resolve_kind(config: DenseConfig, n: int) -> IndexKind:
    """The concrete kind for ``n`` vectors (AUTO resolved by the size threshold).

    Raises:
        ValueError: ``config.kind`` is not an IndexKind value.
    """
    kind = parse_choice(IndexKind, config.kind, "dense index kind")
    if kind is IndexKind.AUTO:
        # IVF, not HNSW: on these embeddings IVF reached recall@10 0.967 against exact search at
        # 1.2 ms where HNSW (M=32, efConstruction=64) stopped at 0.91 (efSearch=256), and it
        # builds faster (docs/benchmarks.md, "Dense and hybrid retrieval").
        return IndexKind.IVF if n >= config.approx_threshold else IndexKind.FLAT
    return kind


def build_faiss(
    vectors: np.ndarray,
    ids: np.ndarray,
    kind: IndexKind,
    config: DenseConfig,
    threads: int | None = None,
):
    """A new ``IndexIDMap2`` over ``vectors`` (float32, normalized) labelled with KB ``ids``,
    built with ``threads`` OpenMP threads (default: every core)."""
    import faiss

    set_search_threads(threads or os.cpu_count() or 1)
    dim = vectors.shape[1]
    if kind is IndexKind.HNSW:
        inner = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = config.ef_construction
        inner.hnsw.efSearch = config.ef_search
    elif kind is IndexKind.IVF:
        nlist = ivf_lists(config, len(vectors))
        quantizer = faiss.IndexFlatIP(dim)
        inner = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        inner.own_fields = True
        quantizer.this.disown()  # the IVF index frees its quantizer
        inner.nprobe = ivf_probes(config, nlist)
        # k-means on a fixed-seed sample of 40 points per list (faiss warns below 39): the
        # training is most of the build time (204 s at 1M with 64 per list).
        rng = np.random.default_rng(0)
        sample = vectors[rng.choice(len(vectors), min(len(vectors), 40 * nlist), replace=False)]
        inner.train(np.ascontiguousarray(sample, np.float32))
    else:
        inner = faiss.IndexFlatIP(dim)
    index = faiss.IndexIDMap2(inner)
    if len(vectors):
        index.add_with_ids(np.ascontiguousarray(vectors, np.float32), np.asarray(ids, np.int64))
    return index


def ivf_lists(config: DenseConfig, n: int) -> int:
    """IVF list count: ``config.ivf_nlist``, or about ``4 * sqrt(n)`` (at least 1)."""
    # Cap so k-means sees its recommended 39 points per list even on small inputs.
    return config.ivf_nlist or max(1, min(int(4 * np.sqrt(n)), n // 39))


def ivf_probes(config: DenseConfig, nlist: int) -> int:
    """Lists searched per query: ``config.ivf_nprobe``, at most all of them.

    128 gave recall@10 against exact search of 0.97 at 100,000 questions (1,264 lists) and 0.96 at
    1,000,000 (4,000 lists): the share needed falls as lists grow, so a fixed count serves both.
    """
    return max(1, min(nlist, config.ivf_nprobe))


def main_vectors(index) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) held by a main index, in insertion order."""
    import faiss

    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexIVF):
        inner.make_direct_map()  # IVF reconstructs by position only through a direct map
    vectors = inner.reconstruct_n(0, inner.ntotal) if inner.ntotal else np.zeros((0, index.d))
    return ids, np.asarray(vectors, np.float32)


@dataclass(frozen=True, eq=False)
class DenseSnapshot:
    """One consistent view of the vectors; never mutated after construction.

    Attributes:
        config: The index parameters.
        kind: FLAT or HNSW (the main index's structure).
        main: The faiss ``IndexIDMap2`` (read-only once in a snapshot).
        main_ids: Sorted KB ids the main index holds (dead ones included).
        dead: Main ids deleted or replaced since the main index was built.
        dead_ids: ``dead`` as a sorted int64 array (what each search's selector is built from).
        delta: KB id -> row of ``delta_vectors``.
        delta_ids: KB ids by delta row.
        delta_vectors: ``[len(delta), dim]`` float32.
        center: The mean vector subtracted before normalizing, or None.
    """

    config: DenseConfig
    kind: IndexKind
    main: object
    main_ids: np.ndarray
    dead: frozenset[int]
    dead_ids: np.ndarray
    delta: Mapping[int, int]
    delta_ids: np.ndarray
    delta_vectors: np.ndarray
    center: np.ndarray | None = None

    def prepare(self, vectors: np.ndarray) -> np.ndarray:
        """Embedder output -> index space: centered (when enabled) and unit length."""
        return prepare(vectors, self.center)

    @property
    def dim(self) -> int:
        return int(self.main.d)

    def __len__(self) -> int:
        return len(self.main_ids) - len(self.dead) + len(self.delta)

    def in_main(self, doc_id: int) -> bool:
        i = int(np.searchsorted(self.main_ids, doc_id))
        return i < len(self.main_ids) and int(self.main_ids[i]) == doc_id

    def contains(self, doc_id: int) -> bool:
        return doc_id in self.delta or (self.in_main(doc_id) and doc_id not in self.dead)

    def search_params(self):
        """New faiss search parameters for ONE search: the search-time knobs plus a selector
        excluding the tombstones.

        Never cache or share the result between threads: ``IndexIDMap2::search`` writes to it
        during the search (see the module docstring). Building it costs microseconds (a hash set
        of at most ``merge_every``-ish dead ids).
        """
        import faiss

        if self.kind is IndexKind.HNSW:
            params = faiss.SearchParametersHNSW(efSearch=self.config.ef_search)
        elif self.kind is IndexKind.IVF:
            nlist = faiss.extract_index_ivf(self.main).nlist
            params = faiss.SearchParametersIVF(nprobe=ivf_probes(self.config, nlist))
        else:
            params = faiss.SearchParameters()
        if len(self.dead_ids):
            batch = faiss.IDSelectorBatch(self.dead_ids)
            selector = faiss.IDSelectorNot(batch)
            # SWIG does not keep C++ referents alive: hold them from the Python objects that
            # must outlive the search.
            selector.referenced = batch
            params.sel = selector
            params.referenced = selector
        return params


def prepare(vectors: np.ndarray, center: np.ndarray | None) -> np.ndarray:
    """``vectors`` minus ``center`` (when given), rows scaled to unit length, float32."""
    vectors = np.asarray(vectors, np.float32)
    if center is None:
        return np.ascontiguousarray(vectors)
    shifted = vectors - center
    norms = np.linalg.norm(shifted, axis=-1, keepdims=True)
    return np.ascontiguousarray(shifted / np.maximum(norms, 1e-12), dtype=np.float32)


def make_snapshot(
    config: DenseConfig,
    kind: IndexKind,
    main,
    main_ids: np.ndarray,
    dead: Iterable[int] = (),
    delta: Mapping[int, np.ndarray] | None = None,
    center: np.ndarray | None = None,
) -> DenseSnapshot:
    """Assemble a snapshot; stacks the delta vectors (search parameters are made per search)."""
    dead = frozenset(int(i) for i in dead)
    delta = dict(delta or {})
    ids = np.fromiter(delta.keys(), np.int64, len(delta))
    vectors = (
        np.stack(list(delta.values())).astype(np.float32)
        if delta
        else np.zeros((0, int(main.d)), np.float32)
    )
    return DenseSnapshot(
        config=config,
        kind=kind,
        main=main,
        main_ids=np.sort(np.asarray(main_ids, np.int64)),
        dead=dead,
        dead_ids=np.fromiter(sorted(dead), np.int64, len(dead)),
        delta={int(i): r for r, i in enumerate(ids)},
        delta_ids=ids,
        delta_vectors=vectors,
        center=center,
    )


def merge_hits(ids: np.ndarray, scores: np.ndarray, k: int) -> list[Hit]:
    """The ``k`` best (id, score) pairs, ties broken by ascending id."""
    order = np.lexsort((ids, -scores))[:k]
    return [Hit(int(i), float(s)) for i, s in zip(ids[order], scores[order], strict=True)]


class DenseIndex:
    """Inner-product search over normalized vectors with live add/update/delete; thread-safe.

    Args:
        snapshot: The initial view (use :meth:`build` or :meth:`load`).
        model_identity: Identity of the embedder that produced the vectors.
    """

    def __init__(self, snapshot: DenseSnapshot, model_identity: str) -> None:
        self._snapshot = snapshot
        self.model_identity = model_identity
        self._write_lock = threading.Lock()

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        ids: np.ndarray,
        model_identity: str,
        config: DenseConfig | None = None,
        dim: int | None = None,
    ) -> DenseIndex:
        """Index ``vectors`` ``[n, dim]`` under KB ``ids`` (unique)."""
        config = config or DenseConfig()
        vectors = np.asarray(vectors, np.float32)
        if vectors.size == 0 and dim is not None:
            vectors = vectors.reshape(0, dim)
        if vectors.ndim != 2:
            raise ValueError("vectors must be [n, dim]; pass dim= for an empty index")
        ids = np.asarray(ids, np.int64)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(vectors)} vectors but {len(ids)} ids")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("ids must be unique")
        kind = resolve_kind(config, len(ids))
        center = vectors.mean(axis=0).astype(np.float32) if config.center and len(ids) else None
        main = build_faiss(prepare(vectors, center), ids, kind, config)
        return cls(make_snapshot(config, kind, main, ids, center=center), model_identity)

    # ------------------------------------------------------------------ reading

    @property
    def snapshot(self) -> DenseSnapshot:
        """The current consistent view (grab once, use for a whole query)."""
        return self._snapshot

    @property
    def kind(self) -> IndexKind:
        return self._snapshot.kind

    @property
    def dim(self) -> int:
        return self._snapshot.dim

    def __len__(self) -> int:
        return len(self._snapshot)

    def __contains__(self, doc_id: int) -> bool:
        return self._snapshot.contains(int(doc_id))

    @property
    def pending_edits(self) -> int:
        snap = self._snapshot
        return len(snap.delta) + len(snap.dead)

    def search(self, vector: np.ndarray, k: int = 10) -> list[Hit]:
        """The ``k`` nearest live vectors to one query ``[dim]`` (score: cosine in index space,
        i.e. after centering)."""
        return self.search_many(np.asarray(vector, np.float32)[None, :], k)[0]

    def search_many(self, vectors: np.ndarray, k: int = 10) -> list[list[Hit]]:
        """:meth:`search` for a batch of queries ``[q, dim]``, all against one snapshot."""
        snap = self._snapshot
        queries = snap.prepare(vectors)
        set_search_threads(snap.config.search_threads)
        if k <= 0 or len(snap) == 0:
            return [[] for _ in range(len(queries))]
        main_k = min(k, len(snap.main_ids))
        if main_k > 0:
            scores, ids = snap.main.search(queries, main_k, params=snap.search_params())
        else:
            scores = np.zeros((len(queries), 0), np.float32)
            ids = np.zeros((len(queries), 0), np.int64)
        if len(snap.delta_ids):
            delta_scores = queries @ snap.delta_vectors.T
            scores = np.concatenate([scores, delta_scores], axis=1)
            ids = np.concatenate([ids, np.broadcast_to(snap.delta_ids, delta_scores.shape)], axis=1)
        out = []
        for row_ids, row_scores in zip(ids, scores, strict=True):
            live = row_ids >= 0  # faiss pads with -1 when fewer than k live vectors exist
            out.append(merge_hits(row_ids[live], row_scores[live].astype(np.float64), k))
        return out

    # ------------------------------------------------------------------ writing

    def apply(
        self,
        adds: Mapping[int, np.ndarray] | None = None,
        updates: Mapping[int, np.ndarray] | None = None,
        deletes: Iterable[int] = (),
    ) -> None:
        """Apply a batch of edits (vectors already normalized) as one new snapshot.

        Raises:
            ValueError: An added id is already indexed, or a vector has the wrong size.
            KeyError: An updated or deleted id is not indexed.
        """
        with self._write_lock:
            snap = self._snapshot
            dead = set(snap.dead)
            delta = {i: snap.delta_vectors[r] for i, r in snap.delta.items()}
            for doc_id in adds or {}:
                if snap.contains(int(doc_id)):
                    raise ValueError(f"document {doc_id} is already indexed")
            for doc_id in [*deletes, *(updates or {})]:
                doc_id = int(doc_id)
                if doc_id in delta:
                    del delta[doc_id]
                elif snap.in_main(doc_id) and doc_id not in dead:
                    dead.add(doc_id)
                else:
                    raise KeyError(doc_id)
            for doc_id, vector in {**(adds or {}), **(updates or {})}.items():
                vector = np.asarray(vector, np.float32).reshape(-1)
                if len(vector) != snap.dim:
                    raise ValueError(f"vector of size {len(vector)}, index has {snap.dim}")
                delta[int(doc_id)] = snap.prepare(vector)
            self._snapshot = make_snapshot(
                snap.config, snap.kind, snap.main, snap.main_ids, dead, delta, snap.center
            )

    def merge(self, threads: int | None = None) -> None:
        """Rebuild the main index from its live vectors plus the delta; results do not change
        for exact search (HNSW may differ within its approximation).

        Args:
            threads: OpenMP threads for the build (default: every core).
        """
        with self._write_lock:
            snap = self._snapshot
            if not snap.delta and not snap.dead:
                return
            ids, vectors = main_vectors(snap.main)
            if snap.dead:
                alive = ~np.isin(ids, np.fromiter(snap.dead, np.int64, len(snap.dead)))
                ids, vectors = ids[alive], vectors[alive]
            ids = np.concatenate([ids, snap.delta_ids])
            vectors = np.concatenate([vectors, snap.delta_vectors])
            kind = resolve_kind(snap.config, len(ids))
            # Stored vectors are already in index space: keep the same center, do not re-center.
            main = build_faiss(vectors, ids, kind, snap.config, threads)
            self._snapshot = make_snapshot(snap.config, kind, main, ids, center=snap.center)

    # ------------------------------------------------------------------ persistence

    def save(self, directory: str | Path) -> None:
        """Write ``index.faiss`` and ``params.json`` (last); pending edits are merged first."""
        import faiss

        self.merge()
        snap = self._snapshot
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        faiss.write_index(snap.main, str(out / INDEX_FILE))
        if snap.center is not None:
            np.save(out / CENTER_FILE, snap.center, allow_pickle=False)
        params = {
            "format_version": FORMAT_VERSION,
            "alime_version": __version__,
            "faiss_version": faiss.__version__,
            "kind": snap.kind.value,
            "dim": snap.dim,
            "n": len(snap),
            "model_identity": self.model_identity,
            "centered": snap.center is not None,
            "config": asdict(snap.config),
        }
        (out / PARAMS_FILE).write_text(json.dumps(params, indent=2), encoding="utf-8")

    @classmethod
    def load(
        cls,
        directory: str | Path,
        config: DenseConfig | None = None,
        model_identity: str | None = None,
    ) -> DenseIndex:
        """Load what :meth:`save` wrote.

        Args:
            directory: The saved index.
            config: Current parameters; search-time ones (``ef_search``) apply at once, and a
                different structure (``kind``, ``hnsw_m``...) is refused.
            model_identity: When given, the embedder the caller will query with; a different
                identity is refused (the vectors would not be comparable).

        Raises:
            ValueError: Unknown format, other model, or other build parameters.
        """
        import faiss

        src = Path(directory)
        params = json.loads((src / PARAMS_FILE).read_text(encoding="utf-8"))
        if params.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{src}: dense index format {params.get('format_version')}, "
                f"this alime reads {FORMAT_VERSION}"
            )
        if model_identity is not None and params["model_identity"] != model_identity:
            raise ValueError(
                f"{src}: vectors from {params['model_identity']}, the embedder is {model_identity}"
            )
        saved = DenseConfig(**params["config"])
        config = config or saved
        built = ("kind", "approx_threshold", "hnsw_m", "ef_construction", "ivf_nlist", "center")
        if any(getattr(config, f) != getattr(saved, f) for f in built):
            raise ValueError(f"{src}: built with other dense index parameters")
        main = faiss.read_index(str(src / INDEX_FILE))
        kind = IndexKind(params["kind"])
        # read_index returns the concrete IndexIDMap2 (owning its memory; a downcast copy of the
        # wrapper would not, and would dangle once the original is collected).
        ids = faiss.vector_to_array(main.id_map).astype(np.int64)
        center = np.load(src / CENTER_FILE, allow_pickle=False) if params["centered"] else None
        return cls(make_snapshot(config, kind, main, ids, center=center), params["model_identity"])
