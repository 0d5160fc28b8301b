"""The rules applied before retrieval: each rule's boundaries, on the bundled lexicon and on small
lexicons written here (so a boundary is checked by its number, not by the bundled file's value)."""

import pytest

from alime.config import BUNDLED_DATA
from alime.guards import (
    Gibberish,
    GuardReplies,
    Guards,
    compact,
    complaint,
    gibberish,
    load_lexicon,
    order_status,
    person,
)
from alime.types import Rule

LEXICON = load_lexicon(BUNDLED_DATA / "text" / "guards.toml")
REPLIES = GuardReplies(complaint="C", person="P", order_status="O", rephrase="R")
GUARDS = Guards(LEXICON, REPLIES)


def write(tmp_path, text):
    path = tmp_path / "lexicon.toml"
    path.write_text(text, encoding="utf-8")
    return load_lexicon(path)


def test_compact_keeps_letters_and_digits_only():
    assert compact("投 诉！😂 ＡＢＣ１２") == "投诉abc12"
    assert compact("？？？") == ""


@pytest.mark.parametrize(
    "query, evidence",
    [
        ("我要投诉", "投诉"),
        ("投 诉！", "投诉"),
        ("我要投述你们", "投述"),
        ("给你差评", "差评"),
        ("你们就是骗子", "骗子"),
        ("我要打12315", "12315"),
        ("这也太坑了吧", "太坑"),
        ("什么垃圾东西", "垃圾"),
        ("拉圾质量", "拉圾"),
        ("我要举报", "举报"),
        ("我不想等了，投诉", "投诉"),  # 等 is no filler: the negation does not reach 投诉
        ("太过分了 必须给我个说法", "太过分"),
        ("你们是不是骗子", "骗子"),  # A-not-A: no negation
    ],
)
def test_complaints(query, evidence):
    assert complaint(compact(query), LEXICON) == evidence


@pytest.mark.parametrize(
    "query",
    [
        "放心不会给你差评的",
        "没有投诉",
        "不是骗子吧",
        "别给差评",  # negated
        "垃圾袋有货吗",
        "有垃圾桶吗",  # products
        "什么时候发货",
        "包邮吗",
        "能便宜点吗",
    ],
)
def test_not_complaints(query):
    assert complaint(compact(query), LEXICON) is None


@pytest.mark.parametrize(
    "query, evidence",
    [
        ("转人工", "转人工"),
        ("人工", "人工"),
        ("人工！", "人工"),
        ("要人工客服", "人工客服"),
        ("我要人工", "我要人工"),
        ("叫你们老板出来", "叫你们老板"),
        ("找你们店长", "找你们店长"),
        ("你是真人吗", "真人"),
        ("我不想等了转人工", "转人工"),
        ("有没有活人啊", "活人"),
        ("能不能转人工", "转人工"),  # A-not-A questions are no negation
        ("转接客服", "转接客服"),
        ("我要和你们客服本人说", "客服本人"),
    ],
)
def test_requests_for_a_person(query, evidence):
    assert person(compact(query), LEXICON) == evidence


@pytest.mark.parametrize(
    "query",
    [
        "不用转人工",
        "不需要人工客服",
        "是真人实拍吗",
        "你是人工智能吗",
        "老板在吗",
        "客服在吗",
        "人工草坪多少钱一平",
    ],
)
def test_not_requests_for_a_person(query):
    assert person(compact(query), LEXICON) is None


@pytest.mark.parametrize(
    "query",
    [
        "我的订单123456到哪了",
        "订单号123456",
        "123456这个订单呢",
        "我的快递到哪了",
        "我买的东西怎么还没到",
        "我的订单发货了吗",
        "包裹还没到",
        "货到了吗",
        "123456789012345",  # a pasted order number: 15 digits
        "帮我查下快递单号",
        "都三天了还没收到货",  # not received, said before the item
        "一直没有收到快递",
    ],
)
def test_one_orders_status(query):
    assert order_status(compact(query), LEXICON) is not None


@pytest.mark.parametrize(
    "query",
    [
        "订单12345",  # 5 digits: below min_number_digits (6)
        "12345678901234",  # 14 digits alone: below bare_number_digits (15)
        "什么时候发货",
        "什么时候到货",
        "快递一般几天到",
        "有货吗",
        "我的订单能改地址吗",
        "发什么快递",
        "L码还没到货吗",  # a restock, not a parcel
        "新疆收不到货吗",  # where the shop delivers
    ],
)
def test_not_one_orders_status(query):
    assert order_status(compact(query), LEXICON) is None


