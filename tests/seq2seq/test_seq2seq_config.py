import pytest

from alime.seq2seq.config import ALIME_BUCKETS, Seq2SeqConfig


def test_defaults_follow_alime():
    c = Seq2SeqConfig(vocab_size=10)
    assert c.buckets == ((5, 5), (5, 10), (10, 15), (20, 30), (45, 60)) == ALIME_BUCKETS
    assert c.context_turns == 3


def test_json_round_trip(tmp_path):
    c = Seq2SeqConfig(vocab_size=10, hidden_dim=8, buckets=((2, 3), (4, 5)))
    c.save(tmp_path / "config.json")
    assert Seq2SeqConfig.load(tmp_path / "config.json") == c


def test_invalid_values_rejected():
    with pytest.raises(ValueError, match="hidden_dim"):
        Seq2SeqConfig(vocab_size=10, hidden_dim=0)
    with pytest.raises(ValueError, match="dropout"):
        Seq2SeqConfig(vocab_size=10, dropout=1.0)
