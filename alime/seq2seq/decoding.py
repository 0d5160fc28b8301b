"""Batched beam search, independent of any model.

The search only calls ``next_log_probs(tokens, state)`` and ``reorder(state, indices)``; the state
is opaque to it. A model (``InferenceModel.step``/``reorder``) or a fixed score table (the tests)
plug in the same way. Arithmetic is numpy float64.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from alime.seq2seq.vocab import BOS_ID, EOS_ID, PAD_ID, SEP_ID, UNK_ID

NextLogProbs = Callable[[np.ndarray, Any], tuple[np.ndarray, Any]]
Reorder = Callable[[Any, np.ndarray], Any]

NEVER_EMIT: tuple[int, ...] = (PAD_ID, UNK_ID, BOS_ID, SEP_ID)


@dataclass(frozen=True)
class Hypothesis:
    """One search result.

    Attributes:
        tokens: generated ids, without BOS and EOS.
        score: ``log_prob`` divided by the length penalty.
        log_prob: summed log-probability of the tokens (and EOS when finished).
        finished: whether the hypothesis ended with EOS (False: cut at ``max_len``).
    """

    tokens: tuple[int, ...]
    score: float
    log_prob: float
    finished: bool


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's ``((5 + length) / 6) ** alpha``; ``length`` counts EOS. alpha=0 disables it."""
    return ((5.0 + length) / 6.0) ** alpha


def _blocked(history: Sequence[int], n: int) -> list[int]:
    """Tokens that would repeat an n-gram already in ``history``."""
    if n <= 0 or len(history) < n - 1:
        return []
    if n == 1:
        return list(history)
    prefix = tuple(history[len(history) - (n - 1) :])
    return [
        history[i + n - 1]
        for i in range(len(history) - n + 1)
        if tuple(history[i : i + n - 1]) == prefix
    ]


