"""How ``alime train`` spreads work: devices, workers, modes and who writes the output.

Training itself has one path (:class:`alime.seq2seq.training.Trainer` over
:class:`pluto.training.Trainer`) for one device, N devices and several workers; this module holds
the settings of the spread (:class:`ParallelOptions`), the topology actually built (workers x
devices) and the multi-worker output rule: only the chief writes the model directory; the other
workers write their copy to a temporary directory that is removed at the end (they must still
save, in step with the chief, because saving synchronizes the replicas).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MODES = ("sync", "ma")
LR_SCALINGS = ("none", "linear", "sqrt")
MA_SLOTS = ("local", "average", "reset")  # pluto.training.SlotPolicy's values


@dataclass(frozen=True)
class ParallelOptions:
    """How ``alime train`` spreads work over devices (see docs/pluto.md).

    Attributes:
        devices: replicas on this machine (GPUs when present, else logical CPU devices).
        mode: ``sync`` (gradient all-reduce every step) or ``ma`` (model averaging).
        avg_period: K, local steps between averages (``ma``).
        bmuf: block momentum on averaging (``ma``).
        bmuf_local_lr: 0 keeps the local learners on Adam; > 0 runs them with SGD-momentum 0.9
            at this one-replica rate, as in the BMUF paper (``--bmuf``).
        bmuf_warmup_blocks: ramp the block momentum from 0 over this many blocks (``--bmuf``).
        lr_scaling: learning-rate scaling with the replicas: ``none``, ``linear`` or ``sqrt``.
        lr_warmup_steps: steps of the linear ramp from the one-replica rate to the scaled one.
        plateau_patience: validations (epochs) without a 0.1% improvement before the learning
            rate is multiplied by ``plateau_factor`` (0: off).
        plateau_factor: that multiplier.
        adaptive_period: let K follow how far the replicas drift apart.
        workers: worker processes (from ``TF_CONFIG``; 1 without a cluster).
        ma_slots: what averaging does with the optimizer state (momentum, Adam moments):
            ``local`` keeps each replica's, ``average`` averages it along with the weights
            (more bytes), ``reset`` zeroes it (``ma``).
        late_multiply: Dense layers whose factors ``X`` and ``E`` are cheaper to exchange than
            their weight gradient at the per-replica batch (``pluto.late_multiply.plan``) take
            the late-multiply path (``sync``).
    """

    devices: int = 1
    mode: str = "sync"
    avg_period: int = 8
    bmuf: bool = False
    bmuf_local_lr: float = 0.0
    bmuf_warmup_blocks: int = 0
    lr_scaling: str = "linear"
    lr_warmup_steps: int = 20
    plateau_patience: int = 0
    plateau_factor: float = 0.5
    adaptive_period: bool = False
    workers: int = 1
    late_multiply: bool = False
    ma_slots: str = "local"

    def __post_init__(self) -> None:
        if self.devices < 1 or self.workers < 1:
            raise ValueError("--devices and the number of workers must be >= 1")
        if self.mode not in MODES:
            raise ValueError(f"--parallel must be one of {', '.join(MODES)}; got {self.mode!r}")
        if self.lr_scaling not in LR_SCALINGS:
            raise ValueError(
                f"--lr-scaling must be one of {', '.join(LR_SCALINGS)}; got {self.lr_scaling!r}"
            )
        if self.avg_period < 1:
            raise ValueError("--avg-period must be >= 1")
        if self.lr_warmup_steps < 0 or self.plateau_patience < 0:
            raise ValueError("--lr-warmup-steps and --plateau-patience must be >= 0")
        if not 0.0 < self.plateau_factor < 1.0:
            raise ValueError("--plateau-factor must be in (0, 1)")
        if self.bmuf and self.mode != "ma":
            raise ValueError("--bmuf needs --parallel ma")
        if self.bmuf_local_lr < 0 or self.bmuf_warmup_blocks < 0:
            raise ValueError("--bmuf-local-lr and --bmuf-warmup-blocks must be >= 0")
        if (self.bmuf_local_lr or self.bmuf_warmup_blocks) and not self.bmuf:
            raise ValueError("--bmuf-local-lr and --bmuf-warmup-blocks need --bmuf")
        if self.ma_slots not in MA_SLOTS:
            raise ValueError(
                f"--ma-slots must be one of {', '.join(MA_SLOTS)}; got {self.ma_slots!r}"
            )
        if self.ma_slots != "local" and self.mode != "ma":
            raise ValueError("--ma-slots needs --parallel ma")
        if self.late_multiply and self.mode != "sync":
            # The late path averages the kernel gradients inside the backward pass: that is a
            # per-step exchange, which model averaging exists to avoid.
            raise ValueError("--late-multiply needs --parallel sync")


def cluster_workers(tf_config: str | None = None) -> int:
    """Worker tasks named by ``TF_CONFIG`` (the environment's when None); 1 without a cluster."""
    raw = os.environ.get("TF_CONFIG") if tf_config is None else tf_config
    if not raw:
        return 1
    cluster = json.loads(raw).get("cluster", {})
    return max(1, len(cluster.get("worker", [])) + len(cluster.get("chief", [])))


def topology(strategy) -> dict:
    """The topology a strategy really runs: workers x devices per worker = replicas."""
    from pluto.strategy import is_chief

    replicas = strategy.num_replicas_in_sync
    resolver = getattr(strategy, "cluster_resolver", None)
    workers = 1
    task = None
    if resolver is not None and resolver.task_type:
        spec = resolver.cluster_spec().as_dict()
        workers = len(spec.get("worker", [])) + len(spec.get("chief", []))
        task = {"type": resolver.task_type, "index": int(resolver.task_id)}
    return {
        "workers": workers,
        "devices_per_worker": replicas // max(workers, 1),
        "replicas": replicas,
        "strategy": type(strategy).__name__,
        "devices": list(getattr(strategy.extended, "worker_devices", ())),
        "task": task,
        "chief": is_chief(strategy),
    }


@contextlib.contextmanager
def output_dir(out: Path, chief: bool) -> Iterator[Path]:
    """Where this process writes: ``out`` on the chief, a temporary directory elsewhere.

    A non-chief worker's directory is removed on exit, so one run leaves one model directory.
    """
    if chief:
        yield out
        return
    scratch = Path(tempfile.mkdtemp(prefix="alime-train-worker-"))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
