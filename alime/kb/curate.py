"""Turn raw chat logs into a knowledge base a shop would trust (``alime kb curate``).

A raw corpus row is one customer turn and the reply it got. Most rows of a real chat log are not
FAQ material: acknowledgements (好的 / 嗯), order numbers, questions that only make sense inside
their chat (那怎么办), replies that only make sense there (好的 / 稍等 / 帮您改了). The rest asks
the same few things many times, with different answers. Curation, in order (docs/kb-curation.md says
why each rule is what it is):

1. **Display text**: segmented text (``您好 拍下 后 72 小时``) is joined for display, without
   spaces between CJK characters and with spaces kept around Latin words and numbers
   (``您好拍下后 72 小时``): :func:`display_text`.
2. **Question rules**: each row's question is classified (:func:`question_verdict`): a greeting or
   thanks with a generic answer goes to the chit-chat output; order numbers, links,
   acknowledgement-only, context-bound, one-character and narrative (long) questions are dropped,
   each with a named :class:`Reason`.
3. **Grouping**: questions are keyed (:func:`question_key`: case, width, spaces, punctuation and
   sentence particles removed) and keys that differ by a deleted function character or two are
   merged (:func:`near_duplicate`) around the most frequent key; a group is ONE entry whose
   phrasings are its distinct display questions.
4. **Answers**: each answer is checked (:func:`answer_verdict`: numbers, links, content-free,
   yes/no to a statement, context-bound); a group keeps one answer by :func:`resolve` (most
   frequent normalized answer, then the one most similar to the others, then the longer one, then
   the first in code-point order) and every group with two or more usable answers is reported as
   a conflict with all its alternatives.
5. **Reviewed entries** (optional, :func:`read_reviewed`): a shop's reviewed FAQ (canonical
   question, the ways customers ask it, the answer it picked) is written first, as it is; a corpus
   group whose question key equals the key of a reviewed question or phrasing is merged into it
   (its questions become phrasings; the reviewed answer wins any conflict).

Everything is deterministic: the same input gives the same output, byte for byte.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from itertools import combinations
from pathlib import Path

from alime.kb.formats import Format, FormatError, Row, read_rows
from alime.text import is_punctuation, normalize

REPORT_JSON = "curate_report.json"
REPORT_MD = "curate_report.md"
CHITCHAT_TAG = "chitchat"
# Stamped on every FAQ entry grouped from a corpus (never on reviewed entries): the routing score
# can then weigh a shop's vetted entries above ones a rule derived from chat logs, and a reviewer
# who has checked an entry removes the tag (``alime kb edit ID --tags ...``).
UNREVIEWED_TAG = "unreviewed"
_PROGRESS_MIN_ROWS = 2000  # a progress bar only where the wait is noticeable


class Reason(str, Enum):
    """Why a row is not (or not wholly) in the curated KB."""

    QUESTION_NUMBER = "question_number"
    QUESTION_LINK = "question_link"
    SHORT_QUESTION = "short_question"
    LONG_QUESTION = "long_question"
    ACKNOWLEDGEMENT = "acknowledgement_question"
    GREETING_WITHOUT_GENERIC_ANSWER = "greeting_without_generic_answer"
    CONTEXT_BOUND_QUESTION = "context_bound_question"
    OWN_ORDER_QUESTION = "own_order_question"
    NOT_A_QUESTION = "not_a_question"
    ANSWER_NUMBER = "answer_number"
    ANSWER_LINK = "answer_link"
    CONTENT_FREE_ANSWER = "content_free_answer"
    YES_NO_TO_STATEMENT = "yes_no_answer_to_statement"
    BARE_YES_NO_ANSWER = "bare_yes_no_answer"
    CONTEXT_BOUND_ANSWER = "context_bound_answer"


REASON_TEXT: dict[Reason, str] = {
    Reason.QUESTION_NUMBER: "the question holds an order, item, tracking or phone number "
    "(7+ digits)",
    Reason.QUESTION_LINK: "the question holds a link",
    Reason.SHORT_QUESTION: "the question is one character once particles are removed (蓝？)",
    Reason.LONG_QUESTION: "the question is a narrative turn, not an FAQ question "
    "(over the length limit)",
    Reason.ACKNOWLEDGEMENT: "the question only acknowledges or reports (好的, 嗯, 对的, 已付款)",
    Reason.GREETING_WITHOUT_GENERIC_ANSWER: "a greeting or thanks whose answer is not a "
    "generic reply",
    Reason.CONTEXT_BOUND_QUESTION: "the question needs its chat to make sense "
    "(是吗, 那怎么办, 他买的...)",
    Reason.OWN_ORDER_QUESTION: "about the customer's own order or earlier purchase (我的快递, "
    "昨天拍的): only the order's data answers it",
    Reason.NOT_A_QUESTION: "a statement, request or complaint: no question word or question "
    "particle (太慢了, 帮我改一下)",
    Reason.ANSWER_NUMBER: "the answer holds an order, item, tracking or phone number (7+ digits)",
    Reason.ANSWER_LINK: "the answer holds a link",
    Reason.CONTENT_FREE_ANSWER: "the answer says nothing (好的, 嗯嗯, 稍等, 在的, 亲)",
    Reason.YES_NO_TO_STATEMENT: "a bare yes/no answer (是的, 可以) to something that is not a "
    "yes/no question",
    Reason.BARE_YES_NO_ANSWER: "a bare yes/no answer (是的, 有的哦, 可以的) to a yes/no question: "
    "it names no topic, so a near match to another question (another product, another shop) "
    "gets a confident yes or no that may be false",
    Reason.CONTEXT_BOUND_ANSWER: "the answer acts on one order, asks back, or continues its chat "
    "(帮您改了, 您哪里的, 那...)",
}


# -- display text ---------------------------------------------------------------------------------
def _latin_or_digit(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def display_text(text: str) -> str:
    """Text as people write it, from word-segmented (or already natural) text.

    Whitespace between two tokens is removed, except between a Latin word or number and a word
    (``72 小时``, ``iPhone X``) where it helps reading; never next to punctuation. Characters are
    not otherwise changed (full-width punctuation stays full-width).
    """
    tokens = text.split()
    out: list[str] = []
    for tok in tokens:
        if out:
            a, b = out[-1][-1], tok[0]
            if (
                (_latin_or_digit(a) or _latin_or_digit(b))
                and not is_punctuation(a)
                and not is_punctuation(b)
            ):
                out.append(" ")
        out.append(tok)
    return "".join(out)


# -- keys -----------------------------------------------------------------------------------------
# Sentence particles and politeness that do not change what is asked, stripped at the edges of
# each clause (not inside: 亲 is also in 亲自, 呢 in 呢子).
# Leading greetings, addresses and acknowledgements too (你好, 老板, 你们家, 好的): "你家发什么快递"
# asks what "发什么快递" asks.
_LEADING = (
    "请问一下",
    "请问",
    "亲爱的",
    "亲爱哒",
    "亲亲",
    "亲",
    "你好",
    "您好",
    "老板",
    "掌柜的",
    "掌柜",
    "你们家",
    "你家",
    "你们",
    "好的吧",
    "好的",
    "好吧",
    "嗯嗯",
    "恩恩",
    "哦哦",
    "大概",
    "预计",
    "哦",
    "额",
    "呃",
    "嗯",
    "恩",
    "啊",
)
_TRAILING = (
    "亲亲",
    "亲",
    "啊",
    "呢",
    "吗",
    "嘛",
    "么",
    "哦",
    "噢",
    "喔",
    "呀",
    "吧",
    "啦",
    "哈",
    "呐",
    "咯",
    "哒",
    "呗",
    "额",
    "嘞",
    "哟",
    "捏",
)


def _clauses(text: str) -> list[str]:
    """Normalized text (NFKC, lower case) cut at punctuation, spaces removed."""
    text = normalize(text).replace(" ", "")
    out, current = [], []
    for ch in text:
        if unicodedata.category(ch)[0] in ("P", "S"):
            if current:
                out.append("".join(current))
            current = []
        else:
            current.append(ch)
    if current:
        out.append("".join(current))
    return out


# A leading 亲 that starts a word is not the address "dear" (亲自, 亲戚, 亲手...).
_QIN_WORDS = frozenset("自戚人子手身眼属口爱密情切友朋生")


def _strip_particles(clause: str) -> str:
    changed = True
    while changed and clause:
        changed = False
        for p in _LEADING:
            if (
                clause.startswith(p)
                and len(clause) > len(p)
                and not (p == "亲" and clause[1] in _QIN_WORDS)
            ):
                clause, changed = clause[len(p) :], True
                break
        for p in _TRAILING:
            if clause.endswith(p) and len(clause) > len(p):
                clause, changed = clause[: -len(p)], True
                break
    return clause


def question_key(text: str) -> str:
    """The grouping key: normalized, punctuation and spaces removed, sentence particles stripped
    from each clause's edges (``亲，什么 时候 发货 呀？`` -> ``什么时候发货``). A clause that is
    only a particle keeps it (``哦`` stays ``哦``)."""
    clauses = [_strip_particles(c) for c in _clauses(text)]
    # A clause that is only particles, greetings or openers ("亲，" "你好，") is dropped when
    # another clause has content.
    content = [c for c in clauses if not _segmentable(c, _PARTICLES, _GREET, frozenset(_LEADING))]
    return "".join(content or clauses)


answer_key = question_key  # answers are compared after the same normalization


# -- word lists -----------------------------------------------------------------------------------
_PARTICLES = frozenset(
    "啊 呢 吗 哦 呀 亲 请问 吧 么 嘛 啦 哈 呐 噢 喔 咯 哒 呗 额 嘞 哟 呃 捏 的 了 哈哈 亲亲 亲爱的 "
    "亲爱哒 滴 呵呵 嘻嘻 哇 耶 啥".split()
)
_ACK = frozenset(
    "好 好的 好滴 好哒 好嘞 好吧 好了 嗯 恩 嗯嗯 恩恩 嗯呢 恩呢 哦哦 噢噢 对 对的 是 是的 是啊 行 "
    "行吧 可以 可以了 ok okay 知道 知道了 我知道 明白 明白了 了解 收到 没事 没问题 没关系 那好 "
    "那就好 就好 这样 这样啊 原来 原来如此 晓得 懂 懂了 也行 也好 算了 不用 不用了 一样 那行 ok了 "
    "嗯好 恩好 拍了 拍好 拍好了 已拍 拍下 拍下了 付款 付款了 已付款 付了 已付 下单 下单了 已下单 "
    "收到了 好评 好评了 地址 那 我 你 您 看看 看下 等 等等 稍等 也是 啦啦 咯咯 哈哈哈 麻烦 麻烦了 "
    "麻烦你 麻烦你了 那个 这个 已经 提交 提交了 己提交 已提交 提交过了 确认 确认了 改好了 改了 "
    "修改了 好了吗".split()
)
_GREET = frozenset(
    "你好 您好 在吗 在 在不 在么 在嘛 在没 在没有 有人 有人吗 有人在吗 人呢 老板 掌柜 掌柜的 客服 "
    "店家 卖家 小二 美女 亲 hello hi 哈喽 哈罗 嗨 早 早上好 中午好 下午好 晚上好 你们好".split()
)
_THANKS = frozenset(
    "谢谢 谢 谢啦 谢了 谢咯 谢谢啦 谢谢了 谢谢咯 多谢 谢谢你 谢谢您 谢谢亲 感谢 辛苦了 辛苦 thank "
    "thanks thx 3q 拜拜 再见 88".split()
)
# Replies that say nothing on their own.
_FILLER = _PARTICLES | frozenset(
    "好 好的 好滴 好哒 好嘞 好吧 好了 嗯 恩 嗯嗯 恩恩 嗯呢 恩呢 哦哦 噢噢 ok okay 收到 明白 明白了 "
    "了解 知道 知道了 稍等 稍等下 稍等一下 请稍等 等下 等一下 一下 马上 在 在的 在呢 在线 您好 "
    "你好 客官 小二 亲爱 么么哒 么么 哈哈 嗯嗯亲 恩恩亲 呦 哦哦哦 这边 看下 看看 我 您 帮 查 查下 "
    "查看 给您 帮您 不好意思 抱歉 非常抱歉 实在抱歉 对不起".split()
)
# Bare yes/no replies: an answer only to a yes/no question.
_YES_NO = frozenset(
    "是 是的 对 对的 可以 可以的 有 有的 没有 没 不是 不对 不可以 不行 行 不能 能 能的 会 会的 "
    "不会 不用 要 要的 需要 不需要 没错 不要 包 包的 不包 都 都是 都有 一样 一样的 不一样 肯定 "
    "当然 必须".split()
)
_GREET_REPLY = frozenset(
    "您好 你好 在的 在呢 在 在哦 有什么可以帮您 有什么可以帮您的 有什么可以帮到您 有什么可以帮助您 "
    "请问有什么可以帮您 欢迎光临 为您服务 很高兴为您服务".split()
)
_THANKS_REPLY = (
    "不客气",
    "客气",
    "不用谢",
    "应该的",
    "谢谢",
    "感谢",
    "支持",
    "光临",
    "欢迎",
    "愉快",
)

# Questions that only make sense after something else was said (whole key).
_CONTEXT_KEYS = frozenset(
    "是 是吗 是不是 真的 真的吗 对吗 对不对 那怎么办 怎么办 咋办 什么意思 啥意思 是什么意思 为什么 "
    "为啥 怎么回事 怎么了 咋了 然后 然后呢 还有 还有呢 这个呢 那个呢 这个 那个 哪个 多少 什么 确定 "
    "确定吗 可以吗 可以不 行吗 行不行 好吗 能吗 能不能 是这个吗 这么久 这样吗 这样啊 不是 不对 "
    "不行 没有 有 要 不要 还没 还没有 贵 太贵 太贵了 便宜点 便宜 哪里 在哪 为什么呢 怎么说 然后呢 "
    "那我呢 那个呢 好的呢 多久 几天 啥时候 什么时候 那就 那好吧 是啊 是的吗 有吗 没有吗 要吗 "
    "对的吗".split()
)
# A question or answer that opens with one of these continues its chat.
_CONNECTIVE = re.compile(
    r"^(那|那么|所以|还是|但是|可是|不过|然后|而且|因为|不然|否则|就是|这是|或者|哎|另外)"
)
# References to earlier turns or third persons (其他/其它 are not pronouns).
_BACK_REFERENCE = re.compile(
    r"刚才|刚刚|上面|之前说|你说|你们说|你不是说|不是说|(?<!其)[他她它]"
    r"|[这那][两几]|上次|上回"
)
# The customer's own order or purchase: only that order's data answers it.
_OWN_ORDER = re.compile(
    r"我的|我们的|我家的|昨天|前天|今早|刚拍|刚买|已拍|已经拍|已买|买过|拍的|买的|"
    r"还没(到|收到|有物流)|物流|单号|派件|我刚|我这个|补发|答复|你的快递"
)
# Replies that act on this customer's order or ask back for context.
_ORDER_ACTION = re.compile(
    r"(帮|给)(您|你|亲)(改|备注|查|催|申请|退|补|换|修改|登记|留言|联系|核实|处理|安排|加急|免邮|退差|问|通知|跟进)"
    r"|已经(联系|备注|改|留言|申请|安排|催|登记|帮|给|处理|退|发|寄|通知|拦截|换|补|修改|到|点|打包)"
    r"|改好|改不了|撤单|拦截|催下|催一下|帮亲|给亲|稍等|我(问|看|查|帮|去)|帮您看|帮你看|问下仓库"
    r"|(您|你)的(订单|货|快递|包裹|单号|地址|宝贝)|核对|截图|订单号|单号发|哪个订单"
)
_ASKS_BACK = re.compile(r"哪|吗$|么$|[?？]$|什么$")
# What makes a customer turn a question (FAQ questions are questions; statements, requests and
# complaints are answered by what the chat was about).
_QUESTION_MARK = re.compile(
    r"[吗么嘛?？]|什么|啥|怎|如何|多少|多久|多大|多长|多重|几|哪|谁|为什么|为啥|"
    r"是否|能否|可否|有无|(.)[不没]\1"
)
_NUMBER = re.compile(r"\d{7,}")
_LINK = re.compile(r"https?://|www\.|\.(com|cn|net|htm)\b|tb\.cn|t\.cn/", re.IGNORECASE)
_YES_NO_QUESTION = re.compile(
    r"[吗嘛吧]|(?<![什怎这那多要])么|是否|能否|可否|有无|(.)[不没]\1|(不|没|没有)$"
)


def _segmentable(text: str, *vocabularies: frozenset[str]) -> list[str] | None:
    """``text`` cut into words of the vocabularies (fewest words, longest first), or None."""
    words = frozenset().union(*vocabularies)
    longest = max((len(w) for w in words), default=0)
    best: list[list[str] | None] = [[]] + [None] * len(text)
    for end in range(1, len(text) + 1):
        for size in range(min(longest, end), 0, -1):
            prev = best[end - size]
            piece = text[end - size : end]
            if (
                prev is not None
                and piece in words
                and (best[end] is None or len(prev) + 1 < len(best[end]))
            ):
                best[end] = prev + [piece]
    return best[len(text)]


def _plain(text: str) -> str:
    """Normalized, without spaces and punctuation (particles kept)."""
    return "".join(_clauses(text))


# -- verdicts -------------------------------------------------------------------------------------
class Kind(str, Enum):
    """What a question is."""

    FAQ = "faq"
    GREETING = "greeting"
    THANKS = "thanks"


@dataclass(frozen=True)
class CurateOptions:
    """The rules' parameters.

    Attributes:
        max_question_chars: Longer questions (characters of the key) are narrative turns.
        near_duplicates: Merge keys that differ by deleted characters (:func:`near_duplicate`).
        min_near_chars: Keys shorter than this are only grouped when equal.
        tags: Added to every curated entry.
        chitchat_tags: Added to every chit-chat entry.
        keep_bare_yes_no: Keep bare yes/no answers to yes/no questions (是的, 有的哦); off by
            default (see :func:`answer_verdict`).
    """

    max_question_chars: int = 15
    near_duplicates: bool = True
    min_near_chars: int = 3
    tags: tuple[str, ...] = ()
    chitchat_tags: tuple[str, ...] = (CHITCHAT_TAG,)
    keep_bare_yes_no: bool = False

    def __post_init__(self) -> None:
        if self.max_question_chars < 2 or self.min_near_chars < 2:
            raise ValueError("max_question_chars and min_near_chars must be >= 2")


def question_verdict(
    question: str, options: CurateOptions = CurateOptions()
) -> tuple[Kind, Reason | None]:
    """Classify a (raw or display) question: its kind, and why it is dropped (None: kept).

    Greetings and thanks are kinds, not reasons: whether they are kept depends on the answer
    (:func:`chitchat_answer_ok`).
    """
    plain = _plain(question)
    if _NUMBER.search(plain):
        return Kind.FAQ, Reason.QUESTION_NUMBER
    if _LINK.search(normalize(question)):
        return Kind.FAQ, Reason.QUESTION_LINK
    if (
        plain
        and _segmentable(plain, _GREET, _PARTICLES)
        and any(w in _GREET for w in _segmentable(plain, _GREET, _PARTICLES))
    ):
        return Kind.GREETING, None
    thanks = _segmentable(plain, _GREET, _THANKS, _ACK, _PARTICLES)
    if plain and thanks and any(w in _THANKS for w in thanks):
        return Kind.THANKS, None
    key = question_key(question)
    if plain in _CONTEXT_KEYS or key in _CONTEXT_KEYS:  # before acknowledgements: 是吗 is 是 + 吗
        return Kind.FAQ, Reason.CONTEXT_BOUND_QUESTION
    if not plain or _segmentable(plain, _ACK, _GREET, _PARTICLES):
        return Kind.FAQ, Reason.ACKNOWLEDGEMENT
    if len(key) <= 1:
        return Kind.FAQ, Reason.SHORT_QUESTION
    if len(key) > options.max_question_chars:
        return Kind.FAQ, Reason.LONG_QUESTION
    if _CONNECTIVE.match(key) or _BACK_REFERENCE.search(key):
        return Kind.FAQ, Reason.CONTEXT_BOUND_QUESTION
    if _OWN_ORDER.search(key):
        return Kind.FAQ, Reason.OWN_ORDER_QUESTION
    if not _QUESTION_MARK.search(normalize(question).replace(" ", "")):
        return Kind.FAQ, Reason.NOT_A_QUESTION
    return Kind.FAQ, None


def answer_verdict(question: str, answer: str, keep_bare_yes_no: bool = False) -> Reason | None:
    """Why ``answer`` cannot be an FAQ answer to ``question`` (None: it can).

    A bare yes/no answer to a yes/no question is dropped unless ``keep_bare_yes_no``: in a chat
    log it answered one product's question (有现货吗 -> 有的哦), and retrieval would give it to
    the next near match as well.
    """
    plain = _plain(answer)
    if _NUMBER.search(plain):
        return Reason.ANSWER_NUMBER
    if _LINK.search(normalize(answer)):
        return Reason.ANSWER_LINK
    if not plain or _segmentable(plain, _FILLER):
        return Reason.CONTENT_FREE_ANSWER
    if _segmentable(plain, _YES_NO, _FILLER) and not _YES_NO_QUESTION.search(_plain(question)):
        # checked on the plain question (particles kept): 吗 and 吧 are what make it yes/no
        return Reason.YES_NO_TO_STATEMENT
    if not keep_bare_yes_no and _segmentable(plain, _YES_NO, _FILLER):
        return Reason.BARE_YES_NO_ANSWER
    key = answer_key(answer)
    if (
        _CONNECTIVE.match(key)
        or _ORDER_ACTION.search(plain)
        or (len(key) <= 12 and _ASKS_BACK.search(plain))
    ):
        return Reason.CONTEXT_BOUND_ANSWER
    return None


def chitchat_answer_ok(kind: Kind, answer: str) -> bool:
    """A generic reply to a greeting (您好, 在的, 有什么可以帮您) or thanks (不客气, 谢谢支持):
    nothing specific to one order, no numbers or links, not long."""
    plain = _plain(answer)
    if (
        not plain
        or len(plain) > 60
        or _NUMBER.search(plain)
        or _LINK.search(answer)
        or _ORDER_ACTION.search(plain)
    ):
        return False
    if kind is Kind.GREETING:
        words = _segmentable(plain, _GREET_REPLY, _FILLER)
        return bool(words) and any(w in _GREET_REPLY for w in words)
    return any(w in plain for w in _THANKS_REPLY)


# -- near duplicates ------------------------------------------------------------------------------
# Characters whose deletion leaves the question asking the same thing: particles, modal and
# function words, pronouns, and 发/货 (发什么快递 / 什么快递, 今天发货吗 / 今天发吗). A deleted
# 错 (发错货了 / 发货了), 不 or a digit would change the question.
_DELETABLE = frozenset(
    "能可以会的了是在要还就都也一下点个们我你您请问吗呢啊哦呀亲嘛么吧啦哈嗯恩额"
    "得地着过给把这那有发货先再又快啥"
)


def _max_deleted(length: int) -> int:
    return 1 if length <= 8 else 2


def near_duplicate(a: str, b: str, min_chars: int = 3) -> bool:
    """Whether keys ``a`` and ``b`` ask the same thing: the shorter is the longer with one
    character deleted (two when the longer has 9+), both have ``min_chars`` or more, and every
    deleted character is a function character (``_DELETABLE``: 能, 可以, 的, 了, 发, 货...).

    Deletions only, no substitutions: on this corpus a one-character substitution usually changes
    the question (今天/明天发货, 豆沙/蛋黄多少钱) while a deletion drops a function word
    (今天能发货 / 今天发货, 发什么快递 / 什么快递); see docs/kb-curation.md for the samples.
    """
    short, long_ = sorted((a, b), key=len)
    if len(short) < min_chars or not 0 < len(long_) - len(short) <= _max_deleted(len(long_)):
        return False
    deleted, i = [], 0
    for ch in long_:  # greedy subsequence match; the leftover characters are the deleted ones
        if i < len(short) and ch == short[i]:
            i += 1
        else:
            deleted.append(ch)
    return i == len(short) and all(ch in _DELETABLE for ch in deleted)


def _deletions(key: str, limit: int) -> set[str]:
    out: set[str] = set()
    for n in range(1, limit + 1):
        for drop in combinations(range(len(key)), n):
            out.add("".join(ch for i, ch in enumerate(key) if i not in drop))
    return out


def group_keys(counts: Counter[str], options: CurateOptions = CurateOptions()) -> dict[str, str]:
    """Each key's group centre. Keys are taken by count (then length, then code points); a key
    joins the first centre it is a near duplicate of, else becomes a centre. Centres, not
    transitive closure: 今天能发货 ~ 今天发货 must not chain on to unrelated keys."""
    order = sorted(counts, key=lambda k: (-counts[k], len(k), k))
    centre_of: dict[str, str] = {}
    rank: dict[str, int] = {}
    by_deletion: dict[str, list[str]] = {}  # a deletion of a centre -> centres
    for key in order:
        found = None
        if options.near_duplicates and len(key) >= options.min_near_chars:
            candidates = list(by_deletion.get(key, ()))  # key is a centre minus characters
            candidates += [d for d in _deletions(key, _max_deleted(len(key))) if d in rank]
            matches = [c for c in candidates if near_duplicate(key, c, options.min_near_chars)]
            if matches:
                found = min(matches, key=rank.__getitem__)
        if found is None:
            found = key
            rank[key] = len(rank)
            if options.near_duplicates and len(key) >= options.min_near_chars:
                for d in _deletions(key, _max_deleted(len(key))):
                    by_deletion.setdefault(d, []).append(key)
        centre_of[key] = found
    return centre_of


# -- answers --------------------------------------------------------------------------------------
def char_f1(a: str, b: str) -> float:
    """F1 of two strings' character multisets."""
    ca, cb = Counter(a), Counter(b)
    common = sum((ca & cb).values())
    return 0.0 if not common else 2 * common / (len(a) + len(b))


