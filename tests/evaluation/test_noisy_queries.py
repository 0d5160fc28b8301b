"""The noisy-query builder: deterministic for a seed, every query differs from its question."""

import numpy as np

from alime.evaluation.noisy_queries import (
    build_noisy_queries,
    perturb,
    read_variants,
    split_held_out,
)
from alime.evaluation.retrieval import DEFAULT_VARIANTS, ranking_metrics
from tests.conftest import QA_PAIRS

PAIRS = [(i, q.split()) for i, (q, _) in enumerate(QA_PAIRS * 3, start=1)]


def test_same_seed_same_queries_other_seed_other_queries():
    variants = read_variants(*DEFAULT_VARIANTS)
    a = build_noisy_queries(PAIRS, variants, 30, seed=5)
    b = build_noisy_queries(PAIRS, variants, 30, seed=5)
    c = build_noisy_queries(PAIRS, variants, 30, seed=6)
    assert a == b
    assert [q.query for q in a] != [q.query for q in c]
    for q in a:
        assert q.query != q.original.replace(" ", "")
        assert q.perturbations


def test_split_is_deterministic_disjoint_and_skips_duplicates_and_short_questions():
    pairs = [
        (1, ["a", "b", "c", "d"]),
        (2, ["a", "b", "c", "d"]),
        (3, ["x", "y"]),
        *[(i, [f"w{i}", "b", "c", "d"]) for i in range(4, 24)],
    ]
    dev, test = split_held_out(pairs, seed=1)
    assert (dev, test) == split_held_out(pairs, seed=1)
    ids = [i for i, _ in dev + test]
    assert sorted(ids) == list(range(4, 24))  # 1 and 2 duplicate each other, 3 is too short
    assert not {i for i, _ in dev} & {i for i, _ in test}


def test_synonym_rewrite_uses_the_variant_table():
    rng = np.random.default_rng(0)
    out, applied = perturb(["快递", "到", "了"], rng, {"快递": ("物流",)}, n_edits=4)
    assert "synonym" in applied and "物流" in "".join(out)


def test_ranking_metrics_hand_computed():
    m = ranking_metrics([1, 3, None, 10, 7])
    assert m == {
        "recall@1": 0.2,
        "recall@5": 0.4,
        "recall@10": 0.8,
        "mrr": round((1 + 1 / 3 + 1 / 10 + 1 / 7) / 5, 4),
    }


def test_register_retrieval_adds_the_subcommand():
    import argparse

    from alime.commands.evaluate_retrieval import cmd_evaluate_retrieval, register_retrieval

    parser = argparse.ArgumentParser()
    register_retrieval(parser.add_subparsers())
    args = parser.parse_args(["retrieval", "--json", "--queries", "50", "--seed", "3"])
    assert args.func is cmd_evaluate_retrieval and args.json and args.queries == 50
    assert args.fusion == "tune" and args.seed == 3
