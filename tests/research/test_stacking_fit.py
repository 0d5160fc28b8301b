"""research/stacking.py: the conditional-logit fit and the score-dump reader."""

from __future__ import annotations

import json

import numpy as np
import pytest

from research import stacking


def _synthetic(n_groups: int, seed: int) -> tuple[list[np.ndarray], list[int]]:
    """Groups of 10 with two features; the real candidate has a higher first feature on
    average, the second is noise."""
    rng = np.random.default_rng(seed)
    xs, true = [], []
    for _ in range(n_groups):
        x = rng.normal(size=(10, 2))
        t = int(rng.integers(0, 10))
        x[t, 0] += 1.5
        xs.append(x)
        true.append(t)
    return xs, true


def _log_likelihood(xs, true, mean, scale, w) -> float:
    total = 0.0
    for x, t in zip(xs, true, strict=True):
        s = ((x - mean) / scale) @ w
        total += s[t] - np.log(np.exp(s).sum())
    return total


def test_fit_finds_the_informative_feature_and_the_maximum():
    xs, true = _synthetic(400, 1)
    mean, scale, w = stacking.fit_conditional_logit(xs, true, l2=0.0)
    assert w[0] > 1.0 and abs(w[1]) < 0.3
    best = _log_likelihood(xs, true, mean, scale, w)
    for delta in ([0.05, 0], [-0.05, 0], [0, 0.05], [0, -0.05]):
        assert _log_likelihood(xs, true, mean, scale, w + np.array(delta)) < best
    held_xs, held_true = _synthetic(400, 2)
    assert stacking.evaluate(held_xs, held_true, mean, scale, w)["r10@1"] > 0.4


def test_l2_shrinks_the_weights():
    xs, true = _synthetic(200, 3)
    _, _, free = stacking.fit_conditional_logit(xs, true, l2=0.0)
    _, _, shrunk = stacking.fit_conditional_logit(xs, true, l2=100.0)
    assert np.linalg.norm(shrunk) < 0.7 * np.linalg.norm(free)


def test_a_bad_dump_line_names_file_and_line(tmp_path):
    path = tmp_path / "scores.jsonl"
    good = json.dumps({"group": 0, "label": 1, "scores": {"prior": -1.0}})
    path.write_text(good + "\n{not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"scores.jsonl:2:"):
        stacking.read_dump(path)


def test_dump_without_model_scores_is_refused(tmp_path):
    from alime.config import AppConfig
    from alime.text import TextPipeline

    data = tmp_path / "groups.txt"
    data.write_text("".join(f"{int(i == 0)}\t问 一\t答 {i}\n" for i in range(10)), encoding="utf-8")
    dump = tmp_path / "scores.jsonl"
    rows = [{"group": 0, "label": int(i == 0), "scores": {"bm25": 0.0}} for i in range(10)]
    dump.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(ValueError, match="mean_logprob"):
        stacking.load_groups(data, dump, TextPipeline(AppConfig().text))


def test_quadratic_fit_finds_an_interaction_the_linear_one_cannot():
    """The real candidate is the one whose two features agree in sign and are large: only the
    product term can see that."""
    rng = np.random.default_rng(5)
    xs, true = [], []
    for _ in range(300):
        x = rng.normal(size=(10, 2))
        t = int(rng.integers(0, 10))
        x[t] = np.sign(rng.normal()) * np.array([1.5, 1.5])
        xs.append(x)
        true.append(t)
    linear = stacking._fit_one(xs, true, xs, true, 0.0, quadratic=False)
    quadratic = stacking._fit_one(xs, true, xs, true, 0.0, quadratic=True)
    assert len(quadratic["weights"]) == 2 + 3
    assert quadratic["train"]["r10@1"] > linear["train"]["r10@1"] + 0.3
