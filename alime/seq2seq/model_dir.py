"""A model directory: every file of it is named, read and written here, and nothing is pickled.

Layout (``alime train`` writes the first four, the evaluations the tuned files):

- ``config.json`` (``Seq2SeqConfig``), ``vocab.json``, ``model.weights.h5`` (Keras weights) and
  ``training.json`` (metadata: data, split, epochs, losses, the alime version that wrote it);
- an int8 directory written by ``alime quantize`` has ``quantization.json`` (the marker: scheme,
  version, one entry per tensor) and ``int8/*.npy`` instead of the ``.h5`` weights (the tensors'
  meaning is ``alime.seq2seq.quantized``'s); ``load_model_dir`` reads either;
- tuned files: ``thresholds.json`` (T, G and C, numbers only) with ``thresholds_sweep.json``
  beside it (how they were chosen), ``rerank.json`` (the rerank score and its options),
  ``stacking.json`` (the stacked rerank score's weights; its fields are
  ``alime.rerank.stacking``'s) and ``routing.json`` (the routing score and its T; its fields are
  ``alime.routing``'s);
- ``logs/`` (TensorBoard scalars) and ``checkpoint/`` (``alime train``'s own, to resume).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from alime.seq2seq.config import Seq2SeqConfig
from alime.seq2seq.vocab import Vocabulary
from pluto.choices import parse_choice

CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "training.json"
QUANT_FILE = "quantization.json"
QUANT_DIR = "int8"
THRESHOLDS_FILE = "thresholds.json"
SWEEP_FILE = "thresholds_sweep.json"
RERANK_FILE = "rerank.json"
ROUTING_FILE = "routing.json"
STACKING_FILE = "stacking.json"
# What ``alime quantize`` carries over unchanged from the fp32 directory: the int8 model has the
# same vocabulary and config, and its scores were tuned on the same scale.
COPIED_BY_QUANTIZE = (
    CONFIG_FILE,
    VOCAB_FILE,
    METADATA_FILE,
    THRESHOLDS_FILE,
    RERANK_FILE,
    STACKING_FILE,
    ROUTING_FILE,
)
_THRESHOLD_KEYS = ("threshold", "generation_threshold", "chitchat_threshold")
_RERANK_KEYS = ("rerank_score", "pmi_weight")


class ScorerKind(str, Enum):
    """The rerank scores a model directory's ``rerank.json`` may name (``alime.rerank.scorers``
    implements them)."""

    MEAN_PROB = "mean_prob"
    MEAN_LOG_PROB = "mean_log_prob"
    PRIOR = "prior"
    PMI = "pmi"
    STACKED = "stacked"  # a linear score over pmi's inputs and text features (stacking.json)


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


def _read_optional_json(path: Path, problem: str) -> tuple[Path, dict | None]:
    """``path`` and its JSON (None when the file is absent); a file that is not JSON is a
    ``ValueError`` naming it, ``problem`` formatted with the parser's message."""
    if not path.is_file():
        return path, None
    try:
        return path, json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: {problem.format(exc)}") from None


def _write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


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


def read_optional_metadata(path: str | Path) -> dict:
    """``training.json`` when the directory has one, else ``{}``."""
    file = Path(path) / METADATA_FILE
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}


def write_metadata(path: str | Path, metadata: dict) -> None:
    """Write ``training.json``."""
    Path(path, METADATA_FILE).write_text(
        json.dumps(metadata, indent=2, ensure_ascii=False), encoding="utf-8"
    )


