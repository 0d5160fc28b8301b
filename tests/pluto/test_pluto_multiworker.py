"""Two processes on localhost train with MultiWorkerMirroredStrategy; only the chief saves."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.pluto.conftest import ROOT


def free_ports(count: int) -> list[int]:
    """Ports the OS reports free right now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.mark.slow
def test_two_workers_train_and_only_chief_saves(tmp_path):
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "2"}
        out = tmp_path / f"w{index}"
        out.mkdir()
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.pluto._multiworker", str(out)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=150)
            assert proc.returncode == 0, stderr[-3000:]
            results.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert [r["replicas"] for r in results] == [2, 2]
    assert [r["chief"] for r in results] == [True, False]
    assert [r["wrote"] for r in results] == [True, False]
    saved = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.weights.h5"))
    assert saved == ["w0/model.weights.h5"]
    for a, b in zip(results[0]["weights"], results[1]["weights"], strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=0)
    assert results[0]["final_val"] < 0.5 * results[0]["first_val"]
    assert results[0]["bytes"] > 0
