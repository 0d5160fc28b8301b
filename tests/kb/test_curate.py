"""``alime kb curate``: display text, drop rules, grouping, conflict resolution, report, CLI."""

import json
import os
import subprocess
import sys

import pytest

from alime.kb.curate import (
    REPORT_JSON,
    REPORT_MD,
    CurateOptions,
    Kind,
    Reason,
    answer_verdict,
    char_f1,
    curate_file,
    display_text,
    group_keys,
    near_duplicate,
    question_key,
    question_verdict,
    resolve,
)


def test_display_text_joins_cjk_and_keeps_spaces_around_latin_words_and_numbers():
    assert display_text("您好 拍下 后 72 小时 内 发货 哦 亲") == "您好拍下后 72 小时内发货哦亲"
    assert display_text("iPhone X 有 吗 ？") == "iPhone X 有吗？"
    assert display_text("下单 3 - 5 天 发货 ， 谢谢") == "下单 3-5 天发货，谢谢"
    assert display_text("已经是自然文本了吗") == "已经是自然文本了吗"


def test_question_key_strips_particles_at_clause_edges_only():
    assert question_key("亲 ， 什么 时候 发货 呀 ？") == "什么时候发货"
    assert question_key("请问 发 什么 快递") == question_key("发什么快递啊亲") == "发什么快递"
    assert (
        question_key("你好 ， 你家 发 什么 快递")
        == question_key("好的 发 什么 快递")
        == "发什么快递"
    )
    assert question_key("ＯＫ 吗") == "ok"  # width and case
    assert question_key("亲自 来 取 吗") == "亲自来取"  # 亲 starting a word is not "dear"
    assert question_key("呢子 大衣 有 吗") == "呢子大衣有"  # particles are stripped at the edges
    assert question_key("哦") == "哦"  # a clause that is only a particle keeps it


@pytest.mark.parametrize(
    "question, kind, reason",
    [
        ("什么 时候 发货", Kind.FAQ, None),
        ("包邮 吗", Kind.FAQ, None),
        ("528105689823", Kind.FAQ, Reason.QUESTION_NUMBER),
        ("看 这个 https://item.taobao.com/x 有 吗", Kind.FAQ, Reason.QUESTION_LINK),
        ("好 的", Kind.FAQ, Reason.ACKNOWLEDGEMENT),
        ("嗯 嗯", Kind.FAQ, Reason.ACKNOWLEDGEMENT),
        ("已 付款", Kind.FAQ, Reason.ACKNOWLEDGEMENT),
        ("在 吗", Kind.GREETING, None),
        ("老板 在 吗", Kind.GREETING, None),
        ("好 的 谢谢", Kind.THANKS, None),
        ("是 吗", Kind.FAQ, Reason.CONTEXT_BOUND_QUESTION),
        ("那 怎么办", Kind.FAQ, Reason.CONTEXT_BOUND_QUESTION),
        ("什么 意思", Kind.FAQ, Reason.CONTEXT_BOUND_QUESTION),
        ("那 我 要点 退货 么", Kind.FAQ, Reason.CONTEXT_BOUND_QUESTION),
        ("他 买 的 是 几组", Kind.FAQ, Reason.CONTEXT_BOUND_QUESTION),
        ("其他 颜色 有 吗", Kind.FAQ, None),  # 其他 is not a back reference
        ("贵", Kind.FAQ, Reason.CONTEXT_BOUND_QUESTION),
        ("蓝 ？", Kind.FAQ, Reason.SHORT_QUESTION),
        ("我 的 快递 到 哪 了", Kind.FAQ, Reason.OWN_ORDER_QUESTION),
        ("太慢 了", Kind.FAQ, Reason.NOT_A_QUESTION),
        ("帮 我 改 一下 地址", Kind.FAQ, Reason.NOT_A_QUESTION),
        ("请问 这个 茶刀 和 那个 茶针 一起 买 的话 能 不能 便宜", Kind.FAQ, Reason.LONG_QUESTION),
    ],
)
def test_question_verdicts(question, kind, reason):
    assert question_verdict(question) == (kind, reason)


