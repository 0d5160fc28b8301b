"""Tiny seq2seq fixtures: a 4-unit model with random weights saved as a model directory."""

from __future__ import annotations

import pytest

from alime.seq2seq.config import Seq2SeqConfig
from alime.seq2seq.vocab import Vocabulary

WORDS = ["亲", "您好", "发货", "什么", "时候", "包邮", "吗", "可以", "的", "哦", "快递", "中通"]


class SplitPipeline:
    """Stands in for TextPipeline: the test texts are already space-separated."""

    @staticmethod
    def tokenize(text: str) -> list[str]:
        return text.split()


@pytest.fixture(scope="session")
def tiny_vocab() -> Vocabulary:
    return Vocabulary(WORDS)


@pytest.fixture(scope="session")
def tiny_config(tiny_vocab) -> Seq2SeqConfig:
    return Seq2SeqConfig(
        vocab_size=len(tiny_vocab),
        embed_dim=4,
        hidden_dim=4,
        attention_dim=4,
        buckets=((4, 4), (8, 8)),
        max_source_len=8,
        max_target_len=8,
    )


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_vocab, tiny_config):
    from alime.seq2seq.model import build_model
    from alime.seq2seq.model_dir import save_model_dir

    path = tmp_path_factory.mktemp("model")
    save_model_dir(path, build_model(tiny_config), tiny_vocab, {"note": "random weights"})
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from alime.seq2seq.model_dir import load_model_dir

    return load_model_dir(tiny_model_dir)
