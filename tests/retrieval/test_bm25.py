"""BM25Index against rank-bm25 (the oracle), live edits, merge, persistence and concurrency."""

from __future__ import annotations

import json
import random
import threading

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from alime.config import BM25Config
from alime.retrieval import bm25_kernel
from alime.retrieval.bm25 import BM25Index
from alime.types import Hit

VOCAB = [f"w{i}" for i in range(30)]
TIGHT = {"rtol": 1e-12, "atol": 1e-12}


def make_docs(rng: random.Random, n: int) -> list[list[str]]:
    """Short docs; "common" is in ~90% of them so its raw idf is negative (epsilon rule)."""
    docs = []
    for _ in range(n):
        length = rng.randint(0, 8)
        doc = [rng.choice(VOCAB[:4] if rng.random() < 0.4 else VOCAB) for _ in range(length)]
        if rng.random() < 0.9:
            doc.append("common")
        docs.append(doc)
    return docs


def make_query(rng: random.Random) -> list[str]:
    """Known, unknown and repeated terms."""
    q = [rng.choice([*VOCAB, "common", "unknown"]) for _ in range(rng.randint(1, 5))]
    if rng.random() < 0.3:
        q.append(q[0])
    return q


def reference_hits(ref: BM25Okapi, ids: list[int], query: list[str], k: int) -> list[Hit]:
    """rank-bm25's scores ranked with the index's rule: positive only, ties by ascending id."""
    scores = ref.get_scores(query)
    ranked = sorted((-s, i) for s, i in zip(scores, ids, strict=True) if s > 0)[:k]
    return [Hit(i, -s) for s, i in ranked]


def assert_matches(index: BM25Index, corpus: dict[int, list[str]], queries, k: int = 10) -> None:
    """Scores of every doc and the top k equal a fresh rank-bm25 over ``corpus``."""
    ids = list(corpus)
    ref = BM25Okapi(
        [corpus[i] for i in ids], k1=index.config.k1, b=index.config.b, epsilon=index.config.epsilon
    )
    for q in queries:
        np.testing.assert_allclose(index.scores_for(q, ids), ref.get_scores(q), **TIGHT)
        got, want = index.search(q, k), reference_hits(ref, ids, q, k)
        assert [h.id for h in got] == [h.id for h in want], q
        np.testing.assert_allclose([h.score for h in got], [h.score for h in want], **TIGHT)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(1234)


@pytest.fixture
def corpus(rng) -> dict[int, list[str]]:
    docs = make_docs(rng, 80)
    return {1000 + 7 * i: d for i, d in enumerate(docs)}


@pytest.fixture
def queries(rng) -> list[list[str]]:
    return [make_query(rng) for _ in range(40)] + [["common"], ["common", "common", "w1"]]


def build(corpus: dict[int, list[str]], config: BM25Config | None = None) -> BM25Index:
    return BM25Index.build(list(corpus.values()), list(corpus), config)


def test_the_epsilon_rule_is_exercised(corpus):
    ref = BM25Okapi(list(corpus.values()))
    assert ref.idf["common"] == pytest.approx(0.25 * ref.average_idf)
    assert build(corpus).snapshot.idf("common") == pytest.approx(ref.idf["common"], rel=1e-12)


@pytest.mark.parametrize("config", [BM25Config(), BM25Config(k1=1.2, b=0.4, epsilon=0.1)])
def test_scores_and_top_k_equal_rank_bm25(corpus, queries, config):
    assert_matches(build(corpus, config), corpus, queries)


def test_scores_are_bit_equal_without_the_epsilon_rule(corpus, queries):
    """Only the mean idf is summed in another order (numpy's), so all else matches to the bit."""
    ref = BM25Okapi(list(corpus.values()))
    index = build(corpus)
    for q in [q for q in queries if "common" not in q]:
        assert np.array_equal(index.scores_for(q, list(corpus)), ref.get_scores(q))


def test_ties_break_by_ascending_id():
    docs = [["a", "b"], ["a", "b"], ["c"], ["a", "b"]] + [["d", str(i)] for i in range(6)]
    index = BM25Index.build(docs, [30, 10, 5, 20, 1, 2, 3, 4, 6, 7])
    assert [h.id for h in index.search(["a"], 2)] == [10, 20]
    assert [h.id for h in index.search(["a"], 10)] == [10, 20, 30]


