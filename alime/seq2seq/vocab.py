"""Token vocabulary with reserved ids for the special symbols.

Special symbols are ids only: no string that can occur in text maps to them, so a user typing
``<eos>`` gets the id of that word (or UNK), never the end-of-sequence id.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

PAD_ID = 0
UNK_ID = 1
BOS_ID = 2
EOS_ID = 3
SEP_ID = 4  # separates the turns of a multi-turn source
NUM_RESERVED = 5

# Display names for debugging only; they are not looked up when encoding text.
_RESERVED_NAMES = ("[PAD]", "[UNK]", "[BOS]", "[EOS]", "[SEP]")
_FORMAT = "alime-vocab-1"


class Vocabulary:
    """Maps tokens to ids; ids below ``NUM_RESERVED`` are the special symbols.

    Args:
        words: the ordinary words, in id order (their ids start at ``NUM_RESERVED``).
    """

    def __init__(self, words: Sequence[str]) -> None:
        self._words = list(words)
        self._ids = {w: i + NUM_RESERVED for i, w in enumerate(self._words)}
        if len(self._ids) != len(self._words):
            raise ValueError("vocabulary words must be unique")

    @classmethod
    def build(
        cls, token_lists: Iterable[Sequence[str]], min_count: int = 1, max_size: int | None = None
    ) -> Vocabulary:
        """Count tokens (training split only) and keep the frequent ones.

        Args:
            token_lists: tokenized texts.
            min_count: drop words seen fewer times.
            max_size: total size including the reserved ids; None means no limit.

        Returns:
            The vocabulary; frequency ties are broken by the word, so the result is
            deterministic.
        """
        if max_size is not None and max_size <= NUM_RESERVED:
            raise ValueError(
                f"max_size must exceed the {NUM_RESERVED} reserved ids, got {max_size}"
            )
        counts = Counter(tok for tokens in token_lists for tok in tokens)
        kept = (w for w, c in counts.items() if c >= min_count)
        ranked = sorted(kept, key=lambda w: (-counts[w], w))
        if max_size is not None:
            ranked = ranked[: max_size - NUM_RESERVED]
        return cls(ranked)

    def __len__(self) -> int:
        return NUM_RESERVED + len(self._words)

    def id(self, token: str) -> int:
        """The id of ``token`` (UNK_ID when unknown)."""
        return self._ids.get(token, UNK_ID)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Ids of ``tokens``; unknown words become UNK_ID."""
        return [self._ids.get(t, UNK_ID) for t in tokens]

    def token(self, idx: int) -> str:
        """The word for ``idx``; special ids give a bracketed display name."""
        if 0 <= idx < NUM_RESERVED:
            return _RESERVED_NAMES[idx]
        return self._words[idx - NUM_RESERVED]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Words for ``ids``, stopping at EOS and skipping the other special ids."""
        out = []
        for i in ids:
            if i == EOS_ID:
                break
            if i >= NUM_RESERVED:
                out.append(self._words[i - NUM_RESERVED])
        return out

    @property
    def words(self) -> list[str]:
        return list(self._words)

    def save(self, path: str | Path) -> None:
        data = {"format": _FORMAT, "reserved": list(_RESERVED_NAMES), "words": self._words}
        Path(path).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("format") != _FORMAT or data.get("reserved") != list(_RESERVED_NAMES):
            raise ValueError(f"{path}: not an {_FORMAT} vocabulary file")
        return cls(data["words"])
