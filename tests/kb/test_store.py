import sqlite3

import pytest

from alime.kb.store import KnowledgeBase, NotFound


def test_add_get_edit_delete_and_revisions(tmp_path):
    kb = KnowledgeBase(tmp_path / "kb.sqlite")
    assert kb.count() == 0 and kb.revision() == 0
    a = kb.add("怎么 退货", "七天 无理由", tags=["售后"])
    b = kb.add("发 什么 快递", "中通")
    assert kb.get(a.id) == a and a.tags == ("售后",)
    edited = kb.edit(b.id, answer="顺丰")
    assert edited.answer == "顺丰" and edited.question == "发 什么 快递"
    assert edited.updated_at >= b.updated_at and edited.created_at == b.created_at
    kb.delete(a.id)
    with pytest.raises(NotFound):
        kb.get(a.id)
    ops = [(c.op, c.qa_id) for c in kb.changes_since(0)]
    assert ops == [("add", a.id), ("add", b.id), ("edit", b.id), ("delete", a.id)]
    assert kb.revision() == 4
    assert [c.op for c in kb.changes_since(2)] == ["edit", "delete"]


def test_missing_ids_raise_not_found(tmp_path):
    kb = KnowledgeBase(tmp_path / "kb.sqlite")
    with pytest.raises(NotFound):
        kb.edit(99, answer="x")
    with pytest.raises(NotFound):
        kb.delete(99)
    assert kb.revision() == 0  # failed writes leave no trace in the change log


def test_add_many_is_one_transaction(tmp_path):
    kb = KnowledgeBase(tmp_path / "kb.sqlite")
    kb.add("q0", "a0")
    rows = [("q1", "a1", ()), ("q2", "a2", ()), ("q3", "", ())]  # the last one is invalid
    with pytest.raises(ValueError, match="answer"):
        kb.add_many(rows)
    assert kb.count() == 1 and kb.revision() == 1  # nothing of the failed batch remains


def test_data_survives_reopen_and_is_visible_to_other_connections(tmp_path):
    path = tmp_path / "kb.sqlite"
    kb = KnowledgeBase(path)
    kb.add_many([(f"q{i}", f"a{i}", ()) for i in range(100)])
    kb.close()
    again = KnowledgeBase(path)
    assert again.count() == 100
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT COUNT(*) FROM qa").fetchone()[0] == 100
    raw.close()


def test_get_many_and_iteration_in_batches(tmp_path):
    kb = KnowledgeBase(tmp_path / "kb.sqlite")
    added = kb.add_many([(f"q{i}", f"a{i}", ()) for i in range(1203)])
    ids = [p.id for p in added]
    assert [p.id for p in kb.iter_pairs(batch=100)] == ids
    got = kb.get_many(ids[::2] + [10**9])
    assert set(got) == set(ids[::2])
    stats = kb.stats()
    assert stats["pairs"] == 1203 and stats["distinct_answers"] == 1203
