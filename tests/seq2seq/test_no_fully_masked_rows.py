"""No encoder row is ever fully masked (Keras's cuDNN GRU path on GPUs asserts that), in training
batches and in the answer prior's empty source at inference, and the bundled model's scores do
not change for it."""

from pathlib import Path

import numpy as np
import tensorflow as tf

from alime.seq2seq.data import Example, bucket_batches
from alime.seq2seq.model import EncoderOutput, encoder_masks, shift_right, target_log_probs
from alime.seq2seq.model_dir import load_model_dir
from alime.seq2seq.vocab import EOS_ID, PAD_ID

BUNDLED_MODEL = Path(__file__).resolve().parents[2] / "data" / "model"


def cudnn_accepts(mask: np.ndarray) -> bool:
    """What Keras checks before cuDNN: every row has a real step, all of them on the left."""
    lengths = mask.sum(axis=1)
    right_padded = all(mask[i, :n].all() and not mask[i, n:].any() for i, n in enumerate(lengths))
    return bool((lengths > 0).all() and right_padded)


def test_no_training_batch_holds_a_fully_masked_row(tiny_config):
    rng = np.random.default_rng(0)
    examples = [
        Example(
            tuple(rng.integers(5, 17, rng.integers(0, 9))),
            (*rng.integers(5, 17, rng.integers(1, 8)), EOS_ID),
        )
        for _ in range(300)
    ]
    batches = bucket_batches(examples, tiny_config.buckets, 8, seed=1, empty_source_rate=0.3)
    empty_rows = 0
    for source, _ in batches:
        rnn_mask, mask, empty = (np.asarray(m) for m in encoder_masks(tf.constant(source)))
        empty_rows += int(empty.sum())
        assert cudnn_accepts(rnn_mask), source
        np.testing.assert_array_equal(mask, source != PAD_ID)  # attention still sees only words
        np.testing.assert_array_equal(empty, (source == PAD_ID).all(axis=1))
    assert empty_rows > 50  # the prior's empty sources really were in the batches


def test_the_empty_source_keeps_the_zero_state_prior_of_the_bundled_model():
    """Scoring with an empty source equals decoding from the bridge of a zero encoder state with
    nothing to attend to: what the fully masked row computed before."""
    loaded = load_model_dir(BUNDLED_MODEL)
    model, hidden = loaded.model, loaded.config.hidden_dim
    targets = [[7, 8, 9, EOS_ID], [10, EOS_ID]]
    got = loaded.inference.answer_log_probs([], targets)
    for target, lp in zip(targets, got, strict=True):
        ids = tf.constant([target], tf.int32)
        zero = EncoderOutput(
            values=tf.zeros([1, 1, hidden]),
            keys=tf.zeros([1, 1, loaded.config.attention_dim]),
            mask=tf.constant([[False]]),
            state=model.bridge(tf.zeros([1, hidden])),
        )
        want = target_log_probs(model.decode(zero, shift_right(ids)), ids).numpy()[0]
        np.testing.assert_allclose(lp, want, rtol=1e-5, atol=1e-5)
    # The GRU itself is handed the cuDNN-valid mask (observed on the layer, eager call).
    seen = []
    call = model.encoder_rnn.call

    def spy(*args, **kwargs):
        seen.append(np.asarray(kwargs["mask"]))
        return call(*args, **kwargs)

    model.encoder_rnn.call = spy
    try:
        model.encode(tf.constant([[8, 9, 4, 10], [PAD_ID] * 4], tf.int32))
        model.encode(tf.constant([[PAD_ID]], tf.int32))
    finally:
        model.encoder_rnn.call = call
    assert len(seen) == 2 and all(cudnn_accepts(m) for m in seen)
    # An empty row beside real ones changes nothing for them.
    source = np.array([[8, 9, 4, 10], [PAD_ID] * 4], np.int32)
    target = np.array([[7, 8, EOS_ID], [7, 8, EOS_ID]], np.int32)
    both = loaded.inference.batch_log_probs(source, target)
    alone = loaded.inference.batch_log_probs(source[:1], target[:1])
    np.testing.assert_allclose(both[:1], alone, rtol=1e-5, atol=1e-6)
