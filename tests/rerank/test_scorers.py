import math

import numpy as np
import pytest

from alime.rerank.scorers import (
    MeanLogProbScorer,
    MeanProbScorer,
    PMIScorer,
    PriorScorer,
    make_scorer,
)
from tests.seq2seq.conftest import SplitPipeline

ANSWERS = ["亲 您好", "可以 包邮 的 哦", "中通 快递", "没见过 的 词", ""]


@pytest.mark.parametrize("cls", [MeanProbScorer, MeanLogProbScorer, PriorScorer, PMIScorer])
def test_one_finite_float_per_answer(tiny_model, cls):
    scores = cls(tiny_model, SplitPipeline()).score("什么 时候 发货", ["您好"], ANSWERS)
    assert len(scores) == len(ANSWERS)
    assert all(isinstance(s, float) and math.isfinite(s) for s in scores)
    assert cls(tiny_model, SplitPipeline()).score("q", [], []) == []


def test_scores_relate_as_defined(tiny_model):
    p = SplitPipeline()
    mean_prob = MeanProbScorer(tiny_model, p).score("可以 包邮 吗", [], ANSWERS)
    mean_lp = MeanLogProbScorer(tiny_model, p).score("可以 包邮 吗", [], ANSWERS)
    assert all(0 < s <= 1 for s in mean_prob)
    # exp(mean log p) <= mean p (AM-GM)
    assert all(math.exp(lp) <= pr + 1e-9 for lp, pr in zip(mean_lp, mean_prob, strict=True))
    assert PMIScorer(tiny_model, p, weight=0.0).score("可以 包邮 吗", [], ANSWERS) == mean_lp
    prior = PriorScorer(tiny_model, p)
    assert prior.score("a", [], ANSWERS) == prior.score("b", ["c"], ANSWERS)
    pmi = PMIScorer(tiny_model, p, weight=1.0).score("可以 包邮 吗", [], ANSWERS)
    np.testing.assert_allclose(pmi, np.array(mean_lp) - np.array(prior.score("", [], ANSWERS)))


def test_batched_scores_equal_one_at_a_time(tiny_model):
    scorer = MeanProbScorer(tiny_model, SplitPipeline())
    together = scorer.score("发货", ["您好"], ANSWERS)
    alone = [scorer.score("发货", ["您好"], [a])[0] for a in ANSWERS]
    np.testing.assert_allclose(together, alone, rtol=1e-5)


def test_make_scorer_names(tiny_model):
    assert isinstance(make_scorer("pmi", tiny_model, SplitPipeline(), weight=0.3), PMIScorer)
    with pytest.raises(ValueError, match="valid: .*mean_prob"):
        make_scorer("bm25", tiny_model)


def test_load_stages_builds_scorer_generator_and_reads_thresholds(tiny_model_dir, tmp_path):
    import shutil

    from alime.config import AppConfig, EngineConfig
    from alime.rerank.loading import load_stages
    from alime.seq2seq.model_dir import read_thresholds

    model_dir = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model_dir)
    config = AppConfig(engine=EngineConfig(beam_size=2, max_answer_tokens=3))
    scorer, generator, tuned = load_stages(model_dir, config, SplitPipeline())
    assert isinstance(scorer, MeanProbScorer) and tuned == {}
    assert (generator.beam_size, generator.max_len) == (2, 3)
    (model_dir / "thresholds.json").write_text('{"threshold": 0.3, "generation_threshold": 0.2}')
    assert read_thresholds(model_dir) == {"threshold": 0.3, "generation_threshold": 0.2}
    (model_dir / "thresholds.json").write_text('{"treshold": 0.3}')
    with pytest.raises(ValueError, match="unknown key"):
        read_thresholds(model_dir)


def test_load_stages_uses_the_rerank_score_chosen_for_the_model(tiny_model_dir, tmp_path):
    import shutil

    from alime.config import AppConfig
    from alime.rerank.loading import load_stages
    from alime.seq2seq.model_dir import read_rerank_choice

    model_dir = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model_dir)
    (model_dir / "rerank.json").write_text('{"rerank_score": "pmi", "pmi_weight": 0.25}')
    scorer, _, _ = load_stages(model_dir, AppConfig(), SplitPipeline(), warm_up=False)
    assert isinstance(scorer, PMIScorer) and scorer.weight == 0.25
    (model_dir / "rerank.json").write_text('{"rerank_score": "mean_log_prob"}')
    assert read_rerank_choice(model_dir)[0].value == "mean_log_prob"
    for bad in (
        '{"rerank_score": "bm25"}',
        '{"score": "pmi"}',
        '{"rerank_score": "mean_prob", "pmi_weight": 1}',
    ):
        (model_dir / "rerank.json").write_text(bad)
        with pytest.raises(ValueError):
            read_rerank_choice(model_dir)
