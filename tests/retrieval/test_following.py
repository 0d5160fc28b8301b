"""KBFollower under KB replacement, bulk backlogs and failed saves (issue 12, items 3, 4, 6)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from alime.config import RetrievalConfig
from alime.kb.store import KnowledgeBase
from alime.retrieval.searcher import KBSearcher
from alime.text import TextPipeline
from tests.conftest import QA_PAIRS

EXTRA = [
    ("量子 猫 能 寄 吗", "量子猫 不能 寄"),
    ("月球 包邮 吗", "月球 不 包邮"),
    ("恐龙 蛋 有 现货 吗", "恐龙蛋 缺货"),
]
NEW = ("火星 仓库 几 天 发货", "火星仓库 三 天 发货")


def seeded_kb(path, pairs=QA_PAIRS):
    kb = KnowledgeBase(path)
    kb.add_many((q, a, ()) for q, a in pairs)
    return kb


def copy_db(src, dst):
    """A consistent copy of a live SQLite database (the backup API, as a backup tool does)."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    a.close()
    b.close()


def answers(searcher, kb, query, k=10):
    hits = searcher.search(query, k)
    pairs = kb.get_many([h.id for h in hits])
    assert all(h.id in pairs for h in hits), "the index returned an id the KB does not hold"
    return [(h.id, pairs[h.id].question, pairs[h.id].answer) for h in hits]


def assert_index_equals_kb(searcher, kb):
    """Each KB question finds itself first-or-tied, and the index holds exactly the KB's ids."""
    assert len(searcher) == kb.count()
    for pair in kb.iter_pairs():
        assert pair.id in searcher._index
        found = answers(searcher, kb, pair.question.replace(" ", ""))
        assert pair.answer in [a for _, _, a in found[:3]], (pair, found)


def test_new_kb_gets_a_random_id_and_old_databases_get_one(tmp_path):
    a, b = KnowledgeBase(tmp_path / "a.sqlite"), KnowledgeBase(tmp_path / "b.sqlite")
    assert a.kb_id != b.kb_id and len(a.kb_id) == 32
    assert KnowledgeBase(tmp_path / "a.sqlite").kb_id == a.kb_id  # stable across opens
    copy_db(a.path, tmp_path / "copy.sqlite")
    assert KnowledgeBase(tmp_path / "copy.sqlite").identity() == a.identity()  # a backup
    b_id = b.kb_id
    with sqlite3.connect(tmp_path / "b.sqlite") as db:  # a database made before kb_id existed
        db.execute("DELETE FROM meta WHERE key = 'kb_id'")
    db.close()
    b.close()
    old = KnowledgeBase(tmp_path / "b.sqlite")
    assert len(old.kb_id) == 32 and old.kb_id != b_id


def test_restored_backup_is_noticed_on_sync(tmp_path, caplog):
    kb = seeded_kb(tmp_path / "kb.sqlite")
    searcher = KBSearcher(kb, TextPipeline(), tmp_path / "index")
    searcher.save()
    copy_db(kb.path, tmp_path / "backup.sqlite")
    extra = kb.add_many((q, a, ()) for q, a in EXTRA)
    assert answers(searcher, kb, "量子猫能寄吗")[0][0] == extra[0].id
    copy_db(tmp_path / "backup.sqlite", kb.path)  # restored under the running searcher
    new = kb.add(*NEW)
    assert new.id == extra[0].id  # the id the index knows as another pair's
    with caplog.at_level("WARNING"):
        found = answers(searcher, kb, "火星仓库几天发货")
    assert "rebuilding the index" in caplog.text
    assert found[0][0] == new.id and found[0][2] == NEW[1]
    for _, _, answer in [*answers(searcher, kb, "量子猫能寄吗"), *answers(searcher, kb, "恐龙蛋")]:
        assert answer not in [a for _, a in EXTRA]  # restored away: never found
    assert searcher.revision == kb.revision()
    assert_index_equals_kb(searcher, kb)


