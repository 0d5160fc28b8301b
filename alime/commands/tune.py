"""``alime tune``: hyper-parameter search over ``alime train`` runs (``alime.seq2seq.tuning``)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from alime.seq2seq.tuning import METHODS

log = logging.getLogger(__name__)


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``tune`` subcommand to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "tune",
        help="search training hyper-parameters (random search / successive halving)",
        description="Train several configurations with `alime train`'s code, compare their "
        "validation losses and write the best as a [train] TOML section.",
    )
    p.add_argument("--data", required=True, action="append", help="training file; repeatable")
    p.add_argument("--valid", action="append", default=[], help="validation file")
    p.add_argument("--valid-fraction", type=float, default=0.1)
    p.add_argument("--out", required=True, help="folder for the trials and the report")
    p.add_argument("--method", choices=METHODS, default="random")
    p.add_argument("--trials", type=int, default=8, help="configurations to try")
    p.add_argument(
        "--minutes", type=float, default=0.0, help="start no training after this many (0: none)"
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=2,
        help="epochs per random-search trial; the last halving round's",
    )
    p.add_argument("--min-epochs", type=int, default=1, help="first halving round's epochs")
    p.add_argument("--eta", type=int, default=2, help="halving keeps 1/eta of the trials")
    p.add_argument(
        "--space",
        help="TOML search space ([space.KEY] tables with low/high/log or choices; KEY a [train] "
        "key); default: learning rate, hidden, embedding, dropout, averaging period",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--devices", type=int, default=1, help="replicas per trial")
    p.add_argument("--parallel", choices=["sync", "ma"], default="sync")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the ``tune`` subcommand; returns the exit status."""
    from alime.commands.common import config_of
    from alime.seq2seq.config import Seq2SeqConfig
    from alime.seq2seq.distributed import ParallelOptions
    from alime.seq2seq.training import TrainOptions
    from alime.seq2seq.tuning import DEFAULT_SPACE, Budget, load_space, search, write_report

    config = config_of(args)
    base = config.train  # the keys the space does not search come from [train]
    space = load_space(args.space) if args.space else DEFAULT_SPACE
    budget = Budget(trials=args.trials, minutes=args.minutes)
    from pluto.strategy import StrategyConfig, make_strategy

    strategy = make_strategy(StrategyConfig(devices=args.devices))  # one for every trial

    def run_trial(params: dict, epochs: int, out_dir: Path, resume: bool) -> float:
        from alime.seq2seq.training import train

        values = {**dataclasses.asdict(base), **params}
        shape = Seq2SeqConfig(
            vocab_size=args.vocab_size,
            embed_dim=values["embed_dim"],
            hidden_dim=values["hidden_dim"],
            attention_dim=values["attention_dim"],
            dropout=values["dropout"],
        )
        options = TrainOptions(
            epochs=epochs,
            batch_size=values["batch_size"],
            learning_rate=values["learning_rate"],
            max_vocab=args.vocab_size,
            seed=args.seed,
            valid_fraction=args.valid_fraction,
            patience=epochs,  # the search compares trials at equal epochs
        )
        parallel = ParallelOptions(
            devices=args.devices, mode=args.parallel, avg_period=values["avg_period"]
        )
        result = train(
            args.data,
            out_dir,
            valid_files=args.valid,
            model_config=shape,
            options=options,
            text_config=config.text,
            strategy=strategy,
            parallel=parallel,
            resume=resume,
            progress=False,
        )
        log.info(
            "trial %s: %d epoch(s), validation loss %.4f",
            out_dir.name,
            epochs,
            result.best_val_loss,
        )
        return result.best_val_loss

    trials = search(
        run_trial,
        args.out,
        space,
        method=args.method,
        budget=budget,
        min_epochs=args.min_epochs,
        max_epochs=args.epochs,
        eta=args.eta,
        seed=args.seed,
    )
    paths = write_report(trials, space, base, args.out)
    print(paths["table"].read_text(encoding="utf-8"), end="")
    best = trials[0]
    print(
        f"best: trial {best.index}, validation loss {best.val_loss:.4f}; "
        f"train with: alime --config {paths['best']} train ..."
    )
    return 0
