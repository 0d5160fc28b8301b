"""One sync step's gradients of the seq2seq on N logical CPU devices, plain and late-multiply.

Usage: ``python -m tests.seq2seq._late_multiply_check N`` prints one JSON object; the
assertions live in ``test_train_late_multiply.py`` (devices must be set before TensorFlow
starts, hence the subprocess).
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main(replicas: int) -> dict:

    from alime.seq2seq.config import Seq2SeqConfig
    from alime.seq2seq.data import Example, bucket_batches
    from alime.seq2seq.training import TrainOptions
    from alime.seq2seq.vocab import EOS_ID
    from pluto.strategy import StrategyConfig, make_strategy

    strategy = make_strategy(StrategyConfig(devices=replicas))
    # Wide enough layers and a small batch that some Dense layers go late and some do not.
    config = Seq2SeqConfig(
        vocab_size=16,
        embed_dim=8,
        hidden_dim=32,
        attention_dim=32,
        dropout=0.0,
        buckets=((4, 4),),
        max_source_len=4,
        max_target_len=4,
    )
    options = TrainOptions(batch_size=4, seed=5)
    rng = np.random.default_rng(0)
    examples = [
        Example(
            tuple(int(i) for i in rng.integers(4, 16, size=rng.integers(0, 5))),
            (*(int(i) for i in rng.integers(4, 16, size=rng.integers(1, 4))), EOS_ID),
        )
        for _ in range(4 * replicas)
    ]
    (source, target), *_ = bucket_batches(examples, config.buckets, 4 * replicas)
    return {
        "even": _both_paths(strategy, config, options, replicas, source, target, 4),
        # A bucket's last batch can be short: the last replica gets one row fewer.
        "uneven": _both_paths(strategy, config, options, replicas, source[:-1], target[:-1], 4),
    }


def _both_paths(strategy, config, options, replicas, source, target, rows) -> dict:
    """One step's reduced gradients per replica, plain and late-multiply."""
    import tensorflow as tf

    from alime.seq2seq.distributed import ParallelOptions
    from alime.seq2seq.training import Trainer

    def shard(a):
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(a[ctx.replica_id_in_sync_group * rows :][:rows])
        )

    src, tgt = shard(source), shard(target)
    out = {}
    for name, late in (("plain", False), ("late", True)):
        trainer = Trainer(
            config, options, strategy, ParallelOptions(devices=replicas, late_multiply=late)
        )
        pluto = trainer.pluto
        objective = pluto.model

        def replica(s, t, pluto=pluto, objective=objective):
            with tf.GradientTape() as tape:
                loss, _ = pluto.loss_fn(t, objective((s, t), training=True))
            grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, pluto._vars)]
            return pluto.reduce_gradients(grads)

        grads = tf.function(lambda: strategy.run(replica, args=(src, tgt)))()  # noqa: B023
        out[name] = {
            "grads": [
                [np.asarray(r).tolist() for r in strategy.experimental_local_results(g)]
                for g in grads
            ],
            # Paths without the model's own (numbered) name.
            "names": [v.path.split("/", 1)[1] for v in pluto._vars],
            "late_layers": [c.name for c in trainer.late_plan if c.late],
            "plain_layers": [c.name for c in trainer.late_plan if not c.late],
            "exchanged": [v.path for v in pluto.exchanged],
        }
    return out


if __name__ == "__main__":
    json.dump(main(int(sys.argv[1])), sys.stdout)
