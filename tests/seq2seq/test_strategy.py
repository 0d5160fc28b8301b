"""The train step under a two-replica MirroredStrategy (two logical CPU devices).

Runs in a subprocess because logical devices must be configured before TensorFlow initializes.
Opt-in (about 25 s of CPU): ``ALIME_SLOW_TESTS=1``.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent("""
    import math
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from alime.seq2seq.config import Seq2SeqConfig
    from alime.seq2seq.data import Example, bucket_batches
    from alime.seq2seq.training import Trainer, TrainOptions
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    config = Seq2SeqConfig(vocab_size=12, embed_dim=4, hidden_dim=4, attention_dim=4,
                           buckets=((4, 4),))
    trainer = Trainer(config, TrainOptions(learning_rate=0.05), strategy)
    examples = [Example((5, 6), (7, 8, 3)), Example((9,), (10, 3))] * 2
    batches = bucket_batches(examples, config.buckets, batch_size=4)
    before = trainer.evaluate(batches)
    for _ in range(10):
        trainer.train_epoch(batches)
    after = trainer.evaluate(batches)
    assert strategy.num_replicas_in_sync == 2
    assert math.isfinite(after) and after < before, (before, after)
    print("ok", before, after)
""")


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("ALIME_SLOW_TESTS"), reason="set ALIME_SLOW_TESTS=1")
def test_train_step_runs_under_mirrored_strategy():
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok")
