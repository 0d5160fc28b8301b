"""The routing score: does the KB really hold the answer to this query?

The rerank score alone cannot say: it prefers typical replies whatever the question, so an
out-of-KB question gets a KB answer as readily as an in-KB one. The routing score combines it
with how well the candidate's *question* matches the query:

* ``rerank`` — the engine's rerank score of the candidate's answer (e.g. PMI);
* ``match`` — idf-weighted F1 of the query's and the candidate question's index terms (both
  directions: a short query inside a long question and the reverse both lose); the best over the
  entry's questions (its primary question and its phrasings);
* ``chars`` — F1 of their character multisets (typo- and segmentation-robust); also the best
  over the entry's questions;
* ``dense`` — cosine of their embeddings from the model's encoder (synonym-robust); the primary
  question only (one encoder pass per phrasing would multiply its cost);
* ``core`` — ``chars`` without the function characters of questions (吗, 呢, 亲, 是, 有, 不 ...):
  what the two texts share in content, the best over the entry's questions (5-fold
  cross-validated balanced rate on the natural tune split with the bundled KB: 0.858 for
  ``core`` alone vs 0.816 for ``chars``);
* ``known`` — the share of the query's index terms that some KB question has (idf > 0), the
  same for every candidate of a query: an off-topic query's words are mostly unknown to a shop's
  KB (你喜欢什么电影: 电影), so one shared word with a long phrasing weighs less;
* ``cover`` — the share of the candidate question's ``core`` characters the query has, the best
  over the entry's questions: a question asked inside a longer message (context, reasons,
  details around it) is covered whole while its F1 falls with every added character;
* ``intent`` — the log-odds of the probability the KB's entry classifier gives the candidate's
  entry (clipped to ±13.8)
  (:mod:`alime.retrieval.entry_classifier`: naive Bayes over the character n-grams of all the
  entry's questions), which knows what tells the entries apart rather than what one question
  shares with the query;
* ``fit`` — the classifier's mean log-likelihood ratio per query n-gram, the entry's model
  against all the KB's questions pooled: how much better the entry explains the query than
  the KB in general (the probability is near 1 for an off-topic query's likeliest entry too);
* ``unreviewed`` — 1 for an entry ``alime kb curate`` grouped from chat logs and nobody has
  reviewed yet (its ``unreviewed`` tag), 0 for a shop's own or reviewed entries: chat-log
  answers are often tied to one conversation, so such an entry needs a closer match to answer.

A small logistic model maps each candidate's features to a probability that its answer answers
the query; the engine answers from the KB with the best candidate iff that probability >= T
(AliMe's rule, ``alime.decision.decide``). The model and T live in ``MODEL/routing.json``,
written by ``alime evaluate routing --write-model``; without the file the engine keeps the old
rule (the rerank score against ``thresholds.json``'s T).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from functools import lru_cache
from pathlib import Path

import numpy as np

from alime.guards import compact
from alime.kb.curate import UNREVIEWED_TAG
from alime.seq2seq.model_dir import read_routing_file, write_routing_file
from alime.types import Candidate

FORMAT_VERSION = 1


class Feature(str, Enum):
    """The per-candidate inputs of the routing score."""

    RERANK = "rerank"
    MATCH = "match"
    CHARS = "chars"
    DENSE = "dense"
    CORE = "core"
    KNOWN = "known"
    UNREVIEWED = "unreviewed"
    COVER = "cover"
    INTENT = "intent"
    FIT = "fit"


def _f1(common: float, left: float, right: float) -> float:
    return 0.0 if common <= 0 or left <= 0 or right <= 0 else 2 * common / (left + right)


def weighted_overlap_f1(
    query: Sequence[str],
    question: Sequence[str],
    weight: Callable[[str], float],
    synonyms: Callable[[str], Sequence[str]] | None = None,
) -> float:
    """F1 of the two term sets, each term counted with ``weight`` (e.g. its idf).

    With ``synonyms`` (term -> its interchangeable words), a term also counts as shared when
    one of its synonyms is on the other side (给个折扣 matches 能便宜点 when 折扣 and 便宜 are
    one group): the F1 is then (weight of the query's matched terms + weight of the question's
    matched terms) / (weight of all terms of both), which is the plain F1 without synonyms.
    One question; :class:`QueryMatch` scores one query against many.
    """
    return QueryMatch(query, weight, synonyms).f1(question)


INTENT_CLIP = 1e-6  # the ``intent`` probability is clipped to [1e-6, 1 - 1e-6] before its log-odds


class QueryMatch:
    """:func:`weighted_overlap_f1` of one query against many questions, with the per-query
    work done once: the query's weights and synonym sets, and each term's weight and whether
    it is matched, looked up once per query however many phrasings share it (tested equal to
    the formula written out plainly).
    """

    def __init__(
        self,
        query: Sequence[str],
        weight: Callable[[str], float],
        synonyms: Callable[[str], Sequence[str]] | None = None,
    ) -> None:
        self.query = frozenset(query)
        self._weights: dict[str, float] = {}
        self._weight = weight
        self._synonyms = synonyms
        self._q_weight = {t: self.weight(t) for t in self.query}
        self._q_total = sum(self._q_weight.values())
        # a query term matches a question holding it or one of its synonyms
        self._q_alternatives = {
            t: frozenset((t, *(synonyms(t) if synonyms else ()))) for t in self.query
        }
        self._d_matched: dict[str, bool] = {}

    def weight(self, term: str) -> float:
        value = self._weights.get(term)
        if value is None:
            value = self._weights[term] = max(self._weight(term), 0.0)
        return value

    def _matched(self, term: str) -> bool:
        """Whether a question term is matched by the query (it, or a synonym of it, is there)."""
        hit = self._d_matched.get(term)
        if hit is None:
            hit = term in self.query or (
                self._synonyms is not None and any(s in self.query for s in self._synonyms(term))
            )
            self._d_matched[term] = hit
        return hit

    def f1(self, question: Sequence[str]) -> float:
        d = question if isinstance(question, frozenset) else frozenset(question)
        d_total = 0.0
        d_matched = 0.0
        for t in d:
            w = self.weight(t)
            d_total += w
            if w and self._matched(t):
                d_matched += w
        if self._synonyms is None:
            common = sum(self._q_weight[t] for t in self.query & d)
            return _f1(common, self._q_total, d_total)
        total = self._q_total + d_total
        if total <= 0 or not self._q_total or not d_total:
            return 0.0
        q_matched = sum(
            w for t, w in self._q_weight.items() if w and not self._q_alternatives[t].isdisjoint(d)
        )
        return (q_matched + d_matched) / total


# Particles, pronouns and the words every question has: left out of the ``core`` feature.
FUNCTION_CHARS = frozenset("吗呢啊吧嘛呀哦亲的了么哈噢呗啦咯不是我你们这那个一下有在请问")


# KB questions recur in every query's candidates: their per-text work is cached (a KB edit
# brings new texts; old ones age out). Read-only results, shared between threads.
_TEXT_CACHE = 65536
_VECTOR_CACHE = 16384  # question embeddings (float32, a few MB per worker)


def _common(a: Counter, b: Counter) -> float:
    """The size of the multiset intersection of ``a`` and ``b`` (``sum((a & b).values())``
    without building the intersection: this runs for every phrasing of every candidate)."""
    if len(a) > len(b):
        a, b = b, a
    return float(sum(min(n, b[ch]) for ch, n in a.items() if ch in b))


@lru_cache(maxsize=_TEXT_CACHE)
def _chars(text: str) -> tuple[Counter, int]:
    counts = Counter(text.replace(" ", ""))
    return counts, sum(counts.values())


@lru_cache(maxsize=_TEXT_CACHE)
def _core_chars(text: str) -> tuple[Counter, int]:
    counts = Counter(ch for ch in compact(text) if ch not in FUNCTION_CHARS)
    return counts, sum(counts.values())


def core_overlap(query: str, question: str) -> tuple[float, float]:
    """(``core_overlap_f1``, ``core_coverage``) from one intersection: the routing features
    read both for every phrasing of every candidate."""
    (a, n), (b, m) = _core_chars(query), _core_chars(question)
    common = _common(a, b)
    return _f1(common, float(n), float(m)), (common / m if m else 0.0)


def core_overlap_f1(query: str, question: str) -> float:
    """``char_overlap_f1`` of the compact texts (letters and digits only) without
    ``FUNCTION_CHARS``."""
    return core_overlap(query, question)[0]


def core_coverage(query: str, question: str) -> float:
    """The share of the question's ``core`` characters (with multiplicity) that the query has:
    1 when the query asks everything the question asks, however much context it adds around
    it (宝宝尿不湿快用完了 麻烦尽快发出 covers 尽快发货's 尽 快 发, not 货)."""
    return core_overlap(query, question)[1]


def char_overlap_f1(query: str, question: str) -> float:
    """F1 of the two texts' character multisets (spaces ignored)."""
    (a, n), (b, m) = _chars(query), _chars(question)
    return _f1(_common(a, b), float(n), float(m))


class CandidateFeatures:
    """Computes the routing features of a query's candidates.

    Args:
        terms: text -> index terms (the BM25 index's analyzer, stop words removed).
        idf: term -> its idf in the KB (0 for unknown terms).
        embed: texts -> L2-normalized vectors; None leaves ``dense`` at 0.
        synonyms: term -> its interchangeable words (``match`` counts them as shared).
        standardize: text -> the form the character features compare (the text pipeline's
            variant spellings replaced, 咋存 -> 怎么存); None compares the texts as given.
        posteriors: query -> {entry id: (probability, log-likelihood ratio per n-gram)} from
            the KB's entry classifier; None leaves ``intent`` and ``fit`` at 0.
    """

    def __init__(
        self,
        terms: Callable[[str], list[str]],
        idf: Callable[[str], float],
        embed: Callable[[Sequence[str]], np.ndarray] | None = None,
        synonyms: Callable[[str], Sequence[str]] | None = None,
        standardize: Callable[[str], str] | None = None,
        posteriors: Callable[[str], Mapping[int, tuple[float, float]]] | None = None,
    ) -> None:
        self.terms = terms
        self.posteriors = posteriors
        self._standard = (
            lru_cache(maxsize=_TEXT_CACHE)(standardize) if standardize else (lambda text: text)
        )
        # the index terms of KB questions, cached (jieba per phrasing per query dominated)
        self._question_terms = lru_cache(maxsize=_TEXT_CACHE)(lambda text: frozenset(terms(text)))
        self._vector_cache: dict[str, np.ndarray] = {}  # question text -> its embedding
        self.idf = idf
        self.embed = embed
        self.synonyms = synonyms

    def _vectors(self, query: str, questions: Sequence[str]) -> np.ndarray:
        """``embed([query, *questions])`` as float64 rows, in one batch with only the questions
        not seen before (KB questions recur in every query's candidates). The cache of question
        vectors is replaced, never cleared in place, when it reaches its bound, so a thread
        reading its own reference is never disturbed."""
        cache = self._vector_cache
        missing = list(dict.fromkeys(q for q in questions if q not in cache))
        fresh = np.asarray(self.embed([query, *missing]), np.float32)
        rows = dict(zip(missing, fresh[1:], strict=True))
        out = np.stack([fresh[0], *(rows[q] if q in rows else cache[q] for q in questions)])
        if missing:
            if len(cache) + len(missing) > _VECTOR_CACHE:
                cache = {}
            cache.update(rows)
            self._vector_cache = cache
        return out.astype(np.float64)

    def __call__(
        self,
        query: str,
        candidates: Sequence[Candidate],
        wanted: Sequence[Feature] = tuple(Feature),
    ) -> dict[Feature, np.ndarray]:
        """Each ``wanted`` feature's value per candidate (``rerank`` is NaN for unreranked
        candidates). Only the wanted ones are computed: the served model uses one or two, and
        the others cost a tokenization or an encoder pass per candidate."""
        n = len(candidates)
        out: dict[Feature, np.ndarray] = {}
        q_terms = self.terms(query) if {Feature.MATCH, Feature.KNOWN} & set(wanted) else []
        if Feature.RERANK in wanted:
            out[Feature.RERANK] = np.array(
                [np.nan if c.rerank_score is None else c.rerank_score for c in candidates],
                np.float64,
            )
        if Feature.MATCH in wanted:
            match = QueryMatch(q_terms, self.idf, self.synonyms)
            out[Feature.MATCH] = np.array(
                [max(match.f1(self._question_terms(q)) for q in c.questions) for c in candidates],
                np.float64,
            )
        std = self._standard
        if Feature.CHARS in wanted:
            text = std(query)
            out[Feature.CHARS] = np.array(
                [max(char_overlap_f1(text, std(q)) for q in c.questions) for c in candidates],
                np.float64,
            )
        if Feature.KNOWN in wanted:
            known = (sum(self.idf(t) > 0 for t in q_terms) / len(q_terms)) if q_terms else 0.0
            out[Feature.KNOWN] = np.full(n, known, np.float64)
        if Feature.CORE in wanted or Feature.COVER in wanted:
            text = std(query)
            core = np.zeros(n)
            cover = np.zeros(n)
            for i, c in enumerate(candidates):
                for q in c.questions:
                    f1, covered = core_overlap(text, std(q))
                    core[i] = max(core[i], f1)
                    cover[i] = max(cover[i], covered)
            out[Feature.CORE] = core
            out[Feature.COVER] = cover
        if Feature.INTENT in wanted or Feature.FIT in wanted:
            probs = self.posteriors(query) if self.posteriors is not None else {}
            pairs = [probs.get(c.id, (0.0, 0.0)) for c in candidates]
            # log-odds: the probabilities crowd at 0 and 1, where a linear score cannot tell
            # 0.999 from 0.9 (measured: cross-validated balanced rate 0.933 -> 0.951)
            p = np.clip(np.array([p for p, _ in pairs], np.float64), INTENT_CLIP, 1 - INTENT_CLIP)
            out[Feature.INTENT] = np.log(p / (1 - p))
            out[Feature.FIT] = np.array([r for _, r in pairs], np.float64)
        if Feature.UNREVIEWED in wanted:
            out[Feature.UNREVIEWED] = np.array(
                [float(UNREVIEWED_TAG in c.tags) for c in candidates], np.float64
            )
        if Feature.DENSE in wanted:
            out[Feature.DENSE] = np.zeros(n)
            if self.embed is not None and n:
                vectors = self._vectors(query, [c.question for c in candidates])
                out[Feature.DENSE] = vectors[1:] @ vectors[0]
        return out


@dataclass(frozen=True)
class LogisticRouting:
    """``sigmoid(bias + sum_i weight_i * (x_i - mean_i) / scale_i)`` over named features."""

    features: tuple[Feature, ...]
    weights: tuple[float, ...]
    bias: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(Feature(f) for f in self.features))
        n = len(self.features)
        if not n or any(len(v) != n for v in (self.weights, self.mean, self.scale)):
            raise ValueError("features, weights, mean and scale must be non-empty and equally long")
        if any(not s > 0 for s in self.scale):
            raise ValueError("scales must be positive")

    def matrix(self, values: dict[Feature, np.ndarray]) -> np.ndarray:
        """The model's feature columns ``[n, len(features)]``."""
        return np.column_stack([np.asarray(values[f], np.float64) for f in self.features])

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Routing probability per row of ``x`` (a NaN feature counts as its mean)."""
        z = (np.asarray(x, np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        z = np.where(np.isnan(z), 0.0, z)
        logits = self.bias + z @ np.asarray(self.weights)
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -500, 500)))

    def to_json(self) -> dict:
        d = asdict(self)
        d["features"] = [f.value for f in self.features]
        return d


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    features: Sequence[Feature],
    l2: float = 1e-2,
    iterations: int = 50,
    sample_weight: np.ndarray | None = None,
) -> LogisticRouting:
    """Fit ``LogisticRouting`` by Newton's method (IRLS) with an L2 penalty on the weights.

    Args:
        x: ``[n, len(features)]`` feature rows (NaN: treated as the column mean).
        y: 0/1 labels.
        sample_weight: per-row weights (e.g. to balance classes); default 1.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.ndim != 2 or x.shape[1] != len(features) or len(y) != len(x) or not len(x):
        raise ValueError("x must be [n, len(features)] with n = len(y) > 0")
    sw = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    mean = np.nanmean(x, axis=0)
    scale = np.nanstd(x, axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    z = np.where(np.isnan(x), 0.0, (x - mean) / scale)
    a = np.column_stack([np.ones(len(z)), z])
    beta = np.zeros(a.shape[1])
    penalty = np.diag([0.0] + [l2] * z.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ beta, -500, 500)))
        grad = a.T @ (sw * (p - y)) + penalty @ beta
        hess = (a * (sw * p * (1 - p))[:, None]).T @ a + penalty + 1e-9 * np.eye(len(beta))
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return LogisticRouting(
        tuple(features),
        tuple(float(b) for b in beta[1:]),
        float(beta[0]),
        tuple(float(m) for m in mean),
        tuple(float(s) for s in scale),
    )


