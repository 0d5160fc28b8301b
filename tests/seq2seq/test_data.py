import numpy as np
import pytest

from alime.seq2seq.config import Seq2SeqConfig
from alime.seq2seq.data import (
    DataFormat,
    Example,
    TokenizedDialogue,
    bucket_batches,
    bucket_index,
    encode_query,
    encode_source,
    encode_target,
    group_conversations,
    make_examples,
    read_dialogues,
    split_dialogues,
)
from alime.seq2seq.vocab import EOS_ID, PAD_ID, SEP_ID, UNK_ID, Vocabulary

VOCAB = Vocabulary(["a", "b", "c", "d"])  # ids 5, 6, 7, 8


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_ecommerce_reads_label_1_lines_with_line_numbers(tmp_path):
    path = _write(tmp_path, "d.txt", "1\tq1 x\ta1\tq2\tr1\n0\tq1 x\ta1\tq2\tbad\n\n1\thi\tyo\n")
    dialogues = read_dialogues(path)
    assert [(d.turns, d.response, d.line) for d in dialogues] == [
        (("q1 x", "a1", "q2"), "r1", 1),
        (("hi",), "yo", 4),
    ]


@pytest.mark.parametrize("row", ["1\tonly", "x\tq\tr", "1\tq\t"])
def test_ecommerce_errors_name_file_and_line(tmp_path, row):
    path = _write(tmp_path, "bad.txt", f"1\tq\tr\n{row}\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2: "):
        read_dialogues(path, DataFormat.ECOMMERCE)


def test_tsv_reads_pairs_and_errors_name_file_and_line(tmp_path):
    good = _write(tmp_path, "qa.tsv", "how\tlike this\n")
    assert [(d.turns, d.response) for d in read_dialogues(good)] == [(("how",), "like this")]
    bad = _write(tmp_path, "qa2.tsv", "how\tlike this\nq\ta\textra\n")
    with pytest.raises(ValueError, match=r"qa2\.tsv:2: "):
        read_dialogues(bad, "tsv")
    with pytest.raises(ValueError, match="valid: "):
        read_dialogues(bad, "yaml")


def test_split_is_deterministic_disjoint_and_by_dialogue(tmp_path):
    path = _write(tmp_path, "d.txt", "".join(f"1\tq{i}\tr{i}\n" for i in range(50)))
    dialogues = read_dialogues(path)
    train, valid = split_dialogues(dialogues, 0.1, seed=7)
    assert len(valid) == 5 and len(train) == 45
    assert {d.line for d in train}.isdisjoint({d.line for d in valid})
    assert split_dialogues(dialogues, 0.1, seed=7) == (train, valid)
    assert split_dialogues(dialogues, 0.1, seed=8)[1] != valid


def test_samples_of_one_conversation_share_a_group(tmp_path):
    lines = [
        "1\ta\tb\tc\td\n",  # the full conversation
        "1\ta\tb\n",  # its opening (a prefix)
        "1\tb\tc\td\n",  # a later window (three shared turns)
        "1\tx\ty\n",  # unrelated
        "1\ta\tz\n",  # same first turn, different reply: unrelated
    ]
    groups = group_conversations(read_dialogues(_write(tmp_path, "d.txt", "".join(lines))))
    assert groups[0] == groups[1] == groups[2]
    assert len({groups[0], groups[3], groups[4]}) == 3


def test_split_keeps_overlapping_samples_of_a_conversation_together(tmp_path):
    rows = []
    for i in range(40):  # 40 conversations, each sampled at three lengths
        turns = [f"q{i}", f"r{i}", f"s{i}", f"t{i}", f"u{i}"]
        rows += ["1\t" + "\t".join(turns[:n]) + "\n" for n in (2, 3, 5)]
    dialogues = read_dialogues(_write(tmp_path, "d.txt", "".join(rows)))
    train, valid = split_dialogues(dialogues, 0.1, seed=3)
    assert len(valid) == 12 and len(train) == 108
    train_windows = {(*d.turns, d.response)[:2] for d in train}
    assert all((*d.turns, d.response)[:2] not in train_windows for d in valid)


def test_source_joins_last_turns_with_sep_and_truncates_from_the_left():
    config = Seq2SeqConfig(vocab_size=9, context_turns=2, max_source_len=4)
    assert encode_source([["a"], ["b"], ["c"]], VOCAB, config) == [6, SEP_ID, 7]
    assert encode_source([["a"], ["b", "c", "d", "zz"]], VOCAB, config) == [6, 7, 8, UNK_ID]
    assert encode_query("c", ["a", "b"], str.split, VOCAB, config) == [6, SEP_ID, 7]


def test_target_ends_with_eos_unless_cut():
    config = Seq2SeqConfig(vocab_size=9, max_target_len=3)
    assert encode_target(["a", "b"], VOCAB, config) == [5, 6, EOS_ID]
    assert encode_target(["a", "b", "c"], VOCAB, config) == [5, 6, 7]


def test_expand_turns_uses_every_responder_turn():
    config = Seq2SeqConfig(vocab_size=9)
    d = TokenizedDialogue((("a",), ("b",), ("c",)), ("d",))  # responder said b and d
    assert [ex.target for ex in make_examples([d], VOCAB, config, expand_turns=True)] == [
        (6, EOS_ID),
        (8, EOS_ID),
    ]
    assert len(make_examples([d], VOCAB, config)) == 1


def test_bucket_index_picks_the_smallest_fitting_bucket():
    buckets = Seq2SeqConfig(vocab_size=9).buckets
    assert bucket_index(5, 5, buckets) == 0
    assert bucket_index(3, 6, buckets) == 1
    assert bucket_index(6, 2, buckets) == 2
    assert bucket_index(21, 5, buckets) == 4
    assert bucket_index(100, 100, buckets) == 4  # too long: the last bucket, truncated


def test_bucket_batches_pad_to_fixed_bucket_shapes_and_truncate():
    buckets = ((2, 2), (3, 4))
    examples = [
        Example((5,), (6, EOS_ID)),
        Example((5, 6, 7, 8), (5, 5, 5, 5, 5, EOS_ID)),
        Example((7, 8), (6,)),
    ]
    batches = bucket_batches(examples, buckets, batch_size=8)
    shapes = sorted((s.shape, t.shape) for s, t in batches)
    assert shapes == [((1, 3), (1, 4)), ((2, 2), (2, 2))]
    src, tgt = next(b for b in batches if b[0].shape == (1, 3))
    assert src.tolist() == [[6, 7, 8]] and tgt.tolist() == [[5, 5, 5, 5]]
    src, _ = next(b for b in batches if b[0].shape == (2, 2))
    assert src.tolist() == [[5, PAD_ID], [7, 8]]


def test_shuffled_batches_are_reproducible_and_keep_every_example():
    examples = [Example((5,) * (i % 4 + 1), (6, EOS_ID)) for i in range(40)]
    a = bucket_batches(examples, ((2, 2), (4, 2)), 8, seed=3, empty_source_rate=0.5)
    b = bucket_batches(examples, ((2, 2), (4, 2)), 8, seed=3, empty_source_rate=0.5)
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a, b, strict=True))
    assert sum(len(s) for s, _ in a) == 40
    assert any((s == PAD_ID).all(axis=1).any() for s, _ in a)  # some sources emptied
