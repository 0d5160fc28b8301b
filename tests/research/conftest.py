"""The research tests share the seq2seq tiny-model fixtures and the evaluation's tiny files."""

from tests.evaluation.conftest import groups_file, rows  # noqa: F401
from tests.seq2seq.conftest import tiny_config, tiny_model, tiny_model_dir, tiny_vocab  # noqa: F401
