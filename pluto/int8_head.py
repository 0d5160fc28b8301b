"""An int8 output layer with log-softmax: ``log_softmax(x @ W + b)`` with W stored as int8.

On ONNX Runtime the matmul is ``com.microsoft.DynamicQuantizeMatMul``: activations are quantized
per call (uint8, per tensor) and multiplied with the int8 weights by MLAS's integer GEMM
(VNNI where the CPU has it), then scaled back per output column. Without ONNX Runtime the same
interface runs a float matmul on the dequantized weights in numpy.

On CPUs without VNNI (AVX2, as on this AMD EPYC host) MLAS multiplies uint8 by int8 with
``vpmaddubsw``, which saturates the int16 sum of two products (2 * 255 * 127 > 32767) and gave
log-prob errors above 1.0 in a probe; weights are therefore re-quantized to 7 bits (|q| <= 63) for
this kernel (ONNX Runtime's "reduce_range"), which cannot saturate.

The vocabulary projection is where a seq2seq scorer spends most of its time (``[tokens, hidden] @
[hidden, vocab]`` plus a softmax over the vocabulary), so it is the one place an int8 kernel pays.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from pluto.quantization import QuantizedTensor, quantize

# 2 * 255 * 63 = 32130 fits the int16 pair sum of ``vpmaddubsw``.
SAFE_QMAX = 63


def reduce_range(weight: QuantizedTensor, qmax: int = SAFE_QMAX) -> QuantizedTensor:
    """Re-quantize to ``|q| <= qmax`` per channel (from the dequantized int8 values)."""
    q = quantize(weight.dequantize(), weight.axis)
    scales = q.scales * (127 / qmax)
    values = np.clip(np.rint(weight.dequantize() / scales), -qmax, qmax).astype(np.int8)
    return QuantizedTensor(values, scales.astype(np.float32), weight.axis)


class HeadBackend(str, Enum):
    """Where the int8 head runs."""

    ONNXRUNTIME = "onnxruntime"
    NUMPY = "numpy"


def onnxruntime_available() -> bool:
    """Whether ``onnxruntime`` and ``onnx`` import (the int8 kernels need both)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _head_graph(weight: QuantizedTensor, bias: np.ndarray, gather: bool):
    from onnx import TensorProto, helper, numpy_helper

    hidden, vocab = weight.values.shape
    inits = [
        numpy_helper.from_array(weight.values, "w_q"),
        numpy_helper.from_array(weight.scales.astype(np.float32), "w_scale"),
        numpy_helper.from_array(np.asarray(bias, np.float32), "bias"),
    ]
    nodes = [
        # Inputs: A, B, b_scale, b_zero_point (empty: symmetric), bias.
        helper.make_node(
            "DynamicQuantizeMatMul",
            ["x", "w_q", "w_scale", "", "bias"],
            ["logits"],
            domain="com.microsoft",
        ),
        helper.make_node("LogSoftmax", ["logits"], ["log_probs"], axis=-1),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, hidden])]
    if gather:
        inputs.append(helper.make_tensor_value_info("targets", TensorProto.INT64, [None, 1]))
        nodes.append(
            helper.make_node("GatherElements", ["log_probs", "targets"], ["picked"], axis=1)
        )
        outputs = [helper.make_tensor_value_info("picked", TensorProto.FLOAT, [None, 1])]
    else:
        outputs = [helper.make_tensor_value_info("log_probs", TensorProto.FLOAT, [None, vocab])]
    graph = helper.make_graph(nodes, "int8_head", inputs, outputs, inits)
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class Int8LogSoftmaxHead:
    """``log_softmax(x @ W + b)`` over int8 ``W`` (per output column scales).

    Args:
        weight: the quantized ``[hidden, vocab]`` kernel (channel axis -1).
        bias: float ``[vocab]``.
        backend: where to run; ONNX Runtime needs ``onnxruntime`` installed.
        threads: intra-op threads for ONNX Runtime (1 suits several serving workers on few cores).

    Raises:
        ValueError: for a kernel not quantized per output column, or an unknown backend.
    """

    def __init__(
        self,
        weight: QuantizedTensor,
        bias: np.ndarray,
        backend: HeadBackend | str = HeadBackend.ONNXRUNTIME,
        threads: int = 1,
    ) -> None:
        if weight.values.ndim != 2 or weight.axis % 2 != 1:
            raise ValueError("the head needs a [hidden, vocab] kernel quantized per column")
        try:
            self.backend = HeadBackend(backend)
        except ValueError:
            raise ValueError(
                f"unknown backend {backend!r}; valid: {[b.value for b in HeadBackend]}"
            ) from None
        self.bias = np.asarray(bias, np.float32)
        if self.backend is HeadBackend.ONNXRUNTIME:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            weight = reduce_range(weight)
            self._full = ort.InferenceSession(
                _head_graph(weight, self.bias, gather=False).SerializeToString(),
                options,
                providers=["CPUExecutionProvider"],
            )
            self._gather = ort.InferenceSession(
                _head_graph(weight, self.bias, gather=True).SerializeToString(),
                options,
                providers=["CPUExecutionProvider"],
            )
        else:
            self._dense = weight.dequantize()

    def log_probs(self, x: np.ndarray) -> np.ndarray:
        """Log-probabilities ``[rows, vocab]`` for hidden states ``x`` ``[rows, hidden]``."""
        x = np.ascontiguousarray(x, np.float32)
        if self.backend is HeadBackend.ONNXRUNTIME:
            return self._full.run(None, {"x": x})[0]
        return _log_softmax(x @ self._dense + self.bias)

    def target_log_probs(self, x: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """``log p(targets[i] | x[i])`` ``[rows]``; only the picked entries leave the kernel."""
        x = np.ascontiguousarray(x, np.float32)
        targets = np.asarray(targets, np.int64)
        if self.backend is HeadBackend.ONNXRUNTIME:
            return self._gather.run(None, {"x": x, "targets": targets[:, None]})[0][:, 0]
        return np.take_along_axis(self.log_probs(x), targets[:, None], axis=1)[:, 0]
