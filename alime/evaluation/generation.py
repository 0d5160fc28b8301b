"""Generation quality on held-out dialogues: BLEU-4, distinct-1/2, length, generic-reply share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from alime.evaluation.metrics import corpus_bleu, distinct_n, mean_length, most_common_share
from alime.kb.formats import EcommerceRow
from alime.types import Generator


@dataclass(frozen=True)
class GeneratedSample:
    """One held-out dialogue with its real and generated reply."""

    turns: tuple[str, ...]
    reference: str
    generated: str
    score: float | None


def generate_replies(
    dialogues: Sequence[EcommerceRow], generator: Generator, progress: bool = True
) -> list[GeneratedSample]:
    """The generator's best reply to each dialogue's last turn and earlier turns."""
    from tqdm import tqdm

    out = []
    for d in tqdm(dialogues, desc="generating", unit="dialogue", disable=not progress):
        best = generator.generate(d.turns[-1], d.turns[:-1])
        text, score = (best[0].text, best[0].score) if best else ("", None)
        out.append(GeneratedSample(d.turns, d.response, text, score))
    return out


def text_stats(texts: Sequence[Sequence[str]]) -> dict:
    """distinct-1/2, mean length and the most common text's share."""
    share, common = most_common_share(texts)
    return {
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "mean_length": mean_length(texts),
        "most_common_share": share,
        "most_common": common,
    }


def generation_report(
    samples: Sequence[GeneratedSample], tokenize: Callable[[str], list[str]]
) -> dict:
    """BLEU-4 of generated against real replies, and text statistics of both."""
    hyps = [tokenize(s.generated) for s in samples]
    refs = [tokenize(s.reference) for s in samples]
    return {
        "dialogues": len(samples),
        "bleu4": corpus_bleu(refs, hyps),
        "generated": text_stats(hyps),
        "reference": text_stats(refs),
    }
