"""Question embeddings from a tiny seq2seq model, and the KB-following dense searcher."""

import numpy as np
import pytest

from alime.config import DenseConfig, RetrievalConfig
from alime.kb.store import KnowledgeBase
from alime.retrieval.dense_searcher import DenseSearcher
from alime.retrieval.embeddings import Pooling, Seq2SeqEmbedder, sif_weights
from alime.text import TextPipeline
from tests.conftest import QA_PAIRS


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from alime.seq2seq.config import Seq2SeqConfig
    from alime.seq2seq.model import build_model
    from alime.seq2seq.model_dir import save_model_dir
    from alime.seq2seq.vocab import Vocabulary

    pipe = TextPipeline()
    vocab = Vocabulary.build(pipe.tokenize(q) for q, _ in QA_PAIRS)
    model = build_model(
        Seq2SeqConfig(vocab_size=len(vocab), embed_dim=6, hidden_dim=4, attention_dim=4)
    )
    path = tmp_path_factory.mktemp("model")
    save_model_dir(path, model, vocab)
    return path


@pytest.mark.parametrize("pooling", list(Pooling))
def test_embeddings_are_normalized_batch_independent_and_ordered(model_dir, pooling):
    embedder = Seq2SeqEmbedder(model_dir, TextPipeline().tokenize, pooling, batch_size=3)
    texts = [q for q, _ in QA_PAIRS[:7]]
    vectors = embedder.embed(texts)
    assert vectors.shape == (7, embedder.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    one_by_one = np.concatenate([embedder.embed([t]) for t in texts])
    np.testing.assert_allclose(vectors, one_by_one, atol=1e-5)


def test_word_pooling_numpy_path_equals_the_traced_encoder_path(model_dir):
    embedder = Seq2SeqEmbedder(model_dir, TextPipeline().tokenize, Pooling.WORDS, sif_a=1e-2)
    ids = [embedder.token_ids(q) for q, _ in QA_PAIRS] + [[1, 1]]  # the last: unknown words only
    fast = embedder.embed_ids(ids)
    traced = np.concatenate(
        [
            t.numpy()
            for t in embedder._pool(np.array([row + [0] * (8 - len(row)) for row in ids], np.int32))
        ],
        axis=1,
    )
    norms = np.linalg.norm(traced, axis=1, keepdims=True)
    np.testing.assert_allclose(fast, traced / np.maximum(norms, 1e-12), atol=1e-5)
    assert not fast[-1].any()  # no known word: a zero vector, not UNK's


def test_identity_changes_with_weights_and_pooling(model_dir, tmp_path):
    tokenize = TextPipeline().tokenize
    a = Seq2SeqEmbedder(model_dir, tokenize, Pooling.WORDS).identity
    assert a == Seq2SeqEmbedder(model_dir, tokenize, Pooling.WORDS).identity
    assert a != Seq2SeqEmbedder(model_dir, tokenize, Pooling.CONCAT).identity
    assert a != Seq2SeqEmbedder(model_dir, tokenize, Pooling.WORDS, sif_a=0.5).identity
    with pytest.raises(ValueError, match="valid: states, words, concat"):
        Seq2SeqEmbedder(model_dir, tokenize, "max")
    w = sif_weights(10, 1e-3)
    assert (w[:5] == 0).all() and np.all(np.diff(w[5:]) > 0)  # rarer (later) words weigh more


def test_dense_searcher_follows_the_kb_and_rebuilds_for_another_model(model_dir, tmp_path):
    kb = KnowledgeBase(tmp_path / "kb.sqlite")
    kb.add_many((q, a, ()) for q, a in QA_PAIRS)
    pipe = TextPipeline()
    embedder = Seq2SeqEmbedder(model_dir, pipe.tokenize)
    # center=False: a fresh build would otherwise centre on another mean.
    config = RetrievalConfig(dense=DenseConfig(kind="flat", center=False))
    searcher = DenseSearcher(kb, embedder, tmp_path / "dense", config)
    other = KnowledgeBase(tmp_path / "kb.sqlite")  # another connection edits the KB
    new = other.add("赠品 发票 掉色", "有")  # known words, a combination no other pair has
    other.edit(1, question="会 不会 掉色")
    other.delete(2)
    query = "掉色发票赠品"  # the same bag of words, reordered
    hits = searcher.search(query, 21)
    ids = [h.id for h in hits]
    assert ids[0] == new.id and 2 not in ids and len(hits) == 20
    fresh = DenseSearcher(kb, embedder, tmp_path / "fresh", config)
    assert set(ids) == {h.id for h in fresh.search(query, 21)}
    assert ids[:1] == [h.id for h in fresh.search(query, 1)]
    searcher.save()
    reopened = DenseSearcher(kb, embedder, tmp_path / "dense", config)
    assert reopened.revision == searcher.revision
    assert reopened.search(query, 5) == searcher.search(query, 5)
    words = Seq2SeqEmbedder(model_dir, pipe.tokenize, Pooling.CONCAT)
    rebuilt = DenseSearcher(kb, words, tmp_path / "dense", config)  # another model: rebuilt
    assert rebuilt.index.model_identity == words.identity and len(rebuilt) == 20


def test_dense_entry_vector_is_the_normalized_mean_of_its_questions():
    from types import SimpleNamespace

    from alime.retrieval.dense_searcher import DenseSearcher
    from alime.types import QAPair

    table = {"a": [1.0, 0.0], "b": [0.0, 1.0], "c": [0.6, 0.8]}
    embedder = SimpleNamespace(embed=lambda texts: np.array([table[t] for t in texts], np.float32))
    pairs = [QAPair(1, "a", "x", phrasings=("b",)), QAPair(2, "c", "y")]
    vectors = DenseSearcher._index_values(SimpleNamespace(embedder=embedder), pairs)
    assert np.allclose(vectors[0], [2**-0.5, 2**-0.5])  # (1,0)+(0,1) normalized
    assert np.allclose(vectors[1], [0.6, 0.8])  # no phrasings: the question's own vector
    assert DenseSearcher._index_values(SimpleNamespace(embedder=embedder), []) == []
