"""Routing evaluation: does the engine answer KB questions from the KB and the rest otherwise?

The labelled set (fixed seed) over a ``question \\t answer`` KB:

* **held out**: a seeded share of the KB's pairs is removed from the KB the engine searches;
  only pairs whose answer text no kept pair has are held out, so the KB cannot answer them;
* **in-KB** queries: noisy rewrites (:mod:`alime.evaluation.noisy_queries`) of kept questions;
  the right answer is the pair's answer (any pair with the same answer text counts);
* **out-of-KB** queries: noisy rewrites of the held-out questions, and chit-chat questions (the
  first turns of ChatterBot's topical Chinese corpus, no greetings) that no KB question equals.

Each kind is split in half (seeded): a *tune* half, on which a routing score is fitted and its T
chosen, and a *test* half, on which it is reported. A score routes a query to the KB when its
best candidate's score is >= T; the engine then answers with that candidate.

Per score and T: share of in-KB queries answered from the KB, and answered with the right
answer; precision among them; share of out-of-KB queries routed to generation/fallback. T is
chosen by the *balanced* rate, the mean of "in-KB answered right" and "out-of-KB routed away".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from alime.evaluation.noisy_queries import build_noisy_queries
from alime.evaluation.threshold import threshold_grid
from alime.routing import Feature, LogisticRouting, fit_logistic
from alime.text import normalize

IN_KB = "in_kb"
HELD_OUT = "held_out"
CHITCHAT = "chitchat"
KINDS = (IN_KB, HELD_OUT, CHITCHAT)
# Topical ChatterBot files; greetings and small talk ("你好") are questions a shop KB answers.
CHITCHAT_SKIP = ("greetings.yml", "conversations.yml")


@dataclass(frozen=True)
class RoutingSettings:
    """How the labelled set is drawn.

    Attributes:
        seed: Seeds the held-out draw, the rewrites and the tune/test split.
        held_out_share: Share of eligible KB pairs removed from the KB.
        n_in_kb: In-KB queries (both halves).
        n_held_out: Out-of-KB queries from held-out pairs (at most the held-out pairs).
        n_chitchat: Chit-chat queries.
        n_edits: Core rewrites per noisy query.
    """

    seed: int = 20261127
    held_out_share: float = 0.1
    n_in_kb: int = 600
    n_held_out: int = 300
    n_chitchat: int = 300
    n_edits: int = 2


@dataclass(frozen=True)
class LabelledQuery:
    """A query, its kind, its half, and (in-KB) the answer that would be right."""

    query: str
    kind: str
    tune: bool
    answer: str | None = None
    source: str = ""


@dataclass
class RoutingSet:
    """The KB rows the engine searches and the labelled queries."""

    kept: list[tuple[str, str]]
    queries: list[LabelledQuery]
    held_out: int = 0
    stats: dict = field(default_factory=dict)


def build_routing_set(
    rows: Sequence[tuple[str, str]],
    chitchat: Sequence[str],
    tokenize: Callable[[str], list[str]],
    variants: Mapping[str, tuple[str, ...]],
    settings: RoutingSettings | None = None,
) -> RoutingSet:
    """The labelled set for KB ``rows`` (question, answer) and chit-chat questions."""
    s = settings or RoutingSettings()
    rng = np.random.default_rng(s.seed)
    tokens = [tokenize(q) for q, _ in rows]
    q_count: dict[tuple[str, ...], int] = {}
    for t in tokens:
        q_count[tuple(t)] = q_count.get(tuple(t), 0) + 1
    a_count: dict[str, int] = {}
    for _, a in rows:
        a_count[a] = a_count.get(a, 0) + 1
    # Eligible: a question no other pair has, with 4+ tokens (noisy_queries.split_held_out's rule).
    eligible = [i for i, t in enumerate(tokens) if q_count[tuple(t)] == 1 and len(t) >= 4]
    order = [eligible[int(j)] for j in rng.permutation(len(eligible))]
    # Held out: answers no other pair gives, so the kept KB has no pair with the right answer.
    unique_answer = [i for i in order if a_count[rows[i][1]] == 1]
    n_hold = int(round(s.held_out_share * len(eligible)))
    held = set(unique_answer[:n_hold])
    kept = [r for i, r in enumerate(rows) if i not in held]
    in_pool = [i for i in order if i not in held]

    in_queries = build_noisy_queries(
        [(i, tokens[i]) for i in in_pool], variants, s.n_in_kb, s.seed + 1, s.n_edits
    )
    held_queries = build_noisy_queries(
        [(i, tokens[i]) for i in unique_answer[:n_hold]],
        variants,
        s.n_held_out,
        s.seed + 2,
        s.n_edits,
    )
    kb_questions = {normalize("".join(t)) for t in tokens}
    chat = [
        q
        for q in dict.fromkeys(c.strip() for c in chitchat)
        if q and normalize(q.replace(" ", "")) not in kb_questions
    ]
    chat = [chat[int(j)] for j in rng.permutation(len(chat))][: s.n_chitchat]

    queries: list[LabelledQuery] = []

    def add(kind: str, items: Sequence[tuple[str, str | None, str]]) -> None:
        tune = np.zeros(len(items), bool)
        tune[rng.permutation(len(items))[: (len(items) + 1) // 2]] = True
        queries.extend(
            LabelledQuery(q, kind, bool(t), a, src)
            for (q, a, src), t in zip(items, tune, strict=True)
        )

    add(IN_KB, [(q.query, rows[q.qa_id][1], q.original) for q in in_queries])
    add(HELD_OUT, [(q.query, None, q.original) for q in held_queries])
    add(CHITCHAT, [(q, None, q) for q in chat])
    return RoutingSet(
        kept,
        queries,
        len(held),
        {
            "kb_pairs": len(rows),
            "kept_pairs": len(kept),
            "held_out_pairs": len(held),
            "eligible_pairs": len(eligible),
            "queries": {k: sum(q.kind == k for q in queries) for k in KINDS},
        },
    )


@dataclass
class QueryCandidates:
    """One query's candidates as the engine ranked them (by rerank score), their features and
    whether each candidate's answer is right."""

    query: LabelledQuery
    features: dict[Feature, np.ndarray]
    correct: np.ndarray

    @property
    def in_kb(self) -> bool:
        return self.query.kind == IN_KB


