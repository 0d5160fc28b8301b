"""pluto.quantization: per-channel symmetric int8, checked on hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from pluto.int8_head import SAFE_QMAX, reduce_range
from pluto.quantization import QMAX, dequantize, max_channel_error, quantize


def test_per_column_values_and_scales_by_hand():
    # Column 0: max |w| = 1.27 -> scale 0.01; column 1: max |w| = 1.0 -> scale 1/127.
    w = np.array([[1.27, 0.2], [-0.64, -1.0], [0.0, 0.25]], np.float32)
    q = quantize(w, axis=-1)
    np.testing.assert_allclose(q.scales, [0.01, 1 / 127], rtol=1e-6)
    # 0.2 * 127 = 25.4 -> 25; 0.25 * 127 = 31.75 -> 32.
    np.testing.assert_array_equal(q.values, [[127, 25], [-64, -127], [0, 32]])
    assert q.values.dtype == np.int8 and q.scales.dtype == np.float32


def test_per_row_for_embeddings():
    w = np.array([[0.5, -0.25], [2.0, 1.0]], np.float32)
    q = quantize(w, axis=0)
    np.testing.assert_allclose(q.scales, [0.5 / 127, 2.0 / 127], rtol=1e-6)
    np.testing.assert_array_equal(q.values, [[127, -64], [127, 64]])  # -63.5 and 63.5 round to even


@pytest.mark.parametrize("axis", [0, -1])
def test_round_trip_error_at_most_half_a_step_per_channel(axis):
    rng = np.random.default_rng(0)
    # Channels with very different ranges: a per-tensor scale would lose the small ones.
    w = rng.standard_normal((64, 32)).astype(np.float32) * np.logspace(-3, 1, 32)[None, :]
    if axis == 0:
        w = w.T
    q = quantize(w, axis)
    err = max_channel_error(w, q)
    assert np.all(err <= q.scales / 2 * (1 + 1e-5) + 1e-12)
    # Relative to each channel's own range the error is at most 1/254.
    ranges = np.abs(w).max(axis=1 - (axis % 2))
    assert np.all(err / ranges <= 1 / (2 * QMAX) + 1e-6)
    assert np.abs(q.values).max() <= QMAX


def test_zero_channel_and_errors():
    q = quantize(np.zeros((3, 2), np.float32))
    np.testing.assert_array_equal(q.scales, [1.0, 1.0])
    np.testing.assert_array_equal(q.dequantize(), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        quantize(np.array([[np.nan]], np.float32))
    with pytest.raises(ValueError, match="scales"):
        dequantize(np.zeros((2, 3), np.int8), np.ones(2, np.float32), axis=-1)


def test_reduce_range_keeps_seven_bits():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((16, 8)).astype(np.float32)
    q8 = quantize(w)
    q7 = reduce_range(q8)
    assert np.abs(q7.values).max() <= SAFE_QMAX
    err = np.abs(q7.dequantize() - q8.dequantize()).max(axis=0)
    assert np.all(err <= q7.scales / 2 * (1 + 1e-5))
