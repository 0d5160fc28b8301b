"""`--late-multiply`: on 2 logical CPU devices the Dense layers Pluto's cost model picks take the
late-multiply path inside `alime train`'s sync step, the averaged gradients equal the plain
all-reduce's, and training.json records the chosen layers and the bytes saved."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alime.seq2seq.distributed import ParallelOptions
from tests.seq2seq.test_training import DIALOGUES

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV
    )


@pytest.fixture(scope="module")
def steps() -> dict:
    done = run(["-m", "tests.seq2seq._late_multiply_check", "2"])
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_cost_model_sends_some_layers_late(steps):
    late = steps["even"]["late"]
    # Batch 4 per replica, 4 steps, hidden 32, vocabulary 16 (see the check script).
    assert late["late_layers"] == ["bridge", "combine"]
    assert sorted(late["plain_layers"]) == ["key_proj", "output_proj", "query_proj"]
    assert sorted(p.rsplit("/", 2)[-2] for p in late["exchanged"]) == ["bridge", "combine"]
    assert steps["even"]["plain"]["exchanged"] == []


@pytest.mark.parametrize("shards", ["even", "uneven"])
def test_late_step_gradients_equal_the_plain_all_reduce(steps, shards):
    plain, late = steps[shards]["plain"], steps[shards]["late"]
    assert plain["names"] == late["names"]
    for name, p, q in zip(plain["names"], plain["grads"], late["grads"], strict=True):
        p, q = np.asarray(p), np.asarray(q)
        assert p.shape[0] == q.shape[0] == 2, name
        # Averaged: the same on both replicas, and the same on both paths.
        np.testing.assert_allclose(p[0], p[1], atol=1e-6, err_msg=name)
        np.testing.assert_allclose(q[0], q[1], atol=1e-6, err_msg=name)
        np.testing.assert_allclose(p, q, atol=1e-5, rtol=0, err_msg=name)
    combine = next(i for i, n in enumerate(late["names"]) if n.endswith("combine/kernel"))
    assert np.abs(np.asarray(late["grads"][combine])).max() > 1e-4


def test_late_multiply_needs_sync():
    with pytest.raises(ValueError, match="--late-multiply needs --parallel sync"):
        ParallelOptions(devices=2, mode="ma", late_multiply=True)


def test_cli_records_late_layers_and_bytes_saved(tmp_path):
    data = tmp_path / "train.txt"
    data.write_text("\n".join(DIALOGUES * 3) + "\n", encoding="utf-8")
    out = tmp_path / "model"
    cmd = ["-m", "alime", "train", "--no-progress", "--data", str(data), "--out", str(out)]
    cmd += ["--epochs", "2", "--batch-size", "2", "--embed-dim", "8", "--hidden-dim", "32"]
    cmd += ["--attention-dim", "32", "--valid-fraction", "0.2", "--devices", "2"]
    cmd += ["--late-multiply", "--learning-rate", "0.02"]
    done = run(cmd)
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads((out / "training.json").read_text(encoding="utf-8"))
    assert meta["parallel"]["late_multiply"] is True and meta["topology"]["replicas"] == 2
    record = meta["late_multiply"]
    layers = {layer["name"]: layer for layer in record["layers"]}
    assert set(layers) == {"bridge", "key_proj", "query_proj", "combine", "output_proj"}
    assert record["late_layers"] == [n for n, c in layers.items() if c["late"]]
    assert "bridge" in record["late_layers"]  # 2 rows per replica against a 32 x 32 kernel
    for c in layers.values():
        assert c["late"] == (c["bytes_late"] < c["bytes_plain"])
    saved = sum(c["bytes_plain"] - c["bytes_late"] for c in layers.values() if c["late"])
    assert saved > 0 and abs(record["bytes_saved_per_step"] - saved) <= 1
    assert record["bytes_chosen_per_step"] < record["bytes_plain_per_step"]
    losses = [h["train_loss"] for h in meta["history"]]
    assert all(np.isfinite(losses)) and losses[1] < losses[0]
