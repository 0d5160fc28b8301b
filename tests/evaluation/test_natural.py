"""Natural-query evaluation: the judge, the report, the sweep, the CLI, and the bundled set."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from alime.cli import main
from alime.config import BUNDLED_DATA
from alime.engine import HybridEngine, Thresholds
from alime.evaluation.natural import (
    IN_KB,
    OUT_OF_KB,
    DataError,
    Intent,
    NaturalQuery,
    Outcome,
    Recorded,
    judge,
    load_natural,
    normalize_answer,
    record,
    run_natural,
    simulate,
    split_queries,
    sweep,
    write_choice,
)
from alime.routing import read_routing
from alime.types import Candidate, ChitChatMatch, Generated, Hit, QAPair, Rule, RuleMatch

NATURAL = BUNDLED_DATA / "eval" / "natural"
KB_FILE = BUNDLED_DATA / "kb" / "ecommerce_qa.tsv"

SHIP = Intent(
    "ship",
    IN_KB,
    "when does it ship",
    Outcome.ANSWER,
    frozenset({normalize_answer("拍下后72小时内发货哦"), "包邮的"}),
)


def _out(expected: Outcome) -> Intent:
    return Intent(expected.value, OUT_OF_KB, "", expected)


def _reply(answer="", source="retrieval", handoff=False, **extra):
    return {"answer": answer, "source": source, "handoff": handoff, "score": 0.5, **extra}


# -- the judge -------------------------------------------------------------------------------
def test_in_kb_needs_a_kb_answer_from_the_acceptable_set():
    assert judge(SHIP, _reply("拍下 后 72 小时 内 发货 哦"))  # segmented raw KB text
    assert judge(SHIP, _reply("拍下后７２小时内发货哦\n"))  # full-width digits (NFKC), newline
    assert not judge(SHIP, _reply("拍下后72小时内发货哦亲"))  # a longer text is another answer
    assert not judge(SHIP, _reply("拍下后72小时内发货哦", source="generation"))
    assert not judge(SHIP, _reply("拍下后72小时内发货哦", source="fallback", handoff=True))
    assert not judge(SHIP, _reply("", source="retrieval"))


@pytest.mark.parametrize(
    "expected, ok, bad",
    [
        (
            Outcome.HANDOFF,
            [_reply("转人工", "fallback", True), _reply("x", "retrieval", True)],
            [_reply("转人工", "fallback", False), _reply("x", "chitchat")],
        ),
        (
            Outcome.FALLBACK,
            [_reply("转人工", "fallback", True), _reply("", "fallback")],
            [_reply("x", "generation"), _reply("x", "chitchat"), _reply("x", "retrieval", True)],
        ),
        (
            Outcome.CHITCHAT,
            [_reply("你好呀", "chitchat")],
            [
                _reply("你好", "retrieval"),
                _reply("你好", "generation"),
                _reply("", "fallback", True),
            ],
        ),
        (
            Outcome.NO_FAQ,
            [_reply("x", "generation"), _reply("", "fallback", True), _reply("x", "chitchat")],
            [_reply("x", "retrieval"), _reply("x", "retrieval", True)],
        ),
    ],
)
def test_out_of_kb_outcomes(expected, ok, bad):
    intent = _out(expected)
    assert all(judge(intent, r) for r in ok)
    assert not any(judge(intent, r) for r in bad)


# -- the report on a tiny set with a stub bot ------------------------------------------------
def _write_set(root: Path, tune_lines: list[str], test_lines: list[str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    intents = {
        "seed": 7,
        "intents": {
            "ship": {
                "kind": "in_kb",
                "description": "ship time",
                "acceptable": ["拍下后72小时内发货哦", "包邮 的"],
            },
            "complaint": {"kind": "out_of_kb", "description": "", "expected": "handoff"},
            "gibberish": {"kind": "out_of_kb", "description": "", "expected": "fallback"},
            "weather": {"kind": "out_of_kb", "description": "", "expected": "no_faq"},
        },
    }
    (root / "intents.json").write_text(json.dumps(intents, ensure_ascii=False), encoding="utf-8")
    for name, lines in (("tune", tune_lines), ("test", test_lines or [])):
        (root / f"{name}.jsonl").write_text(
            "".join(line + "\n" for line in lines), encoding="utf-8"
        )
    return root


def _line(query, intent, kind):
    return json.dumps({"query": query, "intent": intent, "kind": kind}, ensure_ascii=False)


TINY = [
    _line("啥时候发货", "ship", IN_KB),
    _line("几时发啊", "ship", IN_KB),
    _line("发火了没", "ship", IN_KB),
    _line("我要投诉", "complaint", OUT_OF_KB),
    _line("差评", "complaint", OUT_OF_KB),
    _line("asdf", "gibberish", OUT_OF_KB),
    _line("天气咋样", "weather", OUT_OF_KB),
]

STUB_REPLIES = {
    "啥时候发货": _reply("拍下 后 72 小时 内 发货 哦", rule="threshold"),  # ok
    "几时发啊": _reply("在的哦", rule="threshold"),  # wrong KB answer
    "发火了没": _reply("拍下后72小时内发货哦", "generation", rule="generation"),  # not from KB
    "我要投诉": _reply("转人工", "fallback", True, rule="complaint"),  # ok
    "差评": _reply("好的", "generation", rule="generation"),  # no hand-off
    "asdf": _reply("转人工", "fallback", True, rule="gibberish"),  # ok; a hand-off not expected
    "天气咋样": _reply("在的呢", rule="threshold"),  # an FAQ answer: not ok
}


def test_report_counts_with_a_stub_bot(tmp_path):
    data = _write_set(tmp_path / "set", TINY)
    report = run_natural(
        data, "tune", lambda q: STUB_REPLIES[q], out_dir=tmp_path / "out", progress=False
    )
    assert report["queries"] == 7
    assert report[IN_KB] == {"queries": 3, "acceptable": 1, "rate": pytest.approx(1 / 3)}
    assert report[OUT_OF_KB] == {"queries": 4, "acceptable": 2, "rate": 0.5}
    # flagged: 我要投诉, asdf; expected: 我要投诉, 差评
    assert report["handoff"] == {
        "expected": 2,
        "flagged": 2,
        "both": 1,
        "precision": 0.5,
        "recall": 0.5,
    }
    assert report["by_source"] == {"retrieval": 3, "generation": 2, "fallback": 2}
    assert report["by_rule"] == {"threshold": 3, "generation": 2, "complaint": 1, "gibberish": 1}
    assert report["by_intent"]["ship"]["acceptable"] == 1
    assert [f["query"] for f in report["failures"]["ship"]] == ["几时发啊", "发火了没"]
    assert report["failures"]["complaint"][0] == {
        "query": "差评",
        "answer": "好的",
        "source": "generation",
        "score": 0.5,
        "rule": "generation",
    }
    assert "gibberish" not in report["failures"]
    written = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert written["handoff"]["both"] == 1
    md = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "| in-KB acceptable | 0.333 (1/3) |" in md and "### weather" in md


def test_report_without_rules_or_handoffs(tmp_path):
    data = _write_set(tmp_path / "set", TINY)
    report = run_natural(data, "tune", lambda q: _reply("在的哦", "generation"), progress=False)
    assert report["by_rule"] is None
    assert report["handoff"]["precision"] is None and report["handoff"]["recall"] == 0.0
    assert report[OUT_OF_KB]["acceptable"] == 1  # only the no_faq query


# -- reading: bad input ----------------------------------------------------------------------
def test_missing_directory_is_a_clean_cli_error(tmp_path, capsys):
    assert main(["evaluate", "natural", "--data", str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    "bad, message",
    [
        ("{not json", "invalid JSON"),
        ('["a list"]', "expected a JSON object"),
        (_line("", "ship", IN_KB), '"query" must be a non-empty string'),
        (_line("q", "nope", IN_KB), "unknown intent 'nope'"),
        (_line("q", "ship", OUT_OF_KB), "\"kind\" must be 'in_kb'"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, capsys, bad, message):
    data = _write_set(tmp_path / "set", [TINY[0], bad])
    with pytest.raises(DataError, match=re.escape(message)):
        load_natural(data)
    assert main(["evaluate", "natural", "--data", str(data), "--split", "tune"]) == 2
    err = capsys.readouterr().err
    assert f"{data / 'tune.jsonl'}:2: " in err and message in err


def test_malformed_intents_file(tmp_path, capsys):
    data = _write_set(tmp_path / "set", TINY)
    spec = json.loads((data / "intents.json").read_text(encoding="utf-8"))
    spec["intents"]["ship"]["acceptable"] = []
    (data / "intents.json").write_text(json.dumps(spec), encoding="utf-8")
    assert main(["evaluate", "natural", "--data", str(data)]) == 2
    assert f"{data / 'intents.json'}:0: intent 'ship'" in capsys.readouterr().err
    (data / "intents.json").write_text('{"seed": 1,\n "intents": }', encoding="utf-8")
    assert main(["evaluate", "natural", "--data", str(data)]) == 2
    assert f"{data / 'intents.json'}:2: invalid JSON" in capsys.readouterr().err


def test_flag_combinations_are_refused(tmp_path, capsys):
    data = _write_set(tmp_path / "set", TINY)
    assert main(["evaluate", "natural", "--data", str(data), "--write-model", str(tmp_path)]) == 2
    assert "--write-model needs --sweep" in capsys.readouterr().err
    assert (
        main(
            [
                "evaluate",
                "natural",
                "--data",
                str(data),
                "--sweep",
                "--url",
                "http://127.0.0.1:18650",
            ]
        )
        == 2
    )
    assert "cannot use --url" in capsys.readouterr().err


def test_always_fallback_baseline_through_the_cli(tmp_path, capsys):
    data = _write_set(tmp_path / "set", TINY)
    assert (
        main(
            [
                "evaluate",
                "natural",
                "--data",
                str(data),
                "--split",
                "tune",
                "--baseline",
                "always-fallback",
                "--json",
                "--no-progress",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report[IN_KB]["acceptable"] == 0
    assert report[OUT_OF_KB]["acceptable"] == 4  # handoff x2, fallback, no_faq
    assert report["handoff"]["recall"] == 1.0 and report["bot"] == "baseline always-fallback"


# -- the split -------------------------------------------------------------------------------
def test_split_is_stratified_seeded_and_complete():
    queries = [NaturalQuery(f"{i}-{j}", f"i{i}", IN_KB) for i in range(4) for j in range(5 + i)]
    tune, test = split_queries(queries, 3)
    assert sorted(q.query for q in tune + test) == sorted(q.query for q in queries)
    for i in range(4):
        n_tune = sum(q.intent == f"i{i}" for q in tune)
        assert n_tune == (5 + i + 1) // 2 and sum(q.intent == f"i{i}" for q in test) == (5 + i) // 2
    assert split_queries(queries, 3) == (tune, test)
    assert split_queries(queries, 4) != (tune, test)


# -- the sweep -------------------------------------------------------------------------------
def test_sweep_choice_by_hand():
    intents = {"ship": SHIP, "hand": _out(Outcome.HANDOFF), "chat": _out(Outcome.NO_FAQ)}
    queries = [
        NaturalQuery("a", "ship", IN_KB),
        NaturalQuery("b", "ship", IN_KB),
        NaturalQuery("c", "hand", OUT_OF_KB),
        NaturalQuery("d", "chat", OUT_OF_KB),
    ]
    records = [
        Recorded(0.9, "包邮的", ("好的", 0.2), "转人工"),  # right answer at best 0.9
        Recorded(0.5, "在的哦", ("好的", 0.6), "转人工"),  # wrong KB answer at 0.5
        Recorded(0.7, "在的哦", ("好的", 0.4), "转人工"),  # out-of-KB scoring 0.7
        Recorded(0.3, "在的哦", ("好的", 0.5), "转人工"),
    ]
    # Hand-computed (in-KB, out-of-KB) rates:
    #   T=0.3: a ok, b wrong; c answered, d answered             -> (1/2, 0)    mean 0.25
    #   T=0.8: a ok; b generated/fallback (not ok); c: fallback (hand-off) iff G > 0.4;
    #          d: generation (G <= 0.5) or fallback, never an FAQ  -> with G=0.45: (1/2, 1) 0.75
    #   T=1.0: a not answered                                     -> (0, ...) <= 0.5
    result = sweep(records, queries, intents, [0.3, 0.8, 1.0], [0.0, 0.45, 0.7])
    chosen = result["chosen"]
    assert (chosen["threshold"], chosen["generation_threshold"]) == (0.8, 0.7)  # tie: higher G
    assert chosen["in_kb"] == 0.5 and chosen["out_of_kb"] == 1.0 and chosen["mean"] == 0.75
    by = {(p["threshold"], p["generation_threshold"]): p for p in result["points"]}
    assert by[(0.8, 0.45)]["mean"] == 0.75 and by[(0.8, 0.0)]["out_of_kb"] == 0.5
    assert by[(0.3, 0.0)]["mean"] == 0.25 and by[(1.0, 0.7)]["in_kb"] == 0.0
    assert len(result["points"]) == 9


def test_sweep_ties_prefer_the_higher_threshold():
    intents = {"chat": _out(Outcome.NO_FAQ)}
    queries = [NaturalQuery("d", "chat", OUT_OF_KB)]
    result = sweep([Recorded(0.3, "x", None, "转人工")], queries, intents, [0.5, 0.9], [0.0])
    assert result["chosen"]["threshold"] == 0.9


PAIRS = {i: QAPair(i, f"q{i}", f"a{i}") for i in range(1, 5)}


class _Retriever:
    def __init__(self, table):
        self.table = table

    def search(self, query, k):
        return self.table[query][:k]


class _Scorer:
    def score(self, query, context, answers):
        return [0.1 * int(a[1:]) + 0.01 * len(query) for a in answers]


class _Generator:
    def generate(self, query, context):
        return [Generated(f"gen-{query}", 0.05 * len(query))] if query != "none" else []


class _Guards:
    """Hands off every query that mentions 投诉 (the rules run before retrieval)."""

    def check(self, query):
        if "投诉" in query:
            return RuleMatch(Rule.COMPLAINT, "转人工处理投诉", True, "投诉")
        return None


class _ChitChat:
    """A chit-chat match whose score grows with the query's length (some pass 0.8, some not)."""

    def best(self, query, minimum=0.0):
        if query == "none":
            return None
        return ChitChatMatch(query, f"chat-{query}", min(1.0, 0.3 * len(query)))

    def exact(self, query):
        # one query is word-for-word small talk (answered before the FAQ at every T)
        return ChitChatMatch(query, f"exact-{query}", 1.0) if query == "longer query" else None

    def same(self, query, question):
        return query == question


