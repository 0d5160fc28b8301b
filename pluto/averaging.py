"""Model averaging across replicas, with optional block momentum (BMUF).

Everything here runs in replica context (inside ``strategy.run``): the all-reduce returns the
same mean on every replica, and assigning a mirrored variable there writes that replica's copy,
so after :func:`average_weights` every replica holds the same averaged weights.

BMUF (Chen & Huo, 2016) treats the averaged model as one "block" step of a global optimizer:
``G = mean(w_i) - start``; ``delta = block_momentum * delta + block_lr * G``; ``w_g += delta``,
where ``start`` is the point the block started from. Replicas restart from ``w_g`` (classical) or
the look-ahead ``w_g + block_momentum * delta`` (Nesterov).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import tensorflow as tf


@dataclass(frozen=True)
class BmufConfig:
    """Block momentum settings.

    Attributes:
        block_momentum: Momentum of the block update; ``None`` means ``1 - 1/N``.
        block_lr: Block learning rate (1.0 in the paper's recommended setting).
        nesterov: Restart local training from the look-ahead point.
    """

    block_momentum: float | None = None
    block_lr: float = 1.0
    nesterov: bool = True

    def momentum_for(self, replicas: int) -> float:
        """Block momentum for ``replicas`` replicas (the default ``1 - 1/N``)."""
        if self.block_momentum is not None:
            return self.block_momentum
        return 1.0 - 1.0 / replicas


def relative_drift(local: Sequence[tf.Tensor], mean: Sequence[tf.Tensor]) -> tf.Tensor:
    """Cross-replica mean of ``||w_i - mean|| / ||mean||`` (call in replica context).

    Args:
        local: This replica's weights.
        mean: The averaged weights.

    Returns:
        The drift, identical on every replica.
    """
    sq_diff = tf.add_n([tf.reduce_sum(tf.square(a - b)) for a, b in zip(local, mean, strict=True)])
    sq_mean = tf.add_n([tf.reduce_sum(tf.square(b)) for b in mean])
    drift = tf.sqrt(sq_diff) / (tf.sqrt(sq_mean) + 1e-12)
    ctx = tf.distribute.get_replica_context()
    return ctx.all_reduce(tf.distribute.ReduceOp.MEAN, drift)


def average_weights(variables: Sequence, extra: Sequence = ()) -> tuple[list, tf.Tensor]:
    """Replace every replica's copy of ``variables`` (and ``extra``) by the cross-replica mean.

    Args:
        variables: Model weights; their drift is measured before averaging.
        extra: Other state averaged along (e.g. optimizer slots), not part of the drift.

    Returns:
        The averaged model weights (tensors) and the relative drift before averaging.
    """
    ctx = tf.distribute.get_replica_context()
    local = [tf.identity(v) for v in variables]
    extra_local = [tf.identity(v) for v in extra]
    reduced = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, local + extra_local)
    means = reduced[: len(local)]
    drift = relative_drift(local, means)
    for var, value in zip(list(variables) + list(extra), reduced, strict=True):
        var.assign(value)
    return means, drift


class BlockMomentum:
    """Global model and block-momentum buffer for BMUF (create inside ``strategy.scope()``).

    Args:
        variables: Model weights the block update applies to.
        momentum: Block momentum.
        block_lr: Block learning rate.
        nesterov: Restart from the look-ahead point.
    """

    def __init__(self, variables: Sequence, momentum: float, block_lr: float, nesterov: bool):
        self.variables = list(variables)
        self.momentum = momentum
        self.block_lr = block_lr
        self.nesterov = nesterov
        # Identical on every replica because every replica applies the same update to them.
        self.global_weights = [
            tf.Variable(tf.identity(v), trainable=False, aggregation=tf.VariableAggregation.NONE)
            for v in self.variables
        ]
        self.delta = [
            tf.Variable(
                tf.zeros(v.shape, v.dtype), trainable=False, aggregation=tf.VariableAggregation.NONE
            )
            for v in self.variables
        ]

    def apply(self, means: Sequence[tf.Tensor]) -> None:
        """Block update from the averaged weights; sets every replica's restart point.

        Args:
            means: Cross-replica mean of the model weights (from :func:`average_weights`).
        """
        for var, w_g, delta, mean in zip(
            self.variables, self.global_weights, self.delta, means, strict=True
        ):
            # The block's progress is measured from where the block started: the look-ahead point
            # for Nesterov. Measuring from w_g instead would count mu * delta twice and diverge.
            block_start = w_g + self.momentum * delta if self.nesterov else w_g
            new_delta = self.momentum * delta + self.block_lr * (mean - block_start)
            new_global = w_g + new_delta
            delta.assign(new_delta)
            w_g.assign(new_global)
            start = new_global + self.momentum * new_delta if self.nesterov else new_global
            var.assign(start)
