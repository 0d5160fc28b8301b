"""``bench/pluto_parallel.py --json`` at toy sizes prints exactly the issue's JSON shape."""

from __future__ import annotations

import json

import pytest

from tests.pluto.conftest import run_module

TOY = [
    "--vocab", "400", "--emb", "16", "--hidden", "32", "--attention", "8", "--batch", "4",
    "--small-vocab", "60", "--small-emb", "8", "--small-hidden", "16", "--small-batch", "2",
    "--repeats", "1", "--profile-repeats", "1", "--long-src", "6", "--long-tgt", "8",
    "--select-groups", "2", "--generate-dialogues", "1",
]  # fmt: skip


@pytest.mark.slow
def test_bench_prints_the_issue_shape():
    out = json.loads(run_module("bench.pluto_parallel", "--json", *TOY, timeout=300))
    assert set(out) == {"late_multiply", "hybrid", "xla", "recompute", "binarized"}
    late = out["late_multiply"]
    assert set(late) == {"bytes_plain", "bytes_late", "max_abs_grad_diff", "layers"}
    assert isinstance(late["bytes_plain"], int) and isinstance(late["bytes_late"], int)
    assert late["bytes_late"] <= late["bytes_plain"]
    assert late["max_abs_grad_diff"] < 1e-5
    assert {layer["name"] for layer in late["layers"]} >= {"output_proj", "combine", "bridge"}
    hybrid = out["hybrid"]
    assert set(hybrid) == {
        "bytes_per_step_sync",
        "bytes_per_step_hybrid",
        "max_abs_grad_diff",
        "projected_speedup_pcie3",
        "placement",
    }
    assert isinstance(hybrid["bytes_per_step_sync"], int)
    assert isinstance(hybrid["bytes_per_step_hybrid"], int)
    assert hybrid["max_abs_grad_diff"] < 1e-5
    assert isinstance(hybrid["projected_speedup_pcie3"], float)
    assert {p["mode"] for p in hybrid["placement"]} <= {"data", "model"}
    assert set(out["xla"]) == {"train_step_ms"}
    assert set(out["xla"]["train_step_ms"]) == {"plain", "xla"}
    assert all(v > 0 for v in out["xla"]["train_step_ms"].values())
    assert set(out["recompute"]) == {"peak_bytes"}
    assert set(out["recompute"]["peak_bytes"]) == {"plain", "recompute"}
    assert all(isinstance(v, int) for v in out["recompute"]["peak_bytes"].values())
    binarized = out["binarized"]
    assert set(binarized) == {"size_ratio", "r10@1"}
    assert binarized["size_ratio"] > 1
    assert set(binarized["r10@1"]) == {"fp32", "binary"}
    assert all(0 <= v <= 1 for v in binarized["r10@1"].values())
