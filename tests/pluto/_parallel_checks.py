"""Late-multiply and hybrid-parallel checks on N logical CPU devices (run in a subprocess).

Usage: ``python -m tests.pluto._parallel_checks N`` prints one JSON object; the assertions live
in ``test_pluto_parallel.py``.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def _dense(x) -> np.ndarray:
    import tensorflow as tf

    return np.asarray(tf.convert_to_tensor(x)) if hasattr(x, "indices") else np.asarray(x)


def _max_diff(a, b) -> float:
    return max(float(np.abs(_dense(x) - _dense(y)).max()) for x, y in zip(a, b, strict=True))


def late_multiply_checks(strategy, replicas: int) -> dict:
    """Gradients of plain all-reduce, late-multiply, a broken control and one device."""
    import keras
    import tensorflow as tf

    from pluto import late_multiply as lm
    from pluto.sync import allreduce_gradients

    rows, steps = 3, 4
    rng = np.random.default_rng(0)
    x = rng.normal(size=(replicas * rows, steps, 6)).astype("float32")
    y = rng.normal(size=(replicas * rows, steps, 2)).astype("float32")

    def build():
        keras.utils.set_random_seed(1)
        return keras.Sequential(
            [
                keras.Input((steps, 6)),
                lm.LateMultiplyDense(7, activation="tanh", name="wide"),
                lm.LateMultiplyDense(2, name="out"),
            ]
        )

    with strategy.scope():
        model = build()
    variables = model.trainable_variables

    def shard(a):
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(
                a[ctx.replica_id_in_sync_group * rows : (ctx.replica_id_in_sync_group + 1) * rows]
            )
        )

    xs, ys = shard(x), shard(y)

    def loss_of(xb, yb):
        return tf.reduce_mean(tf.square(model(xb) - yb))

    def replica(xb, yb, skip_kernels):
        with tf.GradientTape() as tape:
            loss = loss_of(xb, yb)
        grads = tape.gradient(loss, variables)
        if skip_kernels:
            kernels = [layer.kernel for layer in lm.late_layers(model)]
            return lm.reduce_gradients(grads, variables, kernels)
        return allreduce_gradients(grads)

    def run(late: bool, skip_kernels: bool):
        for layer in lm.late_layers(model):
            layer.late = late
        fn = tf.function(lambda: strategy.run(replica, args=(xs, ys, skip_kernels)))
        out = fn()
        return [[np.asarray(r) for r in strategy.experimental_local_results(g)] for g in out]

    plain = run(late=False, skip_kernels=False)
    late = run(late=True, skip_kernels=True)
    broken = run(late=False, skip_kernels=True)  # kernels left local: must differ

    ref = build()
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(ref(x) - y))
    single = [g.numpy() for g in tape.gradient(loss, ref.trainable_variables)]

    def per_replica(grads):
        return [[g[r] for g in grads] for r in range(replicas)]

    return {
        "late_vs_plain": max(
            _max_diff(a, b) for a, b in zip(per_replica(plain), per_replica(late), strict=True)
        ),
        "late_vs_single": max(_max_diff(rep, single) for rep in per_replica(late)),
        "broken_vs_plain": max(
            _max_diff(a, b) for a, b in zip(per_replica(plain), per_replica(broken), strict=True)
        ),
        "grad_scale": max(float(np.abs(g).max()) for g in single),
    }


def hybrid_checks(replicas: int) -> dict:
    """Loss and gradients of the hybrid step against one device with the full projection."""
    import keras
    import tensorflow as tf

    from pluto.hybrid import ShardedEmbedding, ShardedSoftmax, hybrid_loss

    vocab, emb, hidden, rows, steps = 23, 5, 6, 2, 3
    devices = [d.name for d in tf.config.list_logical_devices("CPU")[:replicas]]
    rng = np.random.default_rng(2)
    ids = rng.integers(1, vocab, size=(replicas * rows, steps)).astype("int32")
    labels = rng.integers(0, vocab, size=(replicas * rows, steps)).astype("int32")
    weights = (rng.random((replicas * rows, steps)) > 0.2).astype("float32")
    keras.utils.set_random_seed(3)
    gru = keras.Sequential(
        [keras.Input((steps, emb)), keras.layers.GRU(hidden, return_sequences=True)]
    )
    table = rng.normal(size=(vocab, emb)).astype("float32")
    embedding = ShardedEmbedding(table, devices)
    kernel = rng.normal(scale=0.5, size=(hidden, vocab)).astype("float32")
    bias = rng.normal(scale=0.1, size=(vocab,)).astype("float32")
    head = ShardedSoftmax(kernel, bias, devices)

    def body(inputs):
        return tf.reshape(gru(embedding.lookup(inputs)), [-1, hidden])

    body_vars = gru.trainable_variables
    slices = [
        (
            ids[r * rows : (r + 1) * rows],
            labels[r * rows : (r + 1) * rows].reshape(-1),
            weights[r * rows : (r + 1) * rows].reshape(-1),
        )
        for r in range(replicas)
    ]
    with tf.GradientTape() as tape:
        loss = hybrid_loss(body, head, slices, devices)
    grads = tape.gradient(loss, body_vars + head.variables + embedding.variables)
    emb_grad = np.concatenate(
        [_dense(g) for g in grads[len(body_vars) + len(head.variables) :]], axis=0
    )
    n = len(head.kernels)
    head_kernel = np.concatenate([g.numpy() for g in grads[len(body_vars) : len(body_vars) + n]], 1)
    head_bias = np.concatenate(
        [g.numpy() for g in grads[len(body_vars) + n : len(body_vars) + 2 * n]]
    )

    full_k, full_b, full_t = tf.Variable(kernel), tf.Variable(bias), tf.Variable(table)
    with tf.GradientTape() as tape:
        rows_ref = tf.reshape(gru(tf.gather(full_t, ids)), [-1, hidden])
        logits = rows_ref @ full_k + full_b
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels.reshape(-1), logits)
        w = weights.reshape(-1)
        ref_loss = tf.reduce_sum(ce * w) / tf.reduce_sum(w)
    ref = tape.gradient(ref_loss, body_vars + [full_k, full_b, full_t])
    ref_emb = _dense(ref.pop())
    placed = sorted({k.device for k in head.kernels})
    return {
        "loss": float(loss),
        "ref_loss": float(ref_loss),
        "body_grad_diff": _max_diff(grads[: len(body_vars)], ref[:-2]),
        "head_kernel_diff": float(np.abs(head_kernel - ref[-2].numpy()).max()),
        "head_bias_diff": float(np.abs(head_bias - ref[-1].numpy()).max()),
        "head_grad_scale": float(np.abs(ref[-2].numpy()).max()),
        "embedding_grad_diff": float(np.abs(emb_grad - ref_emb).max()),
        "embedding_grad_scale": float(np.abs(ref_emb).max()),
        "embedding_devices": sorted({t.device for t in embedding.tables}),
        "shard_devices": placed,
        "bounds": head.bounds,
    }


def main(replicas: int) -> None:
    """Run every check on ``replicas`` logical CPUs and print the JSON results."""
    from pluto.strategy import StrategyConfig, make_strategy

    strategy = make_strategy(StrategyConfig(devices=replicas, use_gpus=False))
    out = {"replicas": replicas, "late": late_multiply_checks(strategy, replicas)}
    out["hybrid"] = hybrid_checks(replicas)
    print(json.dumps(out))


if __name__ == "__main__":
    main(int(sys.argv[1]))
