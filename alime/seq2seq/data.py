"""Training data: readers, id encoding, a dialogue-level split and the bucketed tf.data pipeline.

TensorFlow is imported only by ``make_dataset``, so readers and encoders stay cheap to import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from alime.seq2seq.config import Seq2SeqConfig
from alime.seq2seq.vocab import EOS_ID, PAD_ID, SEP_ID, Vocabulary
from pluto.choices import parse_choice


@dataclass(frozen=True)
class Dialogue:
    """One training dialogue: earlier turns (oldest first, the query last) and the response.

    Attributes:
        line: 1-based line number in ``file``; with ``file`` it identifies the dialogue.
    """

    turns: tuple[str, ...]
    response: str
    file: str
    line: int


class DataFormat(str, Enum):
    """Training file formats."""

    ECOMMERCE = "ecommerce"  # label \t turn_1 ... \t turn_n \t response; label-1 lines are used
    TSV = "tsv"  # question \t answer
    AUTO = "auto"  # ECOMMERCE when the first field of the first row is a 0/1 label, else TSV


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield lineno, line.split("\t")


def read_ecommerce(path: str | Path) -> list[Dialogue]:
    """Label-1 dialogues of an E-commerce corpus file (the KB's parser of the format).

    Raises:
        ValueError: naming the file and line of a malformed row.
    """
    from alime.kb.formats import iter_ecommerce

    return [
        Dialogue(r.turns, r.response, str(path), r.line)
        for r in iter_ecommerce(path)
        if r.label == 1
    ]


def read_qa_tsv(path: str | Path) -> list[Dialogue]:
    """``question \\t answer`` pairs as one-turn dialogues.

    Raises:
        ValueError: naming the file and line of a malformed row.
    """
    path = Path(path)
    out = []
    for lineno, fields in _rows(path):
        if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
            raise ValueError(
                f"{path}:{lineno}: expected 'question \\t answer' (2 non-empty "
                f"fields), got {len(fields)} field(s)"
            )
        out.append(Dialogue((fields[0],), fields[1], str(path), lineno))
    return out


_READERS: dict[DataFormat, Callable[[str | Path], list[Dialogue]]] = {
    DataFormat.ECOMMERCE: read_ecommerce,
    DataFormat.TSV: read_qa_tsv,
}


def detect_format(path: str | Path) -> DataFormat:
    """ECOMMERCE when the first row starts with a 0/1 label and has 3+ fields, else TSV."""
    for _, fields in _rows(Path(path)):
        labelled = fields[0] in ("0", "1") and len(fields) >= 3
        return DataFormat.ECOMMERCE if labelled else DataFormat.TSV
    raise ValueError(f"{path}: no data rows")


def read_dialogues(path: str | Path, fmt: DataFormat | str = DataFormat.AUTO) -> list[Dialogue]:
    """Read a training file in ``fmt`` (a DataFormat or its value)."""
    fmt = parse_choice(DataFormat, fmt, "data format")
    if fmt is DataFormat.AUTO:
        fmt = detect_format(path)
    return _READERS[fmt](path)


def _conversation_keys(utterances: Sequence[str]) -> list[tuple[str, ...]]:
    """Keys two samples of one conversation share: the opening pair and every 3-turn window."""
    keys = [("<open>", *utterances[:2])]
    keys.extend(tuple(utterances[i : i + 3]) for i in range(len(utterances) - 2))
    return keys


def group_conversations(dialogues: Sequence[Dialogue]) -> list[int]:
    """Group id per dialogue: dialogues that may be samples of the same conversation share one.

    The E-commerce files hold the same conversation several times, cut at different lengths and
    starting turns. Two dialogues are linked when they open with the same two utterances or share
    three consecutive utterances; groups are the connected components of those links, so a
    held-out dialogue never starts, ends or overlaps a training one by three turns.

    Returns:
        For each dialogue, the index of its group's first dialogue.
    """
    parent = list(range(len(dialogues)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_with: dict[tuple[str, ...], int] = {}
    for i, d in enumerate(dialogues):
        for key in _conversation_keys((*d.turns, d.response)):
            j = first_with.setdefault(key, i)
            a, b = root(i), root(j)
            parent[max(a, b)] = min(a, b)
    return [root(i) for i in range(len(dialogues))]


def split_dialogues(
    dialogues: Sequence[Dialogue], valid_fraction: float, seed: int
) -> tuple[list[Dialogue], list[Dialogue]]:
    """Deterministic split by conversation (``group_conversations``): overlapping samples of one
    conversation, and a dialogue's expanded turns, never straddle the split.

    Whole groups are drawn in a seeded random order until ``valid_fraction`` of the dialogues
    are held out; a group that would overshoot the target, or is larger than a twentieth of it
    (and than 10: a chain of stock openings such as 你好 / 您好), stays in training.

    Returns:
        (train, valid), each in file order.
    """
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    n_valid = int(round(len(dialogues) * valid_fraction))
    groups: dict[int, list[int]] = {}
    for i, g in enumerate(group_conversations(dialogues)):
        groups.setdefault(g, []).append(i)
    members = list(groups.values())
    largest = max(10, n_valid // 20)
    held: set[int] = set()
    for k in np.random.default_rng(seed).permutation(len(members)).tolist():
        group = members[k]
        if len(held) >= n_valid:
            break
        if len(group) <= largest and len(held) + len(group) <= n_valid:
            held.update(group)
    train = [d for i, d in enumerate(dialogues) if i not in held]
    valid = [d for i, d in enumerate(dialogues) if i in held]
    return train, valid


@dataclass(frozen=True)
class TokenizedDialogue:
    turns: tuple[tuple[str, ...], ...]
    response: tuple[str, ...]


def tokenize_dialogues(
    dialogues: Sequence[Dialogue], tokenize: Callable[[str], list[str]]
) -> list[TokenizedDialogue]:
    """Tokenize every turn and response once (the shared ``TextPipeline.tokenize``)."""
    return [
        TokenizedDialogue(tuple(tuple(tokenize(t)) for t in d.turns), tuple(tokenize(d.response)))
        for d in dialogues
    ]


def encode_source(
    turns: Sequence[Sequence[str]], vocab: Vocabulary, config: Seq2SeqConfig
) -> list[int]:
    """The last ``context_turns`` turns joined by SEP, truncated from the left."""
    ids: list[int] = []
    for turn in list(turns)[-config.context_turns :]:
        if ids:
            ids.append(SEP_ID)
        ids.extend(vocab.encode(turn))
    return ids[-config.max_source_len :]


def encode_target(tokens: Sequence[str], vocab: Vocabulary, config: Seq2SeqConfig) -> list[int]:
    """Response ids + EOS, cut at ``max_target_len``.

    A cut response keeps no EOS: it did not end there.
    """
    return (vocab.encode(tokens) + [EOS_ID])[: config.max_target_len]


def encode_query(
    query: str,
    context: Sequence[str],
    tokenize: Callable[[str], list[str]],
    vocab: Vocabulary,
    config: Seq2SeqConfig,
) -> list[int]:
    """Source ids for a live query and its earlier turns (oldest first)."""
    turns = [*context, query][-config.context_turns :]
    return encode_source([tokenize(t) for t in turns], vocab, config)


@dataclass(frozen=True)
class Example:
    source: tuple[int, ...]
    target: tuple[int, ...]


def make_examples(
    dialogues: Sequence[TokenizedDialogue],
    vocab: Vocabulary,
    config: Seq2SeqConfig,
    expand_turns: bool = False,
) -> list[Example]:
    """Source/target id pairs.

    Args:
        expand_turns: also use every earlier turn spoken by the responder (the same parity as the
            response, counting back) as a target, with the turns before it as its source.
    """
    out = []
    for d in dialogues:
        utterances = list(d.turns) + [d.response]
        last = len(utterances) - 1
        positions = range(last % 2 or 2, last + 1, 2) if expand_turns else [last]
        for i in positions:
            if i < 1 or not utterances[i - 1]:
                continue
            src = encode_source(utterances[:i], vocab, config)
            out.append(Example(tuple(src), tuple(encode_target(utterances[i], vocab, config))))
    return out


def bucket_index(source_len: int, target_len: int, buckets: Sequence[tuple[int, int]]) -> int:
    """The first bucket that fits both lengths; the last bucket (inputs truncated) otherwise."""
    for i, (s, t) in enumerate(buckets):
        if source_len <= s and target_len <= t:
            return i
    return len(buckets) - 1


def pad_batch(
    examples: Sequence[Example], source_len: int, target_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded int32 arrays [n, source_len] and [n, target_len]; longer inputs truncated
    (source from the left, keeping the newest turn; target from the right)."""
    src = np.full((len(examples), source_len), PAD_ID, np.int32)
    tgt = np.full((len(examples), target_len), PAD_ID, np.int32)
    for row, ex in enumerate(examples):
        s = ex.source[-source_len:] if source_len else ()
        t = ex.target[:target_len]
        src[row, : len(s)] = s
        tgt[row, : len(t)] = t
    return src, tgt


def bucket_batches(
    examples: Sequence[Example],
    buckets: Sequence[tuple[int, int]],
    batch_size: int,
    seed: int | None = None,
    empty_source_rate: float = 0.0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Group examples by bucket, pad to the bucket's fixed shape, cut into batches.

    Args:
        seed: shuffles examples within buckets and the batch order; None keeps file order.
        empty_source_rate: share of examples whose source is replaced by padding (teaches the
            answer prior); drawn from ``seed``.
    """
    rng = np.random.default_rng(seed) if seed is not None else None
    groups: list[list[Example]] = [[] for _ in buckets]
    for ex in examples:
        if rng is not None and empty_source_rate and rng.random() < empty_source_rate:
            ex = Example((), ex.target)
        groups[bucket_index(len(ex.source), len(ex.target), buckets)].append(ex)
    batches = []
    for (s_len, t_len), group in zip(buckets, groups, strict=True):
        order = rng.permutation(len(group)) if rng is not None else np.arange(len(group))
        for start in range(0, len(group), batch_size):
            chunk = [group[i] for i in order[start : start + batch_size]]
            batches.append(pad_batch(chunk, s_len, t_len))
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def make_dataset(batches: Sequence[tuple[np.ndarray, np.ndarray]]):
    """A ``tf.data.Dataset`` of (source [b, s], target [b, t]) int32 batches in the given order."""
    import tensorflow as tf

    spec = (tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None], tf.int32))
    return tf.data.Dataset.from_generator(lambda: iter(batches), output_signature=spec).prefetch(2)
