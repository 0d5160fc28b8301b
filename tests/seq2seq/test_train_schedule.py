"""`alime train --devices 4 --lr-scaling linear`: the rate applied by the optimizer reaches 4x the
base rate after the warm-up and the plateau rule halves it on a flat validation curve.

A subprocess (the four logical CPU devices must be set before TensorFlow starts). The curve is
made flat for real: a base rate of 1e-7 cannot move the validation loss by 0.1% in an epoch.
The rates checked are the TensorBoard ``learning_rate`` scalars, which are read back from the
optimizer's variable after each step, so they are the rates the replicas applied.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.seq2seq.test_training import DIALOGUES

ROOT = Path(__file__).resolve().parents[2]
BASE = 1e-7


def scalars(log_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of every ``tag`` scalar in the TensorBoard event files of ``log_dir``."""
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    out = []
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.tag == tag:
                    out.append((event.step, float(tf.make_ndarray(value.tensor))))
    return sorted(out)


@pytest.mark.slow
def test_four_replicas_scale_warm_up_and_halve_on_a_plateau(tmp_path):
    data = tmp_path / "train.txt"
    data.write_text("\n".join(DIALOGUES * 3) + "\n", encoding="utf-8")
    out = tmp_path / "model"
    flags = {
        "--data": data,
        "--out": out,
        "--epochs": 3,
        "--batch-size": 1,
        "--learning-rate": BASE,
        "--embed-dim": 4,
        "--hidden-dim": 4,
        "--attention-dim": 4,
        "--valid-fraction": 0.2,
        "--devices": 4,
        "--parallel": "sync",
        "--lr-scaling": "linear",
        "--lr-warmup-steps": 2,
        "--plateau-patience": 1,
        "--patience": 5,
    }
    cmd = [sys.executable, "-m", "alime", "train", "--no-progress"]
    cmd += [str(x) for kv in flags.items() for x in kv]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]

    meta = json.loads((out / "training.json").read_text(encoding="utf-8"))
    assert meta["topology"]["replicas"] == 4 and meta["topology"]["workers"] == 1
    assert meta["batch"] == {"per_replica": 1, "global": 4, "auto": None}
    schedule = meta["schedule"]
    assert schedule["scaled_lr"] == pytest.approx(4 * BASE)
    assert schedule["plateau_scale"] == 0.25  # flat in epochs 2 and 3

    rates = scalars(out / "logs", "learning_rate")
    steps_per_epoch = len(rates) // 3
    assert len(rates) == 3 * steps_per_epoch and steps_per_epoch >= 4
    first, third = rates[:steps_per_epoch], rates[2 * steps_per_epoch :]
    # Warm-up over 2 steps from the base rate, then 4x the base (float32 variable).
    np.testing.assert_allclose(
        [r for _, r in first], [BASE, 2.5 * BASE] + [4 * BASE] * (steps_per_epoch - 2), rtol=1e-6
    )
    # Epoch 1 set the best loss, epoch 2 was flat (patience 1): epoch 3 runs at half the rate.
    np.testing.assert_allclose([r for _, r in third], 2 * BASE, rtol=1e-6)
    assert [h["learning_rate_next"] for h in meta["history"]] == pytest.approx(
        [4 * BASE, 2 * BASE, BASE]
    )
