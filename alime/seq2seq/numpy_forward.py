"""The seq2seq network's inference forward pass in numpy, from a dict of float weights.

Why numpy: at serving sizes (one query, ~10 candidates, ~20 steps) a Keras GRU inside a
``tf.function`` spends most of its time in per-op and while-loop overhead, not arithmetic; a
Python loop over a handful of numpy ops per step is several times cheaper. The maths matches
``alime.seq2seq.model`` exactly (Keras GRU with ``reset_after=True``, gates ordered z, r, h).
Weights are keyed like ``alime.seq2seq.quantized.weight_name`` ('encoder/gru_cell/kernel', ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alime.seq2seq.vocab import BOS_ID, PAD_ID

_MASKED_SCORE = -1e9


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function in the tanh form, which cannot overflow (no exp of large values)."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@dataclass
class Encoded:
    """One encoder pass.

    Attributes:
        values: encoder outputs [b, src, hidden].
        keys: projected outputs [b, src, att].
        mask: True at real source positions [b, src].
        state: the decoder's initial state [b, hidden].
    """

    values: np.ndarray
    keys: np.ndarray
    mask: np.ndarray
    state: np.ndarray


# Precompute every vocabulary entry's GRU input projection when the table stays this small
# (floats): a step's input projection is then a row lookup instead of a matrix product.
_MAX_INPUT_TABLE = 16_000_000


class NumpySeq2Seq:
    """Inference-only forward pass of ``Seq2SeqModel`` (dropout off).

    Per-step cost is what matters at serving sizes, so two things are done once here: each
    vocabulary entry's input projection ``embedding @ kernel + bias`` (with the z and r gates'
    recurrent bias folded in, as it sits outside any product) is a table row, for the encoder and
    the decoder; and a beam's rows share one encoder pass by broadcasting (see ``attend``).

    Args:
        weights: float32 arrays by weight name (biases included).
    """

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        w = {k: np.ascontiguousarray(v, np.float32) for k, v in weights.items()}
        self.embeddings = w["embedding/embeddings"]
        self.enc_kernel = w["encoder/gru_cell/kernel"]
        self.enc_rec = w["encoder/gru_cell/recurrent_kernel"]
        self.enc_bias = w["encoder/gru_cell/bias"]
        self.dec_kernel = w["decoder/gru_cell/kernel"]
        self.dec_rec = w["decoder/gru_cell/recurrent_kernel"]
        self.dec_bias = w["decoder/gru_cell/bias"]
        self.bridge_w, self.bridge_b = w["bridge/kernel"], w["bridge/bias"]
        self.key_w = w["key_proj/kernel"]
        self.query_w = w["attention/query_proj/kernel"]
        self.query_b = w["attention/query_proj/bias"]
        self.score_v = w["attention/score_proj/kernel"][:, 0]
        self.combine_w, self.combine_b = w["combine/kernel"], w["combine/bias"]
        small = self.embeddings.shape[0] * self.enc_kernel.shape[1] <= _MAX_INPUT_TABLE
        self._enc_table = (
            self._project(np.arange(self.embeddings.shape[0]), self.enc_kernel, self.enc_bias)
            if small
            else None
        )
        self._dec_table = (
            self._project(np.arange(self.embeddings.shape[0]), self.dec_kernel, self.dec_bias)
            if small
            else None
        )

    def _project(self, ids: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """GRU input projections of token ids, with the z and r recurrent bias folded in."""
        units = kernel.shape[1] // 3
        out = self.embeddings[ids] @ kernel + bias[0]
        out[..., : 2 * units] += bias[1, : 2 * units]
        return out

    def _inputs(
        self, ids: np.ndarray, table: np.ndarray | None, kernel: np.ndarray, bias: np.ndarray
    ) -> np.ndarray:
        return table[ids] if table is not None else self._project(ids, kernel, bias)

    @staticmethod
    def _gru(
        x_proj: np.ndarray,
        h: np.ndarray,
        rec: np.ndarray,
        cand_bias: np.ndarray,
        mask: np.ndarray | None,
        active: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Run a GRU over input projections [b, steps, 3h] (``_project``: input bias and the z, r
        recurrent bias included); ``cand_bias`` is the candidate's recurrent bias [h], the one
        that sits inside ``r * (...)``.

        Args:
            active: optional rows still running at each step [steps], for rows sorted by
                decreasing length: step t updates only the first ``active[t]`` rows (the others
                are padding and keep their state), so short candidates stop costing work.

        Returns:
            (outputs [b, steps, h], last state [b, h]); outputs of inactive rows are zero.
        """
        units = h.shape[1]
        steps = x_proj.shape[1]
        outputs = np.zeros((h.shape[0], steps, units), np.float32)
        h = h.copy()
        for t in range(steps):
            n = h.shape[0] if active is None else int(active[t])
            xp, prev = x_proj[:n, t], h[:n]
            hp = prev @ rec
            zr = sigmoid(xp[:, : 2 * units] + hp[:, : 2 * units])
            z, r = zr[:, :units], zr[:, units:]
            cand = np.tanh(xp[:, 2 * units :] + r * (hp[:, 2 * units :] + cand_bias))
            new = cand + z * (prev - cand)  # = z * h + (1 - z) * cand
            # Masked (padding) steps keep the previous state, as Keras does.
            h[:n] = new if mask is None else np.where(mask[:n, t, None], new, prev)
            outputs[:n, t] = h[:n]
        return outputs, h

    def encode(self, source_ids: np.ndarray) -> Encoded:
        """Encoder pass over right-padded ids [b, src]."""
        mask = source_ids != PAD_ID
        x_proj = self._inputs(source_ids, self._enc_table, self.enc_kernel, self.enc_bias)
        units = self.enc_rec.shape[0]
        h0 = np.zeros((source_ids.shape[0], units), np.float32)
        values, last = self._gru(x_proj, h0, self.enc_rec, self.enc_bias[1, 2 * units :], mask)
        state = np.tanh(last @ self.bridge_w + self.bridge_b)
        return Encoded(values, values @ self.key_w, mask, state)

    def decoder_states(
        self, target_ids: np.ndarray, state: np.ndarray, lengths: np.ndarray | None = None
    ) -> np.ndarray:
        """Teacher-forced decoder GRU outputs [b, steps, hidden] (inputs: BOS + target[:-1]).

        Args:
            lengths: optional target lengths in decreasing order (rows sorted so); outputs past
                a row's length are then zero instead of computed.
        """
        inputs = np.concatenate(
            [np.full((target_ids.shape[0], 1), BOS_ID, target_ids.dtype), target_ids[:, :-1]], 1
        )
        x_proj = self._inputs(inputs, self._dec_table, self.dec_kernel, self.dec_bias)
        active = None
        if lengths is not None:
            if np.any(np.diff(lengths) > 0):
                raise ValueError("lengths must be in decreasing order")
            # Rows running at step t: those longer than t (a prefix, since sorted).
            active = (np.asarray(lengths)[None, :] > np.arange(target_ids.shape[1])[:, None]).sum(1)
        units = self.dec_rec.shape[0]
        return self._gru(x_proj, state, self.dec_rec, self.dec_bias[1, 2 * units :], None, active)[
            0
        ]

    def attend(self, queries: np.ndarray, enc: Encoded) -> np.ndarray:
        """Additive attention: queries [b, n, hidden] -> context [b, n, hidden].

        ``enc`` may hold one row for all b queries (a beam over one source): it broadcasts.
        """
        q = queries @ self.query_w + self.query_b
        energy = np.tanh(q[:, :, None, :] + enc.keys[:, None, :, :]) @ self.score_v
        energy = np.where(enc.mask[:, None, :], energy, _MASKED_SCORE)
        energy = np.exp(energy - energy.max(axis=-1, keepdims=True))
        weights = energy / energy.sum(axis=-1, keepdims=True) * enc.mask[:, None, :]
        return weights @ enc.values

    def combine(self, states: np.ndarray, context: np.ndarray) -> np.ndarray:
        """The pre-softmax hidden layer ``tanh(W [state; context] + b)``."""
        return np.tanh(np.concatenate([states, context], axis=-1) @ self.combine_w + self.combine_b)

    def step(self, tokens: np.ndarray, hidden: np.ndarray, enc: Encoded):
        """One decoder step: (pre-softmax hidden [rows, hidden], new GRU state [rows, hidden]).

        ``enc`` has one row per state row, or one row for all of them.
        """
        units = hidden.shape[1]
        xp = self._inputs(tokens, self._dec_table, self.dec_kernel, self.dec_bias)
        hp = hidden @ self.dec_rec
        zr = sigmoid(xp[:, : 2 * units] + hp[:, : 2 * units])
        z, r = zr[:, :units], zr[:, units:]
        cand = np.tanh(
            xp[:, 2 * units :] + r * (hp[:, 2 * units :] + self.dec_bias[1, 2 * units :])
        )
        new = cand + z * (hidden - cand)
        if not enc.mask.any():
            # No real source position (the anti-LM's response prior, an empty source): every
            # attention weight is 0, so the context is exactly zero and need not be computed.
            return self.combine(new, np.zeros_like(new)), new
        return self.combine(new, self.attend(new[:, None, :], enc)[:, 0]), new
