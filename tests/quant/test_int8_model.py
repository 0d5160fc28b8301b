"""int8 model directories: fidelity to fp32, exact reloads, the numpy forward pass, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from alime.seq2seq.vocab import EOS_ID
from pluto.int8_head import onnxruntime_available
from tests.seq2seq.conftest import SplitPipeline

SOURCES = [[5, 6, 7], [8], [9, 10, 11, 12, 13], []]
TARGETS = [[5, 7, EOS_ID], [6, EOS_ID], [9, 10, 11, 12, 13, 14, EOS_ID]]
BACKENDS = ["numpy"] + (["onnxruntime"] if onnxruntime_available() else [])


def _load(path, backend=None):
    from alime.seq2seq.model_dir import load_model_dir

    return load_model_dir(path, int8_backend=backend)


def test_directory_layout_and_marker(fp32_dir, int8_dir):
    marker = json.loads((int8_dir / "quantization.json").read_text(encoding="utf-8"))
    int8 = {t["name"] for t in marker["tensors"] if t["dtype"] == "int8"}
    assert {
        "embedding/embeddings",
        "encoder/gru_cell/kernel",
        "decoder/gru_cell/recurrent_kernel",
        "attention/query_proj/kernel",
        "key_proj/kernel",
        "output_proj/kernel",
    } <= int8
    assert all(t["dtype"] == "float32" for t in marker["tensors"] if t["name"].endswith("bias"))
    for name in ("thresholds.json", "stacking.json"):  # tuned on the fp32 model's scale
        assert (int8_dir / name).read_text() == (fp32_dir / name).read_text()
    assert not (int8_dir / "model.weights.h5").exists()
    assert not list(int8_dir.rglob("*.pkl"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_int8_log_probs_close_to_fp32(fp32_dir, int8_dir, backend):
    fp32, int8 = _load(fp32_dir), _load(int8_dir, backend)
    for source in SOURCES:
        ref = fp32.inference.answer_log_probs(source, TARGETS)
        got = int8.inference.answer_log_probs(source, TARGETS)
        for r, g in zip(ref, got, strict=True):
            assert r.shape == g.shape
            np.testing.assert_allclose(g, r, atol=0.05)


def test_numpy_forward_matches_tensorflow_exactly_on_fp32_weights(fp32_dir):
    """The int8 runtime's network, given the fp32 weights, reproduces the Keras model."""
    from alime.seq2seq.numpy_forward import NumpySeq2Seq
    from alime.seq2seq.quantized import weight_name

    fp32 = _load(fp32_dir)
    weights = {weight_name(v): v.numpy() for v in fp32.model.weights}
    net = NumpySeq2Seq(weights)
    out_w, out_b = weights["output_proj/kernel"], weights["output_proj/bias"]
    src = np.array([[5, 6, 7, 0], [8, 9, 0, 0]])
    tgt = np.array([[5, 7, EOS_ID], [6, EOS_ID, 0]])
    enc = net.encode(src)
    states = net.decoder_states(tgt, enc.state)
    logits = net.combine(states, net.attend(states, enc)) @ out_w + out_b
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_probs, tgt[..., None], -1)[..., 0]
    ref = fp32.inference.batch_log_probs(src, tgt)
    real = tgt != 0
    np.testing.assert_allclose(picked[real], ref[real], atol=1e-5)
    # Skipping finished rows (sorted by decreasing length) changes nothing at real positions.
    skipped = net.decoder_states(tgt, enc.state, lengths=real.sum(1))
    np.testing.assert_allclose(skipped[real], states[real], atol=1e-6)
    assert not skipped[~real].any()
    with pytest.raises(ValueError, match="decreasing"):
        net.decoder_states(tgt, enc.state, lengths=np.array([1, 2]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_beam_step_close_and_generation_runs(fp32_dir, int8_dir, backend):
    from alime.seq2seq.generator import BeamGenerator

    fp32, int8 = _load(fp32_dir), _load(int8_dir, backend)
    src = np.array([[5, 6, 7]], np.int32)
    tokens = np.array([1])
    ref, _ = fp32.inference.step(tokens, fp32.inference.start(src))
    state = int8.inference.start(src)
    got, new_state = int8.inference.step(tokens, state)
    np.testing.assert_allclose(got, ref, atol=0.05)
    assert int8.inference.reorder(new_state, np.array([0, 0]))["hidden"].shape == (2, 8)

    generator = BeamGenerator(int8, SplitPipeline(), beam_size=3, max_len=5)
    out = generator.generate("什么 时候 发货", [])
    assert out and 0.0 < out[0].score <= 1.0


def test_reload_is_identical(int8_dir, fp32_dir):
    from alime.seq2seq.quantized import read_quantized
    from pluto.quantization import QuantizedTensor, quantize

    a, b = _load(int8_dir, "numpy"), _load(int8_dir, "numpy")
    for x, y in zip(
        a.inference.answer_log_probs(SOURCES[0], TARGETS),
        b.inference.answer_log_probs(SOURCES[0], TARGETS),
        strict=True,
    ):
        np.testing.assert_array_equal(x, y)
    # What was written is exactly the quantization of the fp32 weights.
    from alime.seq2seq.quantized import channel_axis, weight_name

    fp32 = _load(fp32_dir)
    stored = read_quantized(int8_dir)
    for v in fp32.model.weights:
        name = weight_name(v)
        axis = channel_axis(name)
        if axis is None:
            np.testing.assert_array_equal(stored[name], v.numpy())
        else:
            assert isinstance(stored[name], QuantizedTensor)
            expected = quantize(v.numpy(), axis)
            np.testing.assert_array_equal(stored[name].values, expected.values)
            np.testing.assert_array_equal(stored[name].scales, expected.scales)


def test_load_stages_reads_int8_dir(int8_dir):
    from alime.config import AppConfig
    from alime.rerank.loading import load_stages

    scorer, generator, thresholds = load_stages(int8_dir, AppConfig(), SplitPipeline())
    scores = scorer.score("什么 时候", [], ["发货 哦", "中通 快递"])
    assert len(scores) == 2 and all(0 < s <= 1 for s in scores)
    assert thresholds == {"threshold": 0.3}


def test_quantize_rejects_bad_inputs(fp32_dir, int8_dir, tmp_path):
    from alime.seq2seq.quantized import quantize_model_dir

    with pytest.raises(ValueError, match="already an int8"):
        quantize_model_dir(int8_dir, tmp_path / "again")
    with pytest.raises(ValueError, match="must differ"):
        quantize_model_dir(fp32_dir, fp32_dir)


def test_cli_errors_on_a_non_model_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    env = {**os.environ, "ALIME_HOME": str(tmp_path / "home"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "alime",
            "quantize",
            str(tmp_path / "empty"),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "not a model directory" in proc.stderr
    assert not (tmp_path / "out" / "quantization.json").exists()


def test_bundled_default_prefers_int8(tmp_path, monkeypatch):
    import alime.config as config_module

    for name in ("model", "model-int8"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    monkeypatch.setattr(config_module, "BUNDLED_DATA", tmp_path)
    paths = config_module.PathsConfig(kb=str(tmp_path / "kb.sqlite"))
    assert config_module.AppConfig(paths=paths).resolved_paths()[2] == tmp_path / "model-int8"
    (tmp_path / "model-int8" / "config.json").unlink()
    assert config_module.AppConfig(paths=paths).resolved_paths()[2] == tmp_path / "model"
