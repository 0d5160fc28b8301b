"""`alime train --devices 2 --parallel ma`: the CLI trains through Pluto on two logical CPU
devices and writes one loadable model (a subprocess: devices are set before TF initializes)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.seq2seq.test_training import DIALOGUES

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ma"])
def test_cli_trains_on_two_logical_devices(tmp_path, mode):
    data = tmp_path / "train.txt"
    data.write_text("\n".join(DIALOGUES * 3) + "\n", encoding="utf-8")
    out = tmp_path / "model"
    cmd = [
        sys.executable,
        "-m",
        "alime",
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--embed-dim",
        "8",
        "--hidden-dim",
        "8",
        "--attention-dim",
        "8",
        "--valid-fraction",
        "0.2",
        "--no-progress",
        "--devices",
        "2",
        "--parallel",
        mode,
        "--avg-period",
        "2",
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads((out / "training.json").read_text(encoding="utf-8"))
    assert meta["parallel"]["devices"] == 2 and meta["parallel"]["mode"] == mode
    assert len(meta["history"]) == 2
    losses = [h["train_loss"] for h in meta["history"]]
    assert all(loss == loss for loss in losses) and losses[1] < losses[0]
    check = (
        "from alime.seq2seq.model_dir import load_model_dir; import sys, numpy as np;"
        "m = load_model_dir(sys.argv[1]);"
        "lp = m.inference.answer_log_probs(np.array([5, 6], np.int32), [[7, 3]]);"
        "print(float(np.asarray(lp).sum()))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", check, str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert float(loaded.stdout.strip()) < 0
