"""Assemble a ready-to-answer bot from the configuration (once, outside any request)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from alime.chitchat import ChitChatKB, read_chitchat
from alime.config import BUNDLED_DATA, AppConfig
from alime.decision import DecisionScore
from alime.engine import HybridEngine, Thresholds
from alime.guards import GuardReplies, Guards, load_lexicon
from alime.kb.formats import Format, read_rows
from alime.kb.pair_cache import PairCache
from alime.kb.store import KnowledgeBase
from alime.retrieval.modes import build_retriever
from alime.retrieval.searcher import KBSearcher
from alime.routing import (
    CandidateFeatures,
    Feature,
    FeatureRouter,
    RoutingChoice,
    read_routing,
)
from alime.text import TextPipeline
from alime.types import Generator, Retriever, Scorer
from pluto.choices import parse_choice

log = logging.getLogger(__name__)

DEFAULT_CHITCHAT_THRESHOLD = 0.8  # C without a configured or tuned one

# The curated KB a fresh install is seeded with (``alime kb curate`` of the raw corpus below,
# see docs/kb-curation.md). Its greetings and thanks (data/kb/chitchat.jsonl) are not seeded:
# they belong to a chit-chat KB, not to the FAQ.
BUNDLED_KB = BUNDLED_DATA / "kb" / "curated.jsonl"
# The raw corpus it was curated from: last customer turn and real reply of 5,000 Taobao chats
# (the evaluations read it).
BUNDLED_CORPUS = BUNDLED_DATA / "kb" / "ecommerce_qa.tsv"


def open_kb(config: AppConfig) -> KnowledgeBase:
    """The configured KB; the default one is seeded from the bundled data on first use."""
    kb_path, _, _ = config.resolved_paths()
    seed = not config.paths.kb and not kb_path.exists()
    kb = KnowledgeBase(kb_path)
    if seed and kb.count() == 0:
        rows = read_rows(BUNDLED_KB, Format.JSONL).rows
        kb.add_many(r.to_kb_row() for r in rows)
        log.info("seeded %s with %d bundled KB entries", kb_path, len(rows))
    return kb


def open_searcher(config: AppConfig, kb: KnowledgeBase | None = None) -> KBSearcher:
    kb = kb or open_kb(config)
    _, index_dir, _ = config.resolved_paths()
    return KBSearcher(kb, TextPipeline(config.text), index_dir, config.retrieval)


@dataclass
class Bot:
    """Everything a front end needs: the KB, its searcher and the hybrid engine."""

    config: AppConfig
    kb: KnowledgeBase
    searcher: KBSearcher
    engine: HybridEngine
    model_dir: Path | None


def build_bot(config: AppConfig | None = None, classifier: bool | None = None) -> Bot:
    """The bot ``config`` describes.

    Args:
        config: The configuration (default: the bundled defaults).
        classifier: Whether the KB entry classifier adds candidates and feeds the routing
            score; None (the default): when the routing model reads it (``intent`` or
            ``fit``). Its extra candidates carry no retrieval score, so only a router can
            judge them; fitting a routing model asks for it (True) to have the features.
    """
    config = config or AppConfig()
    kb = open_kb(config)
    searcher = open_searcher(config, kb)
    _, _, model_dir = config.resolved_paths()
    scorer, generator, tuned = _model_stages(model_dir, config, searcher.pipeline)
    decision = parse_choice(DecisionScore, config.engine.decision, "engine.decision")
    routing = (
        read_routing(model_dir)
        if decision is DecisionScore.ROUTING and model_dir is not None and scorer is not None
        else None
    )
    if classifier is None:
        classifier = routing is not None and bool(
            {Feature.INTENT, Feature.FIT} & set(routing.model.features)
        )
    retriever = build_retriever(config, kb, searcher, model_dir)
    if classifier:
        retriever = with_classifier(config, kb, searcher, retriever)
    retriever.search("您好", 1)  # warm-up: the first query traces and loads lazily-built parts
    router = _router(routing, searcher, retriever, model_dir) if routing else None
    # T applies to the routing score when the model has one, else to the rerank score.
    answer_t = _pick(
        config.engine.threshold, routing.threshold if routing else tuned.get("threshold"), 0.0
    )
    gen_t = _pick(config.engine.generation_threshold, tuned.get("generation_threshold"), 0.0)
    engine = HybridEngine(
        retriever=retriever,
        lookup=PairCache(kb),
        thresholds=Thresholds(
            answer=answer_t,
            generation=gen_t,
            chitchat=_pick(
                config.chitchat.threshold,
                tuned.get("chitchat_threshold"),
                DEFAULT_CHITCHAT_THRESHOLD,
            ),
        ),
        scorer=scorer,
        generator=generator,
        k=config.retrieval.k,
        fallback_reply=config.engine.fallback_reply,
        router=router,
        guards=build_guards(config),
        chitchat=build_chitchat(config),
    )
    log.info(
        "bot ready: %d QA pairs, model=%s, T=%.4f on the %s score",
        len(searcher),
        model_dir,
        answer_t,
        "routing" if router else "rerank",
    )
    return Bot(config, kb, searcher, engine, model_dir)


def with_classifier(
    config: AppConfig, kb: KnowledgeBase, searcher: KBSearcher, retriever: Retriever
) -> Retriever:
    """``retriever`` followed by the KB entry classifier's best entries it missed (unchanged
    when ``retrieval.classifier_extra`` is 0)."""
    extra = config.retrieval.classifier_extra
    if extra == 0:
        return retriever
    from alime.retrieval.entry_classifier import ClassifierFollower, WithClassified, classifier_dir

    _, index_dir, _ = config.resolved_paths()
    follower = ClassifierFollower(
        kb, searcher.pipeline, classifier_dir(index_dir), config.retrieval
    )
    return WithClassified(retriever, follower, extra)


def build_guards(config: AppConfig) -> Guards | None:
    """The rules applied before retrieval (None when ``[guards] enabled = false``)."""
    g = config.guards
    if not g.enabled:
        return None
    replies = GuardReplies(
        complaint=g.complaint_reply,
        person=g.person_reply,
        order_status=g.order_status_reply,
        rephrase=g.rephrase_reply,
    )
    return Guards(load_lexicon(g.lexicon), replies)


def build_chitchat(config: AppConfig) -> ChitChatKB | None:
    """The chit-chat KB from ``[chitchat] files`` (None when disabled or empty)."""
    c = config.chitchat
    if not c.enabled or not c.files:
        return None
    # Every phrasing of an entry matches on its own (what `alime kb curate` groups stays one
    # answer).
    kb = ChitChatKB(
        [(q, r.answer) for r in read_chitchat(c.files) for q in (r.question, *r.phrasings)]
    )
    log.info("chit-chat KB: %d pairs from %d path(s)", len(kb), len(c.files))
    return kb


def _router(
    routing: RoutingChoice, searcher: KBSearcher, retriever: Retriever, model_dir: Path
) -> FeatureRouter:
    """The routing score of ``routing.json`` over this KB (idf) and, when its model uses the
    ``dense`` feature, the model's question encoder (not loaded otherwise)."""
    dense = Feature.DENSE in routing.model.features
    features = routing_features(
        searcher, retriever, model_dir, routing.pooling, routing.sif_a, dense
    )
    return FeatureRouter(features, routing.model)