@dataclass(frozen=True)
class RoutingChoice:
    """What ``routing.json`` holds: the score, T, and the dense encoder's settings it used."""

    model: LogisticRouting
    threshold: float
    pooling: str = "words"
    sif_a: float = 0.01


def write_routing(model_dir: str | Path, choice: RoutingChoice, provenance: dict) -> Path:
    """Store the routing score and T in ``model_dir/routing.json`` (with how they were chosen)."""
    data = {
        "format": FORMAT_VERSION,
        "score": "logistic",
        **choice.model.to_json(),
        "threshold": choice.threshold,
        "dense_pooling": choice.pooling,
        "dense_sif_a": choice.sif_a,
        "provenance": provenance,
    }
    return write_routing_file(model_dir, data)


def read_routing(model_dir: str | Path) -> RoutingChoice | None:
    """The model directory's routing score and T (None when it has no ``routing.json``).

    Raises:
        ValueError: a malformed file (unknown score or feature, missing or non-finite numbers).
    """
    path, data = read_routing_file(model_dir)
    if data is None:
        return None
    try:
        if data.get("score") != "logistic":
            raise ValueError(f"unknown score {data.get('score')!r}; valid: logistic")
        numbers = [data["bias"], data["threshold"], *data["weights"], *data["mean"], *data["scale"]]
        if not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in numbers
        ):
            raise ValueError("bias, threshold, weights, mean and scale must be finite numbers")
        model = LogisticRouting(
            tuple(data["features"]),
            tuple(data["weights"]),
            float(data["bias"]),
            tuple(data["mean"]),
            tuple(data["scale"]),
        )
        return RoutingChoice(
            model,
            float(data["threshold"]),
            str(data.get("dense_pooling", "words")),
            float(data.get("dense_sif_a", 0.01)),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        valid = [f.value for f in Feature]
        raise ValueError(
            f"{path}: invalid routing file ({exc}); features must be from {valid}"
        ) from None


class FeatureRouter:
    """The engine's ``Router``: the routing probability of each candidate."""

    def __init__(self, features: CandidateFeatures, model: LogisticRouting) -> None:
        self.features = features
        self.model = model

    @property
    def uses_rerank(self) -> bool:
        """Whether the loaded model reads the rerank score (else the engine reranks only ties)."""
        return Feature.RERANK in self.model.features

    def score(self, query: str, candidates: Sequence[Candidate]) -> list[float]:
        if not candidates:
            return []
        x = self.model.matrix(self.features(query, candidates, self.model.features))
        return [float(p) for p in self.model.probabilities(x)]
