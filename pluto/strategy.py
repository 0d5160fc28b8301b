"""Build a ``tf.distribute`` strategy from flags.

One code path for every topology: a single device, N GPUs, N logical CPU devices (tests and CPU
runs) and several workers through ``TF_CONFIG``. Single-device runs also use a one-device
``MirroredStrategy`` so the training code never branches on the topology.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import tensorflow as tf


class StrategyError(RuntimeError):
    """Raised when the requested topology cannot be built in this process."""


@dataclass(frozen=True)
class StrategyConfig:
    """Which devices to train on.

    Attributes:
        devices: Replicas on this machine (GPUs when enough are present, else logical CPUs).
        use_gpus: Use GPUs when at least ``devices`` are visible; ``False`` forces CPUs.
        tf_config: Cluster description (the ``TF_CONFIG`` JSON); ``None`` reads the environment.
    """

    devices: int = 1
    use_gpus: bool = True
    tf_config: str | None = None

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise ValueError(f"devices must be >= 1, got {self.devices}")


def _cluster_workers(tf_config: str | None) -> int:
    """Number of worker tasks named by a ``TF_CONFIG`` JSON string (0 when absent)."""
    if not tf_config:
        return 0
    spec = json.loads(tf_config)
    cluster = spec.get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def configure_logical_cpus(count: int) -> list[str]:
    """Split the physical CPU into ``count`` logical devices.

    Must run before TensorFlow initializes its runtime (before any op or variable is created).
    If the runtime is already up with at least ``count`` CPU devices this is a no-op.

    Args:
        count: Number of logical CPU devices wanted.

    Returns:
        Names of the first ``count`` logical CPU devices.

    Raises:
        StrategyError: TensorFlow is already initialized with fewer logical CPU devices.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    existing = tf.config.get_logical_device_configuration(cpu)
    if not existing or len(existing) < count:
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
            )
        except RuntimeError as err:
            have = len(tf.config.list_logical_devices("CPU"))
            if have < count:
                raise StrategyError(
                    f"TensorFlow is already initialized with {have} CPU device(s) but {count} "
                    "were requested; call pluto.strategy.make_strategy (or "
                    "configure_logical_cpus) before creating any tensor, variable or model"
                ) from err
    return [d.name for d in tf.config.list_logical_devices("CPU")[:count]]


def make_strategy(config: StrategyConfig | None = None) -> tf.distribute.Strategy:
    """Return the strategy described by ``config`` (and ``TF_CONFIG`` when it names a cluster).

    Args:
        config: Devices wanted; defaults to one device.

    Returns:
        ``MultiWorkerMirroredStrategy`` when the cluster has more than one task, otherwise a
        ``MirroredStrategy`` over ``config.devices`` GPUs or logical CPU devices.

    Raises:
        StrategyError: The logical devices can no longer be configured.
    """
    config = config or StrategyConfig()
    tf_config = config.tf_config if config.tf_config is not None else os.environ.get("TF_CONFIG")
    if _cluster_workers(tf_config) > 1:
        if config.tf_config is not None:
            os.environ["TF_CONFIG"] = config.tf_config
        # RING works on CPUs and GPUs alike; NCCL would be picked automatically on GPUs by AUTO.
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.AUTO
        )
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    gpus = tf.config.list_physical_devices("GPU") if config.use_gpus else []
    if len(gpus) >= config.devices:
        names = [f"/gpu:{i}" for i in range(config.devices)]
        return tf.distribute.MirroredStrategy(devices=names)
    names = configure_logical_cpus(config.devices)
    # Collective all-reduce between logical CPUs is what MirroredStrategy does anyway; naming the
    # cross-device op explicitly avoids the NCCL default that fails without GPUs.
    return tf.distribute.MirroredStrategy(
        devices=names, cross_device_ops=tf.distribute.ReductionToOneDevice()
    )


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process should write artifacts (the chief, or worker 0 without a chief)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    cluster = resolver.cluster_spec().as_dict()
    return "chief" not in cluster and resolver.task_type == "worker" and resolver.task_id == 0