def read_thresholds(model_dir: str | Path) -> dict[str, float]:
    """The tuned thresholds saved with the model ({} when none were tuned).

    Raises:
        ValueError: when the file has unknown keys or non-numeric values.
    """
    path = Path(model_dir) / THRESHOLDS_FILE
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    unknown = sorted(set(data) - set(_THRESHOLD_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; valid: {list(_THRESHOLD_KEYS)}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in data.values()):
        raise ValueError(f"{path}: thresholds must be numbers")
    return {k: float(v) for k, v in data.items()}


def write_thresholds(
    model_dir: str | Path,
    answer: float,
    generation: float,
    provenance: dict,
    chitchat: float | None = None,
) -> Path:
    """Store T and G (and the chit-chat bar C, when given) where the engine reads them, and how
    they were chosen beside them.

    ``thresholds.json`` holds only the numbers (``read_thresholds`` rejects other keys);
    ``thresholds_sweep.json`` holds the rule, the data and the scorer they were chosen with.

    Returns:
        The path of ``thresholds.json``.
    """
    numbers = {"threshold": answer, "generation_threshold": generation}
    if chitchat is not None:
        numbers["chitchat_threshold"] = chitchat
    _write_json(Path(model_dir, SWEEP_FILE), {**numbers, **provenance})
    return _write_json(Path(model_dir, THRESHOLDS_FILE), numbers)


def read_rerank_choice(model_dir: str | Path) -> tuple[ScorerKind, dict[str, float]]:
    """The model directory's rerank score and its options (mean_prob, {} when not chosen).

    Raises:
        ValueError: for an unknown score name or key.
    """
    path = Path(model_dir) / RERANK_FILE
    if not path.is_file():
        return ScorerKind.MEAN_PROB, {}
    data = json.loads(path.read_text(encoding="utf-8"))
    unknown = sorted(set(data) - set(_RERANK_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; valid: {', '.join(_RERANK_KEYS)}")
    try:
        kind = parse_choice(
            ScorerKind, data.get("rerank_score", ScorerKind.MEAN_PROB.value), "rerank_score"
        )
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    if "pmi_weight" in data and kind is not ScorerKind.PMI:
        raise ValueError(f"{path}: pmi_weight applies to rerank_score 'pmi' only")
    return kind, ({"weight": float(data["pmi_weight"])} if "pmi_weight" in data else {})


def write_rerank_choice(
    model_dir: str | Path, kind: ScorerKind, pmi_weight: float | None = None
) -> Path:
    """Store the rerank score the engine uses for this model (``rerank.json``).

    Raises:
        ValueError: a PMI weight for another score.
    """
    kind = parse_choice(ScorerKind, kind)
    if pmi_weight is not None and kind is not ScorerKind.PMI:
        raise ValueError("pmi_weight applies to rerank_score 'pmi' only")
    data: dict[str, Any] = {"rerank_score": kind.value}
    if pmi_weight is not None:
        data["pmi_weight"] = float(pmi_weight)
    return _write_json(Path(model_dir) / RERANK_FILE, data)


def read_routing_file(model_dir: str | Path) -> tuple[Path, dict | None]:
    """``routing.json``'s path and contents (None when absent); ``alime.routing`` parses them.

    Raises:
        ValueError: the file is not JSON.
    """
    return _read_optional_json(Path(model_dir) / ROUTING_FILE, "invalid routing file ({})")


def write_routing_file(model_dir: str | Path, data: dict) -> Path:
    """Write ``routing.json`` (fields from ``alime.routing``); returns its path."""
    return _write_json(Path(model_dir) / ROUTING_FILE, data)


def read_stacking_file(model_dir: str | Path) -> tuple[Path, dict | None]:
    """``stacking.json``'s path and contents (None when absent); ``alime.rerank.stacking``
    parses them.

    Raises:
        ValueError: the file is not JSON.
    """
    return _read_optional_json(Path(model_dir) / STACKING_FILE, "invalid JSON: {}")


def write_stacking_file(model_dir: str | Path, data: dict) -> Path:
    """Write ``stacking.json`` (fields from ``alime.rerank.stacking``); returns its path."""
    return _write_json(Path(model_dir) / STACKING_FILE, data)


def is_quantized_dir(path: str | Path) -> bool:
    """Whether ``path`` holds an int8 model (its ``quantization.json`` marker)."""
    return Path(path, QUANT_FILE).is_file()


def read_quant_marker(path: str | Path) -> dict:
    """An int8 directory's ``quantization.json``."""
    return json.loads(Path(path, QUANT_FILE).read_text(encoding="utf-8"))


def write_quant_marker(path: str | Path, marker: dict) -> None:
    """Write an int8 directory's ``quantization.json`` (last: it marks the directory complete)."""
    Path(path, QUANT_FILE).write_text(json.dumps(marker, indent=2), encoding="utf-8")


def save_tensor(path: str | Path, stem: str, kind: str, value: np.ndarray) -> str:
    """Save one tensor of an int8 directory as ``int8/STEM.KIND.npy`` (no pickle).

    Returns:
        Its name relative to the directory, as ``quantization.json`` records it.
    """
    relative = f"{QUANT_DIR}/{stem}.{kind}.npy"
    Path(path, QUANT_DIR).mkdir(parents=True, exist_ok=True)
    np.save(Path(path, relative), value, allow_pickle=False)
    return relative


def load_tensor(path: str | Path, relative: str) -> np.ndarray:
    """One tensor of an int8 directory, by the name ``quantization.json`` records."""
    return np.load(Path(path, relative), allow_pickle=False)


def weight_files(path: str | Path) -> list[Path]:
    """The files holding a model directory's weights: the Keras weights, or an int8 directory's
    marker and tensors."""
    path = Path(path)
    if is_quantized_dir(path):
        return [path / QUANT_FILE, *sorted((path / QUANT_DIR).glob("*.npy"))]
    return [path / WEIGHTS_FILE]


def copy_tuned_files(source: str | Path, out: str | Path) -> None:
    """Copy the files ``alime quantize`` carries over (``COPIED_BY_QUANTIZE``) that exist."""
    for name in COPIED_BY_QUANTIZE:
        if Path(source, name).is_file():
            shutil.copyfile(Path(source, name), Path(out, name))


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
    from alime.seq2seq.quantized import load_quantized_into

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
    return LoadedModel(config, vocab, model, inference, read_optional_metadata(path), path)
