"""The rerank tests share the seq2seq package's tiny-model fixtures."""

from tests.seq2seq.conftest import tiny_config, tiny_model, tiny_model_dir, tiny_vocab  # noqa: F401
