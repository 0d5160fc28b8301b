"""Routing metrics on hand-built cases, and the labelled set's guarantees."""

import numpy as np
import pytest

from alime.evaluation.routing import (
    CHITCHAT,
    HELD_OUT,
    IN_KB,
    LabelledQuery,
    Outcomes,
    QueryCandidates,
    RoutingSettings,
    best_balanced_point,
    build_routing_set,
    feature_decider,
    outcomes,
    rerank_decider,
    routing_point,
)
from alime.routing import Feature


def _outcomes():
    # in-KB: 0.9 right, 0.6 wrong answer, 0.3 right; held out 0.7; chit-chat 0.2
    return Outcomes(
        score=np.array([0.9, 0.6, 0.3, 0.7, 0.2]),
        in_kb=np.array([True, True, True, False, False]),
        kind=np.array([IN_KB, IN_KB, IN_KB, HELD_OUT, CHITCHAT]),
        right=np.array([True, False, True, False, False]),
    )


def test_routing_point_by_hand():
    p = routing_point(_outcomes(), 0.6)  # answered: 0.9, 0.6, 0.7
    assert p.in_kb_answered == pytest.approx(2 / 3) and p.in_kb_right == pytest.approx(1 / 3)
    assert p.in_kb_precision == pytest.approx(1 / 2)
    assert p.out_routed == pytest.approx(1 / 2)
    assert p.held_out_routed == 0.0 and p.chitchat_routed == 1.0
    assert p.kb_precision == pytest.approx(1 / 3)
    assert p.balanced == pytest.approx((1 / 3 + 1 / 2) / 2)
    top = routing_point(_outcomes(), 0.95)
    assert top.in_kb_answered == 0.0 and top.in_kb_precision is None and top.kb_precision is None
    assert top.out_routed == 1.0 and top.balanced == 0.5


def test_choose_threshold_maximizes_the_balanced_rate():
    # T=0.9: right 1/3, routed 1 -> 0.667; T=0.3: right 2/3, routed 1/2 -> 0.583
    best = best_balanced_point(_outcomes())
    assert best.threshold == 0.9 and best.balanced == pytest.approx(2 / 3)


def _q(kind, feats, correct):
    return QueryCandidates(
        LabelledQuery("q", kind, False),
        {f: np.array(v, float) for f, v in feats.items()},
        np.array(correct),
    )


def test_deciders_pick_their_candidate():
    q = _q(IN_KB, {Feature.RERANK: [-0.5, -2.0], Feature.CHARS: [0.1, 0.9]}, [False, True])
    assert rerank_decider(q) == (-0.5, 0)
    assert feature_decider(Feature.CHARS)(q) == (0.9, 1)
    o = outcomes([q], feature_decider(Feature.CHARS))
    assert o.right.tolist() == [True] and outcomes([q], rerank_decider).right.tolist() == [False]
    empty = _q(CHITCHAT, {Feature.RERANK: [], Feature.CHARS: []}, [])
    assert outcomes([empty], rerank_decider).score[0] == -np.inf


ROWS = [(f"问题 {i} 怎么 发货 呢", f"答案 {i}") for i in range(40)] + [
    (f"问题 {i} 在 吗 亲", "您好") for i in range(40, 60)
]


def _set(seed=7):
    s = RoutingSettings(seed=seed, held_out_share=0.25, n_in_kb=20, n_held_out=6, n_chitchat=4)
    variants = {"发货": ("发出",), "怎么": ("如何",)}
    return build_routing_set(
        ROWS,
        ["你喜欢猫吗", "问题 1 怎么 发货 呢", "谁是光明", "你喜欢猫吗"],
        str.split,
        variants,
        s,
    )


def test_routing_set_holds_out_answers_the_kb_cannot_give():
    data = _set()
    kept_answers = {a for _, a in data.kept}
    assert data.held_out == len(ROWS) - len(data.kept) == 15  # 25% of 60 eligible
    assert "您好" in kept_answers  # a shared answer is never held out
    by_kind = {k: [q for q in data.queries if q.kind == k] for k in (IN_KB, HELD_OUT, CHITCHAT)}
    assert by_kind[IN_KB] and all(q.answer in kept_answers for q in by_kind[IN_KB])
    held_questions = {q for q, _ in ROWS} - {q for q, _ in data.kept}
    assert by_kind[HELD_OUT] and all(q.source in held_questions for q in by_kind[HELD_OUT])
    # chit-chat: deduplicated, and a KB question is never called out-of-KB
    assert sorted(q.query for q in by_kind[CHITCHAT]) == ["你喜欢猫吗", "谁是光明"]
    for qs in by_kind.values():
        assert abs(sum(q.tune for q in qs) - sum(not q.tune for q in qs)) <= 1


def test_routing_set_is_reproducible():
    assert _set().queries == _set().queries
    assert _set().queries != _set(seed=8).queries
