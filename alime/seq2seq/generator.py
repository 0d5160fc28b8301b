"""Answer generation with beam search over a loaded model (``alime.types.Generator``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from alime.config import AppConfig
from alime.seq2seq.data import encode_query
from alime.seq2seq.decoding import AntiLMState, anti_lm, beam_search
from alime.seq2seq.model_dir import LoadedModel
from alime.seq2seq.vocab import EOS_ID, PAD_ID
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
        anti_lm_weight: MMI-antiLM's lambda: for the first ``anti_lm_steps`` tokens the search
            subtracts ``lambda * log p(token | prefix)`` of the response prior (the model with an
            empty source), so stock replies lose their head start (0 disables).
        anti_lm_steps: how many first tokens the anti-LM term applies to.
    """

    def __init__(
        self,
        model: LoadedModel,
        pipeline: TextPipeline | None = None,
        *,
        beam_size: int = 5,
        n_best: int = 1,
        max_len: int = 30,
        min_len: int = 1,
        alpha: float = 0.6,
        no_repeat_ngram_size: int = 3,
        anti_lm_weight: float = 0.0,
        anti_lm_steps: int = 0,
    ) -> None:
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
        if anti_lm_weight < 0 or anti_lm_steps < 0:
            raise ValueError("anti_lm_weight and anti_lm_steps must be >= 0")
        self.anti_lm_weight = anti_lm_weight
        self.anti_lm_steps = anti_lm_steps

    def generate(self, query: str, context: Sequence[str]) -> list[Generated]:
        m = self.model
        source = encode_query(query, context, self.pipeline.tokenize, m.vocab, m.config)
        inference = m.inference
        state = inference.start(np.asarray([source or [PAD_ID]], np.int32))
        step, reorder = inference.step, inference.reorder
        if self.anti_lm_weight and self.anti_lm_steps:
            # The response prior: the same decoder with an empty source (as PriorScorer).
            state = AntiLMState(state, inference.start(np.asarray([[PAD_ID]], np.int32)))
            step, reorder = anti_lm(
                inference.step,
                inference.step,
                inference.reorder,
                inference.reorder,
                self.anti_lm_weight,
                self.anti_lm_steps,
            )
        hyps = beam_search(
            step,
            state,
            reorder,
            batch_size=1,
            beam_size=self.beam_size,
            max_len=self.max_len,
            min_len=self.min_len,
            alpha=self.alpha,
            no_repeat_ngram_size=self.no_repeat_ngram_size,
            n_best=self.n_best,
        )[0]
        # Re-score by teacher forcing (one batch) so the score matches MeanProbScorer exactly.
        targets = [list(h.tokens) + ([EOS_ID] if h.finished else []) for h in hyps]
        log_probs = inference.answer_log_probs(source, targets)
        out = [
            Generated(detokenize(m.vocab.decode(h.tokens)), float(np.mean(np.exp(lp))))
            for h, lp in zip(hyps, log_probs, strict=True)
        ]
        return sorted(out, key=lambda g: -g.score)
