"""Retrieval evaluation on noisy paraphrases of held-out KB questions: BM25, dense, hybrid.

Every KB question is indexed. Questions eligible for evaluation are split (fixed seed) into a dev
half and a test half; each gets noisy rewrites (:mod:`alime.evaluation.noisy_queries`). The fusion
settings are chosen on dev (a small sweep, reported), and all modes are reported on test:
recall@1/5/10 and MRR@10 of the pair the query was rewritten from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from alime.config import BUNDLED_DATA, BM25Config, DenseConfig
from alime.evaluation.noisy_queries import (
    NoisyQuery,
    build_noisy_queries,
    read_variants,
    split_held_out,
)
from alime.kb.formats import read_rows
from alime.retrieval.bm25 import BM25Index
from alime.retrieval.fusion import FUSERS, FusionMode, FusionSettings
from alime.text import TextPipeline
from alime.types import Hit

CUTOFFS = (1, 5, 10)
DEFAULT_VARIANTS = (
    BUNDLED_DATA / "text" / "synonyms.txt",
    BUNDLED_DATA / "eval" / "paraphrases.txt",
)


@dataclass(frozen=True)
class RetrievalEvalSettings:
    """What the evaluation runs.

    Attributes:
        seed: Seeds the dev/test split and the rewrites.
        n_queries: Noisy queries per split (at most the eligible questions).
        n_edits: Core rewrites per query.
        depth: Candidates per retriever before fusion.
        dense_weights: Dense weights tried on dev for each fusion mode.
    """

    seed: int = 20240607
    n_queries: int = 1000
    n_edits: int = 2
    depth: int = 50
    dense_weights: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)


def rank_of(hits: Sequence[Hit], target: int) -> int | None:
    """1-based rank of ``target`` in ``hits``, None when absent."""
    for rank, hit in enumerate(hits, start=1):
        if hit.id == target:
            return rank
    return None


def ranking_metrics(ranks: Sequence[int | None], cutoff: int = 10) -> dict[str, float]:
    """recall@1/5/10 and MRR (reciprocal rank within ``cutoff``, 0 beyond) over ``ranks``."""
    n = max(len(ranks), 1)
    out = {f"recall@{c}": sum(r is not None and r <= c for r in ranks) / n for c in CUTOFFS}
    out["mrr"] = sum(1.0 / r for r in ranks if r is not None and r <= cutoff) / n
    return {k: round(v, 4) for k, v in out.items()}


@dataclass
class Candidates:
    """Per query: BM25 and dense candidate lists (``depth`` deep) and the target id."""

    targets: list[int]
    bm25: list[list[Hit]]
    dense: list[list[Hit]]


def collect(
    queries: Sequence[NoisyQuery],
    bm25_search: Callable[[str, int], list[Hit]],
    dense_search_many: Callable[[Sequence[str], int], list[list[Hit]]],
    depth: int,
) -> Candidates:
    """Run both retrievers once per query (fusion variants then reuse the lists)."""
    texts = [q.query for q in queries]
    bm25 = [bm25_search(t, depth) for t in tqdm(texts, desc="bm25", leave=False)]
    dense = dense_search_many(texts, depth)
    return Candidates([q.qa_id for q in queries], bm25, dense)


def fused_ranks(c: Candidates, settings: FusionSettings, k: int = 10) -> list[int | None]:
    weights = (1.0 - settings.dense_weight, settings.dense_weight)
    fuse = FUSERS[settings.mode]
    return [
        rank_of(fuse((b, d), weights, k, settings.rrf_c), t)
        for b, d, t in zip(c.bm25, c.dense, c.targets, strict=True)
    ]


def mode_metrics(c: Candidates, fusion: FusionSettings) -> dict[str, dict[str, float]]:
    """The report's ``modes`` table."""
    return {
        "bm25": ranking_metrics(
            [rank_of(h[:10], t) for h, t in zip(c.bm25, c.targets, strict=True)]
        ),
        "dense": ranking_metrics(
            [rank_of(h[:10], t) for h, t in zip(c.dense, c.targets, strict=True)]
        ),
        "hybrid": ranking_metrics(fused_ranks(c, fusion)),
    }


