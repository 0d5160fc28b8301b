"""The chit-chat KB: its files, its match (against the reference char-overlap F1) and its config."""

import dataclasses
import json

import pytest

from alime.bot import build_chitchat, build_guards
from alime.chitchat import ChitChatKB, chitchat_key, read_chitchat
from alime.config import BUNDLED_DATA, AppConfig, load_config
from alime.kb.formats import FormatError
from alime.routing import char_overlap_f1


def test_bundled_files_read_in_order():
    config = AppConfig()
    rows = read_chitchat(config.chitchat.files)
    shop = [
        json.loads(line)
        for line in (BUNDLED_DATA / "chitchat" / "shop_zh.jsonl")
        .read_text(encoding="utf-8")
        .splitlines()
    ]
    assert [(r.question, r.answer) for r in rows[: len(shop)]] == [
        (s["question"], s["answer"]) for s in shop
    ]
    curated = [
        json.loads(line)
        for line in (BUNDLED_DATA / "kb" / "chitchat.jsonl")
        .read_text(encoding="utf-8")
        .splitlines()
    ]
    after_shop = rows[len(shop) : len(shop) + len(curated)]  # then what `kb curate` moved out
    assert [(r.question, r.answer, list(r.phrasings)) for r in after_shop] == [
        (c["question"], c["answer"], c["phrasings"]) for c in curated
    ]
    assert len(rows) > len(shop) + len(curated) + 500  # then ChatterBot (data/chatterbot_zh/*.yml)
    assert ("谢谢", "不客气") in [(r.question, r.answer) for r in rows[len(shop) :]]


def test_formats_by_suffix(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"question": "早", "answer": "早呀"}\n', encoding="utf-8")
    (tmp_path / "b.tsv").write_text("晚安\t晚安，好梦\n", encoding="utf-8")
    folder = tmp_path / "yml"
    folder.mkdir()
    (folder / "x.yml").write_text("conversations:\n- - 嗨\n  - 嗨嗨\n  - 好\n", encoding="utf-8")
    (folder / "ignored.txt").write_text("not read\n")
    rows = read_chitchat([tmp_path / "a.jsonl", tmp_path / "b.tsv", folder])
    assert [(r.question, r.answer) for r in rows] == [
        ("早", "早呀"),
        ("晚安", "晚安，好梦"),
        ("嗨", "嗨嗨"),
        ("嗨嗨", "好"),
    ]


def test_bad_files(tmp_path):
    with pytest.raises(ValueError, match="chit-chat file not found"):
        read_chitchat([tmp_path / "missing.jsonl"])
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="unknown chit-chat format; valid suffixes: .jsonl"):
        read_chitchat([tmp_path / "x.csv"])
    (tmp_path / "bad.jsonl").write_text('{"question": "q", "answer": "a"}\n{"question": 1}\n')
    with pytest.raises(FormatError, match="bad.jsonl:2:"):
        read_chitchat([tmp_path / "bad.jsonl"])


PAIRS = [
    ("你好", "您好！"),
    ("你是谁", "我是客服"),
    ("讲个笑话", "笑话"),
    ("你好", "第二个你好"),
    ("你最喜欢什么书", "书"),
    ("hello", "hi"),
]


def test_best_is_the_highest_char_f1_and_the_first_on_ties():
    kb = ChitChatKB(PAIRS)
    for query in (
        "你好！",
        "你是谁?",
        "讲个 笑话",
        "你喜欢什么电影",
        "你是",
        "HELLO",
        "谁",
        "你好呀",
        "讲个笑话吧",
    ):
        match = kb.best(query)
        scores = [char_overlap_f1(chitchat_key(query), chitchat_key(q)) for q, _ in PAIRS]
        best = max(scores)
        assert match.score == pytest.approx(best), query
        assert (match.question, match.answer) == PAIRS[scores.index(best)], query
    assert kb.best("你好").answer == "您好！"  # the earlier of the two 你好 entries
    assert kb.best("你好").score == 1.0
    assert kb.best("你好呀").score == 1.0 and kb.best("讲个笑话吧").answer == "笑话"  # particles


def test_chitchat_key_drops_particles_but_not_everything():
    assert chitchat_key("你好呀！") == "你好" and chitchat_key("在吗") == "在"
    assert chitchat_key("哈哈") == "哈哈"  # nothing but particles: kept as it is


def test_no_shared_character_is_no_match():
    kb = ChitChatKB(PAIRS)
    assert kb.best("包邮") is None and kb.best("😂") is None
    assert ChitChatKB([]).best("你好") is None


def test_every_phrasing_matches(tmp_path):
    (tmp_path / "c.jsonl").write_text(
        '{"question": "谢谢", "phrasings": ["多谢掌柜"], "answer": "不客气"}\n', encoding="utf-8"
    )
    path = tmp_path / "alime.toml"
    path.write_text('[chitchat]\nfiles = ["c.jsonl"]\n', encoding="utf-8")
    match = build_chitchat(load_config(path)).best("多谢掌柜")
    assert (match.question, match.answer, match.score) == ("多谢掌柜", "不客气", 1.0)