@dataclass(frozen=True)
class Resolution:
    """The answer a group keeps, and which rule chose it."""

    key: str
    rule: str  # 'only' | 'frequency' | 'consensus' | 'informative' | 'order'


def resolve(answer_keys: Sequence[str]) -> Resolution:
    """Pick one normalized answer among a group's usable ones (one item per row).

    1. the most frequent; 2. on a tie, the one most similar to all the group's answers (mean
    character F1 over the rows, itself excluded once): the consensus; 3. then the longer (more
    informative); 4. then the first in code-point order, so the choice is deterministic.
    """
    counts = Counter(answer_keys)
    if len(counts) == 1:
        return Resolution(answer_keys[0], "only")
    top = max(counts.values())
    tied = sorted(k for k, n in counts.items() if n == top)
    if len(tied) == 1:
        return Resolution(tied[0], "frequency")

    def consensus(k: str) -> float:
        others = [(o, n - (o == k)) for o, n in counts.items()]
        total = sum(n for _, n in others)
        return sum(n * char_f1(k, o) for o, n in others) / total if total else 0.0

    scored = {k: round(consensus(k), 9) for k in tied}  # rounded: ties must not hinge on ulps
    best = max(scored.values())
    tied = [k for k in tied if scored[k] == best]
    if len(tied) == 1:
        return Resolution(tied[0], "consensus")
    longest = max(len(k) for k in tied)
    tied = [k for k in tied if len(k) == longest]
    return Resolution(tied[0], "informative" if len(tied) == 1 else "order")