def _top_stable(scores: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` indices of ``np.argsort(-scores, kind="stable")``, without sorting all.

    A full sort of beam x vocab scores per step dominated the search's own time; partitioning
    keeps every index tied with the k-th best, so the stable order of the result is unchanged.
    """
    if k >= scores.size:
        return np.argsort(-scores, kind="stable")
    kth = np.partition(scores, scores.size - k)[scores.size - k]
    # NaN-free by construction (log-probs and -inf); >= keeps every tie at the boundary.
    candidates = np.flatnonzero(scores >= kth)
    return candidates[np.argsort(-scores[candidates], kind="stable")][:k]


def beam_search(
    next_log_probs: NextLogProbs,
    state: Any,
    reorder: Reorder,
    batch_size: int,
    beam_size: int = 5,
    max_len: int = 30,
    min_len: int = 1,
    alpha: float = 0.0,
    no_repeat_ngram_size: int = 0,
    n_best: int | None = None,
    never_emit: Sequence[int] = NEVER_EMIT,
) -> list[list[Hypothesis]]:
    """Beam search for ``batch_size`` inputs at once.

    Args:
        next_log_probs: ``(tokens [rows], state) -> (log_probs [rows, vocab], state)`` where rows
            is ``batch_size * beam_size`` (row ``b * beam_size + j`` is beam j of input b).
        state: the initial state for ``batch_size`` rows; it is expanded to the beams with
            ``reorder`` before the first call.
        reorder: ``(state, row_indices) -> state`` selecting rows.
        beam_size: hypotheses kept per input.
        max_len: most generated tokens (EOS excluded).
        min_len: fewest generated tokens before EOS is allowed.
        alpha: length normalization strength (``length_penalty``).
        no_repeat_ngram_size: forbid repeating any n-gram of this size (0 disables).
        n_best: results per input (default ``beam_size``).
        never_emit: ids never generated (padding, unknown, start, turn separator).

    Returns:
        Per input, up to ``n_best`` hypotheses, best score first. Hypotheses cut at ``max_len``
        are returned only when fewer than ``n_best`` finished.
    """
    if beam_size < 1 or max_len < 1 or min_len < 0:
        raise ValueError("beam_size and max_len must be >= 1 and min_len >= 0")
    n_best = n_best or beam_size
    rows = batch_size * beam_size
    state = reorder(state, np.repeat(np.arange(batch_size), beam_size))
    tokens = np.full(rows, BOS_ID, np.int64)
    histories: list[list[int]] = [[] for _ in range(rows)]
    # Only beam 0 is live at the start, so the first step does not pick the same token k times.
    beam_lp = np.full((batch_size, beam_size), -np.inf)
    beam_lp[:, 0] = 0.0
    finished: list[list[Hypothesis]] = [[] for _ in range(batch_size)]
    done = np.zeros(batch_size, bool)

    for step in range(max_len):
        log_probs, state = next_log_probs(tokens, state)
        log_probs = np.array(log_probs, np.float64).reshape(rows, -1)
        vocab = log_probs.shape[1]
        log_probs[:, list(never_emit)] = -np.inf
        if step < min_len:
            log_probs[:, EOS_ID] = -np.inf
        for r in range(rows):
            log_probs[r, _blocked(histories[r], no_repeat_ngram_size)] = -np.inf
        total = (beam_lp.reshape(rows, 1) + log_probs).reshape(batch_size, beam_size * vocab)

        parents = np.arange(rows)  # finished inputs keep their rows
        next_tokens = np.full(rows, EOS_ID, np.int64)
        next_lp = np.full((batch_size, beam_size), -np.inf)
        for b in range(batch_size):
            if done[b]:
                continue
            # Stable sort: ties go to the lower beam, then the lower token id.
            order = _top_stable(total[b], 2 * beam_size)
            alive = 0
            for rank, flat in enumerate(order):
                lp = total[b, flat]
                if not np.isfinite(lp):
                    break
                beam, tok = divmod(int(flat), vocab)
                row = b * beam_size + beam
                if tok == EOS_ID:
                    if rank < beam_size:
                        length = len(histories[row]) + 1
                        finished[b].append(
                            Hypothesis(
                                tuple(histories[row]), lp / length_penalty(length, alpha), lp, True
                            )
                        )
                    continue
                parents[b * beam_size + alive] = row
                next_tokens[b * beam_size + alive] = tok
                next_lp[b, alive] = lp
                alive += 1
                if alive == beam_size:
                    break
            for j in range(alive, beam_size):
                parents[b * beam_size + j] = b * beam_size
            # Stop once a full beam of hypotheses finished (then n_best are taken from them).
            if len(finished[b]) >= beam_size or alive == 0:
                done[b] = True
        if done.all():
            break
        histories = [histories[p] + [int(t)] for p, t in zip(parents, next_tokens, strict=True)]
        tokens = next_tokens
        beam_lp = next_lp
        state = reorder(state, parents)
    else:
        # Out of steps: unfinished beams stand in when too few hypotheses finished.
        for b in range(batch_size):
            for j in range(beam_size):
                lp = beam_lp[b, j]
                if np.isfinite(lp) and len(finished[b]) < n_best:
                    hist = histories[b * beam_size + j]
                    finished[b].append(
                        Hypothesis(tuple(hist), lp / length_penalty(len(hist), alpha), lp, False)
                    )
    return [sorted(f, key=lambda h: -h.score)[:n_best] for f in finished]


PRIOR_FLOOR = -20.0  # log-probability floor of the anti-LM's prior (about 2e-9)


@dataclass
class AntiLMState:
    """The conditional model's state, the response prior's state, and the step count."""

    conditional: Any
    prior: Any
    step: int = 0


def anti_lm(
    next_log_probs: NextLogProbs,
    prior_log_probs: NextLogProbs,
    reorder: Reorder,
    prior_reorder: Reorder,
    weight: float,
    steps: int,
) -> tuple[NextLogProbs, Reorder]:
    """MMI-antiLM decoding (Li et al., 2016): for the first ``steps`` tokens, the search scores
    ``log p(token | source, prefix) - weight * log p(token | prefix)``, so replies that are likely
    whatever the source ("您好") lose their head start; later tokens use the plain model.

    Returns ``(next_log_probs, reorder)`` for :func:`beam_search` over an :class:`AntiLMState`.
    Like the model's, ``prior_log_probs`` is a next-token function (e.g. the same model with an
    empty source).

    Raises:
        ValueError: a negative weight or step count.
    """
    if weight < 0 or steps < 0:
        raise ValueError(f"anti-LM weight and steps must be >= 0, got {weight}, {steps}")

    def step(tokens: np.ndarray, state: AntiLMState) -> tuple[np.ndarray, AntiLMState]:
        log_probs, conditional = next_log_probs(tokens, state.conditional)
        prior = state.prior
        if state.step < steps and weight:
            prior_lp, prior = prior_log_probs(tokens, prior)
            cond = np.asarray(log_probs, np.float64)
            # A token the prior rules out gets the floor's bonus, not an infinite one.
            penalty = weight * np.maximum(np.asarray(prior_lp, np.float64), PRIOR_FLOOR)
            log_probs = np.where(np.isfinite(cond), cond - penalty, -np.inf)
        return log_probs, AntiLMState(conditional, prior, state.step + 1)

    def pick(state: AntiLMState, indices: np.ndarray) -> AntiLMState:
        prior = (
            prior_reorder(state.prior, indices) if state.step < steps and weight else state.prior
        )
        return AntiLMState(reorder(state.conditional, indices), prior, state.step)

    return step, pick
