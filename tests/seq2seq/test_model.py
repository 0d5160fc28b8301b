import numpy as np
import pytest

from alime.seq2seq.model_dir import load_model_dir
from alime.seq2seq.vocab import BOS_ID, EOS_ID, PAD_ID

SOURCE = [8, 9, 4, 10, 11]
TARGETS = [[5, 6, EOS_ID], [7, EOS_ID], [12, 13, 14, 15, EOS_ID]]


def _padded(targets):
    out = np.full((len(targets), max(map(len, targets))), PAD_ID, np.int32)
    for i, t in enumerate(targets):
        out[i, : len(t)] = t
    return out


def test_batched_candidates_equal_scoring_each_alone(tiny_model):
    inf = tiny_model.inference
    together = inf.answer_log_probs(SOURCE, TARGETS)
    alone = [inf.answer_log_probs(SOURCE, [t])[0] for t in TARGETS]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The tiled single-encoder path equals encoding the source once per row.
    rows = inf.batch_log_probs(np.tile(SOURCE, (3, 1)), _padded(TARGETS))
    np.testing.assert_allclose(
        inf.candidate_log_probs(np.array(SOURCE), _padded(TARGETS)), rows, rtol=1e-5, atol=1e-6
    )


def test_decode_step_matches_teacher_forcing(tiny_model):
    inf = tiny_model.inference
    target = TARGETS[2]
    expected = inf.answer_log_probs(SOURCE, [target])[0]
    state = inf.start(np.array([SOURCE]))
    prev, got = BOS_ID, []
    for tok in target:
        log_probs, state = inf.step(np.array([prev]), state)
        got.append(log_probs[0, tok])
        prev = tok
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert np.exp(log_probs).sum() == pytest.approx(1.0, abs=1e-4)


def test_empty_source_gives_finite_prior(tiny_model):
    lps = tiny_model.inference.answer_log_probs([], TARGETS)
    assert all(np.isfinite(lp).all() and (lp <= 0).all() for lp in lps)


def test_paths_are_traced_once_for_any_shape(tiny_model):
    inf = tiny_model.inference
    for k, width in ((1, 2), (3, 5), (2, 7)):
        inf.candidate_log_probs(np.array(SOURCE[: k + 1]), np.full((k, width), 5, np.int32))
    assert inf._candidates.experimental_get_tracing_count() == 1


def test_saved_model_dir_reloads_identical_scores(tiny_model, tiny_model_dir):
    again = load_model_dir(tiny_model_dir)
    assert again.config == tiny_model.config
    assert again.vocab.words == tiny_model.vocab.words
    assert again.metadata == {"note": "random weights"}
    a = tiny_model.inference.answer_log_probs(SOURCE, TARGETS)
    b = again.inference.answer_log_probs(SOURCE, TARGETS)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="missing config.json"):
        load_model_dir(tmp_path)