# A decision score: per query, (best score, index of the candidate that would answer).
Decider = Callable[[QueryCandidates], tuple[float, int]]


def rerank_decider(q: QueryCandidates) -> tuple[float, int]:
    """Today's rule: the best rerank score, answered with the rerank winner."""
    r = q.features[Feature.RERANK]
    if not len(r):
        return -np.inf, 0
    i = int(np.argmax(r))
    return float(r[i]), i


def feature_decider(feature: Feature) -> Decider:
    """One feature as the score, answered with the candidate where it is highest."""

    def decide(q: QueryCandidates) -> tuple[float, int]:
        v = q.features[feature]
        if not len(v):
            return -np.inf, 0
        i = int(np.argmax(v))
        return float(v[i]), i

    return decide


def logistic_decider(model: LogisticRouting) -> Decider:
    """The routing model's probability, answered with its most probable candidate."""

    def decide(q: QueryCandidates) -> tuple[float, int]:
        if not len(q.correct):
            return -np.inf, 0
        p = model.probabilities(model.matrix(q.features))
        i = int(np.argmax(p))
        return float(p[i]), i

    return decide


@dataclass(frozen=True)
class Outcomes:
    """Per query: decision score, in-KB or not, kind, and whether the answering candidate is
    right."""

    score: np.ndarray
    in_kb: np.ndarray
    kind: np.ndarray
    right: np.ndarray


def outcomes(items: Sequence[QueryCandidates], decider: Decider) -> Outcomes:
    scores, right = [], []
    for q in items:
        s, i = decider(q)
        scores.append(s)
        right.append(bool(len(q.correct)) and bool(q.correct[i]))
    return Outcomes(
        np.array(scores, np.float64),
        np.array([q.in_kb for q in items], bool),
        np.array([q.query.kind for q in items]),
        np.array(right, bool),
    )


