"""Memory planning by recomputation (gradient checkpointing).

A block wrapped with :func:`checkpoint` keeps only its inputs for the backward pass and recomputes
its intermediate activations when the gradient reaches it, trading one more forward pass of the
block for memory. For a seq2seq model the blocks are the encoder and the decoder (GRU, attention
and the combine layer): in the long buckets their activations (the attention energies are
``[batch, target, source, units]``) dominate the step's memory, and with both blocks
checkpointed they are no longer alive at the same time.

Peak memory is measured with TensorFlow's own allocator statistics,
``tf.config.experimental.get_memory_info``, which TensorFlow 2.21 also keeps for ``CPU:0``
(reset with ``reset_memory_stats``): :func:`peak_bytes` is the peak of bytes allocated by
TensorFlow during one call above what was allocated before it. It counts tensors TensorFlow
allocates (activations, gradients, temporaries), not the Python heap or allocator caches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf


def checkpoint(fn: Callable) -> Callable:
    """``fn`` with its activations recomputed in the backward pass (``tf.recompute_grad``).

    ``fn`` takes and returns tensors; variables it reads (Keras layers' weights included) get
    their gradients as usual. Integer or boolean arguments are fine (they get no gradient).
    Gradients are those of ``fn`` itself (tested equal to the plain path).

    Args:
        fn: The block's forward function.

    Returns:
        The checkpointed function.
    """
    return tf.recompute_grad(fn)


def peak_bytes(fn: Callable, args: Sequence = (), device: str = "CPU:0") -> int:
    """Peak bytes TensorFlow allocated on ``device`` during ``fn(*args)``, above the start.

    Call ``fn`` once before measuring so that tracing and one-time allocations are excluded.

    Args:
        fn: The step to measure (its result is fetched before the peak is read).
        args: Its arguments.
        device: A device with allocator statistics (``CPU:0``, ``GPU:0``).

    Returns:
        ``peak - current`` in bytes, where ``current`` is read just before the call.
    """
    tf.config.experimental.reset_memory_stats(device)
    before = tf.config.experimental.get_memory_info(device)["current"]
    result = fn(*args)
    for t in tf.nest.flatten(result):
        if hasattr(t, "numpy"):
            t.numpy()
    return int(tf.config.experimental.get_memory_info(device)["peak"] - before)