# -- the pipeline ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Alternative:
    """One distinct (normalized) answer of a group."""

    answer: str
    rows: int
    lines: tuple[int, ...]


@dataclass(frozen=True)
class Entry:
    """One curated KB entry (a group of rows)."""

    question: str
    phrasings: tuple[str, ...]
    answer: str
    tags: tuple[str, ...]
    lines: tuple[int, ...]  # source lines of every row in the group
    # The group's distinct usable answers (most rows first); kept so that a merge into a reviewed
    # entry can report them all.
    alternatives: tuple[Alternative, ...] = ()
    reviewed: bool = False  # from the reviewed FAQ file (its question, phrasings, answer kept)

    def to_json(self) -> dict:
        return {
            "question": self.question,
            "phrasings": list(self.phrasings),
            "answer": self.answer,
            "tags": list(self.tags),
        }


@dataclass(frozen=True)
class Conflict:
    """A group whose rows answer differently, and the answer kept."""

    question: str
    kept: str
    rule: str
    alternatives: tuple[Alternative, ...]


@dataclass(frozen=True)
class Dropped:
    """A row left out, and why."""

    line: int
    reason: Reason
    question: str
    answer: str


@dataclass(frozen=True)
class Merge:
    """A corpus group merged into a reviewed entry."""

    reviewed: str  # the reviewed entry's question
    question: str  # the group's primary question
    key: str  # the question key they share
    lines: tuple[int, ...]
    answer: str  # the answer the group would have kept
    conflict: bool  # its answer differs (normalized) from the reviewed one, which wins


