"""Two local `alime train` processes under one TF_CONFIG (MultiWorkerMirroredStrategy over
localhost ports) train one model: the chief writes --out, the other worker writes nothing that
stays (its copy goes to a temporary directory that is removed)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pluto.test_pluto_multiworker import free_ports
from tests.seq2seq.test_training import DIALOGUES

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_two_workers_write_one_model_dir(tmp_path):
    data = tmp_path / "train.txt"
    data.write_text("\n".join(DIALOGUES * 3) + "\n", encoding="utf-8")
    out = tmp_path / "model"
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    cmd = [sys.executable, "-m", "alime", "train", "--no-progress", "--data", str(data)]
    cmd += ["--out", str(out), "--epochs", "2", "--batch-size", "2", "--valid-fraction", "0.2"]
    cmd += ["--embed-dim", "4", "--hidden-dim", "4", "--attention-dim", "4"]
    cmd += ["--parallel", "ma", "--avg-period", "2"]
    procs = []
    for index in range(2):
        scratch = tmp_path / f"tmp{index}"
        scratch.mkdir()
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps(tf_config),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "TMPDIR": str(scratch),
        }
        procs.append(
            subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    outputs = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=400)
            assert proc.returncode == 0, stderr[-3000:]
            outputs.append(stdout)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()  # reap it and close its pipes
    assert outputs[0].startswith(f"model written to {out}")
    assert outputs[1].startswith("worker done")
    # The chief's line and the worker's report the same (all-reduced) validation loss.
    assert outputs[0].split(": ", 1)[1] == outputs[1].split(": ", 1)[1]
    meta = json.loads((out / "training.json").read_text(encoding="utf-8"))
    assert meta["topology"]["workers"] == 2 and meta["topology"]["replicas"] == 2
    assert meta["topology"]["task"] == {"type": "worker", "index": 0}
    assert meta["parallel"]["workers"] == 2 and meta["parallel"]["mode"] == "ma"
    assert len(meta["history"]) == 2 and meta["bytes_per_replica"] > 0
    # One model directory; the non-chief's scratch copy is gone.
    assert [p.name for p in tmp_path.iterdir() if (p / "training.json").exists()] == ["model"]
    assert not list((tmp_path / "tmp1").glob("alime-train-worker-*"))  # (TF's autograph
    # files may stay in TMPDIR: they are TensorFlow's, not a model)
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == [
        "last.weights.h5",
        "optimizer.npz",
        "state.json",
    ]
