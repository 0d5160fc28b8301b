"""Synchronous data parallelism: gradients are all-reduced (MEAN) on every step.

With equal shards the mean of the replicas' mean losses is the loss of the global batch, so one
synchronous step on N replicas equals one single-device step on the concatenated batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf


def allreduce_gradients(grads: Sequence[tf.Tensor | None]) -> list[tf.Tensor | None]:
    """Average dense gradients across replicas (call inside ``strategy.run``).

    Args:
        grads: One gradient per variable; ``None`` entries stay ``None``.

    Returns:
        The cross-replica mean of each gradient, identical on every replica.
    """
    ctx = tf.distribute.get_replica_context()
    present = [g for g in grads if g is not None]
    reduced = iter(ctx.all_reduce(tf.distribute.ReduceOp.MEAN, present))
    return [next(reduced) if g is not None else None for g in grads]
