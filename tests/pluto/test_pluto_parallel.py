"""Late-multiply and hybrid parallelism on 2 and 4 logical CPU devices (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.pluto.conftest import ROOT

DEVICE_COUNTS = (2, 4)


@pytest.fixture(scope="module")
def checks() -> dict[int, dict]:
    """``tests.pluto._parallel_checks`` on 2 and 4 devices, both processes started at once."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    procs = {
        n: subprocess.Popen(
            [sys.executable, "-m", "tests.pluto._parallel_checks", str(n)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in DEVICE_COUNTS
    }
    # Wait for both before asserting, so a failure leaves no process behind.
    results = {n: (proc.communicate(timeout=180), proc.returncode) for n, proc in procs.items()}
    out = {}
    for n, ((stdout, stderr), code) in results.items():
        assert code == 0, stderr[-3000:]
        out[n] = json.loads(stdout)
    return out


@pytest.mark.parametrize("replicas", DEVICE_COUNTS)
def test_late_multiply_gradients_equal_the_plain_allreduce(checks, replicas):
    late = checks[replicas]["late"]
    assert late["grad_scale"] > 1e-2  # gradients are not trivially zero
    assert late["late_vs_plain"] < 1e-6
    assert late["late_vs_single"] < 1e-6  # and both equal one device on the global batch


@pytest.mark.parametrize("replicas", DEVICE_COUNTS)
def test_skipping_the_allreduce_without_the_late_path_is_caught(checks, replicas):
    # Control: kernels left out of the all-reduce but formed locally give each replica its own
    # gradient, which the comparison above must be able to tell apart.
    assert checks[replicas]["late"]["broken_vs_plain"] > 1e-3


@pytest.mark.parametrize("replicas", DEVICE_COUNTS)
def test_hybrid_loss_and_gradients_equal_single_device(checks, replicas):
    hybrid = checks[replicas]["hybrid"]
    assert hybrid["loss"] == pytest.approx(hybrid["ref_loss"], rel=1e-6)
    assert hybrid["body_grad_diff"] < 1e-6
    scale = hybrid["head_grad_scale"]
    assert scale > 0
    assert hybrid["head_kernel_diff"] < 1e-5 * scale
    assert hybrid["head_bias_diff"] < 1e-6
    assert hybrid["embedding_grad_scale"] > 1e-4
    assert hybrid["embedding_grad_diff"] < 1e-5 * hybrid["embedding_grad_scale"]


@pytest.mark.parametrize("replicas", DEVICE_COUNTS)
def test_vocabulary_shards_live_on_distinct_devices(checks, replicas):
    hybrid = checks[replicas]["hybrid"]
    assert len(hybrid["shard_devices"]) == replicas
    assert hybrid["embedding_devices"] == hybrid["shard_devices"]
    bounds = hybrid["bounds"]
    assert bounds[0][0] == 0 and bounds[-1][1] == 23
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
