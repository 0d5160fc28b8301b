"""The convergence benchmark's projection (``bench/convergence.py``): pure functions only."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from bench.convergence import BenchConfig, reuse_single, summarize


def _run(replicas: int, history: list, steps: int, allreduce_steps: list[int]) -> dict:
    return {
        "replicas": replicas,
        "history": history,
        "steps": steps,
        "allreduces": len(allreduce_steps),
        "allreduce_steps": allreduce_steps,
        "examples_per_step": 32 * replicas,
        "final_val_loss": history[-1][1],
    }


def test_projection_counts_the_allreduces_done_by_the_target_step():
    runs = {
        "single": _run(1, [(40, 5.0), (80, 4.5), (120, 4.4)], 120, []),
        # Averages at 16 and 32 come before the target (reached at 32); 48 and 50 after.
        "ma": _run(4, [(16, 4.8), (32, 4.45), (48, 4.3), (50, 4.3)], 50, [16, 32, 48, 50]),
        "sync": _run(4, [(10, 4.9), (20, 4.49), (30, 4.4)], 30, list(range(1, 31))),
    }
    out = summarize(runs, BenchConfig(), target=4.5)["runs"]
    assert out["single"]["steps_to_target"] == 80
    assert out["ma"]["steps_to_target"] == 32
    assert out["ma"]["allreduces_to_target"] == 2
    assert out["sync"]["allreduces_to_target"] == 20
    allreduce_s = 1.5 * 235e6 / 12e9  # 4 replicas' ring factor, PCIe 3.0 x16
    single_s = 80 * 8.3e-3
    assert out["ma"]["projected_speedup"] == pytest.approx(
        single_s / (32 * 8.3e-3 + 2 * allreduce_s)
    )
    assert out["sync"]["projected_speedup"] == pytest.approx(
        single_s / (20 * 8.3e-3 + 20 * allreduce_s)
    )
    assert out["ma"]["step_speedup_vs_single"] == pytest.approx(80 / 32)


def test_a_run_that_never_reaches_the_target_has_no_projection():
    runs = {
        "single": _run(1, [(40, 5.0), (80, 4.5)], 80, []),
        "ma_bmuf": _run(4, [(16, 5.2), (32, 4.9)], 32, [16, 32]),
    }
    out = summarize(runs, BenchConfig(), target=4.5)["runs"]["ma_bmuf"]
    assert out["steps_to_target"] is None
    assert out["projected_speedup"] is None


def test_reuse_single_takes_a_matching_run_and_refuses_other_settings(tmp_path, capsys):
    cfg = BenchConfig(single_steps=40)
    single = _run(1, [(40, 5.0)], 40, [])
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps({"config": asdict(cfg), "runs": {"single": single}}))
    assert reuse_single(path, cfg)["history"] == [[40, 5.0]]
    with pytest.raises(SystemExit) as err:
        reuse_single(path, BenchConfig(single_steps=40, hidden=64))
    assert err.value.code == 2
    assert f"{path}:1:" in capsys.readouterr().err