def test_no_hits_for_unknown_terms_empty_queries_and_k_zero(corpus):
    index = build(corpus)
    assert index.search(["unknown"], 10) == []
    assert index.search([], 10) == []
    assert index.search(["w1"], 0) == []


def test_live_edits_match_a_fresh_rank_bm25(corpus, queries, rng):
    index = build(corpus)
    corpus = dict(corpus)
    next_id = 1
    for step in range(60):
        action = rng.choice(["add", "update", "delete"])
        if action == "add":
            doc = make_docs(rng, 1)[0] + ["fresh"]  # "fresh": a term the main segment lacks
            index.add(next_id, doc)
            corpus[next_id] = doc
            next_id += 1
        elif action == "update":
            victim = rng.choice(list(corpus))
            corpus[victim] = make_docs(rng, 1)[0]
            index.update(victim, corpus[victim])
        elif len(corpus) > 5:
            victim = rng.choice(list(corpus))
            index.delete(victim)
            del corpus[victim]
        if step % 10 == 9:
            assert_matches(index, corpus, queries + [["fresh", "w2"]])
    assert index.pending_edits > 0
    assert len(index) == len(corpus)


def test_a_term_whose_documents_are_all_deleted_is_unknown(corpus, queries):
    index = build(corpus)
    corpus = dict(corpus)
    for doc_id in [i for i, d in corpus.items() if "w7" in d]:
        index.delete(doc_id)
        del corpus[doc_id]
    assert index.snapshot.idf("w7") == 0.0
    assert_matches(index, corpus, queries)


def test_merge_keeps_scores_and_empties_the_delta(corpus, queries, rng):
    index = build(corpus)
    index.add(1, ["w1", "fresh", "fresh"])
    index.update(1000, ["w2"])
    index.delete(1007)
    corpus = {**corpus, 1: ["w1", "fresh", "fresh"], 1000: ["w2"]}
    del corpus[1007]
    before = [index.search(q, 10) for q in queries]
    index.merge()
    assert index.pending_edits == 0
    assert [index.search(q, 10) for q in queries] == before
    assert_matches(index, corpus, queries + [["fresh"]])


def test_bad_edits_raise_and_leave_the_index_unchanged(corpus):
    index = build(corpus)
    snap = index.snapshot
    with pytest.raises(ValueError):
        index.add(1000, ["w1"])
    with pytest.raises(KeyError):
        index.update(1, ["w1"])
    with pytest.raises(KeyError):
        index.delete(1)
    index.delete(1000)
    with pytest.raises(KeyError):
        index.delete(1000)
    with pytest.raises(KeyError):
        index.scores_for(["w1"], [1000])
    assert index.snapshot is not snap and len(index) == len(corpus) - 1


@pytest.mark.parametrize("mmap", [True, False])
def test_save_load_round_trip(tmp_path, corpus, queries, mmap):
    index = build(corpus)
    index.add(1, ["w3", "fresh"])
    index.delete(1007)
    index.save(tmp_path)
    loaded = BM25Index.load(tmp_path, mmap=mmap)
    assert isinstance(loaded.snapshot.main.postings_doc, np.memmap) == mmap
    ids = [i for i in [*corpus, 1] if i != 1007]
    for q in queries:
        assert loaded.search(q, 10) == index.search(q, 10)
        assert np.array_equal(loaded.scores_for(q, ids), index.scores_for(q, ids))
    loaded.add(2, ["w4"])  # a loaded (read-only mapped) index still takes edits
    assert [h.id for h in loaded.search(["w4"], 100)].count(2) == 1


def test_saved_files_need_no_pickle_and_record_versions(tmp_path, corpus):
    build(corpus, BM25Config(k1=1.3)).save(tmp_path)
    for path in tmp_path.glob("*.npy"):
        assert np.load(path, allow_pickle=False).dtype != object
    params = json.loads((tmp_path / "params.json").read_text())
    assert params["format_version"] == 1 and params["alime_version"]
    assert params["config"] == {"k1": 1.3, "b": 0.75, "epsilon": 0.25}
    assert BM25Index.load(tmp_path).config == BM25Config(k1=1.3)


def test_load_rejects_another_format_version(tmp_path, corpus):
    build(corpus).save(tmp_path)
    params = json.loads((tmp_path / "params.json").read_text())
    (tmp_path / "params.json").write_text(json.dumps({**params, "format_version": 99}))
    with pytest.raises(ValueError, match="format 99"):
        BM25Index.load(tmp_path)


