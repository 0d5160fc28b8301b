"""``alime train``: parse flags, call ``alime.seq2seq.training.train``.

Every run, one device or many, goes through Pluto's trainer; the flags only describe the spread.
"""

from __future__ import annotations

import argparse
import logging

from alime.seq2seq.config import Seq2SeqConfig
from alime.seq2seq.distributed import LR_SCALINGS, MA_SLOTS, MODES, ParallelOptions
from alime.seq2seq.training import OPTIMIZERS, TrainOptions

log = logging.getLogger(__name__)

# Per-replica candidates for ``--batch-size auto`` (Pluto's pre-run keeps the largest that fits
# and still raises throughput by more than 10%).
AUTO_BATCH_SIZES = (16, 32, 64, 128, 256)


def batch_size_arg(text: str) -> int | str:
    """``--batch-size``: a positive integer or ``auto``."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer or 'auto', got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to an ``argparse`` subparsers object."""
    defaults, shape, spread = TrainOptions(), Seq2SeqConfig(vocab_size=1), ParallelOptions()
    p = subparsers.add_parser(
        "train",
        help="train the seq2seq rerank/generation model",
        description="Train the attentive GRU seq2seq model and write a model directory.",
    )
    p.add_argument(
        "--data",
        required=True,
        action="append",
        help="training file (E-commerce 'label\\tturns...\\tresponse' or "
        "'question\\tanswer' TSV); repeatable",
    )
    p.add_argument(
        "--valid",
        action="append",
        default=[],
        help="validation file; default: hold out --valid-fraction of the dialogues",
    )
    p.add_argument("--valid-fraction", type=float, default=defaults.valid_fraction)
    p.add_argument("--out", required=True, help="model directory to write")
    # Flags that [train] of --config may set: default None, resolved by ``from_config``.
    p.add_argument("--epochs", type=int, default=None, help=f"default {defaults.epochs}")
    p.add_argument(
        "--batch-size",
        type=batch_size_arg,
        default=None,
        help=f"examples per replica per step (default {defaults.batch_size}), or 'auto': the "
        "largest of "
        f"{', '.join(map(str, AUTO_BATCH_SIZES))} that fits and still raises throughput "
        "(a short pre-run)",
    )
    p.add_argument(
        "--learning-rate", type=float, default=None, help=f"default {defaults.learning_rate}"
    )
    p.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default=defaults.optimizer,
        help="(local) optimizer: adam, or sgd with heavy-ball --momentum (give it a far larger "
        "--learning-rate, e.g. 0.1)",
    )
    p.add_argument(
        "--momentum", type=float, default=defaults.momentum, help="SGD momentum (--optimizer sgd)"
    )
    p.add_argument("--embed-dim", type=int, default=None, help=f"default {shape.embed_dim}")
    p.add_argument("--hidden-dim", type=int, default=None, help=f"default {shape.hidden_dim}")
    p.add_argument("--attention-dim", type=int, default=None, help=f"default {shape.attention_dim}")
    p.add_argument("--dropout", type=float, default=None, help=f"default {shape.dropout}")
    p.add_argument("--context-turns", type=int, default=shape.context_turns)
    p.add_argument(
        "--vocab-size",
        type=int,
        default=defaults.max_vocab,
        help="largest vocabulary, reserved ids included",
    )
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument(
        "--patience",
        type=int,
        default=defaults.patience,
        help="stop after this many epochs without validation improvement",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=defaults.threads,
        help="TensorFlow threads (0: TensorFlow's default)",
    )
    p.add_argument(
        "--contrastive-weight",
        type=float,
        default=defaults.contrastive_weight,
        help="weight of the rerank-aware InfoNCE term over in-batch wrong answers "
        "(0: generation loss only)",
    )
    p.add_argument(
        "--contrastive-negatives",
        type=int,
        default=defaults.contrastive_negatives,
        help="wrong answers per example for that term",
    )
    p.add_argument(
        "--contrastive-temperature", type=float, default=defaults.contrastive_temperature
    )
    p.add_argument(
        "--min-count",
        type=int,
        default=defaults.min_count,
        help="drop rarer words from the vocabulary",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        default=defaults.max_minutes,
        help="do not start an epoch that would end after this many minutes (0: none)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/checkpoint (any mode; with several workers OUT must be the "
        "chief's, on a shared file system)",
    )
    g = p.add_argument_group("parallel training (Pluto; see docs/pluto.md)")
    g.add_argument(
        "--devices",
        type=int,
        default=spread.devices,
        help="replicas per worker: N GPUs when present, else N logical CPU devices; several "
        "machines via TF_CONFIG. --batch-size is per replica",
    )
    g.add_argument(
        "--parallel",
        choices=MODES,
        default=spread.mode,
        help="sync: gradient all-reduce every step; ma: model averaging every "
        "--avg-period local steps",
    )
    g.add_argument(
        "--avg-period",
        type=int,
        default=None,
        help=f"K local steps between averages (default {spread.avg_period})",
    )
    g.add_argument(
        "--ma-slots",
        choices=MA_SLOTS,
        default=spread.ma_slots,
        help="ma: what averaging does with the optimizer state (momentum, Adam moments): keep "
        "each replica's, average it along (2-3x the bytes) or reset it",
    )
    g.add_argument("--bmuf", action="store_true", help="block momentum (BMUF) on averaging")
    g.add_argument(
        "--bmuf-local-lr",
        type=float,
        default=spread.bmuf_local_lr,
        help="with --bmuf: local learners run SGD-momentum 0.9 at this rate (0: local Adam)",
    )
    g.add_argument(
        "--bmuf-warmup-blocks",
        type=int,
        default=spread.bmuf_warmup_blocks,
        help="with --bmuf: ramp the block momentum from 0 over this many blocks",
    )
    g.add_argument(
        "--lr-scaling",
        choices=LR_SCALINGS,
        default=spread.lr_scaling,
        help="learning-rate scaling with the number of replicas (workers x devices)",
    )
    g.add_argument(
        "--lr-warmup-steps",
        type=int,
        default=spread.lr_warmup_steps,
        help="steps of the linear ramp from --learning-rate to the scaled rate",
    )
    g.add_argument(
        "--plateau-patience",
        type=int,
        default=spread.plateau_patience,
        help="epochs without a 0.1%% validation improvement before the learning rate is "
        "multiplied by --plateau-factor (0: off)",
    )
    g.add_argument("--plateau-factor", type=float, default=spread.plateau_factor)
    g.add_argument(
        "--adaptive-period",
        action="store_true",
        help="let K follow how far the replicas drift apart",
    )
    g.add_argument(
        "--late-multiply",
        action="store_true",
        help="sync: Dense layers whose inputs and output gradients are smaller than their "
        "weight gradient at the per-replica batch exchange those instead (exact; chosen "
        "layers and bytes saved in training.json)",
    )
    g.add_argument(
        "--hybrid",
        action="store_true",
        help="sync, --devices >= 2: the vocabulary projection with its softmax and loss split "
        "across the replicas by vocabulary, the rest data-parallel, where Pluto's greedy "
        "placement (a pre-run of every layer) shards it; placement and bytes in training.json",
    )
    g.add_argument(
        "--device-memory-mb",
        type=float,
        default=0.0,
        help="memory cap per device for --hybrid's placement (0: no cap)",
    )
    p.add_argument(
        "--recompute",
        action="store_true",
        help="recompute the encoder and decoder activations in the backward pass: less "
        "memory in the long buckets for one more forward pass of those blocks",
    )
    p.add_argument(
        "--jit-compile",
        action="store_true",
        help="compile the train and evaluation steps with XLA (once per length bucket); "
        "slower on CPU, for long GPU runs (see docs/pluto.md)",
    )
    p.add_argument(
        "--mixed-precision",
        action="store_true",
        help="compute in bfloat16 (float32 weights, logits and loss): for GPUs with bfloat16 "
        "(Ampere or newer); the saved model is float32",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)
    return p


