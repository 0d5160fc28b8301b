"""`--jit-compile`: the XLA-compiled replica step gives the plain step's loss and gradients, is
traced once for every bucket shape, and short batches are padded so that XLA sees one shape per
bucket; the command line is in test_train_jit_cli.py."""

import dataclasses

import numpy as np
import pytest

from alime.seq2seq.data import Example, bucket_batches
from alime.seq2seq.training import Trainer, TrainOptions, pad_rows
from alime.seq2seq.vocab import EOS_ID

EXAMPLES = [
    Example((5, 6), (7, 8, EOS_ID)),
    Example((), (10, EOS_ID)),  # the answer prior's empty source
    Example((11, 12, 13), (14, 15, 16, EOS_ID)),
    Example((6,), (5, EOS_ID)),
]


def _loss_and_grads(trainer: Trainer, source, target):
    """The replica's loss and gradients through the function the step calls (XLA or not)."""
    import tensorflow as tf

    pluto = trainer.pluto

    @tf.function
    def run():
        loss, _, grads = pluto.strategy.run(pluto._grad_fn, args=((source, target), target))
        return loss, grads

    loss, grads = run()
    return float(loss), [np.asarray(g) for g in grads]


def test_xla_step_equals_the_plain_step(tiny_config):
    config = dataclasses.replace(tiny_config, dropout=0.0)
    (source, target), *_ = bucket_batches(EXAMPLES, config.buckets, batch_size=4)
    options = TrainOptions(seed=3, learning_rate=0.01, contrastive_weight=0.5)
    plain = Trainer(config, options)
    xla = Trainer(config, dataclasses.replace(options, jit_compile=True))
    assert not hasattr(plain.pluto._grad_fn, "experimental_get_tracing_count")
    assert xla.pluto._grad_fn.function_spec.jit_compile  # really the XLA-compiled function
    for a, b in zip(plain.model.weights, xla.model.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())  # same seed, same start

    loss_p, grads_p = _loss_and_grads(plain, source, target)
    loss_x, grads_x = _loss_and_grads(xla, source, target)
    assert loss_p == pytest.approx(loss_x, abs=1e-5)
    assert max(float(np.abs(g).max()) for g in grads_p) > 1e-3
    for a, b in zip(grads_p, grads_x, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)

    # One whole step (reduce, clip, Adam) and an evaluation, each way, on a full batch (the
    # XLA trainer would pad a short one; that padding is checked on its own below): Adam's
    # first update is about lr * sign(g), which turns rounding-level differences of a near-zero
    # gradient into differences of 2 lr, so both sides must see the same rows.
    batches = [pad_rows(source, target, plain.global_batch)]
    assert plain.train_epoch(batches) == pytest.approx(xla.train_epoch(batches), abs=1e-5)
    for a, b in zip(plain.model.trainable_weights, xla.model.trainable_weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, rtol=0)
    assert plain.evaluate(batches) == pytest.approx(xla.evaluate(batches), abs=1e-5)


def test_xla_step_is_traced_once_for_every_bucket_shape(tiny_config):
    config = dataclasses.replace(tiny_config, buckets=((2, 2), (8, 8)))
    trainer = Trainer(config, TrainOptions(seed=1, jit_compile=True))
    examples = [
        Example((5,), (7, EOS_ID)),
        Example((5, 6, 7, 8, 9, 10), (7, 8, 9, 10, 11, EOS_ID)),
    ]
    batches = bucket_batches(examples * 3, config.buckets, batch_size=2)
    batches += bucket_batches(examples, config.buckets, batch_size=1)
    assert len({(s.shape, t.shape) for s, t in batches}) == 4
    # Short batches are padded to the full size: one input shape per bucket for XLA.
    shapes = {(s.shape, t.shape) for (s, _), t in trainer._dataset(batches).as_numpy_iterator()}
    assert shapes == {((64, 2), (64, 2)), ((64, 8), (64, 8))}
    trainer.train_epoch(batches)
    trainer.evaluate(batches)
    trainer.train_epoch(batches[::-1])
    # The graph around the XLA part is traced once, not per batch or shape, and so is the
    # XLA-compiled function inside it (XLA's own per-shape compilations are not retraces).
    assert trainer.pluto._train_fn.experimental_get_tracing_count() == 1
    assert trainer.pluto._eval_fn.experimental_get_tracing_count() == 1
    assert trainer.pluto._grad_fn.experimental_get_tracing_count() == 1
    assert trainer.pluto._forward_fn.experimental_get_tracing_count() == 1


def test_padding_rows_change_no_loss(tiny_config):
    """An all-PAD row adds no token loss and is no contrastive negative or row."""
    import tensorflow as tf

    from alime.seq2seq.model import build_model
    from alime.seq2seq.training import seq2seq_losses

    config = dataclasses.replace(tiny_config, dropout=0.0)
    model = build_model(config)
    (source, target), *_ = bucket_batches(EXAMPLES, config.buckets, batch_size=4)
    padded = pad_rows(source, target, 7)
    assert padded[0].shape == (7, source.shape[1]) and not padded[1][4:].any()
    assert pad_rows(source, target, 3)[0] is source  # never cut
    options = TrainOptions(contrastive_weight=1.0, contrastive_negatives=3)
    plain = seq2seq_losses(model, tf.constant(source), tf.constant(target), options, False)
    more = seq2seq_losses(model, tf.constant(padded[0]), tf.constant(padded[1]), options, False)
    for a, b in zip(plain, more, strict=True):
        assert float(a) == pytest.approx(float(b), abs=1e-6)
    assert float(plain[2]) > 0  # the contrastive term is there to be disturbed
