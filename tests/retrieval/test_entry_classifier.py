"""The KB entry classifier: naive Bayes by hand, live KB edits, saved models, the engine hook."""

import math
from collections import Counter

import numpy as np
import pytest

from alime.config import AppConfig, RetrievalConfig
from alime.kb.store import KnowledgeBase
from alime.retrieval.entry_classifier import (
    ALPHA,
    ClassifierFollower,
    EntryClassifier,
    Scores,
    WithClassified,
    ngrams,
)
from alime.routing import INTENT_CLIP, CandidateFeatures, Feature
from alime.text import TextConfig, TextPipeline
from alime.types import Candidate, Hit

ENTRIES = {
    3: ["能开发票吗", "可以开票吗", "发票怎么开"],
    5: ["什么时候发货", "多久发货"],
    8: ["可以备注吗"],
}


def by_hand(entries: dict[int, list[str]], query: str) -> dict[int, tuple[float, float]]:
    """Multinomial naive Bayes written out: prior = the entry's share of questions, smoothed
    n-gram likelihoods over the whole vocabulary; the ratio against all questions pooled."""
    counts = {e: sum((ngrams(q) for q in qs), Counter()) for e, qs in entries.items()}
    vocab = set().union(*counts.values())
    pooled = sum(counts.values(), Counter())
    q = ngrams(query)
    n = sum(q.values())
    total_q = sum(len(qs) for qs in entries.values())
    joint, ratio = {}, {}
    for e, c in counts.items():
        size = sum(c.values()) + ALPHA * len(vocab)
        loglik = sum(k * math.log((c[g] + ALPHA) / size) for g, k in q.items())
        background = sum(
            k * math.log((pooled[g] + ALPHA) / (sum(pooled.values()) + ALPHA * len(vocab)))
            for g, k in q.items()
        )
        joint[e] = math.log(len(entries[e]) / total_q) + loglik
        ratio[e] = (loglik - background) / n
    top = max(joint.values())
    z = sum(math.exp(v - top) for v in joint.values())
    return {e: (math.exp(joint[e] - top) / z, ratio[e]) for e in entries}


def build(entries):
    return EntryClassifier.build(
        [(sum((ngrams(q) for q in qs), Counter()), len(qs)) for qs in entries.values()],
        list(entries),
    )


def test_ngrams_are_letters_and_digits_with_their_pairs():
    assert ngrams("发票, 开!") == Counter({"发": 1, "票": 1, "开": 1, "发票": 1, "票开": 1})
    assert ngrams("。。") == Counter()


@pytest.mark.parametrize("query", ["发票抬头写公司可以吗", "啥时候发货", "明天会下雨吗", "备注"])
def test_posteriors_and_ratios_equal_naive_bayes_by_hand(query):
    got = build(ENTRIES).scores(ngrams(query))
    want = by_hand(ENTRIES, query)
    assert got.keys() == want.keys()
    for e in want:
        assert got[e][0] == pytest.approx(want[e][0], rel=1e-9, abs=1e-12)
        assert got[e][1] == pytest.approx(want[e][1], rel=1e-9, abs=1e-12)
    assert sum(p for p, _ in got.values()) == pytest.approx(1.0)


def test_on_the_bundled_kb_a_question_inside_a_longer_message_is_found():
    import json

    from alime.config import BUNDLED_DATA

    pipe = TextPipeline(AppConfig().text)
    rows = [
        json.loads(line)
        for line in (BUNDLED_DATA / "kb" / "curated.jsonl").read_text("utf-8").splitlines()
    ]
    model = EntryClassifier.build(
        [
            (
                sum(
                    (ngrams(pipe.standardize(q)) for q in [r["question"], *r["phrasings"]]),
                    Counter(),
                ),
                1 + len(r["phrasings"]),
            )
            for r in rows
        ],
        range(len(rows)),
    )

    def first(query):
        scores = model.scores(ngrams(pipe.standardize(query)))
        top = max(scores, key=lambda e: scores[e][0])
        return rows[top]["question"], scores[top][1]

    assert first("发票抬头写公司名可以吗")[0] == "能开发票吗"
    assert first("宝宝尿不湿快用完了 麻烦尽快发出")[0] == "能加急发货吗"
    # the entry explains the question's n-grams better than the KB's questions pooled do
    assert first("发票抬头写公司名可以吗")[1] > 0


def test_empty_kb_or_query_gives_nothing():
    assert EntryClassifier().scores(ngrams("发票")) == {}
    assert build(ENTRIES).scores(ngrams("!!")) == {}


def follower(tmp_path, pipeline=None, kb=None):
    kb = kb or KnowledgeBase(tmp_path / "kb.sqlite")
    return kb, ClassifierFollower(
        kb, pipeline or TextPipeline(), tmp_path / "kb.index-classifier", RetrievalConfig()
    )


def best(f, query):
    return f.search(query, 1)[0].id


