"""``python -m research.train_matcher`` (was ``alime train-matcher``): parse flags, call
``research.matcher_training.train_matcher``."""

from __future__ import annotations

import argparse

from alime.config import load_config
from research.cli import positive_int as _positive_int
from research.cli import run_main
from research.matcher import ENCODERS
from research.matcher_training import MatcherTrainOptions


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``python -m research.train_matcher``."""
    d = MatcherTrainOptions()
    p = argparse.ArgumentParser(
        prog="python -m research.train_matcher",
        description="Train a small ESIM-style matcher on a seq2seq model's training dialogues "
        "(its held-out ones are never used), with listwise softmax loss over groups "
        "of the real reply and 9 wrong ones (retrieved by BM25, some random). See "
        "docs/model.md.",
    )
    p.add_argument("--config", help="TOML configuration file (its text settings)")
    p.add_argument("--data", required=True, help="the E-commerce-format file the model trained on")
    p.add_argument(
        "--model",
        required=True,
        help="seq2seq model directory (its training.json gives the split; its "
        "embedding and encoder initialize the matcher)",
    )
    p.add_argument("--out", help="matcher directory to write (default: MODEL/matcher)")
    p.add_argument(
        "--lexical-features",
        action="store_true",
        help="add the candidate's word overlap with the context as features",
    )
    p.add_argument(
        "--encoder",
        choices=list(ENCODERS),
        default="gru",
        help="gru: the seq2seq encoder's GRU (frozen unless --train-encoder); conv: a "
        "trainable width-3 convolution over the embeddings",
    )
    p.add_argument("--train-encoder", action="store_true", help="fine-tune the copied GRU")
    p.add_argument("--epochs", type=_positive_int, default=d.epochs)
    p.add_argument("--batch-size", type=_positive_int, default=d.batch_size)
    p.add_argument("--learning-rate", type=float, default=d.learning_rate)
    p.add_argument(
        "--patience",
        type=int,
        default=d.patience,
        help="stop after this many epochs without a better dev R10@1 (0: never)",
    )
    p.add_argument(
        "--dev-fraction",
        type=float,
        default=d.dev_fraction,
        help="share of the training dialogues held out for dev (by conversation)",
    )
    p.add_argument(
        "--train-fraction",
        type=float,
        default=d.train_fraction,
        help="share of the other training dialogues to train on (learning curves)",
    )
    p.add_argument(
        "--random-negatives",
        type=int,
        default=d.random_negatives,
        help="of the 9 wrong replies per training group, how many are random (the "
        "rest retrieved by BM25)",
    )
    p.add_argument(
        "--context-negatives",
        type=int,
        default=d.context_negatives,
        help="of the 9, how many are replies of dialogues with BM25-similar contexts "
        "(the rest are BM25 hits among replies)",
    )
    p.add_argument(
        "--final-only",
        action="store_true",
        help="train on final responses only (default: every responder turn)",
    )
    p.add_argument(
        "--train-embedding",
        action="store_true",
        help="fine-tune the embedding copied from the seq2seq model",
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument(
        "--threads",
        type=int,
        default=d.threads,
        help="TensorFlow threads (0: TensorFlow's default)",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        default=d.max_minutes,
        help="do not start an epoch that would end after this many minutes (0: none)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def run(args: argparse.Namespace) -> int:
    """Train one matcher; returns the exit status."""
    from pathlib import Path

    from research.matcher import MATCHER_DIR
    from research.matcher_training import train_matcher

    options = MatcherTrainOptions(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        patience=args.patience,
        dev_fraction=args.dev_fraction,
        train_fraction=args.train_fraction,
        random_negatives=args.random_negatives,
        context_negatives=args.context_negatives,
        expand_turns=not args.final_only,
        train_embedding=args.train_embedding,
        train_encoder=args.train_encoder,
        seed=args.seed,
        threads=args.threads,
        max_minutes=args.max_minutes,
    )
    out = args.out or str(Path(args.model) / MATCHER_DIR)
    result = train_matcher(
        args.data,
        args.model,
        out,
        options,
        args.lexical_features,
        load_config(args.config).text,
        progress=not args.no_progress,
        encoder=args.encoder,
    )
    dev = ", ".join(f"{k} R10@1 {v['r10@1']:.3f}" for k, v in result.best_dev.items())
    print(
        f"matcher written to {result.out_dir}: best epoch {result.best_epoch} ({dev}); "
        f"{result.seconds / 60:.1f} min"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m research.train_matcher``; returns the exit status."""
    return run_main(build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
