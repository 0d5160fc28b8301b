"""The attentive GRU encoder-decoder (Keras 3 layers on the TensorFlow backend).

The network only sees ids; text handling lives in ``data.py``. ``Seq2SeqModel`` is the trainable
Keras model; ``InferenceModel`` wraps it in traced ``tf.function``s for the two serving paths:
teacher-forced scoring of k candidate answers for one query (one encoder pass, one batch) and the
single decoder step that beam search calls.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from alime.seq2seq.config import Seq2SeqConfig  # noqa: E402
from alime.seq2seq.targets import score_distinct_targets  # noqa: E402
from alime.seq2seq.vocab import BOS_ID, PAD_ID  # noqa: E402

# A large finite negative instead of -inf keeps softmax NaN-free when a source is all padding.
_MASKED_SCORE = -1e9


class AdditiveAttention(keras.layers.Layer):
    """Bahdanau attention: ``score(s, h) = v . tanh(W_k h + W_q s)``.

    Args:
        units: size of the hidden layer inside the score.
        dense: the Dense layer class for the projections (``keras.layers.Dense`` or a subclass).
    """

    def __init__(self, units: int, dense=None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.units = units
        dense = dense or keras.layers.Dense
        self.key_proj = dense(units, use_bias=False, name="key_proj")
        self.query_proj = dense(units, name="query_proj")
        # One output unit: its gradient is never worth exchanging as factors.
        self.score_proj = keras.layers.Dense(1, use_bias=False, name="score_proj")

    def keys(self, values: tf.Tensor) -> tf.Tensor:
        """Project encoder outputs once per source; reused by every decoder step."""
        return self.key_proj(values)

    def call(self, queries: tf.Tensor, keys: tf.Tensor, values: tf.Tensor, mask: tf.Tensor):
        """Attend from each decoder state to the source.

        Args:
            queries: decoder states [batch, steps, hidden].
            keys: projected encoder outputs [batch, src, units].
            values: encoder outputs [batch, src, hidden].
            mask: True at real source positions [batch, src].

        Returns:
            Context vectors [batch, steps, hidden]; all zeros for an empty (all-padding) source.
        """
        q = self.query_proj(queries)
        energy = self.score_proj(tf.tanh(q[:, :, None, :] + keys[:, None, :, :]))[..., 0]
        # The softmax in float32 whatever the compute dtype (mixed precision): -1e9 does not fit
        # float16, and an all -inf row would give NaN.
        energy = tf.where(mask[:, None, :], tf.cast(energy, tf.float32), _MASKED_SCORE)
        weights = tf.nn.softmax(energy, axis=-1) * tf.cast(mask, tf.float32)[:, None, :]
        return tf.matmul(tf.cast(weights, values.dtype), values)

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units}


@dataclass
class EncoderOutput:
    """What the decoder needs from one encoder pass."""

    values: tf.Tensor  # [batch, src, hidden]
    keys: tf.Tensor  # [batch, src, attention]
    mask: tf.Tensor  # [batch, src] bool
    state: tf.Tensor  # [batch, hidden], the decoder's initial state


class Seq2SeqModel(keras.Model):
    """Embedding, GRU encoder, additive attention, GRU decoder, output projection.

    The decoder runs its GRU over the target prefix, then attends from every state to the source
    and predicts from ``tanh(W [state; context])``. Keeping attention outside the recurrence lets
    teacher forcing run the GRU as one layer call and attention for all steps in one batch.

    Args:
        config: the hyper-parameters.
        late_multiply: build the Dense layers as ``pluto.late_multiply.LateMultiplyDense`` (each
            still plain until its ``late`` flag is set; same variables and weights files).

    Attributes:
        recompute: in training calls, run the encoder block (GRU, attention keys, bridge) and
            the decoder block (GRU, attention, combine) under ``pluto.recompute.checkpoint`` so
            their activations are recomputed in the backward pass instead of kept. The
            embeddings, dropout and the vocabulary projection stay outside the blocks: dropout
            masks are random and would differ when recomputed.
    """

    def __init__(self, config: Seq2SeqConfig, late_multiply: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.recompute = False
        c = config
        if late_multiply:
            from pluto.late_multiply import LateMultiplyDense as dense
        else:
            dense = keras.layers.Dense
        self.embedding = keras.layers.Embedding(c.vocab_size, c.embed_dim, name="embedding")
        self.encoder_rnn = keras.layers.GRU(
            c.hidden_dim, return_sequences=True, return_state=True, name="encoder"
        )
        self.bridge = dense(c.hidden_dim, activation="tanh", name="bridge")
        self.decoder_rnn = keras.layers.GRU(
            c.hidden_dim, return_sequences=True, return_state=True, name="decoder"
        )
        self.attention = AdditiveAttention(c.attention_dim, name="attention", dense=dense)
        self.combine = dense(c.hidden_dim, activation="tanh", name="combine")
        # float32 logits under a mixed-precision policy too: the softmax over the vocabulary
        # and the loss need the range (the weights are float32 either way).
        self.output_proj = dense(c.vocab_size, name="output_proj", dtype="float32")
        self.dropout = keras.layers.Dropout(c.dropout)

    def get_config(self) -> dict:
        return self.config.to_dict()

    def encode(self, source_ids: tf.Tensor, training: bool = False) -> EncoderOutput:
        """Run the encoder over right-padded source ids [batch, src]."""
        source_ids = tf.convert_to_tensor(source_ids)
        # At least one column, so an empty source still has a position for the GRU to see.
        width = tf.shape(source_ids)[1]
        source_ids = tf.pad(source_ids, [[0, 0], [0, tf.maximum(1 - width, 0)]])
        rnn_mask, mask, empty = encoder_masks(source_ids)
        x = self.dropout(self.embedding(source_ids), training=training)

        # The masks reach the block by closure: checkpointed blocks take float tensors only.
        def block(x):
            values, last = self.encoder_rnn(x, mask=rnn_mask, training=training)
            # An all-padding source (the answer prior) keeps the zero state, exactly as when its
            # row was fully masked; the bridge maps it to a learned start state. Its one
            # unmasked PAD step is hidden from attention by ``mask``.
            last = tf.where(empty[:, None], tf.zeros_like(last), last)
            return values, self.attention.keys(values), self.bridge(last)

        values, keys, state = self._block(block, training)(x)
        return EncoderOutput(values, keys, mask, state)

    def _block(self, fn, training: bool):
        """``fn`` checkpointed when recomputation is on for this (training) call."""
        if self.recompute and training:
            from pluto.recompute import checkpoint

            return checkpoint(fn)
        return fn

    def _hidden(self, states: tf.Tensor, enc: EncoderOutput) -> tf.Tensor:
        context = self.attention(states, enc.keys, enc.values, enc.mask)
        return self.combine(tf.concat([states, context], axis=-1))

    def _predict(self, states: tf.Tensor, enc: EncoderOutput, training: bool) -> tf.Tensor:
        hidden = self._hidden(states, enc)
        return self.output_proj(self.dropout(hidden, training=training))

    def decode(self, enc: EncoderOutput, decoder_inputs: tf.Tensor, training: bool = False):
        """Teacher-forced logits [batch, steps, vocab] for decoder input ids [batch, steps]."""
        return self.output_proj(self.decode_hidden(enc, decoder_inputs, training))

    def decode_hidden(
        self, enc: EncoderOutput, decoder_inputs: tf.Tensor, training: bool = False
    ) -> tf.Tensor:
        """What the vocabulary projection reads [batch, steps, hidden] (dropout applied): the
        split point of hybrid training, which projects these rows with a sharded head."""
        x = self.dropout(self.embedding(decoder_inputs), training=training)

        def block(x, values, keys, state):
            states, _ = self.decoder_rnn(x, initial_state=state, training=training)
            return self._hidden(states, EncoderOutput(values, keys, enc.mask, state))

        hidden = self._block(block, training)(x, enc.values, enc.keys, enc.state)
        return self.dropout(hidden, training=training)

    def call(self, inputs, training: bool = False):
        """Logits for ``(source_ids, decoder_input_ids)``."""
        source_ids, decoder_inputs = inputs
        return self.decode(self.encode(source_ids, training), decoder_inputs, training)

    def decode_step(self, tokens: tf.Tensor, hidden: tf.Tensor, enc: EncoderOutput):
        """One decoder step: previous tokens [batch] -> (log-probs [batch, vocab], new hidden)."""
        out, new_states = self.decoder_rnn.cell(self.embedding(tokens), [hidden], training=False)
        logits = self._predict(out[:, None, :], enc, training=False)[:, 0, :]
        new_hidden = new_states[0] if isinstance(new_states, (list, tuple)) else new_states
        return tf.nn.log_softmax(logits, axis=-1), new_hidden


def encoder_masks(source_ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The encoder GRU's mask, the attention mask and which rows are empty.

    An all-padding source (the answer prior, 10% of training rows) would be a fully masked row,
    which Keras's cuDNN GRU path (GPUs) rejects at run time; it also needs right-padded masks.
    The GRU therefore sees the first (PAD) position of an empty row as real, and
    :meth:`Seq2SeqModel.encode` puts back the zero state such a row had: the outputs equal the
    fully-masked computation on CPU, so models trained before keep their scores.

    Args:
        source_ids: right-padded ids [batch, src] with src >= 1.

    Returns:
        (rnn_mask, mask, empty): [batch, src] bool with no all-False row and right-padded;
        [batch, src] bool, True at real tokens; [batch] bool, True for all-padding rows.
    """
    mask = tf.not_equal(source_ids, PAD_ID)
    empty = tf.logical_not(tf.reduce_any(mask, axis=1))
    first = tf.equal(tf.range(tf.shape(source_ids)[1]), 0)
    rnn_mask = tf.logical_or(mask, tf.logical_and(empty[:, None], first[None, :]))
    return rnn_mask, mask, empty


