from alime.config import AppConfig
from alime.text import TextPipeline, detokenize, normalize


def test_normalize():
    assert normalize("ＡＢＣ　１２３，你好\u200b\x07  World\n") == "abc 123,你好 world"
    assert normalize("  ") == ""


def test_segmented_and_raw_text_share_one_path():
    pipe = TextPipeline()
    assert pipe.tokenize("什么 时候 发货") == ["什么", "时候", "发货"]
    assert pipe.tokenize("什么时候发货？") == ["什么", "时候", "发货", "?"]


def test_query_terms_drop_stopwords_and_expand_synonyms():
    pipe = TextPipeline(AppConfig().text)
    assert pipe.index_terms("亲，什么时候发货啊？") == ["什么", "时候", "发货"]
    assert pipe.query_terms("包邮吗") == ["包邮", "免邮", "免运费"]


def test_user_dictionary_keeps_domain_words():
    assert "运费险" in TextPipeline(AppConfig().text).tokenize("有运费险吗")


def test_detokenize():
    assert detokenize(["你好", "hello", "world", "!"]) == "你好hello world!"


def test_text_config_metadata_names_bundled_files_relative_to_the_checkout(tmp_path):
    from alime.config import BUNDLED_DATA
    from alime.text import TextConfig

    outside = tmp_path / "stop.txt"
    meta = TextConfig(
        user_dict=str(BUNDLED_DATA / "text" / "userdict.txt"), stopwords=str(outside), synonyms=None
    ).as_metadata()
    assert meta == {
        "user_dict": "data/text/userdict.txt",
        "stopwords": str(outside),
        "synonyms": None,
        "lowercase": True,
    }


def test_tokenize_remembers_recent_texts_without_changing_results():
    """The per-thread memo of recent texts gives the same tokens as segmenting afresh, in any
    order and from several threads, and hands out lists the caller may change."""
    import threading

    texts = ["你们发什么快递", "我想退货", "什么时候发货呢？", "亲 在吗", "质量怎么样"]
    texts.append(texts[0])
    fresh = [TextPipeline(AppConfig().text).tokenize(t) for t in texts]
    pipeline = TextPipeline(AppConfig().text)
    for _ in range(3):  # more texts than the memo holds, cycled: hits and evictions
        assert [pipeline.tokenize(t) for t in texts] == fresh
    mine = pipeline.tokenize(texts[0])
    mine.append("改")
    assert pipeline.tokenize(texts[0]) == fresh[0]
    seen: list[list[list[str]]] = []

    def work() -> None:
        seen.append([pipeline.tokenize(t) for t in texts * 5])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [fresh * 5] * 4
