"""Fit the routing score on natural queries (``alime evaluate natural --fit-routing``).

The bundled routing score was fitted on synthetic noisy rewrites of the KB's own questions
(``alime evaluate routing``); shoppers write differently. Here the labelled candidates come from
the natural set's tune split instead: each query that reaches the FAQ (the rules before retrieval
did not decide it) is retrieved and reranked by the engine, and a candidate is positive iff the
query is in-KB and the candidate's answer is one of the intent's acceptable answers. Out-of-KB
queries that reach the FAQ (chit-chat, off-topic, products not sold) have only negatives: the FAQ
must not answer them.

Which features the logistic score uses is chosen by k-fold cross-validation over the tune
queries (folds by query, seeded): for each candidate feature set, fit on k-1 folds, choose T on
them, and score the held-out fold; the set with the best mean balanced rate (in-KB answered right
+ out-of-KB not answered, over 2) wins, fewer features on ties. The winner is then fitted on the
whole tune split and its T chosen there. The test split is never read.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from alime.evaluation.natural import IN_KB, load_natural, normalize_answer
from alime.evaluation.routing import (
    CHITCHAT,
    FEATURE_SETS,
    LabelledQuery,
    QueryCandidates,
    best_balanced_point,
    fit_routing,
    logistic_decider,
    outcomes,
    routing_point,
)
from alime.routing import Feature, RoutingChoice, write_routing


def label_candidates(
    data_dir: str | Path, split: str = "tune", config=None, progress: bool = True
) -> tuple[list[QueryCandidates], dict]:
    """Every ``split`` query that reaches the FAQ, with its candidates' routing features (all
    of them) and which candidates are acceptable; and counts of what was skipped."""
    from tqdm import tqdm

    from alime.bot import build_bot, routing_features

    data = load_natural(data_dir)
    bot = build_bot(config, classifier=True)  # its features are candidates for the fit
    engine = bot.engine
    dense = bot.config.retrieval.dense
    features = routing_features(
        bot.searcher, engine.retriever, bot.model_dir, dense.pooling, dense.sif_a
    )
    engine.router = None  # candidates in rerank order; every feature is computed below
    items: list[QueryCandidates] = []
    ruled = 0
    try:
        for q in tqdm(
            data.select(split), desc="natural routing", unit="query", disable=not progress
        ):
            if engine.guards is not None and engine.guards.check(q.query) is not None:
                ruled += 1  # decided before retrieval: routing never sees it
                continue
            intent = data.intents[q.intent]
            cands = engine.candidates(q.query)
            kind = IN_KB if q.kind == IN_KB else CHITCHAT
            correct = np.array(
                [
                    q.kind == IN_KB and normalize_answer(c.answer) in intent.acceptable
                    for c in cands
                ],
                bool,
            )
            items.append(
                QueryCandidates(
                    LabelledQuery(q.query, kind, True), features(q.query, cands), correct
                )
            )
    finally:
        bot.kb.close()
    return items, {
        "queries": len(items) + ruled,
        "decided_by_rules": ruled,
        "in_kb": sum(i.in_kb for i in items),
        "in_kb_reachable": sum(i.in_kb and bool(i.correct.any()) for i in items),
    }


def cross_validate(
    items: Sequence[QueryCandidates],
    features: Sequence[Feature],
    folds: int = 5,
    seed: int = 20261202,
) -> float:
    """Mean held-out balanced rate of a logistic routing score over ``features`` (T chosen on
    the training folds)."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    rates = []
    for k in range(folds):
        held = set(order[k::folds])
        train = [items[i] for i in order if i not in held]
        test = [items[i] for i in sorted(held)]
        model = fit_routing(train, features)
        t = best_balanced_point(outcomes(train, logistic_decider(model))).threshold
        rates.append(routing_point(outcomes(test, logistic_decider(model)), t).balanced)
    return float(np.mean(rates))


