"""`alime tune`: the search's bookkeeping on a synthetic objective, then a real tiny search
whose best configuration `alime train --config` takes."""

import argparse
import json
from pathlib import Path

import pytest

from alime.cli import main
from alime.commands import train as train_command
from alime.config import TrainingConfig, load_config
from alime.seq2seq.config import Seq2SeqConfig
from alime.seq2seq.distributed import ParallelOptions
from alime.seq2seq.training import TrainOptions
from alime.seq2seq.tuning import Budget, Param, load_space, search
from tests.seq2seq.test_training import DIALOGUES


def synthetic(calls: list):
    """Loss falls with epochs and is lowest near learning rate 3e-3 (a trial's fate is known)."""

    def run_trial(params: dict, epochs: int, out_dir: Path, resume: bool) -> float:
        calls.append((out_dir.name, epochs, resume))
        return abs(params["learning_rate"] - 3e-3) * 100 + 1.0 / epochs

    return run_trial


def test_successive_halving_promotes_the_best_half_and_resumes_them(tmp_path):
    calls: list = []
    space = [Param("learning_rate", 1e-4, 1e-2, log=True)]
    trials = search(
        synthetic(calls), tmp_path, space, "halving", Budget(trials=8), 1, 4, eta=2, seed=3
    )
    by_rung = [[c for c in calls if c[1] == e] for e in (1, 2, 4)]
    assert [len(r) for r in by_rung] == [8, 4, 2]
    assert all(not resume for _, _, resume in by_rung[0])
    assert all(resume for r in by_rung[1:] for _, _, resume in r)
    # The promoted ones are the best of the previous round.
    first = sorted(trials, key=lambda t: abs(t.params["learning_rate"] - 3e-3))
    assert {f"trial-{t.index:02d}" for t in first[:4]} == {name for name, _, _ in by_rung[1]}
    assert trials[0] is first[0] and trials[0].epochs == 4 and trials[0].rung == 2


def test_random_search_trains_every_trial_the_full_epochs(tmp_path):
    calls: list = []
    space = [Param("learning_rate", 1e-4, 1e-2, log=True), Param("hidden_dim", choices=(4, 8))]
    trials = search(synthetic(calls), tmp_path, space, "random", Budget(trials=3), 1, 2, seed=1)
    assert [(e, r) for _, e, r in calls] == [(2, False)] * 3
    assert [t.val_loss for t in trials] == sorted(t.val_loss for t in trials)
    assert all(t.params["hidden_dim"] in (4, 8) for t in trials)


def test_space_files_and_params_are_checked(tmp_path):
    bad = tmp_path / "space.toml"
    bad.write_text("[space.width]\nchoices = [1]\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"space.toml: unknown parameter 'width'"):
        load_space(bad)
    bad.write_text("[space.learning_rate]\nlow = 0.0\nhigh = 1.0\nlog = true\n", encoding="utf-8")
    with pytest.raises(ValueError, match="log range"):
        load_space(bad)
    with pytest.raises(ValueError, match="method"):
        search(synthetic([]), tmp_path, method="grid")


def test_train_section_defaults_are_the_training_defaults():
    section, options, shape = TrainingConfig(), TrainOptions(), Seq2SeqConfig(vocab_size=1)
    assert (section.learning_rate, section.batch_size, section.epochs) == (
        options.learning_rate,
        options.batch_size,
        options.epochs,
    )
    assert (section.embed_dim, section.hidden_dim, section.attention_dim, section.dropout) == (
        shape.embed_dim,
        shape.hidden_dim,
        shape.attention_dim,
        shape.dropout,
    )
    assert section.avg_period == ParallelOptions().avg_period


@pytest.mark.slow
def test_tune_writes_a_table_a_plot_and_a_config_train_accepts(tmp_path, capsys):
    data = tmp_path / "train.txt"
    data.write_text("\n".join(DIALOGUES * 3) + "\n", encoding="utf-8")
    space = tmp_path / "space.toml"
    space.write_text(
        "[space.learning_rate]\nlow = 0.001\nhigh = 0.05\nlog = true\n"
        "[space.hidden_dim]\nchoices = [4, 8]\n[space.embed_dim]\nchoices = [4]\n"
        "[space.attention_dim]\nchoices = [4]\n",
        encoding="utf-8",
    )
    out = tmp_path / "tune"
    argv = ["tune", "--data", str(data), "--out", str(out), "--space", str(space)]
    argv += ["--trials", "2", "--epochs", "1", "--valid-fraction", "0.2", "--seed", "5"]
    assert main(argv) == 0
    report = json.loads((out / "trials.json").read_text(encoding="utf-8"))
    trials = report["trials"]
    assert len(trials) == 2 and all(t["epochs"] == 1 for t in trials)
    best = min(trials, key=lambda t: t["val_loss"])
    assert trials[0] == best
    table = (out / "trials.md").read_text(encoding="utf-8").splitlines()
    assert len(table) == 4 and table[0].startswith("| trial | learning_rate | hidden_dim")
    assert (out / "trials.png").stat().st_size > 1000
    assert "best: trial" in capsys.readouterr().out
    # Each trial is a real model directory whose training.json agrees with the table.
    for t in trials:
        meta = json.loads((Path(t["out_dir"]) / "training.json").read_text(encoding="utf-8"))
        assert meta["best_val_loss"] == pytest.approx(t["val_loss"])
        assert meta["options"]["learning_rate"] == pytest.approx(t["params"]["learning_rate"])

    section = load_config(out / "best.toml").train
    assert section.learning_rate == pytest.approx(best["params"]["learning_rate"])
    assert (section.hidden_dim, section.embed_dim, section.epochs) == (
        best["params"]["hidden_dim"],
        4,
        1,
    )
    parser = argparse.ArgumentParser()
    train_command.register(parser.add_subparsers())
    args = parser.parse_args(["train", "--data", str(data), "--out", "m", "--epochs", "3"])
    resolved = train_command.from_config(args, section)
    assert resolved.learning_rate == section.learning_rate
    assert resolved.hidden_dim == section.hidden_dim
    assert resolved.epochs == 3  # a flag given on the command line wins
