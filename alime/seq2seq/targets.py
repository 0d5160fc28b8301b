"""Teacher-forced scoring of many answers for one source: one batch, each distinct answer once.

Shared by the TensorFlow model (``alime.seq2seq.model``) and the int8 numpy model
(``alime.seq2seq.quantized``); numpy only, so the int8 path stays free of TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from alime.seq2seq.vocab import PAD_ID


def score_distinct_targets(
    source_ids: Sequence[int],
    targets: Sequence[Sequence[int]],
    dtype: type,
    candidate_log_probs: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> list[np.ndarray]:
    """Per-token log-probs of each target (EOS included when present) given one source.

    Stock replies recur among a query's candidates, so each distinct target is padded into one
    ``[n, width]`` batch (``dtype`` ids) and scored once by ``candidate_log_probs(src, tgt)``
    (one encoder pass for ``src``); an empty source is one PAD, which gives the answer prior.
    """
    if not targets:
        return []
    src = np.asarray(list(source_ids) or [PAD_ID], dtype)
    unique = list(dict.fromkeys(tuple(t) for t in targets))
    width = max(len(t) for t in unique)
    tgt = np.full((len(unique), width), PAD_ID, dtype)
    for i, t in enumerate(unique):
        tgt[i, : len(t)] = t
    log_probs = candidate_log_probs(src, tgt)
    rows = {t: log_probs[i, : len(t)].astype(np.float64) for i, t in enumerate(unique)}
    return [rows[tuple(t)].copy() for t in targets]
