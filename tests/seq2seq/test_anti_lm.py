"""MMI-antiLM decoding on fixed next-token tables, against hand-computed results."""

import math

import numpy as np
import pytest

from alime.seq2seq.decoding import AntiLMState, anti_lm, beam_search
from alime.seq2seq.vocab import BOS_ID, EOS_ID

A, B, C = 5, 6, 7  # A: the stock reply "您好"; B: a reply about the question
VOCAB = 8


class Table:
    """next_log_probs from a {prefix: {token: prob}} table, counting its calls."""

    def __init__(self, table):
        self.table = table
        self.calls = 0

    def next_log_probs(self, tokens, state):
        self.calls += 1
        new = [p if t == BOS_ID else p + (int(t),) for p, t in zip(state, tokens, strict=True)]
        out = np.full((len(tokens), VOCAB), -np.inf)
        for r, prefix in enumerate(new):
            for tok, prob in self.table.get(prefix, {}).items():
                out[r, tok] = math.log(prob)
        return out, new

    @staticmethod
    def reorder(state, indices):
        return [state[i] for i in indices]


# Given the query: A 0.5, B 0.4, C 0.1; each then ends.
CONDITIONAL = {
    (): {A: 0.5, B: 0.4, C: 0.1},
    (A,): {EOS_ID: 1.0},
    (B,): {EOS_ID: 1.0},
    (C,): {EOS_ID: 1.0},
}
# Without a query the stock reply is far more likely: A 0.8, B 0.1, C 0.1.
PRIOR = {
    (): {A: 0.8, B: 0.1, C: 0.1},
    (A,): {EOS_ID: 0.9, B: 0.1},
    (B,): {EOS_ID: 0.5, C: 0.5},
    (C,): {EOS_ID: 0.5, A: 0.5},
}


def run(weight, steps, beam=3):
    cond, prior = Table(CONDITIONAL), Table(PRIOR)
    step, reorder = anti_lm(
        cond.next_log_probs, prior.next_log_probs, cond.reorder, prior.reorder, weight, steps
    )
    hyps = beam_search(
        step, AntiLMState([()], [()]), reorder, batch_size=1, beam_size=beam, max_len=3, n_best=3
    )[0]
    return hyps, prior


def test_without_the_prior_the_stock_reply_wins():
    hyps, prior = run(0.0, 1)
    assert hyps[0].tokens == (A,) and hyps[0].log_prob == pytest.approx(math.log(0.5))
    assert prior.calls == 0  # weight 0: the prior is never run


def test_anti_lm_prefers_the_specific_reply_by_hand():
    hyps, _ = run(0.5, 1)
    # first token only: A: log .5 - .5 log .8 = -0.582; B: log .4 - .5 log .1 = 0.235;
    # C: log .1 - .5 log .1 = -1.151; EOS adds log 1 = 0 (step 2 is unpenalized)
    got = {h.tokens: h.log_prob for h in hyps}
    assert got == pytest.approx(
        {
            (B,): math.log(0.4) - 0.5 * math.log(0.1),
            (A,): math.log(0.5) - 0.5 * math.log(0.8),
            (C,): math.log(0.1) - 0.5 * math.log(0.1),
        }
    )
    assert hyps[0].tokens == (B,)


def test_anti_lm_applies_to_the_first_steps_only():
    hyps, prior = run(0.5, 2)
    got = {h.tokens: h.log_prob for h in hyps}
    # step 2 also subtracts the prior's EOS: B -> .5 log .5, A -> .5 log .9
    assert got[(B,)] == pytest.approx(math.log(0.4) - 0.5 * math.log(0.1) - 0.5 * math.log(0.5))
    assert got[(A,)] == pytest.approx(math.log(0.5) - 0.5 * math.log(0.8) - 0.5 * math.log(0.9))
    assert prior.calls == 2
    _, prior1 = run(0.5, 1)
    assert prior1.calls == 1


def test_anti_lm_rejects_negative_settings():
    t = Table(CONDITIONAL)
    with pytest.raises(ValueError):
        anti_lm(t.next_log_probs, t.next_log_probs, t.reorder, t.reorder, -0.1, 2)
    with pytest.raises(ValueError):
        anti_lm(t.next_log_probs, t.next_log_probs, t.reorder, t.reorder, 0.1, -1)