def shift_right(target_ids: tf.Tensor) -> tf.Tensor:
    """Decoder inputs: BOS followed by the target without its last id."""
    bos = tf.fill([tf.shape(target_ids)[0], 1], tf.constant(BOS_ID, target_ids.dtype))
    return tf.concat([bos, target_ids[:, :-1]], axis=1)


def target_log_probs(logits: tf.Tensor, target_ids: tf.Tensor) -> tf.Tensor:
    """Log-probability of each target id [batch, steps] (padding positions included)."""
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    return tf.gather(log_probs, target_ids, axis=-1, batch_dims=2)


def build_model(config: Seq2SeqConfig, late_multiply: bool = False) -> Seq2SeqModel:
    """A model with its variables created (so weights can be loaded or counted).

    Args:
        config: the hyper-parameters.
        late_multiply: Dense layers that can take Pluto's late-multiply gradient path.
    """
    model = Seq2SeqModel(config, late_multiply=late_multiply)
    dummy = tf.constant([[BOS_ID]], dtype=tf.int32)
    model((dummy, dummy))
    return model


_IDS = tf.TensorSpec([None, None], tf.int32)


class InferenceModel:
    """Traced inference paths over a trained ``Seq2SeqModel``.

    Each path is a ``tf.function`` with ``None`` dimensions in its input signature, so it is
    traced once whatever the number of candidates or their lengths.

    Args:
        model: the trained network.
    """

    def __init__(self, model: Seq2SeqModel) -> None:
        self.model = model
        self._candidates = tf.function(self._candidate_log_probs, input_signature=[_IDS, _IDS])
        self._batch = tf.function(self._batch_log_probs, input_signature=[_IDS, _IDS])
        self._start = tf.function(self._encode, input_signature=[_IDS])
        hidden = self.model.config.hidden_dim
        att = self.model.config.attention_dim
        self._step = tf.function(
            self._decode_step,
            input_signature=[
                tf.TensorSpec([None], tf.int32),
                tf.TensorSpec([None, hidden], tf.float32),
                tf.TensorSpec([None, None, hidden], tf.float32),
                tf.TensorSpec([None, None, att], tf.float32),
                tf.TensorSpec([None, None], tf.bool),
            ],
        )

    def _candidate_log_probs(self, source_ids, target_ids):
        enc = self.model.encode(source_ids)
        k = tf.shape(target_ids)[0]
        # Encode the query once, then tile its encoding over the k candidates.
        tiled = EncoderOutput(
            *(tf.repeat(t, k, axis=0) for t in (enc.values, enc.keys, enc.mask, enc.state))
        )
        logits = self.model.decode(tiled, shift_right(target_ids))
        return target_log_probs(logits, target_ids)

    def _batch_log_probs(self, source_ids, target_ids):
        logits = self.model.decode(self.model.encode(source_ids), shift_right(target_ids))
        return target_log_probs(logits, target_ids)

    def _encode(self, source_ids):
        enc = self.model.encode(source_ids)
        return enc.state, enc.values, enc.keys, enc.mask

    def _decode_step(self, tokens, hidden, values, keys, mask):
        return self.model.decode_step(tokens, hidden, EncoderOutput(values, keys, mask, hidden))

    def candidate_log_probs(self, source_ids: np.ndarray, target_ids: np.ndarray) -> np.ndarray:
        """Per-token log-probs [k, steps] of k right-padded targets given ONE source [src]."""
        src = np.asarray(source_ids, np.int32)[None, :]
        return self._candidates(src, np.asarray(target_ids, np.int32)).numpy()

    def batch_log_probs(self, source_ids: np.ndarray, target_ids: np.ndarray) -> np.ndarray:
        """Per-token log-probs [batch, steps] of each target given its own source row."""
        src, tgt = np.asarray(source_ids, np.int32), np.asarray(target_ids, np.int32)
        return self._batch(src, tgt).numpy()

    def answer_log_probs(
        self, source_ids: Sequence[int], targets: Sequence[Sequence[int]]
    ) -> list[np.ndarray]:
        """Per-token log-probs of each target (EOS included when present) given one source.

        All targets are teacher-forced in one batch after one encoder pass. An empty source gives
        the answer prior (the decoder as a response-only language model).
        """
        return score_distinct_targets(source_ids, targets, np.int32, self.candidate_log_probs)

    def start(self, source_ids: np.ndarray) -> dict[str, tf.Tensor]:
        """Encode a batch of sources; the result is the decoder state for ``step``."""
        state, values, keys, mask = self._start(np.asarray(source_ids, np.int32))
        return {"hidden": state, "values": values, "keys": keys, "mask": mask}

    def step(self, tokens: np.ndarray, state: dict[str, tf.Tensor]):
        """Next-token log-probs [rows, vocab] (numpy) and the new state."""
        log_probs, hidden = self._step(
            np.asarray(tokens, np.int32),
            state["hidden"],
            state["values"],
            state["keys"],
            state["mask"],
        )
        return log_probs.numpy(), {**state, "hidden": hidden}

    @staticmethod
    def reorder(state: dict[str, tf.Tensor], indices: np.ndarray) -> dict[str, tf.Tensor]:
        """Select state rows (beam search keeps the rows of surviving hypotheses)."""
        idx = tf.constant(np.asarray(indices, np.int32))
        return {name: tf.gather(t, idx, axis=0) for name, t in state.items()}
