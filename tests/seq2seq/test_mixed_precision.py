"""`alime train --mixed-precision` (bfloat16 compute, float32 weights) trains to finite, falling
losses and saves a float32 model that loads and scores like any other (a subprocess: the Keras
policy is process-wide)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.seq2seq.test_training import DIALOGUES

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_mixed_precision_trains_and_saves_float32(tmp_path):
    data = tmp_path / "train.txt"
    data.write_text("\n".join(DIALOGUES * 3) + "\n", encoding="utf-8")
    out = tmp_path / "model"
    cmd = [sys.executable, "-m", "alime", "train", "--no-progress", "--mixed-precision"]
    cmd += ["--data", str(data), "--out", str(out), "--epochs", "2", "--batch-size", "4"]
    cmd += ["--embed-dim", "8", "--hidden-dim", "8", "--attention-dim", "8"]
    cmd += ["--learning-rate", "0.01", "--valid-fraction", "0.2"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads((out / "training.json").read_text(encoding="utf-8"))
    assert meta["precision"] == "mixed_bfloat16"
    losses = [h["train_loss"] for h in meta["history"]]
    assert all(np.isfinite(losses)) and losses[1] < losses[0]
    assert np.isfinite(meta["best_val_loss"])

    from alime.seq2seq.model_dir import load_model_dir

    loaded = load_model_dir(out)  # this process keeps the float32 policy
    assert {w.dtype for w in loaded.model.get_weights()} == {np.dtype("float32")}
    lp = loaded.inference.answer_log_probs([5, 6], [[7, 3], [8, 3]])
    assert all(np.isfinite(x).all() and (x < 0).all() for x in lp)
