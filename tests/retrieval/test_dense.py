"""The faiss dense index: exact search against numpy, live edits against a fresh build,
persistence."""

import numpy as np
import pytest

from alime.config import DenseConfig
from alime.retrieval.dense import DenseIndex, IndexKind, prepare, resolve_kind

DIM = 8


def unit(rng, n, dim=DIM):
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(vectors, ids, query, k, center):
    """numpy reference: same centering, inner product, ties by ascending id."""
    space = prepare(vectors, center)
    scores = space @ prepare(query, center)
    order = np.lexsort((ids, -scores))[:k]
    return [int(i) for i in ids[order]], scores[order]


@pytest.mark.parametrize("center", [True, False])
def test_exact_search_equals_numpy_top_k(center):
    rng = np.random.default_rng(0)
    vectors, ids = unit(rng, 300), rng.permutation(10_000)[:300].astype(np.int64)
    index = DenseIndex.build(vectors, ids, "m", DenseConfig(kind="flat", center=center))
    assert index.kind is IndexKind.FLAT
    for query in unit(rng, 20):
        hits = index.search(query, 7)
        ref_ids, ref_scores = brute_force(vectors, ids, query, 7, index.snapshot.center)
        assert [h.id for h in hits] == ref_ids
        np.testing.assert_allclose([h.score for h in hits], ref_scores, rtol=1e-5, atol=1e-6)


def test_auto_kind_follows_the_size_threshold():
    config = DenseConfig(approx_threshold=100)
    assert resolve_kind(config, 99) is IndexKind.FLAT
    assert resolve_kind(config, 100) is IndexKind.IVF
    with pytest.raises(ValueError, match="valid: auto, flat, hnsw, ivf"):
        resolve_kind(DenseConfig(kind="annoy"), 10)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_live_edits_are_searchable_at_once_and_match_a_fresh_build(kind):
    rng = np.random.default_rng(1)
    vectors, ids = unit(rng, 200), np.arange(1, 201, dtype=np.int64)
    # center=False: a fresh build would otherwise compute another mean.
    config = DenseConfig(kind=kind, center=False, ef_search=400)
    index = DenseIndex.build(vectors, ids, "m", config)
    current = dict(zip(ids.tolist(), vectors, strict=True))
    new_vec, edit_vec = unit(rng, 2)
    index.apply(adds={500: new_vec}, updates={3: edit_vec}, deletes=[4])
    current[500], current[3] = new_vec, edit_vec
    del current[4]
    assert index.search(new_vec, 1)[0].id == 500  # an add is found at once
    assert index.search(edit_vec, 1)[0].id == 3  # so is an edit
    assert 4 not in [h.id for h in index.search(vectors[3], 200)]  # a delete is gone at once
    assert 4 not in index and 500 in index and len(index) == 200
    fresh = DenseIndex.build(
        np.stack(list(current.values())), np.fromiter(current, np.int64), "m", config
    )
    queries = unit(rng, 10)
    live = [[h.id for h in hits] for hits in index.search_many(queries, 10)]
    assert live == [[h.id for h in hits] for hits in fresh.search_many(queries, 10)]
    index.merge()  # folding the delta in changes nothing
    assert index.pending_edits == 0
    assert [[h.id for h in hits] for hits in index.search_many(queries, 10)] == live


def test_edit_errors():
    rng = np.random.default_rng(2)
    index = DenseIndex.build(unit(rng, 5), np.arange(5), "m", DenseConfig(kind="flat"))
    with pytest.raises(ValueError, match="already indexed"):
        index.apply(adds={1: unit(rng, 1)[0]})
    with pytest.raises(KeyError):
        index.apply(deletes=[99])
    with pytest.raises(ValueError, match="size"):
        index.apply(adds={9: np.ones(3)})
    index.apply(deletes=[2])
    with pytest.raises(KeyError):
        index.apply(deletes=[2])


def test_a_snapshot_taken_before_an_edit_is_unchanged():
    rng = np.random.default_rng(3)
    vectors = unit(rng, 50)
    index = DenseIndex.build(vectors, np.arange(50), "m", DenseConfig(kind="flat"))
    before = index.snapshot
    index.apply(deletes=[0], adds={77: vectors[0]})
    assert 0 not in before.dead and 77 not in before.delta and len(before) == 50
    assert before.contains(0) and not index.snapshot.contains(0)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_save_load_round_trip(tmp_path, kind):
    rng = np.random.default_rng(4)
    vectors = unit(rng, 400)
    config = DenseConfig(kind=kind, ivf_nprobe=64, ef_search=400)
    index = DenseIndex.build(vectors, np.arange(10, 410), "model-a", config)
    index.apply(adds={5: vectors[0]}, deletes=[11])
    queries = unit(rng, 5)
    expected = index.search_many(queries, 5)
    index.save(tmp_path / "dense")
    loaded = DenseIndex.load(tmp_path / "dense", config, model_identity="model-a")
    assert loaded.kind is IndexKind(kind) and len(loaded) == 400
    assert loaded.search_many(queries, 5) == expected
    assert not list(tmp_path.glob("dense/*.pkl"))
    with pytest.raises(ValueError, match="model-a"):
        DenseIndex.load(tmp_path / "dense", config, model_identity="model-b")
    with pytest.raises(ValueError, match="other dense index parameters"):
        DenseIndex.load(tmp_path / "dense", DenseConfig(kind="flat" if kind != "flat" else "hnsw"))


def test_empty_and_k_edge_cases():
    index = DenseIndex.build(np.zeros((0, DIM)), np.zeros(0, np.int64), "m", dim=DIM)
    assert index.search(np.ones(DIM), 5) == []
    index.apply(adds={1: np.ones(DIM)})
    assert [h.id for h in index.search(np.ones(DIM), 5)] == [1]
    assert index.search(np.ones(DIM), 0) == []


HAMMER = """
import sys, threading
import numpy as np
from alime.config import DenseConfig
from alime.retrieval.dense import DenseIndex

rng = np.random.default_rng(1)
vectors = rng.standard_normal((2000, 16)).astype(np.float32)
index = DenseIndex.build(vectors, np.arange(1, 2001), "m", DenseConfig(kind=sys.argv[1]))
index.apply(deletes=range(1, 301, 2))  # tombstones: every search carries an IDSelector
queries = rng.standard_normal((40, 16)).astype(np.float32)
expected = [[h.id for h in index.search(q, 10)] for q in queries]
wrong, done = [], [0] * 8

def hammer(t):
    for _ in range(int(sys.argv[2])):
        for q, want in zip(queries, expected):
            got = [h.id for h in index.search(q, 10)]
            if got != want:
                wrong.append(got)
            done[t] += 1

threads = [threading.Thread(target=hammer, args=(t,)) for t in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(sum(done), len(wrong))
"""


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_one_snapshot_with_tombstones_searched_from_8_threads(kind):
    """Issue 12: a faiss search-parameters object shared by threads crashed the process (SIGSEGV)
    at once. Run in a child process so a crash fails this test instead of killing pytest."""
    import subprocess
    import sys

    rounds = 25
    proc = subprocess.run(
        [sys.executable, "-c", HAMMER, kind, str(rounds)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    searches, wrong = map(int, proc.stdout.split())
    assert searches == 8 * rounds * 40
    assert wrong == 0  # every thread saw the tombstones and the same hits as a lone search
