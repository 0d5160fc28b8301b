"""The model's hyper-parameters: a frozen dataclass saved as JSON next to the weights."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

# AliMe's (source length, target length) buckets.
ALIME_BUCKETS: tuple[tuple[int, int], ...] = ((5, 5), (5, 10), (10, 15), (20, 30), (45, 60))


@dataclass(frozen=True)
class Seq2SeqConfig:
    """Everything needed to rebuild the network and its input encoding.

    Attributes:
        vocab_size: number of ids, including the reserved ones.
        embed_dim: word embedding size (shared by encoder and decoder).
        hidden_dim: GRU state size.
        attention_dim: size of the additive attention's hidden layer.
        context_turns: turns in the source, the query included (AliMe used 1).
        max_source_len: source ids kept (the newest ones); defaults to the largest bucket.
        max_target_len: target ids kept, EOS included; defaults to the largest bucket.
        dropout: dropout on embeddings and the decoder output during training.
        buckets: (source length, target length) padding buckets.
        prior_dropout: share of training examples whose source is emptied, so the decoder also
            learns the answer prior p(answer) used by the PMI-style scorer.
    """

    vocab_size: int
    embed_dim: int = 128
    hidden_dim: int = 256
    attention_dim: int = 128
    context_turns: int = 3
    max_source_len: int = 45
    max_target_len: int = 60
    dropout: float = 0.1
    buckets: tuple[tuple[int, int], ...] = ALIME_BUCKETS
    prior_dropout: float = 0.1

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "embed_dim",
            "hidden_dim",
            "attention_dim",
            "context_turns",
            "max_source_len",
            "max_target_len",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.prior_dropout < 1.0:
            raise ValueError("dropout and prior_dropout must be in [0, 1)")
        # JSON gives lists; keep the hashable tuple form.
        object.__setattr__(self, "buckets", tuple(tuple(int(x) for x in b) for b in self.buckets))
        if not self.buckets or any(len(b) != 2 for b in self.buckets):
            raise ValueError(f"buckets must be (source, target) pairs, got {self.buckets}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Seq2SeqConfig:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown Seq2SeqConfig key(s) {unknown}")
        return cls(**data)