# The flags ``[train]`` of --config may set (the section's keys, same names).
CONFIG_FLAGS = (
    "learning_rate",
    "batch_size",
    "epochs",
    "embed_dim",
    "hidden_dim",
    "attention_dim",
    "dropout",
    "avg_period",
)


def from_config(args: argparse.Namespace, section) -> argparse.Namespace:
    """``args`` with every flag not given on the command line taken from ``[train]``."""
    values = {k: getattr(section, k) for k in CONFIG_FLAGS if getattr(args, k) is None}
    return argparse.Namespace(**{**vars(args), **values})


def run(args: argparse.Namespace) -> int:
    """Run the ``train`` subcommand; returns the exit status."""
    from alime.commands.common import config_of

    config = config_of(args)
    args = from_config(args, config.train)
    # The strategy is made before anything else touches TensorFlow (logical CPU devices can only
    # be configured before it initializes).
    parallel = ParallelOptions(
        devices=args.devices,
        mode=args.parallel,
        avg_period=args.avg_period,
        bmuf=args.bmuf,
        bmuf_local_lr=args.bmuf_local_lr,
        bmuf_warmup_blocks=args.bmuf_warmup_blocks,
        lr_scaling=args.lr_scaling,
        lr_warmup_steps=args.lr_warmup_steps,
        plateau_patience=args.plateau_patience,
        plateau_factor=args.plateau_factor,
        adaptive_period=args.adaptive_period,
        late_multiply=args.late_multiply,
        ma_slots=args.ma_slots,
    )
    text_config = config.text  # --config's [text]: tokenized as it will be served
    shape = Seq2SeqConfig(
        vocab_size=args.vocab_size,
        embed_dim=args.embed_dim,
        hidden_dim=args.hidden_dim,
        attention_dim=args.attention_dim,
        context_turns=args.context_turns,
        dropout=args.dropout,
    )
    auto = args.batch_size == "auto"
    options = TrainOptions(
        epochs=args.epochs,
        batch_size=AUTO_BATCH_SIZES[0] if auto else args.batch_size,
        auto_batch_sizes=AUTO_BATCH_SIZES if auto else (),
        learning_rate=args.learning_rate,
        optimizer=args.optimizer,
        momentum=args.momentum,
        patience=args.patience,
        seed=args.seed,
        valid_fraction=args.valid_fraction,
        max_vocab=args.vocab_size,
        threads=args.threads,
        min_count=args.min_count,
        contrastive_weight=args.contrastive_weight,
        contrastive_negatives=args.contrastive_negatives,
        contrastive_temperature=args.contrastive_temperature,
        max_minutes=args.max_minutes,
        mixed_precision=args.mixed_precision,
        recompute=args.recompute,
        jit_compile=args.jit_compile,
        hybrid=args.hybrid,
        device_memory_mb=args.device_memory_mb,
    )
    from alime.seq2seq.training import set_threads, train
    from pluto.strategy import StrategyConfig, make_strategy

    set_threads(options.threads)
    strategy = make_strategy(StrategyConfig(devices=args.devices))
    log.info("training on %d replica(s), %s", strategy.num_replicas_in_sync, parallel.mode)
    result = train(
        args.data,
        args.out,
        valid_files=args.valid,
        model_config=shape,
        options=options,
        text_config=text_config,
        strategy=strategy,
        parallel=parallel,
        resume=args.resume,
        progress=not args.no_progress,
    )
    where = (
        f"model written to {result.out_dir}"
        if result.wrote
        else f"worker done (the chief writes {result.out_dir})"
    )
    print(
        f"{where}: best validation loss {result.best_val_loss:.4f} "
        f"after {result.epochs_run} epoch(s)" + (" (early stop)" if result.stopped_early else "")
    )
    return 0
