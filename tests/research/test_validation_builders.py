import pytest

from alime.evaluation.heldout import heldout_lines, select_heldout
from alime.kb.formats import EcommerceRow
from research.validation import (
    NegativeKind,
    ValidationOptions,
    build_groups,
    response_key,
    response_pool,
    seen_in_training,
)


def test_bm25_negatives_are_retrieved_deduplicated_and_never_the_truth(rows):
    pool = response_pool(rows + [EcommerceRow(1, ("x",), "保证  正品", 99)])
    assert len(pool) == len(rows)  # the respelled duplicate is dropped
    held = rows[:3]
    built = build_groups(held, pool, str.split, ValidationOptions(seed=1))
    assert len(built.groups) == 3
    for d, g in zip(held, built.groups, strict=True):
        assert g.responses[g.true_index] == d.response and g.turns == d.turns
        assert len(g.responses) == 10 and len(set(g.responses)) == 10
        wrong = [r for i, r in enumerate(g.responses) if i != g.true_index]
        assert all(response_key(r) != response_key(d.response) for r in wrong)
    # "什么 时候 发货" retrieves the replies sharing words with it first.
    first = built.groups[0]
    assert "三 到 五 天 到货" in first.responses and "发货 前 可以 改 地址" in first.responses


def test_positions_are_seeded(rows):
    pool = response_pool(rows)
    one = build_groups(rows, pool, str.split, ValidationOptions(seed=5))
    two = build_groups(rows, pool, str.split, ValidationOptions(seed=5))
    assert [g.true_index for g in one.groups] == [g.true_index for g in two.groups]
    assert len({g.true_index for g in one.groups}) > 1


def test_random_negatives_and_fills(rows):
    pool = response_pool(rows)
    rnd = build_groups(rows[:2], pool, str.split, ValidationOptions(NegativeKind.RANDOM))
    assert rnd.random_fills == 0 and all(len(set(g.responses)) == 10 for g in rnd.groups)
    # A query sharing no word with any response: BM25 finds nothing, all 9 are random fills.
    lonely = [EcommerceRow(1, ("喂",), "好的", 1)]
    assert build_groups(lonely, pool, str.split).random_fills == 9


def test_pool_too_small(rows):
    with pytest.raises(ValueError, match="pool too small"):
        build_groups(rows[:1], response_pool(rows[:3]), str.split)


def test_heldout_lines_from_training_metadata(tmp_path, rows):
    data = tmp_path / "dev.txt"
    meta = {
        "data_files": [str(data)],
        "split": {"valid_dialogue_lines": [[str(data), 2], [str(data), 5], ["other", 3]]},
    }
    lines = heldout_lines(meta, data)
    assert lines == {2, 5}
    assert [r.line for r in select_heldout(rows, lines)] == [2, 5]
    by_file = {"data_files": [str(data)], "split": {"valid_dialogue_lines": {str(data): [2, 5]}}}
    assert heldout_lines(by_file, data) == {2, 5}
    assert heldout_lines({"valid_files": [str(data)]}, data) is None
    with pytest.raises(ValueError, match="does not list held-out"):
        heldout_lines({"data_files": [str(data)], "split": {"valid_dialogue_lines": None}}, data)
    with pytest.raises(ValueError, match="does not list held-out"):
        heldout_lines({"data_files": ["elsewhere.txt"]}, data)


def test_seen_in_training_finds_the_same_session_sampled_twice():
    train = [EcommerceRow(1, ("a", "b", "c"), "d", 1)]
    held = [
        EcommerceRow(1, ("a",), "b", 2),
        EcommerceRow(1, ("a", "b"), "c", 3),
        EcommerceRow(1, ("b",), "c", 4),
        EcommerceRow(1, ("a", "b", "c"), "d", 5),
        EcommerceRow(1, ("a", "x"), "c", 6),
    ]
    assert seen_in_training(held, train) == {2, 3, 5}