@dataclass(frozen=True)
class RoutingPoint:
    """The routing figures at one T (shares are over the queries of that kind)."""

    threshold: float
    in_kb_answered: float  # in-KB queries answered from the KB
    in_kb_right: float  # ... with the right answer
    in_kb_precision: float | None  # right among the in-KB queries answered from the KB
    out_routed: float  # out-of-KB queries sent to generation / fallback
    held_out_routed: float
    chitchat_routed: float
    kb_precision: float | None  # right among all KB answers (out-of-KB ones are wrong)
    balanced: float  # (in_kb_right + out_routed) / 2


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if len(x) else 0.0


def routing_point(o: Outcomes, threshold: float) -> RoutingPoint:
    """The figures when the KB answers iff the score is >= ``threshold``."""
    answered = o.score >= threshold
    ins, outs = o.in_kb, ~o.in_kb
    in_answered = answered[ins]
    in_right = (answered & o.right)[ins]
    n_answered = int(answered.sum())
    return RoutingPoint(
        threshold=float(threshold),
        in_kb_answered=_mean(in_answered),
        in_kb_right=_mean(in_right),
        in_kb_precision=float(in_right.sum() / in_answered.sum()) if in_answered.any() else None,
        out_routed=_mean(~answered[outs]),
        held_out_routed=_mean(~answered[o.kind == HELD_OUT]),
        chitchat_routed=_mean(~answered[o.kind == CHITCHAT]),
        kb_precision=(float((answered & o.right & ins).sum() / n_answered) if n_answered else None),
        balanced=(_mean(in_right) + _mean(~answered[outs])) / 2,
    )


def best_balanced_point(o: Outcomes, grid: np.ndarray | None = None) -> RoutingPoint:
    """The T of the highest balanced rate (the smallest such T on ties)."""
    grid = threshold_grid(o.score) if grid is None else grid
    if not len(grid):
        raise ValueError("no finite decision scores")
    points = [routing_point(o, t) for t in grid]
    return max(points, key=lambda p: (p.balanced, -p.threshold))