@dataclass
class CurateResult:
    """What curation made of the rows."""

    rows_in: int
    entries: list[Entry] = field(default_factory=list)
    chitchat: list[Entry] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    # Rows whose answer was unusable but whose question is kept as a phrasing of an entry.
    answers_discarded: list[Dropped] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)  # corpus groups merged into reviewed entries

    def counts(self) -> dict:
        by_reason = Counter(d.reason.value for d in self.dropped)
        discarded = Counter(d.reason.value for d in self.answers_discarded)
        return {
            "rows_in": self.rows_in,
            "rows_dropped": len(self.dropped),
            "dropped_by_reason": {r.value: by_reason.get(r.value, 0) for r in Reason},
            "rows_moved_to_chitchat": sum(len(e.lines) for e in self.chitchat),
            "rows_in_entries": sum(len(e.lines) for e in self.entries),
            "answers_discarded_by_reason": dict(sorted(discarded.items())),
            "groups": len(self.entries),
            "groups_of_two_or_more_rows": sum(len(e.lines) > 1 for e in self.entries),
            "entries_out": len(self.entries),
            "phrasings_out": sum(len(e.phrasings) for e in self.entries),
            "chitchat_entries_out": len(self.chitchat),
            "conflicts": len(self.conflicts),
            "reviewed_entries": sum(e.reviewed for e in self.entries),
            "groups_merged_into_reviewed": len(self.merges),
            "rows_merged_into_reviewed": sum(len(m.lines) for m in self.merges),
            "reviewed_conflicts": sum(m.conflict for m in self.merges),
        }


