"""int8 model directories: write (``quantize_model_dir``), read back, and serve.

Layout: the fp32 directory's ``config.json``, ``vocab.json``, ``training.json`` and (when present)
``thresholds.json``, plus ``quantization.json`` (the marker: scheme, the alime version, one entry
per tensor) and ``int8/`` with one ``.npy`` per tensor: int8 values and float32 per-channel scales
for every weight matrix (embedding rows; kernel output columns), float32 for biases. No pickle.

Serving (``QuantizedInferenceModel``): the recurrences and attention run in numpy on the
dequantized weights (neither TensorFlow nor ONNX Runtime has an int8 GRU on CPU, and at these
sizes per-op overhead, not arithmetic, dominates them), and the vocabulary projection with its
log-softmax, where the arithmetic is, runs as an int8 kernel (``pluto.int8_head``).
``load_int8_model_dir`` builds that without TensorFlow (what a serving worker loads, once per
process: every stage that asks for the same directory gets the same object);
``load_quantized_into`` also fills a Keras model with the dequantized weights, for the
training-side tools that need one. This module never imports TensorFlow itself.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from alime import __version__
from alime.seq2seq.model_dir import (
    CONFIG_FILE,
    QUANT_FILE,
    VOCAB_FILE,
    LoadedModel,
    copy_tuned_files,
    load_tensor,
    read_optional_metadata,
    read_quant_marker,
    save_tensor,
    write_quant_marker,
)
from alime.seq2seq.numpy_forward import Encoded, NumpySeq2Seq
from alime.seq2seq.targets import score_distinct_targets
from alime.seq2seq.vocab import PAD_ID
from pluto.int8_head import HeadBackend, Int8LogSoftmaxHead, onnxruntime_available
from pluto.quantization import QuantizedTensor, quantize

if TYPE_CHECKING:  # the Keras model is only a type here: importing it would load TensorFlow
    from alime.seq2seq.model import Seq2SeqModel

SCHEME = "int8-symmetric-per-channel"
FORMAT_VERSION = 1
# Decoder-state entries that come from the encoder (the same for every beam of a source).
_SHARED = frozenset({"values", "keys", "mask"})
_OUTPUT_KERNEL = "output_proj/kernel"
_OUTPUT_BIAS = "output_proj/bias"


def weight_name(variable) -> str:
    """A variable's path without the model's own (auto-numbered) prefix, e.g. 'encoder/...'."""
    return variable.path.split("/", 1)[1]


def channel_axis(name: str) -> int | None:
    """The per-channel axis for a matrix to quantize, None for tensors kept in float32.

    Embedding tables are read a row (token) at a time, so they get one scale per row; kernels
    ``[in, out]`` get one per output column. Biases are tiny and stay float.
    """
    leaf = name.rsplit("/", 1)[-1]
    if leaf == "embeddings":
        return 0
    if leaf in ("kernel", "recurrent_kernel"):
        return -1
    return None


def _file_stem(name: str) -> str:
    return name.replace("/", "__")


def quantize_model_dir(source: str | Path, out: str | Path) -> dict:
    """Quantize the fp32 model directory ``source`` into ``out``; returns the marker contents.

    Raises:
        ValueError: when ``source`` is not a model directory, is already quantized, or ``out``
            is ``source``.
    """
    from alime.seq2seq.model_dir import load_model_dir

    source, out = Path(source), Path(out)
    if (source / QUANT_FILE).is_file():
        raise ValueError(f"{source}: already an int8 model directory")
    if out.resolve() == source.resolve():
        raise ValueError("--out must differ from the source model directory")
    loaded = load_model_dir(source)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for variable in loaded.model.weights:
        name = weight_name(variable)
        stem = _file_stem(name)
        value = np.asarray(variable.numpy(), np.float32)
        axis = channel_axis(name)
        entry = {"name": name, "shape": list(value.shape)}
        if axis is None:
            entry.update(dtype="float32", file=save_tensor(out, stem, "f32", value))
        else:
            q = quantize(value, axis)
            entry.update(
                dtype="int8",
                axis=axis,
                file=save_tensor(out, stem, "int8", q.values),
                scale_file=save_tensor(out, stem, "scale", q.scales),
            )
        entries.append(entry)
    copy_tuned_files(source, out)
    marker = {
        "format_version": FORMAT_VERSION,
        "scheme": SCHEME,
        "alime_version": __version__,
        "source": str(source),
        "tensors": entries,
    }
    write_quant_marker(out, marker)
    return marker


def read_quantized(path: str | Path) -> dict[str, QuantizedTensor | np.ndarray]:
    """Every tensor of an int8 directory by name: ``QuantizedTensor`` or a float32 array.

    Raises:
        ValueError: for an unknown scheme or format version, or a tensor whose shape disagrees.
    """
    path = Path(path)
    marker = read_quant_marker(path)
    if marker.get("scheme") != SCHEME or marker.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: unsupported quantization {marker.get('scheme')!r} "
            f"v{marker.get('format_version')}; this alime reads {SCHEME} "
            f"v{FORMAT_VERSION}"
        )
    tensors: dict[str, QuantizedTensor | np.ndarray] = {}
    for entry in marker["tensors"]:
        values = load_tensor(path, entry["file"])
        if list(values.shape) != entry["shape"]:
            raise ValueError(
                f"{path}: {entry['file']} has shape {values.shape}, expected {entry['shape']}"
            )
        if entry["dtype"] == "int8":
            scales = load_tensor(path, entry["scale_file"])
            tensors[entry["name"]] = QuantizedTensor(values, scales, entry["axis"])
        else:
            tensors[entry["name"]] = values
    return tensors


def assign_quantized(model: Seq2SeqModel, tensors: dict) -> None:
    """Load the dequantized weights into a built model.

    Raises:
        ValueError: when the directory and the model disagree on the set of weights.
    """
    names = {weight_name(v) for v in model.weights}
    if names != set(tensors):
        raise ValueError(
            f"weights do not match the model: missing {sorted(names - set(tensors))}"
            f", unexpected {sorted(set(tensors) - names)}"
        )
    for variable in model.weights:
        t = tensors[weight_name(variable)]
        variable.assign(t.dequantize() if isinstance(t, QuantizedTensor) else t)


def default_backend() -> HeadBackend:
    """ONNX Runtime's integer GEMM when installed, else numpy on the dequantized weights."""
    return HeadBackend.ONNXRUNTIME if onnxruntime_available() else HeadBackend.NUMPY


