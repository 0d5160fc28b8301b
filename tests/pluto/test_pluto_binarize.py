"""Binarized weights: values, packing, sizes and straight-through fine-tuning."""

from __future__ import annotations

import numpy as np
import pytest

from pluto.binarize import binarize, pack, scales_of, size_ratio, unpack


def test_binarize_hand_computed():
    w = np.array([[0.5, -2.0], [-1.5, 0.0]], np.float32)
    # scales: mean |w| per output column: (0.5 + 1.5) / 2 = 1, (2 + 0) / 2 = 1
    np.testing.assert_allclose(scales_of(w), [1.0, 1.0])
    np.testing.assert_allclose(binarize(w), [[1.0, -1.0], [-1.0, 1.0]])  # sign(0) = +1


def test_scale_is_the_least_squares_one():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(50, 7)).astype(np.float32)
    signs = np.where(w >= 0, 1.0, -1.0)
    best = np.square(w - binarize(w)).sum()
    for factor in (0.9, 1.1):
        other = signs * scales_of(w)[None, :] * factor
        assert np.square(w - other).sum() > best


def test_pack_roundtrip_and_size():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(128, 384)).astype(np.float32)
    packed = pack(w)
    np.testing.assert_array_equal(unpack(packed), binarize(w))
    assert packed.nbytes == 128 * 384 // 8 + 384 * 4
    assert size_ratio([w]) == pytest.approx(128 * 384 * 4 / packed.nbytes)
    assert size_ratio([w]) > 25


def test_ste_step_applies_the_gradient_at_the_binarized_weights_to_the_latent_ones():
    tf = pytest.importorskip("tensorflow")
    import keras

    from pluto.binarize import SteTrainer, binarize_tensor

    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(size=(32, 6)).astype(np.float32))
    y = tf.constant(rng.normal(size=(32, 3)).astype(np.float32))
    keras.utils.set_random_seed(0)
    layer = keras.layers.Dense(3)
    layer.build((None, 6))
    latent0 = layer.kernel.numpy().copy()
    bias0 = layer.bias.numpy().copy()

    def loss_fn(batch):
        xb, yb = batch
        return tf.reduce_mean(tf.square(layer(xb) - yb))

    # Reference: the gradient of the loss evaluated with the binarized kernel.
    kb = tf.Variable(binarize_tensor(tf.constant(latent0)))
    with tf.GradientTape() as tape:
        ref_loss = tf.reduce_mean(tf.square(x @ kb + bias0 - y))
    ref_grad = tape.gradient(ref_loss, kb).numpy()

    lr = 0.05
    trainer = SteTrainer(
        [layer.kernel], layer.trainable_variables, loss_fn, keras.optimizers.SGD(lr)
    )
    loss = trainer.step((x, y))
    assert loss == pytest.approx(float(ref_loss), rel=1e-6)
    np.testing.assert_allclose(layer.kernel.numpy(), latent0 - lr * ref_grad, rtol=1e-5, atol=1e-6)

    before = trainer.binary_loss((x, y))
    for _ in range(40):
        trainer.step((x, y))
    assert trainer.binary_loss((x, y)) < before


def test_ste_clip_freezes_large_latent_weights():
    tf = pytest.importorskip("tensorflow")
    import keras

    from pluto.binarize import SteTrainer

    var = tf.Variable(np.array([[2.0, -0.1], [0.2, -3.0]], np.float32))
    x = tf.constant(np.ones((4, 2), np.float32))

    def loss_fn(batch):
        return tf.reduce_sum(batch @ var)

    trainer = SteTrainer([var], [var], loss_fn, keras.optimizers.SGD(0.1), clip=1.0)
    trainer.step(x)
    got = var.numpy()
    assert got[0, 0] == pytest.approx(2.0) and got[1, 1] == pytest.approx(-3.0)
    assert got[0, 1] != pytest.approx(-0.1) and got[1, 0] != pytest.approx(0.2)


def test_trainer_rejects_untrainable_binary_variables():
    tf = pytest.importorskip("tensorflow")
    import keras

    from pluto.binarize import SteTrainer

    a, b = tf.Variable(np.ones((2, 2), np.float32)), tf.Variable(np.ones((2, 2), np.float32))
    with pytest.raises(ValueError, match="trainable"):
        SteTrainer([a], [b], lambda batch: tf.reduce_sum(a), keras.optimizers.SGD(0.1))
