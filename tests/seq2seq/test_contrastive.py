import numpy as np
import pytest
import tensorflow as tf

from alime.seq2seq.data import Example, bucket_batches
from alime.seq2seq.training import (
    Trainer,
    TrainOptions,
    _best_objective,
    contrastive_loss,
    in_batch_negatives,
    seq2seq_losses,
    sequence_scores,
)
from alime.seq2seq.vocab import EOS_ID, PAD_ID

EXAMPLES = [
    Example((5, 6), (7, 8, EOS_ID)),
    Example((9,), (10, EOS_ID)),
    Example((11, 12, 13), (14, 15, 16, EOS_ID)),
    Example((6,), (5, EOS_ID)),
]


def test_sequence_scores_average_over_real_tokens():
    log_probs = tf.constant([[-1.0, -3.0, -7.0], [-2.0, -9.0, -9.0]])
    target = tf.constant([[5, 6, PAD_ID], [5, PAD_ID, PAD_ID]])
    np.testing.assert_allclose(sequence_scores(log_probs, target).numpy(), [-2.0, -2.0])


def test_in_batch_negatives_are_the_following_rows():
    target = tf.constant([[1], [2], [3]])
    assert in_batch_negatives(target, 2).numpy()[:, 0].tolist() == [2, 3, 1, 3, 1, 2]


def test_contrastive_loss_is_infonce_and_masks_duplicates_and_empty_sources():
    positive = tf.constant([0.0, 0.0, 0.0])
    negative = tf.constant([[0.0, np.log(3.0)], [5.0, 5.0], [9.0, 9.0]])
    distinct = tf.constant([[True, True], [False, False], [True, True]])
    has_source = tf.constant([True, True, False])
    loss = contrastive_loss(positive, negative, distinct, has_source)
    # Only row 0 counts: -log(1 / (1 + 1 + 3)).
    assert float(loss) == pytest.approx(np.log(5.0), rel=1e-5)
    none = contrastive_loss(positive, negative, tf.zeros_like(distinct), has_source)
    assert float(none) == 0.0


def _batch(config):
    return bucket_batches(EXAMPLES, config.buckets, batch_size=4)[0]


def test_contrastive_term_is_off_at_weight_zero(tiny_config):
    trainer = Trainer(tiny_config, TrainOptions(seed=1))
    batch = (tf.constant(a) for a in _batch(tiny_config))
    _, _, term = seq2seq_losses(trainer.model, *batch, trainer.options)
    assert float(term) == 0.0


def test_contrastive_term_is_finite_and_falls_when_trained(tiny_config):
    trainer = Trainer(
        tiny_config,
        TrainOptions(learning_rate=0.05, seed=1, contrastive_weight=1.0, contrastive_negatives=3),
    )
    batch = tuple(tf.constant(a) for a in _batch(tiny_config))
    before = float(seq2seq_losses(trainer.model, *batch, trainer.options)[2])
    assert np.isfinite(before) and before > 0
    trainer.train_epoch([_batch(tiny_config)] * 15)
    assert np.isfinite(trainer.last_contrastive)
    assert float(seq2seq_losses(trainer.model, *batch, trainer.options)[2]) < 0.5 * before


def test_options_reject_bad_contrastive_settings():
    with pytest.raises(ValueError):
        TrainOptions(contrastive_weight=-1.0)
    with pytest.raises(ValueError):
        TrainOptions(contrastive_negatives=0)
    with pytest.raises(ValueError):
        TrainOptions(contrastive_temperature=0.0)


def test_validation_objective_adds_the_weighted_contrastive_term(tiny_config):
    trainer = Trainer(tiny_config, TrainOptions(seed=1, contrastive_weight=0.5))
    val_loss = trainer.evaluate([_batch(tiny_config)])
    assert trainer.last_valid_contrastive > 0
    assert trainer.objective(val_loss) == pytest.approx(
        val_loss + 0.5 * trainer.last_valid_contrastive
    )


def test_a_resumed_run_with_another_weight_restarts_the_best_objective():
    state = {"best_val_loss": 4.0, "best_objective": 4.0, "objective_weight": 0.0}
    assert _best_objective(state, 0.0) == 4.0
    assert _best_objective(state, 1.0) is None
    assert _best_objective({"best_val_loss": 3.0}, 0.0) == 3.0