def test_long_question_limit_is_an_option():
    q = "这款纸巾的保质期一般是多长时间呢"  # key: 15 characters
    assert len(question_key(q)) == 15
    assert question_verdict(q) == (Kind.FAQ, None)
    assert question_verdict(q, CurateOptions(max_question_chars=14))[1] is Reason.LONG_QUESTION


@pytest.mark.parametrize(
    "question, answer, reason",
    [
        ("什么 时候 发货", "拍下 后 72 小时 内 发货", None),
        ("什么 时候 发货", "好 的 呢", Reason.CONTENT_FREE_ANSWER),
        ("什么 时候 发货", "嗯 嗯 亲", Reason.CONTENT_FREE_ANSWER),
        ("什么 时候 发货", "稍 等", Reason.CONTENT_FREE_ANSWER),
        ("什么 时候 发货", "好 的 211130214224 汇通", Reason.ANSWER_NUMBER),
        ("什么 时候 发货", "看 这里 http://t.cn/abc", Reason.ANSWER_LINK),
        ("包邮 吗", "是 的 呢", Reason.BARE_YES_NO_ANSWER),  # names no topic: see keep_bare_yes_no
        ("包邮 吗", "是 的 呢 全国 包邮", None),  # a yes that names its topic
        ("发 什么 快递", "是 的 呢", Reason.YES_NO_TO_STATEMENT),
        ("可以 退换 吗", "这边 已经 联系 快递 帮 您 改 了 哦", Reason.CONTEXT_BOUND_ANSWER),
        ("包邮 吗", "您 是 哪个 地区 的", Reason.CONTEXT_BOUND_ANSWER),
        ("退货 怎么 寄", "那 您 从 新 拍 下 看", Reason.CONTEXT_BOUND_ANSWER),
    ],
)
def test_answer_verdicts(question, answer, reason):
    assert answer_verdict(question, answer) is reason


def test_bare_yes_no_answers_to_yes_no_questions_can_be_kept():
    assert answer_verdict("包邮 吗", "是 的 呢", keep_bare_yes_no=True) is None
    # a bare yes/no to a statement stays dropped either way
    assert answer_verdict("发 什么 快递", "是 的 呢", True) is Reason.YES_NO_TO_STATEMENT


def test_near_duplicates_are_deletions_of_function_characters():
    assert near_duplicate("今天能发货", "今天发货")
    assert near_duplicate("什么快递", "发什么快递")
    assert near_duplicate("什么时候能发货", "什么时候发货")
    assert not near_duplicate("今天能发货", "明天能发货")  # a substitution changes the question
    assert not near_duplicate("发错货了", "发货了")  # 错 is content
    assert not near_duplicate("有货", "没有货")  # too short, and 没 is not deletable
    assert not near_duplicate("包邮不", "包邮")  # too short
    assert not near_duplicate("发什么快递", "快递")  # three deletions
    assert not near_duplicate("发什么快递", "发什么快递")  # equal keys are not near duplicates


def test_group_keys_uses_centres_not_chains():
    # 发什么快递的 is one deletion from 发什么快递 but two from 什么快递.
    counts = {"什么快递": 5, "发什么快递": 3, "发什么快递的": 1, "包邮": 2}
    centre = group_keys(counts)
    assert centre == {
        "什么快递": "什么快递",
        "发什么快递": "什么快递",
        "发什么快递的": "发什么快递的",
        "包邮": "包邮",
    }
    counts = {"发什么快递": 5, "什么快递": 3, "发什么快递的": 1}
    assert set(group_keys(counts).values()) == {"发什么快递"}
    off = group_keys(counts, CurateOptions(near_duplicates=False))
    assert off == {k: k for k in counts}


