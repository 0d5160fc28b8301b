"""The int8 model served without TensorFlow: no import, one load per process, and the same
outputs as the int8 path that builds the Keras model (``load_model_dir``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alime.config import BUNDLED_DATA

ROOT = Path(__file__).resolve().parents[2]
BUNDLED_INT8 = BUNDLED_DATA / "model-int8"
# A fixed list: FAQ answers, a chit-chat line, generated answers, a rule (see the rules in
# data/text/guards.toml) and an empty-ish query.
QUERIES = [
    "什么时候发货？",
    "发什么快递",
    "能便宜点吗",
    "你好",
    "这个怎么用啊亲",
    "有没有赠品",
    "质量怎么样",
    "我要投诉",
    "asdf",
    "衣服洗了会缩水吗",
]
# The rerank inputs: each query against the same real KB answers.
ANSWERS = [
    "拍下后 72 小时内发货哦",
    "在的亲已经是优惠价了呢",
    "默认发中通快递哦",
    "亲，质量很好的，放心购买",
    "不是的亲",
]
# Log-probs of the two loaders agree to float32 rounding: they run the same numpy code on the
# same dequantized weights (only the Keras copy is gone).
LOG_PROB_TOLERANCE = 1e-5

_PROBE = """
import json, sys
from alime.bot import build_bot
from alime.config import AppConfig
import dataclasses
config = AppConfig()
# The bundled G turns generation off (docs/evaluation.md); G = 0 here so the probe generates.
config = dataclasses.replace(config, engine=dataclasses.replace(config.engine,
                                                                generation_threshold=0.0))
bot = build_bot(config)
replies = [bot.engine.reply(q) for q in json.loads(sys.argv[1])]
e = bot.engine
print(json.dumps({
    "loaded": sorted(m for m in ("tensorflow", "keras", "tf_keras") if m in sys.modules),
    "rules": [r.rule.value for r in replies],
    "answers": [r.answer for r in replies],
    "shared": e.scorer.model is e.generator.model is e.retriever.dense.embedder.warm_up(),
}, ensure_ascii=False))
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict:
    """A fresh process that builds the bundled bot (int8 model, hybrid retrieval) and answers
    ``QUERIES``."""
    home = tmp_path_factory.mktemp("home")
    env = {
        **os.environ,
        "ALIME_HOME": str(home),
        "PYTHONPATH": str(ROOT),
        "OPENBLAS_NUM_THREADS": "1",
    }
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(QUERIES, ensure_ascii=False)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_serving_worker_never_imports_tensorflow(served):
    assert served["loaded"] == []
    # The probe went through every stage that could have loaded it.
    assert {"faq", "chitchat", "generation"} <= set(served["rules"])


def test_one_model_load_shared_by_every_stage(served):
    assert served["shared"] is True


def test_int8_loader_returns_one_object_per_directory():
    from alime.seq2seq.quantized import load_int8_model_dir

    first = load_int8_model_dir(BUNDLED_INT8)
    assert load_int8_model_dir(BUNDLED_INT8) is first
    assert first.model is None
    assert load_int8_model_dir(BUNDLED_INT8, "numpy") is not first  # another head, another load


def test_int8_loader_rejects_an_fp32_directory():
    from alime.seq2seq.quantized import load_int8_model_dir

    with pytest.raises(ValueError, match="not an int8 model directory"):
        load_int8_model_dir(BUNDLED_DATA / "model")


@pytest.fixture(scope="module")
def both_paths():
    """The bundled int8 model through today's path (Keras model built, TensorFlow) and the
    TensorFlow-free one, with the served scorer and generator on each."""
    from alime.config import AppConfig
    from alime.rerank.loading import load_serving_model, make_generator
    from alime.rerank.scorers import make_scorer
    from alime.seq2seq.model_dir import load_model_dir, read_rerank_choice
    from alime.text import TextPipeline

    config = AppConfig()
    pipeline = TextPipeline(config.text)
    kind, options = read_rerank_choice(BUNDLED_INT8)
    out = {}
    for name, model in (
        ("keras", load_model_dir(BUNDLED_INT8)),
        ("numpy", load_serving_model(BUNDLED_INT8)),
    ):
        out[name] = (
            model,
            make_scorer(kind, model, pipeline, **options),
            make_generator(model, config, pipeline),
        )
    return out


def test_rerank_log_probs_and_scores_equal_the_keras_int8_path(both_paths):
    (keras_model, keras_scorer, _), (numpy_model, numpy_scorer, _) = (
        both_paths["keras"],
        both_paths["numpy"],
    )
    assert keras_model.model is not None and numpy_model.model is None
    for query in QUERIES:
        ref = keras_scorer.conditional_log_probs(query, [], ANSWERS)
        got = numpy_scorer.conditional_log_probs(query, [], ANSWERS)
        for r, g in zip(ref, got, strict=True):
            np.testing.assert_allclose(g, r, atol=LOG_PROB_TOLERANCE)
        np.testing.assert_allclose(
            numpy_scorer.score(query, [], ANSWERS),
            keras_scorer.score(query, [], ANSWERS),
            atol=LOG_PROB_TOLERANCE,
        )


