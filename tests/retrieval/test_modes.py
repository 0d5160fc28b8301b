"""retrieval.mode picks the engine's retriever; dense and hybrid need a model."""

from dataclasses import replace

import pytest

from alime.config import RetrievalConfig
from alime.retrieval.fusion import HybridSearcher
from alime.retrieval.modes import build_retriever


class Stub:
    pipeline = None


def test_bm25_mode_and_fallback_without_model(tiny_config):
    bm25 = Stub()
    for mode in ("bm25", "dense", "hybrid"):
        config = replace(tiny_config, retrieval=RetrievalConfig(mode=mode))
        assert build_retriever(config, None, bm25, model_dir=None) is bm25


def test_unknown_mode_lists_the_valid_ones(tiny_config):
    config = replace(tiny_config, retrieval=RetrievalConfig(mode="vector"))
    with pytest.raises(ValueError, match="valid: bm25, dense, hybrid"):
        build_retriever(config, None, Stub(), model_dir=None)


def test_hybrid_mode_wraps_both(tiny_config, monkeypatch, tmp_path):
    dense = Stub()
    monkeypatch.setattr("alime.retrieval.modes.open_dense", lambda *a: dense)
    config = replace(tiny_config, retrieval=RetrievalConfig(mode="hybrid"))
    bm25 = Stub()
    got = build_retriever(config, None, bm25, model_dir=tmp_path)
    assert isinstance(got, HybridSearcher) and got.bm25 is bm25 and got.dense is dense
    assert got.settings.mode.value == config.retrieval.fusion.mode
    config = replace(tiny_config, retrieval=RetrievalConfig(mode="dense"))
    assert build_retriever(config, None, bm25, model_dir=tmp_path) is dense
