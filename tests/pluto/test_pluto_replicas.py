"""Sync, model averaging and BMUF on three logical CPU devices (run in a subprocess)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.pluto.conftest import REPLICAS, arrays

LR = 0.1


def test_sync_step_matches_single_device_step_on_global_batch(replica_checks):
    expected = [
        w - LR * g for w, g in zip(replica_checks["w0"], replica_checks["grad_global"], strict=True)
    ]
    after = arrays(replica_checks["sync_after"])
    assert len(after) == REPLICAS
    for rep in after:
        for got, want in zip(rep, expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_local_step_uses_only_the_replicas_own_shard(replica_checks):
    # One local SGD step on replica r is w0 - lr * grad(shard r): no cross-replica aggregation.
    local = arrays(replica_checks["ma_one_local"])
    for r, rep in enumerate(local):
        grads = [np.asarray(g) for g in replica_checks["grad_shards"][r]]
        for got, w0, g in zip(rep, replica_checks["w0"], grads, strict=True):
            np.testing.assert_allclose(got, w0 - LR * g, rtol=1e-5, atol=1e-6)


def test_local_steps_diverge_before_averaging(replica_checks):
    before = arrays(replica_checks["ma_before"])
    assert not replica_checks["ma_in_sync_before"]
    for r in range(1, REPLICAS):
        assert max(np.abs(a - b).max() for a, b in zip(before[0], before[r], strict=True)) > 1e-4


def test_every_replica_holds_the_mean_after_averaging(replica_checks):
    before = arrays(replica_checks["ma_before"])
    after = arrays(replica_checks["ma_after"])
    mean = [np.mean([rep[i] for rep in before], axis=0) for i in range(len(before[0]))]
    for rep in after:
        for got, want in zip(rep, mean, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_sync_weights_for_save_leaves_identical_replicas(replica_checks):
    reps = arrays(replica_checks["save_sync"])
    for rep in reps[1:]:
        for a, b in zip(reps[0], rep, strict=True):
            np.testing.assert_array_equal(a, b)


def test_bmuf_matches_hand_computed_block_update(replica_checks):
    mu = replica_checks["bmuf_momentum"]
    assert mu == pytest.approx(1 - 1 / REPLICAS)
    w_g = [np.asarray(w) for w in replica_checks["w0"]]
    delta = [np.zeros_like(w) for w in w_g]
    for block in replica_checks["bmuf"]:
        before = arrays(block["before"])
        mean = [np.mean([rep[i] for rep in before], axis=0) for i in range(len(w_g))]
        start = [g + mu * d for g, d in zip(w_g, delta, strict=True)]  # where this block started
        delta = [mu * d + 1.0 * (m - s) for d, m, s in zip(delta, mean, start, strict=True)]
        w_g = [g + d for g, d in zip(w_g, delta, strict=True)]
        start = [g + mu * d for g, d in zip(w_g, delta, strict=True)]  # Nesterov look-ahead
        for rep in arrays(block["after"]):
            for got, want in zip(rep, start, strict=True):
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_bmuf_local_sgd_momentum_on_a_quadratic_matches_hand_computed_blocks(replica_checks):
    # Loss 0.5 * w^2, so the gradient is w. Local learners: SGD, momentum 0.5, rate 0.2 (the
    # configured Adam is replaced); K = 2; block momentum 0.6 ramped over 2 blocks (0, 0.3, 0.6),
    # block rate 0.9, Nesterov restarts. Every replica sees the same data, so the mean is w.
    assert replica_checks["quad_kind"] == "sgd"
    assert replica_checks["quad_lr"] == pytest.approx(0.2)
    beta, lr, block_lr = 0.5, 0.2, 0.9
    mus = [0.0, 0.3, 0.6]
    w, m = 1.5, 0.0  # the local weight and momentum buffer (kept across blocks)
    w_g, delta, start, mu_start = 1.5, 0.0, 1.5, 0.0
    expected = []
    for block in range(3):
        for _ in range(2):
            m = beta * m + w
            w = w - lr * m
            expected.append(w)
        mu = mus[block]
        assert start == pytest.approx(w_g + mu_start * delta)
        delta = mu * delta + block_lr * (w - start)
        w_g = w_g + delta
        start = w = w_g + mu * delta
        mu_start = mu
        expected[-1] = w
    got = replica_checks["quad"]
    for step, want in enumerate(expected):
        assert got[step] == pytest.approx([want] * REPLICAS, rel=1e-5), step


@pytest.mark.parametrize("policy", ["local", "average", "reset"])
def test_averaging_handles_the_optimizer_state_as_its_policy_says(replica_checks, policy):
    got = replica_checks["slot_policies"][policy]
    ring = 2 * (REPLICAS - 1) / REPLICAS * replica_checks["param_bytes"]
    for before, after in zip(got["before"], got["after"], strict=True):  # one momentum per var
        before, after = np.asarray(before), np.asarray(after)  # [replica, ...]
        # Different shards gave the replicas different momenta, so every policy is visible.
        assert np.abs(before[0] - before[1]).max() > 1e-4
        if policy == "local":
            np.testing.assert_array_equal(after, before)
        elif policy == "average":
            mean = before.mean(axis=0)
            for rep in after:
                np.testing.assert_allclose(rep, mean, rtol=1e-5, atol=1e-7)
        else:
            np.testing.assert_array_equal(after, np.zeros_like(before))
    weights = arrays(got["weights_after"])
    for rep in weights[1:]:  # the weights are averaged whatever the policy
        for a, b in zip(rep, weights[0], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)
    # The momentum (one slot per weight) travels with the weights only when averaged.
    assert got["bytes"] == pytest.approx(ring * (2 if policy == "average" else 1))


def test_bmuf_config_rejects_bad_values():
    from pluto.averaging import BmufConfig

    for bad in (
        {"block_momentum": 1.0},
        {"block_lr": 0.0},
        {"local_momentum": -0.1},
        {"local_lr": 0.0},
        {"momentum_warmup_blocks": -1},
    ):
        with pytest.raises(ValueError):
            BmufConfig(**bad)
    assert [BmufConfig(momentum_warmup_blocks=4).momentum_at(b, 4) for b in range(6)] == [
        0.0,
        0.1875,
        0.375,
        0.5625,
        0.75,
        0.75,
    ]


def test_bytes_follow_the_ring_allreduce_model(replica_checks):
    ring = 2 * (REPLICAS - 1) / REPLICAS * replica_checks["param_bytes"]
    assert replica_checks["sync_bytes"] == pytest.approx(ring)  # one step, one all-reduce
    assert replica_checks["ma_bytes"] == pytest.approx(ring)  # three local steps, one average


def test_late_logical_device_request_raises_clear_error(replica_checks):
    assert "already initialized" in replica_checks["late_config_error"]


def test_throughput_prerun_feeds_batch_size_selection(replica_checks):
    assert replica_checks["throughput"] > 0
    assert replica_checks["chosen_batch"] in (1, 2)
