"""The KB-aware searcher: follows live KB changes, survives restarts, matches a fresh build."""

import numpy as np
from rank_bm25 import BM25Okapi

from alime.config import RetrievalConfig
from alime.kb.store import KnowledgeBase
from alime.retrieval.searcher import KBSearcher
from alime.text import TextPipeline
from tests.conftest import QA_PAIRS


def make(tmp_path, merge_every=256):
    kb = KnowledgeBase(tmp_path / "kb.sqlite")
    kb.add_many((q, a, ()) for q, a in QA_PAIRS)
    pipe = TextPipeline()
    return (
        kb,
        pipe,
        KBSearcher(kb, pipe, tmp_path / "index", RetrievalConfig(merge_every=merge_every)),
    )


def reference_scores(kb, pipe, query_terms):
    """rank-bm25 over every question of every entry (one document each); an entry scores as
    its best question."""
    pairs = list(kb.iter_pairs())
    owners = [p.id for p in pairs for _ in p.questions]
    ref = BM25Okapi([pipe.index_terms(q) for p in pairs for q in p.questions])
    best: dict[int, float] = {}
    for owner, score in zip(owners, ref.get_scores(query_terms), strict=True):
        best[owner] = max(best.get(owner, score), score)
    return best


def test_search_matches_rank_bm25_after_live_changes(tmp_path):
    kb, pipe, searcher = make(tmp_path)
    other = KnowledgeBase(tmp_path / "kb.sqlite")  # another process/connection edits the KB
    new = other.add("怎么 查 物流", "订单 页 可以 查看 物流")
    other.edit(1, question="几 天 发货")
    other.delete(2)
    hits = searcher.search("物流发货几天", 10)  # the searcher notices the revision change
    terms = searcher.analyze("物流发货几天")
    ref = reference_scores(kb, pipe, terms)
    assert hits and hits[0].id in (new.id, 1)
    for h in hits:
        assert abs(h.score - ref[h.id]) < 1e-9
    expected = sorted((i for i, s in ref.items() if s > 0), key=lambda i: (-ref[i], i))[:10]
    assert [h.id for h in hits] == expected
    assert 2 not in [h.id for h in searcher.search("发 什么 快递", 10)]


def test_an_entry_scores_as_its_best_phrasing(tmp_path):
    kb, pipe, searcher = make(tmp_path)
    new = kb.add(
        "退款 多久 到账", "一到三天", phrasings=["钱 什么 时候 退回来", "退款 多久 到账 呀"]
    )
    edited = kb.edit(5, phrasings=["正品 保证 吗", "是 不是 假货"])
    hits = searcher.search("钱退回来", 5)
    assert hits[0].id == new.id  # found by a phrasing's words only
    assert searcher.search("假货", 3)[0].id == edited.id
    for query in ("钱退回来", "退款到账多久", "假货正品", "什么时候发货"):
        ref = reference_scores(kb, pipe, searcher.analyze(query))
        expected = sorted((i for i, s in ref.items() if s > 0), key=lambda i: (-ref[i], i))[:10]
        hits = searcher.search(query, 10)
        assert [h.id for h in hits] == expected, query
        for h in hits:
            assert abs(h.score - ref[h.id]) < 1e-9, query
    kb.edit(new.id, phrasings=["钱 什么 时候 退回来"])  # fewer phrasings: the old documents go
    kb.edit(edited.id, phrasings=[])
    assert searcher.search("假货", 3) == [] or searcher.search("假货", 3)[0].id != edited.id
    for query in ("钱退回来", "退款到账多久 呀", "假货正品"):
        ref = reference_scores(kb, pipe, searcher.analyze(query))
        assert all(abs(h.score - ref[h.id]) < 1e-9 for h in searcher.search(query, 10)), query
    assert len(searcher) == kb.count()  # entries, not documents
    searcher.rebuild()  # a fresh build gives the same scores as the live delta
    ref = reference_scores(kb, pipe, searcher.analyze("钱退回来"))
    assert all(abs(h.score - ref[h.id]) < 1e-9 for h in searcher.search("钱退回来", 10))