def routing_features(
    searcher: KBSearcher,
    retriever: Retriever,
    model_dir: Path,
    pooling: str,
    sif_a: float,
    dense: bool = True,
) -> CandidateFeatures:
    """The routing features over ``searcher``'s KB (idf) and, with ``dense``, the model's
    question encoder."""
    pipeline = searcher.pipeline
    classifier = getattr(retriever, "classifier", None)
    # The engine's retrieval asked the classifier (synced) just before the features do.
    posteriors = partial(classifier.posteriors, sync=False) if classifier is not None else None
    if not dense:
        return CandidateFeatures(
            pipeline.index_terms,
            searcher.idf,
            synonyms=pipeline.synonyms_of,
            standardize=pipeline.standardize,
            posteriors=posteriors,
        )
    from alime.retrieval.embeddings import Seq2SeqEmbedder, model_identity

    # Reuse the hybrid retriever's encoder when it pools the same way (one model load, not two).
    embedder = getattr(getattr(retriever, "dense", None), "embedder", None)
    if embedder is None or embedder.identity != model_identity(model_dir, pooling, sif_a):
        embedder = Seq2SeqEmbedder(model_dir, pipeline.tokenize, pooling, sif_a=sif_a)
    return CandidateFeatures(
        pipeline.index_terms,
        searcher.idf,
        embedder.embed,
        pipeline.synonyms_of,
        standardize=pipeline.standardize,
        posteriors=posteriors,
    )


def preload(config: AppConfig, searcher: KBSearcher | None = None) -> None:
    """Load what every worker of a forking server needs and can safely inherit, once, in the
    parent before it forks: jieba's dictionary (about a second per process), the BM25 kernels
    numba compiles (or reads from its cache) on the first search, and the modules of the int8
    model path, including ``onnx`` (its graph builder; about a second to import). Workers then
    start from them instead of each loading its own.

    Nothing here starts a thread (a forked child would lose it mid-work): not ONNX Runtime, which
    starts one at import, not faiss (OpenMP) and not TensorFlow; each worker loads those itself.

    Args:
        config: the app configuration (its text settings and index).
        searcher: an open searcher over the configured KB (default: opens one).
    """
    try:
        searcher = searcher or open_searcher(config)
        searcher.pipeline.tokenize("您好")  # builds the process-wide jieba segmenter
        searcher.search("您好", 1)  # compiles, or loads from numba's cache, the BM25 kernels
        import alime.rerank.loading  # noqa: F401 - the model-stage modules (no TensorFlow)
        import alime.seq2seq.generator  # noqa: F401

        _, _, model_dir = config.resolved_paths()
        if model_dir is not None:
            from alime.seq2seq.model_dir import is_quantized_dir

            if is_quantized_dir(model_dir):
                import importlib.util

                if importlib.util.find_spec("onnx") is not None:
                    import onnx  # noqa: F401 - the int8 head builds its graph with it
    except Exception as exc:  # noqa: BLE001 - a speed-up only: each worker loads, and reports
        log.warning(
            "preload skipped (%s: %s); each worker loads everything itself", type(exc).__name__, exc
        )


def _pick(*values: float | None) -> float:
    return next(float(v) for v in values if v is not None)


def _model_stages(
    model_dir: Path | None, config: AppConfig, pipeline: TextPipeline
) -> tuple[Scorer | None, Generator | None, dict]:
    """The reranker and generator of a model directory (TensorFlow is imported only here)."""
    if model_dir is None:
        return None, None, {}
    from alime.rerank.loading import load_stages

    return load_stages(model_dir, config, pipeline)
