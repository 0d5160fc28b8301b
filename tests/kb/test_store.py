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


def test_phrasings_are_stored_cleaned_and_edited(tmp_path):
    kb = KnowledgeBase(tmp_path / "kb.sqlite")
    pair = kb.add(
        "什么时候发货",
        "72 小时内",
        phrasings=[" 几时发货 ", "什么时候发货", "几时发货", "啥时候发"],
    )
    assert pair.phrasings == ("几时发货", "啥时候发")  # stripped, once each, never the question
    assert kb.get(pair.id) == pair and pair.questions == ("什么时候发货", "几时发货", "啥时候发")
    edited = kb.edit(pair.id, question="几时发货")  # a phrasing promoted to primary leaves the list
    assert edited.phrasings == ("啥时候发",)
    assert kb.edit(pair.id, phrasings=[]).phrasings == ()
    assert kb.add_many([("q", "a", ())])[0].phrasings == ()  # 3-tuples still work
    with pytest.raises(ValueError, match="phrasing"):
        kb.add("q2", "a2", phrasings=["ok", " "])
    with pytest.raises(ValueError, match="not a string"):
        kb.add("q3", "a3", phrasings="one phrasing")
    assert kb.count() == 2 and kb.stats()["phrasings"] == 0


def test_version_1_database_is_migrated_in_place(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE qa (id INTEGER PRIMARY KEY AUTOINCREMENT, question TEXT NOT NULL,
            answer TEXT NOT NULL, tags TEXT NOT NULL DEFAULT '[]', created_at REAL NOT NULL,
            updated_at REAL NOT NULL);
        CREATE TABLE changes (revision INTEGER PRIMARY KEY, op TEXT NOT NULL,
            qa_id INTEGER NOT NULL);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        INSERT INTO qa VALUES (1, '发 什么 快递', '中通', '["旧"]', 1.0, 2.0);
        INSERT INTO changes VALUES (1, 'add', 1);
    """)
    conn.commit()
    conn.close()
    kb = KnowledgeBase(path)
    old = kb.get(1)
    assert (old.question, old.answer, old.tags, old.phrasings) == (
        "发 什么 快递",
        "中通",
        ("旧",),
        (),
    )
    assert kb.revision() == 1  # the change log is kept: indexes catch up as before
    assert kb.edit(1, phrasings=["哪家快递"]).phrasings == ("哪家快递",)
    kb.close()
    again = KnowledgeBase(path)  # reopening a migrated file is a no-op
    assert again.get(1).phrasings == ("哪家快递",)
    version = (
        sqlite3.connect(path)
        .execute("SELECT value FROM meta WHERE key = 'schema_version'")
        .fetchone()[0]
    )
    assert version == "3"
    # version 3: the KB's identity for search indexes (an id, a token per write transaction)
    assert len(again.kb_id) == 32 and again.kb_id == kb.kb_id
    old_change, edit_change = again.changes_since(0)
    assert old_change.tx is None and edit_change.tx is not None


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.sqlite"
    KnowledgeBase(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(ValueError, match="newer"):
        KnowledgeBase(path)