@dataclass(frozen=True)
class _Item:
    line: int
    question: str  # display
    answer: str  # display
    tags: tuple[str, ...]
    answer_reason: Reason | None


def curate_rows(
    rows: Sequence[Row],
    options: CurateOptions = CurateOptions(),
    progress: bool | None = None,
    reviewed: Sequence[Row] = (),
) -> CurateResult:
    """Curate parsed rows (see the module docstring for the rules).

    Args:
        rows: The rows of a corpus, as ``alime.kb.formats.read_rows`` returns them.
        options: Rule parameters.
        progress: Show a progress bar on stderr (default: for 2,000+ rows).
        reviewed: A reviewed FAQ (:func:`read_reviewed`): written first, as it is, with the corpus
            groups that ask one of its questions merged in (:func:`merge_reviewed`).
    """
    from tqdm import tqdm

    result = CurateResult(rows_in=len(rows))
    faq: list[_Item] = []
    chat: list[_Item] = []
    show = len(rows) >= _PROGRESS_MIN_ROWS if progress is None else progress
    for row in tqdm(rows, desc="curate", unit="row", disable=not show, leave=False):
        question, answer = display_text(row.question), display_text(row.answer)
        kind, reason = question_verdict(question, options)
        if reason is not None:
            result.dropped.append(Dropped(row.line, reason, question, answer))
        elif kind is not Kind.FAQ:
            if chitchat_answer_ok(kind, answer):
                chat.append(_Item(row.line, question, answer, row.tags, None))
            else:
                result.dropped.append(
                    Dropped(row.line, Reason.GREETING_WITHOUT_GENERIC_ANSWER, question, answer)
                )
        else:
            faq.append(
                _Item(
                    row.line,
                    question,
                    answer,
                    row.tags,
                    answer_verdict(question, answer, options.keep_bare_yes_no),
                )
            )
    result.entries = _entries(faq, options, (*options.tags, UNREVIEWED_TAG), result)
    if reviewed:
        result.entries = merge_reviewed(reviewed, result.entries, result)
    result.chitchat = _entries(chat, options, options.chitchat_tags, None)
    return result


