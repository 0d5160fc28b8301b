"""Multi-replica checks run in a subprocess (logical CPU devices need a fresh TensorFlow).

Usage: ``python -m tests.pluto._replica_checks N`` prints one JSON object of arrays; the pytest
side compares them, so every assertion lives in the tests.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main(replicas: int) -> None:
    """Run every check on ``replicas`` logical CPUs and print the JSON results."""
    from pluto.strategy import StrategyConfig, make_strategy

    strategy = make_strategy(StrategyConfig(devices=replicas, use_gpus=False))
    import keras
    import tensorflow as tf

    from pluto.averaging import BmufConfig
    from pluto.heuristics import select_batch_size
    from pluto.local_optim import OptimizerConfig
    from pluto.strategy import StrategyError, configure_logical_cpus
    from pluto.training import TrainConfig, Trainer, measure_throughput

    per_replica = 3
    rng = np.random.default_rng(0)
    x = rng.normal(size=(replicas * per_replica, 4)).astype("float32")
    y = rng.normal(size=(replicas * per_replica, 2)).astype("float32")

    def loss_fn(t, p):
        return tf.reduce_mean(tf.square(t - p))

    def build():
        keras.utils.set_random_seed(1)
        return keras.Sequential(
            [keras.Input((4,)), keras.layers.Dense(3, activation="tanh"), keras.layers.Dense(2)]
        )

    def make(config):
        with strategy.scope():
            model = build()
        trainer = Trainer(model, loss_fn, strategy, config)
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(replicas * per_replica)
        batch = next(iter(trainer.distribute(data)))
        return trainer, batch

    def weights(trainer):
        return [[w.tolist() for w in rep] for rep in trainer.replica_weights()]

    out: dict = {"replicas": replicas, "x": x.tolist(), "y": y.tolist()}
    ref = build()
    out["w0"] = [w.numpy().tolist() for w in ref.trainable_variables]

    def grads_on(xs, ys):
        with tf.GradientTape() as tape:
            loss = loss_fn(ys, ref(xs))
        return [g.numpy().tolist() for g in tape.gradient(loss, ref.trainable_variables)]

    out["grad_global"] = grads_on(x, y)
    out["grad_shards"] = [
        grads_on(
            x[r * per_replica : (r + 1) * per_replica], y[r * per_replica : (r + 1) * per_replica]
        )
        for r in range(replicas)
    ]

    plain = OptimizerConfig(kind="sgd", learning_rate=0.1, momentum=0.0)
    # Sync: one step on N replicas.
    trainer, batch = make(TrainConfig(mode="sync", optimizer=plain))
    trainer.step(batch)
    out["sync_after"] = weights(trainer)
    out["sync_bytes"] = trainer.bytes_per_replica

    # Model averaging: local steps, then an explicit average.
    trainer, batch = make(TrainConfig(mode="ma", avg_period=100, optimizer=plain))
    trainer.step(batch)
    out["ma_one_local"] = weights(trainer)
    trainer.step(batch)
    trainer.step(batch)
    out["ma_before"] = weights(trainer)
    out["ma_in_sync_before"] = trainer.in_sync
    trainer.average()
    out["ma_after"] = weights(trainer)
    out["ma_bytes"] = trainer.bytes_per_replica
    out["param_bytes"] = sum(int(np.prod(v.shape)) * 4 for v in trainer.model.trainable_variables)

    # Optimizer state at averaging (SGD-momentum 0.5): each replica's momentum before and after
    # an average, for every slot policy; the replicas see different shards, so they differ.
    def slots(trainer):
        return [
            [np.asarray(v).tolist() for v in strategy.experimental_local_results(slot)]
            for slot in trainer.optimizer.slots
        ]

    heavy = OptimizerConfig(kind="sgd", learning_rate=0.1, momentum=0.5)
    out["slot_policies"] = {}
    for policy in ("local", "average", "reset"):
        trainer, batch = make(
            TrainConfig(mode="ma", avg_period=100, optimizer=heavy, slot_policy=policy)
        )
        trainer.step(batch)
        trainer.step(batch)
        before = slots(trainer)
        trainer.average()
        out["slot_policies"][policy] = {
            "before": before,
            "after": slots(trainer),
            "weights_after": weights(trainer),
            "bytes": trainer.bytes_per_replica,
        }

    # BMUF: two blocks of K=2 local steps each.
    bmuf = BmufConfig(nesterov=True)
    trainer, batch = make(TrainConfig(mode="ma", avg_period=2, optimizer=plain, bmuf=bmuf))
    out["bmuf_momentum"] = bmuf.momentum_for(replicas)
    record = []
    for _ in range(2):
        trainer.step(batch)
        trainer._train_fn(batch)  # second local step without triggering the average
        trainer.global_step += 1
        record.append({"before": weights(trainer)})
        trainer.average()
        record[-1]["after"] = weights(trainer)
    out["bmuf"] = record

    # BMUF with local SGD-momentum (the paper's local learners) and a block-momentum warm-up, on
    # the quadratic 0.5 * w^2 with one weight w, every replica alike: hand-computable.
    quad = BmufConfig(
        block_momentum=0.6,
        block_lr=0.9,
        nesterov=True,
        local_momentum=0.5,
        local_lr=0.2,
        momentum_warmup_blocks=2,
    )
    with strategy.scope():
        qmodel = keras.Sequential(
            [
                keras.Input((1,)),
                keras.layers.Dense(
                    1, use_bias=False, kernel_initializer=keras.initializers.Constant(1.5)
                ),
            ]
        )
    adam = OptimizerConfig(kind="adam", learning_rate=1e-3)  # replaced by the local SGD
    qtrainer = Trainer(
        qmodel,
        lambda t, p: 0.5 * tf.reduce_mean(tf.square(p)),
        strategy,
        TrainConfig(mode="ma", avg_period=2, optimizer=adam, bmuf=quad),
    )
    ones = np.ones((replicas, 1), "float32")
    qdata = tf.data.Dataset.from_tensor_slices((ones, ones)).batch(replicas)
    qbatch = next(iter(qtrainer.distribute(qdata)))
    out["quad"] = []
    for _ in range(6):  # three blocks of K=2 local steps
        qtrainer.step(qbatch)
        out["quad"].append([float(rep[0][0][0]) for rep in qtrainer.replica_weights()])
    out["quad_lr"] = qtrainer.learning_rate
    out["quad_kind"] = qtrainer.optimizer.config.kind.value

    # Saving path: weights equal after sync_weights_for_save.
    trainer, batch = make(TrainConfig(mode="ma", avg_period=5, optimizer=plain))
    trainer.step(batch)
    trainer.sync_weights_for_save()
    out["save_sync"] = weights(trainer)

    # Batch-size pre-run on the real trainer path: every candidate fits, so one is chosen.
    trainer, _ = make(TrainConfig(mode="sync", optimizer=plain))
    examples = tf.data.Dataset.from_tensor_slices((x, y))
    out["throughput"] = measure_throughput(trainer, examples, 2, steps=2, warmup_steps=1)
    out["chosen_batch"] = select_batch_size(
        lambda b: measure_throughput(trainer, examples, b, steps=2, warmup_steps=1), [1, 2], 0.0
    )

    try:
        configure_logical_cpus(replicas + 4)
        out["late_config_error"] = ""
    except StrategyError as err:
        out["late_config_error"] = str(err)
    print(json.dumps(out))


if __name__ == "__main__":
    main(int(sys.argv[1]))