def test_resolve_rules_in_order():
    assert resolve(["a"]).rule == "only"
    assert resolve(["x", "y", "y"]) == resolve(["y", "x", "y"])
    assert resolve(["x", "y", "y"]).key == "y" and resolve(["x", "y", "y"]).rule == "frequency"
    # One row each: the consensus (mean character F1 with the other answers) decides.
    # 72小时内发货 (7 chars) / 72小时发货 (6) share 6: F1 12/13; each shares 发货 with 今天发货 (4):
    # 4/11 and 4/10. Means: 72小时发货 (12/13 + 4/10) / 2 = 0.6615 beats 72小时内发货 0.6434.
    keys = ["72小时内发货", "今天发货", "72小时发货"]
    assert char_f1("72小时内发货", "72小时发货") == pytest.approx(12 / 13)
    assert char_f1("72小时内发货", "今天发货") == pytest.approx(4 / 11)
    chosen = resolve(keys)
    assert chosen.key == "72小时发货" and chosen.rule == "consensus"
    # Equal consensus: the longer (more informative) one.
    assert resolve(["ab", "abcd"]) == resolve(["abcd", "ab"])
    assert resolve(["ab", "abcd"]).key == "abcd" and resolve(["ab", "abcd"]).rule == "informative"
    # Same length and consensus: code-point order.
    assert resolve(["ba", "ab"]).key == "ab" and resolve(["ba", "ab"]).rule == "order"


ROWS = [
    ("什么 时候 发货", "拍下 后 72 小时 内 发货 哦"),  # 1  group A
    ("什么 时候 发货 啊 亲", "拍下 后 72 小时 内 发货 哦 。"),  # 2  group A, same normalized answer
    ("亲 什么 时候 能 发货", "今天 发货"),  # 3  group A (near duplicate), conflict
    ("什么 时候 发货 呀", "好 的"),  # 4  group A phrasing, answer discarded
    ("发 什么 快递", "默认 韵达 快递"),  # 5  group B
    ("528105689823", "您好"),  # 6  dropped: number
    ("好 的", "嗯 嗯 亲"),  # 7  dropped: acknowledgement
    ("谢谢", "不 客气 哦"),  # 8  chit-chat
    ("在 吗", "这边 帮 您 改 了 地址"),  # 9  dropped: greeting, no generic answer
    ("是 吗", "是 的"),  # 10 dropped: context-bound question
    ("包邮 吗", "好 的"),  # 11 dropped: content-free answer
]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "raw.tsv"
    path.write_text("".join(f"{q}\t{a}\n" for q, a in ROWS), encoding="utf-8")
    return path


def test_curate_file_groups_resolves_and_reports(corpus, tmp_path):
    out, chat, report = tmp_path / "kb.jsonl", tmp_path / "chat.jsonl", tmp_path / "report"
    result = curate_file(corpus, "tsv", out, chat, report, CurateOptions(tags=("shop",)))
    entries = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert entries == [
        {
            "question": "什么时候发货",
            "phrasings": ["什么时候发货呀", "亲什么时候能发货", "什么时候发货啊亲"],
            "answer": "拍下后 72 小时内发货哦",
            "tags": ["shop", "unreviewed"],
        },
        {
            "question": "发什么快递",
            "phrasings": [],
            "answer": "默认韵达快递",
            "tags": ["shop", "unreviewed"],
        },
    ]
    assert [json.loads(line) for line in chat.read_text(encoding="utf-8").splitlines()] == [
        {"question": "谢谢", "phrasings": [], "answer": "不客气哦", "tags": ["chitchat"]}
    ]

    counts = result.counts()
    assert counts["rows_in"] == 11 and counts["entries_out"] == 2 and counts["conflicts"] == 1
    assert counts["rows_in_entries"] == 5 and counts["rows_moved_to_chitchat"] == 1
    assert counts["rows_dropped"] == 5
    assert counts["rows_in"] == (
        counts["rows_dropped"] + counts["rows_in_entries"] + counts["rows_moved_to_chitchat"]
    )
    dropped = {r: n for r, n in counts["dropped_by_reason"].items() if n}
    assert dropped == {
        "question_number": 1,
        "acknowledgement_question": 1,
        "greeting_without_generic_answer": 1,
        "context_bound_question": 1,
        "content_free_answer": 1,
    }
    assert counts["answers_discarded_by_reason"] == {"content_free_answer": 1}

    (conflict,) = result.conflicts
    assert conflict.kept == "拍下后 72 小时内发货哦" and conflict.rule == "frequency"
    assert [(a.answer, a.rows, a.lines) for a in conflict.alternatives] == [
        ("拍下后 72 小时内发货哦", 2, (1, 2)),
        ("今天发货", 1, (3,)),
    ]

    data = json.loads((report / REPORT_JSON).read_text(encoding="utf-8"))
    assert data["counts"] == counts
    assert data["groups"][0]["lines"] == [1, 2, 3, 4]
    assert data["conflicts"][0]["alternatives"][1] == {
        "answer": "今天发货",
        "rows": 1,
        "lines": [3],
    }
    assert [d["line"] for d in data["dropped"]] == [6, 7, 9, 10, 11]
    md = (report / REPORT_MD).read_text(encoding="utf-8")
    assert "| 11 | 5 | 1 | 5 | 2 | 3 | 1 | 1 |" in md and "今天发货" in md


