"""Communication accounting: bytes each replica sends in a ring all-reduce."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

RING_FACTOR_NOTE = "ring all-reduce: each replica sends 2(N-1)/N x payload"


def ring_allreduce_bytes(payload_bytes: int, replicas: int) -> float:
    """Bytes one replica sends in a ring all-reduce of ``payload_bytes``.

    A ring all-reduce is a reduce-scatter followed by an all-gather; each phase moves
    ``(N-1)/N`` of the payload per replica, so the total is ``2(N-1)/N`` times the payload
    (1.5x for 4 replicas). One replica communicates nothing.

    Args:
        payload_bytes: Size of the reduced tensors on one replica.
        replicas: Number of replicas taking part.

    Returns:
        Bytes sent by each replica.
    """
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    return 2.0 * (replicas - 1) / replicas * payload_bytes


def payload_bytes(variables: Iterable) -> int:
    """Total size in bytes of ``variables`` (anything with ``shape`` and ``dtype``)."""
    import numpy as np

    total = 0
    for var in variables:
        count = int(np.prod(var.shape)) if len(var.shape) else 1
        # Keras variables give the dtype as a name ("float32"), tf.Variables (the optimizer
        # slots) as a tf.DType whose str is "<dtype: 'float32'>": ask for its name either way.
        dtype = getattr(var.dtype, "name", var.dtype)
        total += count * np.dtype(str(dtype).replace("tf.", "")).itemsize
    return total


@dataclass
class CommCounter:
    """Running count of bytes one replica has sent.

    Attributes:
        replicas: Replicas in each all-reduce.
        bytes_sent: Bytes sent so far by one replica.
        allreduces: Number of all-reduce rounds counted.
    """

    replicas: int
    bytes_sent: float = 0.0
    allreduces: int = 0

    def add(self, payload: int) -> None:
        """Count one all-reduce of ``payload`` bytes."""
        if self.replicas > 1:
            self.bytes_sent += ring_allreduce_bytes(payload, self.replicas)
            self.allreduces += 1


def ring_allgather_bytes(shard_bytes: int, replicas: int) -> float:
    """Bytes one replica sends in a ring all-gather of ``shard_bytes`` from every replica.

    Each replica forwards the ``N-1`` shards it does not already hold once around the ring, so
    it sends ``(N-1) x shard`` (the gathered result is ``N x shard``). A reduce-scatter of a
    tensor whose per-replica slice is ``shard_bytes`` costs the same.

    Args:
        shard_bytes: Size of one replica's contribution.
        replicas: Number of replicas taking part.

    Returns:
        Bytes sent by each replica.
    """
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    return float((replicas - 1) * shard_bytes)
