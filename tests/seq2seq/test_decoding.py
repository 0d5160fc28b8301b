"""Beam search on fixed next-token tables, against hand-computed results."""

import math

import numpy as np
import pytest

from alime.seq2seq.decoding import Hypothesis, beam_search, length_penalty
from alime.seq2seq.vocab import BOS_ID, EOS_ID, SEP_ID, UNK_ID

A, B, C = 5, 6, 7
VOCAB = 8


class Table:
    """next_log_probs from a {(input, prefix): {token: prob}} table; unlisted tokens get 0."""

    def __init__(self, table, default=None):
        self.table = table
        self.default = default or {}

    def next_log_probs(self, tokens, state):
        # state: one (input index, prefix) per row.
        new_state = [
            (i, p if t == BOS_ID else p + (int(t),))
            for (i, p), t in zip(state, tokens, strict=True)
        ]
        out = np.full((len(tokens), VOCAB), -np.inf)
        for r, key in enumerate(new_state):
            for tok, prob in self.table.get(key, self.default).items():
                out[r, tok] = math.log(prob)
        return out, new_state

    @staticmethod
    def reorder(state, indices):
        return [state[i] for i in indices]


def search(table, batch=1, **kw):
    state = [(i, ()) for i in range(batch)]
    return beam_search(table.next_log_probs, state, table.reorder, batch_size=batch, **kw)


# Greedy takes a (0.6) then EOS: p = 0.24. A beam of 2 finds b, EOS: p = 0.36.
GREEDY_TRAP = Table(
    {
        (0, ()): {A: 0.6, B: 0.4},
        (0, (A,)): {EOS_ID: 0.4, C: 0.3, B: 0.3},
        (0, (B,)): {EOS_ID: 0.9, A: 0.1},
        (0, (A, C)): {EOS_ID: 1.0},
        (0, (A, B)): {EOS_ID: 1.0},
        (0, (B, A)): {EOS_ID: 1.0},
    }
)


def greedy(table, max_len):
    tokens, lp, state, tok = [], 0.0, [(0, ())], np.array([BOS_ID])
    for _ in range(max_len):
        scores, state = table.next_log_probs(tok, state)
        best = int(np.argmax(scores[0]))
        lp += scores[0, best]
        if best == EOS_ID:
            break
        tokens.append(best)
        tok = np.array([best])
    return tuple(tokens), lp


def test_beam_finds_the_better_sequence_greedy_misses():
    hyps = search(GREEDY_TRAP, beam_size=2)[0]
    assert [h.tokens for h in hyps] == [(B,), (A,)]
    assert hyps[0].log_prob == pytest.approx(math.log(0.36))
    assert hyps[1].log_prob == pytest.approx(math.log(0.24))
    assert all(h.finished for h in hyps)


def test_beam_of_one_equals_greedy():
    hyps = search(GREEDY_TRAP, beam_size=1)[0]
    tokens, lp = greedy(GREEDY_TRAP, 10)
    assert [(h.tokens, h.log_prob) for h in hyps] == [(tokens, pytest.approx(lp))]
    assert tokens == (A,)


# "" has p=0.5 (1 token with EOS); "a b" has p=0.405 (3 tokens); "a" has p=0.05 (2 tokens).
SHORT_OR_LONG = Table(
    {
        (0, ()): {EOS_ID: 0.5, A: 0.5},
        (0, (A,)): {B: 0.9, EOS_ID: 0.1},
        (0, (A, B)): {EOS_ID: 0.9},
    }
)


def test_without_length_normalization_the_short_answer_wins():
    hyps = search(SHORT_OR_LONG, beam_size=3, min_len=0, alpha=0.0)[0]
    assert [h.tokens for h in hyps] == [(), (A, B), (A,)]
    expected = [math.log(0.5), math.log(0.405), math.log(0.05)]
    assert [h.score for h in hyps] == pytest.approx(expected)


def test_length_normalization_lets_the_longer_answer_win():
    hyps = search(SHORT_OR_LONG, beam_size=3, min_len=0, alpha=1.0)[0]
    # GNMT penalty ((5 + len) / 6) ** alpha: 1 for "", 8/6 for "a b", 7/6 for "a".
    assert [h.tokens for h in hyps] == [(A, B), (), (A,)]
    assert [h.score for h in hyps] == pytest.approx(
        [math.log(0.405) / (8 / 6), math.log(0.5), math.log(0.05) / (7 / 6)]
    )
    assert length_penalty(3, 1.0) == pytest.approx(8 / 6)


def test_min_length_forbids_early_eos():
    hyps = search(SHORT_OR_LONG, beam_size=3, min_len=2)[0]
    assert [h.tokens for h in hyps] == [(A, B)]
    assert hyps[0].log_prob == pytest.approx(math.log(0.5 * 0.9 * 0.9))


REPEATER = Table({}, default={A: 0.7, B: 0.2, EOS_ID: 0.1})


def test_without_blocking_the_model_repeats_until_max_len():
    hyps = search(REPEATER, beam_size=1, max_len=5, min_len=0)[0]
    assert hyps == [
        Hypothesis(
            (A,) * 5, pytest.approx(5 * math.log(0.7)), pytest.approx(5 * math.log(0.7)), False
        )
    ]


def test_no_repeat_ngram_blocks_repeated_bigrams():
    hyps = search(REPEATER, beam_size=1, max_len=5, min_len=0, no_repeat_ngram_size=2)[0]
    # a, a (no bigram yet), then "a a" would repeat: b; then a; then a and b would repeat: EOS.
    assert [h.tokens for h in hyps] == [(A, A, B, A)]
    assert hyps[0].log_prob == pytest.approx(math.log(0.7 * 0.7 * 0.2 * 0.7 * 0.1))
    assert hyps[0].finished


def test_reserved_ids_are_never_emitted():
    table = Table(
        {}, default={UNK_ID: 0.5, SEP_ID: 0.2, BOS_ID: 0.1, 0: 0.1, A: 0.05, EOS_ID: 0.05}
    )
    hyps = search(table, beam_size=2, max_len=3)[0]
    assert hyps and all(set(h.tokens) <= {A} for h in hyps)


def test_batched_inputs_match_separate_searches_and_n_best():
    table = Table({**{(1, k[1]): v for k, v in SHORT_OR_LONG.table.items()}, **GREEDY_TRAP.table})
    both = search(table, batch=2, beam_size=3, min_len=0, n_best=2)
    assert [h.tokens for h in both[0]] == [(B,), (A,)]
    assert [h.tokens for h in both[1]] == [(), (A, B)]


def test_beam_top_k_equals_a_full_stable_sort():
    from alime.seq2seq.decoding import _top_stable

    rng = np.random.default_rng(2)
    for _ in range(200):
        scores = rng.integers(-4, 4, int(rng.integers(1, 120))).astype(np.float64)
        scores[rng.random(scores.size) < 0.2] = -np.inf  # ties and blocked tokens
        k = int(rng.integers(1, 12))
        np.testing.assert_array_equal(
            _top_stable(scores, k), np.argsort(-scores, kind="stable")[:k]
        )