def test_concurrent_readers_see_whole_snapshots(corpus):
    """A writer flips doc 1 between two states; readers must see one state or the other."""
    index = build(corpus)
    states = [["w5", "w5", "w6"], ["w6"]]
    index.add(1, states[0])
    query = ["w5", "w6"]
    expected = []
    for terms in states:
        ref = BM25Okapi([*corpus.values(), terms])
        expected.append(reference_hits(ref, [*corpus, 1], query, 5))
    assert expected[0] != expected[1]
    stop, errors = threading.Event(), []

    def read() -> None:
        try:
            while not stop.is_set():
                hits = index.search(query, 5)
                assert any(
                    [h.id for h in hits] == [e.id for e in want]
                    and np.allclose([h.score for h in hits], [e.score for e in want], **TIGHT)
                    for want in expected
                ), hits
        except Exception as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    for i in range(200):
        index.update(1, states[(i + 1) % 2])
        if i % 50 == 49:
            index.merge()
    stop.set()
    for t in readers:
        t.join()
    assert not errors, errors[0]


def kernel_args(index: BM25Index, query: list[str]):
    """The compiled loop's inputs for ``query`` on the index's main segment."""
    snap = index.snapshot
    terms = [(t, snap.idf(t)) for t in query if t in snap.main.vocab and snap.idf(t) != 0]
    tids = np.array([snap.main.vocab[t] for t, _ in terms], np.int64)
    idfs = np.array([idf for _, idf in terms])
    dead = np.zeros(0, bool) if snap.dead is None else snap.dead
    return (
        snap.main.postings_doc,
        snap.weights,
        snap.block_max,
        snap.main.offsets[tids],
        snap.main.offsets[tids + 1],
        idfs,
        dead,
        snap.main.doc_len if len(set(tids.tolist())) == len(tids) else np.zeros(0, np.int32),
        snap.main.ids,
        np.full(len(tids), -1, np.int64),  # no window directory: every term is searched
        np.zeros((0, 1), np.int64),
        np.zeros((0, 0)),
    )


def with_directory(index: BM25Index, args, window_shift: int, min_postings: int):
    """``args`` with a window directory built for ``window_shift``."""
    snap = index.snapshot
    main = snap.main
    rows, starts, maxima = bm25_kernel.window_directory(
        main.offsets, main.postings_doc, snap.weights, main.n, window_shift, min_postings
    )
    tids = np.searchsorted(main.offsets, args[3], side="right") - 1
    return (*args[:9], rows[tids], starts, maxima)


def exhaustive_top(args, k: int, window_shift: int = 3) -> list[tuple[int, float]]:
    """(position, score) of the k best by (score desc, id asc), from every scored document."""
    n_docs = len(args[8])
    pos, scores, scored = bm25_kernel.top_candidates(*args, n_docs, False, window_shift)
    assert len(pos) == np.count_nonzero(scores > 0) <= scored
    ranked = sorted(
        zip(pos.tolist(), scores.tolist(), strict=True), key=lambda r: (-r[1], int(args[8][r[0]]))
    )
    return ranked[:k]


@pytest.mark.parametrize("window_shift", [1, 3, 12])
@pytest.mark.parametrize("k", [1, 3, 10])
def test_pruned_search_equals_the_exhaustive_pass(corpus, queries, k, window_shift):
    """Block-max MaxScore skips documents (in windows of 2, 8 and 4,096 positions), yet keeps
    every doc tied with or above the k-th best, exactly."""
    index = build(corpus)
    index.add(1, ["w1", "w2", "fresh"])
    index.delete(1007)
    corpus = {**corpus, 1: ["w1", "w2", "fresh"]}
    del corpus[1007]
    skipped = 0
    for q in queries:
        args = kernel_args(index, q)
        if len(args[5]) < 2 or not np.all(args[5] > 0):
            continue
        pos, scores, scored = bm25_kernel.top_candidates(*args, k, True, window_shift)
        all_pos, all_scores, all_scored = bm25_kernel.top_candidates(*args, k, False, window_shift)
        skipped += all_scored - scored
        # Pruning may drop only docs that are not in the top k; the top k is the same, in order.
        assert list(zip(pos.tolist(), scores.tolist(), strict=True)) == list(
            zip(all_pos.tolist(), all_scores.tolist(), strict=True)
        )
        assert list(zip(pos.tolist(), scores.tolist(), strict=True)) == exhaustive_top(args, k)
    if 1 << window_shift < len(corpus):  # one window: theta is 0 when its bounds are read
        assert skipped > 0, "pruning never skipped a document"
    assert_matches(index, corpus, queries, k)


