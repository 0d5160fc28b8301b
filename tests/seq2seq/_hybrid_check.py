"""One sync step of the seq2seq on N logical CPU devices, plain data-parallel and hybrid.

Usage: ``python -m tests.seq2seq._hybrid_check N`` prints one JSON object; the assertions live
in ``test_train_hybrid.py`` (devices must be set before TensorFlow starts, hence the
subprocess).
"""

from __future__ import annotations

import dataclasses
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
    # An odd vocabulary: the shards differ in width (one is padded).
    config = Seq2SeqConfig(
        vocab_size=17,
        embed_dim=8,
        hidden_dim=8,
        attention_dim=8,
        dropout=0.0,
        buckets=((4, 4),),
        max_source_len=4,
        max_target_len=4,
    )
    rng = np.random.default_rng(0)
    examples = [
        Example(
            tuple(int(i) for i in rng.integers(4, 17, size=rng.integers(0, 5))),
            (*(int(i) for i in rng.integers(4, 17, size=rng.integers(1, 4))), EOS_ID),
        )
        for _ in range(4 * replicas)
    ]
    (source, target), *_ = bucket_batches(examples, config.buckets, 4 * replicas)
    # A small clip norm so that the clip is active and must see every shard's gradient.
    base = TrainOptions(batch_size=4, seed=5, learning_rate=0.01, clip_norm=0.05)
    with_nce = dataclasses.replace(base, contrastive_weight=0.5, contrastive_negatives=2)
    return {
        "even": _both(strategy, config, with_nce, replicas, source, target),
        # A bucket's last batch can be short: the last replica gets one row fewer.
        "uneven": _both(strategy, config, base, replicas, source[:-1], target[:-1], steps=False),
    }


def _both(strategy, config, options, replicas, source, target, steps: bool = True) -> dict:
    """Plain and hybrid: clipped gradients, the loss, the weights after two steps and the
    evaluation loss."""
    import tensorflow as tf

    from alime.seq2seq.distributed import ParallelOptions
    from alime.seq2seq.training import Trainer

    rows = 4
    out = {"cap_mb": _forcing_cap_mb(config, options)}
    for name, hybrid in (("plain", False), ("hybrid", True)):
        trainer = Trainer(
            config,
            dataclasses.replace(options, hybrid=hybrid, device_memory_mb=out["cap_mb"]),
            strategy,
            ParallelOptions(devices=replicas, lr_warmup_steps=0),
        )
        pluto = trainer.pluto

        def shard(a):
            return strategy.experimental_distribute_values_from_function(
                lambda ctx: tf.constant(a[ctx.replica_id_in_sync_group * rows :][:rows])
            )

        def replica(s, t, pluto=pluto):
            loss, _, grads = pluto._grad_fn((s, t), t)
            grads = pluto.reduce_gradients(grads)
            if pluto.sharded:
                return loss, pluto._clip_with_shards(grads)
            clipped, _ = tf.clip_by_global_norm(grads, options.clip_norm)  # the optimizer's
            norm = tf.linalg.global_norm(grads)
            return loss, clipped + [norm]

        src, tgt = shard(source), shard(target)
        loss, grads = tf.function(lambda: strategy.run(replica, args=(src, tgt)))()  # noqa: B023
        per_replica = [
            [np.asarray(x) for x in strategy.experimental_local_results(g)] for g in grads
        ]
        record = {
            "losses": [float(x) for x in strategy.experimental_local_results(loss)],
            "paths": [v.path.split("/", 1)[-1] for v in pluto._vars],
            "grads": [[g.tolist() for g in row] for row in per_replica],
            "head": trainer.head is not None,
            "bounds": trainer.head.bounds if trainer.head is not None else None,
        }
        out[name] = record
        if not steps:
            continue
        # Two steps (Adam's first update hardly depends on the gradients' size: the second
        # does), then the evaluation through the head.
        batch = [(source, target)]
        record["epoch_loss"] = trainer.train_epoch(batch * 2)
        record["valid_loss"] = trainer.evaluate(batch)
        record["weights"] = {
            v.path.split("/", 1)[-1]: v.numpy().tolist() for v in trainer.model.weights
        }
    return out


def _forcing_cap_mb(config, options) -> float:
    """A memory cap under which the whole model does not fit on one device but the body with
    half the projection does: the greedy placement must shard the projection (at this size its
    exchange costs more bytes than its all-reduce, so without a cap it would not)."""
    from alime.seq2seq.model import build_model
    from alime.seq2seq.training import profile_layers

    profiles = {p.name: p for p in profile_layers(build_model(config), config, options)}
    proj = profiles["output_proj"]
    body = sum(4 * p.weight_bytes + p.activation_bytes for p in profiles.values() if p is not proj)
    return (body + proj.activation_bytes + 3 * proj.weight_bytes) / 2**20


if __name__ == "__main__":
    json.dump(main(int(sys.argv[1])), sys.stdout)
