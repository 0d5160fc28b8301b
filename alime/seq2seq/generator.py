"""Answer generation with beam search over a loaded model (``alime.types.Generator``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from alime.config import AppConfig
from alime.seq2seq.data import encode_query
from alime.seq2seq.decoding import beam_search
from alime.seq2seq.model_dir import LoadedModel
from alime.seq2seq.vocab import EOS_ID
from alime.text import TextPipeline, detokenize
from alime.types import Generated


class BeamGenerator:
    """Generates answers best first; each score is the mean per-token probability (EOS included)
    of the answer under the model, the same scale as ``MeanProbScorer``, so one threshold applies.

    Args:
        model: a model directory loaded with ``load_model_dir``.
        pipeline: the shared text pipeline.
        beam_size: beam width.
        n_best: answers returned.
        max_len: most tokens per answer.
        min_len: fewest tokens per answer.
        alpha: length normalization during the search.
        no_repeat_ngram_size: block repeated n-grams (0 disables).
    """

    def __init__(self, model: LoadedModel, pipeline: TextPipeline | None = None, *,
                 beam_size: int = 5, n_best: int = 1, max_len: int = 30, min_len: int = 1,
                 alpha: float = 0.6, no_repeat_ngram_size: int = 3) -> None:
        if not 1 <= n_best <= beam_size:
            raise ValueError(f"n_best must be in [1, beam_size={beam_size}], got {n_best}")
        if not 0 <= min_len <= max_len:
            raise ValueError(f"need 0 <= min_len <= max_len, got {min_len}, {max_len}")
        self.model = model
        self.pipeline = pipeline or TextPipeline(AppConfig().text)
        self.beam_size = beam_size
        self.n_best = n_best
        self.max_len = max_len
        self.min_len = min_len
        self.alpha = alpha
        self.no_repeat_ngram_size = no_repeat_ngram_size

    def generate(self, query: str, context: Sequence[str]) -> list[Generated]:
        m = self.model
        source = encode_query(query, context, self.pipeline.tokenize, m.vocab, m.config)
        inference = m.inference
        state = inference.start(np.asarray([source or [0]], np.int32))
        hyps = beam_search(
            inference.step, state, inference.reorder, batch_size=1, beam_size=self.beam_size,
            max_len=self.max_len, min_len=self.min_len, alpha=self.alpha,
            no_repeat_ngram_size=self.no_repeat_ngram_size, n_best=self.n_best,
        )[0]
        # Re-score by teacher forcing (one batch) so the score matches MeanProbScorer exactly.
        targets = [list(h.tokens) + ([EOS_ID] if h.finished else []) for h in hyps]
        log_probs = inference.answer_log_probs(source, targets)
        out = [Generated(detokenize(m.vocab.decode(h.tokens)), float(np.mean(np.exp(lp))))
               for h, lp in zip(hyps, log_probs, strict=True)]
        return sorted(out, key=lambda g: -g.score)
