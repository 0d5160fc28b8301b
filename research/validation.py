"""Held-out validation files built like the official E-commerce test split.

The official test's 9 wrong candidates per context were retrieved by Lucene from the corpus, not
drawn at random. Two retrieval-based constructions are offered; in both, for each held-out dialogue
the 9 wrong responses come from *other* dialogues, are deduplicated and never equal its own
response:

- ``bm25``: the BM25 top hits of its last turns among the other dialogues' responses. The wrong
  replies share more words with the context than the real one (which BM25 then ranks last);
- ``bm25-context``: the responses of the other dialogues whose last turns best match its last
  turns by BM25 (what a retrieval bot with a context index returns). Lexically closer to the
  official test: BM25 between context and reply stays above chance there, as TF-IDF does on the
  official test (R10@1 0.159).

The real response goes to a seeded random position in its group of 10.

Run: ``python -m research.validation --from FILE --model DIR --out FILE [--negatives ...]``
(was ``alime evaluate build-valid``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from alime.config import AppConfig, load_config
from alime.evaluation.corpus import GROUP_SIZE, Group, read_true_rows, write_groups
from alime.evaluation.heldout import heldout_lines, select_heldout
from alime.kb.formats import EcommerceRow
from alime.seq2seq.model_dir import read_metadata
from alime.text import TextPipeline, normalize
from research.cli import positive_int, run_main

Analyzer = Callable[[str], list[str]]


class NegativeKind(str, Enum):
    """How the wrong candidates of a group are chosen."""

    BM25 = "bm25"  # retrieved by BM25 from other dialogues' responses (like the official test)
    CONTEXT = "bm25-context"  # responses of the other dialogues whose contexts BM25 matches best
    RANDOM = "random"  # drawn uniformly from other dialogues' responses (much easier)


@dataclass(frozen=True)
class ValidationOptions:
    """Settings of a validation build.

    Attributes:
        negatives: how wrong candidates are chosen.
        query_turns: the dialogue's last turns that form the BM25 query.
        seed: seeds the real response's position and any random draws.
        group_size: candidates per group (the real one included).
        random_negatives: with retrieved negatives, this many of the wrong candidates are drawn
            at random instead (mixed groups, e.g. for training a matcher); 0 for validation files.
        context_negatives: with ``bm25`` negatives, this many of the retrieved ones come from
            the context index instead (mixed groups for training); 0 for validation files.
    """

    negatives: NegativeKind = NegativeKind.BM25
    query_turns: int = 3
    seed: int = 2017
    group_size: int = GROUP_SIZE
    random_negatives: int = 0
    context_negatives: int = 0

    def __post_init__(self) -> None:
        if self.query_turns < 1:
            raise ValueError(f"query_turns must be >= 1, got {self.query_turns}")
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2, got {self.group_size}")
        if not 0 <= self.random_negatives <= self.group_size - 1:
            raise ValueError(
                f"random_negatives must be in [0, {self.group_size - 1}], "
                f"got {self.random_negatives}"
            )
        if not 0 <= self.context_negatives <= self.group_size - 1 - self.random_negatives:
            raise ValueError(
                f"context_negatives must be in [0, {self.group_size - 1} - "
                f"random_negatives], got {self.context_negatives}"
            )
        if self.context_negatives and self.negatives is not NegativeKind.BM25:
            raise ValueError("context_negatives mixes context hits into bm25 groups only")

    def retrieved_counts(self) -> tuple[int, int]:
        """Wrong candidates per group taken from the context index and from the response index
        (the rest are random)."""
        retrieved = self.group_size - 1 - self.random_negatives
        if self.negatives is NegativeKind.RANDOM:
            return 0, 0
        if self.negatives is NegativeKind.CONTEXT:
            return retrieved, 0
        return self.context_negatives, retrieved - self.context_negatives


@dataclass(frozen=True)
class ValidationBuild:
    """The built groups and how they were made.

    Attributes:
        groups: one group per held-out dialogue, in file order.
        random_fills: wrong candidates drawn at random because BM25 found too few.
        pool_size: distinct responses the wrong candidates were drawn from.
    """

    groups: list[Group]
    random_fills: int
    pool_size: int


def response_key(text: str) -> str:
    """Identity of a response for deduplication: normalized, with all spaces removed."""
    return normalize(text).replace(" ", "")


def response_pool(dialogues: Sequence[EcommerceRow]) -> list[str]:
    """The distinct responses of ``dialogues`` (first spelling kept), in file order."""
    seen: dict[str, str] = {}
    for d in dialogues:
        seen.setdefault(response_key(d.response), d.response)
    return list(seen.values())


def seen_in_training(heldout: Sequence[EcommerceRow], training: Sequence[EcommerceRow]) -> set[int]:
    """Lines of held-out dialogues whose turns and response occur, in order from the start, in
    a training dialogue (the same session sampled twice; training on every responder turn
    then shows the model this exact context and reply)."""
    prefixes = set()
    for d in training:
        sequence = (*d.turns, d.response)
        prefixes.update(sequence[:i] for i in range(2, len(sequence) + 1))
    return {d.line for d in heldout if (*d.turns, d.response) in prefixes}


def _query_text(turns: Sequence[str], query_turns: int) -> str:
    return " ".join(turns[-query_turns:])


def _random_negatives(
    pool: Sequence[str], exclude: set[str], n: int, rng: np.random.Generator
) -> list[str]:
    """``n`` distinct pool entries whose key is not in ``exclude``."""
    out: list[str] = []
    for i in rng.permutation(len(pool)):
        key = response_key(pool[i])
        if key not in exclude:
            out.append(pool[i])
            exclude = exclude | {key}
            if len(out) == n:
                break
    if len(out) < n:
        raise ValueError(f"response pool too small: need {n} wrong responses, found {len(out)}")
    return out


def _bm25_negatives(
    index, texts: Sequence[str], terms: list[str], exclude: set[str], n: int, depth: int
) -> list[str]:
    """The texts of the best BM25 hits (``texts[hit]``): at most ``n`` distinct ones among the
    first ``depth`` hits, skipping keys in ``exclude``."""
    out: list[str] = []
    seen = set(exclude)
    for hit in index.search(terms, depth):
        key = response_key(texts[hit.id])
        if key not in seen:
            seen.add(key)
            out.append(texts[hit.id])
            if len(out) == n:
                break
    return out


# Context hits searched per wanted negative: several dialogues share a reply ("好的").
_CONTEXT_DEPTH = 10


def build_groups(
    heldout: Sequence[EcommerceRow],
    pool: Sequence[str],
    analyze: Analyzer,
    options: ValidationOptions | None = None,
    progress: bool = False,
    sources: Sequence[EcommerceRow] | None = None,
) -> ValidationBuild:
    """One group per held-out dialogue: its real response and ``group_size - 1`` wrong ones.

    Args:
        heldout: the held-out dialogues (label-1 rows).
        pool: the responses wrong candidates are taken from (other dialogues' responses, as
            from ``response_pool``); entries equal to a dialogue's own response are skipped.
        analyze: text to BM25 terms (the project's ``TextPipeline.index_terms``).
        options: negative kind, query turns, seed, group size.
        progress: show a progress bar on stderr.
        sources: for context negatives, the dialogues whose contexts are searched (default:
            the held-out ones); a hit whose reply equals the dialogue's own is skipped.

    Returns:
        The groups; when BM25 finds too few wrong responses (a query of stop words only), the
        rest are drawn at random and counted in ``random_fills``.
    """
    from tqdm import tqdm

    from alime.retrieval.bm25 import BM25Index

    options = options or ValidationOptions()
    rng = np.random.default_rng(options.seed)
    n_context, n_response = options.retrieved_counts()
    response_index = context_index = None
    if n_response:
        response_index = BM25Index.build([analyze(r) for r in pool], list(range(len(pool))))
    if n_context:
        sources = list(heldout if sources is None else sources)
        context_index = BM25Index.build(
            [analyze(_query_text(s.turns, options.query_turns)) for s in sources],
            list(range(len(sources))),
        )
        source_replies = [s.response for s in sources]
    groups, fills = [], 0
    for d in tqdm(heldout, desc=f"{options.negatives.value} negatives", disable=not progress):
        true_key = response_key(d.response)
        terms = (
            analyze(_query_text(d.turns, options.query_turns)) if n_context or n_response else []
        )
        wrong: list[str] = []
        if n_context:
            wrong += _bm25_negatives(
                context_index,
                source_replies,
                terms,
                {true_key},
                n_context,
                _CONTEXT_DEPTH * options.group_size,
            )
        if n_response:
            taken = {true_key, *map(response_key, wrong)}
            wrong += _bm25_negatives(
                response_index, pool, terms, taken, n_response, n_response + len(taken)
            )
        fills += n_context + n_response - len(wrong)
        missing = options.group_size - 1 - len(wrong)
        if missing:
            wrong += _random_negatives(pool, {true_key, *map(response_key, wrong)}, missing, rng)
        position = int(rng.integers(0, options.group_size))
        responses = (*wrong[:position], d.response, *wrong[position:])
        groups.append(Group(d.turns, responses, position, d.line))
    return ValidationBuild(groups, fills, len(pool))


def build_valid(
    data: str | Path,
    model_dir: str | Path,
    out: str | Path,
    options: ValidationOptions,
    config: AppConfig | None = None,
    progress: bool = True,
    drop_seen: bool = False,
) -> dict:
    """Write a validation file for the model's held-out dialogues of ``data``; returns a summary.

    ``drop_seen`` leaves out held-out dialogues that also occur as the start of a training
    dialogue (``seen_in_training``); the summary counts them either way.
    """
    config = config or AppConfig()
    dialogues = read_true_rows(data)
    heldout = select_heldout(dialogues, heldout_lines(read_metadata(model_dir), data))
    held = {d.line for d in heldout}
    seen = seen_in_training(heldout, [d for d in dialogues if d.line not in held])
    if drop_seen:
        heldout = [d for d in heldout if d.line not in seen]
    if not heldout:
        raise ValueError(f"{data}: none of its dialogues is held out by the model in {model_dir}")
    pool = response_pool(dialogues)
    pipeline = TextPipeline(config.text)
    built = build_groups(heldout, pool, pipeline.index_terms, options, progress, sources=dialogues)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        write_groups(built.groups, fh)
    return {
        "out": str(out),
        "groups": len(built.groups),
        "dialogues_in_file": len(dialogues),
        "pool_size": built.pool_size,
        "random_fills": built.random_fills,
        "seen_in_training": len(seen),
        "dropped_seen": drop_seen,
        "options": {**asdict(options), "negatives": options.negatives.value},
    }


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``python -m research.validation``."""
    p = argparse.ArgumentParser(
        prog="python -m research.validation",
        description="held-out validation groups with retrieved (or random) negatives",
    )
    p.add_argument("--config", help="TOML configuration file (its text settings)")
    p.add_argument(
        "--from", dest="data", required=True, help="E-commerce-format file the model trained on"
    )
    p.add_argument(
        "--model",
        required=True,
        help="model directory (its training.json lists held-out dialogues)",
    )
    p.add_argument("--out", required=True, help="validation file to write")
    p.add_argument(
        "--negatives",
        default="bm25",
        choices=[k.value for k in NegativeKind],
        help="bm25: BM25 hits among the other replies; bm25-context: replies of the "
        "dialogues whose last turns match best; random",
    )
    p.add_argument(
        "--query-turns", type=positive_int, default=3, help="last turns in the BM25 query"
    )
    p.add_argument("--seed", type=int, default=ValidationOptions.seed)
    p.add_argument(
        "--drop-seen",
        action="store_true",
        help="leave out held-out dialogues that also start a training dialogue",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Build one validation file and print its summary as JSON; returns the exit status."""

    def run(args: argparse.Namespace) -> int:
        options = ValidationOptions(NegativeKind(args.negatives), args.query_turns, args.seed)
        summary = build_valid(
            args.data,
            args.model,
            args.out,
            options,
            load_config(args.config),
            drop_seen=args.drop_seen,
        )
        print(json.dumps(summary))
        return 0

    return run_main(build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