@pytest.mark.parametrize("router", [False, True])
@pytest.mark.parametrize("stages", [False, True])
def test_replay_agrees_with_the_engine(router, stages):
    """The replay of every grid point equals what the real HybridEngine answers there (with
    and without the rules before retrieval and the chit-chat KB)."""
    hits = {
        "q": [Hit(1, 3.0), Hit(3, 1.0)],
        "longer query": [Hit(2, 2.0), Hit(4, 1.5)],
        "none": [],
        "xy": [Hit(4, 0.5)],
        "我要投诉": [Hit(1, 3.0)],
    }

    class Router:
        def score(self, query, candidates: list[Candidate]):
            return [0.9 - 0.2 * c.id for c in candidates]

    engine = HybridEngine(
        _Retriever(hits),
        lambda ids: {i: PAIRS[i] for i in ids},
        Thresholds(0.0, 0.0),
        scorer=_Scorer(),
        generator=_Generator(),
        fallback_reply="转人工",
        router=Router() if router else None,
        guards=_Guards() if stages else None,
        chitchat=_ChitChat() if stages else None,
    )
    grid = [-1.0, 0.1, 0.3, 0.45, 0.5, 0.7, 2.0]
    for query in hits:
        _, rec = record(engine, query)
        for t in grid:
            for g in grid:
                engine.thresholds = Thresholds(t, g, chitchat=0.8)
                actual = engine.reply(query).to_json()
                replay = simulate(rec, t, g)
                assert (replay["source"], replay["answer"], replay["handoff"]) == (
                    actual["source"],
                    actual["answer"],
                    actual["handoff"],
                ), (query, t, g)


