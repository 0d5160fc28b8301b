"""Hybrid parallelism: vocabulary-sharded softmax head and embedding, data-parallel body, placement.

Pluto splits a network by what dominates each part: the vocabulary projection of a seq2seq model
holds about half the weights but little compute (communication-intensive), the GRUs hold most of
the compute with few weights (compute-intensive). So the projection and its softmax
cross-entropy are **model-parallel** (each device holds a slice of the vocabulary) and the body is
**data-parallel** (each device runs it on its slice of the batch).

One step on N devices:

1. every device runs the body on its rows and gets hidden states ``H_d: [M_d, h]``;
2. the hidden states are all-gathered: every vocabulary shard sees all ``M = sum M_d`` rows;
3. shard ``s`` computes its logits ``[M, V_s]`` and three per-row numbers (max, sum of
   ``exp(logit - max)``, the target's logit when the target is in its slice); those ``3M`` floats
   are all-reduced, giving the exact log-sum-exp over the whole vocabulary;
4. backward: each shard's ``dH`` is reduce-scattered back to the row owners; the body's weight
   gradients are all-reduced as in plain sync; the shards' weight gradients stay local.

The embedding can be split the same way (:class:`ShardedEmbedding`, called inside the body):
each shard looks up the ids of its slice and the partial rows are summed (a reduce-scatter to
the rows' owners; the gradient goes back by an all-gather).

Here the devices are in one process (logical CPUs or GPUs placed with ``tf.device``), so TF moves
the tensors and sums the body gradients itself; the byte counts of :func:`step_bytes` are those a
multi-card run sends. Loss and gradients equal the single-device ones (tested).

The placement (:func:`greedy_placement`) decides per layer from a pre-run
(:func:`profile_layer`): weight bytes, activation bytes, compute time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import tensorflow as tf

from pluto.choices import Choice
from pluto.comm import ring_allgather_bytes, ring_allreduce_bytes

FLOAT_BYTES = 4


def shard_bounds(vocab: int, shards: int) -> list[tuple[int, int]]:
    """Contiguous ``[lo, hi)`` vocabulary slices, sizes differing by at most one."""
    if shards < 1 or vocab < shards:
        raise ValueError(f"cannot split a vocabulary of {vocab} into {shards} shards")
    edges = np.linspace(0, vocab, shards + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


class ShardedSoftmax:
    """Vocabulary projection ``H W + b`` with its softmax cross-entropy, sharded by columns.

    Args:
        kernel: Initial weights ``[hidden, vocab]``.
        bias: Initial bias ``[vocab]``.
        devices: One device name per shard (e.g. ``/cpu:0``, ``/gpu:1``).
        bounds: Vocabulary slice of each shard; default: even contiguous slices.
    """

    def __init__(
        self,
        kernel: np.ndarray,
        bias: np.ndarray,
        devices: Sequence[str],
        bounds: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        kernel = np.asarray(kernel, np.float32)
        bias = np.asarray(bias, np.float32)
        if kernel.ndim != 2 or bias.shape != (kernel.shape[1],):
            raise ValueError(f"kernel {kernel.shape} and bias {bias.shape} do not match")
        self.devices = list(devices)
        self.vocab = kernel.shape[1]
        self.bounds = list(bounds or shard_bounds(self.vocab, len(self.devices)))
        if len(self.bounds) != len(self.devices):
            raise ValueError("one vocabulary slice per device")
        self.kernels: list[tf.Variable] = []
        self.biases: list[tf.Variable] = []
        for device, (lo, hi) in zip(self.devices, self.bounds, strict=True):
            with tf.device(device):
                self.kernels.append(tf.Variable(kernel[:, lo:hi], name=f"proj_kernel_{lo}"))
                self.biases.append(tf.Variable(bias[lo:hi], name=f"proj_bias_{lo}"))

    @property
    def variables(self) -> list[tf.Variable]:
        """Every shard's kernel, then every shard's bias."""
        return self.kernels + self.biases

    def full_kernel(self) -> np.ndarray:
        """The whole ``[hidden, vocab]`` kernel (for checks and saving)."""
        return np.concatenate([k.numpy() for k in self.kernels], axis=1)

    def loss(self, hidden: Sequence[tf.Tensor], labels: tf.Tensor, weights: tf.Tensor):
        """Weighted mean cross-entropy of ``labels`` over the whole vocabulary.

        Args:
            hidden: Each data-parallel device's hidden rows ``[M_d, h]``, in row order.
            labels: Target ids ``[M]`` for the concatenated rows.
            weights: Row weights ``[M]`` (0 for padding).

        Returns:
            ``sum(w * ce) / max(sum(w), 1)``, the same number a single-device
            ``sparse_softmax_cross_entropy_with_logits`` gives.
        """
        labels = tf.cast(labels, tf.int32)
        maxes, logits_per_shard = [], []
        for device, kernel, bias in zip(self.devices, self.kernels, self.biases, strict=True):
            with tf.device(device):
                rows = tf.concat(list(hidden), axis=0)  # the all-gather of H
                logits = tf.matmul(rows, kernel) + bias
                logits_per_shard.append(logits)
                maxes.append(tf.reduce_max(logits, axis=1))
        # The max only keeps exp() in range; log-sum-exp does not depend on it, so it carries no
        # gradient (stop_gradient keeps the backward pass the textbook softmax gradient).
        row_max = tf.stop_gradient(tf.reduce_max(tf.stack(maxes), axis=0))
        sums, targets = [], []
        for device, logits, (lo, hi) in zip(
            self.devices, logits_per_shard, self.bounds, strict=True
        ):
            with tf.device(device):
                sums.append(tf.reduce_sum(tf.exp(logits - row_max[:, None]), axis=1))
                inside = (labels >= lo) & (labels < hi)
                local = tf.clip_by_value(labels - lo, 0, hi - lo - 1)
                picked = tf.gather(logits, local, axis=1, batch_dims=1)
                targets.append(tf.where(inside, picked, tf.zeros_like(picked)))
        # The all-reduce of the per-row statistics: 3 floats per row and shard.
        log_z = row_max + tf.math.log(tf.add_n(sums))
        ce = log_z - tf.add_n(targets)
        weights = tf.cast(weights, ce.dtype)
        return tf.reduce_sum(ce * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)


class ShardedEmbedding:
    """An embedding table split by rows (vocabulary slices) over devices.

    :meth:`lookup` gathers on every shard the ids its slice holds (zeros elsewhere) and sums the
    partial results: the reduce-scatter of a multi-card run. The gradient of each slice stays on
    its device.

    Args:
        table: Initial ``[vocab, width]`` table.
        devices: One device name per shard.
        bounds: Vocabulary slice of each shard; default: even contiguous slices.
    """

    def __init__(
        self,
        table: np.ndarray,
        devices: Sequence[str],
        bounds: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        table = np.asarray(table, np.float32)
        if table.ndim != 2:
            raise ValueError(f"expected a [vocab, width] table, got shape {table.shape}")
        self.devices = list(devices)
        self.bounds = list(bounds or shard_bounds(table.shape[0], len(self.devices)))
        if len(self.bounds) != len(self.devices):
            raise ValueError("one vocabulary slice per device")
        self.tables: list[tf.Variable] = []
        for device, (lo, hi) in zip(self.devices, self.bounds, strict=True):
            with tf.device(device):
                self.tables.append(tf.Variable(table[lo:hi], name=f"embedding_{lo}"))

    @property
    def variables(self) -> list[tf.Variable]:
        """Every shard's slice of the table."""
        return list(self.tables)

    def full_table(self) -> np.ndarray:
        """The whole ``[vocab, width]`` table."""
        return np.concatenate([t.numpy() for t in self.tables], axis=0)

    def lookup(self, ids: tf.Tensor) -> tf.Tensor:
        """Rows of ``ids`` (any shape) -> ``ids.shape + [width]``."""
        ids = tf.cast(ids, tf.int32)
        parts = []
        for device, table, (lo, hi) in zip(self.devices, self.tables, self.bounds, strict=True):
            with tf.device(device):
                inside = (ids >= lo) & (ids < hi)
                rows = tf.gather(table, tf.clip_by_value(ids - lo, 0, hi - lo - 1))
                parts.append(rows * tf.cast(inside, rows.dtype)[..., None])
        return tf.add_n(parts)


