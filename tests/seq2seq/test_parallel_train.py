"""`alime train --devices 2 --parallel ma`: the CLI trains through Pluto on two logical CPU
devices, with the contrastive term and the adaptive averaging period, resumes, and writes one
loadable model (subprocesses: devices are set before TF initializes)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pluto.heuristics import AdaptivePeriod
from tests.seq2seq.test_training import DIALOGUES

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def alime_train(data: Path, out: Path, epochs: int, *extra: str) -> None:
    cmd = [sys.executable, "-m", "alime", "train", "--no-progress", "--data", str(data)]
    cmd += ["--out", str(out), "--epochs", str(epochs), "--batch-size", "4"]
    cmd += ["--embed-dim", "8", "--hidden-dim", "8", "--attention-dim", "8"]
    cmd += ["--valid-fraction", "0.2", "--devices", "2", "--parallel", "ma", "--avg-period", "2"]
    cmd += ["--adaptive-period", "--contrastive-weight", "0.5", *extra]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]


def loop_state(out: Path) -> dict:
    return json.loads((out / "checkpoint" / "state.json").read_text(encoding="utf-8"))["pluto"]


@pytest.mark.slow
def test_cli_trains_on_two_logical_devices_and_resumes(tmp_path):
    data = tmp_path / "train.txt"
    data.write_text("\n".join(DIALOGUES * 3) + "\n", encoding="utf-8")
    out = tmp_path / "model"
    alime_train(data, out, 1)
    first = loop_state(out)
    alime_train(data, out, 2, "--resume")
    second = loop_state(out)

    meta = json.loads((out / "training.json").read_text(encoding="utf-8"))
    assert meta["parallel"]["devices"] == 2 and meta["parallel"]["mode"] == "ma"
    assert meta["topology"]["replicas"] == 2
    assert [h["epoch"] for h in meta["history"]] == [1, 2]
    losses = [h["train_loss"] for h in meta["history"]]
    assert all(np.isfinite(losses)) and losses[1] < losses[0]
    # The contrastive term trained on both replicas.
    assert all(
        np.isfinite(h["train_contrastive"]) and h["train_contrastive"] > 0 for h in meta["history"]
    )
    # The resumed run continued the step count, the bytes and the schedule.
    assert second["global_step"] == 2 * first["global_step"] > 0
    assert second["bytes_per_replica"] > first["bytes_per_replica"] > 0
    assert meta["schedule"]["learning_rates"][0] == [0, meta["schedule"]["base_lr"]]
    # The averaging period followed the measured drift by Pluto's rule, across the resume.
    averaging = meta["averaging"]
    period = AdaptivePeriod(2, 1, 64)
    replay = [period.update(drift) for _, drift, _ in averaging["adapted"]]
    assert replay == [k for _, _, k in averaging["adapted"]] and len(replay) >= 2
    assert averaging["period"] == replay[-1] == second["period"]

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
        env=ENV,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert float(loaded.stdout.strip()) < 0