def _entries(
    items: list[_Item], options: CurateOptions, tags: tuple[str, ...], result: CurateResult | None
) -> list[Entry]:
    """Group ``items`` and make one entry per group with a usable answer (conflicts and dropped
    rows go to ``result``; None for chit-chat, whose answers were checked already)."""
    keys = [question_key(i.question) for i in items]
    centre = group_keys(Counter(keys), options)
    groups: dict[str, list[_Item]] = {}
    for item, key in zip(items, keys, strict=True):
        groups.setdefault(centre[key], []).append(item)
    entries: list[Entry] = []
    for members in groups.values():
        usable = [m for m in members if m.answer_reason is None]
        if not usable:
            if result is not None:
                result.dropped.extend(
                    Dropped(m.line, m.answer_reason, m.question, m.answer) for m in members
                )
            continue
        if result is not None:
            result.answers_discarded.extend(
                Dropped(m.line, m.answer_reason, m.question, m.answer)
                for m in members
                if m.answer_reason is not None
            )
        by_answer: dict[str, list[_Item]] = {}
        for m in usable:
            by_answer.setdefault(answer_key(m.answer), []).append(m)
        chosen = resolve([answer_key(m.answer) for m in usable])
        answer = _most_common([m.answer for m in by_answer[chosen.key]])
        questions = _by_frequency([m.question for m in members])
        alternatives = tuple(
            sorted(
                (
                    Alternative(
                        _most_common([m.answer for m in ms]),
                        len(ms),
                        tuple(sorted(m.line for m in ms)),
                    )
                    for ms in by_answer.values()
                ),
                key=lambda a: (-a.rows, a.lines),
            )
        )
        entry = Entry(
            questions[0],
            tuple(questions[1:]),
            answer,
            tuple(sorted({t for m in members for t in m.tags} | set(tags))),
            tuple(sorted(m.line for m in members)),
            alternatives,
        )
        entries.append(entry)
        if result is not None and len(by_answer) > 1:
            result.conflicts.append(Conflict(entry.question, answer, chosen.rule, alternatives))
    entries.sort(key=lambda e: (-len(e.lines), e.lines))
    if result is not None:
        order = {e.question: i for i, e in enumerate(entries)}
        result.conflicts.sort(key=lambda c: order[c.question])
        result.dropped.sort(key=lambda d: d.line)
        result.answers_discarded.sort(key=lambda d: d.line)
    return entries