def test_deleted_and_reseeded_kb_is_noticed_on_open(tmp_path, caplog):
    kb = seeded_kb(tmp_path / "kb.sqlite", QA_PAIRS + EXTRA)
    KBSearcher(kb, TextPipeline(), tmp_path / "index").save()
    kb.close()
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"kb.sqlite{suffix}").unlink(missing_ok=True)
    kb = seeded_kb(tmp_path / "kb.sqlite", [NEW, *QA_PAIRS[:5]])  # same size class, other pairs
    with caplog.at_level("WARNING"):
        searcher = KBSearcher(kb, TextPipeline(), tmp_path / "index")
    assert "indexes KB" in caplog.text  # the warning names the KB id mismatch
    assert answers(searcher, kb, "火星仓库几天发货")[0][2] == NEW[1]
    for query in ("量子猫能寄吗", "月球包邮吗"):  # the old pairs are gone
        assert all(a not in [x for _, x in EXTRA] for _, _, a in answers(searcher, kb, query))
    state = json.loads((tmp_path / "index" / "state.json").read_text())
    assert state["kb_id"] == kb.kb_id and state["kb_revision"] == kb.revision()
    assert_index_equals_kb(searcher, kb)


def test_restored_backup_through_the_cli(tmp_path):
    """The issue's repro, as a user runs it."""
    env = {**os.environ, "ALIME_HOME": str(tmp_path / "home"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    kb_path = tmp_path / "kb.sqlite"
    config = tmp_path / "alime.toml"
    config.write_text(f'[paths]\nkb = "{kb_path}"\nmodel = "none"\n')
    seed = tmp_path / "seed.tsv"
    seed.write_text("".join(f"{q}\t{a}\n" for q, a in QA_PAIRS), encoding="utf-8")

    logged = []

    def run(*args):
        proc = subprocess.run(
            [sys.executable, "-m", "alime", "--config", str(config), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        logged.append(proc.stderr)
        return proc

    run("kb", "import", str(seed), "--format", "tsv")
    run("index")
    copy_db(kb_path, tmp_path / "backup.sqlite")
    for q, a in EXTRA:
        run("kb", "add", "--question", q, "--answer", a)
    run("index")
    copy_db(tmp_path / "backup.sqlite", kb_path)
    new_id = json.loads(run("kb", "add", "--question", NEW[0], "--answer", NEW[1]).stdout)["id"]
    hits = json.loads(run("search", "火星仓库几天发货", "--json").stdout)["results"]
    assert hits[0]["id"] == new_id and hits[0]["answer"] == NEW[1]
    assert "the KB went backwards" in "".join(logged)  # logged, not silent
    for query in ("量子猫能寄吗", "月球包邮吗"):
        hits = json.loads(run("search", query, "--json").stdout)["results"]
        assert all(h["answer"] != NEW[1] for h in hits)  # no other pair's answer


class GatedSearcher(KBSearcher):
    """A KBSearcher whose background thread waits at a gate before indexing (test control)."""

    def __init__(self, *args, **kwargs):
        self.gate = threading.Event()
        self.in_background = threading.Event()
        super().__init__(*args, **kwargs)

    def _index_values(self, pairs):
        if threading.current_thread().name.startswith("alime-"):
            self.in_background.set()
            assert self.gate.wait(60)
        return super()._index_values(pairs)


def test_bulk_backlog_is_built_in_the_background_while_queries_answer(tmp_path):
    kb = seeded_kb(tmp_path / "kb.sqlite")
    config = RetrievalConfig(background_sync_above=50, merge_every=10_000)
    searcher = GatedSearcher(kb, TextPipeline(), tmp_path / "index", config)
    before = answers(searcher, kb, "什么时候发货")
    bulk = kb.add_many((f"批量 问题 {i} 号 彩虹{i}", f"批量 答案 {i}", ()) for i in range(300))

    started = time.perf_counter()
    assert searcher.sync() == 0  # left to the background thread
    assert searcher.in_background.wait(30) and searcher.catching_up
    for _ in range(5):  # the gate is closed: answered from the current snapshot, at once
        assert answers(searcher, kb, "什么时候发货") == before
    assert answers(searcher, kb, "批量问题7号彩虹7") == []  # not yet searchable (documented)
    assert time.perf_counter() - started < 10
    assert searcher.revision < kb.revision()

    searcher.gate.set()
    assert searcher.wait_caught_up(60)
    assert searcher.revision == kb.revision()
    assert answers(searcher, kb, "批量问题7号彩虹7")[0][0] == bulk[7].id
    assert searcher._index.pending_edits == 0  # merged off to the side, then swapped in
    state = json.loads((tmp_path / "index" / "state.json").read_text())
    assert state["kb_revision"] == kb.revision()  # and saved

    # Normal edits stay synchronous: visible to the very next query.
    edited = kb.edit(bulk[7].id, answer="改 过 的 答案")
    assert searcher.sync() == 1
    assert answers(searcher, kb, "批量问题7号彩虹7")[0][2] == edited.answer


def test_edits_during_a_background_catch_up_are_not_lost(tmp_path):
    kb = seeded_kb(tmp_path / "kb.sqlite")
    config = RetrievalConfig(background_sync_above=50, merge_every=10_000)
    searcher = GatedSearcher(kb, TextPipeline(), tmp_path / "index", config)
    searcher.search("发货", 1)
    kb.add_many((f"批量 问题 {i} 号", f"批量 答案 {i}", ()) for i in range(100))
    searcher.sync()
    assert searcher.in_background.wait(30)
    late = kb.add("迟到 的 独角兽 问题", "独角兽 答案")  # while the thread waits at the gate
    kb.delete(1)
    searcher.search("独角兽", 3)
    searcher.gate.set()
    assert searcher.wait_caught_up(60)
    searcher.sync()
    assert answers(searcher, kb, "迟到的独角兽问题")[0][0] == late.id
    assert 1 not in searcher._index
    assert_index_equals_kb(searcher, kb)


def test_first_sync_after_open_is_synchronous_whatever_the_backlog(tmp_path):
    """A CLI command (or a server warm-up) never answers from an index it knows is behind."""
    kb = seeded_kb(tmp_path / "kb.sqlite")
    config = RetrievalConfig(background_sync_above=5)
    KBSearcher(kb, TextPipeline(), tmp_path / "index", config).save()
    bulk = kb.add_many((f"批量 问题 {i} 号 彩虹{i}", f"批量 答案 {i}", ()) for i in range(40))
    searcher = KBSearcher(kb, TextPipeline(), tmp_path / "index", config)
    assert answers(searcher, kb, "批量问题3号彩虹3")[0][0] == bulk[3].id


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temp_folders_of_dead_processes_are_removed_on_open(tmp_path):
    kb = seeded_kb(tmp_path / "kb.sqlite")
    KBSearcher(kb, TextPipeline(), tmp_path / "index").save()
    pid = dead_pid()
    stale = [tmp_path / f"index.tmp-{pid}", tmp_path / f"index.old-{pid}"]
    running = tmp_path / f"index.tmp-{os.getpid()}"  # a live process's save in progress
    for folder in [*stale, running]:
        folder.mkdir()
        (folder / "params.json").write_text("{}")
    KBSearcher(kb, TextPipeline(), tmp_path / "index")
    assert not any(folder.exists() for folder in stale)
    assert running.exists()


class FailingSave(KBSearcher):
    fail = False

    def _state(self):
        if self.fail:
            raise OSError("disk full")
        return {}


def test_a_failed_save_leaves_no_temp_folder_and_the_old_index(tmp_path):
    kb = seeded_kb(tmp_path / "kb.sqlite")
    searcher = FailingSave(kb, TextPipeline(), tmp_path / "index")
    saved = json.loads((tmp_path / "index" / "state.json").read_text())
    kb.add(*NEW)
    searcher.sync()
    searcher.fail = True
    with pytest.raises(OSError, match="disk full"):
        searcher.save()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("index")) == [
        "index",
        "index.lock",
    ]
    assert json.loads((tmp_path / "index" / "state.json").read_text()) == saved
    reopened = KBSearcher(kb, TextPipeline(), tmp_path / "index")
    assert answers(reopened, kb, "火星仓库几天发货")[0][2] == NEW[1]


def test_restored_backup_written_past_the_index_revision_is_noticed(tmp_path, caplog):
    """Restored, then more writes than were lost before any search: the revision is one the
    index has seen, with the same KB id; the change token at that revision tells them apart."""
    kb = seeded_kb(tmp_path / "kb.sqlite")
    searcher = KBSearcher(kb, TextPipeline(), tmp_path / "index")
    copy_db(kb.path, tmp_path / "backup.sqlite")
    kb.add_many((q, a, ()) for q, a in EXTRA)
    searcher.sync()
    seen = searcher.revision
    copy_db(tmp_path / "backup.sqlite", kb.path)
    other = KnowledgeBase(kb.path)  # another process imports a file
    more = [(f"补充 问题 {i}", f"补充 答案 {i}", ()) for i in range(4)]
    new = other.add_many([(*NEW, ()), *more])
    assert kb.revision() > seen and kb.kb_id == searcher._live.kb_id
    with caplog.at_level("WARNING"):
        found = answers(searcher, kb, "火星仓库几天发货")
    assert "change token" in caplog.text
    assert found[0][0] == new[0].id and found[0][2] == NEW[1]
    for query in ("量子猫能寄吗", "月球包邮吗", "恐龙蛋有现货吗"):
        assert all(a not in [x for _, x in EXTRA] for _, _, a in answers(searcher, kb, query))
    assert_index_equals_kb(searcher, kb)
    # and a process opening the saved index later sees the same history
    reopened = KBSearcher(kb, TextPipeline(), tmp_path / "index")
    assert reopened.revision == kb.revision()


def test_each_write_transaction_gets_its_own_change_token(tmp_path):
    kb = KnowledgeBase(tmp_path / "kb.sqlite")
    assert kb.identity().revision == 0 and kb.identity().tx is None
    batch = kb.add_many([("问 一", "答 一", ()), ("问 二", "答 二", ())])
    kb.edit(batch[0].id, answer="答 改")
    kb.delete(batch[1].id)
    changes = kb.changes_since(0)
    assert changes[0].tx == changes[1].tx  # one transaction, one token
    assert len({changes[1].tx, changes[2].tx, changes[3].tx}) == 3
    assert kb.identity(at=1).tx == changes[0].tx and kb.identity().tx == changes[3].tx
    assert kb.identity(at=99).tx is None


def test_a_large_replaced_kb_is_rebuilt_in_the_background_answering_nothing_meanwhile(tmp_path):
    pairs = [(f"{q} 第{i}批", a) for i in range(3) for q, a in QA_PAIRS]
    kb = seeded_kb(tmp_path / "kb.sqlite", pairs)
    config = RetrievalConfig(background_sync_above=10)
    searcher = GatedSearcher(kb, TextPipeline(), tmp_path / "index", config)
    copy_db(kb.path, tmp_path / "backup.sqlite")
    lost = kb.add_many((q, a, ()) for q, a in EXTRA)
    assert answers(searcher, kb, "量子猫能寄吗")[0][0] == lost[0].id
    copy_db(tmp_path / "backup.sqlite", kb.path)
    new = kb.add(*NEW)
    assert searcher.sync() == 0 and searcher.in_background.wait(30)
    # Meanwhile: nothing rather than the restored-away pair under the new pair's id.
    assert answers(searcher, kb, "量子猫能寄吗") == []
    assert answers(searcher, kb, "火星仓库几天发货") == []
    searcher.gate.set()
    assert searcher.wait_caught_up(60)
    assert answers(searcher, kb, "火星仓库几天发货")[0] == (new.id, NEW[0], NEW[1])
    assert_index_equals_kb(searcher, kb)
