"""Per-replica optimizers: updates applied inside ``strategy.run`` without aggregation.

Keras 3's optimizers always sum gradients across replicas under a strategy, which would turn
model averaging's local steps into synchronous steps. These optimizers keep their slots in
mirrored variables with ``VariableAggregation.NONE`` and assign them in replica context, which
changes only the calling replica's copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import tensorflow as tf

from pluto.choices import Choice


class OptimizerKind(Choice):
    """Local optimizer update rules."""

    SGD = "sgd"
    ADAM = "adam"


@dataclass(frozen=True)
class OptimizerConfig:
    """Hyper-parameters of the local optimizer.

    Attributes:
        kind: ``sgd`` (heavy-ball momentum) or ``adam``.
        learning_rate: Base learning rate for one replica (scaled by the heuristics if enabled).
        momentum: SGD momentum (0 disables it).
        nesterov: Nesterov momentum for SGD.
        beta_1: Adam first-moment decay.
        beta_2: Adam second-moment decay.
        epsilon: Adam denominator guard.
        clipnorm: Clip each replica's gradient to this global norm (``None`` disables it).
    """

    kind: OptimizerKind | str = OptimizerKind.SGD
    learning_rate: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    clipnorm: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", OptimizerKind.parse(self.kind))
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")


def _local_var(template: tf.Variable | tf.Tensor, name: str) -> tf.Variable:
    # NONE aggregation: replica-context assigns stay on the replica (no merge_call, no reduce).
    return tf.Variable(
        tf.zeros(template.shape, template.dtype),
        trainable=False,
        name=name,
        aggregation=tf.VariableAggregation.NONE,
    )


class LocalOptimizer:
    """SGD-momentum or Adam whose update runs independently on each replica.

    Create it inside ``strategy.scope()`` so the slots are mirrored variables.

    Args:
        variables: Model variables to update (Keras variables).
        config: Optimizer hyper-parameters.
    """

    def __init__(self, variables: Sequence, config: OptimizerConfig) -> None:
        self.config = config
        self.variables = list(variables)
        self.learning_rate = tf.Variable(
            float(config.learning_rate), trainable=False, name="pluto_lr", dtype=tf.float32
        )
        self.iterations = _local_var(tf.constant(0, tf.int64), "pluto_iter")
        self.slots: list[tf.Variable] = []
        self._m: list[tf.Variable] = []
        self._v: list[tf.Variable] = []
        for i, var in enumerate(self.variables):
            self._m.append(_local_var(var, f"pluto_m_{i}"))
            if config.kind is OptimizerKind.ADAM:
                self._v.append(_local_var(var, f"pluto_v_{i}"))
        self.slots = self._m + self._v

    def apply(self, grads: Sequence[tf.Tensor]) -> None:
        """Apply one update on the calling replica only (call inside ``strategy.run``).

        Args:
            grads: One dense gradient per variable (``None`` entries are skipped).
        """
        cfg = self.config
        if cfg.clipnorm is not None:
            present = [g for g in grads if g is not None]
            clipped, _ = tf.clip_by_global_norm(present, cfg.clipnorm)
            it = iter(clipped)
            grads = [next(it) if g is not None else None for g in grads]
        lr = tf.cast(self.learning_rate, tf.float32)
        self.iterations.assign_add(1)
        step = tf.cast(self.iterations, tf.float32)
        for i, (var, grad) in enumerate(zip(self.variables, grads, strict=True)):
            if grad is None:
                continue
            grad = tf.cast(grad, var.dtype)
            m = self._m[i]
            if cfg.kind is OptimizerKind.SGD:
                m.assign(cfg.momentum * m + grad)
                update = cfg.momentum * m + grad if cfg.nesterov else m
                var.assign(var - lr * update)
            else:
                v = self._v[i]
                m.assign(cfg.beta_1 * m + (1.0 - cfg.beta_1) * grad)
                v.assign(cfg.beta_2 * v + (1.0 - cfg.beta_2) * tf.square(grad))
                m_hat = m / (1.0 - cfg.beta_1**step)
                v_hat = v / (1.0 - cfg.beta_2**step)
                var.assign(var - lr * m_hat / (tf.sqrt(v_hat) + cfg.epsilon))