def test_pruning_keeps_every_document_tied_with_the_kth_best():
    """Many equal scores around the cut: all ties reach the caller, which breaks them by id."""
    docs = [["a", "b"]] * 30 + [["a"]] * 30 + [["b", "c"]] * 5 + [["x"]] * 40
    ids = list(range(500, 500 + len(docs)))[::-1]  # ids descend with position
    index = BM25Index.build(docs, ids)
    ref = BM25Okapi(docs, k1=index.config.k1, b=index.config.b, epsilon=index.config.epsilon)
    for query in (["a", "b"], ["b", "a", "c"], ["a", "c", "b", "a"]):
        for k in (1, 5, 30, 31, 64):
            got = index.search(query, k)
            assert got == reference_hits(ref, ids, query, k), (query, k)


def test_the_kernel_scores_with_negative_idfs_without_pruning():
    """A negative idf makes bounds invalid: every doc of the union is scored, exactly."""
    docs = [["a", "b"], ["a"], ["b"], ["a", "b", "b"]]
    index = BM25Index.build(docs, [1, 2, 3, 4])
    args = list(kernel_args(index, ["a", "b"]))
    args[5] = np.array([-0.5, 0.75])
    pos, scores, scored = bm25_kernel.top_candidates(*args, 10, False)
    assert scored == 4
    w = index.snapshot.weights
    offsets = index.snapshot.main.offsets
    tid = index.snapshot.main.vocab
    expect = np.zeros(4)
    for term, idf in (("a", -0.5), ("b", 0.75)):
        lo, hi = offsets[tid[term]], offsets[tid[term] + 1]
        for p in range(lo, hi):
            expect[index.snapshot.main.postings_doc[p]] += idf * w[p]
    positive = {d: s for d, s in enumerate(expect) if s > 0}
    assert dict(zip(pos.tolist(), scores.tolist(), strict=True)) == positive


def test_positions_follow_document_length_and_searches_stay_exact(rng):
    """Positions are reassigned by (length, id), so windows hold documents of similar length;
    ids, look-ups and rank-bm25 parity do not depend on it."""
    docs = make_docs(rng, 120)
    ids = rng.sample(range(10_000), len(docs))
    index = BM25Index.build(docs, ids)
    main = index.snapshot.main
    assert np.all(np.diff(main.doc_len) >= 0)
    same_length = main.doc_len[1:] == main.doc_len[:-1]
    assert np.all(main.ids[1:][same_length] > main.ids[:-1][same_length])
    assert [len(docs[ids.index(int(i))]) for i in main.ids] == main.doc_len.tolist()
    corpus = dict(zip(ids, docs, strict=True))
    assert_matches(index, corpus, [make_query(rng) for _ in range(30)])


def test_the_kernel_leaves_its_scratch_arrays_zeroed_for_the_next_query(corpus, queries):
    """Reused work arrays must come back all zero, or the next query's scores would be wrong."""
    index = build(corpus)
    index.delete(1007)
    scratch = bm25_kernel.new_scratch(8, 3)
    for q in queries:
        args = kernel_args(index, q)
        if not 0 < len(args[5]) <= 8:
            continue
        for prune in (True, False):
            if not prune or np.all(args[5] > 0):
                reused = bm25_kernel.top_candidates(*args, 3, prune, 3, scratch)
                fresh = bm25_kernel.top_candidates(*args, 3, prune, 3)
                assert reused[0].tolist() == fresh[0].tolist()
                assert reused[1].tolist() == fresh[1].tolist()
                assert not any(a.view(np.uint8).any() for a in scratch[:3])


