"""``alime train --devices N --parallel sync|ma``: the seq2seq model trained by Pluto.

An adapter with the interface of :class:`alime.seq2seq.training.Trainer` (``train_epoch``,
``evaluate``, checkpoints, ``model``) whose steps run through :class:`pluto.training.Trainer`:
gradient all-reduce every step (``sync``) or K local steps then a weight all-reduce (``ma``,
optionally with BMUF block momentum). ``--batch-size`` is per replica, so N replicas see N times
the examples per step. Every epoch ends with the replicas averaged, so validation, the best
checkpoint and the saved model are the same model on every replica.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from alime.seq2seq.config import Seq2SeqConfig
from alime.seq2seq.data import make_dataset
from alime.seq2seq.vocab import PAD_ID


@dataclass(frozen=True)
class ParallelOptions:
    """How ``alime train`` spreads work over devices (see docs/pluto.md)."""

    devices: int = 1
    mode: str = "sync"  # sync | ma
    avg_period: int = 8
    bmuf: bool = False
    lr_scaling: str = "linear"  # none | linear | sqrt
    lr_warmup_steps: int = 20
    adaptive_period: bool = False

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise ValueError("--devices must be >= 1")
        if self.mode not in ("sync", "ma"):
            raise ValueError(f"--parallel must be one of sync, ma; got {self.mode!r}")
        if self.avg_period < 1:
            raise ValueError("--avg-period must be >= 1")


def masked_token_loss(targets, logits):
    """Mean cross-entropy over the non-padding target tokens of one replica's batch."""
    import tensorflow as tf

    mask = tf.cast(tf.not_equal(targets, PAD_ID), tf.float32)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    return tf.reduce_sum(ce * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


class PlutoSeq2SeqTrainer:
    """The seq2seq model under a Pluto trainer (one code path for 1..N devices and workers)."""

    def __init__(self, config: Seq2SeqConfig, options, parallel: ParallelOptions, strategy) -> None:
        import keras

        from alime.seq2seq.model import build_model
        from pluto.averaging import BmufConfig
        from pluto.local_optim import OptimizerConfig
        from pluto.training import TrainConfig, Trainer

        if getattr(options, "contrastive_weight", 0.0):
            raise ValueError("--contrastive-weight is not supported with --devices/--parallel yet")
        self.config = config
        self.options = options
        self.parallel = parallel
        self.last_contrastive = self.last_valid_contrastive = 0.0  # no contrastive term here
        self.strategy = strategy
        keras.utils.set_random_seed(options.seed)
        with strategy.scope():
            self.model = build_model(config)  # variables created now, as mirrored variables
        self.pluto = Trainer(
            self.model,
            masked_token_loss,
            strategy,
            TrainConfig(
                mode=parallel.mode,
                optimizer=OptimizerConfig(
                    kind="adam", learning_rate=options.learning_rate, clipnorm=options.clip_norm
                ),
                avg_period=parallel.avg_period,
                bmuf=BmufConfig() if parallel.bmuf else None,
                lr_scaling=parallel.lr_scaling,
                lr_warmup_steps=parallel.lr_warmup_steps,
                adaptive_period=parallel.adaptive_period,
            ),
        )

    @property
    def global_batch(self) -> int:
        return self.options.batch_size * self.strategy.num_replicas_in_sync

    def _dataset(self, batches):
        from alime.seq2seq.model import shift_right

        return make_dataset(batches).map(lambda s, t: ((s, shift_right(t)), t))

    def train_epoch(self, batches, progress=None, on_step=None) -> float:
        """One pass over ``batches`` (built at the global batch size); returns the mean loss."""
        dataset = self.pluto.distribute(self._dataset(batches))
        total, steps = 0.0, 0
        for i, batch in enumerate(dataset):
            if self.options.max_steps and i >= self.options.max_steps:
                break
            loss = self.pluto.step(batch)
            total += loss
            steps += 1
            if on_step is not None:
                on_step(loss)
            if progress is not None:
                progress.update(1)
                sent_mb = self.pluto.bytes_per_replica / 1e6
                progress.set_postfix(loss=f"{total / steps:.3f}", sent=f"{sent_mb:.0f}MB")
        self.pluto.sync_weights_for_save()  # validation and saving see the averaged model
        return total / max(steps, 1)

    def evaluate(self, batches) -> float:
        self.pluto.sync_weights_for_save()
        return self.pluto.evaluate(self._dataset(batches))

    def objective(self, val_loss: float) -> float:
        """What checkpoints and early stopping minimize: the validation token loss."""
        return val_loss

    def save_checkpoint(self, directory: Path, state: dict) -> None:
        """Averaged weights and loop state (the replicas' local optimizer state restarts on
        resume: it is per replica and not part of the model)."""
        self.pluto.sync_weights_for_save()
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_weights(str(directory / "last.weights.h5"))
        state = {**state, "bytes_per_replica": self.pluto.bytes_per_replica}
        (directory / "state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")

    def restore_checkpoint(self, directory: Path) -> dict:
        self.model.load_weights(str(directory / "last.weights.h5"))
        return json.loads((directory / "state.json").read_text(encoding="utf-8"))
