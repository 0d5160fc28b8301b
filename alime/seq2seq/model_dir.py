"""A model directory: everything needed to rebuild the exact trained model, and nothing pickled.

Layout: ``config.json`` (Seq2SeqConfig), ``vocab.json``, ``model.weights.h5`` (Keras weights) and
``training.json`` (metadata: data, split, epochs, losses, the alime version that wrote it). An int8
directory written by ``alime quantize`` has ``quantization.json`` and ``int8/*.npy`` instead of
the ``.h5`` weights (``alime.seq2seq.quantized``); ``load_model_dir`` reads either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alime.seq2seq.config import Seq2SeqConfig
from alime.seq2seq.vocab import Vocabulary

CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "training.json"


@dataclass
class LoadedModel:
    """A trained model with its vocabulary, ready for scoring and generation.

    Attributes:
        model: the Keras ``Seq2SeqModel``.
        inference: its traced ``InferenceModel`` paths.
        metadata: the contents of ``training.json`` (empty when absent).
    """

    config: Seq2SeqConfig
    vocab: Vocabulary
    model: Any
    inference: Any
    metadata: dict = field(default_factory=dict)
    path: Path | None = None


def read_metadata(path: str | Path) -> dict:
    """A model directory's ``training.json``, read without loading the model.

    Raises:
        ValueError: the file is missing or not JSON.
    """
    file = Path(path) / METADATA_FILE
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no {METADATA_FILE} (not a trained model directory)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{file}: invalid JSON: {exc}") from None


def write_metadata(path: str | Path, metadata: dict) -> None:
    Path(path, METADATA_FILE).write_text(
        json.dumps(metadata, indent=2, ensure_ascii=False), encoding="utf-8"
    )


def save_model_dir(
    path: str | Path, model, vocab: Vocabulary, metadata: dict | None = None
) -> None:
    """Write config, vocabulary, weights and (when given) metadata into ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.config.save(path / CONFIG_FILE)
    vocab.save(path / VOCAB_FILE)
    model.save_weights(str(path / WEIGHTS_FILE))
    if metadata is not None:
        write_metadata(path, metadata)


def load_model_dir(path: str | Path, int8_backend: str | None = None) -> LoadedModel:
    """Rebuild the saved model exactly (architecture from config.json, then the weights).

    Args:
        path: an fp32 or int8 model directory.
        int8_backend: for an int8 directory, where its int8 kernel runs ("onnxruntime" or
            "numpy"; default: ONNX Runtime when installed).

    Raises:
        ValueError: when a required file is missing or the vocabulary does not match the config.
    """
    from alime.seq2seq.model import InferenceModel, build_model
    from alime.seq2seq.quantized import QUANT_FILE, is_quantized_dir, load_quantized_into

    path = Path(path)
    quantized = is_quantized_dir(path)
    for name in (CONFIG_FILE, VOCAB_FILE, QUANT_FILE if quantized else WEIGHTS_FILE):
        if not (path / name).is_file():
            raise ValueError(f"{path}: not a model directory (missing {name})")
    config = Seq2SeqConfig.load(path / CONFIG_FILE)
    vocab = Vocabulary.load(path / VOCAB_FILE)
    if len(vocab) != config.vocab_size:
        raise ValueError(
            f"{path}: vocab.json has {len(vocab)} ids, config says {config.vocab_size}"
        )
    model = build_model(config)
    if quantized:
        inference = load_quantized_into(path, model, int8_backend)
    else:
        model.load_weights(str(path / WEIGHTS_FILE))
        inference = InferenceModel(model)
    meta_file = path / METADATA_FILE
    metadata = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
    return LoadedModel(config, vocab, model, inference, metadata, path)