def test_whole_windows_are_skipped_by_their_block_maxima():
    """Rare-term documents first raise the k-th best; windows of common-term-only documents then
    have bounds below it and are never scored."""
    docs = [["rare", "common"]] * 8 + [["common", "filler", "x", "y"]] * 500
    index = BM25Index.build(docs, list(range(1, len(docs) + 1)))
    args = kernel_args(index, ["rare", "common"])
    pos, scores, scored = bm25_kernel.top_candidates(*args, 3, True, 3)
    _, _, all_scored = bm25_kernel.top_candidates(*args, 3, False, 3)
    assert all_scored == len(docs)
    assert scored == 8  # only the window(s) holding "rare" are scored
    assert index.snapshot.main.ids[pos].tolist() == [1, 2, 3]  # 8 ties: the smallest ids


def test_the_benchmarks_tie_aware_agreement(monkeypatch):
    """bench/retrieval.py credits a different pick among documents tied at the 10th score, and
    nothing below it."""
    for var in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
        "NUMBA_NUM_THREADS",
        "RAYON_NUM_THREADS",
    ):
        monkeypatch.setenv(var, "1")  # the script pins these at import; restored after the test
    from bench.retrieval import tie_aware_agreement

    scores = np.array([9.0, 5.0, 5.0, 5.0, 1.0, 0.0])
    position = np.array([-1, 0, 1, 2, 3, 4, 5])  # id i sits at position i - 1
    reference = [1, 2, 3]  # top 3 by (score desc, id asc); its cut is 5.0
    assert tie_aware_agreement([1, 2, 3], reference, scores, position) == 1.0
    assert tie_aware_agreement([1, 4, 2], reference, scores, position) == 1.0  # 4 ties at 5.0
    assert tie_aware_agreement([1, 2, 5], reference, scores, position) == pytest.approx(2 / 3)
    assert tie_aware_agreement([1], reference, scores, position) == pytest.approx(1 / 3)
    assert tie_aware_agreement([], [], scores, position) == 1.0


def test_windows_are_visited_best_bound_first():
    """The only high-scoring documents sit in the last window (they are the longest): it is
    visited first, and every window of common-term-only documents is then skipped unscored."""
    docs = (
        [["common", "x"]] * 200 + [["filler", "x"]] * 300 + [["rare", "common", "y", "z", "w"]] * 8
    )
    index = BM25Index.build(docs, list(range(1, len(docs) + 1)))
    args = kernel_args(index, ["common", "rare"])
    assert np.all(args[5] > 0)
    pos, scores, scored = bm25_kernel.top_candidates(*args, 3, True, 3)
    _, _, all_scored = bm25_kernel.top_candidates(*args, 3, False, 3)
    assert all_scored == 208
    assert scored == 8
    assert index.snapshot.main.ids[pos].tolist() == [501, 502, 503]


def test_the_length_cap_skips_windows_of_short_documents():
    """A one-term document holds one query term, so a window of them is bounded by its largest
    single-term bound, not the sum over the query: with the cap those windows are skipped."""
    query = ["a", "b", "c", "d", "e", "f"]
    docs = [[t] for _ in range(40) for t in query] + [[*query, "g", "h"]] * 8
    docs += [["filler"]] * 300  # keeps every query term's idf positive
    index = BM25Index.build(docs, list(range(1, len(docs) + 1)))
    args = kernel_args(index, query)
    assert len(args[7]) == len(docs) and np.all(args[5] > 0)
    no_cap = (*args[:7], np.zeros(0, np.int32), *args[8:])
    capped = bm25_kernel.top_candidates(*args, 8, True, 3)
    uncapped = bm25_kernel.top_candidates(*no_cap, 8, True, 3)
    assert capped[2] == 8 < uncapped[2]
    assert capped[0].tolist() == uncapped[0].tolist()
    assert sorted(index.snapshot.main.ids[capped[0]].tolist()) == list(range(241, 249))


