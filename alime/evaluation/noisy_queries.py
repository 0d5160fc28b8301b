"""A reproducible set of noisy paraphrases of knowledge-base questions.

Each query is a held-out KB question rewritten the way customers rewrite it: a word replaced by a
synonym or colloquial variant, a word dropped, words reordered, a character typo, a filler word
added. The same (questions, seed, settings) always give the same queries, because every random
choice comes from one ``numpy`` generator seeded once.

Queries are joined without spaces, as users type them, so retrievers re-segment them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from alime.text import is_punctuation, read_synonyms

# Characters users confuse (same or close pronunciation, or a neighbouring key in pinyin IMEs).
_TYPOS: Mapping[str, str] = {
    "的": "地得",
    "在": "再",
    "吗": "嘛么",
    "哪": "那",
    "已": "以",
    "做": "作",
    "到": "道",
    "么": "嘛",
    "是": "事",
    "发": "法",
    "货": "或",
    "买": "卖",
    "几": "机",
    "号": "好",
    "款": "宽",
    "包": "保",
    "快": "块",
    "件": "见",
    "收": "手",
    "邮": "油",
    "退": "腿",
    "色": "涩",
    "码": "马",
    "寄": "记",
    "能": "嫩",
    "有": "又",
    "呢": "呐",
    "吧": "把",
    "单": "但",
    "样": "洋",
    "下": "夏",
    "给": "该",
    "多": "朵",
    "时": "是",
    "候": "后",
    "没": "妹",
    "拍": "排",
    "送": "宋",
    "问": "文",
    "题": "提",
    "换": "还",
    "还": "换",
}
_FILLERS_BEFORE = ("请问", "那个", "亲", "你好", "哎", "我想问下")
_FILLERS_AFTER = ("啊", "呀", "哈", "呢", "哦", "啦")


class Perturbation(str, Enum):
    """One kind of rewrite."""

    SYNONYM = "synonym"
    DROP = "drop"
    REORDER = "reorder"
    TYPO = "typo"
    COLLOQUIAL = "colloquial"


@dataclass(frozen=True)
class NoisyQuery:
    """A rewritten question and the KB id of the pair it came from."""

    qa_id: int
    original: str
    query: str
    perturbations: tuple[str, ...]


def read_variants(*paths: str | Path) -> dict[str, tuple[str, ...]]:
    """Merge synonym-group files (one group a line) into word -> interchangeable words."""
    table: dict[str, tuple[str, ...]] = {}
    for path in paths:
        for word, others in read_synonyms(path).items():
            table[word] = tuple(dict.fromkeys(table.get(word, ()) + others))
    return table


def _content_positions(tokens: list[str]) -> list[int]:
    return [i for i, t in enumerate(tokens) if not is_punctuation(t)]


def _synonym(tokens: list[str], rng: np.random.Generator, variants) -> bool:
    slots = [i for i, t in enumerate(tokens) if t in variants]
    if not slots:
        return False
    i = slots[rng.integers(len(slots))]
    choices = variants[tokens[i]]
    tokens[i] = choices[rng.integers(len(choices))]
    return True


def _drop(tokens: list[str], rng: np.random.Generator, variants) -> bool:
    slots = _content_positions(tokens)
    if len(slots) < 4:  # dropping from a very short question leaves nothing to find
        return False
    del tokens[slots[rng.integers(len(slots))]]
    return True


def _reorder(tokens: list[str], rng: np.random.Generator, variants) -> bool:
    if len(tokens) < 3:
        return False
    if rng.random() < 0.5:  # swap two neighbours
        i = int(rng.integers(len(tokens) - 1))
        tokens[i], tokens[i + 1] = tokens[i + 1], tokens[i]
    else:  # move a clause-like tail to the front ("发货 吗 今天" for "今天 发货 吗")
        cut = int(rng.integers(1, len(tokens)))
        tokens[:] = tokens[cut:] + tokens[:cut]
    return True


def _typo(tokens: list[str], rng: np.random.Generator, variants) -> bool:
    slots = [(i, j) for i, t in enumerate(tokens) for j, ch in enumerate(t) if ch in _TYPOS]
    if not slots:
        return False
    i, j = slots[rng.integers(len(slots))]
    options = _TYPOS[tokens[i][j]]
    word = tokens[i]
    tokens[i] = word[:j] + options[rng.integers(len(options))] + word[j + 1 :]
    return True


def _colloquial(tokens: list[str], rng: np.random.Generator, variants) -> bool:
    if rng.random() < 0.5:
        tokens.insert(0, _FILLERS_BEFORE[rng.integers(len(_FILLERS_BEFORE))])
    else:
        tokens.append(_FILLERS_AFTER[rng.integers(len(_FILLERS_AFTER))])
    return True


_APPLY: Mapping[Perturbation, Callable[..., bool]] = {
    Perturbation.SYNONYM: _synonym,
    Perturbation.DROP: _drop,
    Perturbation.REORDER: _reorder,
    Perturbation.TYPO: _typo,
    Perturbation.COLLOQUIAL: _colloquial,
}
# Paraphrase-like rewrites come first in the draw; COLLOQUIAL alone would be too easy.
_CORE = (Perturbation.SYNONYM, Perturbation.DROP, Perturbation.REORDER, Perturbation.TYPO)


def perturb(
    tokens: Sequence[str],
    rng: np.random.Generator,
    variants: Mapping[str, tuple[str, ...]],
    n_edits: int = 2,
) -> tuple[list[str], tuple[str, ...]]:
    """Apply ``n_edits`` distinct core rewrites (those that apply), then maybe a filler word.

    Returns:
        The new tokens and the names of the rewrites applied, in order.
    """
    out = list(tokens)
    applied: list[str] = []
    for p in rng.permutation(len(_CORE)):
        if len(applied) >= n_edits:
            break
        kind = _CORE[int(p)]
        if _APPLY[kind](out, rng, variants):
            applied.append(kind.value)
    if rng.random() < 0.4 and _colloquial(out, rng, variants):
        applied.append(Perturbation.COLLOQUIAL.value)
    return out, tuple(applied)


def split_held_out(
    pairs: Sequence[tuple[int, list[str]]], seed: int, dev_share: float = 0.5, min_tokens: int = 4
) -> tuple[list[tuple[int, list[str]]], list[tuple[int, list[str]]]]:
    """Eligible questions split into (dev, test) with a fixed seed.

    Eligible: at least ``min_tokens`` content tokens, and a question text no other pair has (a
    duplicated question would make "the original pair" ambiguous).
    """
    counts: dict[tuple[str, ...], int] = {}
    for _, toks in pairs:
        counts[tuple(toks)] = counts.get(tuple(toks), 0) + 1
    eligible = [
        (i, t)
        for i, t in pairs
        if counts[tuple(t)] == 1 and len(_content_positions(list(t))) >= min_tokens
    ]
    order = np.random.default_rng(seed).permutation(len(eligible))
    n_dev = int(round(dev_share * len(eligible)))
    shuffled = [eligible[int(j)] for j in order]
    return shuffled[:n_dev], shuffled[n_dev:]


def build_noisy_queries(
    pairs: Sequence[tuple[int, list[str]]],
    variants: Mapping[str, tuple[str, ...]],
    n: int,
    seed: int,
    n_edits: int = 2,
) -> list[NoisyQuery]:
    """Up to ``n`` noisy queries from the first questions of ``pairs`` (id, tokens).

    A rewrite identical to its original is skipped, so every query differs from its question.
    """
    rng = np.random.default_rng(seed)
    out: list[NoisyQuery] = []
    for qa_id, tokens in pairs:
        if len(out) >= n:
            break
        noisy, applied = perturb(tokens, rng, variants, n_edits)
        if noisy == list(tokens) or not applied:
            continue
        out.append(NoisyQuery(int(qa_id), " ".join(tokens), "".join(noisy), applied))
    return out