def tune_fusion(
    c: Candidates, settings: RetrievalEvalSettings
) -> tuple[FusionSettings, list[dict]]:
    """Best (recall@10, then MRR) fusion mode and dense weight on ``c``, and the whole sweep."""
    sweep = []
    for mode in FusionMode:
        for w in settings.dense_weights:
            fs = FusionSettings(mode=mode, dense_weight=w, depth=settings.depth)
            m = ranking_metrics(fused_ranks(c, fs))
            sweep.append({"fusion": mode.value, "dense_weight": w, **m})
    best = max(sweep, key=lambda r: (r["recall@10"], r["mrr"]))
    return FusionSettings(
        mode=FusionMode(best["fusion"]), dense_weight=best["dense_weight"], depth=settings.depth
    ), sweep


def evaluate_retrieval(
    kb_path: str | Path,
    model_dir: str | Path,
    pipeline: TextPipeline,
    settings: RetrievalEvalSettings | None = None,
    bm25_config: BM25Config | None = None,
    dense_config: DenseConfig | None = None,
    variant_files: Sequence[str | Path] = DEFAULT_VARIANTS,
    fusion: FusionSettings | None = None,
) -> dict:
    """Evaluate BM25, dense and hybrid retrieval on a TSV KB; returns the JSON-ready report.

    Args:
        kb_path: ``question<TAB>answer`` file (word-segmented or not); pair ids are row numbers
            from 1, as a fresh ``alime kb import`` numbers them.
        model_dir: The seq2seq model directory whose encoder embeds questions.
        pipeline: Text pipeline (tokenizer, stop words, query synonyms) of the engine.
        settings: Evaluation settings.
        bm25_config: BM25 parameters.
        dense_config: Dense index parameters (the KB is small: exact search).
        variant_files: Synonym-group files the rewrites draw from.
        fusion: Fixed fusion settings; None tunes them on the dev split.
    """
    from alime.retrieval.dense import DenseIndex
    from alime.retrieval.embeddings import Pooling, Seq2SeqEmbedder

    settings = settings or RetrievalEvalSettings()
    dense_config = dense_config or DenseConfig()
    started = time.perf_counter()
    rows = read_rows(kb_path, "tsv").rows
    ids = np.arange(1, len(rows) + 1, dtype=np.int64)
    questions = [r.question for r in rows]
    bm25 = BM25Index.build([pipeline.index_terms(q) for q in questions], ids, bm25_config)
    embedder = Seq2SeqEmbedder(
        model_dir, pipeline.tokenize, Pooling(dense_config.pooling), sif_a=dense_config.sif_a
    )
    dense = DenseIndex.build(embedder.embed(questions), ids, embedder.identity, dense_config)

    variants = read_variants(*variant_files)
    pairs = [(int(i), pipeline.tokenize(q)) for i, q in zip(ids, questions, strict=True)]
    dev_pairs, test_pairs = split_held_out(pairs, settings.seed)
    dev = build_noisy_queries(
        dev_pairs, variants, settings.n_queries, settings.seed + 1, settings.n_edits
    )
    test = build_noisy_queries(
        test_pairs, variants, settings.n_queries, settings.seed + 2, settings.n_edits
    )

    def bm25_search(text: str, k: int) -> list[Hit]:
        return bm25.search(pipeline.query_terms(text), k)

    def dense_search_many(texts: Sequence[str], k: int) -> list[list[Hit]]:
        return dense.search_many(embedder.embed(texts), k)

    dev_c = collect(dev, bm25_search, dense_search_many, settings.depth)
    test_c = collect(test, bm25_search, dense_search_many, settings.depth)
    sweep: list[dict] = []
    if fusion is None:
        fusion, sweep = tune_fusion(dev_c, settings)
    fusion = replace(fusion, depth=settings.depth)
    return {
        "modes": mode_metrics(test_c, fusion),
        "fusion": {
            "mode": fusion.mode.value,
            "dense_weight": fusion.dense_weight,
            "depth": fusion.depth,
            "rrf_c": fusion.rrf_c,
            "chosen_on": "dev" if sweep else "given",
        },
        "dev_modes": mode_metrics(dev_c, fusion),
        "fusion_sweep_dev": sweep,
        "n_queries": {"dev": len(dev), "test": len(test)},
        "kb": {"path": str(kb_path), "pairs": len(rows)},
        "model": {
            "dir": str(model_dir),
            "identity": embedder.identity,
            "pooling": embedder.pooling.value,
            "sif_a": embedder.sif_a,
            "centered": dense_config.center,
            "dim": embedder.dim,
        },
        "settings": {**asdict(settings), "dense_weights": list(settings.dense_weights)},
        "examples": [
            {
                "qa_id": q.qa_id,
                "original": q.original,
                "query": q.query,
                "perturbations": list(q.perturbations),
            }
            for q in test[:5]
        ],
        "seconds": round(time.perf_counter() - started, 1),
    }
