"""Natural-query evaluation: does the bot answer what shoppers actually type?

The set (``data/eval/natural/``, see its README) holds shopper-style queries, each labelled with
an *intent*:

* an **in-KB** intent lists the acceptable answers: raw KB answer texts (whitespace removed) that
  a shop could give any customer asking that. A reply is acceptable iff it comes from the KB
  (``source == "retrieval"``) and its answer, normalized the same way, is one of them;
* an **out-of-KB** intent names the expected outcome (:class:`Outcome`): a hand-off to a person,
  the fallback reply, a chit-chat reply, or simply no FAQ answer.

Labels come from the KB and the intent only, never from what a bot answers, so the same files
judge any bot: the raw KB or a curated one, in process or over HTTP.

Files: ``intents.json`` (``{"seed": int, "intents": {name: {"kind", "description",
"acceptable" | "expected"}}}``), ``tune.jsonl`` and ``test.jsonl`` (one ``{"query", "intent",
"kind"}`` object per line), a stratified 50/50 split by intent (:func:`split_queries`).

The sweep (:func:`sweep`) records, per query, what does not depend on T and G (the engine's
routed candidates and its best generated answer) and replays the engine's decision
(:func:`simulate`, the same rule as ``HybridEngine.reply``) for every grid point; it checks that
the replay at the engine's own T and G gives the reply the engine gave.
"""

from __future__ import annotations

import json
import math
import random
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from alime.decision import Decision, accept_chitchat, accept_generation, decide
from alime.types import Rule
from pluto.choices import parse_choice

INTENTS_FILE = "intents.json"
SPLITS = ("tune", "test")
TUNE_EXTRA_FILE = "tune-extra.jsonl"
IN_KB = "in_kb"
OUT_OF_KB = "out_of_kb"
KINDS = (IN_KB, OUT_OF_KB)


class Outcome(str, Enum):
    """What an acceptable reply looks like for an intent."""

    ANSWER = "answer"  # in-KB: a KB answer from the intent's acceptable set
    HANDOFF = "handoff"  # the reply flags a hand-off to a person
    FALLBACK = "fallback"  # the configured fallback reply (source "fallback")
    CHITCHAT = "chitchat"  # a chit-chat reply (source "chitchat")
    NO_FAQ = "no_faq"  # anything but an FAQ answer (source != "retrieval")