def test_config_sections(tmp_path):
    (tmp_path / "mine.jsonl").write_text('{"question": "早", "answer": "早呀"}\n', encoding="utf-8")
    (tmp_path / "lex.toml").write_text('[person]\nphrases = ["找掌柜"]\n', encoding="utf-8")
    path = tmp_path / "alime.toml"
    path.write_text(
        '[chitchat]\nfiles = ["mine.jsonl"]\nthreshold = 0.5\n'
        '[guards]\nlexicon = "lex.toml"\nperson_reply = "稍等"\n',
        encoding="utf-8",
    )
    config = load_config(path)
    assert config.chitchat.files == (str(tmp_path / "mine.jsonl"),)  # relative to the file
    assert config.chitchat.threshold == 0.5
    assert build_chitchat(config).best("早").answer == "早呀"
    guards = build_guards(config)
    assert guards.check("找掌柜").answer == "稍等" and guards.check("转人工") is None
    off = dataclasses.replace(
        config,
        chitchat=dataclasses.replace(config.chitchat, enabled=False),
        guards=dataclasses.replace(config.guards, enabled=False),
    )
    assert build_chitchat(off) is None and build_guards(off) is None


@pytest.mark.parametrize(
    "text, message",
    [
        ('[chitchat]\nfiles = "one.jsonl"\n', "'chitchat.files' must be a list of strings"),
        ("[chitchat]\nfiles = [1]\n", "'chitchat.files' must be a list of strings"),
        ("[chitchat]\nthreshhold = 0.5\n", "unknown config key(s) ['threshhold'] in 'chitchat'"),
        ('[guards]\nenabled = "yes"\n', "'guards.enabled' must be bool"),
    ],
)
def test_bad_config(tmp_path, text, message):
    path = tmp_path / "alime.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as err:
        load_config(path)
    assert message in str(err.value)


def test_full_match_shortcut_equals_the_scan_on_the_bundled_small_talk():
    """best() answers a query with an F1 = 1 entry without scanning: the same entry (the earliest
    of the highest F1) as the reference scan, anagrams of a question included."""
    pairs = [
        (q, r.answer)
        for r in read_chitchat(AppConfig().chitchat.files)
        for q in (r.question, *r.phrasings)
    ]
    kb = ChitChatKB(pairs)
    keys = [chitchat_key(q) for q, _ in pairs]
    queries = (
        [q for q, _ in pairs[:150]] + [k[::-1] for k in keys[:150]] + ["你好", "？？", "好的亲"]
    )
    for query in queries:
        scores = [char_overlap_f1(chitchat_key(query), k) for k in keys]
        best = max(scores)
        match = kb.best(query)
        if best == 0:
            assert match is None, query
            continue
        assert match.score == pytest.approx(best), query
        assert (match.question, match.answer) == pairs[scores.index(best)], query


def test_exact_is_the_earliest_entry_with_an_equal_key():
    kb = ChitChatKB([("好的谢谢", "a"), ("谢谢好的", "b"), ("你好", "c"), ("你好呀", "d")])
    assert kb.exact("谢谢好的！").answer == "b"  # an anagram of an earlier question is not exact
    assert kb.best("谢谢好的").answer == "a"  # while best() keeps the earliest F1 = 1 entry
    assert kb.exact("你好呀").answer == "c" and kb.exact("你好呀").score == 1.0  # particles
    assert kb.exact("你好吗好") is None


def test_a_bar_of_one_needs_no_scan_and_changes_no_answer():
    kb = ChitChatKB(PAIRS)
    for query in ("你好！", "讲个 笑话", "你喜欢什么电影", "你好呀", "谁"):
        full = kb.best(query)
        barred = kb.best(query, minimum=1.0)
        if full is not None and full.score == 1.0:
            assert barred == full, query
        else:
            assert barred is None, query  # below the bar: the engine would not use it anyway


def test_a_bar_skips_only_pairs_that_could_not_reach_it():
    """With ``minimum`` = C, the answer is the unbarred best whenever that reaches C, and None
    (or a match under C) otherwise: the engine's decision is the same."""
    kb = ChitChatKB(PAIRS)
    queries = ("你好！", "讲个 笑话", "你喜欢什么电影", "你好呀", "谁", "你是机器人吗", "今天天气")
    for minimum in (0.5, 0.7, 0.9):
        for query in queries:
            full, barred = kb.best(query), kb.best(query, minimum=minimum)
            if full is not None and full.score >= minimum:
                assert barred == full, (query, minimum)
            else:
                assert barred is None or barred.score < minimum, (query, minimum)
