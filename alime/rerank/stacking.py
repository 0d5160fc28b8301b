"""A stacked rerank score: a linear model over the seq2seq's scores and cheap text features.

On the E-commerce data a reply's typicality alone (the context-free prior) selects well; the
conditional score adds little on its own. Stacking gives the prior to the scorer as an explicit
feature, so the learned weights only have to say what the context adds (issue 14). The weights
were fitted as a conditional logit (softmax over each group of 10 candidates) on training-side
groups and chosen on the faithful validation file (``research/stacking.py``,
docs/evaluation.md).

The model directory holds them as ``stacking.json`` (no pickle)::

    {"format": 1, "features": [...], "mean": [...], "scale": [...], "weights": [...],
     "provenance": {...}}

Score = ``weights . z`` with ``z_i = (x_i - mean[i]) / scale[i]`` and ``x`` from
``feature_matrix``; with ``"quadratic": true``, ``z`` is followed by every product ``z_i z_j``
(``i <= j``, ``quadratic_terms``), so the weights can say e.g. that the context's log-probability
counts more for long replies.
One decoder pass with the context per query; the prior pass is cached per answer (a KB's
answers recur), as for the ``pmi`` score.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from alime.rerank.scorers import PriorCache, _ModelScorer
from alime.seq2seq.model_dir import LoadedModel, read_stacking_file, write_stacking_file
from alime.text import TextPipeline

FORMAT = 1
# Context turns (the query included) whose terms the overlap features count: as bm25 reads them.
CONTEXT_TURNS = 3


def _overlap(answer_terms: Sequence[str], other: set[str]) -> float:
    """Share of the answer's distinct terms that occur in ``other`` (0 for an answer without
    terms)."""
    terms = set(answer_terms)
    return len(terms & other) / len(terms) if terms else 0.0


# Each feature from the per-candidate inputs: mean conditional and prior log-probability per
# target token, target length (tokens + EOS), and term overlaps with the context and query.
FEATURES: dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]] = {
    "mean_logprob": lambda x: x["cond"],
    "prior": lambda x: x["prior"],
    "sum_logprob": lambda x: x["cond"] * x["length"],
    "sum_prior": lambda x: x["prior"] * x["length"],
    "log_length": lambda x: np.log(x["length"]),
    "overlap_context": lambda x: x["overlap_context"],
    "overlap_query": lambda x: x["overlap_query"],
    # within-group: how far each candidate's prior is below the group's most typical reply
    "prior_gap": lambda x: x["prior"] - x["prior"].max(),
    "cond_gap": lambda x: x["cond"] - x["cond"].max(),
}


def feature_inputs(
    mean_cond: Sequence[float],
    mean_prior: Sequence[float],
    lengths: Sequence[int],
    answer_terms: Sequence[Sequence[str]],
    context_terms: set[str],
    query_terms: set[str],
) -> dict[str, np.ndarray]:
    """The per-candidate inputs of ``FEATURES`` for one group, as float arrays."""
    return {
        "cond": np.asarray(mean_cond, np.float64),
        "prior": np.asarray(mean_prior, np.float64),
        "length": np.asarray(lengths, np.float64),
        "overlap_context": np.array([_overlap(t, context_terms) for t in answer_terms]),
        "overlap_query": np.array([_overlap(t, query_terms) for t in answer_terms]),
    }


def feature_matrix(inputs: dict[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    """``[candidates, len(names)]`` features of one group."""
    return np.stack([FEATURES[n](inputs) for n in names], axis=1)


def context_terms(
    query: str, context: Sequence[str], analyze: Callable[[str], list[str]]
) -> tuple[set[str], set[str]]:
    """(terms of the last ``CONTEXT_TURNS`` turns, terms of the query)."""
    turns = [*context, query][-CONTEXT_TURNS:]
    return {t for turn in turns for t in analyze(turn)}, set(analyze(query))


def quadratic_terms(z: np.ndarray) -> np.ndarray:
    """``[n, F]`` standardized features followed by every product ``z_i * z_j`` (``i <= j``, in
    row-major order): ``[n, F + F (F + 1) / 2]``."""
    i, j = np.triu_indices(z.shape[1])
    return np.concatenate([z, z[:, i] * z[:, j]], axis=1)


@dataclass(frozen=True)
class StackingWeights:
    """A fitted linear score over named features (standardized with ``mean`` and ``scale``),
    optionally over their pairwise products too (``quadratic``)."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    provenance: dict = field(default_factory=dict, compare=False)
    quadratic: bool = False

    def __post_init__(self) -> None:
        unknown = [f for f in self.features if f not in FEATURES]
        if unknown:
            raise ValueError(f"unknown stacking feature(s) {unknown}; valid: {list(FEATURES)}")
        n = len(self.features)
        if not n or any(len(v) != n for v in (self.mean, self.scale)):
            raise ValueError("stacking: features, mean and scale need one value each")
        want = n + n * (n + 1) // 2 if self.quadratic else n
        if len(self.weights) != want:
            raise ValueError(
                f"stacking: {len(self.weights)} weights, expected {want} for {n} features"
                + (" and their products" if self.quadratic else "")
            )
        if any(not s > 0 for s in self.scale):
            raise ValueError("stacking: every scale must be > 0")

    def score(self, x: np.ndarray) -> np.ndarray:
        """Scores of the rows of a ``feature_matrix``."""
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        if self.quadratic:
            z = quadratic_terms(z)
        return z @ np.asarray(self.weights)

    def save(self, model_dir: str | Path) -> Path:
        """Write ``MODEL_DIR/stacking.json``."""
        data = {
            "format": FORMAT,
            "features": list(self.features),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "weights": list(self.weights),
            "quadratic": self.quadratic,
            "provenance": self.provenance,
        }
        return write_stacking_file(model_dir, data)

    @classmethod
    def load(cls, model_dir: str | Path) -> StackingWeights:
        """Read ``MODEL_DIR/stacking.json``.

        Raises:
            ValueError: no such file, not JSON, another format, unknown keys or features.
        """
        path, data = read_stacking_file(model_dir)
        if data is None:
            raise ValueError(f"{path}: no stacking weights (fit them with research/stacking.py)")
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object")
        keys = {"format", "features", "mean", "scale", "weights", "quadratic", "provenance"}
        unknown = sorted(set(data) - keys)
        if unknown:
            raise ValueError(f"{path}: unknown key(s) {unknown}; valid: {sorted(keys)}")
        if data.get("format") != FORMAT:
            raise ValueError(f"{path}: format {data.get('format')!r}, expected {FORMAT}")
        if not isinstance(data.get("quadratic", False), bool):
            raise ValueError(f"{path}: quadratic must be true or false")
        try:
            return cls(
                tuple(str(f) for f in data["features"]),
                tuple(float(v) for v in data["mean"]),
                tuple(float(v) for v in data["scale"]),
                tuple(float(v) for v in data["weights"]),
                dict(data.get("provenance") or {}),
                data.get("quadratic", False),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from None


def stacked_scores(
    weights: StackingWeights,
    query: str,
    context: Sequence[str],
    answers: Sequence[str],
    cond: Sequence[np.ndarray],
    prior: Sequence[np.ndarray],
    analyze: Callable[[str], list[str]],
) -> list[float]:
    """The stacked score of each answer from its per-token conditional and prior log-probs
    (shared by the engine's scorer and ``alime evaluate select``); ``analyze`` gives the
    overlap features' terms (``TextPipeline.index_terms``)."""
    if not answers:
        return []
    ctx, q = context_terms(query, context, analyze)
    inputs = feature_inputs(
        [float(np.mean(c)) for c in cond],
        [float(np.mean(p)) for p in prior],
        [len(c) for c in cond],
        [analyze(a) for a in answers],
        ctx,
        q,
    )
    return weights.score(feature_matrix(inputs, weights.features)).tolist()


class StackedScorer(_ModelScorer):
    """The engine's scorer for ``rerank_score = "stacked"``: ``stacking.json``'s linear model.

    Args:
        model: the loaded model (fp32 or int8).
        pipeline: the shared text pipeline.
        weights: the fitted weights (default: ``MODEL_DIR/stacking.json`` of ``model``).
    """

    def __init__(
        self,
        model: LoadedModel,
        pipeline: TextPipeline | None = None,
        weights: StackingWeights | None = None,
    ) -> None:
        super().__init__(model, pipeline)
        if weights is None:
            if model.path is None:
                raise ValueError("the stacked scorer needs the model's directory or weights")
            weights = StackingWeights.load(model.path)
        self.weights = weights
        self.priors = PriorCache(super().prior_log_probs)
        # A KB's answers recur across queries: segment each text once (bounded, thread-safe).
        self.terms = functools.lru_cache(maxsize=8192)(self.pipeline.index_terms)

    def prior_log_probs(self, answers: Sequence[str]) -> list[np.ndarray]:
        """The answer prior, each distinct answer computed once (``PriorCache``)."""
        return self.priors(answers)

    def score(self, query: str, context: Sequence[str], answers: Sequence[str]) -> list[float]:
        cond = self.conditional_log_probs(query, context, answers)
        return stacked_scores(
            self.weights,
            query,
            context,
            answers,
            cond,
            self.prior_log_probs(answers),
            self.terms,
        )