def test_mixed_groups_keep_the_best_bm25_hits_and_add_random_ones(rows):
    pool = response_pool(rows)
    full_build = build_groups(rows[:1], pool, str.split, ValidationOptions(seed=1))
    full = full_build.groups[0]
    mixed = build_groups(rows[:1], pool, str.split, ValidationOptions(seed=1, random_negatives=3))
    g = mixed.groups[0]
    assert len(g.responses) == 10 and len(set(g.responses)) == 10
    assert g.responses[g.true_index] == rows[0].response
    # BM25 finds one reply sharing words with the query here: it comes first in both groups
    hits = 9 - full_build.random_fills
    assert hits == 1
    bm25_order = [r for i, r in enumerate(full.responses) if i != full.true_index]
    mixed_wrong = [r for i, r in enumerate(g.responses) if i != g.true_index]
    assert mixed_wrong[:hits] == bm25_order[:hits]
    # only BM25's shortfall among the 6 it was asked for counts as fills, not the 3 random ones
    assert mixed.random_fills == 6 - hits
    with pytest.raises(ValueError, match="random_negatives must be in"):
        ValidationOptions(random_negatives=10)


def _wrong(group):
    return [r for i, r in enumerate(group.responses) if i != group.true_index]


def test_context_negatives_are_replies_to_the_best_matching_contexts(rows):
    pool = response_pool(rows)
    # a second dialogue with the held-out one's exact context but another reply, and one whose
    # reply equals the held-out reply (it must be skipped like the dialogue itself)
    twin = EcommerceRow(1, ("在 吗", "什么 时候 发货"), "今天 就 发", 20)
    same_reply = EcommerceRow(1, ("什么 时候 发货",), "付款 后 48 小时 内 发货", 21)
    sources = [*rows, twin, same_reply]
    built = build_groups(
        rows[:1], pool, str.split, ValidationOptions(NegativeKind.CONTEXT, seed=1), sources=sources
    )
    group = built.groups[0]
    assert group.responses[group.true_index] == rows[0].response and len(set(group.responses)) == 10
    wrong = _wrong(group)
    # the exact context ranks first, then "什么 时候 到货" (two shared words), then the
    # contexts sharing only "吗"; the rest are random fills
    assert wrong[:2] == ["今天 就 发", "三 到 五 天 到货"]
    assert set(wrong[2:6]) == {"满 99 包邮", "首页 领 优惠券", "保证 正品", "送 小礼物"}
    assert built.random_fills == 3
    # the response index instead ranks replies sharing words with the query
    by_reply = _wrong(build_groups(rows[:1], pool, str.split, ValidationOptions(seed=1)).groups[0])
    assert "发货 前 可以 改 地址" in by_reply[:2] and "发货 前 可以 改 地址" not in wrong[:6]


def test_mixed_context_response_and_random_negatives(rows):
    pool = response_pool(rows)
    options = ValidationOptions(seed=1, random_negatives=3, context_negatives=3)
    assert options.retrieved_counts() == (3, 3)
    built = build_groups(rows[:1], pool, str.split, options, sources=rows)
    wrong = _wrong(built.groups[0])
    assert len(set(wrong)) == 9 and rows[0].response not in wrong
    assert wrong[0] == "三 到 五 天 到货"  # the best context hit comes first
    assert "发货 前 可以 改 地址" in wrong[3:6]  # then the response index's hits
    assert ValidationOptions(NegativeKind.CONTEXT, random_negatives=2).retrieved_counts() == (7, 0)
    assert ValidationOptions(NegativeKind.RANDOM).retrieved_counts() == (0, 0)
    with pytest.raises(ValueError, match="context_negatives must be in"):
        ValidationOptions(random_negatives=3, context_negatives=7)
    with pytest.raises(ValueError, match="bm25 groups only"):
        ValidationOptions(NegativeKind.CONTEXT, context_negatives=2)
