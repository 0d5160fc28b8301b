"""Late-multiply for fully-connected layers under data parallelism.

A Dense layer ``Y = X W`` (``X: [M, N_l]``, ``W: [N_l, N_l+1]``) has the weight gradient
``Xᵀ E`` with ``E = dL/dY: [M, N_l+1]``. Plain synchronous data parallelism all-reduces that
``N_l x N_l+1`` gradient. Late-multiply instead exchanges the factors: every replica all-gathers
the others' ``X`` and ``E`` and forms ``X_allᵀ E_all / N`` itself, which is exactly the mean of the
replicas' gradients. It pays when the factors are smaller than the product,
``M (N_l + N_l+1) < N_l N_l+1`` (Pluto's rule), i.e. for small per-replica batches and wide
layers.

The decision here uses the bytes each replica actually sends under the ring model of
:mod:`pluto.comm`: a ring all-reduce of the gradient sends ``2(N-1)/N x N_l N_l+1`` elements, an
all-gather of the factors ``(N-1) x M (N_l + N_l+1)``; late is chosen when
``N M (N_l + N_l+1) < 2 N_l N_l+1`` (Pluto's rule at N = 2).

Use :class:`LateMultiplyDense` in place of ``keras.layers.Dense``; with ``late = True`` its
kernel's gradient leaves the backward pass already averaged over replicas, so the caller must
not all-reduce it again (:func:`reduce_gradients` skips it). Replicas must hold equal-sized
shards (``drop_remainder=True``): the all-gather stacks them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from pluto.comm import ring_allgather_bytes, ring_allreduce_bytes  # noqa: E402

FLOAT_BYTES = 4


@dataclass(frozen=True)
class DenseShape:
    """A fully-connected layer at a given per-replica batch.

    Attributes:
        name: Layer name.
        n_in: Input features ``N_l``.
        n_out: Output features ``N_l+1``.
        rows: ``M``: rows of ``X`` per replica (batch x time steps for a layer applied per step).
    """

    name: str
    n_in: int
    n_out: int
    rows: int

    def __post_init__(self) -> None:
        for field_name in ("n_in", "n_out", "rows"):
            if getattr(self, field_name) < 1:
                raise ValueError(f"{self.name}: {field_name} must be >= 1")


@dataclass(frozen=True)
class LayerCost:
    """What one step of one layer costs each replica under both paths.

    Attributes:
        name: Layer name.
        n_in: ``N_l``.
        n_out: ``N_l+1``.
        rows: ``M`` per replica.
        grad_bytes: Size of the weight gradient ``Xᵀ E``.
        factor_bytes: Size of one replica's ``X`` and ``E`` together.
        bytes_plain: Bytes one replica sends to all-reduce the gradient (ring).
        bytes_late: Bytes one replica sends to all-gather ``X`` and ``E`` (ring).
        pluto_rule: Pluto's test ``M (N_l + N_l+1) < N_l N_l+1``.
        late: Whether late-multiply sends fewer bytes (the decision).
    """

    name: str
    n_in: int
    n_out: int
    rows: int
    grad_bytes: int
    factor_bytes: int
    bytes_plain: float
    bytes_late: float
    pluto_rule: bool
    late: bool

    @property
    def bytes_chosen(self) -> float:
        """Bytes sent on the chosen path."""
        return self.bytes_late if self.late else self.bytes_plain

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return asdict(self)


def layer_cost(shape: DenseShape, replicas: int, dtype_bytes: int = FLOAT_BYTES) -> LayerCost:
    """Per-replica bytes of the plain and the late path for one layer (bias not included).

    Args:
        shape: The layer and its per-replica rows.
        replicas: Replicas taking part in the exchange.
        dtype_bytes: Bytes per element.

    Returns:
        The costs and the decision; one replica never chooses late (nothing is sent).
    """
    grad = shape.n_in * shape.n_out * dtype_bytes
    factors = shape.rows * (shape.n_in + shape.n_out) * dtype_bytes
    plain = ring_allreduce_bytes(grad, replicas)
    late = ring_allgather_bytes(factors, replicas)
    return LayerCost(
        name=shape.name,
        n_in=shape.n_in,
        n_out=shape.n_out,
        rows=shape.rows,
        grad_bytes=grad,
        factor_bytes=factors,
        bytes_plain=plain,
        bytes_late=late,
        pluto_rule=factors < grad,
        late=replicas > 1 and late < plain,
    )


def plan(shapes: Iterable[DenseShape], replicas: int) -> list[LayerCost]:
    """The cost and decision for every layer."""
    return [layer_cost(s, replicas) for s in shapes]


def totals(costs: Sequence[LayerCost]) -> tuple[float, float]:
    """``(bytes with every layer plain, bytes with each layer on its chosen path)``."""
    return sum(c.bytes_plain for c in costs), sum(c.bytes_chosen for c in costs)


def _replicas_in_context() -> tuple[tf.distribute.ReplicaContext | None, int]:
    ctx = tf.distribute.get_replica_context()
    if ctx is None:  # cross-replica context: no replica to gather from
        return None, 1
    return ctx, ctx.num_replicas_in_sync


@tf.custom_gradient
def late_matmul(x: tf.Tensor, kernel: tf.Tensor):
    """``x @ kernel`` whose kernel gradient is formed from all-gathered factors.

    Forward is the plain product. Backward returns the local input gradient ``E Wᵀ`` and, for
    the kernel, ``X_allᵀ E_all / N``: the cross-replica mean of ``Xᵀ E`` computed from the
    gathered ``X`` and ``E`` (plain ``Xᵀ E`` outside a multi-replica context).

    Args:
        x: Layer input ``[M, N_l]`` (2-D).
        kernel: Weights ``[N_l, N_l+1]``.

    Returns:
        ``[M, N_l+1]``.
    """
    y = tf.matmul(x, kernel)

    def grad(e: tf.Tensor):
        dx = tf.matmul(e, kernel, transpose_b=True)
        ctx, replicas = _replicas_in_context()
        if replicas > 1:
            xs = ctx.all_gather(x, axis=0)
            es = ctx.all_gather(e, axis=0)
            dw = tf.matmul(xs, es, transpose_a=True) / float(replicas)
        else:
            dw = tf.matmul(x, e, transpose_a=True)
        return dx, dw

    return y, grad


class LateMultiplyDense(keras.layers.Dense):
    """``keras.layers.Dense`` whose kernel gradient can take the late-multiply path.

    On the late path the layer runs the plain float product (no Keras quantization or LoRA).

    Args:
        units: Output features.
        late: Exchange ``X`` and ``E`` instead of the kernel gradient (set it from :func:`plan`
            with :func:`apply_plan`; it can change between traces).
        **kwargs: As ``keras.layers.Dense``.
    """

    def __init__(self, units: int, late: bool = False, **kwargs) -> None:
        super().__init__(units, **kwargs)
        self.late = late

    def call(self, inputs, training=None):
        if not self.late:
            return super().call(inputs, training=training)
        n_in = self.kernel.shape[0]
        flat = tf.reshape(inputs, [-1, n_in])
        y = late_matmul(flat, tf.convert_to_tensor(self.kernel))
        y = tf.reshape(y, tf.concat([tf.shape(inputs)[:-1], [self.units]], axis=0))
        if self.bias is not None:
            # The bias gradient (the sum of E, N_l+1 floats) stays on the plain all-reduce.
            y = y + self.bias
        if self.activation is not None:
            y = self.activation(y)
        return y

    def get_config(self) -> dict:
        return {**super().get_config(), "late": self.late}


def late_layers(model: keras.Model) -> list[LateMultiplyDense]:
    """Every :class:`LateMultiplyDense` inside ``model`` (nested layers included)."""
    # Keras 3 has no public recursive walk that also reaches layers held as attributes of
    # custom layers (e.g. the attention's projections); _flatten_layers is what Keras uses.
    return [layer for layer in model._flatten_layers() if isinstance(layer, LateMultiplyDense)]


def apply_plan(model: keras.Model, costs: Sequence[LayerCost]) -> list[str]:
    """Switch each named layer to its chosen path; returns the names now on the late path.

    Raises:
        ValueError: A cost names no :class:`LateMultiplyDense` layer of the model.
    """
    layers = {layer.name: layer for layer in late_layers(model)}
    missing = [c.name for c in costs if c.name not in layers]
    if missing:
        raise ValueError(f"no LateMultiplyDense layer named {missing}; have {sorted(layers)}")
    for cost in costs:
        layers[cost.name].late = cost.late
    return [c.name for c in costs if c.late]


def exchanged_kernels(model: keras.Model) -> list:
    """Kernels whose gradients arrive already averaged (layers with ``late = True``)."""
    return [layer.kernel for layer in late_layers(model) if layer.late]


def reduce_gradients(
    grads: Sequence[tf.Tensor | None], variables: Sequence, exchanged: Sequence
) -> list[tf.Tensor | None]:
    """MEAN all-reduce every gradient except those of ``exchanged`` variables (replica context).

    Args:
        grads: One gradient per variable.
        variables: The variables, aligned with ``grads``.
        exchanged: Variables whose gradients the late path already averaged.

    Returns:
        Gradients identical on every replica.
    """
    skip = {id(v) for v in exchanged}
    ctx = tf.distribute.get_replica_context()
    todo = [
        i
        for i, (g, v) in enumerate(zip(grads, variables, strict=True))
        if g is not None and id(v) not in skip
    ]
    out = list(grads)
    if todo:
        reduced = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, [grads[i] for i in todo])
        for i, r in zip(todo, reduced, strict=True):
            out[i] = r
    return out


def gradients_both_ways(strategy, model: keras.Model, loss_fn, inputs, targets):
    """Each replica's gradients on the plain and on the late path, for checking equality.

    ``inputs`` and ``targets`` are global-batch arrays split evenly over the replicas. The plain
    path runs every :class:`LateMultiplyDense` layer plain and all-reduces every gradient; the
    late path switches them all to late-multiply and all-reduces the rest. The layers' flags are
    restored afterwards.

    Args:
        strategy: A ``tf.distribute`` strategy; ``model`` was built in its scope.
        model: The model.
        loss_fn: ``loss_fn(targets, predictions) -> scalar`` (mean over the replica's rows).
        inputs: Global batch of inputs (first axis split over replicas).
        targets: Global batch of targets.

    Returns:
        ``(plain, late)``, each ``[replica][variable]`` numpy arrays.
    """
    import numpy as np

    replicas = strategy.num_replicas_in_sync
    rows = len(inputs) // replicas
    if rows * replicas != len(inputs):
        raise ValueError(f"{len(inputs)} rows do not split evenly over {replicas} replicas")

    def shard(a):
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(a[ctx.replica_id_in_sync_group * rows :][:rows])
        )

    xs, ys = shard(inputs), shard(targets)
    variables = model.trainable_variables
    layers = late_layers(model)
    saved = [layer.late for layer in layers]

    def replica(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]
        return reduce_gradients(grads, variables, exchanged_kernels(model))

    out = []
    try:
        for late in (False, True):
            for layer in layers:
                layer.late = late
            grads = tf.function(lambda: strategy.run(replica, args=(xs, ys)))()
            per_var = [
                [np.asarray(r) for r in strategy.experimental_local_results(g)] for g in grads
            ]
            out.append([list(rep) for rep in zip(*per_var, strict=True)])
    finally:
        for layer, flag in zip(layers, saved, strict=True):
            layer.late = flag
    return out[0], out[1]
