"""`--hybrid`: on 2 logical CPU devices the vocabulary projection, its softmax and loss are
sharded across the replicas and the rest is data-parallel; one step's loss, clipped gradients
and updated weights equal plain data-parallel training, and `alime train --hybrid` writes an
ordinary model directory with the placement and bytes in training.json."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alime.seq2seq.training import TrainOptions

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
BODY_END = -2  # the last two trainable variables: the projection (plain) or its shards (hybrid)


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV
    )


@pytest.fixture(scope="module")
def steps() -> dict:
    done = run(["-m", "tests.seq2seq._hybrid_check", "2"])
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("rows", ["even", "uneven"])
def test_hybrid_step_equals_plain_data_parallel(steps, rows):
    plain, hybrid = steps[rows]["plain"], steps[rows]["hybrid"]
    assert hybrid["head"] and not plain["head"]
    assert hybrid["paths"][BODY_END:] == ["hybrid_proj_kernel", "hybrid_proj_bias"]
    assert plain["paths"][BODY_END:] == ["output_proj/kernel", "output_proj/bias"]
    assert plain["paths"][:BODY_END] == hybrid["paths"][:BODY_END]
    # Each replica's own loss (its rows' token mean) is the same either way.
    np.testing.assert_allclose(plain["losses"], hybrid["losses"], atol=1e-5, rtol=0)
    # The clip was active (the plain step's gradient norm is over the 0.05 cap).
    assert min(plain["grads"][-1]) > 0.05 * 2
    # Body gradients: all-reduced, so equal on both replicas and to the plain ones.
    for name, p, h in zip(plain["paths"], plain["grads"], hybrid["grads"], strict=False):
        if name.startswith("output_proj"):
            break
        p, h = np.asarray(p), np.asarray(h)
        np.testing.assert_allclose(h[0], h[1], atol=1e-7, err_msg=name)
        np.testing.assert_allclose(p, h, atol=1e-5, rtol=0, err_msg=name)
    # The projection: each replica holds the gradient of its own slice only (never reduced);
    # put side by side they are the plain step's mean gradient.
    bounds = hybrid["bounds"]
    assert [hi - lo for lo, hi in bounds] == [8, 9]  # 17 words: the first shard is padded
    kernel, bias = (np.asarray(plain["grads"][i])[0] for i in (-3, -2))
    assert np.abs(kernel).max() > 1e-5
    for replica, (lo, hi) in enumerate(bounds):
        k = np.asarray(hybrid["grads"][-2][replica])
        b = np.asarray(hybrid["grads"][-1][replica])
        np.testing.assert_allclose(k[:, : hi - lo], kernel[:, lo:hi], atol=1e-5, rtol=0)
        np.testing.assert_allclose(b[: hi - lo], bias[lo:hi], atol=1e-5, rtol=0)
        assert not k[:, hi - lo :].any() and not b[hi - lo :].any()  # padding: no gradient


def test_hybrid_training_reaches_the_plain_weights(steps):
    plain, hybrid = steps["even"]["plain"], steps["even"]["hybrid"]
    assert plain["epoch_loss"] == pytest.approx(hybrid["epoch_loss"], abs=1e-5)
    # After two Adam steps, the model's own weights (the projection assembled from the shards)
    # equal plain data-parallel training's, and so does the evaluation through the shards.
    assert set(plain["weights"]) == set(hybrid["weights"])
    for name, value in plain["weights"].items():
        np.testing.assert_allclose(value, hybrid["weights"][name], atol=1e-5, err_msg=name)
    assert plain["valid_loss"] == pytest.approx(hybrid["valid_loss"], abs=1e-5)
    assert plain["valid_loss"] < plain["losses"][0]  # the two steps trained something


def test_hybrid_is_refused_where_it_cannot_run(tiny_config):
    from alime.seq2seq.distributed import ParallelOptions
    from alime.seq2seq.training import Trainer, check_hybrid

    hybrid, sync = TrainOptions(hybrid=True), ParallelOptions(devices=2)
    with pytest.raises(ValueError, match="--hybrid needs 2 or more replicas"):
        Trainer(tiny_config, hybrid)  # one device
    check_hybrid(hybrid, sync, 2)  # accepted
    with pytest.raises(ValueError, match="--hybrid cannot be combined with --jit-compile"):
        check_hybrid(TrainOptions(hybrid=True, jit_compile=True), sync, 2)
    with pytest.raises(ValueError, match="--hybrid needs --parallel sync"):
        check_hybrid(hybrid, ParallelOptions(devices=2, mode="ma"), 2)
    with pytest.raises(ValueError, match="no --late-multiply"):
        check_hybrid(hybrid, ParallelOptions(devices=2, late_multiply=True), 2)
    with pytest.raises(ValueError, match="--device-memory-mb must be >= 0"):
        TrainOptions(device_memory_mb=-1)


def _dialogues(words: int) -> list[str]:
    """Question-answer lines over ``words`` distinct words: a vocabulary big enough that the
    projection's all-reduce costs more bytes than its sharded exchange."""
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(words)]
    lines = []
    for i in range(0, words, 4):
        question = " ".join(vocab[i : i + 4])
        answer = " ".join(rng.choice(vocab, size=5))
        lines.append(f"{question}\t{answer}")
    return lines


def test_cli_hybrid_trains_and_saves_an_ordinary_model(tmp_path):
    from alime.seq2seq.model import InferenceModel
    from alime.seq2seq.model_dir import load_model_dir

    data = tmp_path / "train.tsv"
    data.write_text("\n".join(_dialogues(400)) + "\n", encoding="utf-8")
    out = tmp_path / "model"
    cmd = ["-m", "alime", "train", "--no-progress", "--data", str(data), "--out", str(out)]
    cmd += ["--epochs", "2", "--batch-size", "2", "--embed-dim", "8", "--hidden-dim", "16"]
    cmd += ["--attention-dim", "8", "--valid-fraction", "0.1", "--devices", "2"]
    cmd += ["--hybrid", "--learning-rate", "0.02"]
    done = run(cmd)
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads((out / "training.json").read_text(encoding="utf-8"))
    record = meta["hybrid"]
    assert meta["options"]["hybrid"] is True and meta["topology"]["replicas"] == 2
    assert record["sharded_layers"] == ["output_proj"] and record["memory_cap_bytes"] is None
    modes = {a["layer"]: a["mode"] for a in record["placement"]}
    assert modes.pop("output_proj") == "model" and set(modes.values()) == {"data"}
    proj = next(a for a in record["placement"] if a["layer"] == "output_proj")
    assert proj["bytes_mp"] < proj["bytes_dp"]  # why the placement split it
    per_step = record["bytes_per_step"]
    assert per_step["exchange"] == int(proj["bytes_mp"])
    assert per_step["hybrid"] < per_step["sync"]
    assert len(record["memory_per_device_bytes"]) == 2
    losses = [h["train_loss"] for h in meta["history"]]
    assert all(np.isfinite(losses)) and losses[1] < losses[0]

    # The saved model is an ordinary one: it loads and scores like any other.
    loaded = load_model_dir(out)
    assert loaded.model.output_proj.kernel.shape == (16, loaded.config.vocab_size)
    inference = InferenceModel(loaded.model)
    ids = [loaded.vocab.encode(["w0", "w1", "w2", "w3"])]
    scores = inference.answer_log_probs(ids[0], [loaded.vocab.encode(["w5", "w9"])])
    assert np.isfinite(scores[0]).all() and (scores[0] < 0).all()
