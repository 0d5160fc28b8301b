import pytest

from alime.bot import build_bot
from alime.kb.formats import read_rows
from alime.kb.store import KnowledgeBase
from alime.serving.app import create_app


@pytest.fixture
def bot(tiny_config, tiny_tsv):
    kb_path, _, _ = tiny_config.resolved_paths()
    KnowledgeBase(kb_path).add_many((r.question, r.answer, ()) for r in read_rows(tiny_tsv, "tsv").rows)
    return build_bot(tiny_config)


@pytest.fixture
def client(bot, monkeypatch):
    monkeypatch.setenv("ALIME_ADMIN_TOKEN", "s3cret-token")
    return create_app(bot=bot).test_client()


AUTH = {"Authorization": "Bearer s3cret-token"}