def test_many_phrasings_do_not_bury_an_entry(tmp_path):
    """One document of all phrasings was long, and BM25 ranked it below one-question entries
    for its own question (the bundled 什么时候发货 entry was not in the top 60)."""
    kb, pipe, searcher = make(tmp_path)
    kb.delete(1)  # the fixture's own 什么 时候 发货
    many = kb.add(
        "什么 时候 发货",
        "72 小时 内 发货",
        phrasings=[
            f"亲 什么 时候 能 发货 呀 {w}"
            for w in (
                "今天",
                "明天",
                "周末",
                "马上",
                "尽快",
                "几号",
                "多久",
                "下午",
                "晚上",
                "上午",
            )
        ],
    )
    kb.add("什么 时候 到货", "三 天 左右")
    kb.add("什么 时候 有 活动", "双十一")
    assert searcher.search("什么时候发货", 3)[0].id == many.id
    # the old layout (one document of the distinct terms of all questions) lost here
    from rank_bm25 import BM25Okapi

    pairs = list(kb.iter_pairs())
    union = BM25Okapi(
        [list(dict.fromkeys(t for q in p.questions for t in pipe.index_terms(q))) for p in pairs]
    )
    scores = union.get_scores(searcher.analyze("什么时候发货"))
    assert pairs[int(np.argmax(scores))].id != many.id


def test_old_single_document_index_is_rebuilt(tmp_path):
    from alime.retrieval.bm25 import BM25Index

    kb, pipe, searcher = make(tmp_path)
    searcher.save()
    (tmp_path / "index" / "phrasings.json").unlink()  # what an index saved before looked like
    assert isinstance(BM25Index.load(tmp_path / "index"), BM25Index)
    reopened = KBSearcher(kb, pipe, tmp_path / "index")  # not a phrasing index: rebuilt
    assert (tmp_path / "index" / "phrasings.json").is_file()
    ref = reference_scores(kb, pipe, reopened.analyze("发货"))
    assert all(abs(h.score - ref[h.id]) < 1e-9 for h in reopened.search("发货", 10))


def test_an_index_built_under_other_text_analysis_is_rebuilt(tmp_path):
    from alime.text import TextConfig

    kb, pipe, searcher = make(tmp_path)
    searcher.save()
    variants = tmp_path / "spellings.txt"
    variants.write_text("啥 什么\n", encoding="utf-8")
    other = TextPipeline(TextConfig(spellings=str(variants)))
    # the saved index has no 啥 terms, but its analysis was another: it is not reused
    reopened = KBSearcher(kb, other, tmp_path / "index")
    assert reopened.search("啥时候发货", 3)[0].id == reopened.search("什么时候发货", 3)[0].id
    marker = (tmp_path / "index" / "phrasings.json").read_text(encoding="utf-8")
    assert other.fingerprint() in marker and pipe.fingerprint() not in marker


def test_restart_catches_up_from_the_change_log(tmp_path):
    kb, pipe, searcher = make(tmp_path)
    searcher.save()
    saved_revision = searcher.revision
    kb.add("可以 刷 信用卡 吗", "支持 信用卡 付款")  # changed while no searcher is running
    reopened = KBSearcher(kb, pipe, tmp_path / "index")
    assert reopened.revision == saved_revision  # loaded from disk, not rebuilt
    assert reopened.search("信用卡", 3)[0].id == kb.revision()  # the new pair's id
    assert len(reopened) == 21


def test_background_merge_keeps_scores(tmp_path):
    kb, pipe, searcher = make(tmp_path, merge_every=3)
    before = searcher.search("发货 快递", 10)
    for i in range(5):
        kb.add(f"测试 问题 {i}", f"答案 {i}")
    searcher.sync()
    for _ in range(200):  # wait for the merge thread
        if searcher._index.pending_edits == 0:
            break
        import time

        time.sleep(0.01)
    assert searcher._index.pending_edits == 0
    after = searcher.search("发货 快递", 10)
    ref = reference_scores(kb, pipe, searcher.analyze("发货 快递"))
    assert [h.id for h in after][: len(before)] and all(
        abs(h.score - ref[h.id]) < 1e-9 for h in after
    )
    assert np.isfinite([h.score for h in after]).all()


def test_processes_opening_one_index_together_do_not_collide(tmp_path):
    """Server workers start together: one builds and saves, the others wait and load."""
    import subprocess
    import sys

    kb = KnowledgeBase(tmp_path / "kb.sqlite")
    kb.add_many((f"问题 {i} 号 {q}", a, ()) for i in range(100) for q, a in QA_PAIRS)
    script = (
        "import sys; from alime.kb.store import KnowledgeBase; from alime.text import TextPipeline;"
        "from alime.retrieval.searcher import KBSearcher;"
        "s = KBSearcher(KnowledgeBase(sys.argv[1]), TextPipeline(), sys.argv[2]);"
        "print(len(s), s.search('发货', 1)[0].id)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path / "kb.sqlite"), str(tmp_path / "index")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    assert len({out for out, _ in outs}) == 1 and outs[0][0].startswith("2000 ")
    assert sorted(x.name for x in tmp_path.iterdir()) == [
        "index",
        "index.lock",
        "kb.sqlite",
        "kb.sqlite-shm",
        "kb.sqlite-wal",
    ]