REVIEWED_RULE = "reviewed"  # the conflict rule of a corpus group merged into a reviewed entry


def read_reviewed(path: str | Path) -> list[Row]:
    """Read a reviewed FAQ: JSONL entries as ``alime kb import --format jsonl`` reads them
    (``question``, ``phrasings``, ``answer``, ``tags``; other keys, such as the reviewer's
    ``source_lines``, are ignored).

    Raises:
        FormatError: a malformed entry, or two entries sharing a question key (a customer's
            question would have two reviewed answers), as ``FILE:LINE: message``.
    """
    rows = read_rows(path, Format.JSONL).rows
    owner: dict[str, int] = {}
    for row in rows:
        for text in (row.question, *row.phrasings):
            key = question_key(text)
            if owner.setdefault(key, row.line) != row.line:
                raise FormatError(
                    path,
                    row.line,
                    f"{text!r} has the question key {key!r} of the "
                    f"entry on line {owner[key]}: one question, one reviewed answer",
                )
    return rows


def merge_reviewed(
    reviewed: Sequence[Row], entries: Sequence[Entry], result: CurateResult | None = None
) -> list[Entry]:
    """Put the reviewed entries first and merge into them the corpus entries that ask their
    questions.

    A corpus entry is merged when the key (:func:`question_key`) of its primary question or of
    one of its phrasings, tried in that order, equals the key of a reviewed question or phrasing.
    Its questions become extra phrasings (after the reviewed ones, each once, never the reviewed
    question itself); the reviewed question, answer and tags stay as they are. When its answer
    differs (normalized) from the reviewed one, the merge is a conflict decided by
    ``"reviewed"``: the shop's review beats the chat log's majority.

    Args:
        reviewed: The reviewed FAQ rows (:func:`read_reviewed`), in file order.
        entries: The corpus entries (from grouping), in output order.
        result: Where merges and conflicts are recorded (its conflicts of merged groups are
            replaced by the reviewed-wins conflict).

    Returns:
        The reviewed entries in file order, then the corpus entries not merged, in their order.
    """
    owner: dict[str, int] = {}
    for i, row in enumerate(reviewed):
        for text in (row.question, *row.phrasings):
            owner.setdefault(question_key(text), i)
    merged: list[list[Entry]] = [[] for _ in reviewed]
    rest: list[Entry] = []
    for entry in entries:
        hit = next(
            (owner[k] for k in map(question_key, (entry.question, *entry.phrasings)) if k in owner),
            None,
        )
        if hit is None:
            rest.append(entry)
        else:
            merged[hit].append(entry)
    out: list[Entry] = []
    replaced: set[str] = set()
    for row, groups in zip(reviewed, merged, strict=True):
        phrasings = list(dict.fromkeys(row.phrasings))
        for group in groups:
            phrasings += [
                q
                for q in (group.question, *group.phrasings)
                if q != row.question and q not in phrasings
            ]
        lines = tuple(sorted(line for g in groups for line in g.lines))
        out.append(
            Entry(row.question, tuple(phrasings), row.answer, row.tags, lines, (), reviewed=True)
        )
        if result is None:
            continue
        for group in groups:
            conflict = any(
                answer_key(a.answer) != answer_key(row.answer) for a in group.alternatives
            )
            key = next(
                k for k in map(question_key, (group.question, *group.phrasings)) if k in owner
            )
            result.merges.append(
                Merge(row.question, group.question, key, group.lines, group.answer, conflict)
            )
            replaced.add(group.question)
            if conflict:
                result.conflicts.append(
                    Conflict(
                        row.question,
                        row.answer,
                        REVIEWED_RULE,
                        (Alternative(row.answer, 0, ()), *group.alternatives),
                    )
                )
    if result is not None:
        # A merged group's own conflict is superseded by the reviewed one; reviewed first.
        order = {e.question: i for i, e in enumerate(out + rest)}
        result.conflicts = sorted(
            (c for c in result.conflicts if c.rule == REVIEWED_RULE or c.question not in replaced),
            key=lambda c: order[c.question],
        )
    return out + rest


def _by_frequency(texts: Iterable[str]) -> list[str]:
    """Distinct texts, most frequent first (then shorter, then code-point order)."""
    counts = Counter(texts)
    return sorted(counts, key=lambda t: (-counts[t], len(t), t))


def _most_common(texts: Iterable[str]) -> str:
    return _by_frequency(texts)[0]


