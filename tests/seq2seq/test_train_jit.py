"""`--jit-compile`: the XLA-compiled replica step gives the plain step's loss and gradients, is
traced once for every bucket shape (XLA compiles per shape underneath); the command line is in
test_train_jit_cli.py."""

import dataclasses

import numpy as np
import pytest

from alime.seq2seq.data import Example, bucket_batches
from alime.seq2seq.training import Trainer, TrainOptions
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

    # One whole step (reduce, clip, Adam) and an evaluation, each way.
    batches = [(source, target)]
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
    trainer.train_epoch(batches)
    trainer.evaluate(batches)
    trainer.train_epoch(batches[::-1])
    # XLA compiles per shape underneath; the graph around it is traced once, not per batch.
    assert trainer.pluto._train_fn.experimental_get_tracing_count() == 1
    assert trainer.pluto._eval_fn.experimental_get_tracing_count() == 1