def test_output_is_deterministic_byte_for_byte(corpus, tmp_path):
    # The same rows in another order group the same way; the same file gives the same bytes.
    outputs = []
    for name in ("a", "b"):
        out, report = tmp_path / f"{name}.jsonl", tmp_path / f"r{name}"
        curate_file(corpus, "tsv", out, None, report)
        outputs.append(
            (
                out.read_bytes(),
                (report / REPORT_JSON).read_bytes(),
                (report / REPORT_MD).read_bytes(),
            )
        )
    assert outputs[0] == outputs[1]


def test_curated_output_imports_with_phrasings(corpus, tmp_path):
    from alime.kb.formats import read_rows
    from alime.kb.store import KnowledgeBase

    out = tmp_path / "kb.jsonl"
    curate_file(corpus, "tsv", out)
    kb = KnowledgeBase(tmp_path / "kb.sqlite")
    kb.add_many(r.to_kb_row() for r in read_rows(out, "jsonl").rows)
    first = kb.get(1)
    assert first.question == "什么时候发货" and len(first.phrasings) == 3


def _cli(*args, home):
    env = {**os.environ, "ALIME_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "alime", "kb", "curate", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_cli_curates_and_reports_bad_input_with_file_and_line(corpus, tmp_path):
    out = tmp_path / "out.jsonl"
    proc = _cli(
        str(corpus),
        "--format",
        "tsv",
        "--out",
        str(out),
        "--report",
        str(tmp_path / "r"),
        "--tag",
        "shop",
        home=tmp_path / "home",
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["entries_out"] == 2
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2
    assert not (tmp_path / "home").exists()  # curation never opens (or seeds) a KB

    bad = tmp_path / "bad.tsv"
    bad.write_text("什么 时候 发货\t今天\n只有 一列\n", encoding="utf-8")
    bad_out = tmp_path / "bad.jsonl"
    proc = _cli(str(bad), "--format", "tsv", "--out", str(bad_out), home=tmp_path / "home")
    assert proc.returncode == 2 and f"{bad}:2:" in proc.stderr
    assert not bad_out.exists()  # nothing written from a malformed file
    proc = _cli(str(corpus), "--format", "csv", "--out", str(bad_out), home=tmp_path / "home")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_bundled_curated_kb_is_display_text_without_junk():
    """The bundled KB is what ``alime kb curate`` makes of the raw corpus, and reads as text."""
    from alime.bot import BUNDLED_CORPUS, BUNDLED_KB
    from alime.kb.formats import read_rows

    rows = read_rows(BUNDLED_KB, "jsonl").rows
    assert len(rows) > 500
    cjk_space = __import__("re").compile(r"[\u4e00-\u9fff] [\u4e00-\u9fff]")
    for r in rows:
        for text in (r.question, *r.phrasings, r.answer):
            assert not cjk_space.search(text), text
        assert question_verdict(r.question) == (Kind.FAQ, None), r.question
        assert answer_verdict(r.question, r.answer) is None, r.answer
    keys = [question_key(r.question) for r in rows]
    assert len(set(keys)) == len(keys)  # one entry per question
    chitchat = read_rows(BUNDLED_KB.with_name("chitchat.jsonl"), "jsonl").rows
    assert all(question_verdict(r.question)[0] is not Kind.FAQ for r in chitchat)
    assert BUNDLED_CORPUS.is_file()


# -- reviewed FAQ (--reviewed) --------------------------------------------------------------------
REVIEWED = [
    {
        "question": "什么时候发货",
        "phrasings": ["啥时候发火", "几时发货呢"],
        "answer": "付款后 48 小时内发货",
        "tags": ["faq"],
        "source_lines": [7],
    },
    {"question": "包邮吗", "phrasings": ["包不包邮"], "answer": "全国包邮哦", "tags": ["faq"]},
]


def _write_jsonl(path, objs):
    path.write_text(
        "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs), encoding="utf-8"
    )
    return path


def test_reviewed_entries_come_first_and_absorb_corpus_groups(corpus, tmp_path):
    reviewed = _write_jsonl(tmp_path / "faq.jsonl", REVIEWED)
    out, report = tmp_path / "kb.jsonl", tmp_path / "report"
    result = curate_file(
        corpus, "tsv", out, None, report, CurateOptions(tags=("shop",)), reviewed=reviewed
    )
    entries = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    # Corpus groups carry the unreviewed tag (the routing score weighs it); reviewed ones never.
    # Group A (rows 1-4, key 什么时候发货) is merged into the first reviewed entry: its questions
    # follow the reviewed phrasings; the reviewed answer and tags are kept. 包邮吗 (row 11) had no
    # usable answer, so no group: the reviewed entry stays as written. Group B follows.
    assert entries == [
        {
            "question": "什么时候发货",
            "phrasings": [
                "啥时候发火",
                "几时发货呢",
                "什么时候发货呀",
                "亲什么时候能发货",
                "什么时候发货啊亲",
            ],
            "answer": "付款后 48 小时内发货",
            "tags": ["faq"],
        },
        {"question": "包邮吗", "phrasings": ["包不包邮"], "answer": "全国包邮哦", "tags": ["faq"]},
        {
            "question": "发什么快递",
            "phrasings": [],
            "answer": "默认韵达快递",
            "tags": ["shop", "unreviewed"],
        },
    ]
    counts = result.counts()
    assert counts["reviewed_entries"] == 2 and counts["entries_out"] == 3
    assert counts["groups_merged_into_reviewed"] == 1 and counts["rows_merged_into_reviewed"] == 4
    assert counts["reviewed_conflicts"] == 1
    assert counts["rows_in"] == (
        counts["rows_dropped"] + counts["rows_in_entries"] + counts["rows_moved_to_chitchat"]
    )
    # The group's own conflict (72 hours vs today) is replaced by the reviewed-wins one, which
    # lists the reviewed answer and all the group's answers with their lines.
    (conflict,) = result.conflicts
    assert conflict.rule == "reviewed" and conflict.kept == "付款后 48 小时内发货"
    assert [(a.answer, a.rows, a.lines) for a in conflict.alternatives] == [
        ("付款后 48 小时内发货", 0, ()),
        ("拍下后 72 小时内发货哦", 2, (1, 2)),
        ("今天发货", 1, (3,)),
    ]
    (merge,) = result.merges
    assert (merge.reviewed, merge.question, merge.key, merge.lines) == (
        "什么时候发货",
        "什么时候发货",
        "什么时候发货",
        (1, 2, 3, 4),
    )
    data = json.loads((report / REPORT_JSON).read_text(encoding="utf-8"))
    assert data["merges"][0]["lines"] == [1, 2, 3, 4] and data["groups"][0]["reviewed"] is True
    assert "Reviewed entries: 2" in (report / REPORT_MD).read_text(encoding="utf-8")


def test_a_group_merges_on_a_phrasing_key_and_an_equal_answer_is_no_conflict(corpus, tmp_path):
    # 发 什么 快递 (row 5) has the key of the reviewed phrasing 你家发什么快递呀; same answer.
    reviewed = _write_jsonl(
        tmp_path / "faq.jsonl",
        [
            {
                "question": "用什么快递",
                "phrasings": ["你家发什么快递呀"],
                "answer": "默认韵达快递。",
                "tags": ["faq"],
            }
        ],
    )
    out = tmp_path / "kb.jsonl"
    result = curate_file(corpus, "tsv", out, reviewed=reviewed)
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert first == {
        "question": "用什么快递",
        "phrasings": ["你家发什么快递呀", "发什么快递"],
        "answer": "默认韵达快递。",
        "tags": ["faq"],
    }
    assert result.counts()["reviewed_conflicts"] == 0 and len(result.merges) == 1
    assert [c.rule for c in result.conflicts] == ["frequency"]  # group A's, not merged


def test_a_near_duplicate_is_not_merged_into_a_reviewed_entry(corpus, tmp_path):
    # Only equal keys merge: 发什么快递的 is a near duplicate of 发什么快递, not equal.
    reviewed = _write_jsonl(
        tmp_path / "faq.jsonl",
        [{"question": "发什么快递的", "answer": "默认韵达快递", "tags": ["faq"]}],
    )
    result = curate_file(corpus, "tsv", tmp_path / "kb.jsonl", reviewed=reviewed)
    assert not result.merges and [e.question for e in result.entries] == [
        "发什么快递的",
        "什么时候发货",
        "发什么快递",
    ]


def test_reviewed_output_is_deterministic(corpus, tmp_path):
    reviewed = _write_jsonl(tmp_path / "faq.jsonl", REVIEWED)
    outputs = []
    for name in ("a", "b"):
        out, report = tmp_path / f"{name}.jsonl", tmp_path / f"r{name}"
        curate_file(corpus, "tsv", out, None, report, reviewed=reviewed)
        outputs.append(
            (
                out.read_bytes(),
                (report / REPORT_JSON).read_bytes(),
                (report / REPORT_MD).read_bytes(),
            )
        )
    assert outputs[0] == outputs[1]


def test_cli_reviewed_and_its_bad_input(corpus, tmp_path):
    reviewed = _write_jsonl(tmp_path / "faq.jsonl", REVIEWED)
    out = tmp_path / "out.jsonl"
    proc = _cli(
        str(corpus),
        "--format",
        "tsv",
        "--out",
        str(out),
        "--reviewed",
        str(reviewed),
        home=tmp_path / "home",
    )
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout)
    assert counts["reviewed_entries"] == 2 and counts["groups_merged_into_reviewed"] == 1
    # Two reviewed entries sharing a question key: which answer would win? Refused, with the line.
    clash = _write_jsonl(
        tmp_path / "clash.jsonl",
        [
            REVIEWED[0],
            {"question": "包邮吗", "answer": "包邮"},
            {"question": "亲，什么时候发货呀？", "answer": "明天"},
        ],
    )
    bad_out = tmp_path / "bad.jsonl"
    proc = _cli(
        str(corpus),
        "--format",
        "tsv",
        "--out",
        str(bad_out),
        "--reviewed",
        str(clash),
        home=tmp_path / "home",
    )
    assert proc.returncode == 2 and f"{clash}:3:" in proc.stderr and "line 1" in proc.stderr
    broken = tmp_path / "broken.jsonl"
    broken.write_text(
        json.dumps({"question": "包邮吗", "answer": "包邮"}) + '\n{"question": 1}\n',
        encoding="utf-8",
    )
    proc = _cli(
        str(corpus),
        "--format",
        "tsv",
        "--out",
        str(bad_out),
        "--reviewed",
        str(broken),
        home=tmp_path / "home",
    )
    assert proc.returncode == 2 and f"{broken}:2:" in proc.stderr
    assert not bad_out.exists()
    proc = _cli(
        str(corpus),
        "--format",
        "tsv",
        "--out",
        str(bad_out),
        "--reviewed",
        str(tmp_path / "missing.jsonl"),
        home=tmp_path / "home",
    )
    assert proc.returncode == 2 and "missing.jsonl" in proc.stderr and not bad_out.exists()
