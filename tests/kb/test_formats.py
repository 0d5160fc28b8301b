import io
import json

import pytest

from alime.config import KBConfig
from alime.kb.formats import (
    FORMULA_PREFIXES,
    Format,
    FormatError,
    NestingError,
    Row,
    load_json,
    neutralize_cell,
    parse_content,
    read_rows,
    write_pairs,
)
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
    assert [(r.question, r.answer) for r in result.rows] == [
        ("你好", "你好呀"),
        ("你好呀", "最近好吗"),
    ]
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


# -- issue 12: bad input files ----------------------------------------------------------------
def alias_bomb(levels: int = 8) -> str:
    """A few hundred bytes of YAML whose aliases expand tenfold per level (billion laughs)."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels):
        refs = ", ".join([f"*l{level - 1}"] * 10)
        lines.append(f"l{level}: &l{level} [{refs}]")
    lines += ["conversations:", f"- - *l{levels - 1}", "  - ok"]
    return "\n".join(lines) + "\n"


def test_yaml_aliases_are_refused_before_expansion(tmp_path):
    path = tmp_path / "bomb.yml"
    path.write_text(alias_bomb(), encoding="utf-8")
    assert path.stat().st_size < 600
    with pytest.raises(FormatError, match=r"aliases are not allowed \(\*l0\)") as info:
        read_rows(path, "chatterbot")
    assert info.value.line == 2  # the first alias
    skipped = read_rows(path, "chatterbot", skip_bad=True)
    assert skipped.rows == [] and [e.line for e in skipped.skipped] == [2]
    # Anchors alone are harmless and still read.
    path.write_text("conversations:\n- - &greet 你好\n  - 你好呀\n", encoding="utf-8")
    assert [(r.question, r.answer) for r in read_rows(path, "chatterbot").rows] == [
        ("你好", "你好呀")
    ]


def test_yaml_nesting_is_bounded(tmp_path):
    path = tmp_path / "deep.yml"
    path.write_text(
        "conversations:\n- - " + "[" * 5000 + "]" * 5000 + "\n  - x\n", encoding="utf-8"
    )
    with pytest.raises(FormatError, match="nested deeper than 20 levels") as info:
        read_rows(path, "chatterbot")
    assert info.value.line == 2
    limits = KBConfig(max_depth=3)  # mapping > conversations list > conversation: 3 levels
    path.write_text("conversations:\n- - [a]\n  - x\n", encoding="utf-8")
    with pytest.raises(FormatError, match="deeper than 3"):
        read_rows(path, "chatterbot", limits=limits)
    path.write_text("conversations:\n- - a\n  - x\n", encoding="utf-8")
    assert len(read_rows(path, "chatterbot", limits=limits).rows) == 1


def test_yaml_turns_must_be_text(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text("conversations:\n- - {a: b}\n  - x\n- - 1\n  - 2\n", encoding="utf-8")
    result = read_rows(path, "chatterbot", skip_bad=True)
    assert [(r.question, r.answer) for r in result.rows] == [("1", "2")]
    assert [(e.line, e.message) for e in result.skipped] == [
        (2, "every turn of a conversation must be text")
    ]


@pytest.mark.parametrize(
    "fmt, good",
    [
        ("tsv", "q\ta\n"),
        ("jsonl", '{"question": "q", "answer": "a"}\n'),
        ("ecommerce", "1\tq\ta\n"),
    ],
)
def test_a_huge_line_is_refused_without_reading_it_whole(tmp_path, fmt, good):
    path = tmp_path / f"big.{fmt}"
    with path.open("w", encoding="utf-8") as f:  # issue 12: a 10 MB single line was one question
        f.write(good)
        f.write("问" * (10 * 1024 * 1024 // 3) + "\t答\n")
        f.write(good)
    with pytest.raises(FormatError, match=f"line is longer than {256 * 1024} bytes") as info:
        read_rows(path, fmt)
    assert info.value.line == 2
    result = read_rows(path, fmt, skip_bad=True)
    assert [r.line for r in result.rows] == [1, 3] and [e.line for e in result.skipped] == [2]


def test_line_limit_boundary(tmp_path):
    path = tmp_path / "x.tsv"
    limits = KBConfig(max_line_bytes=10)
    path.write_bytes(b"q1234\tabcd\nq12345\tabcd\nq1234\tabcd")  # 10, 11, then 10 bytes at EOF
    result = read_rows(path, "tsv", skip_bad=True, limits=limits)
    assert [r.line for r in result.rows] == [1, 3]
    assert [(e.line, e.message) for e in result.skipped] == [(2, "line is longer than 10 bytes")]


def test_field_length_limit(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_text(
        "问" * 10 + "\t答\n" + "问" * 11 + "\t答\n" + "问\t" + "答" * 11 + "\n", encoding="utf-8"
    )
    result = read_rows(path, "tsv", skip_bad=True, limits=KBConfig(max_field_chars=10))
    assert [r.line for r in result.rows] == [1]
    assert [(e.line, e.message) for e in result.skipped] == [
        (2, "question is longer than 10 characters"),
        (3, "answer is longer than 10 characters"),
    ]


def test_invalid_utf8_reports_its_line_and_byte(tmp_path):
    path = tmp_path / "bad.tsv"
    good = "".join(f"问题 {i}\t答案 {i}\n" for i in range(5000)).encode()
    # issue 12: this was reported as line 0 with an offset into the decoder's chunk
    path.write_bytes(good + "问题\t".encode() + b"\xff\xfe\n" + "最后\t一行\n".encode())
    with pytest.raises(FormatError) as info:
        read_rows(path, "tsv")
    assert info.value.line == 5001
    assert (
        info.value.message == "not UTF-8 text (invalid start byte: byte 0xff at byte 8 of the line)"
    )
    result = read_rows(path, "tsv", skip_bad=True)
    assert len(result.rows) == 5001 and result.rows[-1].question == "最后"
    assert [e.line for e in result.skipped] == [5001]


def test_invalid_utf8_in_yaml_reports_its_line_and_byte(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_bytes("conversations:\n- - 你好\n  - 再".encode() + b"\xe4\xbd\n")
    with pytest.raises(
        FormatError, match="invalid continuation byte: byte 0xe4 at byte 8 of the line"
    ) as info:
        read_rows(path, "chatterbot")
    assert info.value.line == 3


def test_deep_jsonl_lines_are_bad_lines(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text(
        '{"question": "q1", "answer": "a1"}\n'
        + "[" * 100_000
        + "]" * 100_000
        + "\n"  # issue 12: RecursionError, exit 1, even with --skip-bad
        + '{"question": "q3", "answer": "a3", '
        '"tags": [[[[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]]]}\n'
        + '{"question": "q4", "answer": "a4"}\n',
        encoding="utf-8",
    )
    with pytest.raises(FormatError, match="JSON nested deeper than 20 levels") as info:
        read_rows(path, "jsonl")
    assert info.value.line == 2
    result = read_rows(path, "jsonl", skip_bad=True)
    assert [r.question for r in result.rows] == ["q1", "q4"]
    assert [(e.line, e.message) for e in result.skipped] == [
        (2, "JSON nested deeper than 20 levels"),
        (3, "JSON nested deeper than 20 levels"),
    ]


def test_load_json_depth_boundary():
    assert load_json("[[1]]", 2) == [[1]]
    assert load_json('{"a": [1]}', 2) == {"a": [1]}
    assert load_json("3", 1) == 3
    for text in ("[[[1]]]", '{"a": {"b": []}}'):
        with pytest.raises(NestingError):
            load_json(text, 2)


def test_lone_surrogates_are_refused_with_their_position(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(
        '{"question": "q1", "answer": "a1"}\n{"question": "ab\\ud800", "answer": "x"}\n'
        '{"question": "q", "answer": "a", "tags": ["\\udfff"]}\n',
        encoding="utf-8",
    )
    with pytest.raises(FormatError) as info:
        read_rows(path, "jsonl")
    assert (info.value.line, info.value.message) == (
        2,
        "question contains a lone surrogate U+D800 at character 3",
    )
    result = read_rows(path, "jsonl", skip_bad=True)
    assert [r.question for r in result.rows] == ["q1"]
    assert result.skipped[1].message == "tag contains a lone surrogate U+DFFF at character 1"
    with pytest.raises(FormatError) as info:
        parse_content("q\ta\nq2\ud800\ta2\n", "tsv", skip_bad=True)
    assert (info.value.line, info.value.message) == (
        2,
        "the line contains a lone surrogate U+D800 at character 3",
    )


def test_parse_content_matches_read_rows(tmp_path, tiny_tsv):
    text = tiny_tsv.read_text(encoding="utf-8") + "broken\n"
    from_file = read_rows(tiny_tsv, "tsv")
    from_text = parse_content(text, "tsv", skip_bad=True)
    assert from_text.rows == [Row(r.line, r.question, r.answer) for r in from_file.rows]
    assert [(e.path, e.line) for e in from_text.skipped] == [("<content>", 21)]


FORMULAS = [
    ("=1+2", '=HYPERLINK("http://x")'),
    ("+86 电话", "-5 元"),
    ("@SUM(A1)", "普通 回答"),
    ("正常 问题", "-"),
    ("a=b 不是 公式", "tab\t=inside"),
]


def test_tsv_export_neutralizes_formula_cells(tmp_path):
    kb = KnowledgeBase(tmp_path / "kb.sqlite")
    kb.add_many((q, a, ()) for q, a in FORMULAS)
    safe, raw = io.StringIO(), io.StringIO()
    write_pairs(kb.iter_pairs(), safe, "tsv")
    write_pairs(kb.iter_pairs(), raw, "tsv", raw_cells=True)
    cells = [line.split("\t") for line in safe.getvalue().splitlines()]
    assert cells == [
        ["'=1+2", '\'=HYPERLINK("http://x")'],
        ["'+86 电话", "'-5 元"],
        ["'@SUM(A1)", "普通 回答"],
        ["正常 问题", "'-"],
        ["a=b 不是 公式", "tab =inside"],
    ]
    assert all(not c.startswith(FORMULA_PREFIXES) for row in cells for c in row)
    assert [line.split("\t") for line in raw.getvalue().splitlines()][:2] == [
        ["=1+2", '=HYPERLINK("http://x")'],
        ["+86 电话", "-5 元"],
    ]
    jsonl = io.StringIO()
    write_pairs(kb.iter_pairs(), jsonl, "jsonl")  # JSONL is not a spreadsheet format: as stored
    assert json.loads(jsonl.getvalue().splitlines()[0])["question"] == "=1+2"


def test_neutralized_export_round_trip_keeps_the_quote(tmp_path):
    """Import never rewrites text: a neutralized cell comes back with its quote; raw cells
    round-trip."""
    kb = KnowledgeBase(tmp_path / "kb.sqlite")
    kb.add_many((q, a, ()) for q, a in FORMULAS[:4])
    for raw_cells in (False, True):
        out = tmp_path / f"export-{raw_cells}.tsv"
        with out.open("w", encoding="utf-8") as f:
            write_pairs(kb.iter_pairs(), f, "tsv", raw_cells=raw_cells)
        back = [(r.question, r.answer) for r in read_rows(out, "tsv").rows]
        expected = [
            (q, a) if raw_cells else (neutralize_cell(q), neutralize_cell(a))
            for q, a in FORMULAS[:4]
        ]
        assert back == expected
    assert neutralize_cell("=x") == "'=x" and neutralize_cell("x=") == "x="


def test_jsonl_phrasings_round_trip(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"question": "什么时候发货", '
        '"phrasings": ["几时发货", "什么时候发货", "几时发货"], "answer": "今天"}\n'
        '{"question": "q", "answer": "a", "phrasings": "几时发货"}\n'
        '{"question": "q", "answer": "a", "phrasings": ["ok", " "]}\n',
        encoding="utf-8",
    )
    with pytest.raises(FormatError, match="'phrasings' must be a list of strings") as info:
        read_rows(path, "jsonl")
    assert info.value.line == 2
    result = read_rows(path, "jsonl", skip_bad=True)
    assert [e.message for e in result.skipped] == [
        "'phrasings' must be a list of strings",
        "empty phrasing",
    ]
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
