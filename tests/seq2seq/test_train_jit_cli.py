"""`alime train --jit-compile` trains end to end on 2 logical CPU devices (XLA around each
replica's forward and backward pass, the all-reduce outside it) and records the option."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.seq2seq.test_training import DIALOGUES

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def test_cli_jit_compile_trains_and_records_it(tmp_path):
    data = tmp_path / "train.txt"
    data.write_text("\n".join(DIALOGUES * 2) + "\n", encoding="utf-8")
    out = tmp_path / "model"
    cmd = [sys.executable, "-m", "alime", "train", "--no-progress", "--data", str(data)]
    cmd += ["--out", str(out), "--epochs", "2", "--batch-size", "4", "--embed-dim", "8"]
    cmd += ["--hidden-dim", "8", "--attention-dim", "8", "--valid-fraction", "0.2"]
    cmd += ["--learning-rate", "0.02", "--jit-compile", "--devices", "2"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads((out / "training.json").read_text(encoding="utf-8"))
    assert meta["options"]["jit_compile"] is True and meta["topology"]["replicas"] == 2
    losses = [h["train_loss"] for h in meta["history"]]
    assert all(np.isfinite(losses)) and losses[1] < losses[0]
