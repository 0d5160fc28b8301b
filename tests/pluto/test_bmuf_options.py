"""``alime train``'s BMUF settings reach Pluto's trainer (one device, in process)."""

from __future__ import annotations

import pytest

from alime.seq2seq.distributed import ParallelOptions


def _config():
    from alime.seq2seq.config import Seq2SeqConfig

    return Seq2SeqConfig(
        vocab_size=12,
        embed_dim=4,
        hidden_dim=4,
        attention_dim=4,
        buckets=((4, 4),),
        max_source_len=4,
        max_target_len=4,
    )


def test_bmuf_local_lr_runs_the_local_learners_with_sgd_momentum():
    from alime.seq2seq.training import Trainer, TrainOptions

    parallel = ParallelOptions(mode="ma", bmuf=True, bmuf_local_lr=0.1, bmuf_warmup_blocks=3)
    trainer = Trainer(_config(), TrainOptions(learning_rate=2e-3, clip_norm=5.0), None, parallel)
    local = trainer.pluto.optimizer.config
    assert (local.kind.value, local.momentum, local.learning_rate) == ("sgd", 0.9, 0.1)
    assert local.clipnorm == 5.0  # the configured clip norm is kept
    assert trainer.learning_rate == pytest.approx(0.1)
    assert trainer.pluto.config.bmuf.momentum_warmup_blocks == 3


def test_bmuf_without_local_lr_keeps_adam():
    from alime.seq2seq.training import Trainer, TrainOptions

    trainer = Trainer(
        _config(), TrainOptions(learning_rate=2e-3), None, ParallelOptions(mode="ma", bmuf=True)
    )
    local = trainer.pluto.optimizer.config
    assert (local.kind.value, local.learning_rate) == ("adam", 2e-3)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "ma", "bmuf_local_lr": 0.1},  # needs --bmuf
        {"mode": "ma", "bmuf_warmup_blocks": 2},
        {"mode": "ma", "bmuf": True, "bmuf_local_lr": -0.1},
        {"mode": "ma", "bmuf": True, "bmuf_warmup_blocks": -1},
    ],
)
def test_parallel_options_refuse_bad_bmuf_settings(kwargs):
    with pytest.raises(ValueError, match="bmuf"):
        ParallelOptions(**kwargs)


def test_optimizer_sgd_and_ma_slots_reach_plutos_trainer():
    from alime.seq2seq.training import Trainer, TrainOptions

    options = TrainOptions(learning_rate=0.05, optimizer="sgd", momentum=0.8, clip_norm=5.0)
    parallel = ParallelOptions(mode="ma", ma_slots="average")
    trainer = Trainer(_config(), options, None, parallel)
    local = trainer.pluto.optimizer.config
    assert (local.kind.value, local.momentum, local.learning_rate) == ("sgd", 0.8, 0.05)
    assert local.clipnorm == 5.0
    assert trainer.pluto.config.slot_policy.value == "average"
    assert len(trainer.pluto.optimizer.slots) == len(trainer.model.trainable_variables)


def test_default_optimizer_is_adam_with_local_slots():
    from alime.seq2seq.training import Trainer, TrainOptions

    trainer = Trainer(_config(), TrainOptions(learning_rate=2e-3), None, ParallelOptions())
    assert trainer.pluto.optimizer.config.kind.value == "adam"
    assert trainer.pluto.config.slot_policy.value == "local"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"optimizer": "rmsprop"}, "--optimizer"),
        ({"optimizer": "sgd", "momentum": 1.0}, "--momentum"),
        ({"optimizer": "sgd", "momentum": -0.1}, "--momentum"),
    ],
)
def test_train_options_refuse_bad_optimizer_settings(kwargs, match):
    from alime.seq2seq.training import TrainOptions

    with pytest.raises(ValueError, match=match):
        TrainOptions(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{"mode": "ma", "ma_slots": "sum"}, {"mode": "sync", "ma_slots": "average"}],
)
def test_parallel_options_refuse_bad_ma_slots(kwargs):
    with pytest.raises(ValueError, match="--ma-slots"):
        ParallelOptions(**kwargs)


def test_train_command_parses_the_optimizer_and_slot_flags(capsys):
    import argparse

    from alime.commands import train as train_command

    parser = argparse.ArgumentParser(prog="alime")
    train_command.register(parser.add_subparsers())
    base = ["train", "--data", "a.txt", "--out", "m"]
    args = parser.parse_args(base)
    assert (args.optimizer, args.momentum, args.ma_slots) == ("adam", 0.9, "local")
    args = parser.parse_args(
        [*base, "--optimizer", "sgd", "--momentum", "0.8", "--ma-slots", "average"]
    )
    assert (args.optimizer, args.momentum, args.ma_slots) == ("sgd", 0.8, "average")
    with pytest.raises(SystemExit) as err:
        parser.parse_args([*base, "--optimizer", "rmsprop"])
    assert err.value.code == 2
    assert "--optimizer" in capsys.readouterr().err