def hybrid_loss(
    body: Callable[[object], tf.Tensor],
    head: ShardedSoftmax,
    batches: Sequence[tuple[object, tf.Tensor, tf.Tensor]],
    devices: Sequence[str],
) -> tf.Tensor:
    """Loss of one hybrid step: the body data-parallel, the head vocabulary-parallel.

    Args:
        body: ``body(inputs) -> hidden rows [rows, h]`` (shared weights, e.g. a Keras model).
        head: The sharded projection.
        batches: One ``(inputs, labels [rows], weights [rows])`` slice per device.
        devices: Where each slice's body runs.

    Returns:
        The weighted mean loss over all slices' rows.
    """
    if len(batches) != len(devices):
        raise ValueError(f"{len(batches)} batch slices for {len(devices)} devices")
    hidden, labels, weights = [], [], []
    for device, (inputs, lab, w) in zip(devices, batches, strict=True):
        with tf.device(device):
            hidden.append(body(inputs))
        labels.append(lab)
        weights.append(w)
    return head.loss(hidden, tf.concat(labels, 0), tf.concat(weights, 0))


class ReplicaShardedSoftmax:
    """The vocabulary projection sharded over the replicas of a ``tf.distribute`` strategy.

    The same split as :class:`ShardedSoftmax`, inside a ``MirroredStrategy`` replica step
    instead of ``tf.device`` blocks: replica ``s`` holds the columns ``bounds[s]`` of the kernel
    and bias (padded to the widest shard) in variables with ``NONE`` aggregation, whose copies
    may differ and whose replica-context updates stay local. :meth:`target_log_probs`
    all-gathers the hidden rows and labels, computes the shard's logits, and all-reduces the
    softmax normaliser and the target logit (the max, which carries no gradient, through an
    all-gather). TF's collectives have gradients that sum over replicas: the body's gradients
    come back to the rows' owners, each shard's kernel gradient is computed where it lives.

    Args:
        strategy: The strategy whose replicas hold the shards.
        kernel: The full ``[hidden, vocab]`` projection kernel.
        bias: The full ``[vocab]`` bias.
    """

    def __init__(self, strategy, kernel: np.ndarray, bias: np.ndarray) -> None:
        import keras

        kernel = np.asarray(kernel, np.float32)
        bias = np.asarray(bias, np.float32)
        if kernel.ndim != 2 or bias.shape != (kernel.shape[1],):
            raise ValueError(f"kernel {kernel.shape} and bias {bias.shape} do not match")
        self.strategy = strategy
        self.replicas = strategy.num_replicas_in_sync
        self.hidden, self.vocab = kernel.shape
        self.bounds = shard_bounds(self.vocab, self.replicas)
        self.width = max(hi - lo for lo, hi in self.bounds)
        with strategy.scope():
            # Keras variables (as the model's): the trainer checks them like any weight.
            self.kernel = keras.Variable(
                np.zeros((self.hidden, self.width), np.float32),
                name="hybrid_proj_kernel",
                aggregation="none",
            )
            self.bias = keras.Variable(
                np.zeros((self.width,), np.float32), name="hybrid_proj_bias", aggregation="none"
            )
        self.load(kernel, bias)

    @property
    def variables(self) -> list:
        """The shard kernel and bias (one copy per replica, each a different slice)."""
        return [self.kernel, self.bias]

    def _padded(self, array: np.ndarray, axis: int) -> list[np.ndarray]:
        out = []
        for lo, hi in self.bounds:
            part = np.take(array, np.arange(lo, hi), axis=axis)
            pad = [(0, 0)] * array.ndim
            pad[axis] = (0, self.width - (hi - lo))
            out.append(np.pad(part, pad))
        return out

    def load(self, kernel: np.ndarray, bias: np.ndarray) -> None:
        """Give each replica its slice of the full ``kernel`` and ``bias``."""
        kernels = self._padded(np.asarray(kernel, np.float32), 1)
        biases = self._padded(np.asarray(bias, np.float32), 0)

        def value(parts):
            return self.strategy.experimental_distribute_values_from_function(
                lambda ctx: tf.constant(parts[ctx.replica_id_in_sync_group])
            )

        def assign(k, b):
            self.kernel.assign(k)
            self.bias.assign(b)

        tf.function(lambda: self.strategy.run(assign, args=(value(kernels), value(biases))))()

    def full(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole ``[hidden, vocab]`` kernel and ``[vocab]`` bias, assembled from the shards."""
        kernels = self.strategy.experimental_local_results(self.kernel.value)
        biases = self.strategy.experimental_local_results(self.bias.value)
        sizes = [hi - lo for lo, hi in self.bounds]
        return (
            np.concatenate([np.asarray(k)[:, :n] for k, n in zip(kernels, sizes, strict=True)], 1),
            np.concatenate([np.asarray(b)[:n] for b, n in zip(biases, sizes, strict=True)], 0),
        )

    def target_log_probs(self, hidden: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        """``log softmax(hidden W + b)[label]`` of this replica's rows (replica context).

        Every replica must call it, in the same order (it runs collectives).

        Args:
            hidden: This replica's rows ``[..., hidden]`` (any leading shape; rows may differ
                in number between replicas).
            labels: Their target ids, ``hidden``'s leading shape.

        Returns:
            The log-probabilities, ``labels``' shape, float32.
        """
        ctx = tf.distribute.get_replica_context()
        shape = tf.shape(labels)
        rows = tf.reshape(tf.cast(hidden, tf.float32), [-1, self.hidden])
        ids = tf.reshape(tf.cast(labels, tf.int32), [-1])
        count = tf.shape(ids)[:1]
        all_rows = ctx.all_gather(rows, axis=0)  # [M, hidden]: every replica's rows
        all_ids = ctx.all_gather(ids, axis=0)
        counts = ctx.all_gather(count, axis=0)  # rows per replica, in gather order
        replica = ctx.replica_id_in_sync_group
        lo = tf.gather(tf.constant([b[0] for b in self.bounds], tf.int32), replica)
        size = tf.gather(tf.constant([b[1] - b[0] for b in self.bounds], tf.int32), replica)
        logits = tf.matmul(all_rows, self.kernel) + self.bias
        # Padding columns of a narrower shard take no part (exp gives 0, no gradient).
        real = tf.range(self.width) < size
        logits = tf.where(real[None, :], logits, tf.constant(-1e30, logits.dtype))
        # The max only keeps exp() in range: no gradient through it (as in ShardedSoftmax).
        row_max = tf.stop_gradient(
            tf.reduce_max(ctx.all_gather(tf.reduce_max(logits, axis=1)[None, :], axis=0), 0)
        )
        sums = tf.reduce_sum(tf.exp(logits - row_max[:, None]), axis=1)
        inside = (all_ids >= lo) & (all_ids < lo + size)
        local = tf.clip_by_value(all_ids - lo, 0, self.width - 1)
        picked = tf.gather(logits, local, axis=1, batch_dims=1)
        # The all-reduce of the per-row statistics: 2 floats per row and shard.
        total, target = ctx.all_reduce(
            tf.distribute.ReduceOp.SUM, [sums, tf.where(inside, picked, tf.zeros_like(picked))]
        )
        log_probs = target - row_max - tf.math.log(total)
        start = tf.reduce_sum(counts[:replica])
        return tf.reshape(log_probs[start : start + count[0]], shape)


# ---- byte counts ---------------------------------------------------------------------------


class Shard(Choice):
    """How a model-parallel layer is split, which decides what its devices exchange.

    ``projection``: output columns split (the vocabulary projection with its softmax); the input
    rows are all-gathered, their gradient reduce-scattered, and 3 softmax statistics per row
    all-reduced. ``lookup``: table rows split (an embedding); each shard's partial lookups are
    reduce-scattered to the rows' owners and their gradient all-gathered back (with the ids).
    """

    PROJECTION = "projection"
    LOOKUP = "lookup"


def exchange_bytes(shard: Shard | str, rows: int, width: int, replicas: int) -> float:
    """Bytes one device sends per step for a model-parallel layer (float32).

    Args:
        shard: How the layer is split.
        rows: Rows per replica (projection: input rows; lookup: ids looked up).
        width: Input width (projection) or embedding width (lookup).
        replicas: Devices.
    """
    rows_bytes = rows * width * FLOAT_BYTES
    if Shard.parse(shard) is Shard.PROJECTION:
        stats = 3 * rows * replicas * FLOAT_BYTES
        return 2 * ring_allgather_bytes(rows_bytes, replicas) + ring_allreduce_bytes(
            stats, replicas
        )
    ids = rows * FLOAT_BYTES
    return 2 * ring_allgather_bytes(rows_bytes, replicas) + ring_allgather_bytes(ids, replicas)


@dataclass(frozen=True)
class StepBytes:
    """Bytes one device sends per step.

    Attributes:
        sync: Plain sync: ring all-reduce of every gradient.
        hybrid: Data-parallel gradients all-reduced plus the model-parallel layers' exchanges.
        exchange: The model-parallel layers' part of ``hybrid``.
    """

    sync: float
    hybrid: float
    exchange: float


def step_bytes(
    total_weight_bytes: int, sharded_weight_bytes: int, exchange: float, replicas: int
) -> StepBytes:
    """Per-device bytes of plain sync and of the hybrid step.

    Args:
        total_weight_bytes: All trainable weights.
        sharded_weight_bytes: Weights of the model-parallel layers (never all-reduced).
        exchange: Their exchange bytes (sum of :func:`exchange_bytes`).
        replicas: Devices.
    """
    sync = ring_allreduce_bytes(total_weight_bytes, replicas)
    body = ring_allreduce_bytes(total_weight_bytes - sharded_weight_bytes, replicas)
    return StepBytes(sync=sync, hybrid=body + exchange, exchange=exchange)


# ---- pre-run and greedy placement ----------------------------------------------------------


@dataclass(frozen=True)
class LayerProfile:
    """What the pre-run measured for one layer (per device, at the per-replica batch).

    Attributes:
        name: Layer name.
        weight_bytes: Trainable weights.
        activation_bytes: Output activations kept for the backward pass.
        compute_ms: Forward time (median of the pre-run).
        shard: How it can be split (``None``: data-parallel only).
        shard_rows: Rows it would exchange per replica when split (see :func:`exchange_bytes`).
        shard_width: Width of those rows.
    """

    name: str
    weight_bytes: int
    activation_bytes: int
    compute_ms: float
    shard: Shard | None = None
    shard_rows: int = 0
    shard_width: int = 0

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return {**asdict(self), "shard": None if self.shard is None else self.shard.value}

    def model_parallel_bytes(self, replicas: int) -> float | None:
        """Exchange bytes per device and step when split (``None`` when it cannot be)."""
        if self.shard is None:
            return None
        return exchange_bytes(self.shard, self.shard_rows, self.shard_width, replicas)


def _nbytes(tensors) -> int:
    # Keras variables name their dtype as a string, tensors as a tf.DType.
    return int(
        sum(
            np.prod(t.shape) * np.dtype(getattr(t.dtype, "name", t.dtype)).itemsize
            for t in tf.nest.flatten(tensors)
        )
    )


def profile_layer(
    name: str,
    fn: Callable[..., object],
    args: Sequence[object],
    variables: Sequence[tf.Variable],
    shard: Shard | str | None = None,
    repeats: int = 5,
) -> LayerProfile:
    """Pre-run one layer: weight and activation bytes, median forward time.

    Args:
        name: Layer name.
        fn: The layer's forward, ``fn(*args)``.
        args: Sample inputs at the per-replica batch (the first: the input rows or the ids).
        variables: Its trainable weights.
        shard: How the placement may split it (``None``: never).
        repeats: Timed calls after one warm-up call.
    """
    out = fn(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(*args)
        for t in tf.nest.flatten(out):
            t.numpy()  # wait for the result
        times.append((time.perf_counter() - start) * 1000.0)
    kind = None if shard is None else Shard.parse(shard)
    rows = width = 0
    if kind is Shard.PROJECTION:
        rows, width = int(np.prod(args[0].shape[:-1])), int(args[0].shape[-1])
    elif kind is Shard.LOOKUP:
        rows, width = int(np.prod(args[0].shape)), int(tf.nest.flatten(out)[0].shape[-1])
    return LayerProfile(
        name=name,
        weight_bytes=_nbytes(variables),
        activation_bytes=_nbytes(out),
        compute_ms=float(np.median(times)),
        shard=kind,
        shard_rows=rows,
        shard_width=width,
    )


class Mode(Choice):
    """How a layer is parallelized."""

    DATA = "data"
    MODEL = "model"


class PlacementError(ValueError):
    """The layers do not fit under the memory cap."""


@dataclass(frozen=True)
class Assignment:
    """One layer's placement.

    Attributes:
        layer: Layer name.
        mode: ``data`` (replicated on every device) or ``model`` (split).
        shards: For ``model``: ``(device index, fraction of the layer)`` per shard.
        bytes_dp: Per-device bytes per step if data-parallel (gradient all-reduce).
        bytes_mp: Per-device bytes per step if model-parallel (activation exchange).
        compute_ms: The pre-run's forward time.
    """

    layer: str
    mode: Mode
    shards: tuple[tuple[int, float], ...]
    bytes_dp: float
    bytes_mp: float | None
    compute_ms: float

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return {**asdict(self), "mode": self.mode.value, "shards": [list(s) for s in self.shards]}


@dataclass
class Placement:
    """The greedy placement's result.

    Attributes:
        assignments: One per layer, in the order given.
        memory: Bytes held on each device.
        memory_cap: The cap used.
    """

    assignments: list[Assignment] = field(default_factory=list)
    memory: list[float] = field(default_factory=list)
    memory_cap: float = 0.0

    def bytes_per_step(self) -> float:
        """Per-device bytes sent per step under this placement."""
        return sum(
            a.bytes_mp if a.mode is Mode.MODEL and a.bytes_mp is not None else a.bytes_dp
            for a in self.assignments
        )


def greedy_placement(
    profiles: Sequence[LayerProfile],
    devices: int,
    memory_cap: float,
    state_factor: float = 4.0,
) -> Placement:
    """Choose data or model parallelism per layer and place model-parallel shards greedily.

    A layer becomes model-parallel when it can be split and either its activation exchange
    costs fewer bytes than all-reducing its gradient (communication-intensive: big weights,
    small activations) or the replicated layers would not fit under ``memory_cap``. Every other
    layer is data-parallel (compute-intensive). Replicated layers occupy every device; then the
    shards, largest first, go one at a time to the device with the most free memory (least
    compute on ties), never beyond the cap.

    Args:
        profiles: The pre-run of every layer.
        devices: Number of devices.
        memory_cap: Bytes each device may hold.
        state_factor: Bytes held per weight byte (weights, gradient and two Adam moments: 4).

    Returns:
        The assignments and each device's memory.

    Raises:
        PlacementError: Something does not fit under the cap.
    """
    if devices < 1:
        raise ValueError(f"devices must be >= 1, got {devices}")

    def footprint(p: LayerProfile, fraction: float) -> float:
        return p.weight_bytes * state_factor * fraction + p.activation_bytes

    modes: dict[str, Mode] = {}
    for p in profiles:
        dp = ring_allreduce_bytes(p.weight_bytes, devices)
        mp = p.model_parallel_bytes(devices)
        modes[p.name] = Mode.MODEL if devices > 1 and mp is not None and mp < dp else Mode.DATA
    replicated = sum(footprint(p, 1.0) for p in profiles if modes[p.name] is Mode.DATA)
    # Memory pressure: shard the biggest shardable layers until the replicated part fits.
    for p in sorted(profiles, key=lambda q: -q.weight_bytes):
        if replicated <= memory_cap:
            break
        if p.shard is not None and devices > 1 and modes[p.name] is Mode.DATA:
            modes[p.name] = Mode.MODEL
            replicated -= footprint(p, 1.0)
    if replicated > memory_cap:
        raise PlacementError(
            f"the data-parallel layers need {replicated:.0f} bytes per device, cap {memory_cap:.0f}"
        )
    memory = [replicated] * devices
    compute = [
        sum(p.compute_ms for p in profiles if modes[p.name] is Mode.DATA) for _ in range(devices)
    ]
    shards: dict[str, list[tuple[int, float]]] = {p.name: [] for p in profiles}
    pieces = [(p, footprint(p, 1.0 / devices)) for p in profiles if modes[p.name] is Mode.MODEL]
    for p, size in sorted(pieces * devices, key=lambda item: -item[1]):
        order = sorted(range(devices), key=lambda d: (-(memory_cap - memory[d]), compute[d]))
        target = next((d for d in order if memory[d] + size <= memory_cap), None)
        if target is None:
            raise PlacementError(
                f"a shard of {p.name} ({size:.0f} bytes) fits on no device under the cap"
            )
        memory[target] += size
        compute[target] += p.compute_ms / devices
        shards[p.name].append((target, 1.0 / devices))
    placement = Placement(memory=memory, memory_cap=float(memory_cap))
    for p in profiles:
        placement.assignments.append(
            Assignment(
                layer=p.name,
                mode=modes[p.name],
                shards=tuple(sorted(shards[p.name])),
                bytes_dp=ring_allreduce_bytes(p.weight_bytes, devices),
                bytes_mp=p.model_parallel_bytes(devices),
                compute_ms=p.compute_ms,
            )
        )
    return placement