def test_order_gap_boundary(tmp_path):
    lex = write(
        tmp_path,
        '[order_status]\nowners = ["我的"]\nitems = ["快递"]\nstatus = ["到哪"]\nmax_gap = 2\n',
    )
    assert order_status("我的快递到哪", lex) == "我的快递到哪"
    assert order_status("我的那个快递到哪", lex) is not None  # 2 characters between: within
    assert order_status("我的那一个快递到哪", lex) is None  # 3: beyond max_gap


@pytest.mark.parametrize(
    "query, kind",
    [
        ("asdfgh", Gibberish.KEYBOARD),
        ("ASDF", Gibberish.KEYBOARD),
        ("qwer qwer", Gibberish.KEYBOARD),
        ("jjjjj", Gibberish.KEYBOARD),
        ("lkjhg", Gibberish.KEYBOARD),
        ("sdfkh", Gibberish.KEYBOARD),
        ("😂😂😂", Gibberish.EMOJI),
        ("👍🏻", Gibberish.EMOJI),
        ("？？？", Gibberish.PUNCTUATION),
        ("...", Gibberish.PUNCTUATION),
        ("123", Gibberish.DIGITS),
        ("1 2 3！", Gibberish.DIGITS),
        ("\u200b", Gibberish.EMPTY),
        ("啊啊啊啊啊啊", Gibberish.REPEATED),
        ("嗯嗯嗯嗯", Gibberish.REPEATED),
    ],
)
def test_gibberish(query, kind):
    assert gibberish(query, LEXICON) == kind


@pytest.mark.parametrize(
    "query",
    [
        "包邮吗",
        "有货吗",
        "在吗",
        "发sf吗",
        "能便宜点吗",
        "嗯",
        "asdfgh包邮吗",
        "好😂",
        "ok",
        "hello",
        "sf",
        "iphone 13",
        "xl",
        "hi",
        "啊啊啊",
        "嗯嗯",
        "哈哈哈哈哈",  # 3 repeats: below min_repeat_any (4); laughter is small talk
    ],
)
def test_real_short_questions_pass(query):
    assert gibberish(query, LEXICON) is None


def test_keyboard_boundaries(tmp_path):
    lex = write(
        tmp_path,
        '[gibberish]\nkeyboard_rows = ["asdfghjkl"]\nmin_keyboard_run = 4\n'
        "min_repeat = 3\nmin_vowelless = 5\n",
    )
    assert gibberish("asd", lex) is None and gibberish("asdf", lex) == Gibberish.KEYBOARD
    assert gibberish("fdsa", lex) == Gibberish.KEYBOARD  # a row backwards
    assert gibberish("jj", lex) is None and gibberish("jjj", lex) == Gibberish.KEYBOARD
    assert gibberish("bcdf", lex) is None and gibberish("bcdfx", lex) == Gibberish.KEYBOARD
    assert gibberish("qwer", lex) is None  # that row is not in this lexicon


def test_guards_apply_the_rules_in_order():
    match = GUARDS.check("我要投诉，转人工")
    assert (match.rule, match.answer, match.handoff, match.evidence) == (
        Rule.COMPLAINT,
        "C",
        True,
        "投诉",
    )
    assert GUARDS.check("转人工").rule is Rule.PERSON
    assert GUARDS.check("我的订单123456到哪了").rule is Rule.ORDER_STATUS
    assert GUARDS.check("12315").rule is Rule.COMPLAINT  # a complaint, not digits
    rephrase = GUARDS.check("asdfgh")
    assert (rephrase.rule, rephrase.answer, rephrase.handoff) == (Rule.GIBBERISH, "R", False)
    for question in ("什么时候发货", "包邮吗", "你好", "今天天气怎么样"):
        assert GUARDS.check(question) is None, question


@pytest.mark.parametrize(
    "text, message",
    [
        ("[complaint]\nphrase = []\n", "unknown key(s) ['phrase'] in [complaint]"),
        ("[complain]\n", "unknown table(s) ['complain']"),
        ("[complaint]\nphrases = [1]\n", "complaint.phrases must be a list of non-empty strings"),
        ("[order_status]\nmax_gap = -1\n", "order_status.max_gap must be a non-negative integer"),
        ("[gibberish]\nvowels = 3\n", "gibberish.vowels must be a string"),
        ("complaint = 3\n", "[complaint] must be a table"),
        ("[complaint\n", "invalid TOML"),
    ],
)
def test_bad_lexicon_names_the_file_and_key(tmp_path, text, message):
    with pytest.raises(ValueError, match="lexicon.toml") as err:
        write(tmp_path, text)
    assert message in str(err.value)


def test_missing_lexicon(tmp_path):
    with pytest.raises(ValueError, match="lexicon file not found"):
        load_lexicon(tmp_path / "nope.toml")
