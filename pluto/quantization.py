"""Symmetric per-channel int8 post-training quantization of weight matrices.

A matrix ``w`` is stored as int8 values ``q`` and one float32 scale per channel (a column of a
``[in, out]`` kernel, a row of an embedding table) with ``w ~= q * scale`` and
``q = round(w / scale)`` clipped to [-127, 127]; ``scale = max|w| / 127`` over the channel. The
range is symmetric (no zero point) so int8 matmul kernels need no offset correction, and -128 is
never used so negating ``q`` cannot overflow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QMAX = 127


@dataclass(frozen=True)
class QuantizedTensor:
    """An int8 tensor with its per-channel scales.

    Attributes:
        values: int8 array, the same shape as the original.
        scales: float32 array, one per channel along ``axis``.
        axis: the channel axis (kept; every other axis is reduced to find the scale).
    """

    values: np.ndarray
    scales: np.ndarray
    axis: int

    def dequantize(self) -> np.ndarray:
        """The float32 approximation ``values * scales`` (scales broadcast along ``axis``)."""
        return dequantize(self.values, self.scales, self.axis)


def _broadcast_shape(ndim: int, axis: int, channels: int) -> tuple[int, ...]:
    shape = [1] * ndim
    shape[axis] = channels
    return tuple(shape)


def quantize(weights: np.ndarray, axis: int = -1) -> QuantizedTensor:
    """Quantize ``weights`` to int8 with one symmetric scale per channel along ``axis``.

    Args:
        weights: a float array (at least 1-D).
        axis: the channel axis: -1 for a ``[in, out]`` kernel (per output column), 0 for an
            embedding table (per token row).

    Returns:
        The int8 values and float32 scales. An all-zero channel gets scale 1 (any value works;
        1 keeps dequantization exact and avoids dividing by zero).

    Raises:
        ValueError: for a 0-d array or non-finite weights.
    """
    w = np.asarray(weights, np.float32)
    if w.ndim == 0:
        raise ValueError("need at least a 1-D array to quantize")
    if not np.all(np.isfinite(w)):
        raise ValueError("cannot quantize non-finite weights")
    axis = axis % w.ndim
    reduce_axes = tuple(i for i in range(w.ndim) if i != axis)
    max_abs = np.max(np.abs(w), axis=reduce_axes) if reduce_axes else np.abs(w)
    scales = np.where(max_abs > 0, max_abs / QMAX, 1.0).astype(np.float32)
    q = np.rint(w / scales.reshape(_broadcast_shape(w.ndim, axis, scales.size)))
    return QuantizedTensor(np.clip(q, -QMAX, QMAX).astype(np.int8), scales, axis)


def dequantize(values: np.ndarray, scales: np.ndarray, axis: int = -1) -> np.ndarray:
    """Float32 ``values * scales`` with the scales broadcast along ``axis``.

    Raises:
        ValueError: when the number of scales does not match the channel count.
    """
    values = np.asarray(values)
    scales = np.asarray(scales, np.float32)
    axis = axis % values.ndim
    if scales.shape != (values.shape[axis],):
        raise ValueError(
            f"expected {values.shape[axis]} scales along axis {axis}, got shape {scales.shape}"
        )
    return values.astype(np.float32) * scales.reshape(
        _broadcast_shape(values.ndim, axis, scales.size)
    )


def max_channel_error(weights: np.ndarray, q: QuantizedTensor) -> np.ndarray:
    """Largest absolute round-trip error per channel; at most ``scale / 2`` by construction."""
    w = np.asarray(weights, np.float32)
    axis = q.axis % w.ndim
    err = np.abs(q.dequantize() - w)
    reduce_axes = tuple(i for i in range(w.ndim) if i != axis)
    return np.max(err, axis=reduce_axes) if reduce_axes else err
