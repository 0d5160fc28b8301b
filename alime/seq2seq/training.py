"""Training loop: bucketed batches, Adam with gradient clipping, validation-based checkpoints.

The step runs through a ``tf.distribute.Strategy`` (the default, single-device one unless given),
so a multi-replica strategy (Pluto's model averaging) can be swapped in: the model and optimizer
are built under its scope and each batch goes through ``strategy.run``.

Files in the output directory: the model directory (``config.json``, ``vocab.json``,
``model.weights.h5`` holding the best weights by validation loss, ``training.json``), plus
``checkpoint/`` (the last epoch's weights, optimizer variables and loop state, for ``resume``) and
``logs/`` (TensorBoard scalars).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import alime
from alime.seq2seq.config import Seq2SeqConfig
from alime.seq2seq.data import (
    Dialogue,
    bucket_batches,
    make_dataset,
    make_examples,
    read_dialogues,
    split_dialogues,
    tokenize_dialogues,
)
from alime.seq2seq.model_dir import CONFIG_FILE, VOCAB_FILE, save_model_dir, write_metadata
from alime.seq2seq.vocab import PAD_ID, Vocabulary
from alime.text import TextConfig, TextPipeline

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"


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

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ValueError("epochs, batch_size and patience must be >= 1")
        if self.contrastive_weight < 0 or self.contrastive_negatives < 1:
            raise ValueError("contrastive_weight must be >= 0 and contrastive_negatives >= 1")
        if self.contrastive_temperature <= 0:
            raise ValueError("contrastive_temperature must be > 0")


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    best_val_loss: float
    epochs_run: int
    stopped_early: bool


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


class Trainer:
    """Owns the model, optimizer and compiled steps for one training run.

    Args:
        config: the network's shape (its ``vocab_size`` must match the vocabulary).
        options: loop settings.
        strategy: a ``tf.distribute.Strategy``; None uses the default strategy.
    """

    def __init__(self, config: Seq2SeqConfig, options: TrainOptions, strategy=None) -> None:
        import keras
        import tensorflow as tf

        from alime.seq2seq.model import build_model

        self.config = config
        self.options = options
        self.strategy = strategy or tf.distribute.get_strategy()
        keras.utils.set_random_seed(options.seed)
        with self.strategy.scope():
            self.model = build_model(config)
            self.optimizer = keras.optimizers.Adam(options.learning_rate)
            self.optimizer.build(self.model.trainable_variables)
        self._compiled: dict = {}
        self.last_contrastive = self.last_valid_contrastive = 0.0

    def _step(self, kind: str, dataset):
        """The traced train or eval step; its signature is the dataset's (None-sized) element
        spec, so every bucket shape shares one trace."""
        import tensorflow as tf

        if kind not in self._compiled:
            fn = self._distributed_train_step if kind == "train" else self._distributed_eval_step
            self._compiled[kind] = tf.function(fn, input_signature=list(dataset.element_spec))
        return self._compiled[kind]

    def _losses(self, source, target, training: bool = True):
        """Losses of one batch: summed token NLL, token count and the contrastive term.

        Returns:
            (nll, count, contrastive): the contrastive term is the mean over the rows that have
            a source and at least one distinct negative (0 when λ = 0 or none has).
        """
        import tensorflow as tf

        from alime.seq2seq.model import EncoderOutput, shift_right, target_log_probs

        enc = self.model.encode(source, training=training)
        log_probs = target_log_probs(
            self.model.decode(enc, shift_right(target), training=training), target
        )
        mask = tf.cast(tf.not_equal(target, PAD_ID), tf.float32)
        nll, count = -tf.reduce_sum(log_probs * mask), tf.reduce_sum(mask)
        if not self.options.contrastive_weight:
            return nll, count, tf.constant(0.0)
        negatives = self.options.contrastive_negatives
        wrong = in_batch_negatives(target, negatives)
        tiled = EncoderOutput(
            *(
                tf.tile(t, [negatives] + [1] * (len(t.shape) - 1))
                for t in (enc.values, enc.keys, enc.mask, enc.state)
            )
        )
        wrong_log_probs = target_log_probs(
            self.model.decode(tiled, shift_right(wrong), training=training), wrong
        )
        positive = sequence_scores(log_probs, target)
        negative = tf.transpose(
            tf.reshape(sequence_scores(wrong_log_probs, wrong), [negatives, -1])
        )
        distinct = tf.transpose(
            tf.reshape(
                tf.reduce_any(tf.not_equal(wrong, tf.tile(target, [negatives, 1])), axis=1),
                [negatives, -1],
            )
        )
        has_source = tf.reduce_any(tf.not_equal(source, PAD_ID), axis=1)
        term = contrastive_loss(
            positive, negative, distinct, has_source, self.options.contrastive_temperature
        )
        return nll, count, term

    def _replica_train_step(self, source, target):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            nll, count, term = self._losses(source, target)
            loss = nll / tf.maximum(count, 1.0) + self.options.contrastive_weight * term
            # Keras 3 optimizers sum gradients over replicas: divide by the replica count.
            loss = loss / self.strategy.num_replicas_in_sync
        variables = self.model.trainable_variables
        grads = tape.gradient(loss, variables)
        grads, _ = tf.clip_by_global_norm(grads, self.options.clip_norm)
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        return nll, count, term

    def _distributed_train_step(self, source, target):
        import tensorflow as tf

        nll, count, term = self.strategy.run(self._replica_train_step, args=(source, target))
        sum_, mean = tf.distribute.ReduceOp.SUM, tf.distribute.ReduceOp.MEAN
        return (
            self.strategy.reduce(sum_, nll, axis=None),
            self.strategy.reduce(sum_, count, axis=None),
            self.strategy.reduce(mean, term, axis=None),
        )

    def _distributed_eval_step(self, source, target):
        import tensorflow as tf

        nll, count, term = self.strategy.run(
            lambda s, t: self._losses(s, t, training=False), args=(source, target)
        )
        sum_, mean = tf.distribute.ReduceOp.SUM, tf.distribute.ReduceOp.MEAN
        return (
            self.strategy.reduce(sum_, nll, axis=None),
            self.strategy.reduce(sum_, count, axis=None),
            self.strategy.reduce(mean, term, axis=None),
        )

    def train_epoch(self, batches, progress=None, on_step=None) -> float:
        """One pass over ``batches``; returns the mean training token loss (the contrastive
        term's batch mean is in ``last_contrastive``)."""
        dataset = self.strategy.experimental_distribute_dataset(make_dataset(batches))
        step = self._step("train", dataset)
        total = tokens = term_sum = 0.0
        steps = 0
        for i, (source, target) in enumerate(dataset):
            if self.options.max_steps and i >= self.options.max_steps:
                break
            nll, count, term = (float(x) for x in step(source, target))
            total += nll
            tokens += count
            term_sum += term
            steps += 1
            if on_step is not None:
                on_step(nll / max(count, 1.0))
            if progress is not None:
                progress.update(1)
                progress.set_postfix(
                    loss=f"{total / max(tokens, 1.0):.3f}",
                    **(
                        {"nce": f"{term_sum / steps:.3f}"}
                        if self.options.contrastive_weight
                        else {}
                    ),
                )
        self.last_contrastive = term_sum / max(steps, 1)
        return total / max(tokens, 1.0)

    def evaluate(self, batches) -> float:
        """Mean token loss (negative log-likelihood) over ``batches``; the contrastive term's
        batch mean (no dropout) goes to ``last_valid_contrastive``."""
        dataset = self.strategy.experimental_distribute_dataset(make_dataset(batches))
        step = self._step("eval", dataset)
        total = tokens = term_sum = 0.0
        steps = 0
        for source, target in dataset:
            nll, count, term = (float(x) for x in step(source, target))
            total += nll
            tokens += count
            term_sum += term
            steps += 1
        self.last_valid_contrastive = term_sum / max(steps, 1)
        return total / max(tokens, 1.0)

    def objective(self, val_loss: float) -> float:
        """What checkpoints and early stopping minimize: the validation token loss plus λ times
        the validation contrastive term (the training objective, measured on held-out data)."""
        return val_loss + self.options.contrastive_weight * self.last_valid_contrastive

    def save_checkpoint(self, directory: Path, state: dict) -> None:
        """Last-epoch weights, optimizer variables (npz, no pickle) and loop state."""
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_weights(str(directory / "last.weights.h5"))
        arrays = {f"v{i}": np.asarray(v) for i, v in enumerate(self.optimizer.variables)}
        np.savez(directory / "optimizer.npz", **arrays)
        (directory / "state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")

    def restore_checkpoint(self, directory: Path) -> dict:
        self.model.load_weights(str(directory / "last.weights.h5"))
        with np.load(directory / "optimizer.npz", allow_pickle=False) as arrays:
            for i, var in enumerate(self.optimizer.variables):
                var.assign(arrays[f"v{i}"])
        return json.loads((directory / "state.json").read_text(encoding="utf-8"))


def train(
    data_files: Sequence[str | Path],
    out_dir: str | Path,
    *,
    valid_files: Sequence[str | Path] = (),
    model_config: Seq2SeqConfig | None = None,
    options: TrainOptions | None = None,
    text_config: TextConfig | None = None,
    strategy=None,
    parallel=None,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train a model and write its model directory to ``out_dir``.

    Args:
        data_files: training files (E-commerce or question/answer TSV, detected per file).
        out_dir: the model directory to write.
        valid_files: validation files; when empty, ``options.valid_fraction`` of the training
            dialogues are held out (split by dialogue with ``options.seed``).
        model_config: the network's shape; its ``vocab_size`` is replaced by the real vocabulary
            size. Default: ``Seq2SeqConfig`` defaults.
        options: loop settings.
        text_config: the text pipeline to tokenize with (default: the app's default).
        strategy: a ``tf.distribute.Strategy`` (default: the current/default strategy).
        parallel: ``ParallelOptions`` to train through Pluto (sync all-reduce or model
            averaging over ``strategy``'s replicas); None: the plain single-strategy loop.
        resume: continue from ``out_dir/checkpoint`` (same vocabulary and config) if present.
        progress: show a tqdm progress bar.

    Returns:
        Where the model went, its best validation loss and how many epochs ran.
    """
    import tensorflow as tf
    from tqdm import tqdm

    from alime.config import AppConfig

    started = time.time()
    options = options or TrainOptions()
    set_threads(options.threads)
    out = Path(out_dir)
    ckpt_dir = out / CHECKPOINT_DIR
    text_config = text_config or AppConfig().text
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

    resuming = resume and (ckpt_dir / "state.json").is_file()
    if resume and not resuming:
        log.info("no checkpoint in %s: training from scratch", ckpt_dir)
    if resuming:
        vocab = Vocabulary.load(out / VOCAB_FILE)
        config = Seq2SeqConfig.load(out / CONFIG_FILE)
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
    if parallel is not None:
        from alime.seq2seq.distributed import PlutoSeq2SeqTrainer

        trainer = PlutoSeq2SeqTrainer(config, options, parallel, strategy)
        batch_size = trainer.global_batch  # --batch-size is per replica
    else:
        trainer = Trainer(config, options, strategy)
        batch_size = options.batch_size
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
        "parallel": dataclasses.asdict(parallel) if parallel is not None else None,
    }

    writer = tf.summary.create_file_writer(str(out / "logs"))
    stopped_early = False
    out.mkdir(parents=True, exist_ok=True)
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

        def on_step(loss: float) -> None:
            state["step"] += 1
            with writer.as_default():
                _scalar("train/loss", loss, state["step"])

        train_loss = trainer.train_epoch(batches, bar, on_step)
        bar.close()
        val_loss = trainer.evaluate(valid_batches)
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
                **(
                    {
                        "train_contrastive": trainer.last_contrastive,
                        "val_contrastive": trainer.last_valid_contrastive,
                        "val_objective": trainer.objective(val_loss),
                    }
                    if options.contrastive_weight
                    else {}
                ),
            }
        )
        log.info("epoch %d: train loss %.4f, validation loss %.4f", epoch + 1, train_loss, val_loss)
        best = _best_objective(state, options.contrastive_weight)
        if best is None or trainer.objective(val_loss) < best:
            state["best_val_loss"] = val_loss
            state["best_objective"] = trainer.objective(val_loss)
            state["objective_weight"] = options.contrastive_weight
            state["best_epoch"] = epoch + 1
            state["bad_epochs"] = 0
            save_model_dir(out, trainer.model, vocab)
        else:
            state["bad_epochs"] += 1
        trainer.save_checkpoint(ckpt_dir, state)
        write_metadata(out, {**metadata, **_summary(state)})
        if state["bad_epochs"] >= options.patience:
            stopped_early = True
            log.info("early stop: no validation improvement for %d epochs", options.patience)
            break
        if out_of_time(options.max_minutes, started, time.time() - epoch_started):
            state["stopped_by_time"] = True
            log.info("stop: another epoch would pass the %.0f-minute budget", options.max_minutes)
            break
    writer.close()
    state["wall_seconds"] = time.time() - started
    write_metadata(out, {**metadata, **_summary(state), "stopped_early": stopped_early})
    return TrainResult(out, float(state["best_val_loss"]), state["epoch"], stopped_early)


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
    stacked as ``[negatives * batch, steps]`` (block k holds every row's k-th negative)."""
    import tensorflow as tf

    return tf.concat([tf.roll(target, shift=-k, axis=0) for k in range(1, negatives + 1)], axis=0)


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
