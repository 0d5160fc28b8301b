"""The engine's retriever for ``retrieval.mode``: BM25, dense, or the hybrid of both."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from alime.config import AppConfig
from alime.kb.store import KnowledgeBase
from alime.retrieval.fusion import FusionSettings, HybridSearcher, RetrievalMode
from alime.retrieval.searcher import KBSearcher
from alime.types import Retriever
from pluto.choices import parse_choice

log = logging.getLogger(__name__)


def dense_index_dir(bm25_index_dir: Path) -> Path:
    """The dense index lives beside the BM25 one (``kb.index`` -> ``kb.index-dense``)."""
    return bm25_index_dir.with_name(bm25_index_dir.name + "-dense")


def open_dense(config: AppConfig, kb: KnowledgeBase, model_dir: Path, pipeline):
    """A DenseSearcher over ``kb`` with the model's encoder (imports faiss and TensorFlow)."""
    from alime.retrieval.dense_searcher import DenseSearcher
    from alime.retrieval.embeddings import Seq2SeqEmbedder

    dense = config.retrieval.dense
    embedder = Seq2SeqEmbedder(model_dir, pipeline.tokenize, dense.pooling, sif_a=dense.sif_a)
    _, index_dir, _ = config.resolved_paths()
    return DenseSearcher(kb, embedder, dense_index_dir(index_dir), config.retrieval)


def build_retriever(
    config: AppConfig, kb: KnowledgeBase, bm25: KBSearcher, model_dir: Path | None
) -> Retriever:
    """The retriever ``config.retrieval.mode`` names.

    Dense and hybrid need the model's encoder; without a model they fall back to BM25 (logged).

    Raises:
        ValueError: An unknown mode (the message lists the valid ones).
    """
    mode = parse_choice(RetrievalMode, config.retrieval.mode, "retrieval mode")
    if mode is not RetrievalMode.BM25 and model_dir is None:
        log.warning("retrieval.mode=%s needs a model; using bm25", mode.value)
        return bm25

    def dense() -> Retriever:
        return open_dense(config, kb, model_dir, bm25.pipeline)

    builders: Mapping[RetrievalMode, Callable[[], Retriever]] = {
        RetrievalMode.BM25: lambda: bm25,
        RetrievalMode.DENSE: dense,
        RetrievalMode.HYBRID: lambda: HybridSearcher(
            bm25, dense(), FusionSettings.from_config(config.retrieval.fusion)
        ),
    }
    return builders[mode]()


def score_label(retriever: Retriever) -> str:
    """What a candidate's ``retrieval_score`` from ``retriever`` is, for people: ``fused`` for
    the hybrid retriever, ``dense`` for the dense one, ``bm25`` for the lexical searcher (the
    configured mode may have fallen back to BM25 without a model, so the object decides)."""
    from alime.retrieval.dense_searcher import DenseSearcher
    from alime.retrieval.entry_classifier import WithClassified

    if isinstance(retriever, WithClassified):
        return score_label(retriever.retriever)
    if isinstance(retriever, HybridSearcher):
        return "fused"
    if isinstance(retriever, DenseSearcher):
        return "dense"
    return "bm25"