# -- files ----------------------------------------------------------------------------------------
def write_entries(entries: Iterable[Entry], path: str | Path) -> int:
    """Write entries as JSONL (``alime kb import --format jsonl`` reads it); returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for e in entries:
            f.write(json.dumps(e.to_json(), ensure_ascii=False) + "\n")
            n += 1
    return n


def curate_file(
    path: str | Path,
    fmt: Format | str,
    out: str | Path,
    chitchat_out: str | Path | None = None,
    report_dir: str | Path | None = None,
    options: CurateOptions = CurateOptions(),
    progress: bool | None = None,
    reviewed: str | Path | None = None,
) -> CurateResult:
    """Read a corpus file, curate it, write the entries (and chit-chat entries and report).

    Args:
        reviewed: A reviewed FAQ file (JSONL, :func:`read_reviewed`), written first and merged
            with the corpus groups that ask its questions.

    Raises:
        FormatError: a malformed row of the corpus or the reviewed file (``FILE:LINE:
            message``); nothing is written.
    """
    reviewed_rows = read_reviewed(reviewed) if reviewed is not None else []
    rows = read_rows(path, fmt).rows
    result = curate_rows(rows, options, progress, reviewed_rows)
    write_entries(result.entries, out)
    if chitchat_out is not None:
        write_entries(result.chitchat, chitchat_out)
    if report_dir is not None:
        write_report(result, report_dir, str(path), options)
    return result


def report_json(result: CurateResult, source: str, options: CurateOptions) -> dict:
    """The full report: counts, every group, every conflict, every dropped row."""

    def entry(e: Entry) -> dict:
        return {**e.to_json(), "rows": len(e.lines), "lines": list(e.lines), "reviewed": e.reviewed}

    def dropped(d: Dropped) -> dict:
        return {
            "line": d.line,
            "reason": d.reason.value,
            "question": d.question,
            "answer": d.answer,
        }

    return {
        "source": source,
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(options).items()},
        "counts": result.counts(),
        "reasons": {r.value: REASON_TEXT[r] for r in Reason},
        "groups": [entry(e) for e in result.entries],
        "chitchat_groups": [entry(e) for e in result.chitchat],
        "conflicts": [
            {
                "question": c.question,
                "kept": c.kept,
                "rule": c.rule,
                "alternatives": [asdict(a) | {"lines": list(a.lines)} for a in c.alternatives],
            }
            for c in result.conflicts
        ],
        "merges": [asdict(m) | {"lines": list(m.lines)} for m in result.merges],
        "answers_discarded": [dropped(d) for d in result.answers_discarded],
        "dropped": [dropped(d) for d in result.dropped],
    }


def write_report(
    result: CurateResult,
    report_dir: str | Path,
    source: str,
    options: CurateOptions = CurateOptions(),
    largest: int = 20,
    conflict_sample: int = 20,
) -> tuple[Path, Path]:
    """Write ``curate_report.json`` and ``curate_report.md`` into ``report_dir``."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    data = report_json(result, source, options)
    json_path, md_path = report_dir / REPORT_JSON, report_dir / REPORT_MD
    json_path.write_text(json.dumps(data, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(_markdown(result, data, largest, conflict_sample), encoding="utf-8")
    return json_path, md_path


def _cell(text: str, limit: int = 60) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _markdown(result: CurateResult, data: dict, largest: int, conflict_sample: int) -> str:
    c = data["counts"]
    lines = [
        "# KB curation report",
        "",
        f"Source: `{data['source']}`. Rules: docs/kb-curation.md.",
        "",
        "| rows in | dropped | moved to chit-chat | in entries | entries out | phrasings | "
        "conflicts | chit-chat entries |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {c['rows_in']} | {c['rows_dropped']} | {c['rows_moved_to_chitchat']} | "
        f"{c['rows_in_entries']} | {c['entries_out']} | {c['phrasings_out']} | {c['conflicts']} | "
        f"{c['chitchat_entries_out']} |",
        "",
    ]
    if c["reviewed_entries"]:
        lines += [
            f"Reviewed entries: {c['reviewed_entries']} (written first, as reviewed); "
            f"{c['groups_merged_into_reviewed']} corpus groups ({c['rows_merged_into_reviewed']}"
            f" rows) merged into them as phrasings, {c['reviewed_conflicts']} of them with "
            "another answer (the reviewed answer wins).",
            "",
            "| reviewed question | merged group | rows | the answer it would have kept "
            "| other answer(s) |",
            "| --- | --- | ---: | --- | --- |",
        ]
        lines += [
            f"| {_cell(m.reviewed, 30)} | {_cell(m.question, 30)} | {len(m.lines)} | "
            f"{_cell(m.answer, 40)} | {'yes' if m.conflict else ''} |"
            for m in result.merges
        ]
        lines.append("")
    lines += [
        "## Dropped rows by reason",
        "",
        "| reason | rows | what it means | example (question -> answer) |",
        "| --- | ---: | --- | --- |",
    ]
    first = {}
    for d in result.dropped:
        first.setdefault(d.reason, d)
    for r in Reason:
        n = c["dropped_by_reason"][r.value]
        ex = first.get(r)
        example = f"{_cell(ex.question, 30)} -> {_cell(ex.answer, 30)}" if ex else ""
        lines.append(f"| `{r.value}` | {n} | {REASON_TEXT[r]} | {example} |")
    discarded = c["answers_discarded_by_reason"]
    lines += [
        "",
        f"Besides, {sum(discarded.values())} rows kept only their question (as a "
        "phrasing of an entry whose answer came from other rows): "
        + (", ".join(f"`{k}` {v}" for k, v in discarded.items()) or "none")
        + ".",
        "",
        f"## The {largest} largest groups",
        "",
        "| rows | question | phrasings | answer kept |",
        "| ---: | --- | --- | --- |",
    ]
    for e in result.entries[:largest]:
        lines.append(
            f"| {len(e.lines)} | {_cell(e.question, 30)} | "
            f"{_cell(' / '.join(e.phrasings), 80)} | {_cell(e.answer)} |"
        )
    step = max(1, len(result.conflicts) // conflict_sample) if result.conflicts else 1
    sample = result.conflicts[::step][:conflict_sample]
    lines += ["", f"## Conflicts: {len(sample)} of {len(result.conflicts)} (every {step}th)", ""]
    for conflict in sample:
        lines.append(f"**{conflict.question}** — kept by `{conflict.rule}`: {conflict.kept}")
        lines.append("")
        for a in conflict.alternatives:
            mark = "kept" if a.answer == conflict.kept else ""
            lines.append(f"- {a.rows} × {_cell(a.answer, 100)} {mark}".rstrip())
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