class QuantizedInferenceModel:
    """The serving paths of an int8 model, with ``InferenceModel``'s methods and results (up to
    quantization error); log-probs at padded target positions are 0.

    The network runs in numpy (``NumpySeq2Seq``) on the dequantized weights and the vocabulary
    projection with its log-softmax in the int8 kernel. Rerank scoring projects only real
    (non-padding) target positions and attends from all of them to the one shared source
    encoding in a single batch.

    Args:
        net: the numpy forward pass.
        head: the int8 ``log_softmax(hidden @ W_out + b)``.
    """

    # Encoder passes kept: a reply encodes its source for the rerank, the beam search and the
    # generated answer's re-scoring; with this it runs once.
    ENCODED_CACHE = 64

    def __init__(self, net: NumpySeq2Seq, head: Int8LogSoftmaxHead) -> None:
        self.net = net
        self.head = head
        self._encoded: OrderedDict[tuple, Encoded] = OrderedDict()
        self._encoded_lock = threading.Lock()

    def encode(self, source_ids: np.ndarray) -> Encoded:
        """``net.encode`` of right-padded ids [b, src], remembered for the last few sources
        (the result is shared: callers must not write into its arrays)."""
        ids = np.ascontiguousarray(source_ids, np.int64)
        key = (ids.shape, ids.tobytes())
        with self._encoded_lock:
            enc = self._encoded.get(key)
            if enc is not None:
                self._encoded.move_to_end(key)
                return enc
        enc = self.net.encode(ids)
        with self._encoded_lock:
            self._encoded[key] = enc
            while len(self._encoded) > self.ENCODED_CACHE:
                self._encoded.popitem(last=False)
        return enc

    def _picked(self, hidden: np.ndarray, target_ids: np.ndarray, real: np.ndarray) -> np.ndarray:
        out = np.zeros(target_ids.shape, np.float32)
        out[real] = self.head.target_log_probs(hidden, target_ids[real])
        return out

    def candidate_log_probs(self, source_ids: np.ndarray, target_ids: np.ndarray) -> np.ndarray:
        """Per-token log-probs [k, steps] of k right-padded targets given ONE source [src]."""
        tgt = np.asarray(target_ids, np.int64)
        enc = self.encode(np.asarray(source_ids, np.int64)[None, :])
        # Longest first, so each decoder step runs only the candidates not yet finished.
        lengths = (tgt != PAD_ID).sum(axis=1)
        order = np.argsort(-lengths, kind="stable")
        tgt_sorted = tgt[order]
        states = self.net.decoder_states(
            tgt_sorted, np.repeat(enc.state, tgt.shape[0], axis=0), lengths[order]
        )
        real = tgt_sorted != PAD_ID
        packed = states[real]
        hidden = self.net.combine(packed, self.net.attend(packed[None], enc)[0])
        out = np.empty_like(tgt, dtype=np.float32)
        out[order] = self._picked(hidden, tgt_sorted, real)
        return out

    def batch_log_probs(self, source_ids: np.ndarray, target_ids: np.ndarray) -> np.ndarray:
        """Per-token log-probs [batch, steps] of each target given its own source row."""
        tgt = np.asarray(target_ids, np.int64)
        enc = self.encode(np.asarray(source_ids, np.int64))
        states = self.net.decoder_states(tgt, enc.state)
        real = tgt != PAD_ID
        hidden = self.net.combine(states, self.net.attend(states, enc))[real]
        return self._picked(hidden, tgt, real)

    def answer_log_probs(
        self, source_ids: Sequence[int], targets: Sequence[Sequence[int]]
    ) -> list[np.ndarray]:
        """Per-token log-probs of each target (EOS included when present) given one source.

        The same contract as ``InferenceModel.answer_log_probs``: all targets teacher-forced in
        one batch after one encoder pass, each distinct target scored once (stock replies recur
        among a query's candidates), an empty source gives the answer prior.
        """
        return score_distinct_targets(source_ids, targets, np.int64, self.candidate_log_probs)

    def start(self, source_ids: np.ndarray) -> dict[str, np.ndarray]:
        """Encode a batch of sources; the result is the decoder state for ``step``."""
        enc = self.encode(np.asarray(source_ids, np.int64))
        return {"hidden": enc.state, "values": enc.values, "keys": enc.keys, "mask": enc.mask}

    def step(self, tokens: np.ndarray, state: dict[str, np.ndarray]):
        """Next-token log-probs [rows, vocab] and the new state."""
        enc = Encoded(state["values"], state["keys"], state["mask"], state["hidden"])
        hidden, new = self.net.step(np.asarray(tokens, np.int64), state["hidden"], enc)
        return self.head.log_probs(hidden), {**state, "hidden": new}

    @staticmethod
    def reorder(state: dict[str, np.ndarray], indices: np.ndarray) -> dict[str, np.ndarray]:
        """Select state rows (beam search keeps the rows of surviving hypotheses).

        Encoder tensors of one source stay one row (every index selects it; attention
        broadcasts), so a beam does not copy them at every step.
        """
        idx = np.asarray(indices, np.int64)
        return {
            name: t if name in _SHARED and t.shape[0] == 1 else t[idx] for name, t in state.items()
        }


