"""Generic data-parallel trainer: synchronous all-reduce or model averaging.

The chatbot's ``alime train --devices N --parallel sync|ma --avg-period K [--bmuf]`` builds a
strategy with :func:`pluto.strategy.make_strategy`, builds its Keras model inside
``strategy.scope()``, and hands model, loss function and ``tf.data`` dataset to :class:`Trainer`
(step by step) or :func:`fit` (a whole run with evaluation and the heuristics).

Both modes share one replica step: forward, loss, gradient, then the local optimizer of
:mod:`pluto.local_optim`. Sync mode all-reduces the gradients first; model-averaging mode does
not, and averages the weights every K steps instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from pluto import averaging, heuristics, late_multiply, sync
from pluto.choices import Choice
from pluto.comm import CommCounter, payload_bytes
from pluto.local_optim import LocalOptimizer, OptimizerConfig
from pluto.strategy import is_chief

# ``loss_fn(targets, predictions)`` returns a replica's mean loss, or ``(loss, metrics)`` where
# ``metrics`` maps names to scalars that are summed over replicas (e.g. token counts and summed
# token losses, for a token-weighted mean) and reported in ``Trainer.last_metrics``.
LossFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor | tuple[tf.Tensor, dict[str, tf.Tensor]]]


class Mode(Choice):
    """Parallel training modes."""

    SYNC = "sync"
    MA = "ma"


class SlotPolicy(Choice):
    """What model averaging does with the optimizer state (momentum / Adam moments).

    ``LOCAL`` (default) keeps each replica's own state: it costs no communication and, since
    replicas restart from the same weights, their momenta stay close. ``AVERAGE`` all-reduces the
    slots too (doubles or triples the bytes). ``RESET`` zeroes them after every average.
    """

    LOCAL = "local"
    AVERAGE = "average"
    RESET = "reset"


@dataclass(frozen=True)
class TrainConfig:
    """Settings for one parallel training run.

    Attributes:
        mode: ``sync`` (gradient all-reduce every step) or ``ma`` (model averaging).
        optimizer: Local optimizer settings; ``learning_rate`` is the one-replica rate.
        avg_period: K, local steps between averages (model averaging only).
        warmup_avg_steps: First W steps average after every step (period 1).
        slot_policy: Optimizer-state handling at averaging time.
        bmuf: Block momentum settings, or ``None`` for plain averaging.
        lr_scaling: Learning-rate scaling with the number of replicas.
        lr_warmup_steps: Steps to ramp from the one-replica rate to the scaled rate.
        plateau_patience: Evaluations without progress before the learning rate is halved
            (0 switches the reduction off).
        plateau_factor: Multiplier applied on a plateau.
        adaptive_period: Let the averaging period follow the replicas' drift.
        drift_low: Drift under which the period doubles.
        drift_high: Drift over which the period halves.
        max_period: Upper bound of the adaptive period.
        jit_compile: Compile each replica's forward and backward pass (and the evaluation
            forward) with XLA. XLA needs static shapes: the step is still traced once per
            dataset spec, and XLA compiles once per distinct batch shape (one per length
            bucket, plus short last batches) and reuses it. The collectives and the update stay
            outside the compiled part.
    """

    mode: Mode | str = Mode.SYNC
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    avg_period: int = 8
    warmup_avg_steps: int = 0
    slot_policy: SlotPolicy | str = SlotPolicy.LOCAL
    bmuf: averaging.BmufConfig | None = None
    lr_scaling: heuristics.LrScaling | str = heuristics.LrScaling.NONE
    lr_warmup_steps: int = 0
    plateau_patience: int = 0
    plateau_factor: float = 0.5
    adaptive_period: bool = False
    drift_low: float = 0.002
    drift_high: float = 0.02
    max_period: int = 64
    jit_compile: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", Mode.parse(self.mode))
        object.__setattr__(self, "slot_policy", SlotPolicy.parse(self.slot_policy))
        object.__setattr__(self, "lr_scaling", heuristics.LrScaling.parse(self.lr_scaling))
        if self.avg_period < 1:
            raise ValueError(f"avg_period must be >= 1, got {self.avg_period}")
        if self.bmuf is not None and self.mode is not Mode.MA:
            raise ValueError("bmuf needs mode='ma'")


def _split_loss(out) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    return out if isinstance(out, tuple) else (out, {})


def _dense(grad: tf.Tensor | tf.IndexedSlices | None) -> tf.Tensor | None:
    # Embedding gradients arrive as IndexedSlices; all-reduce and the local update want dense.
    return None if grad is None else tf.convert_to_tensor(grad)


class Trainer:
    """Data-parallel trainer over any Keras model, loss function and ``tf.data`` input.

    Args:
        model: A Keras model built inside ``strategy.scope()``.
        loss_fn: ``loss_fn(targets, predictions)`` returning the mean loss of a replica's batch,
            or ``(loss, metrics)`` (see ``LossFn``).
        strategy: From :func:`pluto.strategy.make_strategy`.
        config: Mode, optimizer and heuristics.
        exchanged: Variables whose gradients leave the backward pass already averaged over
            replicas (the kernels of :mod:`pluto.late_multiply` layers on the late path): sync
            mode all-reduces every other gradient only. Read when the step is traced.
        exchanged_bytes: Bytes one replica sends per step to exchange those layers' factors
            (counted in :attr:`bytes_per_replica` instead of their all-reduce).
        sharded: Model-parallel variables: each replica's copy holds its own slice (e.g. a
            vocabulary shard of :mod:`pluto.hybrid`), so their gradients are never all-reduced.
            The loss reaches them through collectives whose gradients sum over replicas, so a
            shard's local gradient is N times the data-parallel mean's scale and is divided by N;
            the clip norm counts every shard (one scalar all-reduce). Sync mode only.

    Raises:
        ValueError: The model was not built under ``strategy.scope()``, or ``exchanged`` is
            given in model-averaging mode.
    """

    def __init__(
        self,
        model: tf.keras.Model,
        loss_fn: LossFn,
        strategy: tf.distribute.Strategy,
        config: TrainConfig | None = None,
        exchanged: Sequence = (),
        exchanged_bytes: float = 0.0,
        sharded: Sequence = (),
    ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.strategy = strategy
        self.config = config or TrainConfig()
        self.replicas = strategy.num_replicas_in_sync
        variables = model.trainable_variables
        if not variables:
            raise ValueError("model has no trainable variables; build it before the Trainer")
        if not all(strategy.extended.variable_created_in_scope(v.value) for v in variables):
            raise ValueError("build the model inside strategy.scope() before creating a Trainer")
        self._vars = list(variables)
        self.exchanged = list(exchanged)
        if self.exchanged and self.config.mode is not Mode.SYNC:
            raise ValueError("exchanged (late-multiply) gradients need mode='sync'")
        self.sharded = list(sharded)
        if self.sharded and self.config.mode is not Mode.SYNC:
            raise ValueError("sharded (hybrid) variables need mode='sync'")
        self._sharded_ids = {id(v) for v in self.sharded}
        skip = {id(v) for v in self.exchanged} | self._sharded_ids
        if len(skip & {id(v) for v in self._vars}) != len(skip):
            raise ValueError(
                "every exchanged or sharded variable must be a trainable variable of the model"
            )
        # Non-trainable float state (e.g. normalization statistics) is averaged along so that the
        # saved model is the same on every replica.
        self._state = [
            v for v in model.non_trainable_variables if v.dtype in ("float32", "float64")
        ]
        cfg = self.config
        # BMUF may run its local learners with SGD-momentum instead of the configured optimizer.
        local = cfg.optimizer if cfg.bmuf is None else cfg.bmuf.local_optimizer(cfg.optimizer)
        with strategy.scope():
            self.optimizer = LocalOptimizer(self._vars, local)
            self.bmuf = None
            if cfg.bmuf is not None:
                self.bmuf = averaging.BlockMomentum(
                    self._vars,
                    cfg.bmuf.momentum_at(0, self.replicas),
                    cfg.bmuf.block_lr,
                    cfg.bmuf.nesterov,
                )
        self.comm = CommCounter(self.replicas)
        # Bytes all-reduced per sync step: the exchanged kernels travel as factors instead, the
        # sharded ones not at all (their exchange is in ``exchanged_bytes``).
        self._reduced_bytes = payload_bytes([v for v in self._vars if id(v) not in skip])
        self._exchanged_bytes = float(exchanged_bytes)
        self._avg_bytes = payload_bytes(self._vars + self._state)
        if cfg.slot_policy is SlotPolicy.AVERAGE:
            self._avg_bytes += payload_bytes(self.optimizer.slots)
        self.period = cfg.avg_period
        self._adaptive = (
            heuristics.AdaptivePeriod(
                cfg.avg_period,
                1,
                max(cfg.max_period, cfg.avg_period),
                cfg.drift_low,
                cfg.drift_high,
            )
            if cfg.adaptive_period
            else None
        )
        self.global_step = 0
        self.local_steps = 0
        self.drift_history: list[tuple[int, float]] = []
        # (step, drift, new period) at every average the adaptive period saw.
        self.adapted: list[tuple[int, float, int]] = []
        self.schedule = heuristics.LrSchedule(
            local.learning_rate,
            self.replicas,
            cfg.lr_scaling,
            cfg.lr_warmup_steps,
            heuristics.PlateauReducer(factor=cfg.plateau_factor, patience=cfg.plateau_patience)
            if cfg.plateau_patience > 0
            else None,
        )
        # (step, rate) whenever the schedule changed the rate; the optimizer starts at the base.
        self.learning_rates: list[tuple[int, float]] = []
        self._scheduled_lr = float(local.learning_rate)
        self.last_metrics: dict[str, float] = {}
        self.last_eval_metrics: dict[str, float] = {}
        # Inputs of varying shape (length buckets) must not trace a step per shape: the step is
        # first traced for the dataset's element spec (None where shapes vary, see
        # ``_prime``), which every batch then matches; reduce_retracing generalizes any other
        # input after its second shape.
        self._train_fn = tf.function(self._distributed_step, reduce_retracing=True)
        self._avg_fn = tf.function(self._distributed_average)
        self._eval_fn = tf.function(self._distributed_eval, reduce_retracing=True)
        # XLA compiles the per-replica compute only: the all-reduce and the local update (whose
        # mirrored variables XLA cannot place) run in the ordinary graph around it.
        self._grad_fn = self._loss_and_grads
        self._forward_fn = self._eval_forward
        if cfg.jit_compile:
            self._grad_fn = tf.function(self._loss_and_grads, jit_compile=True)
            self._forward_fn = tf.function(self._eval_forward, jit_compile=True)
        self._last_spec = None
        self._primed: set[tuple[str, str]] = set()

    # ---- replica-context functions -------------------------------------------------------
    def _loss_and_grads(self, inputs, targets):
        with tf.GradientTape() as tape:
            predictions = self.model(inputs, training=True)
            loss, metrics = _split_loss(self.loss_fn(targets, predictions))
        grads = [_dense(g) for g in tape.gradient(loss, self._vars)]
        return loss, metrics, grads

    def _replica_step(self, inputs, targets):
        loss, metrics, grads = self._grad_fn(inputs, targets)
        if self.config.mode is Mode.SYNC:
            grads = self.reduce_gradients(grads)
        if self.sharded:
            grads = self._clip_with_shards(grads)
        self.optimizer.apply(grads)
        return loss, metrics

    def reduce_gradients(self, grads: Sequence) -> list:
        """Sync mode's gradient exchange (replica context): the MEAN all-reduce of every
        gradient, except those of :attr:`exchanged` variables, already averaged by their
        late-multiply layers.

        Args:
            grads: One gradient per trainable variable (in ``model.trainable_variables`` order).

        Returns:
            Gradients identical on every replica.
        """
        if self.sharded:
            scale = 1.0 / self.replicas
            grads = [
                g * scale if g is not None and id(v) in self._sharded_ids else g
                for g, v in zip(grads, self._vars, strict=True)
            ]
        if self.exchanged or self.sharded:
            return late_multiply.reduce_gradients(grads, self._vars, self.exchanged + self.sharded)
        return sync.allreduce_gradients(grads)

    def _clip_with_shards(self, grads: list) -> list:
        """Clip to the global norm of the whole model (replica context, after the reduce).

        The local optimizer's clip would only see this replica's shards; the other shards'
        squared norms come from one scalar all-reduce. The clipped gradients then have a norm
        within the cap, so the optimizer's own clip leaves them as they are.
        """
        clip = self.config.optimizer.clipnorm
        if clip is None:
            return grads
        ctx = tf.distribute.get_replica_context()
        shard_sq = [
            tf.reduce_sum(tf.square(g))
            for g, v in zip(grads, self._vars, strict=True)
            if g is not None and id(v) in self._sharded_ids
        ]
        body_sq = [
            tf.reduce_sum(tf.square(g))
            for g, v in zip(grads, self._vars, strict=True)
            if g is not None and id(v) not in self._sharded_ids
        ]
        total = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.add_n(shard_sq)) + tf.add_n(body_sq)
        norm = tf.sqrt(total)
        scale = clip / tf.maximum(norm, clip)
        return [None if g is None else g * scale for g in grads]

    def _replica_average(self) -> tf.Tensor:
        policy = self.config.slot_policy
        extra = self._state + (self.optimizer.slots if policy is SlotPolicy.AVERAGE else [])
        means, drift = averaging.average_weights(self._vars, extra)
        if self.bmuf is not None:
            self.bmuf.apply(means)
        if policy is SlotPolicy.RESET:
            for slot in self.optimizer.slots:
                slot.assign(tf.zeros_like(slot))
        return drift

    def _eval_forward(self, inputs, targets):
        predictions = self.model(inputs, training=False)
        return _split_loss(self.loss_fn(targets, predictions))

    def _replica_eval(self, inputs, targets):
        loss, metrics = self._forward_fn(inputs, targets)
        count = tf.cast(tf.shape(tf.nest.flatten(targets)[0])[0], tf.float32)
        return loss * count, count, metrics

    def _reduce_metrics(self, metrics: dict) -> dict:
        return {
            k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            for k, v in metrics.items()
        }

    def _distributed_step(self, batch):
        inputs, targets = batch
        losses, metrics = self.strategy.run(self._replica_step, args=(inputs, targets))
        mean = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, losses, axis=None)
        return mean, self._reduce_metrics(metrics)

    def _distributed_average(self) -> tf.Tensor:
        drift = self.strategy.run(self._replica_average)
        return self.strategy.reduce(tf.distribute.ReduceOp.MEAN, drift, axis=None)

    def _distributed_eval(self, batch):
        inputs, targets = batch
        total, count, metrics = self.strategy.run(self._replica_eval, args=(inputs, targets))
        reduce = self.strategy.reduce
        return (
            reduce(tf.distribute.ReduceOp.SUM, total, axis=None),
            reduce(tf.distribute.ReduceOp.SUM, count, axis=None),
            self._reduce_metrics(metrics),
        )

    # ---- public API ------------------------------------------------------------------------
    def distribute(self, dataset: tf.data.Dataset) -> tf.distribute.DistributedDataset:
        """Split a dataset batched at the global batch size into per-replica shards.

        Sharding is by data (not files), so in-memory datasets shard across workers too.
        """
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        dist = self.strategy.experimental_distribute_dataset(dataset.with_options(options))
        self._last_spec = dist.element_spec
        return dist

    def _prime(self, kind: str, spec) -> None:
        """Trace the train or eval step once for ``spec`` (a distributed dataset's element
        spec): later batches of any shape that spec admits reuse that one trace."""
        if spec is None or (kind, repr(spec)) in self._primed:
            return
        fn = self._train_fn if kind == "train" else self._eval_fn
        fn.get_concrete_function(spec)
        self._primed.add((kind, repr(spec)))

    @property
    def in_sync(self) -> bool:
        """Whether every replica currently holds the same weights."""
        return self.config.mode is Mode.SYNC or self.local_steps == 0

    @property
    def bytes_per_replica(self) -> float:
        """Bytes each replica has sent so far (ring all-reduce model)."""
        return self.comm.bytes_sent

    def set_learning_rate(self, value: float) -> None:
        """Set the local learning rate on every replica (until the schedule next changes it)."""
        self.optimizer.learning_rate.assign(value)

    @property
    def learning_rate(self) -> float:
        """The rate the optimizer applies now (read from its variable)."""
        return float(self.optimizer.learning_rate.numpy())

    def apply_schedule(self) -> float:
        """Give the optimizer the schedule's rate for the next step; returns that rate.

        Called by :meth:`step`; a rate set by hand with :meth:`set_learning_rate` stays until the
        schedule's rate changes.
        """
        rate = self.schedule.rate(self.global_step)
        if rate != self._scheduled_lr or not self.learning_rates:
            if rate != self._scheduled_lr:
                self.set_learning_rate(rate)
            self._scheduled_lr = rate
            self.learning_rates.append((self.global_step, rate))
        return rate

    def on_validation(self, val_loss: float) -> float:
        """Feed a validation loss to the plateau rule; returns the learning rate now in force."""
        self.schedule.on_validation(val_loss)
        return self.apply_schedule()

    def step(self, batch) -> float:
        """One training step on a distributed batch; averages when the period is reached.

        The learning rate comes from :attr:`schedule` (replica scaling, warm-up, plateau). The
        replicas' summed metrics (when ``loss_fn`` returns any) are in :attr:`last_metrics`.

        Args:
            batch: ``(inputs, targets)`` from an iterator over :meth:`distribute`'s dataset.

        Returns:
            The loss averaged over replicas.
        """
        self.apply_schedule()
        self._prime("train", self._last_spec)
        loss, metrics = self._train_fn(batch)
        loss = float(loss)
        self.last_metrics = {k: float(v) for k, v in metrics.items()}
        self.global_step += 1
        if self.config.mode is Mode.SYNC:
            self.comm.add(self._reduced_bytes)
            if self.replicas > 1:
                self.comm.bytes_sent += self._exchanged_bytes
            return loss
        self.local_steps += 1
        warming = self.global_step <= self.config.warmup_avg_steps
        if self.local_steps >= (1 if warming else self.period):
            self.average(adapt=not warming)
        return loss

    def average(self, adapt: bool = True) -> float:
        """Average the weights across replicas now (BMUF block update when configured).

        Args:
            adapt: Let the adaptive period see this drift measurement.

        Returns:
            The replicas' relative drift from their mean before averaging.
        """
        if self.bmuf is not None:  # block momentum of this block (ramped while warming up)
            self.bmuf.set_momentum(
                self.config.bmuf.momentum_at(self.comm.allreduces, self.replicas)
            )
        drift = float(self._avg_fn())
        self.comm.add(self._avg_bytes)
        self.local_steps = 0
        self.drift_history.append((self.global_step, drift))
        if self._adaptive is not None and adapt:
            self.period = self._adaptive.update(drift)
            self.adapted.append((self.global_step, drift, self.period))
        return drift

    def sync_weights_for_save(self) -> None:
        """Make every replica hold the same weights (call before evaluation or saving).

        Model averaging averages any pending local steps; sync mode averages the non-trainable
        state only if there is any (the trainable weights are already identical).
        """
        if not self.in_sync:
            self.average(adapt=False)
        elif self.config.mode is Mode.SYNC and self._state and self.replicas > 1:
            self._sync_state_fn()

    @tf.function
    def _sync_state_fn(self) -> None:
        def replica() -> None:
            ctx = tf.distribute.get_replica_context()
            means = ctx.all_reduce(
                tf.distribute.ReduceOp.MEAN, [tf.identity(v) for v in self._state]
            )
            for var, mean in zip(self._state, means, strict=True):
                var.assign(mean)

        self.strategy.run(replica)

    def evaluate(self, dataset: tf.data.Dataset | tf.distribute.DistributedDataset) -> float:
        """Mean loss over ``dataset`` (weights must be in sync; see :attr:`in_sync`).

        Args:
            dataset: Global-batch dataset, or one already passed through :meth:`distribute`.
        """
        if not self.in_sync:
            raise RuntimeError("replicas are out of sync; call sync_weights_for_save() first")
        if isinstance(dataset, tf.data.Dataset):
            dataset = self.distribute(dataset)
        self._prime("eval", dataset.element_spec)
        total, count = 0.0, 0.0
        sums: dict[str, float] = {}
        for batch in dataset:
            t, c, metrics = self._eval_fn(batch)
            total += float(t)
            count += float(c)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        # Sums over every batch and replica; the caller makes its own weighted means.
        self.last_eval_metrics = sums
        return total / max(count, 1.0)

    def replica_weights(self) -> list[list[np.ndarray]]:
        """Each replica's copy of the trainable weights: ``[replica][variable]`` arrays."""
        per_var = [
            [np.asarray(x) for x in self.strategy.experimental_local_results(v.value)]
            for v in self._vars
        ]
        return [list(row) for row in zip(*per_var, strict=True)]

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Optimizer slots and step counter (and BMUF's global model and momentum) as arrays.

        With model averaging each replica holds its own optimizer slots; replica 0's are taken
        (its statistics are close to the others': replicas restart from the same weights). Call
        :meth:`sync_weights_for_save` first so the model weights are averaged too.
        """

        def first(var) -> np.ndarray:
            return np.asarray(self.strategy.experimental_local_results(var)[0])

        out = {f"slot_{i}": first(v) for i, v in enumerate(self.optimizer.slots)}
        out["iterations"] = first(self.optimizer.iterations)
        if self.bmuf is not None:
            for i, (w, d) in enumerate(zip(self.bmuf.global_weights, self.bmuf.delta, strict=True)):
                out[f"bmuf_global_{i}"], out[f"bmuf_delta_{i}"] = first(w), first(d)
            out["bmuf_restart_momentum"] = first(self.bmuf._restart_momentum)
        return out

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore :meth:`state_arrays`'s output on every replica (cross-replica assign)."""
        for i, var in enumerate(self.optimizer.slots):
            var.assign(arrays[f"slot_{i}"])
        self.optimizer.iterations.assign(arrays["iterations"])
        if self.bmuf is not None:
            for i, (w, d) in enumerate(zip(self.bmuf.global_weights, self.bmuf.delta, strict=True)):
                w.assign(arrays[f"bmuf_global_{i}"])
                d.assign(arrays[f"bmuf_delta_{i}"])
            # Older checkpoints lack it: their restarts used the constant block momentum.
            restart = arrays.get("bmuf_restart_momentum", self.bmuf.momentum.numpy())
            self.bmuf._restart_momentum.assign(restart)

    def state_dict(self) -> dict:
        """The loop's scalar state (JSON-ready): steps, period, bytes, schedule."""
        return {
            "global_step": self.global_step,
            "period": self.period,
            "bytes_per_replica": self.comm.bytes_sent,
            "allreduces": self.comm.allreduces,
            "schedule": self.schedule.state(),
            "learning_rates": [list(x) for x in self.learning_rates],
            "adapted": [list(x) for x in self.adapted],
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`'s output (weights in sync, no pending local steps)."""
        self.global_step = int(state["global_step"])
        self.period = int(state["period"])
        if self._adaptive is not None:
            self._adaptive.period = self.period
        self.comm.bytes_sent = float(state["bytes_per_replica"])
        self.comm.allreduces = int(state["allreduces"])
        self.schedule.load_state(state.get("schedule", {}))
        self.learning_rates = [(int(s), float(r)) for s, r in state.get("learning_rates", [])]
        self.adapted = [(int(s), float(d), int(k)) for s, d, k in state.get("adapted", [])]
        self._scheduled_lr = self.schedule.rate(self.global_step)
        self.set_learning_rate(self._scheduled_lr)

    def save_weights(self, path: str) -> bool:
        """Synchronize the replicas, then write the weights from the chief only.

        Args:
            path: Keras weights file (``*.weights.h5``).

        Returns:
            Whether this process wrote the file.
        """
        self.sync_weights_for_save()
        if not is_chief(self.strategy):
            return False
        self.model.save_weights(path)
        return True


@dataclass
class FitResult:
    """What :func:`fit` measured.

    Attributes:
        history: ``(steps per replica, validation loss)`` at each evaluation.
        steps: Steps per replica taken.
        steps_to_target: First evaluated step whose validation loss reached the target.
        bytes_per_replica: Bytes each replica sent.
        wall_s: Wall time of the run.
        final_val_loss: Validation loss after the final synchronization.
        learning_rates: ``(step, learning rate)`` whenever it changed.
    """

    history: list[tuple[int, float]] = field(default_factory=list)
    steps: int = 0
    steps_to_target: int | None = None
    bytes_per_replica: float = 0.0
    wall_s: float = 0.0
    final_val_loss: float = math.nan
    learning_rates: list[tuple[int, float]] = field(default_factory=list)


def fit(
    trainer: Trainer,
    dataset: tf.data.Dataset,
    steps: int,
    val_dataset: tf.data.Dataset | None = None,
    eval_every: int = 50,
    target_val_loss: float | None = None,
    stop_at_target: bool = False,
) -> FitResult:
    """Train for ``steps`` steps per replica with the configured heuristics.

    Evaluation happens at the first in-sync step after every ``eval_every`` steps, so model
    averaging is never forced by evaluation.

    Args:
        trainer: The trainer.
        dataset: Training data batched at the global batch size (repeats as needed).
        steps: Steps per replica.
        val_dataset: Validation data batched at the global batch size.
        eval_every: Steps between evaluations.
        target_val_loss: Records the first evaluated step at or below this loss.
        stop_at_target: Stop as soon as the target is reached.

    Returns:
        The measurements of the run.
    """
    result = FitResult()
    val = trainer.distribute(val_dataset) if val_dataset is not None else None
    iterator = iter(trainer.distribute(dataset.repeat()))
    last_eval = 0
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step(next(iterator))  # the rate comes from trainer.schedule
        done = trainer.global_step
        if val is not None and trainer.in_sync and done - last_eval >= eval_every:
            last_eval = done
            loss = trainer.evaluate(val)
            result.history.append((done, loss))
            trainer.on_validation(loss)
            if target_val_loss is not None and result.steps_to_target is None:
                if loss <= target_val_loss:
                    result.steps_to_target = done
                    if stop_at_target:
                        break
    trainer.sync_weights_for_save()
    result.steps = trainer.global_step
    if val is not None:
        result.final_val_loss = trainer.evaluate(val)
        if not result.history or result.history[-1][0] != result.steps:
            result.history.append((result.steps, result.final_val_loss))
        if target_val_loss is not None and result.steps_to_target is None:
            if result.final_val_loss <= target_val_loss:
                result.steps_to_target = result.steps
    result.bytes_per_replica = trainer.bytes_per_replica
    result.learning_rates = list(trainer.learning_rates)
    result.wall_s = time.perf_counter() - start
    return result


def measure_throughput(
    trainer: Trainer,
    dataset: tf.data.Dataset,
    batch_per_replica: int,
    steps: int = 5,
    warmup_steps: int = 2,
) -> float | None:
    """Short pre-run for :func:`pluto.heuristics.select_batch_size`: examples per second.

    Trains ``trainer`` (use a throwaway model: its weights change) on ``dataset`` unbatched
    examples at ``batch_per_replica`` examples per replica.

    Args:
        trainer: A trainer over a throwaway copy of the model.
        dataset: Unbatched ``(inputs, targets)`` examples.
        batch_per_replica: Batch size to try on each replica.
        steps: Timed steps.
        warmup_steps: Untimed steps first (tracing, allocation).

    Returns:
        Examples per second over all replicas, or ``None`` when the batch does not fit in memory.
    """
    global_batch = batch_per_replica * trainer.replicas
    batches = iter(trainer.distribute(dataset.repeat().batch(global_batch, drop_remainder=True)))
    try:
        for _ in range(warmup_steps):
            trainer.step(next(batches))
        start = time.perf_counter()
        for _ in range(steps):
            trainer.step(next(batches))
        elapsed = time.perf_counter() - start
    except tf.errors.ResourceExhaustedError:
        return None
    return steps * global_batch / max(elapsed, 1e-9)
