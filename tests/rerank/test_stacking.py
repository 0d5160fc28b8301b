"""The stacked rerank score: features, the weights file, the engine's scorer, the evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from alime.rerank.stacking import (
    StackedScorer,
    StackingWeights,
    feature_inputs,
    feature_matrix,
    quadratic_terms,
    stacked_scores,
)
from alime.seq2seq.model_dir import STACKING_FILE


def _weights(features=("prior",), weights=(1.0,), mean=None, scale=None) -> StackingWeights:
    n = len(features)
    return StackingWeights(
        tuple(features), tuple(mean or [0.0] * n), tuple(scale or [1.0] * n), tuple(weights)
    )


def test_features_are_computed_as_documented():
    inputs = feature_inputs(
        [-1.0, -2.0],
        [-3.0, -0.5],
        [2, 4],
        [["发货", "快递"], ["好", "的"]],
        {"什么", "时候", "发货"},
        {"发货"},
    )
    names = ["sum_logprob", "sum_prior", "log_length", "overlap_context", "overlap_query"]
    x = feature_matrix(inputs, [*names, "prior_gap", "cond_gap"])
    expected = [
        [-2.0, -6.0, np.log(2), 0.5, 0.5, -2.5, 0.0],
        [-8.0, -2.0, np.log(4), 0.0, 0.0, 0.0, -1.0],
    ]
    np.testing.assert_allclose(x, expected)


def test_weights_round_trip_and_standardize(tmp_path):
    w = StackingWeights(("prior", "log_length"), (1.0, 2.0), (2.0, 4.0), (3.0, -1.0), {"a": 1})
    w.save(tmp_path)
    loaded = StackingWeights.load(tmp_path)
    assert loaded == w and loaded.provenance == {"a": 1}
    # (5 - 1) / 2 * 3 + (6 - 2) / 4 * -1 = 5
    assert loaded.score(np.array([[5.0, 6.0]])).tolist() == [5.0]


def test_quadratic_weights_score_the_products_of_standardized_features(tmp_path):
    z = np.array([[1.0, 2.0], [3.0, -1.0]])
    # z1, z2, z1*z1, z1*z2, z2*z2
    np.testing.assert_allclose(quadratic_terms(z), [[1, 2, 1, 2, 4], [3, -1, 9, -3, 1]])
    w = StackingWeights(
        ("prior", "log_length"), (1.0, 0.0), (2.0, 1.0), (0, 0, 0, 1.0, 0), quadratic=True
    )
    # z = ((5 - 1) / 2, 3) -> score = z1 * z2 = 6
    assert w.score(np.array([[5.0, 3.0]])).tolist() == [6.0]
    w.save(tmp_path)
    assert StackingWeights.load(tmp_path) == w
    with pytest.raises(ValueError, match="expected 5"):
        StackingWeights(("prior", "log_length"), (0, 0), (1, 1), (1, 1), quadratic=True)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"features": ["prior", "telepathy"]}, "unknown stacking feature"),
        ({"format": 2}, "format"),
        ({"bias": 1.0}, "unknown key"),
        ({"scale": [0.0, 1.0]}, "scale"),
        ({"mean": [1.0]}, "one value each"),
        ({"weights": [1.0]}, "expected 2"),
        ({"quadratic": "yes"}, "quadratic"),
    ],
)
def test_bad_weights_files_are_clear_errors(tmp_path, change, message):
    data = {
        "format": 1,
        "features": ["prior", "log_length"],
        "mean": [0, 0],
        "scale": [1, 1],
        "weights": [1, 1],
    }
    (tmp_path / STACKING_FILE).write_text(json.dumps({**data, **change}))
    with pytest.raises(ValueError, match=message) as err:
        StackingWeights.load(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_missing_weights_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="no stacking weights"):
        StackingWeights.load(tmp_path)


def test_stacked_scores_follow_the_weights():
    cond = [np.array([-1.0, -1.0]), np.array([-3.0, -1.0, -2.0])]
    prior = [np.array([-2.0, -4.0]), np.array([-0.5, -0.5, -0.5])]
    answers = ["发货 快递", "好 的 呢"]
    prior_only = stacked_scores(_weights(), "发货", [], answers, cond, prior, str.split)
    assert prior_only == [-3.0, -0.5]
    both = _weights(("mean_logprob", "overlap_query"), (1.0, 4.0))
    # answer 0: -1 + 4 * 1/2 (发货 of 发货 快递); answer 1: -2 + 0
    assert stacked_scores(both, "发货", [], answers, cond, prior, str.split) == [1.0, -2.0]


def test_engine_scorer_equals_the_evaluation_score(tiny_model_dir, tiny_model):
    from alime.evaluation.scorers import CachedLogProbs
    from alime.rerank.scorers import MeanProbScorer, make_scorer
    from tests.seq2seq.conftest import SplitPipeline

    weights = _weights(
        ("mean_logprob", "prior", "log_length", "overlap_context"), (1.0, -0.5, 0.2, 0.7)
    )
    weights.save(tiny_model_dir)
    try:
        pipeline = SplitPipeline()
        pipeline.index_terms = str.split
        scorer = make_scorer("stacked", tiny_model, pipeline)
        assert isinstance(scorer, StackedScorer)
        answers = ["亲 发货 哦", "包邮 吗", "中通 快递 的"]
        got = scorer.score("什么 时候 发货", ["您好"], answers)
        cache = CachedLogProbs(MeanProbScorer(tiny_model, pipeline))
        q, c = "什么 时候 发货", ["您好"]
        want = stacked_scores(
            weights,
            q,
            c,
            answers,
            cache.conditional(q, c, answers),
            cache.prior(q, c, answers),
            str.split,
        )
        np.testing.assert_allclose(got, want, rtol=1e-6)
        manual = [
            np.mean(a) - 0.5 * np.mean(b) + 0.2 * np.log(len(a)) + 0.7 * ov
            for a, b, ov in zip(
                cache.conditional(q, c, answers),
                cache.prior(q, c, answers),
                [1 / 3, 0.0, 0.0],
                strict=True,
            )
        ]
        np.testing.assert_allclose(got, manual, rtol=1e-6)
    finally:
        (tiny_model_dir / STACKING_FILE).unlink()


def test_select_dump_has_the_engine_default_and_prior(tiny_model_dir, tmp_path, capsys):
    """``alime evaluate select --dump-scores`` keeps working with ``stacked`` as the default."""
    from alime.cli import main
    from tests.evaluation.conftest import group_lines

    groups_file = tmp_path / "groups.txt"
    fillers = [f"无关 回复 {i} 号 的" for i in range(9)]
    groups_file.write_text(
        group_lines("什么 时候 发货", [*fillers[:3], "亲 发货 哦", *fillers[3:]], 3)
        + group_lines("可以 包邮 吗", ["包邮 的 哦", *fillers], 0),
        encoding="utf-8",
    )

    _weights(("mean_logprob", "prior"), (1.0, -0.3)).save(tiny_model_dir)
    (tiny_model_dir / "rerank.json").write_text('{"rerank_score": "stacked"}')
    dump = tmp_path / "scores.jsonl"
    try:
        rc = main(
            [
                "evaluate",
                "select",
                "--data",
                str(groups_file),
                "--model",
                str(tiny_model_dir),
                "--json",
                "--dump-scores",
                str(dump),
                "--no-progress",
            ]
        )
    finally:
        (tiny_model_dir / STACKING_FILE).unlink()
        (tiny_model_dir / "rerank.json").unlink()
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["engine_default"] == "stacked"
    rows = [json.loads(line) for line in dump.read_text().splitlines()]
    assert len(rows) == 20
    for row in rows:
        s = row["scores"]
        assert s["stacked"] == pytest.approx(s["mean_logprob"] - 0.3 * s["prior"])