def _serving_model(
    tensors: dict, backend: HeadBackend | str | None, threads: int
) -> QuantizedInferenceModel:
    dense = {
        name: t.dequantize() if isinstance(t, QuantizedTensor) else t
        for name, t in tensors.items()
        if name not in (_OUTPUT_KERNEL, _OUTPUT_BIAS)
    }
    head = Int8LogSoftmaxHead(
        tensors[_OUTPUT_KERNEL],
        np.asarray(tensors[_OUTPUT_BIAS]),
        backend or default_backend(),
        threads=threads,
    )
    return QuantizedInferenceModel(NumpySeq2Seq(dense), head)


def load_quantized(
    path: str | Path, backend: HeadBackend | str | None = None, threads: int = 1
) -> QuantizedInferenceModel:
    """The serving paths of the int8 directory ``path``, with no Keras model (no TensorFlow)."""
    return _serving_model(read_quantized(path), backend, threads)


def load_quantized_into(
    path: str | Path,
    model: Seq2SeqModel,
    backend: HeadBackend | str | None = None,
    threads: int = 1,
) -> QuantizedInferenceModel:
    """Fill ``model`` from the int8 directory ``path`` and wrap it for serving."""
    tensors = read_quantized(path)
    assign_quantized(model, tensors)
    return _serving_model(tensors, backend, threads)


# One serving model per (directory, its marker's mtime, backend) in this process: the reranker,
# the generator and the dense retriever's encoder of a worker share one load.
_LOADED: dict[tuple[str, int, str | None], LoadedModel] = {}
_LOADED_LOCK = threading.Lock()


def load_int8_model_dir(path: str | Path, backend: HeadBackend | str | None = None) -> LoadedModel:
    """An int8 model directory ready to serve, without TensorFlow: ``LoadedModel.model`` is None
    and ``inference`` is the numpy/int8 ``QuantizedInferenceModel``.

    Loaded once per process: later calls for the same directory (unchanged marker file) and
    backend return the same object, so every stage of a worker shares one copy of the weights.

    Raises:
        ValueError: when ``path`` is not an int8 model directory, a file is missing, or the
            vocabulary does not match the config.
    """
    from alime.seq2seq.config import Seq2SeqConfig
    from alime.seq2seq.vocab import Vocabulary

    path = Path(path).resolve()
    for name in (CONFIG_FILE, VOCAB_FILE, QUANT_FILE):
        if not (path / name).is_file():
            raise ValueError(f"{path}: not an int8 model directory (missing {name})")
    backend_key = None if backend is None else str(getattr(backend, "value", backend))
    key = (str(path), (path / QUANT_FILE).stat().st_mtime_ns, backend_key)
    with _LOADED_LOCK:
        if key in _LOADED:
            return _LOADED[key]
        config = Seq2SeqConfig.load(path / CONFIG_FILE)
        vocab = Vocabulary.load(path / VOCAB_FILE)
        if len(vocab) != config.vocab_size:
            raise ValueError(
                f"{path}: vocab.json has {len(vocab)} ids, config says {config.vocab_size}"
            )
        metadata = read_optional_metadata(path)
        loaded = LoadedModel(config, vocab, None, load_quantized(path, backend), metadata, path)
        _LOADED[key] = loaded
        return loaded