def test_write_choice_puts_t_where_the_bot_reads_it(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    src = BUNDLED_DATA / "model-int8" / "routing.json"
    (model / "routing.json").write_text(src.read_text(encoding="utf-8"), encoding="utf-8")
    (model / "thresholds.json").write_text(
        '{"threshold": -1.5, "generation_threshold": 0.2}', encoding="utf-8"
    )
    chosen = {"threshold": 0.42, "generation_threshold": 0.33}
    write_choice(model, chosen, True, {"split": "tune"})
    assert read_routing(model).threshold == 0.42
    stored = json.loads((model / "thresholds.json").read_text(encoding="utf-8"))
    assert stored == {"threshold": -1.5, "generation_threshold": 0.33}
    write_choice(model, chosen, False, {"split": "tune"})
    stored = json.loads((model / "thresholds.json").read_text(encoding="utf-8"))
    assert stored == {"threshold": 0.42, "generation_threshold": 0.33}
    with pytest.raises(FileNotFoundError):
        write_choice(tmp_path / "nope", chosen, False, {})


# -- the bundled set -------------------------------------------------------------------------
def _kb_texts(column: int) -> set[str]:
    with KB_FILE.open(encoding="utf-8") as fh:
        return {normalize_answer(line.rstrip("\n").split("\t")[column]) for line in fh}


def test_bundled_set_size_and_labels():
    data = load_natural(NATURAL)
    in_kb = [n for n, i in data.intents.items() if i.kind == IN_KB]
    queries = data.select("all")
    assert len(in_kb) >= 30
    counts = {n: sum(q.intent == n for q in queries) for n in data.intents}
    assert all(counts[n] >= 10 for n in in_kb), counts
    assert sum(q.kind == IN_KB for q in queries) >= 300
    assert sum(q.kind == OUT_OF_KB for q in queries) >= 100
    answers = _kb_texts(1)
    for name in in_kb:  # labels are raw KB answers (whitespace removed), nothing invented
        assert data.intents[name].acceptable <= answers, name
    expected = {i.expected for i in data.intents.values() if i.kind == OUT_OF_KB}
    assert expected == {Outcome.HANDOFF, Outcome.FALLBACK, Outcome.CHITCHAT, Outcome.NO_FAQ}


def test_bundled_queries_are_not_kb_questions_and_the_split_is_the_seeded_one():
    data = load_natural(NATURAL)
    questions = _kb_texts(0)
    queries = data.select("all")
    assert len({q.query for q in queries}) == len(queries)
    copied = [
        q.query for q in queries if q.kind == IN_KB and normalize_answer(q.query) in questions
    ]
    assert copied == []
    # the seeded 50/50 split covers the first writer's queries; the extra ones are tune only
    extra = len(data.tune_extra)
    seeded_tune = data.queries["tune"][: len(data.queries["tune"]) - extra]
    assert data.queries["tune"][len(seeded_tune) :] == list(data.tune_extra)
    seeded = seeded_tune + data.queries["test"]
    assert split_queries(seeded, data.seed) == (seeded_tune, data.queries["test"])
    assert not {q.query for q in data.tune_extra} & {q.query for q in data.queries["test"]}


# -- over HTTP: a real Flask app on a real socket, the same report as in process -------------
def test_over_http_the_report_equals_in_process(tmp_path, tiny_config, tiny_tsv):
    import threading

    from werkzeug.serving import make_server

    from alime.bot import build_bot
    from alime.evaluation.natural import http_asker
    from alime.kb.formats import read_rows
    from alime.kb.store import KnowledgeBase
    from alime.serving.app import create_app

    kb_path, _, _ = tiny_config.resolved_paths()
    KnowledgeBase(kb_path).add_many(
        (r.question, r.answer, ()) for r in read_rows(tiny_tsv, "tsv").rows
    )
    bot = build_bot(tiny_config)
    data = tmp_path / "set"
    data.mkdir()
    (data / "intents.json").write_text(
        json.dumps(
            {
                "seed": 1,
                "intents": {
                    "ship": {"kind": "in_kb", "acceptable": ["亲 , 付款 后 48 小时 内 发货 哦"]},
                    "refund": {"kind": "in_kb", "acceptable": ["退款一般一到三个工作日到账"]},
                    "weather": {"kind": "out_of_kb", "expected": "no_faq"},
                },
            },
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    (data / "tune.jsonl").write_text(
        "\n".join(
            [
                _line("啥时候发货啊", "ship", IN_KB),
                _line("退款多久能到账", "refund", IN_KB),
                _line("怎么退货", "refund", IN_KB),
                _line("明天天气", "weather", OUT_OF_KB),
            ]
        ),
        encoding="utf-8",
    )
    (data / "test.jsonl").write_text("", encoding="utf-8")
    server = make_server("127.0.0.1", 18652, create_app(bot=bot), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        local = run_natural(data, "tune", lambda q: bot.engine.reply(q).to_json(), progress=False)
        remote = run_natural(data, "tune", http_asker("http://127.0.0.1:18652"), progress=False)
    finally:
        server.shutdown()
        thread.join()
        bot.kb.close()
    assert local[IN_KB]["acceptable"] == 2  # BM25 finds both; 怎么退货 gets the returns answer
    assert remote == local


def test_unreachable_server_is_a_clean_cli_error(tmp_path, capsys):
    data = _write_set(tmp_path / "set", TINY)
    assert (
        main(
            [
                "evaluate",
                "natural",
                "--data",
                str(data),
                "--split",
                "tune",
                "--url",
                "http://127.0.0.1:18653",
                "--no-progress",
            ]
        )
        == 2
    )
    assert "cannot reach the server" in capsys.readouterr().err


def test_bm25_baseline_answers_the_top_hit(tiny_config, tiny_tsv):
    from alime.evaluation.natural import baseline_asker
    from alime.kb.formats import read_rows
    from alime.kb.store import KnowledgeBase

    kb_path, _, _ = tiny_config.resolved_paths()
    KnowledgeBase(kb_path).add_many(
        (r.question, r.answer, ()) for r in read_rows(tiny_tsv, "tsv").rows
    )
    ask, close = baseline_asker("bm25", tiny_config)
    try:
        reply = ask("啥时候发货啊")
        assert reply["source"] == "retrieval" and not reply["handoff"]
        assert normalize_answer(reply["answer"]) == "亲,付款后48小时内发货哦"
        nothing = ask("zzzz")  # no known term: no hit, the fallback
        assert nothing["source"] == "fallback" and nothing["handoff"]
    finally:
        close()
    with pytest.raises(ValueError, match="valid: always-fallback, bm25"):
        baseline_asker("nope", tiny_config)


# -- routing fitted on natural queries ------------------------------------------------------------
def _items(seed: int = 0, n: int = 60):
    """Queries whose right candidate has a high `chars` value; `dense` is noise; out-of-KB
    queries have only low `chars` candidates."""
    import numpy as np

    from alime.evaluation.routing import LabelledQuery, QueryCandidates
    from alime.routing import Feature

    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        in_kb = i % 3 != 0
        chars = rng.uniform(0.0, 0.4, 4)
        correct = np.zeros(4, bool)
        if in_kb:
            chars[0] = rng.uniform(0.6, 1.0)
            correct[0] = True
        feats = {
            Feature.CHARS: chars,
            Feature.DENSE: rng.uniform(0, 1, 4),
            Feature.MATCH: rng.uniform(0, 1, 4),
            Feature.RERANK: rng.normal(size=4),
        }
        items.append(
            QueryCandidates(
                LabelledQuery(f"q{i}", "in_kb" if in_kb else "chitchat", True), feats, correct
            )
        )
    return items


def test_fit_natural_routing_prefers_the_separating_feature():
    from alime.evaluation.natural_routing import cross_validate, fit_natural_routing
    from alime.routing import Feature

    items = _items()
    sets = {
        "chars": (Feature.CHARS,),
        "dense": (Feature.DENSE,),
        "chars_dense": (Feature.CHARS, Feature.DENSE),
    }
    # chars separates the classes (T from the training folds can sit a hair below a held-out
    # negative, hence not exactly 1); dense is noise
    assert cross_validate(items, (Feature.CHARS,)) > 0.95
    assert cross_validate(items, (Feature.DENSE,)) < 0.75
    fitted = fit_natural_routing(items, feature_sets=sets)
    # chars and chars+dense both separate perfectly: the tie goes to fewer features
    assert fitted["chosen"] == "chars"
    assert fitted["tune"]["in_kb_right"] == 1.0 and fitted["tune"]["out_routed"] == 1.0
    assert fitted["model"].features == (Feature.CHARS,)


def test_fit_routing_flags(tmp_path, capsys):
    from alime.cli import main

    for argv, message in (
        (["--fit-routing", "--sweep"], "--fit-routing runs alone"),
        (["--fit-routing", "--split", "test"], "fits on the tune split only"),
        (["--write-model", str(tmp_path)], "--write-model needs --sweep or --fit-routing"),
    ):
        assert main(["evaluate", "natural", "--data", str(NATURAL), *argv]) == 2
        assert message in capsys.readouterr().err, argv


def test_sweep_chooses_the_chitchat_bar_and_writes_it(tmp_path):
    """A chit-chat query is acceptable only when C lets its match (0.6) through; an off-topic
    query is acceptable either way (no FAQ answer), so C = 0.6 wins over 0.8."""
    intents = {"chat": _out(Outcome.CHITCHAT), "other": _out(Outcome.NO_FAQ)}
    queries = [
        NaturalQuery("你真聪明", "chat", OUT_OF_KB),
        NaturalQuery("天气", "other", OUT_OF_KB),
    ]
    records = [
        Recorded(0.1, "x", None, "转人工", chitchat=("谢谢夸奖", 0.6, 0.8)),
        Recorded(0.1, "x", None, "转人工", chitchat=("天气查不到", 0.5, 0.8)),
    ]
    result = sweep(records, queries, intents, [0.5], [0.0], [0.6, 0.8])
    assert result["chosen"]["chitchat_threshold"] == 0.6 and result["chosen"]["out_of_kb"] == 1.0
    by_c = {p["chitchat_threshold"]: p for p in result["points"]}
    assert by_c[0.8]["out_of_kb"] == 0.5
    assert simulate(records[0], 0.5, 0.0)["source"] == "fallback"  # the recorded bar, 0.8
    model = tmp_path / "model"
    model.mkdir()
    write_choice(model, result["chosen"], False, {"split": "tune"})
    stored = json.loads((model / "thresholds.json").read_text(encoding="utf-8"))
    assert stored == {"threshold": 0.5, "generation_threshold": 0.0, "chitchat_threshold": 0.6}
    from alime.seq2seq.model_dir import read_thresholds

    assert read_thresholds(model)["chitchat_threshold"] == 0.6


def test_sweep_counts_wrong_faq_answers_against_a_threshold():
    """A wrong confident answer costs more than a hand-off: at T = 0.3 one in-KB query is
    answered right and one wrongly; at 0.45 both are handed off. Without the cost 0.3 wins;
    with 0.5 the two score the same and the higher T wins."""
    intents = {"ship": Intent("ship", IN_KB, "", Outcome.ANSWER, frozenset({"a1"}))}
    queries = [NaturalQuery("q1", "ship", IN_KB), NaturalQuery("q3", "ship", IN_KB)]
    records = [Recorded(0.35, "a1", None, "转人工"), Recorded(0.4, "bad", None, "转人工")]
    free = sweep(records, queries, intents, [0.3, 0.38, 0.45], [0.0], wrong_cost=0.0)
    assert free["chosen"]["threshold"] == 0.3
    costly = sweep(records, queries, intents, [0.3, 0.38, 0.45], [0.0], wrong_cost=0.5)
    by_t = {p["threshold"]: p for p in costly["points"]}
    assert by_t[0.3]["wrong_faq"] == 0.5 and by_t[0.3]["score"] == pytest.approx(0.25 - 0.25)
    assert by_t[0.38]["score"] == pytest.approx(0.0 - 0.25)
    assert by_t[0.45]["wrong_faq"] == 0.0 and costly["chosen"]["threshold"] == 0.45
