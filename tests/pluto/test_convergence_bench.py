"""The convergence benchmark's projection (``bench/convergence.py``): pure functions only."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from bench.convergence import (
    BenchConfig,
    optimizer_of,
    payload_factor,
    reuse_single,
    summarize,
    target_of,
)


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


ALLREDUCE_S = 1.5 * 235e6 / 12e9  # one all-reduce of the AliMe-sized weights, PCIe 3.0 x16


def test_ma_is_also_judged_against_the_single_run_with_its_optimizer_and_budgets():
    adam = _run(1, [(40, 5.0), (80, 4.6), (120, 4.5), (160, 4.4)], 160, [])
    sgd = _run(1, [(40, 4.8), (80, 4.4), (120, 4.2), (160, 4.1)], 160, [])
    sgd["optimizer"] = "sgd"
    ma = _run(4, [(16, 4.7), (32, 4.3), (48, 4.12), (64, 4.0)], 64, [16, 32, 48, 64])
    ma["optimizer"] = "sgd"
    out = summarize({"single": adam, "single_sgd": sgd, "ma": ma}, BenchConfig(), target=4.444)
    # The top-level figures are against the best single run (single_sgd, the lower final loss):
    # it reaches the given target 4.444 at 80 steps, MA at 32 steps + 2 averages.
    assert out["reference_single"] == "single_sgd"
    assert out["runs"]["ma"]["projected_speedup"] == pytest.approx(
        80 * 8.3e-3 / (32 * 8.3e-3 + 2 * ALLREDUCE_S)
    )
    # Against the Adam single run (target 1% above 4.4): 160 steps vs 32 steps + 2 averages.
    adam_ref = out["against_single"]["single"]
    assert adam_ref["single_steps_to_target"] == 160
    assert adam_ref["runs"]["ma"]["projected_speedup"] == pytest.approx(
        160 * 8.3e-3 / (32 * 8.3e-3 + 2 * ALLREDUCE_S)
    )
    # Against single_sgd (same optimizer, target 1.01 x 4.1 = 4.141): 160 vs 48 steps, 3 averages.
    same = out["against_single"]["single_sgd"]
    assert same["target_val_loss"] == pytest.approx(4.141)
    assert same["single_steps_to_target"] == 160
    assert same["runs"]["ma"]["steps_to_target"] == 48
    want = 160 * 8.3e-3 / (48 * 8.3e-3 + 3 * ALLREDUCE_S)
    assert out["runs"]["ma"]["same_optimizer_single"] == "single_sgd"
    assert out["runs"]["ma"]["projected_speedup_same_optimizer"] == pytest.approx(want)
    assert out["best_single"] == "single_sgd"  # the lower final loss
    assert out["runs"]["ma"]["projected_speedup_vs_best_single"] == pytest.approx(want)
    # Budgets 40, 80, 120, 160: at 80 the target is 1.01 x 4.4 = 4.444, reached at 80 by the
    # single run and at 32 by MA (2 averages).
    by = {b["budget"]: b for b in same["by_budget"]}
    assert sorted(by) == [40, 80, 120, 160]
    assert by[80]["single_steps_to_target"] == 80
    assert by[80]["ma"]["steps_to_target"] == 32
    assert by[80]["ma"]["projected_speedup"] == pytest.approx(
        80 * 8.3e-3 / (32 * 8.3e-3 + 2 * ALLREDUCE_S)
    )


def test_averaged_optimizer_state_is_charged_as_extra_bytes():
    assert payload_factor("ma", BenchConfig(ma_optimizer="sgd", ma_slots="average")) == 2.0
    assert payload_factor("ma", BenchConfig(ma_optimizer="adam", ma_slots="average")) == 3.0
    assert payload_factor("ma", BenchConfig(ma_optimizer="sgd", ma_slots="reset")) == 1.0
    assert payload_factor("ma_bmuf", BenchConfig(ma_slots="average")) == 1.0
    runs = {
        "single": _run(1, [(40, 5.0), (80, 4.5)], 80, []),
        "ma": _run(4, [(16, 4.8), (32, 4.45)], 32, [16, 32]),
    }
    runs["ma"]["payload_factor"] = 2.0
    out = summarize(runs, BenchConfig(), target=4.5)["runs"]["ma"]
    assert out["projected_speedup"] == pytest.approx(
        80 * 8.3e-3 / (32 * 8.3e-3 + 2 * 2 * ALLREDUCE_S)
    )


def test_every_run_trains_with_its_stated_optimizer_and_rate():
    cfg = BenchConfig(
        lr=2e-3,
        sgd_lr=0.025,
        ma_optimizer="sgd",
        ma_lr_scaling="linear",
        replicas=4,
        bmuf_local_lr=0.03,
    )
    assert optimizer_of("single", cfg) == ("adam", 2e-3)
    assert optimizer_of("single_sgd", cfg) == ("sgd", 0.025)
    assert optimizer_of("ma", cfg) == ("sgd", 0.025)  # scaled by the trainer, not here
    assert optimizer_of("sync", cfg) == ("adam", 2e-3)  # sync_optimizer's default
    assert optimizer_of("ma", BenchConfig(ma_optimizer="adam", lr=1e-3)) == ("adam", 1e-3)
    assert optimizer_of("ma_bmuf", cfg) == ("sgd", 0.03)
    kind, rate = optimizer_of("single_sgd_scaled", cfg)  # ma's rate on one replica
    assert (kind, rate) == ("sgd", pytest.approx(0.1))
    kind, rate = optimizer_of("single_sgd_scaled", BenchConfig(sgd_lr=0.025, ma_lr_scaling="sqrt"))
    assert rate == pytest.approx(0.05)


def test_the_best_rule_targets_the_lowest_loss_of_a_single_run_that_overfits():
    # One replica bottoms out at 4.3 (step 120) and then overfits to 4.6.
    single = _run(1, [(40, 5.0), (80, 4.4), (120, 4.3), (160, 4.6)], 160, [])
    ma = _run(4, [(16, 4.9), (32, 4.5), (48, 4.34), (64, 4.7)], 64, [16, 32, 48, 64])
    assert target_of(single["history"], "final") == pytest.approx(1.01 * 4.6)
    assert target_of(single["history"], "best") == pytest.approx(1.01 * 4.3)
    out = summarize({"single": single, "ma": ma}, BenchConfig(target_rule="best"), target=4.343)
    ref = out["against_single"]["single"]
    assert ref["target_val_loss"] == pytest.approx(4.343)
    assert ref["single_steps_to_target"] == 120
    assert ref["runs"]["ma"]["steps_to_target"] == 48
    # At the 80-step budget the curve's lowest point is 4.4: target 4.444, MA at 48 (4.34).
    by = {b["budget"]: b for b in ref["by_budget"]}
    assert by[80]["target_val_loss"] == pytest.approx(4.444)
    assert by[80]["ma"]["steps_to_target"] == 48
    # The final rule would have taken the overfit end: 4.646, crossed by MA at 32.
    final = summarize({"single": single, "ma": ma}, BenchConfig(), target=4.646)
    assert final["against_single"]["single"]["runs"]["ma"]["steps_to_target"] == 32


def test_ma_is_judged_against_the_best_tuned_single_run_with_its_optimizer():
    single = _run(1, [(40, 5.0), (80, 4.6), (120, 4.4)], 120, [])
    tuned = _run(1, [(40, 4.8), (80, 4.3), (120, 4.2)], 120, [])  # Adam at MA's rate
    for run in (single, tuned):
        run["optimizer"] = "adam"
    ma = _run(4, [(16, 4.7), (32, 4.35), (48, 4.3), (64, 4.22)], 64, [16, 32, 48, 64])
    ma["optimizer"] = "adam"
    out = summarize({"single": single, "single_scaled": tuned, "ma": ma}, BenchConfig(), 4.444)
    assert out["best_single"] == "single_scaled"
    assert out["runs"]["ma"]["same_optimizer_single"] == "single_scaled"
    # single_scaled's target 1.01 x 4.2 = 4.242 at 120 steps; MA reaches it at 64, 4 averages.
    want = 120 * 8.3e-3 / (64 * 8.3e-3 + 4 * ALLREDUCE_S)
    assert out["runs"]["ma"]["projected_speedup_same_optimizer"] == pytest.approx(want)


def test_single_scaled_is_adam_at_mas_scaled_rate():
    cfg = BenchConfig(lr=2e-3, replicas=4, ma_lr_scaling="sqrt")
    kind, rate = optimizer_of("single_scaled", cfg)
    assert (kind, rate) == ("adam", pytest.approx(4e-3))
    kind, rate = optimizer_of("single_scaled", BenchConfig(lr=2e-3, ma_lr_scaling="linear"))
    assert rate == pytest.approx(8e-3)


def test_rejudge_recomputes_an_earlier_runs_figures_without_training(tmp_path):
    from bench.convergence import main

    single = _run(1, [(40, 5.0), (80, 4.4), (120, 4.3), (160, 4.6)], 160, [])
    ma = _run(4, [(16, 4.9), (32, 4.5), (48, 4.34), (64, 4.7)], 64, [16, 32, 48, 64])
    cfg = asdict(BenchConfig())
    cfg.pop("target_rule")  # a JSON from before the rule existed
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps({"config": cfg, "runs": {"single": single, "ma": ma}}))
    assert main(["--rejudge", str(path), "--target-rule", "best"]) == 0
    out = json.loads(path.read_text())
    assert out["config"]["target_rule"] == "best"
    assert out["reference_single"] == "single"
    assert out["target_val_loss"] == pytest.approx(1.01 * 4.3)
    assert out["runs"]["ma"]["steps_to_target"] == 48
    assert out["runs"]["single"]["history"] == [list(h) for h in single["history"]]
    assert (tmp_path / "earlier.png").exists()
    # Without --target-rule the JSON's rule stays; given explicitly, even the default one wins.
    assert main(["--rejudge", str(path)]) == 0
    assert json.loads(path.read_text())["config"]["target_rule"] == "best"
    assert main(["--rejudge", str(path), "--target-rule", "final"]) == 0
    out = json.loads(path.read_text())
    assert out["config"]["target_rule"] == "final"
    assert out["target_val_loss"] == pytest.approx(1.01 * 4.6)
