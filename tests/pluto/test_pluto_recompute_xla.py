"""Recomputation (gradients equal, peak memory lower) and the XLA side-by-side comparison."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from pluto.compilation import compare  # noqa: E402
from pluto.hybrid import profile_layer  # noqa: E402
from pluto.recompute import checkpoint, peak_bytes  # noqa: E402


def _blocks(rng):
    w1 = [tf.Variable(rng.normal(size=(16, 4096)).astype("float32") * 0.1) for _ in range(4)]
    w2 = [tf.Variable(rng.normal(size=(4096, 16)).astype("float32") * 0.01) for _ in range(4)]

    def block(i):
        # A wide hidden layer inside each block: 4 MB of activations that recompute drops.
        return lambda h: tf.tanh(tf.tanh(h @ w1[i]) @ w2[i])

    return [block(i) for i in range(4)], w1 + w2


def _step(blocks, variables):
    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            h = x
            for block in blocks:
                h = block(h)
            loss = tf.reduce_sum(tf.square(h))
        return loss, tape.gradient(loss, variables)

    return step


@pytest.fixture(scope="module")
def steps():
    rng = np.random.default_rng(0)
    blocks, variables = _blocks(rng)
    x = tf.constant(rng.normal(size=(256, 16)).astype("float32"))
    plain = _step(blocks, variables)
    recomputed = _step([checkpoint(b) for b in blocks], variables)
    return plain, recomputed, x


def test_recomputed_gradients_equal_plain(steps):
    plain, recomputed, x = steps
    loss_p, grads_p = plain(x)
    loss_r, grads_r = recomputed(x)
    assert float(loss_p) == pytest.approx(float(loss_r), rel=1e-6)
    assert max(float(tf.reduce_max(tf.abs(g))) for g in grads_p) > 1e-3
    for a, b in zip(grads_p, grads_r, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_recompute_lowers_the_measured_peak(steps):
    plain, recomputed, x = steps
    plain(x), recomputed(x)  # trace first
    peak_plain = min(peak_bytes(plain, (x,)) for _ in range(2))
    peak_recompute = min(peak_bytes(recomputed, (x,)) for _ in range(2))
    # Plain keeps every block's 4 MB activations for the backward pass; recompute one at a time.
    assert peak_plain > 8 * 2**20
    assert peak_recompute < 0.8 * peak_plain


def test_xla_comparison_times_both_and_checks_outputs():
    rng = np.random.default_rng(1)
    w = tf.Variable(rng.normal(size=(32, 32)).astype("float32"))
    x = tf.constant(rng.normal(size=(8, 32)).astype("float32"))

    def fn(x):
        return tf.reduce_sum(tf.nn.relu(x @ w) * 2.0 + 1.0, axis=1)

    result = compare(fn, (x,), repeats=3)
    assert result.max_abs_diff < 1e-3
    assert result.plain.first_call_ms > 0 and result.xla.first_call_ms > 0
    for timing in (result.plain, result.xla):
        assert timing.wall_ms > 0 and timing.cpu_ms >= 0 and timing.repeats == 3
    want = "xla" if result.xla.wall_ms < result.plain.wall_ms else "plain"
    assert result.faster == want == result.to_dict()["faster"]


def test_profile_layer_measures_weights_activations_and_time():
    import keras

    layer = keras.layers.Dense(30)
    x = tf.zeros((8, 5, 12))
    layer(x)
    profile = profile_layer("dense", layer, [x], layer.weights, shard="projection", repeats=2)
    assert profile.weight_bytes == (12 * 30 + 30) * 4
    assert profile.activation_bytes == 8 * 5 * 30 * 4
    assert (profile.shard_rows, profile.shard_width) == (40, 12)  # the input rows it gathers
    assert profile.compute_ms > 0

    table = keras.layers.Embedding(100, 7)
    ids = tf.zeros((4, 6), tf.int32)
    table(ids)  # build, so that its weights exist
    lookup = profile_layer("emb", table, [ids], table.weights, shard="lookup", repeats=1)
    assert lookup.weight_bytes == 100 * 7 * 4
    assert (lookup.shard_rows, lookup.shard_width) == (24, 7)  # the rows it looks up
    assert profile_layer("plain", layer, [x], layer.weights, repeats=1).shard is None


def test_xla_comparison_resets_state_between_the_checked_calls():
    counter = tf.Variable(0.0)
    resets = []

    def step():
        counter.assign_add(1.0)
        return counter.read_value()

    def reset():
        resets.append(1)
        counter.assign(0.0)

    result = compare(step, (), repeats=2, warmup=0, reset=reset)
    assert resets == [1]
    assert result.max_abs_diff == 0.0  # both first calls returned 1.0
    without = compare(step, (), repeats=1, warmup=0)
    assert without.max_abs_diff > 0  # the XLA call saw the plain call's update