@pytest.mark.parametrize("seed", range(6))
def test_pruning_on_random_corpora_equals_exhaustive_scoring(seed):
    """Random corpora of 1-30-term documents with many exact duplicates (ties at the k-th
    score), queries of 1-30 terms, some with repeated terms (no length cap then): the pruned
    loop keeps exactly the exhaustive pass's documents at or above the k-th best, and searches
    equal rank-bm25's top k with its tie rule."""
    rng = random.Random(seed)
    vocab = [f"t{i}" for i in range(rng.choice([15, 60, 300]))]
    weights = [1 / (i + 1) for i in range(len(vocab))]  # Zipf-like: a head of common terms
    base = [rng.choices(vocab, weights, k=rng.randint(1, 30)) for _ in range(150)]
    docs = [list(rng.choice(base)) for _ in range(600)]
    # Documents without query terms keep every idf positive (df < N / 2): bounds then hold.
    docs += [[f"pad{i}"] * rng.randint(1, 3) for i in range(700)]
    rng.shuffle(docs)
    ids = rng.sample(range(1, 100_000), len(docs))
    index = BM25Index.build(docs, ids)
    queries = [rng.sample(vocab, min(len(vocab), rng.randint(1, 30))) for _ in range(40)]
    queries += [q + q[:2] for q in queries[:8]]  # repeated terms
    checked = 0
    for q in queries:
        args = kernel_args(index, q)
        if not len(args[5]) or not np.all(args[5] > 0):
            continue
        checked += 1
        for k in (1, 10):
            want = exhaustive_top(args, k)
            for shift in (2, 5, 12):
                for search in (args, with_directory(index, args, shift, rng.choice([1, 4]))):
                    pos, scores, _ = bm25_kernel.top_candidates(*search, k, True, shift)
                    assert list(zip(pos.tolist(), scores.tolist(), strict=True)) == want, (q, k)
    assert checked >= 20
    assert_matches(index, dict(zip(ids, docs, strict=True)), queries[:20], 10)


def test_the_window_directory_matches_the_postings(rng):
    """Each frequent term's row: the first posting of every window, the term's end last, and
    the largest weight of its postings in each window (0 where it has none); rare terms none."""
    index = build({i: d for i, d in enumerate(make_docs(rng, 300), start=1)})
    snap = index.snapshot
    main = snap.main
    rows, starts, maxima = bm25_kernel.window_directory(
        main.offsets, main.postings_doc, snap.weights, main.n, 4, 30
    )
    df = main.df()
    assert np.array_equal(rows >= 0, df >= 30) and 0 < (rows >= 0).sum() < len(df)
    assert starts.shape == (int((rows >= 0).sum()), (main.n + 15) // 16 + 1)
    for term in np.flatnonzero(rows >= 0):
        lo, hi = main.offsets[term], main.offsets[term + 1]
        row = rows[term]
        for w in range(starts.shape[1] - 1):
            inside = [p for p in range(lo, hi) if main.postings_doc[p] >> 4 == w]
            assert starts[row, w] == (inside[0] if inside else starts[row, w + 1])
            assert maxima[row, w] == max((snap.weights[p] for p in inside), default=0.0)
        assert starts[row, -1] == hi


def test_searches_use_the_window_directory_and_stay_exact(corpus, queries):
    """The index builds its directory for its window width; with one built for 8-document
    windows and every term in it, the kernel's top k equals the exhaustive ranking."""
    index = build(corpus)
    rows, _, _ = index.snapshot.directory
    assert len(rows) == len(index.snapshot.main.vocab)
    for q in queries:
        args = kernel_args(index, q)
        if not len(args[5]) or not np.all(args[5] > 0):
            continue
        for k in (1, 5):
            pos, scores, _ = bm25_kernel.top_candidates(
                *with_directory(index, args, 3, 1), k, True, 3
            )
            assert list(zip(pos.tolist(), scores.tolist(), strict=True)) == exhaustive_top(args, k)


def test_repeated_query_terms_are_not_capped_by_document_length():
    """A two-term document matches four slots of ``a b a b``: the length cap (which counts
    distinct terms) must be off for such a query. With it, the window of ``a b`` documents
    would be bounded by two slots, below the ``a b c`` documents' scores (visited first, a
    4,096-document window later), and skipped although it holds the best documents."""
    rng = random.Random(7)
    docs = [["a", "b"]] * 20 + [["a", "b", "c"]] * 20 + [["c"], ["d"], ["e"]] * 100
    docs += [[f"u{i}", rng.choice("cde")] for i in range(5000)]
    rng.shuffle(docs)
    ids = list(range(1, len(docs) + 1))
    index = BM25Index.build(docs, ids)
    ref = BM25Okapi(docs, k1=index.config.k1, b=index.config.b, epsilon=index.config.epsilon)
    for query in (["a", "b", "a", "b"], ["b", "a", "b", "c", "b"], ["a", "b"], ["c", "a", "a"]):
        assert index.search(query, 10) == reference_hits(ref, ids, query, 10), query
