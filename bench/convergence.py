"""Convergence benchmark: 1 replica vs sync / MA / MA+BMUF on 4 logical CPU devices.

Trains a small attentive GRU seq2seq on the word-segmented e-commerce QA pairs, records the
validation loss against steps per replica, and projects wall-clock speed-ups on 4 real GPUs from
a stated cost model (per-step compute plus all-reduce bytes over an interconnect).

Usage::

    python bench/convergence.py --json                 # JSON on stdout, PNG + JSON files written
    python bench/convergence.py --json --steps 400     # shorter single-replica budget
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout: import this tree's pluto
    sys.path.insert(0, str(ROOT))
DATA = (
    Path(__file__).resolve().parent.parent / "data" / "kb" / "ecommerce_qa.tsv"
)  # question_answer.txt
PAD, UNK, BOS, EOS = 0, 1, 2, 3
RESERVED = 4

# Cost model (AliMe-sized attentive GRU seq2seq on one H100, measured figure from the issue).
STEP_MS = 8.3
GRAD_BYTES = 235e6
INTERCONNECTS_GBPS = {"pcie3_x16": 12.0, "pcie4_x16": 25.0, "nvlink4": 450.0}
PRIMARY_INTERCONNECT = "pcie3_x16"


@dataclass(frozen=True)
class BenchConfig:
    """Model, data and run settings (one place, saved in the JSON)."""

    vocab: int = 2000
    src_len: int = 12
    tgt_len: int = 12
    emb: int = 48
    hidden: int = 96
    val_pairs: int = 500
    batch_per_replica: int = 32
    replicas: int = 4
    single_steps: int = 600
    multi_steps: int = 200
    eval_every_single: int = 20
    eval_every_multi: int = 5
    seed: int = 1234
    optimizer: str = "adam"
    lr: float = 2e-3
    ma_period: int = 8
    ma_warmup: int = 0
    ma_lr_scaling: str = "linear"
    sync_lr_scaling: str = "linear"
    lr_warmup_steps: int = 20
    bmuf_period: int = 8


def load_pairs(path: Path) -> list[tuple[list[str], list[str]]]:
    """Read ``question \\t answer`` lines into whitespace token lists (malformed lines fail)."""
    pairs = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 2:
                raise ValueError(f"{path}:{number}: expected 'question<TAB>answer'")
            pairs.append((parts[0].split(), parts[1].split()))
    return pairs


def encode(pairs, cfg: BenchConfig, vocab: dict[str, int] | None = None):
    """Token lists to padded id arrays ``(source, target_in, target_out)`` and the vocabulary."""
    if vocab is None:
        counts = collections.Counter(t for q, a in pairs for t in q + a)
        words = [w for w, _ in counts.most_common(cfg.vocab - RESERVED)]
        vocab = {w: i + RESERVED for i, w in enumerate(words)}
    n = len(pairs)
    src = np.zeros((n, cfg.src_len), np.int32)
    tin = np.zeros((n, cfg.tgt_len), np.int32)
    tout = np.zeros((n, cfg.tgt_len), np.int32)
    for i, (q, a) in enumerate(pairs):
        q_ids = [vocab.get(t, UNK) for t in q][: cfg.src_len]
        a_ids = [vocab.get(t, UNK) for t in a][: cfg.tgt_len - 1]
        src[i, : len(q_ids)] = q_ids
        tin[i, : len(a_ids) + 1] = [BOS, *a_ids]
        tout[i, : len(a_ids) + 1] = [*a_ids, EOS]
    return (src, tin, tout), vocab


def build_model(cfg: BenchConfig):
    """Small attentive GRU seq2seq: inputs ``(source ids, target-in ids)``, logits out.

    The one place the model is built: swap in ``alime.seq2seq`` here later.
    """
    import keras

    source = keras.Input((cfg.src_len,), dtype="int32", name="source")
    target_in = keras.Input((cfg.tgt_len,), dtype="int32", name="target_in")
    enc_emb = keras.layers.Embedding(cfg.vocab, cfg.emb, name="enc_emb")(source)
    enc_out, enc_state = keras.layers.GRU(
        cfg.hidden, return_sequences=True, return_state=True, name="encoder"
    )(enc_emb)
    dec_emb = keras.layers.Embedding(cfg.vocab, cfg.emb, name="dec_emb")(target_in)
    dec_out = keras.layers.GRU(cfg.hidden, return_sequences=True, name="decoder")(
        dec_emb, initial_state=enc_state
    )
    # Bahdanau (additive) attention of every decoder position over the encoder outputs.
    context = keras.layers.AdditiveAttention(name="attention")([dec_out, enc_out])
    merged = keras.layers.Concatenate()([dec_out, context])
    logits = keras.layers.Dense(cfg.vocab, name="logits")(merged)
    return keras.Model([source, target_in], logits)


def masked_sparse_ce(targets, logits):
    """Mean cross-entropy over non-padding target tokens."""
    import tensorflow as tf

    mask = tf.cast(tf.not_equal(targets, PAD), tf.float32)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    return tf.reduce_sum(ce * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def projected_seconds(steps: int, allreduces: int, gbps: float, replicas: int) -> float:
    """Cost-model time: ``steps`` x compute plus ``allreduces`` ring all-reduces of the grads."""
    per_allreduce = 2.0 * (replicas - 1) / replicas * GRAD_BYTES if replicas > 1 else 0.0
    return steps * STEP_MS / 1000.0 + allreduces * per_allreduce / (gbps * 1e9)


def run_one(name: str, cfg: BenchConfig, data, target: float | None) -> dict:
    """Train one configuration and return its measurements."""
    import keras
    import tensorflow as tf

    from pluto.averaging import BmufConfig
    from pluto.local_optim import OptimizerConfig
    from pluto.strategy import StrategyConfig, make_strategy
    from pluto.training import TrainConfig, Trainer, fit

    (train, val) = data
    replicas = 1 if name == "single" else cfg.replicas
    strategy = make_strategy(StrategyConfig(devices=replicas, use_gpus=False))
    keras.utils.set_random_seed(cfg.seed)
    with strategy.scope():
        model = build_model(cfg)
    opt = OptimizerConfig(kind=cfg.optimizer, learning_rate=cfg.lr, momentum=0.9)
    settings = {
        "single": TrainConfig(mode="sync", optimizer=opt),
        "sync": TrainConfig(
            mode="sync",
            optimizer=opt,
            lr_scaling=cfg.sync_lr_scaling,
            lr_warmup_steps=cfg.lr_warmup_steps,
        ),
        "ma": TrainConfig(
            mode="ma",
            optimizer=opt,
            avg_period=cfg.ma_period,
            warmup_avg_steps=cfg.ma_warmup,
            lr_scaling=cfg.ma_lr_scaling,
            lr_warmup_steps=cfg.lr_warmup_steps,
        ),
        "ma_bmuf": TrainConfig(
            mode="ma",
            optimizer=opt,
            avg_period=cfg.bmuf_period,
            warmup_avg_steps=cfg.ma_warmup,
            bmuf=BmufConfig(nesterov=True),
        ),
    }
    trainer = Trainer(model, masked_sparse_ce, strategy, settings[name])
    global_batch = cfg.batch_per_replica * replicas
    train_ds = (
        tf.data.Dataset.from_tensor_slices(((train[0], train[1]), train[2]))
        .shuffle(len(train[0]), seed=cfg.seed, reshuffle_each_iteration=True)
        .batch(global_batch, drop_remainder=True)
    )
    val_ds = tf.data.Dataset.from_tensor_slices(((val[0], val[1]), val[2])).batch(
        cfg.replicas * 25, drop_remainder=True
    )
    steps = cfg.single_steps if name == "single" else cfg.multi_steps
    every = cfg.eval_every_single if name == "single" else cfg.eval_every_multi
    result = fit(
        trainer, train_ds, steps, val_dataset=val_ds, eval_every=every, target_val_loss=target
    )
    return {
        "replicas": replicas,
        "mode": settings[name].mode.value,
        "history": result.history,
        "steps": result.steps,
        "allreduces": trainer.comm.allreduces,
        "bytes_per_replica": result.bytes_per_replica,
        "final_val_loss": result.final_val_loss,
        "wall_s": result.wall_s,
        "examples_per_step": global_batch,
    }


def first_reaching(history: list, target: float) -> int | None:
    """Steps per replica at the first evaluation at or below ``target``."""
    for step, loss in history:
        if loss <= target:
            return int(step)
    return None


def summarize(runs: dict, cfg: BenchConfig, target: float) -> dict:
    """Add steps-to-target, examples and projections to every run."""
    single = runs["single"]
    single_steps = first_reaching(single["history"], target)
    for _name, run in runs.items():
        steps = first_reaching(run["history"], target)
        run["steps_to_target"] = steps
        run["examples_to_target"] = None if steps is None else steps * run["examples_per_step"]
        # All-reduces done until the target (sync: one per step; MA: averages so far).
        ratio = 0.0 if steps is None or run["steps"] == 0 else steps / run["steps"]
        allreduces = round(run["allreduces"] * ratio)
        run["allreduces_to_target"] = allreduces
        run["projected_s"] = {}
        run["projected_speedup_by_interconnect"] = {}
        for link, gbps in INTERCONNECTS_GBPS.items():
            if steps is None or single_steps is None:
                run["projected_s"][link] = None
                run["projected_speedup_by_interconnect"][link] = None
                continue
            t = projected_seconds(steps, allreduces, gbps, run["replicas"])
            run["projected_s"][link] = t
            run["projected_speedup_by_interconnect"][link] = (
                projected_seconds(single_steps, 0, gbps, 1) / t
            )
        run["projected_speedup"] = run["projected_speedup_by_interconnect"][PRIMARY_INTERCONNECT]
        run["step_speedup_vs_single"] = (
            None if steps is None or single_steps is None else single_steps / steps
        )
    return {
        "target_val_loss": target,
        "config": asdict(cfg),
        "cost_model": {
            "step_ms": STEP_MS,
            "grad_bytes": GRAD_BYTES,
            "ring_factor_4": 1.5,
            "interconnect_gbps": INTERCONNECTS_GBPS,
            "primary_interconnect": PRIMARY_INTERCONNECT,
            "note": "time = steps*8.3ms + allreduces*1.5*235MB/bandwidth, no overlap",
        },
        "runs": runs,
    }


def plot(summary: dict, path: Path) -> None:
    """Validation loss against steps per replica for every run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, run in summary["runs"].items():
        steps, losses = zip(*run["history"], strict=True)
        ax.plot(steps, losses, label=f"{name} ({run['replicas']} replica(s))")
    ax.axhline(summary["target_val_loss"], color="grey", linestyle="--", label="target")
    ax.set_xlabel("steps per replica")
    ax.set_ylabel("validation loss (masked CE)")
    ax.set_title("Pluto convergence: attentive GRU seq2seq, e-commerce QA")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print JSON when ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the JSON summary")
    parser.add_argument("--out", default=str(ROOT / "docs" / "img" / "convergence.png"))
    parser.add_argument("--json-out", default=str(ROOT / "docs" / "img" / "convergence.json"))
    parser.add_argument("--runs", default="single,sync,ma,ma_bmuf")
    parser.add_argument(
        "--target",
        type=float,
        default=None,
        help="target val loss (default: single's final val loss + 1%%)",
    )
    for field_name, default in asdict(BenchConfig()).items():
        parser.add_argument(
            f"--{field_name.replace('_', '-')}", type=type(default), default=default
        )
    args = parser.parse_args(argv)
    cfg = BenchConfig(**{k: getattr(args, k) for k in asdict(BenchConfig())})

    from pluto.strategy import configure_logical_cpus

    configure_logical_cpus(cfg.replicas)  # before TensorFlow initializes
    pairs = load_pairs(DATA)
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(pairs))
    val_pairs = [pairs[i] for i in order[: cfg.val_pairs]]
    train_pairs = [pairs[i] for i in order[cfg.val_pairs :]]
    train, vocab = encode(train_pairs, cfg)
    val, _ = encode(val_pairs, cfg, vocab)

    runs: dict = {}
    start = time.perf_counter()
    for name in args.runs.split(","):
        runs[name] = run_one(name, cfg, (train, val), None)
        print(
            f"{name}: final {runs[name]['final_val_loss']:.4f} in {runs[name]['wall_s']:.0f}s",
            file=sys.stderr,
        )
    # Target: 1% above the single run's final loss, i.e. what one replica reaches in its budget.
    target = args.target if args.target is not None else runs["single"]["final_val_loss"] * 1.01
    summary = summarize(runs, cfg, target)
    summary["total_wall_s"] = time.perf_counter() - start
    if "sync" in runs and "ma" in runs:
        summary["checks"] = {
            "ma_step_speedup_ge_3": (runs["ma"]["step_speedup_vs_single"] or 0) >= 3.0,
            "ma_bytes_le_sync_over_k": runs["ma"]["bytes_per_replica"]
            <= runs["sync"]["bytes_per_replica"] / cfg.ma_period * (1 + 1e-9),
            "ma_final_within_2pct_of_sync": runs["ma"]["final_val_loss"]
            <= 1.02 * runs["sync"]["final_val_loss"],
        }
    plot(summary, Path(args.out))
    Path(args.json_out).write_text(json.dumps(summary, indent=1))
    if args.json:
        print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
