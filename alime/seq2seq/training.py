"""Training: bucketed batches, Adam with gradient clipping, validation-based checkpoints.

One training path for one device, N devices and several workers: :class:`Trainer` builds the
seq2seq model under a ``tf.distribute`` strategy and trains it through Pluto's trainer
(:class:`pluto.training.Trainer`), which owns the replica step, the learning-rate schedule
(replica scaling, warm-up, plateau reduction) and model averaging. One device is a one-replica
strategy, not a second loop.

Files in the output directory: the model directory (``config.json``, ``vocab.json``,
``model.weights.h5`` holding the best weights by validation loss, ``training.json``), plus
``checkpoint/`` (the last epoch's weights, optimizer state and loop state, for ``resume``) and
``logs/`` (TensorBoard scalars: ``train/loss``, ``learning_rate``, ``valid/loss``,
``train/epoch_loss``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import alime
from alime.seq2seq.config import Seq2SeqConfig
from alime.seq2seq.data import (
    Dialogue,
    Example,
    bucket_batches,
    bucket_index,
    make_dataset,
    make_examples,
    pad_batch,
    read_dialogues,
    split_dialogues,
    tokenize_dialogues,
)
from alime.seq2seq.distributed import ParallelOptions
from alime.seq2seq.model_dir import CONFIG_FILE, VOCAB_FILE, save_model_dir, write_metadata
from alime.seq2seq.vocab import PAD_ID, Vocabulary
from alime.text import TextConfig, TextPipeline

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
MIXED_POLICY = "mixed_bfloat16"
OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class TrainOptions:
    """Settings of the training loop (the network's shape is a ``Seq2SeqConfig``).

    Attributes:
        valid_fraction: share of dialogues held out when no validation file is given.
        max_vocab: vocabulary size limit, reserved ids included.
        min_count: drop rarer words from the vocabulary.
        expand_turns: also train on earlier responder turns of each dialogue.
        threads: TensorFlow intra/inter-op threads (0: TensorFlow's default).
        max_steps: stop each epoch after this many batches (0: no limit; for smoke runs).
        contrastive_weight: weight λ of the rerank-aware term (``contrastive_loss``) added to the
            token loss; 0 trains on the generation loss alone.
        contrastive_negatives: wrong answers per example for that term: the targets of the
            next examples in the batch (in-batch negatives).
        contrastive_temperature: divides the sequence scores before the softmax.
        max_minutes: do not start an epoch that would end after this many minutes of wall time
            (judged by the previous epoch's length; 0: no limit).
        auto_batch_sizes: per-replica batch sizes for Pluto's pre-run selection
            (``--batch-size auto``); empty: use ``batch_size``.
        mixed_precision: compute in bfloat16 with float32 weights, logits and loss (Keras's
            ``mixed_bfloat16`` policy: no loss scaling needed, unlike float16).
        recompute: recompute the encoder and decoder blocks' activations in the backward pass
            (``pluto.recompute``): less memory for one more forward pass of those blocks; the
            gradients are unchanged.
        jit_compile: compile each replica's forward and backward pass (and the evaluation
            forward) with XLA (``pluto.training.TrainConfig.jit_compile``). Short batches are
            padded with empty rows to the full size (``pad_rows``: no effect on the loss), so
            XLA compiles once per length bucket.
        hybrid: train the vocabulary projection with its softmax and loss sharded across the
            replicas (``pluto.hybrid.ReplicaShardedSoftmax``) and the rest data-parallel, when
            Pluto's greedy placement shards it (needs 2 or more replicas and ``sync``; not with
            late-multiply). The saved model is the ordinary one.
        device_memory_mb: the per-device memory cap the placement works under (0: no cap).
        optimizer: the (local) optimizer: ``adam``, or ``sgd`` (heavy-ball momentum
            ``momentum``; needs a far larger ``learning_rate``, e.g. 0.1). With ``--bmuf`` and
            ``bmuf_local_lr`` the local learners run SGD-momentum whatever this says.
        momentum: the SGD momentum (``optimizer="sgd"``).
    """

    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    clip_norm: float = 5.0
    patience: int = 3
    seed: int = 42
    valid_fraction: float = 0.1
    max_vocab: int = 8000
    min_count: int = 1
    expand_turns: bool = True
    threads: int = 0
    max_steps: int = 0
    contrastive_weight: float = 0.0
    contrastive_negatives: int = 3
    contrastive_temperature: float = 1.0
    max_minutes: float = 0.0
    auto_batch_sizes: tuple[int, ...] = ()
    mixed_precision: bool = False
    recompute: bool = False
    jit_compile: bool = False
    hybrid: bool = False
    device_memory_mb: float = 0.0
    optimizer: str = "adam"
    momentum: float = 0.9

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"--optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}"
            )
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"--momentum must be in [0, 1); got {self.momentum}")
        object.__setattr__(self, "auto_batch_sizes", tuple(int(b) for b in self.auto_batch_sizes))
        if any(b < 1 for b in self.auto_batch_sizes):
            raise ValueError("auto_batch_sizes must be >= 1")
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ValueError("epochs, batch_size and patience must be >= 1")
        if self.contrastive_weight < 0 or self.contrastive_negatives < 1:
            raise ValueError("contrastive_weight must be >= 0 and contrastive_negatives >= 1")
        if self.contrastive_temperature <= 0:
            raise ValueError("contrastive_temperature must be > 0")
        if self.device_memory_mb < 0:
            raise ValueError("--device-memory-mb must be >= 0 (0: no cap)")


@dataclass(frozen=True)
class TrainResult:
    """What a run did.

    Attributes:
        wrote: whether this process wrote ``out_dir`` (False on a non-chief worker).
    """

    out_dir: Path
    best_val_loss: float
    epochs_run: int
    stopped_early: bool
    wrote: bool = True


def set_threads(n: int) -> None:
    import tensorflow as tf

    if n <= 0:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
    except RuntimeError:  # TensorFlow already initialized: keep its settings
        log.warning("TensorFlow already initialized; thread settings unchanged")


def _scalar(name: str, value: float, step: int) -> None:
    """A TensorBoard scalar without needing the ``tensorboard`` package (TF 2.21 no longer pulls
    it in): a raw summary tagged for TensorBoard's scalar plugin."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    meta = summary_pb2.SummaryMetadata()
    meta.plugin_data.plugin_name = "scalars"
    tf.summary.write(
        name, tf.constant(value, tf.float32), step=step, metadata=meta.SerializeToString()
    )


def _read(files: Sequence[str | Path]) -> list[Dialogue]:
    return [d for f in files for d in read_dialogues(f)]


def seq2seq_losses(model, source, target, options: TrainOptions, training: bool = True, head=None):
    """Losses of one replica's batch: summed token NLL, token count and the contrastive term.

    Args:
        head: a ``pluto.hybrid.ReplicaShardedSoftmax`` that replaces the model's vocabulary
            projection (hybrid training, replica context), or None.

    Returns:
        (nll, count, contrastive): the contrastive term is the mean over the rows that have a
        source and at least one distinct negative (0 when λ = 0 or none has).
    """
    import tensorflow as tf

    from alime.seq2seq.model import EncoderOutput, shift_right, target_log_probs

    def log_probs_of(enc, ids):
        if head is None:
            return target_log_probs(model.decode(enc, shift_right(ids), training=training), ids)
        return head.target_log_probs(model.decode_hidden(enc, shift_right(ids), training), ids)

    enc = model.encode(source, training=training)
    log_probs = log_probs_of(enc, target)
    mask = tf.cast(tf.not_equal(target, PAD_ID), tf.float32)
    nll, count = -tf.reduce_sum(log_probs * mask), tf.reduce_sum(mask)
    if not options.contrastive_weight:
        return nll, count, tf.constant(0.0)
    negatives = options.contrastive_negatives
    wrong = in_batch_negatives(target, negatives)
    tiled = EncoderOutput(
        *(
            tf.tile(t, [negatives] + [1] * (len(t.shape) - 1))
            for t in (enc.values, enc.keys, enc.mask, enc.state)
        )
    )
    wrong_log_probs = log_probs_of(tiled, wrong)
    positive = sequence_scores(log_probs, target)
    negative = tf.transpose(tf.reshape(sequence_scores(wrong_log_probs, wrong), [negatives, -1]))
    # An all-PAD "answer" (a row that only pads a batch to its full size, see ``pad_rows``)
    # is no negative: real targets always hold at least EOS.
    distinct = tf.transpose(
        tf.reshape(
            tf.reduce_any(tf.not_equal(wrong, tf.tile(target, [negatives, 1])), axis=1)
            & tf.reduce_any(tf.not_equal(wrong, PAD_ID), axis=1),
            [negatives, -1],
        )
    )
    has_source = tf.reduce_any(tf.not_equal(source, PAD_ID), axis=1)
    term = contrastive_loss(
        positive, negative, distinct, has_source, options.contrastive_temperature
    )
    return nll, count, term


class _Objective:
    """What Pluto's trainer calls as its "model": the seq2seq losses of ``(source, target)``.

    Pluto's replica step is ``loss_fn(targets, model(inputs))``; the contrastive term needs the
    encoder output and the batch's other targets, so the "prediction" here is the losses
    themselves and :meth:`loss` combines them. The variables are the seq2seq model's; with a
    hybrid ``head``, its shards stand in for the model's projection kernel and bias.
    """

    def __init__(self, model, options: TrainOptions, head=None) -> None:
        self.model = model
        self.options = options
        self.head = head

    @property
    def trainable_variables(self):
        if self.head is None:
            return self.model.trainable_variables
        projection = {id(v) for v in self.model.output_proj.weights}
        body = [v for v in self.model.trainable_variables if id(v) not in projection]
        return body + self.head.variables

    @property
    def non_trainable_variables(self):
        return self.model.non_trainable_variables

    def __call__(self, inputs, training: bool = False) -> dict:
        import tensorflow as tf

        source, target = inputs
        nll, count, term = seq2seq_losses(
            self.model, source, target, self.options, training, self.head
        )
        # Whether this replica got any real row (padding rows have an all-PAD target).
        rows = tf.cast(tf.reduce_any(tf.not_equal(target, PAD_ID)), tf.float32)
        return {"nll": nll, "tokens": count, "contrastive": term * rows, "batches": rows}

    def loss(self, targets, out: dict):
        """Pluto ``loss_fn``: token-mean NLL plus λ times the contrastive term; the parts are
        returned as metrics (summed over replicas) for token-weighted reporting."""
        import tensorflow as tf

        loss = out["nll"] / tf.maximum(out["tokens"], 1.0)
        loss += self.options.contrastive_weight * out["contrastive"]
        return tf.cast(loss, tf.float32), out


def late_multiply_shapes(model, config: Seq2SeqConfig, options: TrainOptions) -> list:
    """The late-multiply-capable Dense layers of ``model`` at the per-replica batch.

    One plan serves every length bucket (the train step is traced once for all of them), so the
    rows are those of the longest bucket: a layer goes late only if that pays in every bucket
    (the late bytes grow with the rows, the plain ones do not). With the contrastive term the
    decoder side runs once more per negative, each run exchanging its own factors.

    Returns:
        One ``pluto.late_multiply.DenseShape`` per layer (empty for a model without them).
    """
    from pluto.late_multiply import DenseShape, late_layers

    batch = options.batch_size
    src = max(s for s, _ in config.buckets)
    tgt = max(t for _, t in config.buckets)
    decodes = 1 + (options.contrastive_negatives if options.contrastive_weight else 0)
    rows = {"bridge": batch, "key_proj": batch * src}
    shapes = []
    for layer in late_layers(model):
        n_in, n_out = layer.kernel.shape
        m = rows.get(layer.name, batch * tgt * decodes)  # query_proj, combine, output_proj
        shapes.append(DenseShape(layer.name, int(n_in), int(n_out), m))
    return shapes


def plan_late_multiply(model, config: Seq2SeqConfig, options: TrainOptions, replicas: int):
    """Pluto's per-layer late-multiply decision for ``model``, applied to its layers.

    Returns:
        The ``pluto.late_multiply.LayerCost`` of every layer (``late`` says which path it took);
        empty when the model was built without late-multiply layers.
    """
    from pluto.late_multiply import apply_plan, plan

    costs = plan(late_multiply_shapes(model, config, options), replicas)
    apply_plan(model, costs)
    return costs


def late_multiply_record(costs) -> dict | None:
    """What ``training.json`` says about late-multiply (None when it was off)."""
    if not costs:
        return None
    chosen = [c for c in costs if c.late]
    plain = sum(c.bytes_plain for c in costs)
    sent = sum(c.bytes_chosen for c in costs)
    return {
        "rows_at": "per-replica batch x longest bucket",
        "late_layers": [c.name for c in chosen],
        "bytes_plain_per_step": int(plain),
        "bytes_chosen_per_step": int(sent),
        "bytes_saved_per_step": int(plain - sent),
        "layers": [c.to_dict() for c in costs],
    }


def pad_rows(source: np.ndarray, target: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """``(source, target)`` with all-PAD rows appended up to ``rows`` rows.

    A padding row changes nothing: its target has no token (no loss, no token count), it is no
    contrastive negative and has no source (no contrastive row).
    """
    extra = rows - len(source)
    if extra <= 0:
        return source, target
    return (
        np.concatenate([source, np.full((extra, source.shape[1]), PAD_ID, source.dtype)]),
        np.concatenate([target, np.full((extra, target.shape[1]), PAD_ID, target.dtype)]),
    )


def _decodes(options: TrainOptions) -> int:
    """Decoder passes per step: the target, plus one per contrastive negative."""
    return 1 + (options.contrastive_negatives if options.contrastive_weight else 0)


def profile_layers(model, config: Seq2SeqConfig, options: TrainOptions) -> list:
    """Pluto's pre-run of the seq2seq layers at the per-replica batch and the longest bucket.

    Only the vocabulary projection can be split here (``Shard.PROJECTION``: its softmax and
    loss go with it); the embedding is profiled as data-parallel (a sharded lookup exists in
    ``pluto.hybrid`` but is not wired into this model).

    Returns:
        One ``pluto.hybrid.LayerProfile`` per layer.
    """
    import tensorflow as tf

    from pluto.hybrid import Shard, profile_layer

    batch = options.batch_size
    src = max(s for s, _ in config.buckets)
    tgt = max(t for _, t in config.buckets)
    h, rows = config.hidden_dim, batch * tgt * _decodes(options)
    m = model
    values = tf.zeros((batch, src, h))
    keys = m.attention.keys(values)
    mask = tf.ones((batch, src), tf.bool)
    layers = [
        ("embedding", m.embedding, [tf.ones((batch, max(src, tgt)), tf.int32)], m.embedding, None),
        ("encoder", m.encoder_rnn, [tf.zeros((batch, src, config.embed_dim))], m.encoder_rnn, None),
        ("bridge", m.bridge, [tf.zeros((batch, h))], m.bridge, None),
        ("decoder", m.decoder_rnn, [tf.zeros((batch, tgt, config.embed_dim))], m.decoder_rnn, None),
        (
            "attention",
            lambda q: m.attention(q, keys, values, mask),
            [tf.zeros((batch, tgt, h))],
            m.attention,
            None,
        ),
        ("combine", m.combine, [tf.zeros((batch, tgt, 2 * h))], m.combine, None),
        ("output_proj", m.output_proj, [tf.zeros((rows, h))], m.output_proj, Shard.PROJECTION),
    ]
    return [
        profile_layer(name, fn, args, layer.trainable_weights, shard=shard, repeats=3)
        for name, fn, args, layer, shard in layers
    ]


def check_hybrid(options: TrainOptions, parallel: ParallelOptions, replicas: int) -> None:
    """Refuse ``--hybrid`` where it cannot run.

    Raises:
        ValueError: fewer than 2 replicas, model averaging, late-multiply or XLA.
    """
    if replicas < 2:
        raise ValueError("--hybrid needs 2 or more replicas (--devices N >= 2)")
    if parallel.mode != "sync" or parallel.late_multiply:
        raise ValueError("--hybrid needs --parallel sync and no --late-multiply")
    if options.jit_compile:
        # The sharded head's all-gathers and all-reduces sit inside the forward pass, and XLA
        # cannot compile a MirroredStrategy's cross-replica collectives.
        raise ValueError("--hybrid cannot be combined with --jit-compile")


def plan_hybrid(model, config: Seq2SeqConfig, options: TrainOptions, replicas: int):
    """Pluto's greedy placement of the seq2seq layers over ``replicas`` devices.

    Returns:
        ``(profiles, placement)``; the projection is sharded when its assignment is ``model``.

    Raises:
        pluto.hybrid.PlacementError: the layers fit under no placement (a ``ValueError``).
    """
    from pluto.hybrid import greedy_placement

    profiles = profile_layers(model, config, options)
    cap = options.device_memory_mb * 2**20 if options.device_memory_mb else float("inf")
    return profiles, greedy_placement(profiles, replicas, cap)


def hybrid_record(profiles, placement, sharded: bool, replicas: int) -> dict | None:
    """What ``training.json`` says about hybrid parallelism (None when it was off)."""
    if placement is None:
        return None
    from pluto.hybrid import Mode, step_bytes

    split = [a.mode is Mode.MODEL for a in placement.assignments]
    exchange = sum(a.bytes_mp for a, s in zip(placement.assignments, split, strict=True) if s)
    total = sum(p.weight_bytes for p in profiles)
    split_bytes = sum(p.weight_bytes for p, s in zip(profiles, split, strict=True) if s)
    per_step = step_bytes(total, split_bytes, exchange, replicas)
    cap = placement.memory_cap
    return {
        "sharded_layers": ["output_proj"] if sharded else [],
        "memory_cap_bytes": None if cap == float("inf") else int(cap),
        "memory_per_device_bytes": [int(x) for x in placement.memory],
        "bytes_per_step": {
            "sync": int(per_step.sync),
            "hybrid": int(per_step.hybrid),
            "exchange": int(per_step.exchange),
        },
        "rows_at": "per-replica batch x longest bucket",
        "placement": [a.to_dict() for a in placement.assignments],
        "profiles": [p.to_dict() for p in profiles],
    }


class Trainer:
    """The one training path for 1..N devices and one or many workers.

    The seq2seq model, built under ``strategy.scope()``, is trained by
    :class:`pluto.training.Trainer`: one device is a one-replica strategy, N devices all-reduce
    gradients every step (``sync``) or average weights every K local steps (``ma``, optionally
    BMUF). The learning rate follows Pluto's schedule (replica scaling, warm-up, plateau).

    Args:
        config: the network's shape (its ``vocab_size`` must match the vocabulary).
        options: loop settings.
        strategy: a ``tf.distribute.Strategy`` from ``pluto.strategy.make_strategy``; None builds
            one for ``parallel.devices`` devices (must then happen before TensorFlow starts, for
            more than one logical CPU device).
        parallel: how work is spread (default: one device).
    """

    def __init__(
        self,
        config: Seq2SeqConfig,
        options: TrainOptions,
        strategy=None,
        parallel: ParallelOptions | None = None,
    ) -> None:
        import keras

        from alime.seq2seq.model import build_model
        from pluto.averaging import BmufConfig
        from pluto.late_multiply import exchanged_kernels
        from pluto.local_optim import OptimizerConfig
        from pluto.strategy import StrategyConfig, make_strategy
        from pluto.training import TrainConfig
        from pluto.training import Trainer as PlutoTrainer

        self.config = config
        self.options = options
        self.parallel = parallel = parallel or ParallelOptions()
        self.strategy = strategy or make_strategy(StrategyConfig(devices=parallel.devices))
        keras.utils.set_random_seed(options.seed)
        with self.strategy.scope():
            # Variables created now, as mirrored variables.
            self.model = build_model(config, late_multiply=parallel.late_multiply)
        self.model.recompute = options.recompute
        self.head, self.hybrid_profiles, self.placement = self._plan_hybrid()
        self._objective = _Objective(self.model, options, self.head)
        self.late_plan = plan_late_multiply(self.model, config, options, self.replicas)
        if parallel.late_multiply:
            late_bytes = sum(c.bytes_late for c in self.late_plan if c.late)
            exchanged = exchanged_kernels(self.model)
        else:
            late_bytes, exchanged = 0.0, []
        if self.head is not None:  # the hybrid head's exchange replaces its all-reduce
            late_bytes += self.hybrid_record()["bytes_per_step"]["exchange"]
        self.pluto = PlutoTrainer(
            self._objective,
            self._objective.loss,
            self.strategy,
            TrainConfig(
                mode=parallel.mode,
                optimizer=OptimizerConfig(
                    kind=options.optimizer,
                    learning_rate=options.learning_rate,
                    momentum=options.momentum,
                    clipnorm=options.clip_norm,
                ),
                avg_period=parallel.avg_period,
                slot_policy=parallel.ma_slots,
                bmuf=BmufConfig(
                    local_momentum=0.9 if parallel.bmuf_local_lr else None,
                    local_lr=parallel.bmuf_local_lr or None,
                    momentum_warmup_blocks=parallel.bmuf_warmup_blocks,
                )
                if parallel.bmuf
                else None,
                lr_scaling=parallel.lr_scaling,
                lr_warmup_steps=parallel.lr_warmup_steps,
                plateau_patience=parallel.plateau_patience,
                plateau_factor=parallel.plateau_factor,
                adaptive_period=parallel.adaptive_period,
                jit_compile=options.jit_compile,
            ),
            exchanged=exchanged,
            exchanged_bytes=late_bytes,
            sharded=self.head.variables if self.head is not None else (),
        )
        self.last_contrastive = self.last_valid_contrastive = 0.0

    def _plan_hybrid(self):
        """``(head, profiles, placement)`` for ``options.hybrid`` (all None when off)."""
        if not self.options.hybrid:
            return None, None, None
        check_hybrid(self.options, self.parallel, self.replicas)
        from pluto.hybrid import Mode, ReplicaShardedSoftmax

        profiles, placement = plan_hybrid(self.model, self.config, self.options, self.replicas)
        mode = next(a.mode for a in placement.assignments if a.layer == "output_proj")
        head = None
        if mode is Mode.MODEL:
            proj = self.model.output_proj
            head = ReplicaShardedSoftmax(self.strategy, proj.kernel.numpy(), proj.bias.numpy())
        log.info("hybrid placement: output_proj %s-parallel", mode.value)
        return head, profiles, placement

    def assemble_head(self) -> None:
        """Write the hybrid shards into the model's own projection (a no-op without them):
        what is evaluated elsewhere, saved and served is the ordinary model."""
        if self.head is None:
            return
        kernel, bias = self.head.full()
        self.model.output_proj.kernel.assign(kernel)
        self.model.output_proj.bias.assign(bias)

    def hybrid_record(self) -> dict | None:
        """What ``training.json`` says about hybrid parallelism (None when it was off)."""
        return hybrid_record(
            self.hybrid_profiles, self.placement, self.head is not None, self.replicas
        )

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync

    @property
    def global_batch(self) -> int:
        """Examples per step over every replica (``options.batch_size`` is per replica)."""
        return self.options.batch_size * self.replicas

    @property
    def learning_rate(self) -> float:
        """The rate the optimizer applies now."""
        return self.pluto.learning_rate

    def _dataset(self, batches):
        if self.options.jit_compile:
            # XLA compiles once per input shape: with every batch at the full size, that is
            # once per length bucket (short last batches would add shapes every epoch).
            batches = [pad_rows(s, t, self.global_batch) for s, t in batches]
        return make_dataset(batches).map(lambda s, t: ((s, t), t))

    def train_epoch(self, batches, progress=None, on_step=None) -> float:
        """One pass over ``batches`` (built at the global batch size).

        Args:
            batches: (source, target) arrays from ``bucket_batches``.
            progress: a tqdm bar to advance, or None.
            on_step: called with (token loss, learning rate used) after every step.

        Returns:
            The mean training token loss; the contrastive term's mean is in ``last_contrastive``.
        """
        dataset = self.pluto.distribute(self._dataset(batches))
        nll = tokens = term = rows = 0.0
        for i, batch in enumerate(dataset):
            if self.options.max_steps and i >= self.options.max_steps:
                break
            self.pluto.step(batch)
            rate = self.pluto.learning_rate  # read back from the optimizer: what was applied
            m = self.pluto.last_metrics
            nll, tokens = nll + m["nll"], tokens + m["tokens"]
            term, rows = term + m["contrastive"], rows + m["batches"]
            if on_step is not None:
                on_step(m["nll"] / max(m["tokens"], 1.0), rate)
            if progress is not None:
                progress.update(1)
                extra = (
                    {"nce": f"{term / max(rows, 1.0):.3f}"}
                    if self.options.contrastive_weight
                    else {}
                )
                sent_mb = self.pluto.bytes_per_replica / 1e6
                progress.set_postfix(
                    loss=f"{nll / max(tokens, 1.0):.3f}", sent=f"{sent_mb:.0f}MB", **extra
                )
        self.pluto.sync_weights_for_save()  # validation and saving see the averaged model
        self.assemble_head()
        self.last_contrastive = term / max(rows, 1.0)
        return nll / max(tokens, 1.0)

    def evaluate(self, batches) -> float:
        """Mean token loss (negative log-likelihood) over ``batches``; the contrastive term's
        batch mean (no dropout) goes to ``last_valid_contrastive``."""
        self.pluto.sync_weights_for_save()
        self.pluto.evaluate(self._dataset(batches))
        m = self.pluto.last_eval_metrics
        self.last_valid_contrastive = m.get("contrastive", 0.0) / max(m.get("batches", 0.0), 1.0)
        return m.get("nll", 0.0) / max(m.get("tokens", 0.0), 1.0)

    def objective(self, val_loss: float) -> float:
        """What checkpoints and early stopping minimize: the validation token loss plus λ times
        the validation contrastive term (the training objective, measured on held-out data)."""
        return val_loss + self.options.contrastive_weight * self.last_valid_contrastive

    def on_validation(self, objective: float) -> float:
        """Feed the validation objective to the plateau rule; returns the learning rate now."""
        return self.pluto.on_validation(objective)

    def _over_workers(self, value: float, op: str) -> float:
        """``value`` summed or averaged over the workers (each worker's replicas hold the same
        value, so the mean over replicas is the mean over workers); itself with one worker."""
        import tensorflow as tf

        if self.parallel.workers <= 1:
            return value
        per_replica = self.strategy.run(lambda: tf.constant(float(value)))
        return float(self.strategy.reduce(getattr(tf.distribute.ReduceOp, op), per_replica, None))

    def any_worker(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any worker (a decision every worker must take alike, such
        as stopping on a wall-clock budget: a lone worker leaving would hang the others)."""
        # ReduceOp has SUM and MEAN only: any worker's 1 makes the sum positive.
        return self._over_workers(1.0 if flag else 0.0, "SUM") > 0

    def mean_over_workers(self, value: float) -> float:
        """``value`` averaged over the workers (measurements every worker must agree on)."""
        return self._over_workers(value, "MEAN")

    def save_checkpoint(self, directory: Path, state: dict) -> None:
        """Averaged weights, optimizer state (npz, no pickle) and loop state.

        With model averaging, replica 0's optimizer moments stand for every replica's.
        """
        self.pluto.sync_weights_for_save()
        self.assemble_head()
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_weights(str(directory / "last.weights.h5"))
        np.savez(directory / "optimizer.npz", **self.pluto.state_arrays())
        state = {**state, "pluto": self.pluto.state_dict()}
        (directory / "state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")

    def restore_checkpoint(self, directory: Path) -> dict:
        """Load :meth:`save_checkpoint`'s files; returns the loop state."""
        state = json.loads((directory / "state.json").read_text(encoding="utf-8"))
        if "pluto" not in state:
            raise ValueError(
                f"{directory}: checkpoint written before alime trained through one path "
                "(no optimizer state to continue from); train without --resume"
            )
        self.model.load_weights(str(directory / "last.weights.h5"))
        with np.load(directory / "optimizer.npz", allow_pickle=False) as arrays:
            self.pluto.load_state_arrays(dict(arrays))
        self.pluto.load_state_dict(state.pop("pluto"))
        return state


def select_batch_size(
    config: Seq2SeqConfig,
    options: TrainOptions,
    strategy,
    parallel: ParallelOptions,
    examples: Sequence[Example],
    candidates: Sequence[int],
) -> tuple[int, dict[int, float | None]]:
    """Pluto's pre-run batch-size selection for the seq2seq model (``--batch-size auto``).

    Each candidate per-replica batch trains a throwaway model for a few steps on batches of the
    most common length bucket (one shape, so tracing happens in the untimed warm-up);
    :func:`pluto.heuristics.select_batch_size` keeps the largest that fits and still raises
    throughput by more than 10%.

    Returns:
        The chosen per-replica batch size and the examples/s measured per candidate.
    """
    from pluto.heuristics import select_batch_size as select

    counts = Counter(bucket_index(len(e.source), len(e.target), config.buckets) for e in examples)
    bucket = counts.most_common(1)[0][0]
    pool = [
        e for e in examples if bucket_index(len(e.source), len(e.target), config.buckets) == bucket
    ]
    s_len, t_len = config.buckets[bucket]
    rng = np.random.default_rng(options.seed)
    measured: dict[int, float | None] = {}

    def measure(per_replica: int) -> float | None:
        probe = Trainer(
            config, dataclasses.replace(options, batch_size=per_replica), strategy, parallel
        )
        size = per_replica * probe.replicas
        batches = [
            pad_batch([pool[i] for i in rng.integers(0, len(pool), size)], s_len, t_len)
            for _ in range(7)
        ]
        dataset = iter(probe.pluto.distribute(probe._dataset(batches)))
        measured[per_replica] = None  # stays None when the batch does not fit (OOM raised)
        for _ in range(2):  # tracing and allocation, untimed
            probe.pluto.step(next(dataset))
        started = time.perf_counter()
        for _ in range(5):
            probe.pluto.step(next(dataset))
        # Every worker must pick the same batch size: decide on the workers' mean throughput.
        throughput = 5 * size / max(time.perf_counter() - started, 1e-9)
        measured[per_replica] = probe.mean_over_workers(throughput)
        log.info("batch %d per replica: %.0f examples/s", per_replica, measured[per_replica])
        return measured[per_replica]

    return select(measure, candidates), measured


def train(
    data_files: Sequence[str | Path],
    out_dir: str | Path,
    *,
    valid_files: Sequence[str | Path] = (),
    model_config: Seq2SeqConfig | None = None,
    options: TrainOptions | None = None,
    text_config: TextConfig | None = None,
    strategy=None,
    parallel: ParallelOptions | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train a model and write its model directory to ``out_dir``.

    One path for every topology: the model trains through :class:`Trainer` (Pluto) on
    ``strategy``'s replicas, one device being one replica. With several workers only the chief
    writes ``out_dir``; the others write to a temporary directory that is removed.

    Args:
        data_files: training files (E-commerce or question/answer TSV, detected per file).
        out_dir: the model directory to write.
        valid_files: validation files; when empty, ``options.valid_fraction`` of the training
            dialogues are held out (split by dialogue with ``options.seed``).
        model_config: the network's shape; its ``vocab_size`` is replaced by the real vocabulary
            size. Default: ``Seq2SeqConfig`` defaults.
        options: loop settings (``batch_size`` is per replica).
        text_config: the text pipeline to tokenize with (default: the app's default).
        strategy: a ``tf.distribute.Strategy`` (default: one built for ``parallel.devices``).
        parallel: how work is spread (default: one device, sync).
        resume: continue from ``out_dir/checkpoint`` (same vocabulary and config) if present.
        progress: show a tqdm progress bar.

    Returns:
        Where the model went, its best validation loss and how many epochs ran.
    """
    from alime.config import AppConfig
    from alime.seq2seq.distributed import output_dir, topology
    from pluto.strategy import StrategyConfig, make_strategy

    started = time.time()
    options = options or TrainOptions()
    parallel = parallel or ParallelOptions()
    set_threads(options.threads)
    # Built before any other TensorFlow work: logical CPU devices must be set up first.
    strategy = strategy or make_strategy(StrategyConfig(devices=parallel.devices))
    topo = topology(strategy)
    parallel = dataclasses.replace(parallel, workers=topo["workers"])
    text_config = text_config or AppConfig().text
    with output_dir(Path(out_dir), topo["chief"]) as out, _precision(options.mixed_precision):
        return _train(
            data_files,
            Path(out_dir),
            out,
            valid_files=valid_files,
            model_config=model_config,
            options=options,
            text_config=text_config,
            strategy=strategy,
            parallel=parallel,
            topo=topo,
            resume=resume,
            progress=progress and topo["chief"],
            started=started,
        )


@contextlib.contextmanager
def _precision(mixed: bool):
    """Keras's ``mixed_bfloat16`` policy for the run when ``mixed`` (set before any layer
    exists; the policy is process-wide, so the previous one comes back afterwards). The saved
    model is float32: the policy is not part of ``config.json``."""
    if not mixed:
        yield
        return
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(MIXED_POLICY)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _train(
    data_files,
    out_dir: Path,
    out: Path,
    *,
    valid_files,
    model_config,
    options: TrainOptions,
    text_config: TextConfig,
    strategy,
    parallel: ParallelOptions,
    topo: dict,
    resume: bool,
    progress: bool,
    started: float,
) -> TrainResult:
    """:func:`train` once the strategy and the directory this process writes (``out``) are
    known; ``out_dir`` is the run's model directory (a worker resumes from its checkpoint)."""
    import tensorflow as tf
    from tqdm import tqdm

    pipeline = TextPipeline(text_config)
    dialogues = _read(data_files)
    if valid_files:
        train_dialogues, valid_dialogues = dialogues, _read(valid_files)
    else:
        train_dialogues, valid_dialogues = split_dialogues(
            dialogues, options.valid_fraction, options.seed
        )
    if not train_dialogues or not valid_dialogues:
        raise ValueError(
            f"need training and validation dialogues, got {len(train_dialogues)} "
            f"and {len(valid_dialogues)}"
        )
    train_tok = tokenize_dialogues(train_dialogues, pipeline.tokenize)
    valid_tok = tokenize_dialogues(valid_dialogues, pipeline.tokenize)

    # Every worker resumes from the chief's checkpoint (a shared file system, see docs/pluto.md).
    ckpt_dir = out_dir / CHECKPOINT_DIR
    resuming = resume and (ckpt_dir / "state.json").is_file()
    if resume and not resuming:
        log.info("no checkpoint in %s: training from scratch", ckpt_dir)
    if resuming and options.hybrid:
        # The checkpoint keeps one replica's optimizer moments; the shards' differ per replica.
        raise ValueError("--resume is not supported with --hybrid; train without --resume")
    if resuming:
        vocab = Vocabulary.load(out_dir / VOCAB_FILE)
        config = Seq2SeqConfig.load(out_dir / CONFIG_FILE)
    else:
        # Built from the training split only, so validation words may be unknown, as at serving.
        vocab = Vocabulary.build(
            (seq for d in train_tok for seq in (*d.turns, d.response)),
            min_count=options.min_count,
            max_size=options.max_vocab,
        )
        base = model_config or Seq2SeqConfig(vocab_size=len(vocab))
        config = dataclasses.replace(base, vocab_size=len(vocab))

    train_ex = make_examples(train_tok, vocab, config, options.expand_turns)
    valid_ex = make_examples(valid_tok, vocab, config, expand_turns=False)
    batch_choice = None
    if options.auto_batch_sizes:
        chosen, measured = select_batch_size(
            config, options, strategy, parallel, train_ex, options.auto_batch_sizes
        )
        options = dataclasses.replace(options, batch_size=chosen)
        batch_choice = {"candidates": list(options.auto_batch_sizes), "examples_per_s": measured}
        log.info("batch size %d per replica (pre-run: %s)", chosen, measured)
    trainer = Trainer(config, options, strategy, parallel)
    batch_size = trainer.global_batch
    valid_batches = bucket_batches(valid_ex, config.buckets, batch_size)

    state = {
        "epoch": 0,
        "best_val_loss": None,
        "bad_epochs": 0,
        "history": [],
        "step": 0,
        "train_seconds": 0.0,
    }
    if resuming:
        state = trainer.restore_checkpoint(ckpt_dir)
        log.info("resumed from %s at epoch %d", ckpt_dir, state["epoch"])
    ckpt_dir = out / CHECKPOINT_DIR

    metadata = {
        "alime_version": alime.__version__,
        "data_files": [str(f) for f in data_files],
        "valid_files": [str(f) for f in valid_files],
        "split": {
            "by": "conversation (alime.seq2seq.data.group_conversations)",
            "seed": options.seed,
            "valid_fraction": 0.0 if valid_files else options.valid_fraction,
            "train_dialogues": len(train_dialogues),
            "valid_dialogues": len(valid_dialogues),
            # (file, 1-based line) of every held-out dialogue: evaluation must skip training data.
            "valid_dialogue_lines": None if valid_files else _lines_by_file(valid_dialogues),
        },
        "train_examples": len(train_ex),
        "valid_examples": len(valid_ex),
        "options": dataclasses.asdict(options),
        "text": text_config.as_metadata(),
        "tensorflow_version": tf.__version__,
        "precision": MIXED_POLICY if options.mixed_precision else "float32",
        "parallel": dataclasses.asdict(parallel),
        "topology": {k: v for k, v in topo.items() if k != "chief"},
        "batch": {
            "per_replica": options.batch_size,
            "global": batch_size,
            "auto": batch_choice,
        },
        "late_multiply": late_multiply_record(trainer.late_plan),
        "hybrid": trainer.hybrid_record(),
    }

    def record() -> dict:
        """What changes as the run goes: the schedule in force and the bytes sent."""
        return {
            "schedule": {
                **trainer.pluto.schedule.describe(),
                "learning_rates": [list(x) for x in trainer.pluto.learning_rates],
                "plateau_scale": trainer.pluto.schedule.scale,
            },
            "averaging": {
                "period": trainer.pluto.period,
                "averages": trainer.pluto.comm.allreduces,
                "adapted": [list(x) for x in trainer.pluto.adapted],
            }
            if parallel.mode == "ma"
            else None,
            "bytes_per_replica": trainer.pluto.bytes_per_replica,
        }

    out.mkdir(parents=True, exist_ok=True)
    writer = tf.summary.create_file_writer(str(out / "logs"))
    stopped_early = False
    if not resuming:
        save_model_dir(out, trainer.model, vocab)
    for epoch in range(state["epoch"], options.epochs):
        epoch_started = time.time()
        batches = bucket_batches(
            train_ex,
            config.buckets,
            batch_size,
            seed=options.seed + epoch,
            empty_source_rate=config.prior_dropout,
        )
        steps = min(len(batches), options.max_steps or len(batches))
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{options.epochs}", disable=not progress)

        def on_step(loss: float, rate: float) -> None:
            state["step"] += 1
            with writer.as_default():
                _scalar("train/loss", loss, state["step"])
                _scalar("learning_rate", rate, state["step"])

        train_loss = trainer.train_epoch(batches, bar, on_step)
        bar.close()
        val_loss = trainer.evaluate(valid_batches)
        objective = trainer.objective(val_loss)
        rate = trainer.on_validation(objective)  # the plateau rule sees every validation
        with writer.as_default():
            _scalar("valid/loss", val_loss, state["step"])
            _scalar("train/epoch_loss", train_loss, state["step"])
        writer.flush()
        state["train_seconds"] += time.time() - epoch_started
        state["epoch"] = epoch + 1
        state["history"].append(
            {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "learning_rate_next": rate,
                **(
                    {
                        "train_contrastive": trainer.last_contrastive,
                        "val_contrastive": trainer.last_valid_contrastive,
                        "val_objective": objective,
                    }
                    if options.contrastive_weight
                    else {}
                ),
            }
        )
        log.info("epoch %d: train loss %.4f, validation loss %.4f", epoch + 1, train_loss, val_loss)
        best = _best_objective(state, options.contrastive_weight)
        if best is None or objective < best:
            state["best_val_loss"] = val_loss
            state["best_objective"] = objective
            state["objective_weight"] = options.contrastive_weight
            state["best_epoch"] = epoch + 1
            state["bad_epochs"] = 0
            save_model_dir(out, trainer.model, vocab)
        else:
            state["bad_epochs"] += 1
        trainer.save_checkpoint(ckpt_dir, state)
        write_metadata(out, {**metadata, **record(), **_summary(state)})
        if state["bad_epochs"] >= options.patience:
            stopped_early = True
            log.info("early stop: no validation improvement for %d epochs", options.patience)
            break
        # Every worker must stop together: the budget decision is agreed by an all-reduce.
        if trainer.any_worker(
            out_of_time(options.max_minutes, started, time.time() - epoch_started)
        ):
            state["stopped_by_time"] = True
            log.info("stop: another epoch would pass the %.0f-minute budget", options.max_minutes)
            break
    writer.close()
    state["wall_seconds"] = time.time() - started
    final = {**metadata, **record(), **_summary(state), "stopped_early": stopped_early}
    write_metadata(out, final)
    return TrainResult(
        out_dir, float(state["best_val_loss"]), state["epoch"], stopped_early, topo["chief"]
    )


def _best_objective(state: dict, weight: float) -> float | None:
    """The best validation objective so far, or None when it was measured with another
    contrastive weight (a resumed run that changes the objective starts a new comparison)."""
    if state.get("objective_weight", 0.0) != weight:
        return None
    return state.get("best_objective", state["best_val_loss"])


def out_of_time(max_minutes: float, started: float, epoch_seconds: float) -> bool:
    """Whether one more epoch of ``epoch_seconds`` (e.g. the last one's) would end past the
    budget of ``max_minutes`` from ``started`` (a ``time.time()``; 0 minutes: no budget)."""
    return bool(max_minutes) and time.time() - started + epoch_seconds > 60 * max_minutes


def sequence_scores(log_probs, target):
    """The rerank score being trained: each row's mean log-probability over its non-PAD ids.

    Args:
        log_probs: per-token log-probabilities [batch, steps].
        target: the target ids [batch, steps] (PAD after the end).
    """
    import tensorflow as tf

    mask = tf.cast(tf.not_equal(target, PAD_ID), log_probs.dtype)
    return tf.reduce_sum(log_probs * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)


def in_batch_negatives(target, negatives: int):
    """Wrong answers for each row: the targets ``1..negatives`` rows further on (cyclically),
    stacked as ``[negatives * batch, steps]`` (block k holds every row's k-th negative).

    The cycle runs over the real rows only: all-PAD rows appended to fill a batch
    (``pad_rows``) neither give nor take negatives, so padding leaves the term unchanged.
    Without such rows this is ``tf.roll(target, -k)``.
    """
    import tensorflow as tf

    rows = tf.range(tf.shape(target)[0])
    real = tf.reduce_sum(tf.cast(tf.reduce_any(tf.not_equal(target, PAD_ID), axis=1), tf.int32))
    cycle = tf.maximum(real, 1)
    return tf.concat(
        [
            tf.gather(target, tf.where(rows < real, (rows + k) % cycle, rows))
            for k in range(1, negatives + 1)
        ],
        axis=0,
    )


def contrastive_loss(positive, negative, distinct, has_source, temperature: float = 1.0):
    """InfoNCE over each row's candidates: -log softmax of the true answer's score.

    Args:
        positive: the true answers' scores [batch].
        negative: the wrong answers' scores [batch, negatives].
        distinct: False where a "wrong" answer equals the true one [batch, negatives]; masked.
        has_source: False for rows with an empty source (the answer prior); left out.
        temperature: divides the scores.

    Returns:
        The mean over rows with a source and at least one distinct negative; 0 if there are none.
    """
    import tensorflow as tf

    scores = tf.concat([positive[:, None], negative], axis=1) / temperature
    keep = tf.concat([tf.ones_like(distinct[:, :1]), distinct], axis=1)
    scores = tf.where(keep, scores, tf.constant(-1e9, scores.dtype))
    per_row = tf.reduce_logsumexp(scores, axis=1) - scores[:, 0]
    rows = tf.cast(tf.logical_and(has_source, tf.reduce_any(distinct, axis=1)), scores.dtype)
    return tf.reduce_sum(per_row * rows) / tf.maximum(tf.reduce_sum(rows), 1.0)


def _lines_by_file(dialogues: Sequence[Dialogue]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for d in dialogues:
        out.setdefault(d.file, []).append(d.line)
    return out


def _summary(state: dict) -> dict:
    return {
        "epochs": state["epoch"],
        "best_epoch": state.get("best_epoch"),
        "best_val_loss": state["best_val_loss"],
        "history": state["history"],
        "train_seconds": round(state["train_seconds"], 1),
        **({"wall_seconds": round(state["wall_seconds"], 1)} if "wall_seconds" in state else {}),
        **({"stopped_by_time": True} if state.get("stopped_by_time") else {}),
    }
