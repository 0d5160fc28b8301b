"""The discriminative matcher: save/load, learning, and the training split."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from alime.seq2seq.vocab import NUM_RESERVED, Vocabulary
from research.matcher import (
    MatcherConfig,
    MatchScorer,
    build_network,
    candidate_features,
    load_matcher_dir,
    save_matcher_dir,
)
from research.matcher_training import (
    EncodedGroups,
    MatcherTrainOptions,
    expand_rows,
    fit,
    split_rows,
    training_rows,
)
from tests.seq2seq.conftest import WORDS, SplitPipeline

GROUP = (
    "什么 时候 发货",
    ["您好"],
    ["亲 48 小时 内 发货", "不 客气", "您好", "中通 快递 哦", "包邮 吗"],
)


def _tiny_config(vocab_size: int, **kw) -> MatcherConfig:
    return MatcherConfig(
        vocab_size=vocab_size,
        **{"embed_dim": 4, "hidden_dim": 4, "proj_dim": 4, "mlp_dim": 4, **kw},
    )


@pytest.mark.parametrize("lexical", [False, True])
def test_scores_are_reproduced_after_save_and_load(tmp_path, lexical):
    vocab = Vocabulary(WORDS)
    net = build_network(_tiny_config(len(vocab), lexical_features=lexical))
    save_matcher_dir(tmp_path / "m", net, vocab, {"note": "random weights"})
    from research.matcher import LoadedMatcher

    before = MatchScorer(LoadedMatcher(net.config, vocab, net, {}), str.split).score(*GROUP)
    loaded = load_matcher_dir(tmp_path / "m")
    after = MatchScorer(loaded, str.split).score(*GROUP)
    assert len(after) == 5 and np.ptp(after) > 0  # not a constant
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)
    assert loaded.config == net.config and loaded.metadata == {"note": "random weights"}
    # one candidate at a time gives the same scores as the batch of 5 (without the
    # group-relative lexical feature, which depends on the other candidates)
    if not lexical:
        alone = [MatchScorer(loaded, str.split).score(GROUP[0], GROUP[1], [a])[0] for a in GROUP[2]]
        np.testing.assert_allclose(alone, after, rtol=1e-5, atol=1e-6)


def test_match_reads_the_model_dirs_matcher_and_the_engine_does_not(tiny_model_dir, tmp_path):
    """``research.select`` finds MODEL/matcher by default; the engine no longer serves a
    matcher: ``rerank.json`` naming it is a clear error listing the served scores."""
    from alime.config import AppConfig
    from alime.evaluation.scorers import ScorerEnv
    from alime.rerank.loading import load_stages
    from research.scorers import match_scorer, matcher_dir_of

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    vocab = Vocabulary.load(model_dir / "vocab.json")
    net = build_network(_tiny_config(len(vocab)))
    save_matcher_dir(model_dir / "matcher", net, vocab)
    assert matcher_dir_of(model_dir, None) == model_dir / "matcher"
    assert matcher_dir_of(model_dir, tmp_path / "other") == tmp_path / "other"
    env = ScorerEnv(list(GROUP[2]), str.split, str.split)
    scorer = match_scorer(env, matcher_dir_of(model_dir, None))
    expected = MatchScorer(load_matcher_dir(model_dir / "matcher"), str.split).score(*GROUP)
    assert scorer.score(*GROUP) == pytest.approx(expected)
    with pytest.raises(ValueError, match="needs a trained matcher"):
        match_scorer(env, None)
    (model_dir / "rerank.json").write_text('{"rerank_score": "match"}')
    with pytest.raises(ValueError, match="unknown rerank_score.*pmi"):
        load_stages(model_dir, AppConfig(), SplitPipeline(), warm_up=False)


def test_missing_matcher_and_bad_config_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="not a matcher directory .*research.train_matcher"):
        load_matcher_dir(tmp_path)
    with pytest.raises(ValueError, match="unknown encoder 'lstm'; valid"):
        MatcherConfig(vocab_size=10, encoder="lstm")


def test_lexical_features_count_shared_words():
    ctx = [NUM_RESERVED, NUM_RESERVED + 1, 4]  # 4 is SEP: never a word
    feats = candidate_features(ctx, [[NUM_RESERVED, 9, 10], [11], [4]], lexical=True)
    assert feats.shape == (3, 4)
    np.testing.assert_allclose(feats[:, 1], [1 / 3, 0.0, 0.0])
    np.testing.assert_allclose(feats[:, 3], feats[:, 1] - feats[:, 1].mean())
    assert candidate_features(ctx, [[9]], lexical=False).shape == (1, 1)


def _learnable_groups(n: int, seed: int) -> EncodedGroups:
    """Context word i is answered by reply word 30 + i: learnable, and with no shared words."""
    rng = np.random.default_rng(seed)
    contexts, candidates, labels = [], [], []
    for _ in range(n):
        topic = int(rng.integers(0, 10))
        wrong = [int(x) for x in rng.choice([t for t in range(10) if t != topic], 4, replace=False)]
        replies = [[NUM_RESERVED + 30 + t, NUM_RESERVED + 50] for t in wrong]
        pos = int(rng.integers(0, 5))
        replies.insert(pos, [NUM_RESERVED + 30 + topic, NUM_RESERVED + 50])
        contexts.append([NUM_RESERVED + topic, NUM_RESERVED + 20])
        candidates.append(replies)
        labels.append(pos)
    return EncodedGroups(contexts, candidates, np.asarray(labels, np.int32))


def test_training_loss_falls_where_the_right_reply_is_learnable():
    import keras

    keras.utils.set_random_seed(0)
    config = _tiny_config(NUM_RESERVED + 60, proj_dim=8, mlp_dim=8, dropout=0.0)
    net = build_network(config)
    data = _learnable_groups(96, seed=1)
    options = MatcherTrainOptions(
        epochs=25,
        batch_size=16,
        learning_rate=1e-2,
        patience=0,
        train_embedding=True,
        train_encoder=True,
        threads=0,
    )
    history, best, dev = fit(
        net, data, config, options, {"dev": _learnable_groups(64, 2)}, progress=False
    )
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert history[0]["train_loss"] == pytest.approx(np.log(5), abs=0.3)  # starts near chance
    assert dev["dev"]["r10@1"] > 0.8  # chance is 0.2


DIALOGUES = [(f"问题 {i} 什么 时候 发货", f"回复 {i} 亲 今天 发货") for i in range(30)]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "dev.txt"
    lines = []
    for q, r in DIALOGUES:
        lines.append(f"1\t您好 {q[3:5]}\t在 的\t{q}\t{r}\n")
        lines.append(f"0\t您好 {q[3:5]}\t在 的\t{q}\t不 知道\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_training_rows_exclude_the_held_out_lines(corpus):
    held = [1, 7, 21, 45, 59]  # label-1 lines are the odd ones
    meta = {"data_files": [str(corpus)], "split": {"valid_dialogue_lines": {str(corpus): held}}}
    rows, excluded = training_rows(corpus, meta)
    lines = {r.line for r in rows}
    assert excluded == set(held)
    assert lines == set(range(1, 61, 2)) - set(held)  # every other label-1 line, and only those
    train, dev = split_rows(rows, 0.2, seed=3)
    assert {r.line for r in train} | {r.line for r in dev} == lines
    assert not {r.line for r in train} & {r.line for r in dev} and dev
    expanded = expand_rows(rows)
    assert {r.line for r in expanded} == lines
    assert all(r.turns[-1] != "" and r.response for r in expanded)
    # a file the model did not train on, or without held-out lines, is refused
    with pytest.raises(ValueError, match="does not list held-out dialogues"):
        training_rows(corpus, {"data_files": [], "split": {}})
    with pytest.raises(ValueError, match="no such file"):
        training_rows(corpus.parent / "missing.txt", meta)


def test_train_matcher_cli_end_to_end(corpus, tiny_model_dir, tmp_path, capsys):
    from research.select import main as select
    from research.train_matcher import main

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    held = [3, 5, 9]
    (model_dir / "training.json").write_text(
        json.dumps(
            {"data_files": [str(corpus)], "split": {"valid_dialogue_lines": {str(corpus): held}}}
        )
    )
    out = tmp_path / "matcher"
    assert (
        main(
            [
                "--data",
                str(corpus),
                "--model",
                str(model_dir),
                "--out",
                str(out),
                "--epochs",
                "2",
                "--batch-size",
                "8",
                "--dev-fraction",
                "0.25",
                "--threads",
                "0",
                "--no-progress",
                "--context-negatives",
                "3",
                "--train-fraction",
                "0.5",
            ]
        )
        == 0
    )
    assert "matcher written to" in capsys.readouterr().out
    meta = json.loads((out / "training.json").read_text(encoding="utf-8"))
    assert meta["split"]["excluded_heldout_lines"] == 3
    split = meta["split"]
    others = split["training_dialogues"] - split["dev_dialogues"]
    assert 0 < split["matcher_train_dialogues"] < others  # --train-fraction 0.5
    assert meta["options"]["context_negatives"] == 3
    assert set(meta["dev"]) == {"dev_bm25neg", "dev_ctxneg", "dev_randneg"}
    assert not set(meta["split"]["dev_lines"]) & set(held)
    assert len(meta["history"]) >= 1 and meta["best_epoch"] >= 1
    loaded = load_matcher_dir(out)
    assert len(MatchScorer(loaded, str.split).score(*GROUP)) == 5
    # the research scorer of the same name reads it
    groups = tmp_path / "groups.txt"
    groups.write_text(
        "".join(
            f"{int(i == 2)}\t您好\t问题 1 什么 时候 发货\t{DIALOGUES[i][1]}\n" for i in range(10)
        ),
        encoding="utf-8",
    )
    assert (
        select(
            [
                "--data",
                str(groups),
                "--model",
                str(model_dir),
                "--matcher",
                str(out),
                "--probes",
                "match,anti_bm25",
                "--json",
                "--no-progress",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert set(report["scorers"]) == {"match", "anti_bm25"}