def candidate_examples(
    items: Sequence[QueryCandidates], features: Sequence[Feature]
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate-level rows: a candidate is positive iff its answer answers the query."""
    xs = [np.column_stack([q.features[f] for f in features]) for q in items if len(q.correct)]
    ys = [q.correct.astype(np.float64) for q in items if len(q.correct)]
    return np.concatenate(xs), np.concatenate(ys)


def fit_routing(items: Sequence[QueryCandidates], features: Sequence[Feature]) -> LogisticRouting:
    """A logistic routing model fitted on ``items`` (the tune half)."""
    x, y = candidate_examples(items, features)
    return fit_logistic(x, y, features)


def evaluate_score(
    tune: Sequence[QueryCandidates],
    test: Sequence[QueryCandidates],
    decider: Decider,
    fixed_threshold: float | None = None,
) -> dict:
    """T chosen on ``tune`` (or fixed), the figures on both halves, and the test sweep."""
    o_tune, o_test = outcomes(tune, decider), outcomes(test, decider)
    chosen = (
        routing_point(o_tune, fixed_threshold)
        if fixed_threshold is not None
        else best_balanced_point(o_tune)
    )
    t = chosen.threshold
    return {
        "threshold": t,
        "tune": asdict(chosen),
        "test": asdict(routing_point(o_test, t)),
        "sweep_test": [asdict(routing_point(o_test, g)) for g in threshold_grid(o_test.score, 60)],
    }


def plot_routing(results: Mapping[str, dict], path: str | Path, title: str) -> None:
    """PNG: per score, the test half's routing shares against T, with the chosen T marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 4.2), squeeze=False)
    for ax, (name, r) in zip(axes[0], results.items(), strict=True):
        sweep = r["sweep_test"]
        t = [p["threshold"] for p in sweep]
        ax.plot(t, [p["in_kb_answered"] for p in sweep], label="in-KB answered from KB")
        ax.plot(t, [p["in_kb_right"] for p in sweep], label="in-KB answered right")
        ax.plot(t, [p["out_routed"] for p in sweep], label="out-of-KB routed away")
        ax.plot(t, [p["balanced"] for p in sweep], label="balanced", linestyle=":")
        ax.axvline(r["threshold"], color="grey", linestyle="--", label=f"T = {r['threshold']:.4g}")
        ax.set_xlabel(f"T ({name})")
        ax.set_ylim(0, 1.02)
        ax.set_title(name)
        ax.legend(loc="best", fontsize=7)
    axes[0][0].set_ylabel("share (test half)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- the facade of ``alime evaluate routing`` ------------------------------------------------

DEFAULT_CHITCHAT_DIR = Path(__file__).resolve().parents[2] / "data" / "chatterbot_zh"


def read_chitchat(folder: str | Path, skip: Sequence[str] = CHITCHAT_SKIP) -> list[str]:
    """The first turn of every conversation in the ChatterBot YAML files of ``folder`` (read by
    the KB's ChatterBot reader: a conversation's pairs share its start line)."""
    from alime.kb.formats import Format, read_rows

    out: list[str] = []
    for path in sorted(Path(folder).glob("*.yml")):
        if path.name in skip:
            continue
        firsts: dict[int, str] = {}
        for row in read_rows(path, Format.CHATTERBOT, skip_bad=True).rows:
            firsts.setdefault(row.line, row.question)
        out += firsts.values()
    return out


ALL_FEATURES = (Feature.RERANK, Feature.MATCH, Feature.CHARS, Feature.DENSE)
# The logistic routing models compared; the one with the best balanced rate on the tune half
# is the one --write-model stores (fewer features first on ties).
FEATURE_SETS: dict[str, tuple[Feature, ...]] = {
    "logistic_chars": (Feature.CHARS,),
    "logistic_chars_dense": (Feature.CHARS, Feature.DENSE),
    "logistic_no_rerank": (Feature.MATCH, Feature.CHARS, Feature.DENSE),
    "logistic": ALL_FEATURES,
}


def pick_model(results: Mapping[str, dict]) -> str:
    """The routing model with the best balanced rate on the tune half (first listed on ties)."""
    names = list(FEATURE_SETS)
    return max(names, key=lambda n: (results[n]["tune"]["balanced"], -names.index(n)))


def run_routing(
    model_dir: str | Path,
    kb_path: str | Path,
    config=None,
    settings: RoutingSettings | None = None,
    out_dir: str | Path | None = None,
    write_model: bool = False,
    chitchat_dir: str | Path = DEFAULT_CHITCHAT_DIR,
    progress: bool = True,
) -> dict:
    """Build the labelled set, run the engine's retrieval and rerank on every query, compare
    routing scores (T tuned on the tune half, figures on the test half), and optionally store
    the fitted routing score and its T in ``model_dir/routing.json``."""
    import dataclasses
    import tempfile
    import time

    from tqdm import tqdm

    from alime.bot import build_bot, routing_features
    from alime.config import AppConfig, PathsConfig
    from alime.evaluation import reports
    from alime.evaluation.noisy_queries import read_variants
    from alime.evaluation.retrieval import DEFAULT_VARIANTS
    from alime.kb.formats import Format, read_rows
    from alime.kb.store import KnowledgeBase
    from alime.routing import RoutingChoice, read_routing, write_routing
    from alime.seq2seq.model_dir import read_thresholds
    from alime.text import TextPipeline

    started = time.perf_counter()
    config = config or AppConfig()
    settings = settings or RoutingSettings()
    model_dir = Path(model_dir)
    pipeline = TextPipeline(config.text)
    rows = [(r.question, r.answer) for r in read_rows(kb_path, Format.TSV).rows]
    data = build_routing_set(
        rows,
        read_chitchat(chitchat_dir),
        pipeline.tokenize,
        read_variants(*DEFAULT_VARIANTS),
        settings,
    )
    dense = config.retrieval.dense
    with tempfile.TemporaryDirectory(prefix="alime-routing-") as tmp:
        kb_file = Path(tmp) / "kb.sqlite"
        kb = KnowledgeBase(kb_file)
        kb.add_many((q, a, ("ecommerce",)) for q, a in data.kept)
        kb.close()
        run_config = dataclasses.replace(
            config, paths=PathsConfig(kb=str(kb_file), index="", model=str(model_dir))
        )
        bot = build_bot(run_config)
        engine = bot.engine
        engine.router = None  # candidates in rerank order; every score is computed below
        features = routing_features(
            bot.searcher, engine.retriever, model_dir, dense.pooling, dense.sif_a
        )
        items: list[QueryCandidates] = []
        for q in tqdm(data.queries, desc="routing", disable=not progress, leave=False):
            cands = engine.candidates(q.query)
            items.append(
                QueryCandidates(
                    q,
                    features(q.query, cands),
                    np.array([c.answer == q.answer for c in cands], bool),
                )
            )
        bot.kb.close()
    tune = [i for i in items if i.query.tune]
    test = [i for i in items if not i.query.tune]

    models = {name: fit_routing(tune, feats) for name, feats in FEATURE_SETS.items()}
    results = {name: evaluate_score(tune, test, logistic_decider(m)) for name, m in models.items()}
    results["rerank"] = evaluate_score(tune, test, rerank_decider)
    for f in (Feature.MATCH, Feature.CHARS, Feature.DENSE):
        results[f.value] = evaluate_score(tune, test, feature_decider(f))
    chosen = pick_model(results)
    model = models[chosen]
    stored_t = read_thresholds(model_dir).get("threshold")
    if stored_t is not None:
        results["rerank@thresholds.json"] = evaluate_score(tune, test, rerank_decider, stored_t)
    stored = read_routing(model_dir)
    if stored is not None:
        results["routing.json"] = evaluate_score(
            tune, test, logistic_decider(stored.model), stored.threshold
        )
    report = {
        "model": str(model_dir),
        "kb": str(kb_path),
        "settings": asdict(settings),
        "set": data.stats,
        "halves": {"tune": len(tune), "test": len(test)},
        "rule": "T maximizes the balanced rate (in-KB answered right + out-of-KB routed away) / 2 "
        "on the tune half; figures on the test half",
        "chosen": chosen,
        "chosen_rule": f"best balanced rate on the tune half among {list(FEATURE_SETS)}",
        "fitted": {name: m.to_json() for name, m in models.items()},
        "scores": {
            k: {kk: vv for kk, vv in v.items() if kk != "sweep_test"} for k, v in results.items()
        },
        "examples": _examples(test, logistic_decider(model), results[chosen]["threshold"]),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if out_dir:
        out = reports.write_report(
            out_dir,
            {**report, "sweeps_test": {k: v["sweep_test"] for k, v in results.items()}},
            routing_markdown(report),
        )
        plot_routing(
            {k: results[k] for k in ("rerank", chosen)},
            out / "routing.png",
            f"routing on {Path(kb_path).name} (test half)",
        )
    if write_model:
        choice = RoutingChoice(model, results[chosen]["threshold"], dense.pooling, dense.sif_a)
        provenance = {
            "chosen": chosen,
            "chosen_rule": report["chosen_rule"],
            "rule": report["rule"],
            "kb": str(kb_path),
            "settings": asdict(settings),
            "tune": results[chosen]["tune"],
            "test": results[chosen]["test"],
        }
        report["written"] = str(write_routing(model_dir, choice, provenance))
    return report


def _examples(items: Sequence[QueryCandidates], decider: Decider, t: float, n: int = 4) -> list:
    out = []
    for kind in KINDS:
        for q in [i for i in items if i.query.kind == kind][:n]:
            s, _ = decider(q)
            out.append(
                {
                    "kind": kind,
                    "query": q.query.query,
                    "score": round(s, 4),
                    "routed": "kb" if s >= t else "generation/fallback",
                }
            )
    return out


def routing_markdown(report: Mapping) -> str:
    from alime.evaluation.reports import markdown_table

    cols = [
        "in_kb_answered",
        "in_kb_right",
        "in_kb_precision",
        "out_routed",
        "held_out_routed",
        "chitchat_routed",
        "balanced",
    ]
    rows = [
        [name, r["threshold"], *(("-" if r["test"][c] is None else r["test"][c]) for c in cols)]
        for name, r in report["scores"].items()
    ]
    s = report["set"]
    return (
        "# Routing\n\n"
        f"Model `{report['model']}`, KB `{report['kb']}`: {s['kept_pairs']} pairs searched, "
        f"{s['held_out_pairs']} held out. Queries {s['queries']}; tune/test halves "
        f"{report['halves']}. {report['rule']}. Chosen routing score: "
        f"**{report['chosen']}** ({report['chosen_rule']}).\n\n"
        + markdown_table(["score", "T", *cols], rows)
        + "\n![routing](routing.png)\n"
    )