def test_follows_adds_edits_and_deletes_at_once(tmp_path):
    kb, f = follower(tmp_path)
    invoice = kb.add("能开发票吗", "可以开电子发票", phrasings=["可以开票吗"])
    ship = kb.add("什么时候发货", "72 小时内发货")
    assert best(f, "开个发票") == invoice.id and best(f, "哪天发货") == ship.id
    remark = kb.add("可以备注吗", "可以的, 拍下备注")
    assert best(f, "能写备注吗") == remark.id  # the next query sees the new entry
    kb.edit(remark.id, question="可以留言吗", phrasings=[])
    assert best(f, "能留言吗") == remark.id
    kb.delete(invoice.id)
    assert invoice.id not in f.posteriors("开个发票")
    # the same query again after an edit: answered from the new model, not the last answer
    before = f.posteriors("能开发票吗")
    again = kb.add("能开发票吗", "可以开专票")
    after = f.posteriors("能开发票吗")
    assert again.id not in before and best(f, "能开发票吗") == again.id and len(after) == 3


def test_saved_model_is_reused_and_rebuilt_under_other_text_analysis(tmp_path):
    kb, f = follower(tmp_path)
    kb.add("能开发票吗", "可以", phrasings=["可以开票吗"])
    kb.add("啥时候发货", "72 小时内")
    before = f.posteriors("开票")
    f.save()
    _, again = follower(tmp_path, kb=kb)
    assert again.posteriors("开票") == before
    spellings = tmp_path / "spellings.txt"
    spellings.write_text("啥 什么\n", encoding="utf-8")
    other = TextPipeline(TextConfig(spellings=str(spellings)))
    _, rebuilt = follower(tmp_path, other, kb)
    assert rebuilt._searchable().analyzer == other.fingerprint()
    # the primary question 啥时候发货 is counted as 什么时候发货 now
    assert best(rebuilt, "什么时候发货") == best(rebuilt, "啥时候发货")


def test_with_classified_adds_the_missed_entries_after_the_hits(tmp_path):
    kb, f = follower(tmp_path)
    ids = [kb.add(q, "a").id for q in ("能开发票吗", "什么时候发货", "可以备注吗")]

    class OneHit:
        def search(self, query, k):
            return [Hit(ids[1], 2.5)]

    # the classifier's best two for 开发票: the invoice entry, then one the retriever found
    hits = WithClassified(OneHit(), f, extra=2).search("开发票", 10)
    assert hits == [Hit(ids[1], 2.5), Hit(ids[0], 0.0)]
    # its best three: the two missed ones are added (score 0, after the hits), none twice
    hits = WithClassified(OneHit(), f, extra=3).search("开发票", 10)
    assert hits[0] == Hit(ids[1], 2.5) and sorted(h.id for h in hits[1:]) == [ids[0], ids[2]]
    assert all(h.score == 0.0 for h in hits[1:])


def test_intent_and_fit_features():
    table = {1: (0.9, 0.7), 2: (1e-9, -0.4)}
    feats = CandidateFeatures(lambda t: [t], lambda t: 1.0, posteriors=lambda q: table)
    cands = [Candidate(1, "x", "a", 1.0), Candidate(2, "y", "b", 1.0), Candidate(9, "z", "c", 1.0)]
    out = feats("q", cands, (Feature.INTENT, Feature.FIT))
    clipped = math.log(INTENT_CLIP / (1 - INTENT_CLIP))
    assert out[Feature.INTENT] == pytest.approx(np.array([math.log(9), clipped, clipped]))
    assert out[Feature.FIT].tolist() == [0.7, -0.4, 0.0]


def test_classifier_extra_setting(tmp_path):
    import dataclasses

    from alime.bot import open_kb, open_searcher, with_classifier

    config = AppConfig()
    config = dataclasses.replace(
        config, paths=dataclasses.replace(config.paths, kb=str(tmp_path / "kb.sqlite"))
    )
    kb = open_kb(config)
    searcher = open_searcher(config, kb)
    off = dataclasses.replace(config, retrieval=RetrievalConfig(classifier_extra=0))
    assert with_classifier(off, kb, searcher, searcher) is searcher
    with pytest.raises(ValueError, match="classifier_extra must be >= 0"):
        RetrievalConfig(classifier_extra=-1)
    assert isinstance(with_classifier(config, kb, searcher, searcher), WithClassified)


@pytest.mark.parametrize("k", [1, 3, 7, 40, 41, 100])
def test_top_equals_the_full_sort_with_ties(k):
    """``top`` sorts only the rows at or above the k-th largest probability: the same entries,
    in the same order, as sorting all of them (probability descending, then ascending id), when
    many entries tie, including at the k-th value."""
    rng = np.random.default_rng(k)
    ids = rng.permutation(np.arange(1000, 1041))  # 41 entries, ids not in row order
    probs = rng.choice([0.5, 0.25, 0.125, 0.0625], size=41)  # every value tied many times
    scores = Scores(ids, {int(e): r for r, e in enumerate(ids)}, probs, np.zeros(41))
    expected = sorted(
        zip(ids.tolist(), probs.tolist(), strict=True), key=lambda item: (-item[1], item[0])
    )
    assert scores.top(k) == expected[:k]
    assert Scores.EMPTY.top(k) == []