def test_generated_text_equals_the_keras_int8_path(both_paths):
    keras_gen, numpy_gen = both_paths["keras"][2], both_paths["numpy"][2]
    for query in QUERIES:
        ref, got = keras_gen.generate(query, []), numpy_gen.generate(query, [])
        assert [g.text for g in got] == [g.text for g in ref]
        np.testing.assert_allclose(
            [g.score for g in got], [g.score for g in ref], atol=LOG_PROB_TOLERANCE
        )


@pytest.mark.parametrize("pooling", ["words", "states", "concat"])
def test_question_embeddings_equal_the_tensorflow_pooling(pooling, monkeypatch):
    """The dense retriever's encoder on an int8 directory pools in numpy; the traced TensorFlow
    pooling over the Keras model filled with the same weights gives the same vectors."""
    from alime.config import AppConfig
    from alime.retrieval.embeddings import Seq2SeqEmbedder
    from alime.text import TextPipeline

    tokenize = TextPipeline(AppConfig().text).tokenize
    questions = QUERIES + ["", "亲亲亲亲"]
    got = Seq2SeqEmbedder(BUNDLED_INT8, tokenize, pooling).embed(questions)
    tf_path = Seq2SeqEmbedder(BUNDLED_INT8, tokenize, pooling)
    monkeypatch.setattr(tf_path, "_warm_up_int8", lambda: False)  # the traced pooling
    ref = tf_path.embed(questions)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_numpy_network_matches_tensorflow_on_the_same_int8_weights():
    """An independent oracle: the Keras model filled with the dequantized weights, run by
    TensorFlow, against the TensorFlow-free network with the float head on the same weights
    (the int8 head's own error is tested in tests/pluto)."""
    import dataclasses

    from alime.config import AppConfig
    from alime.rerank.loading import make_generator
    from alime.seq2seq.model import InferenceModel
    from alime.seq2seq.model_dir import load_model_dir
    from alime.seq2seq.quantized import load_int8_model_dir
    from alime.text import TextPipeline

    keras_loaded = load_model_dir(BUNDLED_INT8)
    tf_model = dataclasses.replace(keras_loaded, inference=InferenceModel(keras_loaded.model))
    np_model = load_int8_model_dir(BUNDLED_INT8, "numpy")
    config = AppConfig()
    pipeline = TextPipeline(config.text)
    targets = [tf_model.vocab.encode(pipeline.tokenize(a)) for a in ANSWERS]
    for query in QUERIES:
        source = tf_model.vocab.encode(pipeline.tokenize(query))
        for r, g in zip(
            tf_model.inference.answer_log_probs(source, targets),
            np_model.inference.answer_log_probs(source, targets),
            strict=True,
        ):
            np.testing.assert_allclose(g, r, atol=1e-4)
    tf_gen, np_gen = (make_generator(m, config, pipeline) for m in (tf_model, np_model))
    for query in QUERIES[:6]:
        assert [g.text for g in np_gen.generate(query, [])] == [
            g.text for g in tf_gen.generate(query, [])
        ], query


_PRELOAD = """
import json, os, sys
from alime.bot import preload
from alime.config import AppConfig
preload(AppConfig())
print(json.dumps({"threads": len(os.listdir("/proc/self/task")),
                  "loaded": sorted(m for m in ("tensorflow", "faiss", "onnxruntime", "jieba",
                                               "onnx") if m in sys.modules)}))
"""


def test_preload_before_fork_starts_no_thread_and_loads_no_threaded_library(tmp_path):
    """What ``alime serve``'s master loads before forking: jieba and onnx yes; nothing that
    starts a thread (a forked worker would lose it), so no TensorFlow, faiss or ONNX Runtime."""
    env = {
        **os.environ,
        "ALIME_HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "OPENBLAS_NUM_THREADS": "1",
    }
    out = subprocess.run(
        [sys.executable, "-c", _PRELOAD],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"threads": 1, "loaded": ["jieba", "onnx"]}


def test_decoder_step_over_an_empty_source_equals_the_attention_path():
    """The anti-LM prior's step skips attention over a source with no real position: the
    context it would compute is exactly zero."""
    from alime.seq2seq.quantized import load_int8_model_dir
    from alime.seq2seq.vocab import PAD_ID

    net = load_int8_model_dir(BUNDLED_INT8).inference.net
    enc = net.encode(np.array([[PAD_ID]]))
    hidden = np.random.default_rng(3).normal(size=(4, net.dec_rec.shape[0])).astype(np.float32)
    out, new = net.step(np.array([5, 9, 17, 200]), hidden, enc)
    np.testing.assert_array_equal(out, net.combine(new, net.attend(new[:, None, :], enc)[:, 0]))
    assert not np.array_equal(
        out, net.step(np.array([5, 9, 17, 200]), hidden, net.encode(np.array([[5, 6]])))[0]
    )
