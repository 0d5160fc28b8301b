"""Late-multiply cost model, hybrid byte counts and the greedy placement (pure Python)."""

from __future__ import annotations

import numpy as np
import pytest

from pluto.hybrid import (
    LayerProfile,
    Mode,
    PlacementError,
    Shard,
    exchange_bytes,
    greedy_placement,
    shard_bounds,
    step_bytes,
)
from pluto.late_multiply import DenseShape, layer_cost, plan, totals


def test_layer_cost_matches_hand_computed_ring_bytes():
    cost = layer_cost(DenseShape("proj", n_in=1024, n_out=30000, rows=64), replicas=4)
    assert cost.grad_bytes == 1024 * 30000 * 4
    assert cost.factor_bytes == 64 * (1024 + 30000) * 4
    assert cost.bytes_plain == pytest.approx(1.5 * 1024 * 30000 * 4)  # 2(N-1)/N
    assert cost.bytes_late == pytest.approx(3 * 64 * (1024 + 30000) * 4)  # (N-1) x shard
    assert cost.pluto_rule and cost.late
    assert cost.bytes_chosen == cost.bytes_late


def test_large_batch_keeps_the_plain_path():
    cost = layer_cost(DenseShape("proj", n_in=1024, n_out=30000, rows=64 * 30), replicas=4)
    assert not cost.late and cost.bytes_chosen == cost.bytes_plain


def test_two_replicas_decide_exactly_by_plutos_rule():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n_in, n_out, rows = (int(v) for v in rng.integers(1, 400, size=3))
        cost = layer_cost(DenseShape("l", n_in, n_out, rows), replicas=2)
        assert cost.late == (rows * (n_in + n_out) < n_in * n_out)


def test_one_replica_never_exchanges():
    cost = layer_cost(DenseShape("l", 1000, 1000, 1), replicas=1)
    assert cost.bytes_plain == 0 and not cost.late


def test_totals_never_exceed_plain():
    costs = plan(
        [DenseShape("a", 512, 512, 8), DenseShape("b", 16, 16, 512), DenseShape("c", 64, 9, 3)],
        replicas=4,
    )
    plain, chosen = totals(costs)
    assert plain == pytest.approx(sum(c.bytes_plain for c in costs))
    assert chosen == pytest.approx(sum(min(c.bytes_plain, c.bytes_late) for c in costs))
    assert chosen < plain


def test_bad_shape_is_rejected():
    with pytest.raises(ValueError, match="rows"):
        DenseShape("l", 4, 4, 0)


def test_shard_bounds_cover_the_vocabulary_evenly():
    bounds = shard_bounds(30000, 4)
    assert bounds == [(0, 7500), (7500, 15000), (15000, 22500), (22500, 30000)]
    sizes = [hi - lo for lo, hi in shard_bounds(23, 4)]
    assert sum(sizes) == 23 and max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError):
        shard_bounds(3, 4)


def test_exchange_bytes_hand_computed():
    # Projection: all-gather 10 rows x 5 wide, reduce-scatter their gradient, 3 stats per row.
    got = exchange_bytes("projection", rows=10, width=5, replicas=4)
    assert got == pytest.approx(2 * 3 * (10 * 5 * 4) + 1.5 * (3 * 10 * 4 * 4))
    # Lookup: reduce-scatter the partial rows, all-gather their gradient and the ids.
    got = exchange_bytes(Shard.LOOKUP, rows=10, width=5, replicas=4)
    assert got == pytest.approx(2 * 3 * (10 * 5 * 4) + 3 * 10 * 4)
    assert exchange_bytes("projection", 10, 5, 1) == 0
    with pytest.raises(ValueError, match="projection, lookup"):
        exchange_bytes("columns", 10, 5, 4)


def test_step_bytes_hand_computed():
    got = step_bytes(total_weight_bytes=1000, sharded_weight_bytes=600, exchange=70, replicas=4)
    assert got.sync == pytest.approx(1.5 * 1000)
    assert got.hybrid == pytest.approx(1.5 * 400 + 70)
    assert got.exchange == 70


def _profiles() -> list[LayerProfile]:
    return [
        # A vocabulary projection: big weights, small inputs: communication-intensive.
        LayerProfile("proj", 120_000_000, 4_000_000, 5.0, Shard.PROJECTION, 64, 1000),
        # A GRU: few weights, most of the compute.
        LayerProfile("gru", 19_000_000, 8_000_000, 40.0),
        # A splittable layer whose activations cost more to exchange than its gradient.
        LayerProfile("small", 40_000, 1_000_000, 1.0, Shard.PROJECTION, 8000, 500),
    ]


def test_placement_shards_the_communication_intensive_layer_only():
    placement = greedy_placement(_profiles(), devices=4, memory_cap=2e9)
    modes = {a.layer: a.mode for a in placement.assignments}
    assert modes == {"proj": Mode.MODEL, "gru": Mode.DATA, "small": Mode.DATA}
    proj = placement.assignments[0]
    assert sorted(d for d, _ in proj.shards) == [0, 1, 2, 3]  # one shard per device
    assert sum(f for _, f in proj.shards) == pytest.approx(1.0)
    assert placement.bytes_per_step() < sum(a.bytes_dp for a in placement.assignments)
    assert max(placement.memory) <= 2e9
    assert placement.assignments[0].to_dict()["mode"] == "model"
    assert placement.assignments[0].bytes_mp == pytest.approx(
        _profiles()[0].model_parallel_bytes(4)
    )
    assert placement.assignments[1].bytes_mp is None
    assert _profiles()[0].to_dict()["shard"] == "projection"
    assert _profiles()[1].to_dict()["shard"] is None


def test_memory_cap_forces_sharding_even_when_exchange_costs_more():
    profiles = [
        LayerProfile("gru", 1_000_000, 1_000_000, 40.0),
        LayerProfile("wide", 100_000_000, 1_000, 1.0, Shard.PROJECTION, 10**6, 250),
    ]
    loose = greedy_placement(profiles, devices=4, memory_cap=1e12)
    assert loose.assignments[1].mode is Mode.DATA  # exchanging 1 GB of inputs is worse
    tight = greedy_placement(profiles, devices=4, memory_cap=200e6)
    assert tight.assignments[1].mode is Mode.MODEL  # 400 MB replicated does not fit
    assert max(tight.memory) <= 200e6


def test_placement_that_cannot_fit_raises():
    with pytest.raises(PlacementError, match="cap"):
        greedy_placement(_profiles(), devices=4, memory_cap=50e6)
    with pytest.raises(PlacementError):
        greedy_placement(_profiles(), devices=1, memory_cap=1e8)