class DataError(ValueError):
    """A malformed data file; the message starts with ``FILE:LINE:`` (line 0: the whole file)."""

    def __init__(self, path: Path | str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")


@dataclass(frozen=True)
class Intent:
    """One intent: in-KB with its acceptable answers (normalized), or out-of-KB with its
    expected outcome."""

    name: str
    kind: str
    description: str
    expected: Outcome
    acceptable: frozenset[str] = frozenset()


@dataclass(frozen=True)
class NaturalQuery:
    """A labelled query."""

    query: str
    intent: str
    kind: str


@dataclass(frozen=True)
class NaturalSet:
    """The intents, the split's queries and the seed the split was drawn with."""

    intents: dict[str, Intent]
    queries: dict[str, list[NaturalQuery]]
    seed: int
    # ``tune-extra.jsonl``: queries added to tune after the split was drawn (a second writer's);
    # they are the last ones of ``queries["tune"]`` and never in test
    tune_extra: tuple[NaturalQuery, ...] = ()

    def select(self, split: str) -> list[NaturalQuery]:
        """The queries of ``split``: ``tune``, ``test`` or ``all`` (tune then test)."""
        if split == "all":
            return [q for s in SPLITS for q in self.queries[s]]
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {[*SPLITS, 'all']}")
        return list(self.queries[split])


def normalize_answer(text: str) -> str:
    """NFKC, then every whitespace character removed: how acceptable answers are stored and
    how a reply's answer is compared with them (raw KB answers are word-segmented)."""
    return "".join(unicodedata.normalize("NFKC", text).split())


# -- reading ---------------------------------------------------------------------------------
def load_natural(data_dir: str | Path) -> NaturalSet:
    """Read ``intents.json``, ``tune.jsonl`` and ``test.jsonl`` from ``data_dir``, and
    ``tune-extra.jsonl`` when present (appended to tune).

    Raises:
        FileNotFoundError: ``data_dir`` or one of its files is missing.
        DataError: a malformed file or line (``FILE:LINE: message``).
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory")
    seed, intents = read_intents(root / INTENTS_FILE)
    queries = {s: read_queries(root / f"{s}.jsonl", intents) for s in SPLITS}
    extra_path = root / TUNE_EXTRA_FILE
    extra = read_queries(extra_path, intents) if extra_path.exists() else []
    queries["tune"] = queries["tune"] + extra
    return NaturalSet(intents, queries, seed, tuple(extra))


def read_intents(path: Path) -> tuple[int, dict[str, Intent]]:
    """The split seed and the intents of an ``intents.json`` file."""
    data = _json_file(path)
    if not isinstance(data, dict) or not isinstance(data.get("intents"), dict):
        raise DataError(path, 0, 'expected {"seed": int, "intents": {name: {...}}}')
    seed = data.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise DataError(path, 0, '"seed" must be an integer')
    intents: dict[str, Intent] = {}
    for name, spec in data["intents"].items():
        intents[name] = _intent(path, name, spec)
    return seed, intents


def _intent(path: Path, name: str, spec: object) -> Intent:
    where = f"intent {name!r}"
    if not isinstance(spec, dict) or spec.get("kind") not in KINDS:
        raise DataError(path, 0, f'{where}: needs "kind" in {list(KINDS)}')
    description = spec.get("description", "")
    if not isinstance(description, str):
        raise DataError(path, 0, f'{where}: "description" must be a string')
    if spec["kind"] == IN_KB:
        answers = spec.get("acceptable")
        if (
            not isinstance(answers, list)
            or not answers
            or not all(isinstance(a, str) and normalize_answer(a) for a in answers)
        ):
            raise DataError(
                path,
                0,
                f'{where}: in-KB intents need a non-empty "acceptable" list of non-empty strings',
            )
        return Intent(
            name,
            IN_KB,
            description,
            Outcome.ANSWER,
            frozenset(normalize_answer(a) for a in answers),
        )
    valid = [o.value for o in Outcome if o is not Outcome.ANSWER]
    if spec.get("expected") not in valid:
        raise DataError(path, 0, f'{where}: out-of-KB intents need "expected" in {valid}')
    return Intent(name, OUT_OF_KB, description, Outcome(spec["expected"]))


def read_queries(path: Path, intents: Mapping[str, Intent]) -> list[NaturalQuery]:
    """The queries of a ``.jsonl`` file, each checked against ``intents``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    out: list[NaturalQuery] = []
    text = _text(path)
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(path, number, f"invalid JSON: {exc.msg}") from None
        if not isinstance(item, dict):
            raise DataError(path, number, "expected a JSON object")
        query, intent, kind = item.get("query"), item.get("intent"), item.get("kind")
        if not isinstance(query, str) or not query.strip():
            raise DataError(path, number, '"query" must be a non-empty string')
        if intent not in intents:
            raise DataError(path, number, f"unknown intent {intent!r} (not in {INTENTS_FILE})")
        if kind != intents[intent].kind:
            raise DataError(
                path,
                number,
                f'"kind" must be {intents[intent].kind!r} for intent {intent!r}, found {kind!r}',
            )
        out.append(NaturalQuery(query, intent, kind))
    return out


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(path, 0, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _json_file(path: Path) -> object:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return json.loads(_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(path, exc.lineno, f"invalid JSON: {exc.msg}") from None


def split_queries(
    queries: Sequence[NaturalQuery], seed: int
) -> tuple[list[NaturalQuery], list[NaturalQuery]]:
    """A stratified 50/50 split: each intent's queries, sorted by text (so the split does not
    depend on the input order), shuffled with ``seed`` and the intent's name, and halved; an
    odd one out goes to tune. Order within each half: by intent, then as shuffled."""
    by_intent: dict[str, list[NaturalQuery]] = defaultdict(list)
    for q in queries:
        by_intent[q.intent].append(q)
    tune: list[NaturalQuery] = []
    test: list[NaturalQuery] = []
    for intent in sorted(by_intent):
        items = sorted(by_intent[intent], key=lambda q: q.query)
        random.Random(f"{seed}:{intent}").shuffle(items)
        half = math.ceil(len(items) / 2)
        tune += items[:half]
        test += items[half:]
    return tune, test


# -- judging ---------------------------------------------------------------------------------
def judge(intent: Intent, reply: Mapping) -> bool:
    """Whether ``reply`` (the ``/api/chat`` JSON: ``answer``, ``source``, ``handoff``...) is an
    acceptable reply to a query of ``intent``."""
    source = reply.get("source")
    if intent.expected is Outcome.ANSWER:
        return (
            source == "retrieval"
            and normalize_answer(str(reply.get("answer", ""))) in intent.acceptable
        )
    if intent.expected is Outcome.HANDOFF:
        return bool(reply.get("handoff"))
    if intent.expected is Outcome.FALLBACK:
        return source == "fallback"
    if intent.expected is Outcome.CHITCHAT:
        return source == "chitchat"
    return source != "retrieval"  # NO_FAQ


@dataclass(frozen=True)
class Judged:
    """One query, the bot's reply and the verdict."""

    query: NaturalQuery
    reply: Mapping
    ok: bool


def ask_all(
    queries: Sequence[NaturalQuery],
    intents: Mapping[str, Intent],
    ask: Callable[[str], Mapping],
    progress: bool = True,
) -> list[Judged]:
    """Ask every query (a progress bar on stderr) and judge each reply."""
    from tqdm import tqdm

    out = []
    for q in tqdm(queries, desc="natural queries", unit="query", disable=not progress):
        reply = ask(q.query)
        out.append(Judged(q, reply, judge(intents[q.intent], reply)))
    return out


def _rate(ok: int, n: int) -> float | None:
    return ok / n if n else None


def summarize(judged: Sequence[Judged], intents: Mapping[str, Intent]) -> dict:
    """The report: acceptable rates per kind and intent, hand-off precision and recall, replies
    counted by source (and by rule, when replies carry one), failures by intent."""
    per_kind = {k: [j for j in judged if j.query.kind == k] for k in KINDS}
    expected_handoff = [intents[j.query.intent].expected is Outcome.HANDOFF for j in judged]
    flagged = [bool(j.reply.get("handoff")) for j in judged]
    both = sum(e and f for e, f in zip(expected_handoff, flagged, strict=True))
    by_intent: dict[str, dict] = {}
    failures: dict[str, list[dict]] = {}
    for name in sorted({j.query.intent for j in judged}):
        items = [j for j in judged if j.query.intent == name]
        ok = sum(j.ok for j in items)
        by_intent[name] = {
            "kind": intents[name].kind,
            "expected": intents[name].expected.value,
            "queries": len(items),
            "acceptable": ok,
            "rate": _rate(ok, len(items)),
        }
        bad = [_failure(j) for j in items if not j.ok]
        if bad:
            failures[name] = bad
    rules = Counter(str(j.reply["rule"]) for j in judged if j.reply.get("rule") is not None)
    return {
        "queries": len(judged),
        **{
            k: {
                "queries": len(v),
                "acceptable": sum(j.ok for j in v),
                "rate": _rate(sum(j.ok for j in v), len(v)),
            }
            for k, v in per_kind.items()
        },
        "handoff": {
            "expected": sum(expected_handoff),
            "flagged": sum(flagged),
            "both": both,
            "precision": _rate(both, sum(flagged)),
            "recall": _rate(both, sum(expected_handoff)),
        },
        "by_source": dict(Counter(str(j.reply.get("source")) for j in judged).most_common()),
        "by_rule": dict(rules.most_common()) if rules else None,
        "by_intent": by_intent,
        "failures": failures,
    }


def _failure(j: Judged) -> dict:
    out = {
        "query": j.query.query,
        "answer": j.reply.get("answer"),
        "source": j.reply.get("source"),
        "score": j.reply.get("score"),
    }
    if j.reply.get("rule") is not None:
        out["rule"] = j.reply["rule"]
    return out


def _fmt(v: object) -> str:
    if v is None:
        return "n/a"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def natural_markdown(report: Mapping) -> str:
    """The report as Markdown: the headline rates, counts, per intent, then failures."""
    from alime.evaluation.reports import markdown_table

    h = report["handoff"]

    def share(kind: str) -> str:
        k = report[kind]
        return f"{_fmt(k['rate'])} ({k['acceptable']}/{k['queries']})"

    lines = [
        f"# Natural queries\n\nData: `{report.get('data', '')}`, split `"
        f"{report.get('split', '')}`, {report['queries']} queries.\n",
        markdown_table(
            ["figure", "value"],
            [
                ["in-KB acceptable", share(IN_KB)],
                ["out-of-KB acceptable", share(OUT_OF_KB)],
                ["hand-off precision", f"{_fmt(h['precision'])} ({h['both']}/{h['flagged']})"],
                ["hand-off recall", f"{_fmt(h['recall'])} ({h['both']}/{h['expected']})"],
            ],
        ),
        "## Replies by source\n",
        markdown_table(["source", "replies"], list(report["by_source"].items())),
    ]
    if report.get("by_rule"):
        lines += [
            "## Replies by rule\n",
            markdown_table(["rule", "replies"], list(report["by_rule"].items())),
        ]
    lines += [
        "## By intent\n",
        markdown_table(
            ["intent", "kind", "expected", "queries", "acceptable", "rate"],
            [
                [n, d["kind"], d["expected"], d["queries"], d["acceptable"], _fmt(d["rate"])]
                for n, d in report["by_intent"].items()
            ],
        ),
    ]
    if report.get("failures"):
        lines.append("## Failures\n")
        for name, items in report["failures"].items():
            lines.append(f"### {name}\n")
            lines.append(
                markdown_table(
                    ["query", "answer", "source", "score"],
                    [
                        [f["query"], _cell(f["answer"]), f["source"], _fmt(f["score"])]
                        for f in items
                    ],
                )
            )
    sweep_md = _sweep_markdown(report.get("sweep"))
    return "\n".join(lines) + sweep_md


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# -- the (T, G) sweep ------------------------------------------------------------------------
@dataclass(frozen=True)
class Recorded:
    """What the engine's decision needs for one query, independent of T and G.

    Attributes:
        best: The decision score of the best routed candidate (None: no candidate).
        top_answer: That candidate's answer.
        generated: The generator's best answer and its score (None: no generator/no answer).
        fallback: The engine's fallback reply.
        ruled: The reply of a rule applied before retrieval (complaint, person, order_status,
            gibberish), which no threshold changes; None when no rule matched.
        chitchat: The chit-chat KB's best match (answer, score) and the bar it must reach;
            None without a chit-chat KB or a match.
        small_talk: The chit-chat answer and score the query gets before the FAQ at any T
            because it asks a chit-chat question word for word
            (``HybridEngine.small_talk_first``); None otherwise.
    """

    best: float | None
    top_answer: str
    generated: tuple[str, float] | None
    fallback: str
    ruled: Mapping | None = None
    chitchat: tuple[str, float, float] | None = None
    small_talk: tuple[str, float] | None = None


def simulate(
    rec: Recorded, answer_t: float, generation_t: float, chitchat_t: float | None = None
) -> dict:
    """The reply ``HybridEngine.reply`` gives at thresholds (T, G) and the chit-chat bar C
    (None: the one the engine had when the query was recorded), as ``/api/chat`` JSON."""
    if rec.ruled is not None:
        return dict(rec.ruled)
    if rec.small_talk is not None:
        return _as_reply(*rec.small_talk, "chitchat")
    if decide(rec.best, answer_t) is Decision.ANSWER_FROM_KB:
        return _as_reply(rec.top_answer, rec.best, "retrieval")
    bar = rec.chitchat[2] if rec.chitchat is not None and chitchat_t is None else chitchat_t
    if rec.chitchat is not None and accept_chitchat(rec.chitchat[1], bar):
        return _as_reply(rec.chitchat[0], rec.chitchat[1], "chitchat")
    if rec.generated is not None and accept_generation(rec.generated[1], generation_t):
        return _as_reply(*rec.generated, "generation")
    return _as_reply(rec.fallback, rec.best, "fallback", handoff=True)


def _as_reply(answer: str, score: float | None, source: str, handoff: bool = False) -> dict:
    """The ``/api/chat`` fields the judge reads."""
    return {"answer": answer, "source": source, "score": score, "handoff": handoff}


def grid(values: Iterable[float | None], points: int = 25) -> list[float]:
    """Candidate thresholds: the observed scores thinned to ``points`` quantiles, plus one above
    the largest (nothing passes) — every distinct decision is reachable."""
    import numpy as np

    from alime.evaluation.threshold import threshold_grid

    finite = np.array([v for v in values if v is not None and math.isfinite(v)], np.float64)
    if not len(finite):
        return [0.0]
    thresholds = [float(v) for v in threshold_grid(finite, points)]
    return thresholds + [float(finite.max()) + 1.0]


WRONG_ANSWER_COST = 1.0  # a wrong confident answer costs a shop at least a failed query


def sweep(
    records: Sequence[Recorded],
    queries: Sequence[NaturalQuery],
    intents: Mapping[str, Intent],
    t_grid: Sequence[float],
    g_grid: Sequence[float],
    c_grid: Sequence[float | None] = (None,),
    wrong_cost: float = WRONG_ANSWER_COST,
) -> dict:
    """In-KB and out-of-KB acceptable rates for every (T, G, C), and the share of queries
    answered from the FAQ with an answer that is not acceptable (``wrong``). The chosen point
    maximizes ``score = mean of the two rates - wrong_cost * wrong``: a wrong answer given with
    confidence costs a shop more than a hand-off (which the two rates already count as a
    failure); ties: the higher T, then the higher G, then the higher C. C None: the chit-chat
    bar each query was recorded with (the point then has no ``chitchat_threshold``)."""
    kinds = [q.kind for q in queries]
    n_in, n_out = kinds.count(IN_KB), kinds.count(OUT_OF_KB)
    points = []
    for t in t_grid:
        for g in g_grid:
            for c in c_grid:
                ok_in = ok_out = wrong = 0
                for rec, q in zip(records, queries, strict=True):
                    reply = simulate(rec, t, g, c)
                    if judge(intents[q.intent], reply):
                        if q.kind == IN_KB:
                            ok_in += 1
                        else:
                            ok_out += 1
                    elif reply["source"] == "retrieval":
                        wrong += 1
                r_in, r_out = _rate(ok_in, n_in), _rate(ok_out, n_out)
                mean = ((r_in or 0.0) + (r_out or 0.0)) / 2
                wrong_share = wrong / len(queries) if queries else 0.0
                point = {
                    "threshold": float(t),
                    "generation_threshold": float(g),
                    "in_kb": r_in,
                    "out_of_kb": r_out,
                    "mean": mean,
                    "wrong_faq": wrong_share,
                    "score": mean - wrong_cost * wrong_share,
                }
                if c is not None:
                    point["chitchat_threshold"] = float(c)
                points.append(point)
    best = max(
        points,
        key=lambda p: (
            round(p["score"], 12),
            p["threshold"],
            p["generation_threshold"],
            p.get("chitchat_threshold", 0.0),
        ),
    )
    return {
        "rule": f"maximize (in-KB acceptable + out-of-KB acceptable) / 2 - {wrong_cost:g} x "
        "share of queries answered from the FAQ with an unacceptable answer; ties: "
        "higher T, then higher G, then higher C",
        "wrong_answer_cost": wrong_cost,
        "points": points,
        "chosen": best,
    }


def _sweep_markdown(sweep_report: Mapping | None) -> str:
    if not sweep_report:
        return ""
    from alime.evaluation.reports import markdown_table

    c = sweep_report["chosen"]
    agree = sweep_report.get("agreement")
    agree_line = (
        ""
        if agree is None
        else f"Replay at the engine's own (T, G) = ({_fmt(agree['threshold'])}, "
        f"{_fmt(agree['generation_threshold'])}) agrees with the engine on "
        f"{agree['agree']}/{agree['queries']} queries.\n\n"
    )
    best_per_t: dict[float, dict] = {}
    for p in sweep_report["points"]:
        cur = best_per_t.get(p["threshold"])
        if cur is None or p["score"] > cur["score"]:
            best_per_t[p["threshold"]] = p
    c_text = f", C = {c['chitchat_threshold']:.2f}" if "chitchat_threshold" in c else ""
    return (
        "\n## (T, G, C) sweep\n\n"
        + agree_line
        + f"Rule: {sweep_report['rule']}. Chosen: T = {c['threshold']:.4f}, "
        f"G = {c['generation_threshold']:.4f}{c_text} (in-KB {_fmt(c['in_kb'])}, out-of-KB "
        f"{_fmt(c['out_of_kb'])}, wrong FAQ answers {c['wrong_faq']:.3f}, score "
        f"{c['score']:.3f}).\n\nBest (G, C) per T:\n\n"
        + markdown_table(
            ["T", "G", "C", "in-KB", "out-of-KB", "wrong FAQ", "score"],
            [
                [
                    p["threshold"],
                    p["generation_threshold"],
                    _fmt(p.get("chitchat_threshold")),
                    _fmt(p["in_kb"]),
                    _fmt(p["out_of_kb"]),
                    p["wrong_faq"],
                    p["score"],
                ]
                for _, p in sorted(best_per_t.items())
            ],
        )
    )


# -- running ---------------------------------------------------------------------------------
def http_asker(url: str, timeout_s: float = 30.0) -> Callable[[str], Mapping]:
    """Ask a running server's ``POST /api/chat`` (a fresh session per query: no context)."""
    import urllib.error
    import urllib.request

    endpoint = url.rstrip("/") + "/api/chat"

    def ask(query: str) -> Mapping:
        body = json.dumps({"query": query}).encode("utf-8")
        request = urllib.request.Request(endpoint, body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:200]
            raise ValueError(f"{endpoint}: HTTP {exc.code} for query {query!r}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ValueError(f"{endpoint}: cannot reach the server ({exc})") from None

    return ask


class Baseline(str, Enum):
    """Model-free reference bots (``--baseline``)."""

    ALWAYS_FALLBACK = "always-fallback"  # every reply is the fallback with a hand-off
    BM25 = "bm25"  # every reply is the BM25 top-1 KB answer (no threshold)


def baseline_asker(name: str, config=None) -> tuple[Callable[[str], Mapping], Callable[[], None]]:
    """A model-free bot and a function that releases it.

    Raises:
        ValueError: an unknown baseline name (listing the valid ones).
    """
    from alime.config import AppConfig

    kind = parse_choice(Baseline, name, "baseline")
    config = config or AppConfig()
    if kind is Baseline.ALWAYS_FALLBACK:
        reply = {
            "answer": config.engine.fallback_reply,
            "source": "fallback",
            "score": None,
            "handoff": True,
        }
        return (lambda query: reply), (lambda: None)
    from alime.bot import open_kb, open_searcher

    kb = open_kb(config)
    searcher = open_searcher(config, kb)

    def ask(query: str) -> Mapping:
        hits = searcher.search(query, 1)
        pairs = kb.get_many([h.id for h in hits])
        if not hits or hits[0].id not in pairs:
            return {
                "answer": config.engine.fallback_reply,
                "source": "fallback",
                "score": None,
                "handoff": True,
            }
        return {
            "answer": pairs[hits[0].id].answer,
            "source": "retrieval",
            "score": hits[0].score,
            "handoff": False,
        }

    return ask, kb.close


def run_natural(
    data_dir: str | Path,
    split: str = "test",
    ask: Callable[[str], Mapping] | None = None,
    config=None,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Judge the bot on ``split`` of the natural set; ``ask`` defaults to an in-process bot
    built like ``alime serve``'s (the configured model and KB). Writes ``report.json`` and
    ``report.md`` into ``out_dir`` when given."""
    data = load_natural(data_dir)
    queries = data.select(split)
    bot = None
    if ask is None:
        from alime.bot import build_bot

        bot = build_bot(config)

        def ask(query: str) -> Mapping:
            return bot.engine.reply(query).to_json()

    try:
        judged = ask_all(queries, data.intents, ask, progress)
    finally:
        if bot is not None:
            bot.kb.close()
    report = {"data": str(data_dir), "split": split, **summarize(judged, data.intents)}
    _write(out_dir, report)
    return report


def record(engine, query: str) -> tuple[dict, Recorded]:
    """The engine's reply to ``query`` and what :func:`simulate` needs to replay it at any
    (T, G). Generation runs once more only when the engine did not already generate."""
    from alime.engine import _best_score

    reply = engine.reply(query)
    out = reply.to_json()
    if reply.rule in _RULES_BEFORE_RETRIEVAL:
        ruled = {k: out[k] for k in ("answer", "source", "score", "handoff")}
        return out, Recorded(None, "", None, engine.fallback_reply, ruled=ruled)
    candidates = list(reply.candidates)
    best = _best_score(candidates)
    if reply.source.value == "generation":
        generated: tuple[str, float] | None = (reply.answer, float(reply.score))
    elif engine.generator is not None:
        top = engine.generator.generate(query, ())
        generated = (top[0].text, float(top[0].score)) if top else None
    else:
        generated = None
    chitchat = None
    if engine.chitchat is not None:
        match = engine.chitchat.best(query)
        if match is not None:
            chitchat = (match.answer, float(match.score), float(engine.thresholds.chitchat))
    top_answer = candidates[0].answer if candidates else ""
    first = engine.small_talk_first(query, candidates)
    return out, Recorded(
        best,
        top_answer,
        generated,
        engine.fallback_reply,
        chitchat=chitchat,
        small_talk=None if first is None else (first.answer, float(first.score)),
    )


# The rules the engine applies before it retrieves anything (alime.guards): no threshold
# changes their reply.
_RULES_BEFORE_RETRIEVAL = frozenset(
    {Rule.COMPLAINT, Rule.PERSON, Rule.ORDER_STATUS, Rule.GIBBERISH}
)


def run_sweep(
    data_dir: str | Path,
    split: str = "tune",
    config=None,
    write_model: str | Path | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    points: int = 25,
    wrong_cost: float = WRONG_ANSWER_COST,
) -> dict:
    """Sweep (T, G, C) on ``split`` with the in-process bot: record each query once, replay the
    decision per grid point, check the replay at the engine's own (T, G), report and optionally
    store the chosen pair in ``write_model`` (see :func:`write_choice`)."""
    from tqdm import tqdm

    from alime.bot import build_bot

    data = load_natural(data_dir)
    queries = data.select(split)
    bot = build_bot(config)
    engine = bot.engine
    replies: list[dict] = []
    records: list[Recorded] = []
    try:
        for q in tqdm(queries, desc="natural sweep", unit="query", disable=not progress):
            reply, rec = record(engine, q.query)
            replies.append(reply)
            records.append(rec)
    finally:
        bot.kb.close()
    t_now, g_now = engine.thresholds.answer, engine.thresholds.generation
    agree = sum(
        _same(simulate(r, t_now, g_now), reply) for r, reply in zip(records, replies, strict=True)
    )
    t_grid = sorted(set(grid((r.best for r in records), points)) | {t_now})
    g_grid = sorted(set(grid((r.generated[1] for r in records if r.generated), points)) | {g_now})
    c_now = engine.thresholds.chitchat
    c_grid: list[float | None] = [None]
    if engine.chitchat is not None:
        # C from 0.7: the judge accepts any non-FAQ reply to an off-topic query, so it rewards a
        # low C whose matches share two characters with the query (at C = 0.4 on the tune split,
        # 有卖口红吗 matched 你有薪水吗？ and got 我不需要钱。). Below 0.7 is not a reply a shop
        # wants.
        c_grid = sorted({round(0.05 * i, 2) for i in range(14, 21)} | {c_now})
    result = sweep(records, queries, data.intents, t_grid, g_grid, c_grid, wrong_cost)
    result["agreement"] = {
        "threshold": t_now,
        "generation_threshold": g_now,
        "chitchat_threshold": c_now,
        "agree": agree,
        "queries": len(records),
    }
    result["decision_score"] = "routing" if engine.router is not None else "rerank"
    judged = [
        Judged(q, r, judge(data.intents[q.intent], r))
        for q, r in zip(queries, replies, strict=True)
    ]
    report = {
        "data": str(data_dir),
        "split": split,
        **summarize(judged, data.intents),
        "sweep": result,
    }
    if write_model is not None:
        if agree != len(records):
            raise ValueError(
                f"the replay disagrees with the engine on {len(records) - agree} "
                "queries; not writing thresholds chosen by it"
            )
        report["written"] = write_choice(
            write_model,
            result["chosen"],
            engine.router is not None,
            {
                "data": str(data_dir),
                "split": split,
                "rule": result["rule"],
                "chosen": result["chosen"],
            },
        )
    _write(out_dir, report)
    return report


def _same(simulated: Mapping, reply: Mapping) -> bool:
    return (
        simulated["source"] == reply["source"]
        and simulated["answer"] == reply["answer"]
        and bool(simulated["handoff"]) == bool(reply["handoff"])
    )


def write_choice(
    model_dir: str | Path, chosen: Mapping, routes: bool, provenance: dict
) -> list[str]:
    """Store T and G where the bot reads them: T in ``routing.json`` when the model routes (else
    in ``thresholds.json``), G (and C, when the sweep chose one) in ``thresholds.json``. Returns
    the files written."""
    from alime.seq2seq.model_dir import (
        read_routing_file,
        read_thresholds,
        write_routing_file,
        write_thresholds,
    )

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"{model_dir}: no such model directory")
    t, g = float(chosen["threshold"]), float(chosen["generation_threshold"])
    provenance = {"chosen_by": "alime evaluate natural --sweep", **provenance}
    written = []
    stored = read_thresholds(model_dir)
    if routes:
        path, routing = read_routing_file(model_dir)
        if routing is None:
            raise ValueError(f"{path}: missing (the model routes, so it should be there)")
        routing["threshold"] = t
        routing.setdefault("provenance", {})["natural_sweep"] = provenance
        written.append(str(write_routing_file(model_dir, routing)))
        answer = stored.get("threshold", 0.0)  # the rerank-score T stays as it was
    else:
        answer = t
    chitchat = chosen.get("chitchat_threshold", stored.get("chitchat_threshold"))
    written.append(str(write_thresholds(model_dir, answer, g, provenance, chitchat)))
    return written


def _write(out_dir: str | Path | None, report: Mapping) -> None:
    if out_dir is not None:
        from alime.evaluation.reports import write_report

        write_report(out_dir, report, natural_markdown(report))
