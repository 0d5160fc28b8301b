"""Op fusion by compilation: XLA ``jit_compile`` measured side by side with the plain graph.

XLA fuses element-wise ops into their producers and removes kernel launches; whether that pays
depends on the model and the device (on CPU, a GRU's while loop and small matmuls often gain
little, and compilation takes seconds). So nothing here switches XLA on by itself:
:func:`compare` times both versions of the same function on the same inputs and reports the
medians, and the caller keeps XLA only where it measured faster.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import tensorflow as tf


@dataclass(frozen=True)
class Timing:
    """Per-call times of one function.

    Attributes:
        wall_ms: Median wall-clock milliseconds per call.
        cpu_ms: Median process CPU milliseconds per call (all threads; above ``wall_ms`` when
            several cores work).
        first_call_ms: The first call (tracing, and compilation for XLA).
        repeats: Timed calls.
    """

    wall_ms: float
    cpu_ms: float
    first_call_ms: float
    repeats: int


def _block(result) -> None:
    for t in tf.nest.flatten(result):
        if hasattr(t, "numpy"):
            t.numpy()


def _timed_call(fn: Callable, args: Sequence) -> tuple[object, float]:
    start = time.perf_counter()
    result = fn(*args)
    _block(result)
    return result, (time.perf_counter() - start) * 1000.0


def time_calls(
    fn: Callable,
    args: Sequence,
    repeats: int = 10,
    warmup: int = 1,
    first_call_ms: float | None = None,
) -> Timing:
    """Median wall and CPU time of ``fn(*args)`` after its first call and ``warmup`` more.

    Args:
        fn: A traced (or eager) function.
        args: Its arguments, reused for every call.
        repeats: Timed calls (median taken).
        warmup: Untimed calls after the first.
        first_call_ms: The first call's time when the caller already made it (it is then not
            repeated).
    """
    if first_call_ms is None:
        _, first_call_ms = _timed_call(fn, args)
    for _ in range(warmup):
        _block(fn(*args))
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        _block(fn(*args))
        walls.append((time.perf_counter() - w0) * 1000.0)
        cpus.append((time.process_time() - c0) * 1000.0)
    return Timing(statistics.median(walls), statistics.median(cpus), first_call_ms, repeats)


@dataclass(frozen=True)
class Comparison:
    """Plain graph vs XLA for one function.

    Attributes:
        plain: Timing of ``tf.function(fn)``.
        xla: Timing of ``tf.function(fn, jit_compile=True)``.
        max_abs_diff: Largest difference between the two versions' outputs (first call).
    """

    plain: Timing
    xla: Timing
    max_abs_diff: float

    @property
    def faster(self) -> str:
        """``"xla"`` or ``"plain"``: the lower median wall time."""
        return "xla" if self.xla.wall_ms < self.plain.wall_ms else "plain"

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return {**asdict(self), "faster": self.faster}


def compare(
    fn: Callable,
    args: Sequence,
    repeats: int = 10,
    warmup: int = 1,
    reset: Callable[[], None] | None = None,
) -> Comparison:
    """Time ``fn`` as a plain ``tf.function`` and with ``jit_compile=True``, side by side.

    The first call of each version (tracing, compilation) is timed apart and its outputs are
    compared; each version is traced and compiled once.

    Args:
        fn: A Python function of tensors (it may update variables: a train step).
        args: Its arguments.
        repeats: Timed calls of each version.
        warmup: Untimed calls after the first.
        reset: Called between the two first calls, e.g. to restore the weights a train step
            changed, so that both versions start from the same state.

    Returns:
        Both timings and the output difference.
    """
    plain_fn = tf.function(fn)
    xla_fn = tf.function(fn, jit_compile=True)
    plain_out, plain_first = _timed_call(plain_fn, args)
    if reset is not None:
        reset()
    xla_out, xla_first = _timed_call(xla_fn, args)
    diff = 0.0
    for a, b in zip(tf.nest.flatten(plain_out), tf.nest.flatten(xla_out), strict=True):
        # Embedding gradients come as IndexedSlices: compare their dense values.
        a, b = np.asarray(tf.convert_to_tensor(a)), np.asarray(tf.convert_to_tensor(b))
        diff = max(diff, float(np.max(np.abs(a - b), initial=0.0)))
    plain = time_calls(plain_fn, args, repeats, warmup, plain_first)
    xla = time_calls(xla_fn, args, repeats, warmup, xla_first)
    return Comparison(plain, xla, diff)
