import dataclasses
import json

import numpy as np
import pytest

from alime.seq2seq.data import Example, bucket_batches
from alime.seq2seq.model_dir import load_model_dir
from alime.seq2seq.training import Trainer, TrainOptions, train
from alime.seq2seq.vocab import EOS_ID
from alime.text import TextConfig


def test_training_loss_falls_over_a_few_steps(tiny_config):
    trainer = Trainer(tiny_config, TrainOptions(learning_rate=0.05, seed=1))
    examples = [
        Example((5, 6), (7, 8, EOS_ID)),
        Example((9,), (10, EOS_ID)),
        Example((11, 12, 13), (14, 15, 16, EOS_ID)),
        Example((6,), (5, EOS_ID)),
    ]
    batches = bucket_batches(examples, tiny_config.buckets, batch_size=4)
    before = trainer.evaluate(batches)
    assert trainer.train_epoch(batches * 15) < before  # one epoch of 15 steps
    assert trainer.evaluate(batches) < 0.7 * before
    assert trainer.pluto.global_step == 15


DIALOGUES = [
    "1\t什么 时候 发货\t亲 48 小时 内 发货 哦",
    "0\t什么 时候 发货\t不 客气",
    "1\t可以 包邮 吗\t满 99 包邮 的 亲",
    "1\t您好\t您好 亲\t发 什么 快递\t默认 中通 快递 哦",
    "1\t有 赠品 吗\t送 小 礼物 哦",
    "1\t怎么 退货\t七天 无理由 退货",
    "1\t能 便宜 点 吗\t已经 是 最低价 了 亲",
    "1\t质量 怎么样\t质量 很 好 的",
    "1\t有 现货 吗\t有 现货 当天 发货",
    "1\t可以 开 发票 吗\t可以 开 电子 发票",
    "1\t在 吗\t在 的 亲",
]


def test_train_writes_a_loadable_model_dir_and_resumes(tmp_path):
    data = tmp_path / "train.txt"
    data.write_text("\n".join(DIALOGUES) + "\n", encoding="utf-8")
    out = tmp_path / "model"
    options = TrainOptions(epochs=1, batch_size=4, valid_fraction=0.2, seed=3, patience=5)
    from alime.seq2seq.config import Seq2SeqConfig

    shape = Seq2SeqConfig(vocab_size=100, embed_dim=4, hidden_dim=4, attention_dim=4)
    first = train(
        [data], out, model_config=shape, options=options, text_config=TextConfig(), progress=False
    )
    assert first.epochs_run == 1 and np.isfinite(first.best_val_loss)
    resumed = train(
        [data],
        out,
        model_config=shape,
        text_config=TextConfig(),
        progress=False,
        options=TrainOptions(epochs=2, batch_size=4, valid_fraction=0.2, seed=3, patience=5),
        resume=True,
    )
    assert resumed.epochs_run == 2
    meta = json.loads((out / "training.json").read_text(encoding="utf-8"))
    assert [h["epoch"] for h in meta["history"]] == [1, 2]
    split = meta["split"]
    assert split["train_dialogues"] + split["valid_dialogues"] == 10  # label-1 lines only
    held_out = split["valid_dialogue_lines"][str(data)]
    assert len(held_out) == 2 and split["seed"] == 3
    assert meta["alime_version"] and meta["best_val_loss"] == resumed.best_val_loss
    loaded = load_model_dir(out)
    assert loaded.config.vocab_size == len(loaded.vocab) <= 100
    assert (out / "logs").is_dir() and (out / "checkpoint" / "optimizer.npz").is_file()
    # A checkpoint of the old one-device loop (no Pluto state) is refused with a clear message.
    state_file = out / "checkpoint" / "state.json"
    state = json.loads(state_file.read_text(encoding="utf-8"))
    del state["pluto"]
    state_file.write_text(json.dumps(state), encoding="utf-8")
    with pytest.raises(ValueError, match="train without --resume"):
        train([data], out, model_config=shape, options=options, resume=True, progress=False)


def test_bucket_shapes_share_one_trace(tiny_config):
    """Batches of eight shapes (bucket lengths, partial batches) run on one trace of the train
    step and one of the eval step (one trace per shape was the retracing TF warned about)."""
    trainer = Trainer(tiny_config, TrainOptions(learning_rate=0.01, seed=1))
    examples = [
        Example((5,), (7, EOS_ID)),
        Example((5, 6, 7, 8, 9, 10), (7, EOS_ID)),
        Example((5,), (7, 8, 9, 10, 11, EOS_ID)),
        Example((5, 6, 7, 8, 9, 10), (7, 8, 9, 10, 11, EOS_ID)),
    ]
    config = dataclasses.replace(tiny_config, buckets=((2, 2), (8, 2), (2, 8), (8, 8)))
    batches = bucket_batches(examples * 3, config.buckets, batch_size=2)
    batches += bucket_batches(examples, config.buckets, batch_size=1)
    assert len({(s.shape, t.shape) for s, t in batches}) == 8
    trainer.train_epoch(batches)
    trainer.evaluate(batches)
    trainer.train_epoch(batches[::-1])
    assert trainer.pluto._train_fn.experimental_get_tracing_count() == 1
    assert trainer.pluto._eval_fn.experimental_get_tracing_count() == 1
