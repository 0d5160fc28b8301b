"""Fixtures: multi-replica checks run once in a subprocess with fresh TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
REPLICAS = 3


def run_module(module: str, *args: str, env: dict | None = None, timeout: float = 120) -> str:
    """Run ``python -m module args`` from the repository root and return its stdout."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="session")
def replica_checks() -> dict:
    """Results of ``tests.pluto._replica_checks`` on three logical CPU devices."""
    out = json.loads(run_module("tests.pluto._replica_checks", str(REPLICAS)))
    for key in ("w0", "grad_global"):
        out[key] = [np.asarray(a) for a in out[key]]
    return out


def arrays(nested: list) -> list[list[np.ndarray]]:
    """``[replica][variable]`` lists into arrays."""
    return [[np.asarray(w) for w in rep] for rep in nested]
