"""Model averaging across replicas, with optional block momentum (BMUF).

Everything here runs in replica context (inside ``strategy.run``): the all-reduce returns the
same mean on every replica, and assigning a mirrored variable there writes that replica's copy,
so after :func:`average_weights` every replica holds the same averaged weights.

BMUF (Chen & Huo, 2016) treats the averaged model as one "block" step of a global optimizer:
``G = mean(w_i) - start``; ``delta = block_momentum * delta + block_lr * G``; ``w_g += delta``,
where ``start`` is the point the block started from. Replicas restart from ``w_g`` (classical) or
the look-ahead ``w_g + block_momentum * delta`` (Nesterov).

The paper's local learners run SGD with momentum; :attr:`BmufConfig.local_momentum` selects that
(whatever the trainer's own optimizer is). With local Adam the first blocks overshoot: Adam's
early steps are large and sign-coherent, and block momentum multiplies a block's progress by up to
``1 / (1 - block_momentum)``; :attr:`BmufConfig.momentum_warmup_blocks` ramps the block momentum
from 0, as a learning-rate warm-up ramps the rate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import tensorflow as tf

from pluto.local_optim import OptimizerConfig, OptimizerKind


@dataclass(frozen=True)
class BmufConfig:
    """Block momentum settings.

    Attributes:
        block_momentum: Momentum of the block update; ``None`` means ``1 - 1/N``.
        block_lr: Block learning rate (1.0 in the paper's recommended setting).
        nesterov: Restart local training from the look-ahead point.
        local_momentum: When set, the local learners run SGD with this heavy-ball momentum (Chen
            & Huo's setting) instead of the trainer's configured optimizer (Adam in
            ``alime train``).
        local_lr: One-replica learning rate of that local SGD (SGD needs a far larger rate than
            Adam); ``None`` keeps the configured optimizer's rate.
        momentum_warmup_blocks: Ramp the block momentum linearly from 0 over this many blocks
            (0: full momentum from the first block).
    """

    block_momentum: float | None = None
    block_lr: float = 1.0
    nesterov: bool = True
    local_momentum: float | None = None
    local_lr: float | None = None
    momentum_warmup_blocks: int = 0

    def __post_init__(self) -> None:
        if self.block_momentum is not None and not 0.0 <= self.block_momentum < 1.0:
            raise ValueError(f"block_momentum must be in [0, 1), got {self.block_momentum}")
        if self.block_lr <= 0:
            raise ValueError(f"block_lr must be > 0, got {self.block_lr}")
        if self.local_momentum is not None and not 0.0 <= self.local_momentum < 1.0:
            raise ValueError(f"local_momentum must be in [0, 1), got {self.local_momentum}")
        if self.local_lr is not None and self.local_lr <= 0:
            raise ValueError(f"local_lr must be > 0, got {self.local_lr}")
        if self.momentum_warmup_blocks < 0:
            raise ValueError("momentum_warmup_blocks must be >= 0")

    def momentum_for(self, replicas: int) -> float:
        """Block momentum for ``replicas`` replicas (the default ``1 - 1/N``)."""
        if self.block_momentum is not None:
            return self.block_momentum
        return 1.0 - 1.0 / replicas

    def momentum_at(self, block: int, replicas: int) -> float:
        """Block momentum of 0-based ``block``: ramped over the warm-up blocks, then constant."""
        full = self.momentum_for(replicas)
        if block >= self.momentum_warmup_blocks:
            return full
        return full * block / self.momentum_warmup_blocks

    def local_optimizer(self, configured: OptimizerConfig) -> OptimizerConfig:
        """The local learners' optimizer: ``configured``, or SGD-momentum when
        :attr:`local_momentum` is set (keeping its clip norm)."""
        if self.local_momentum is None:
            return configured
        return dataclasses.replace(
            configured,
            kind=OptimizerKind.SGD,
            momentum=self.local_momentum,
            learning_rate=self.local_lr or configured.learning_rate,
        )


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
        momentum: Block momentum (the next block's; change it with :meth:`set_momentum`).
        block_lr: Block learning rate.
        nesterov: Restart from the look-ahead point.
    """

    def __init__(self, variables: Sequence, momentum: float, block_lr: float, nesterov: bool):
        self.variables = list(variables)
        self.block_lr = block_lr
        self.nesterov = nesterov
        # Variables, not Python floats, so a traced averaging step sees a changed momentum.
        # ``momentum`` is the one the next block update uses; ``_restart_momentum`` the one the
        # previous restart look-ahead used (they differ while the momentum warms up).
        self.momentum = tf.Variable(
            float(momentum), trainable=False, aggregation=tf.VariableAggregation.NONE
        )
        self._restart_momentum = tf.Variable(
            0.0, trainable=False, aggregation=tf.VariableAggregation.NONE
        )
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
        mu = tf.identity(self.momentum)
        mu_start = tf.identity(self._restart_momentum)
        for var, w_g, delta, mean in zip(
            self.variables, self.global_weights, self.delta, means, strict=True
        ):
            # The block's progress is measured from where the block started: the look-ahead point
            # for Nesterov. Measuring from w_g instead would count mu * delta twice and diverge.
            block_start = w_g + tf.cast(mu_start, delta.dtype) * delta if self.nesterov else w_g
            new_delta = tf.cast(mu, delta.dtype) * delta + self.block_lr * (mean - block_start)
            new_global = w_g + new_delta
            delta.assign(new_delta)
            w_g.assign(new_global)
            if self.nesterov:
                start = new_global + tf.cast(mu, delta.dtype) * new_delta
            else:
                start = new_global
            var.assign(start)
        self._restart_momentum.assign(mu)

    def set_momentum(self, value: float) -> None:
        """Block momentum for the next block update (call outside ``strategy.run``)."""
        self.momentum.assign(float(value))
