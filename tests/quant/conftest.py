"""A tiny fp32 model directory (random weights) and its int8 quantization, shared by the tests."""

from __future__ import annotations

import json

import pytest

from alime.seq2seq.config import Seq2SeqConfig
from alime.seq2seq.vocab import Vocabulary
from tests.seq2seq.conftest import WORDS


@pytest.fixture(scope="session")
def fp32_dir(tmp_path_factory):
    import keras

    from alime.seq2seq.model import build_model
    from alime.seq2seq.model_dir import save_model_dir

    keras.utils.set_random_seed(11)
    vocab = Vocabulary(WORDS)
    config = Seq2SeqConfig(
        vocab_size=len(vocab),
        embed_dim=8,
        hidden_dim=8,
        attention_dim=4,
        buckets=((4, 4), (8, 8)),
        max_source_len=8,
        max_target_len=8,
    )
    path = tmp_path_factory.mktemp("fp32")
    save_model_dir(path, build_model(config), vocab, {"note": "random weights"})
    (path / "thresholds.json").write_text(json.dumps({"threshold": 0.3}), encoding="utf-8")
    (path / "stacking.json").write_text(
        json.dumps({"format": 1, "features": ["prior"], "mean": [0], "scale": [1], "weights": [1]}),
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="session")
def int8_dir(tmp_path_factory, fp32_dir):
    from alime.seq2seq.quantized import quantize_model_dir

    path = tmp_path_factory.mktemp("int8") / "model-int8"
    quantize_model_dir(fp32_dir, path)
    return path
