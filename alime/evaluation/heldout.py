"""Which dialogues of a data file a model held out from training (its ``training.json``).

Every evaluation on a model's own data files reads only these lines, so no figure is reported
on training data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from alime.kb.formats import EcommerceRow


def same_file(recorded: str, path: Path) -> bool:
    """Whether a path recorded in metadata names ``path`` (by resolved path, else by name)."""
    recorded_path = Path(recorded)
    try:
        return recorded_path.resolve() == path.resolve()
    except OSError:
        return recorded_path.name == path.name


def heldout_lines(metadata: Mapping, data_path: str | Path) -> set[int] | None:
    """Lines of ``data_path`` that a model held out from training, per its ``training.json``.

    Returns:
        The 1-based line numbers of the held-out dialogues, or None when the whole file was a
        validation file of the model.

    Raises:
        ValueError: the metadata does not say which dialogues of this file were held out (using
            them could report scores on training data).
    """
    path = Path(data_path)
    if any(same_file(f, path) for f in metadata.get("valid_files") or ()):
        return None
    split = metadata.get("split") or {}
    pairs = split.get("valid_dialogue_lines")
    trained_on = [f for f in metadata.get("data_files") or () if same_file(f, path)]
    if not trained_on or pairs is None:
        raise ValueError(
            f"{path}: the model's training.json does not list held-out dialogues of this file "
            "(split.valid_dialogue_lines); refusing to build validation data that may overlap "
            "the training data"
        )
    return {line for f, lines in _lines_by_file(pairs) if same_file(f, path) for line in lines}


def _lines_by_file(pairs: Mapping | list) -> list[tuple[str, list[int]]]:
    """``{file: [line, ...]}`` or ``[[file, line], ...]`` as (file, lines) pairs."""
    if isinstance(pairs, Mapping):
        return [(f, [int(x) for x in lines]) for f, lines in pairs.items()]
    return [(f, [int(line)]) for f, line in pairs]


def select_heldout(dialogues: Sequence[EcommerceRow], lines: set[int] | None) -> list[EcommerceRow]:
    """The dialogues whose line is in ``lines`` (all of them when ``lines`` is None)."""
    return list(dialogues) if lines is None else [d for d in dialogues if d.line in lines]