# The synthetic routing evaluation's candidate sets, and the same with ``core`` (and ``known``).
NATURAL_FEATURE_SETS: dict[str, tuple[Feature, ...]] = {
    **FEATURE_SETS,
    "logistic_core": (Feature.CORE,),
    "logistic_core_no_rerank": (Feature.CORE, Feature.MATCH, Feature.CHARS, Feature.DENSE),
    "logistic_core_all": (
        Feature.CORE,
        Feature.RERANK,
        Feature.MATCH,
        Feature.CHARS,
        Feature.DENSE,
    ),
    "logistic_core_known": (
        Feature.CORE,
        Feature.KNOWN,
        Feature.MATCH,
        Feature.CHARS,
        Feature.DENSE,
    ),
    "logistic_core_known_all": (
        Feature.CORE,
        Feature.KNOWN,
        Feature.RERANK,
        Feature.MATCH,
        Feature.CHARS,
        Feature.DENSE,
    ),
    # without ``dense``: it compares the query with the entry's primary question only, so for
    # an entry matched through one of its phrasings it measures the wrong text
    "logistic_core_match_chars": (Feature.CORE, Feature.MATCH, Feature.CHARS),
    "logistic_core_known_match_chars": (Feature.CORE, Feature.KNOWN, Feature.MATCH, Feature.CHARS),
    # with ``unreviewed``: entries grouped from chat logs need a closer match than vetted ones
    "logistic_core_unreviewed": (
        Feature.CORE,
        Feature.MATCH,
        Feature.CHARS,
        Feature.DENSE,
        Feature.UNREVIEWED,
    ),
    "logistic_core_match_chars_unreviewed": (
        Feature.CORE,
        Feature.MATCH,
        Feature.CHARS,
        Feature.UNREVIEWED,
    ),
    "logistic_core_known_unreviewed": (
        Feature.CORE,
        Feature.KNOWN,
        Feature.MATCH,
        Feature.CHARS,
        Feature.DENSE,
        Feature.UNREVIEWED,
    ),
    # with ``intent``: the KB entry classifier's probability of the candidate's entry
    "logistic_intent": (Feature.INTENT,),
    "logistic_intent_fit": (Feature.INTENT, Feature.FIT),
    "logistic_core_intent_fit": (Feature.CORE, Feature.INTENT, Feature.FIT),
    "logistic_core_known_intent_fit": (Feature.CORE, Feature.KNOWN, Feature.INTENT, Feature.FIT),
    "logistic_core_known_intent_fit_unreviewed": (
        Feature.CORE,
        Feature.KNOWN,
        Feature.INTENT,
        Feature.FIT,
        Feature.UNREVIEWED,
    ),
    "logistic_core_intent": (Feature.CORE, Feature.INTENT),
    "logistic_core_known_intent": (Feature.CORE, Feature.KNOWN, Feature.INTENT),
    "logistic_core_known_intent_unreviewed": (
        Feature.CORE,
        Feature.KNOWN,
        Feature.INTENT,
        Feature.UNREVIEWED,
    ),
    "logistic_core_known_cover_intent_unreviewed": (
        Feature.CORE,
        Feature.KNOWN,
        Feature.COVER,
        Feature.INTENT,
        Feature.MATCH,
        Feature.CHARS,
        Feature.UNREVIEWED,
    ),
    # with ``cover``: a question asked inside a longer message
    "logistic_core_cover": (Feature.CORE, Feature.COVER),
    "logistic_core_known_cover": (
        Feature.CORE,
        Feature.KNOWN,
        Feature.COVER,
        Feature.MATCH,
        Feature.CHARS,
        Feature.DENSE,
    ),
    "logistic_core_known_cover_unreviewed": (
        Feature.CORE,
        Feature.KNOWN,
        Feature.COVER,
        Feature.MATCH,
        Feature.CHARS,
        Feature.DENSE,
        Feature.UNREVIEWED,
    ),
}


def fit_natural_routing(
    items: Sequence[QueryCandidates],
    folds: int = 5,
    feature_sets: Mapping[str, Sequence[Feature]] = NATURAL_FEATURE_SETS,
) -> dict:
    """Choose the feature set by cross-validation, fit it on all ``items``, choose its T."""
    cv = {name: cross_validate(items, feats, folds) for name, feats in feature_sets.items()}
    chosen = max(cv, key=lambda n: (round(cv[n], 9), -len(feature_sets[n])))
    model = fit_routing(items, feature_sets[chosen])
    point = best_balanced_point(outcomes(items, logistic_decider(model)))
    return {
        "cross_validated_balanced": cv,
        "chosen": chosen,
        "model": model,
        "tune": asdict(point),
        "threshold": point.threshold,
    }


def run_natural_routing(
    data_dir: str | Path,
    config=None,
    write_model: str | Path | None = None,
    folds: int = 5,
    progress: bool = True,
) -> dict:
    """Label the tune split's candidates, fit and choose the routing score, and optionally
    store it (and its T) in ``write_model/routing.json``."""
    from alime.config import AppConfig

    config = config or AppConfig()
    items, counts = label_candidates(data_dir, "tune", config, progress)
    fitted = fit_natural_routing(items, folds)
    report = {
        "data": str(data_dir),
        "split": "tune",
        "counts": counts,
        "folds": folds,
        "rule": "feature set: best mean held-out balanced rate over folds (fewer features "
        "on ties); T: best balanced rate on the whole tune split",
        "cross_validated_balanced": fitted["cross_validated_balanced"],
        "chosen": fitted["chosen"],
        "fitted": fitted["model"].to_json(),
        "tune": fitted["tune"],
    }
    if write_model is not None:
        dense = config.retrieval.dense
        choice = RoutingChoice(fitted["model"], fitted["threshold"], dense.pooling, dense.sif_a)
        provenance = {
            "fitted_by": "alime evaluate natural --fit-routing",
            "data": str(data_dir),
            "split": "tune",
            "chosen": fitted["chosen"],
            "rule": report["rule"],
            "cross_validated_balanced": fitted["cross_validated_balanced"],
            "tune": fitted["tune"],
            "counts": counts,
        }
        report["written"] = str(write_routing(write_model, choice, provenance))
    return report
