"""The research probes: anti_bm25 is minus bm25, match needs a matcher, weighted sums, and
``python -m research.select`` beside the product's scorers."""

import json

import pytest

from alime.evaluation.corpus import read_groups
from alime.evaluation.scorers import ScorerEnv, ScorerName
from alime.evaluation.selection import score_groups, selection_report
from research.scorers import WeightedSum, match_scorer, probes


class Fixed:
    """A scorer that returns fixed scores."""

    def __init__(self, values):
        self.values = values

    def score(self, query, context, answers):
        return self.values


def _env(groups):
    return ScorerEnv([r for g in groups for r in g.responses], str.split, str.split)


def test_anti_bm25_is_minus_bm25(groups_file):
    groups = read_groups(groups_file)
    env = _env(groups)
    table = {"bm25": env.get(ScorerName.BM25), "anti_bm25": probes(None)["anti_bm25"].build(env)}
    scored = score_groups(groups, table, progress=False)
    for g in scored:
        assert g.scores["anti_bm25"] == [-x for x in g.scores["bm25"]]
        assert max(g.scores["bm25"]) > min(g.scores["bm25"])  # not all ties: the sign matters
    report = selection_report(scored, ["bm25", "anti_bm25"])
    assert (
        report["scorers"]["bm25"]["r10@1"] == 1.0 and report["scorers"]["anti_bm25"]["r10@1"] == 0.0
    )


def test_match_without_a_matcher_is_a_clear_error(groups_file):
    assert set(probes(None)) == {"anti_bm25"}  # no matcher: no match scorers offered
    with pytest.raises(ValueError, match="needs a trained matcher.*research.train_matcher"):
        match_scorer(_env(read_groups(groups_file)), None)


def test_weighted_sum_stacks_scorers():
    total = WeightedSum([(1.0, Fixed([1.0, 2.0])), (0.5, Fixed([4.0, -2.0]))]).score(
        "q", (), ["a", "b"]
    )
    assert total == pytest.approx([3.0, 1.0])


def test_select_reports_probes_beside_product_scorers(groups_file, capsys):
    from research.select import main

    argv = ["--data", str(groups_file), "--model", "none", "--json", "--no-progress"]
    assert main([*argv, "--scorers", "bm25", "--probes", "anti_bm25"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["scorers"]) == {"bm25", "anti_bm25"}
    assert report["scorers"]["anti_bm25"]["r10@1"] == 0.0
    assert main([*argv, "--probes", "bogus"]) == 2
    assert "unknown or unavailable probe(s) ['bogus']" in capsys.readouterr().err
    assert main([*argv, "--probes", "match_pmi"]) == 2  # the bundled matcher, but no model
    assert "match_pmi needs a model" in capsys.readouterr().err
