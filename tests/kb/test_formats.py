import io
import json

import pytest

from alime.kb.formats import Format, FormatError, read_rows, write_pairs
from alime.kb.store import KnowledgeBase


def test_tsv_reports_file_and_line(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("q1\ta1\nq2 without tab\nq3\ta3\n", encoding="utf-8")
    with pytest.raises(FormatError) as info:
        read_rows(path, "tsv")
    assert info.value.line == 2 and str(path) in str(info.value)
    result = read_rows(path, "tsv", skip_bad=True)
    assert [r.question for r in result.rows] == ["q1", "q3"]
    assert [e.line for e in result.skipped] == [2]


def test_empty_fields_are_errors(tmp_path):
    path = tmp_path / "e.tsv"
    path.write_text("q1\t \n", encoding="utf-8")
    with pytest.raises(FormatError, match="empty answer"):
        read_rows(path, "tsv")


def test_jsonl(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(
        '{"question": "退货", "answer": "可以", "tags": ["售后"]}\n'
        '{"question": 3, "answer": "x"}\n'
        "not json\n",
        encoding="utf-8",
    )
    result = read_rows(path, "jsonl", skip_bad=True)
    assert result.rows[0].tags == ("售后",)
    assert [e.line for e in result.skipped] == [2, 3]


def test_ecommerce_uses_positive_lines_last_turn(tmp_path):
    path = tmp_path / "dev.txt"
    path.write_text(
        "1\t你好\t在 的\t发货 了 吗\t今天 发\n0\t你好\t在 的\t发货 了 吗\t随便\n2\ta\tb\n",
        encoding="utf-8",
    )
    with pytest.raises(FormatError, match="label") as info:
        read_rows(path, "ecommerce")
    assert info.value.line == 3
    rows = read_rows(path, Format.ECOMMERCE, skip_bad=True).rows
    assert [(r.question, r.answer) for r in rows] == [("发货 了 吗", "今天 发")]


def test_chatterbot_yaml(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text(
        "categories:\n- 问候\nconversations:\n- - 你好\n  - 你好呀\n  - 最近好吗\n- - 再见\n",
        encoding="utf-8",
    )
    result = read_rows(path, "chatterbot", skip_bad=True)
    assert [(r.question, r.answer) for r in result.rows] == [("你好", "你好呀"), ("你好呀", "最近好吗")]
    assert result.rows[0].tags == ("问候",)
    assert [e.line for e in result.skipped] == [7]


def test_bundled_chatterbot_corpus_parses():
    from alime.config import BUNDLED_DATA

    total = 0
    for path in sorted((BUNDLED_DATA / "chatterbot_zh").glob("*.yml")):
        result = read_rows(path, "chatterbot", skip_bad=True)
        assert all(r.question and r.answer for r in result.rows)
        total += len(result.rows)
    assert total > 300


def test_unknown_format_lists_valid_ones(tmp_path):
    (tmp_path / "x").write_text("")
    with pytest.raises(ValueError, match="tsv, jsonl, ecommerce, chatterbot"):
        read_rows(tmp_path / "x", "csv")


def test_not_utf8(tmp_path):
    path = tmp_path / "gbk.tsv"
    path.write_bytes("问题\t答案\n".encode("gbk"))
    with pytest.raises(FormatError, match="UTF-8"):
        read_rows(path, "tsv")


def test_export_round_trip(tmp_path, tiny_tsv):
    kb = KnowledgeBase(tmp_path / "kb.sqlite")
    kb.add_many((r.question, r.answer, r.tags) for r in read_rows(tiny_tsv, "tsv").rows)
    out = tmp_path / "out.jsonl"
    with out.open("w", encoding="utf-8") as f:
        assert write_pairs(kb.iter_pairs(), f, "jsonl") == 20
    back = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(b["question"], b["answer"]) for b in back] == [
        (r.question, r.answer) for r in read_rows(tiny_tsv, "tsv").rows
    ]


def test_jsonl_phrasings_round_trip(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"question": "什么时候发货", "phrasings": ["几时发货", "什么时候发货", "几时发货"], "answer": "今天"}\n'
        '{"question": "q", "answer": "a", "phrasings": "几时发货"}\n'
        '{"question": "q", "answer": "a", "phrasings": ["ok", " "]}\n',
        encoding="utf-8",
    )
    with pytest.raises(FormatError, match="'phrasings' must be a list of strings") as info:
        read_rows(path, "jsonl")
    assert info.value.line == 2
    result = read_rows(path, "jsonl", skip_bad=True)
    assert [e.message for e in result.skipped] == ["'phrasings' must be a list of strings",
                                                   "empty phrasing"]
    (row,) = result.rows
    assert row.phrasings == ("几时发货",)  # once, without the primary question

    kb = KnowledgeBase(tmp_path / "kb.sqlite")
    kb.add_many([row.to_kb_row()])
    out = io.StringIO()
    write_pairs(kb.iter_pairs(), out, "jsonl")
    obj = json.loads(out.getvalue())
    assert obj["phrasings"] == ["几时发货"] and obj["question"] == "什么时候发货"
    back = tmp_path / "back.jsonl"
    back.write_text(out.getvalue(), encoding="utf-8")
    assert read_rows(back, "jsonl").rows[0].to_kb_row() == row.to_kb_row()
