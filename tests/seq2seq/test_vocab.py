from alime.seq2seq.vocab import (
    BOS_ID,
    EOS_ID,
    NUM_RESERVED,
    PAD_ID,
    SEP_ID,
    UNK_ID,
    Vocabulary,
)


def test_reserved_ids_are_fixed():
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID, SEP_ID) == (0, 1, 2, 3, 4)
    assert NUM_RESERVED == 5


def test_special_names_in_text_never_map_to_special_ids():
    vocab = Vocabulary.build([["[EOS]", "<eos>", "[PAD]", "hi"]])
    ids = vocab.encode(["[EOS]", "<eos>", "[PAD]", "[SEP]", "hi"])
    assert all(i >= NUM_RESERVED or i == UNK_ID for i in ids)
    assert ids[3] == UNK_ID  # an unseen word, not the separator


def test_build_orders_by_count_then_word_and_applies_limits():
    texts = [["b", "a", "c", "b"], ["a", "d"]]
    vocab = Vocabulary.build(texts, min_count=1, max_size=NUM_RESERVED + 2)
    assert vocab.words == ["a", "b"]  # a and b seen twice; the tie broken by the word
    assert len(vocab) == NUM_RESERVED + 2
    assert Vocabulary.build([["x", "y", "y"]], min_count=2).words == ["y"]


def test_decode_stops_at_eos_and_skips_special_ids():
    vocab = Vocabulary(["a", "b"])
    assert vocab.decode([BOS_ID, 5, SEP_ID, 6, EOS_ID, 5]) == ["a", "b"]
    assert vocab.encode(["a", "zzz"]) == [5, UNK_ID]


def test_save_load_round_trip(tmp_path):
    vocab = Vocabulary.build([["你好", "亲", "亲"]])
    vocab.save(tmp_path / "vocab.json")
    loaded = Vocabulary.load(tmp_path / "vocab.json")
    assert loaded.words == vocab.words
    assert loaded.encode(["亲", "你好", "x"]) == vocab.encode(["亲", "你好", "x"])
