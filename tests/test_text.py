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
        "spellings": None,
        "lowercase": True,
    }


def test_variant_spellings_are_standardized_before_segmentation():
    pipe = TextPipeline(AppConfig().text)
    assert pipe.standardize("开封了咋存") == "开封了怎么存"
    assert pipe.standardize("肿么还木有发火") == "怎么还没有发货"  # longest variant first
    # queries and KB questions meet on the standard words
    assert pipe.index_terms("啥时候发火") == pipe.index_terms("什么时候发货")
    # pinyin initials, only as whole Latin words
    assert pipe.standardize("能开fp吗 用xyk付行不") == "能开发票吗 用信用卡付行不"
    assert pipe.standardize("fps高吗 ufp") == "fps高吗 ufp"
    # without a variants file nothing changes
    assert TextPipeline().standardize("啥时候发火") == "啥时候发火"


def test_a_malformed_variants_line_names_file_and_line(tmp_path):
    import pytest

    from alime.text import TextConfig, read_spellings

    path = tmp_path / "spellings.txt"
    path.write_text("# comment\n咋 怎么\n啥\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{path}:3: expected 'variant standard'"):
        read_spellings(path)
    path.write_text("咋 怎么\n", encoding="utf-8")
    assert TextPipeline(TextConfig(spellings=str(path))).standardize("咋办") == "怎么办"


def test_fingerprint_follows_the_resource_files(tmp_path):
    from alime.text import TextConfig

    path = tmp_path / "spellings.txt"
    path.write_text("咋 怎么\n", encoding="utf-8")
    first = TextPipeline(TextConfig(spellings=str(path))).fingerprint()
    assert TextPipeline(TextConfig(spellings=str(path))).fingerprint() == first
    path.write_text("咋 怎么\n啥 什么\n", encoding="utf-8")
    assert TextPipeline(TextConfig(spellings=str(path))).fingerprint() != first
    assert TextPipeline().fingerprint() != first


def test_tokenize_remembers_recent_texts_without_changing_results(monkeypatch):
    """The pipeline's memo of recent texts gives the same tokens as segmenting afresh, in any
    order and from several threads, and hands out lists the caller may change."""
    import threading

    texts = ["你们发什么快递", "我想退货", "什么时候发货呢？", "亲 在吗", "质量怎么样"]
    texts.append(texts[0])
    fresh = [TextPipeline(AppConfig().text).tokenize(t) for t in texts]
    import alime.text

    monkeypatch.setattr(alime.text, "TOKEN_CACHE", 4)  # fewer than the texts: evictions too
    pipeline = TextPipeline(AppConfig().text)
    for _ in range(3):  # cycled: hits and evictions
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
