"""Wall time of `alime train`'s epoch: one device vs N replicas, and the step with XLA.

Trains the product's seq2seq model (embedding 64, hidden 128) through
:class:`alime.seq2seq.training.Trainer` on the first 2,000 bundled QA pairs (batch 32 per replica)
for ``--epochs`` epochs (default 2) and reports each, the last one's time per step (the steady
state; the first includes tracing, and XLA's compilations with ``--jit-compile``), the number of
traces of the step, and with ``--hybrid`` the placement's decision and bytes per step.

Usage::

    python bench/train_epoch.py --devices 1
    python bench/train_epoch.py --devices 4 --parallel ma
    python bench/train_epoch.py --devices 1 --jit-compile
    python bench/train_epoch.py --devices 2 --hybrid [--device-memory-mb M]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout: import this tree's packages
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--parallel", choices=["sync", "ma"], default="sync")
    parser.add_argument("--jit-compile", action="store_true", help="XLA-compile the train step")
    parser.add_argument("--hybrid", action="store_true", help="as `alime train --hybrid`")
    parser.add_argument("--device-memory-mb", type=float, default=0.0, help="--hybrid's cap")
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2, help="the last one is the steady state")
    args = parser.parse_args(argv)

    from pluto.strategy import StrategyConfig, make_strategy

    strategy = make_strategy(StrategyConfig(devices=args.devices, use_gpus=False))
    from alime.seq2seq.config import Seq2SeqConfig
    from alime.seq2seq.data import bucket_batches, make_examples, read_qa_tsv, tokenize_dialogues
    from alime.seq2seq.distributed import ParallelOptions
    from alime.seq2seq.training import Trainer, TrainOptions
    from alime.seq2seq.vocab import Vocabulary

    pairs = read_qa_tsv(ROOT / "data" / "kb" / "ecommerce_qa.tsv")[: args.pairs]
    tokens = tokenize_dialogues(pairs, str.split)
    vocab = Vocabulary.build((s for d in tokens for s in (*d.turns, d.response)), max_size=2000)
    config = Seq2SeqConfig(
        vocab_size=len(vocab), embed_dim=64, hidden_dim=128, attention_dim=64, context_turns=1
    )
    examples = make_examples(tokens, vocab, config)
    parallel = ParallelOptions(devices=args.devices, mode=args.parallel, avg_period=8)
    # What `alime train --jit-compile` does: XLA on each replica's forward and backward pass.
    options = TrainOptions(
        batch_size=32,
        seed=1,
        jit_compile=args.jit_compile,
        hybrid=args.hybrid,
        device_memory_mb=args.device_memory_mb,
    )
    trainer = Trainer(config, options, strategy, parallel)
    seconds = []
    for epoch in range(max(args.epochs, 2)):
        batches = bucket_batches(
            examples, config.buckets, trainer.global_batch, seed=epoch, empty_source_rate=0.1
        )
        started = time.perf_counter()
        trainer.train_epoch(batches)
        seconds.append(time.perf_counter() - started)
    shapes = len({(s.shape, t.shape) for s, t in batches})
    print(
        json.dumps(
            {
                "devices": args.devices,
                "parallel": args.parallel,
                "jit_compile": args.jit_compile,
                "steps_per_epoch": len(batches),
                "batch_shapes": shapes,
                "epoch_s": [round(x, 2) for x in seconds],
                # The last epoch reuses every trace and compilation: the steady state.
                "step_ms": round(1000 * seconds[-1] / len(batches), 1),
                # Epoch 1's extra time: tracing, plus XLA's compilation per bucket.
                "first_epoch_extra_s": round(seconds[0] - seconds[-1], 2),
                "train_step_traces": trainer.pluto._train_fn.experimental_get_tracing_count(),
                "hybrid": _hybrid_summary(trainer.hybrid_record()),
            }
        )
    )
    return 0


def _hybrid_summary(record: dict | None) -> dict | None:
    """The placement's decision and bytes (training.json's ``hybrid`` without the profiles)."""
    if record is None:
        return None
    profiles = {p["name"]: p for p in record["profiles"]}
    body = sum(
        4 * p["weight_bytes"] + p["activation_bytes"]
        for name, p in profiles.items()
        if name != "output_proj"
    )
    proj = profiles["output_proj"]
    return {
        "sharded_layers": record["sharded_layers"],
        "bytes_per_step": record["bytes_per_step"],
        "output_proj": next(a for a in record["placement"] if a["layer"] == "output_proj"),
        # A cap under which the placement must shard the projection on 2 devices: the body
        # and half the projection fit, the whole model does not.
        "forcing_cap_mb": round(
            (body + proj["activation_bytes"] + 3 * proj["weight_bytes"]) / 2**20, 2
        ),
    }


if __name__ == "__main__":
    raise SystemExit(main())
