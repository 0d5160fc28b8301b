import io
import json

import numpy as np
import pytest

from alime.evaluation.corpus import read_groups
from alime.evaluation.scorers import (
    SCORERS,
    CachedLogProbs,
    FusedScorer,
    ScorerEnv,
    ScorerName,
    ShorterScorer,
    parse_scorer_names,
)
from alime.evaluation.selection import dump_scores, score_groups, selection_report


class StubLogProbs:
    """Conditional log-prob per token: -1 for tokens shared with the query, -3 otherwise;
    prior: -2 per token. Counts model passes."""

    def __init__(self):
        self.calls = {"cond": 0, "prior": 0}

    def conditional_log_probs(self, query, context, answers):
        self.calls["cond"] += 1
        words = set(query.split())
        return [np.array([-1.0 if w in words else -3.0 for w in a.split()]) for a in answers]

    def prior_log_probs(self, answers):
        self.calls["prior"] += 1
        return [np.full(len(a.split()), -2.0) for a in answers]


def _env(groups, log_probs=None):
    responses = [r for g in groups for r in g.responses]
    return ScorerEnv(responses, str.split, str.split, log_probs)


def test_model_scores_share_one_pass_per_group(groups_file):
    groups = read_groups(groups_file)
    stub = StubLogProbs()
    env = _env(groups, stub)
    names = parse_scorer_names(None, have_model=True)
    scored = score_groups(groups, {n.value: env.get(n) for n in names}, progress=False)
    assert stub.calls == {"cond": 2, "prior": 2}
    first = scored[0].scores
    # "48 小时 内 发货" against "什么 时候 发货": tokens -3, -3, -3, -1.
    assert first["seq2seq"][3] == pytest.approx(np.mean(np.exp([-3, -3, -3, -1])))
    assert first["mean_logprob"][3] == pytest.approx(-2.5)
    assert first["prior"][3] == pytest.approx(-2.0)
    assert first["pmi"][3] == pytest.approx(-2.5 + 0.5 * 2.0)
    report = selection_report(scored, [n.value for n in names])
    assert report["groups"] == 2
    # every scorer but those that need stacking weights (none here)
    assert set(report["scorers"]) == {n.value for n in ScorerName if not SCORERS[n].needs_stacking}
    assert report["scorers"]["shorter"] == {"r10@1": 1.0, "r10@2": 1.0, "r10@5": 1.0, "mrr": 1.0}
    assert report["scorers"]["bm25"]["r10@1"] == 1.0
    # Every candidate has the same prior per token: all tie, the truth ranks last.
    assert report["scorers"]["prior"] == {"r10@1": 0.0, "r10@2": 0.0, "r10@5": 0.0, "mrr": 0.1}


def test_dump_scores_one_line_per_candidate(groups_file):
    groups = read_groups(groups_file)
    scored = score_groups(groups, {"shorter": ShorterScorer(str.split)}, progress=False)
    buf = io.StringIO()
    assert dump_scores(scored, buf) == 20
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert lines[3] == {"group": 0, "label": 1, "scores": {"shorter": -4.0}}
    assert sum(x["label"] for x in lines) == 2


class Fixed:
    """A scorer that returns fixed scores."""

    def __init__(self, values):
        self.values = values

    def score(self, query, context, answers):
        return self.values


def test_fusion_by_reciprocal_rank():
    fused = FusedScorer([Fixed([3.0, 2.0, 1.0]), Fixed([1.0, 3.0, 2.0])]).score(
        "q", (), ["a", "b", "c"]
    )
    assert fused == pytest.approx([1 / 61 + 1 / 63, 1 / 62 + 1 / 61, 1 / 63 + 1 / 62])


def test_scorer_names():
    assert parse_scorer_names("bm25, shorter,bm25", have_model=False) == [
        ScorerName.BM25,
        ScorerName.SHORTER,
    ]
    assert ScorerName.SEQ2SEQ not in parse_scorer_names(None, have_model=False)
    with pytest.raises(ValueError, match="unknown scorer 'bleu'; valid: bm25, seq2seq, prior"):
        parse_scorer_names("bleu", have_model=True)
    with pytest.raises(ValueError, match="need a model"):
        parse_scorer_names("seq2seq", have_model=False)
    assert set(SCORERS) == set(ScorerName)


def test_model_scorer_without_model_is_a_clear_error(groups_file):
    with pytest.raises(ValueError, match="needs a model"):
        _env(read_groups(groups_file)).get(ScorerName.PRIOR)


def test_cache_recomputes_for_a_new_group():
    stub = StubLogProbs()
    cache = CachedLogProbs(stub)
    cache.conditional("a", (), ["a"])
    cache.prior("a", (), ["a"])
    cache.conditional("b", (), ["a"])
    assert stub.calls == {"cond": 2, "prior": 1}


def test_weight_sweep_tunes_on_even_groups_and_tests_on_odd(groups_file):
    from alime.evaluation.selection import GroupScores, combined_ranks, weight_sweep

    g0, g1 = read_groups(groups_file)
    # a favours a wrong candidate unless b (its "prior") is subtracted with weight >= 1.
    a = [0.0] * 10
    b = [0.0] * 10
    a[g0.true_index], a[5] = 1.0, 1.5
    b[5] = 1.0
    scored = [GroupScores(g0, {"a": a, "b": b}), GroupScores(g1, {"a": list(a), "b": list(b)})]
    assert combined_ranks(scored[:1], "a", "b", 0.0) == [2]
    assert combined_ranks(scored[:1], "a", "b", 1.0) == [1]
    sweep = weight_sweep(scored, "a", "b", [0.0, 1.0, 2.0])
    assert sweep["chosen"] == 1.0 and sweep["tune"]["r10@1"] == 1.0
    assert sweep["test_groups"] == 1 and sweep["weights"]["0.0"]["r10@1"] == 0.0


def test_each_engine_rerank_score_has_one_evaluation_scorer():
    """``evaluate select`` and ``threshold`` report the engine's score under the scorer the
    table maps it to (no hand-kept name map), computed with the rerank scores' own formulas."""
    from alime.evaluation.scorers import for_engine_score
    from alime.seq2seq.model_dir import ScorerKind

    assert {k: for_engine_score(k) for k in ScorerKind} == {
        ScorerKind.MEAN_PROB: ScorerName.SEQ2SEQ,
        ScorerKind.MEAN_LOG_PROB: ScorerName.MEAN_LOGPROB,
        ScorerKind.PRIOR: ScorerName.PRIOR,
        ScorerKind.PMI: ScorerName.PMI,
        ScorerKind.STACKED: ScorerName.STACKED,
    }
    engines = [spec.engine for spec in SCORERS.values() if spec.engine is not None]
    assert len(engines) == len(set(engines)) == len(ScorerKind)
