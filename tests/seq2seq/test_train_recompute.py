"""`--recompute`: the encoder and decoder blocks under ``pluto.recompute.checkpoint`` give the
same gradients as the plain step, really run twice in the backward pass, and `alime train
--recompute` trains end to end."""

import dataclasses
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from alime.seq2seq.data import Example, bucket_batches
from alime.seq2seq.training import TrainOptions, seq2seq_losses
from alime.seq2seq.vocab import EOS_ID
from tests.seq2seq.test_training import DIALOGUES

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _gradients(model, source, target, options):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        nll, count, term = seq2seq_losses(model, source, target, options, training=True)
        loss = nll / count + options.contrastive_weight * term
    return [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, model.trainable_variables)]


def _counting(layer) -> list[int]:
    """Count the calls of ``layer`` (a recomputed block runs again in the backward pass)."""
    calls = [0]
    call = layer.call

    @functools.wraps(call)
    def counted(*args, **kwargs):
        calls[0] += 1
        return call(*args, **kwargs)

    layer.call = counted
    return calls


def test_recomputed_step_has_the_plain_gradients(tiny_config):
    import keras

    from alime.seq2seq.model import build_model

    # No dropout: two separate forward passes must see the same network.
    config = dataclasses.replace(tiny_config, dropout=0.0)
    keras.utils.set_random_seed(7)
    model = build_model(config)
    examples = [
        Example((5, 6), (7, 8, EOS_ID)),
        Example((), (10, EOS_ID)),  # the answer prior's empty source
        Example((11, 12, 13), (14, 15, 16, EOS_ID)),
        Example((6,), (5, EOS_ID)),
    ]
    (source, target), *_ = bucket_batches(examples, config.buckets, batch_size=4)
    # The contrastive term decodes a second time, through the same checkpointed block.
    options = TrainOptions(contrastive_weight=0.5, contrastive_negatives=2)
    encoder_calls, combine_calls = _counting(model.encoder_rnn), _counting(model.combine)

    plain = _gradients(model, source, target, options)
    plain_calls = encoder_calls[0], combine_calls[0]
    model.recompute = True
    recomputed = _gradients(model, source, target, options)
    recomputed_calls = encoder_calls[0] - plain_calls[0], combine_calls[0] - plain_calls[1]

    assert plain_calls == (1, 2)
    # Each block ran once forward and once more when its gradient was needed.
    assert recomputed_calls == (2, 4)
    assert len(plain) == len(recomputed) == len(model.trainable_variables)
    for a, b in zip(plain, recomputed, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert any(np.abs(g).max() > 0 for g in plain)


def test_cli_trains_with_recompute(tmp_path):
    data = tmp_path / "train.txt"
    data.write_text("\n".join(DIALOGUES * 2) + "\n", encoding="utf-8")
    out = tmp_path / "model"
    cmd = [sys.executable, "-m", "alime", "train", "--no-progress", "--data", str(data)]
    cmd += ["--out", str(out), "--epochs", "2", "--batch-size", "4", "--recompute"]
    cmd += ["--embed-dim", "8", "--hidden-dim", "8", "--attention-dim", "8"]
    cmd += ["--valid-fraction", "0.2", "--learning-rate", "0.02"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads((out / "training.json").read_text(encoding="utf-8"))
    assert meta["options"]["recompute"] is True
    losses = [h["train_loss"] for h in meta["history"]]
    assert len(losses) == 2 and all(np.isfinite(losses)) and losses[1] < losses[0]
    assert (out / "model.weights.h5").is_file()
