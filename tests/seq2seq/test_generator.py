import numpy as np
import pytest

from alime.seq2seq.generator import BeamGenerator
from alime.types import Generated
from tests.seq2seq.conftest import SplitPipeline


def test_generator_returns_n_best_with_mean_prob_scores(tiny_model):
    gen = BeamGenerator(tiny_model, SplitPipeline(), beam_size=3, n_best=2, max_len=4)
    out = gen.generate("什么 时候 发货", ["您好"])
    assert 1 <= len(out) <= 2 and all(isinstance(g, Generated) for g in out)
    assert all(0.0 < g.score <= 1.0 for g in out)
    assert [g.score for g in out] == sorted((g.score for g in out), reverse=True)
    assert all(np.isfinite(g.score) for g in out)


def test_generator_validates_settings(tiny_model):
    with pytest.raises(ValueError, match="n_best"):
        BeamGenerator(tiny_model, SplitPipeline(), beam_size=2, n_best=3)
