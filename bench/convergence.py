"""Convergence benchmark: 1 replica vs sync / MA / MA+BMUF on 4 logical CPU devices.

Trains the product's attentive GRU seq2seq (``alime.seq2seq``, smaller dimensions than the bundled
model) through ``alime train``'s code path: the same data pipeline (word-segmented e-commerce QA
pairs, AliMe's length buckets, the answer-prior source dropout), the same
:class:`alime.seq2seq.training.Trainer` over Pluto, the same validation token loss. It records
the validation loss against steps per replica and projects wall-clock speed-ups on 4 real GPUs
from a stated cost model (per-step compute plus all-reduce bytes over an interconnect). MA+BMUF
runs its local learners with SGD-momentum, as in the BMUF paper; ``single_sgd`` (one replica with
that optimizer) shows how much of its speed-up over the Adam single run is the optimizer.
``--ma-optimizer sgd`` (and ``--sync-optimizer sgd``) give MA (sync) local SGD-momentum at
``--sgd-lr``; every multi-replica run is then also judged against each single run with its own
target (``against_single``: the same-optimizer single run, the best single run, and shorter
single budgets), since the target depends on the single run's optimizer and budget. The top-level
figures are judged against the best single run (``reference_single``), so a tuned one-replica
rate (``single_scaled``, ``single_sgd_scaled``) counts. ``--target-rule best`` targets 1% above
a single run's lowest loss: with a budget past the point where it overfits, its converged quality.

Usage::

    python bench/convergence.py --json                 # JSON on stdout, PNG + JSON files written
    python bench/convergence.py --json --single-steps 200 --multi-steps 60   # a small run
    python bench/convergence.py --runs single,ma --reuse-single earlier.json --ma-period 32
    python bench/convergence.py --rejudge docs/img/convergence-alime-converged.json  # no training
    # Round 4 (to a tuned single replica's converged quality): see docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout: import this tree's packages
    sys.path.insert(0, str(ROOT))
DATA = ROOT / "data" / "kb" / "ecommerce_qa.tsv"  # question \t answer, word-segmented

# Cost model (AliMe-sized attentive GRU seq2seq on one H100, measured figure from the issue).
STEP_MS = 8.3
GRAD_BYTES = 235e6
INTERCONNECTS_GBPS = {"pcie3_x16": 12.0, "pcie4_x16": 25.0, "nvlink4": 450.0}
PRIMARY_INTERCONNECT = "pcie3_x16"


@dataclass(frozen=True)
class BenchConfig:
    """Model, data and run settings (one place, saved in the JSON)."""

    vocab: int = 2000
    emb: int = 48
    hidden: int = 96
    attention: int = 48
    val_pairs: int = 500
    # The defaults are the recorded run's (docs/benchmarks.md); the batch-8 local SGD-momentum
    # run, MA's best figure but short of the bar, is a command line there.
    batch_per_replica: int = 32
    replicas: int = 4
    # Long enough for one replica to leave the unigram plateau (val loss about 5.2, left near step
    # 400): a target on the plateau is crossed by noise (see docs/benchmarks.md).
    single_steps: int = 1200
    multi_steps: int = 400
    eval_every_single: int = 40
    eval_every_multi: int = 8
    seed: int = 1234
    lr: float = 2e-3
    # K = 8 cannot reach 2.8x on PCIe 3.0 under the cost model (its all-reduces add 3.7 ms to
    # every 8.3 ms step: at most 0.69 x the step speed-up); K = 16 adds 1.8 ms (0.82 x).
    # K = 64 would add 0.46 ms (0.95 x); with local SGD-momentum at batch 8, K = 16, 32 and 64
    # gave the same curve per step (measured).
    ma_period: int = 16
    # sqrt, not linear: local Adam at 4 x 2e-3 stayed on the plateau (measured); with local
    # SGD-momentum use linear.
    ma_lr_scaling: str = "sqrt"
    sync_lr_scaling: str = "sqrt"
    lr_warmup_steps: int = 20
    ma_adaptive: bool = False
    bmuf_period: int = 16
    bmuf_lr_scaling: str = "none"
    # BMUF as in its paper: local SGD-momentum 0.9 (0 would keep local Adam), at single_sgd's
    # rate (block momentum 1 - 1/4 does the scaling).
    bmuf_local_lr: float = 0.1
    bmuf_warmup_blocks: int = 0
    # One-replica rate of SGD-momentum 0.9 (single_sgd, and sync / ma when their optimizer is sgd).
    sgd_lr: float = 0.1
    # The local optimizer of the sync and ma runs (single stays on alime train's Adam at ``lr``):
    # ma's speed-up is judged against the single run with the same optimizer (single_sgd for sgd).
    sync_optimizer: str = "adam"
    ma_optimizer: str = "adam"
    # What averaging does with the optimizer state: local, average (more bytes) or reset.
    ma_slots: str = "local"
    # The target: 1% above the single run's loss at the end of its budget ("final"), or 1% above
    # the lowest loss it reached ("best": the converged quality when the budget runs past the
    # point where it starts to overfit the 4,500 training pairs).
    target_rule: str = "final"


TARGET_RULES = ("final", "best")


def target_of(history: list, rule: str) -> float:
    """The target for a single run's (cut) validation curve: 1% above its last or lowest loss."""
    losses = [loss for _step, loss in history]
    return 1.01 * (min(losses) if rule == "best" else losses[-1])


def load_examples(cfg: BenchConfig):
    """Train and validation examples, vocabulary and model config, as ``alime train`` makes
    them (split of the QA pairs seeded by ``cfg.seed``; vocabulary from the training split)."""
    import numpy as np

    from alime.seq2seq.config import Seq2SeqConfig
    from alime.seq2seq.data import make_examples, read_qa_tsv, tokenize_dialogues
    from alime.seq2seq.vocab import Vocabulary

    pairs = read_qa_tsv(DATA)
    order = np.random.default_rng(cfg.seed).permutation(len(pairs))
    valid = tokenize_dialogues([pairs[i] for i in order[: cfg.val_pairs]], str.split)
    train = tokenize_dialogues([pairs[i] for i in order[cfg.val_pairs :]], str.split)
    vocab = Vocabulary.build(
        (seq for d in train for seq in (*d.turns, d.response)), max_size=cfg.vocab
    )
    config = Seq2SeqConfig(
        vocab_size=len(vocab),
        embed_dim=cfg.emb,
        hidden_dim=cfg.hidden,
        attention_dim=cfg.attention,
        context_turns=1,
    )
    return make_examples(train, vocab, config), make_examples(valid, vocab, config), config


def projected_seconds(
    steps: int, allreduces: int, gbps: float, replicas: int, payload: float = 1.0
) -> float:
    """Cost-model time: ``steps`` x compute plus ``allreduces`` ring all-reduces of the grads
    (``payload`` times their bytes when optimizer state goes along)."""
    per_allreduce = 2.0 * (replicas - 1) / replicas * GRAD_BYTES if replicas > 1 else 0.0
    return steps * STEP_MS / 1000.0 + allreduces * payload * per_allreduce / (gbps * 1e9)


RUNS = {
    # multi: cfg.replicas replicas (else 1); scaling, period, optimizer: the BenchConfig fields to
    # use (optimizer None: alime train's Adam).
    "single": dict(multi=False, mode="sync", scaling=None, period=None, bmuf=False, opt=None),
    "sync": dict(
        multi=True,
        mode="sync",
        scaling="sync_lr_scaling",
        period=None,
        bmuf=False,
        opt="sync_optimizer",
    ),
    "ma": dict(
        multi=True,
        mode="ma",
        scaling="ma_lr_scaling",
        period="ma_period",
        bmuf=False,
        opt="ma_optimizer",
    ),
    "ma_bmuf": dict(
        multi=True,
        mode="ma",
        scaling="bmuf_lr_scaling",
        period="bmuf_period",
        bmuf=True,
        opt=None,
    ),
    # The same-optimizer control: one replica with SGD-momentum 0.9 at ``sgd_lr`` (BMUF's local
    # learner and, with --ma-optimizer sgd, ma's), to separate the optimizer's share of a
    # speed-up over the Adam single run from the replicas' share.
    "single_sgd": dict(multi=False, mode="sync", scaling=None, period=None, bmuf=False, opt="sgd"),
    # One replica with SGD-momentum at ma's scaled local rate (sgd_lr scaled by ma_lr_scaling
    # for cfg.replicas): whether one replica could simply take the larger rate.
    "single_sgd_scaled": dict(
        multi=False, mode="sync", scaling=None, period=None, bmuf=False, opt="sgd"
    ),
    # The same for Adam: one replica at ``lr`` scaled by ma_lr_scaling (with sqrt, local Adam's
    # best MA rate), i.e. the single run with its rate tuned up as MA's was.
    "single_scaled": dict(
        multi=False, mode="sync", scaling=None, period=None, bmuf=False, opt=None
    ),
}
SINGLE_RUNS = ("single", "single_sgd", "single_sgd_scaled", "single_scaled")


def optimizer_of(name: str, cfg: BenchConfig) -> tuple[str, float]:
    """(optimizer, one-replica rate) a run trains with (BMUF's local SGD counted as sgd)."""
    spec = RUNS[name]
    if spec["bmuf"] and cfg.bmuf_local_lr:
        return "sgd", cfg.bmuf_local_lr
    kind = spec["opt"] if spec["opt"] in (None, "sgd") else getattr(cfg, spec["opt"])
    kind = kind or "adam"
    if name in ("single_sgd_scaled", "single_scaled"):
        from pluto.heuristics import scaled_learning_rate

        base = cfg.sgd_lr if kind == "sgd" else cfg.lr
        return kind, scaled_learning_rate(base, cfg.replicas, cfg.ma_lr_scaling)
    return kind, cfg.sgd_lr if kind == "sgd" else cfg.lr


def payload_factor(name: str, cfg: BenchConfig) -> float:
    """All-reduce payload in units of the weights: averaging the optimizer state along sends
    the momentum (SGD) or both Adam moments too."""
    if name != "ma" or cfg.ma_slots != "average":
        return 1.0
    return 2.0 if optimizer_of(name, cfg)[0] == "sgd" else 3.0


def run_one(name: str, cfg: BenchConfig, data) -> dict:
    """Train one configuration through ``alime train``'s Trainer and return its measurements."""
    from alime.seq2seq.data import bucket_batches
    from alime.seq2seq.distributed import ParallelOptions
    from alime.seq2seq.training import Trainer, TrainOptions
    from pluto.strategy import StrategyConfig, make_strategy

    train_ex, valid_ex, config = data
    spec = RUNS[name]
    replicas = cfg.replicas if spec["multi"] else 1
    parallel = ParallelOptions(
        devices=replicas,
        mode=spec["mode"],
        avg_period=getattr(cfg, spec["period"]) if spec["period"] else 8,
        bmuf=spec["bmuf"],
        bmuf_local_lr=cfg.bmuf_local_lr if spec["bmuf"] else 0.0,
        bmuf_warmup_blocks=cfg.bmuf_warmup_blocks if spec["bmuf"] else 0,
        lr_scaling=getattr(cfg, spec["scaling"]) if spec["scaling"] else "none",
        lr_warmup_steps=cfg.lr_warmup_steps if spec["scaling"] else 0,
        adaptive_period=cfg.ma_adaptive and name == "ma",
        ma_slots=cfg.ma_slots if name == "ma" else "local",
    )
    kind, rate = optimizer_of(name, cfg)
    options = TrainOptions(
        batch_size=cfg.batch_per_replica,
        learning_rate=cfg.lr if spec["bmuf"] else rate,  # BMUF's local rate is bmuf_local_lr
        optimizer="adam" if spec["bmuf"] else kind,
        seed=cfg.seed,
    )
    strategy = make_strategy(StrategyConfig(devices=replicas, use_gpus=False))
    trainer = Trainer(config, options, strategy, parallel)
    pluto = trainer.pluto
    valid = bucket_batches(valid_ex, config.buckets, trainer.global_batch)
    steps = cfg.multi_steps if spec["multi"] else cfg.single_steps
    every = cfg.eval_every_multi if spec["multi"] else cfg.eval_every_single
    history: list[tuple[int, float]] = []
    last_eval, epoch = 0, 0
    start = time.perf_counter()
    while pluto.global_step < steps:
        # A new shuffle and new emptied sources per epoch, as in alime train.
        batches = bucket_batches(
            train_ex,
            config.buckets,
            trainer.global_batch,
            seed=cfg.seed + epoch,
            empty_source_rate=config.prior_dropout,
        )
        epoch += 1
        for batch in pluto.distribute(trainer._dataset(batches)):
            pluto.step(batch)
            done = pluto.global_step
            if pluto.in_sync and done - last_eval >= every:
                last_eval = done
                history.append((done, trainer.evaluate(valid)))
                trainer.on_validation(history[-1][1])
            if done >= steps:
                break
    final = trainer.evaluate(valid)
    if not history or history[-1][0] != pluto.global_step:
        history.append((pluto.global_step, final))
    return {
        "replicas": replicas,
        "mode": parallel.mode,
        "optimizer": kind,
        "base_lr": rate,
        "payload_factor": payload_factor(name, cfg),
        "history": history,
        "steps": pluto.global_step,
        "allreduces": pluto.comm.allreduces,
        # Step of every all-reduce: each step (sync), each average (model averaging).
        "allreduce_steps": list(range(1, pluto.global_step + 1))
        if parallel.mode == "sync" and replicas > 1
        else [int(s) for s, _ in pluto.drift_history],
        "periods": [[int(s), float(d), int(k)] for s, d, k in pluto.adapted],
        "bytes_per_replica": pluto.bytes_per_replica,
        "final_val_loss": final,
        "best_val_loss": min(loss for _step, loss in history),
        "wall_s": time.perf_counter() - start,
        "examples_per_step": trainer.global_batch,
        "learning_rates": [list(x) for x in pluto.learning_rates],
    }


def first_reaching(history: list, target: float) -> int | None:
    """Steps per replica at the first evaluation at or below ``target``."""
    for step, loss in history:
        if loss <= target:
            return int(step)
    return None


def best_single_run(runs: dict, rule: str) -> str | None:
    """The single run with the lowest loss under the target ``rule`` (its final or its lowest)."""
    singles = {r: target_of(runs[r]["history"], rule) for r in SINGLE_RUNS if r in runs}
    return min(singles, key=singles.get) if singles else None


def summarize(runs: dict, cfg: BenchConfig, target: float) -> dict:
    """Add steps-to-target, examples and projections to every run."""
    # The best single run (none when only multi-replica runs were asked for): the top-level
    # figures are judged against it, so a 4-replica run never gets credit for an under-tuned one.
    reference = best_single_run(runs, cfg.target_rule)
    single = runs[reference] if reference else None
    single_steps = first_reaching(single["history"], target) if single else None
    for _name, run in runs.items():
        steps = first_reaching(run["history"], target)
        run["steps_to_target"] = steps
        run["examples_to_target"] = None if steps is None else steps * run["examples_per_step"]
        # All-reduces done until the target, counted (sync: one per step; MA: the averages so
        # far, the one at the target step included).
        done = run.get("allreduce_steps")
        if steps is None or run["replicas"] == 1:  # one replica exchanges nothing
            allreduces = 0
        elif done is None:  # a JSON from before the steps were recorded: pro rata
            allreduces = round(run["allreduces"] * steps / max(run["steps"], 1))
        else:
            allreduces = sum(1 for s in done if s <= steps)
        run["allreduces_to_target"] = allreduces
        run["projected_s"] = {}
        run["projected_speedup_by_interconnect"] = {}
        for link, gbps in INTERCONNECTS_GBPS.items():
            if steps is None or single_steps is None:
                run["projected_s"][link] = None
                run["projected_speedup_by_interconnect"][link] = None
                continue
            t = projected_seconds(
                steps, allreduces, gbps, run["replicas"], run.get("payload_factor", 1.0)
            )
            run["projected_s"][link] = t
            run["projected_speedup_by_interconnect"][link] = (
                projected_seconds(single_steps, 0, gbps, 1) / t
            )
        run["projected_speedup"] = run["projected_speedup_by_interconnect"][PRIMARY_INTERCONNECT]
        run["step_speedup_vs_single"] = (
            None if steps is None or single_steps is None else single_steps / steps
        )
    # The optimizer's share: speed-ups against one replica with BMUF's local SGD-momentum.
    control = runs.get("single_sgd", {}).get("projected_s", {}).get(PRIMARY_INTERCONNECT)
    for run in runs.values():
        own = run["projected_s"][PRIMARY_INTERCONNECT]
        run["projected_speedup_vs_single_sgd"] = None if not control or not own else control / own
    rule = cfg.target_rule
    against = {ref: against_single(runs, ref, rule) for ref in SINGLE_RUNS if ref in runs}
    singles = {ref: target_of(runs[ref]["history"], rule) for ref in against}
    for name, run in runs.items():
        if run["replicas"] == 1 or not against:
            continue
        # The best single run with this run's optimizer (its rate tuned: the scaled control
        # counts), so MA is not judged against an under-tuned replica.
        same = min(
            (r for r in against if runs[r].get("optimizer", "adam") == run.get("optimizer")),
            key=singles.get,
            default=None,
        )
        run["same_optimizer_single"] = same
        run["projected_speedup_same_optimizer"] = (
            against[same]["runs"][name]["projected_speedup"] if same else None
        )
        run["best_single"] = reference
        run["projected_speedup_vs_best_single"] = against[reference]["runs"][name][
            "projected_speedup"
        ]
    return {
        "trainer": "alime",
        "target_val_loss": target,
        # The single run the top-level figures (each run's projected_speedup) are judged against:
        # the best one, so the same as best_single (that key kept for readers of earlier JSONs).
        "reference_single": reference,
        # Every single run as the reference, each with its own target (1% above its final loss,
        # and 1% above its loss at shorter budgets: the target depends on the single budget).
        "against_single": against,
        "best_single": reference,
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


def checks_of(runs: dict, cfg: BenchConfig) -> dict:
    """The JSON's pass/fail checks (needs the sync and ma runs, after ``summarize``)."""
    return {
        "ma_step_speedup_ge_3": (runs["ma"]["step_speedup_vs_single"] or 0) >= 3.0,
        "ma_bytes_le_sync_over_k": runs["ma"]["bytes_per_replica"]
        <= runs["sync"]["bytes_per_replica"] / cfg.ma_period * (1 + 1e-9),
        "ma_final_within_2pct_of_sync": runs["ma"]["final_val_loss"]
        <= 1.02 * runs["sync"]["final_val_loss"],
        # Pluto's figure, judged against the best single replica with ma's own optimizer and
        # batch, and against the best single replica of all.
        "ma_projected_ge_2_8_same_optimizer": (
            runs["ma"].get("projected_speedup_same_optimizer") or 0
        )
        >= 2.8,
        "ma_projected_ge_2_8_vs_best_single": (
            runs["ma"].get("projected_speedup_vs_best_single") or 0
        )
        >= 2.8,
    }


def budgets_of(single: dict) -> list[int]:
    """Single-run budgets to judge against: a quarter, half, three quarters and all of its steps
    (its curve cut there; no schedule depends on the run's length)."""
    total = single["steps"]
    return sorted({max(total * q // 4, 1) for q in (1, 2, 3, 4)})


def against_single(runs: dict, ref: str, rule: str = "final") -> dict:
    """Every multi-replica run's projection against single run ``ref``, for each budget of it.

    For budget B the target is 1% above ``ref``'s last (``rule`` "final") or lowest ("best")
    evaluated loss at or before B, ``ref`` reaches it at its first evaluation at or below it,
    and a multi-replica run at its own first one.
    """
    single = runs[ref]
    by_budget = []
    for budget in budgets_of(single):
        seen = [h for h in single["history"] if h[0] <= budget]
        if not seen:
            continue
        target = target_of(seen, rule)
        ref_steps = first_reaching(seen, target)
        entry = {"budget": budget, "target_val_loss": target, "single_steps_to_target": ref_steps}
        for name, run in runs.items():
            if run["replicas"] == 1:
                continue
            steps = first_reaching(run["history"], target)
            done = run.get("allreduce_steps") or []
            allreduces = 0 if steps is None else sum(1 for s in done if s <= steps)
            speedup = None
            if steps is not None and ref_steps is not None:
                link = INTERCONNECTS_GBPS[PRIMARY_INTERCONNECT]
                cost = projected_seconds(
                    steps, allreduces, link, run["replicas"], run.get("payload_factor", 1.0)
                )
                speedup = projected_seconds(ref_steps, 0, link, 1) / cost
            entry[name] = {
                "steps_to_target": steps,
                "allreduces_to_target": allreduces,
                "step_speedup": None if speedup is None else ref_steps / steps,
                "projected_speedup": speedup,
            }
        by_budget.append(entry)
    full = by_budget[-1]
    return {
        "optimizer": single.get("optimizer", "adam"),
        "final_val_loss": single["final_val_loss"],
        "target_val_loss": full["target_val_loss"],
        "single_steps_to_target": full["single_steps_to_target"],
        "runs": {n: full[n] for n in full if isinstance(full[n], dict)},
        "by_budget": by_budget,
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
    best = summary.get("best_single")
    best_target = summary.get("against_single", {}).get(best, {}).get("target_val_loss")
    if best_target is not None and abs(best_target - summary["target_val_loss"]) > 1e-9:
        ax.axhline(best_target, color="black", linestyle=":", label=f"target of {best} (best)")
    ax.set_xlabel("steps per replica")
    ax.set_ylabel("validation loss (token NLL)")
    ax.set_title("Pluto convergence: attentive GRU seq2seq, e-commerce QA")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# Settings the single run depends on: a reused single run must have been made with these.
SINGLE_FIELDS = (
    "vocab",
    "emb",
    "hidden",
    "attention",
    "val_pairs",
    "batch_per_replica",
    "single_steps",
    "eval_every_single",
    "seed",
    "lr",
)


def reuse_single(path: Path, cfg: BenchConfig) -> dict:
    """The single run of an earlier JSON, after checking it was made with ``cfg``'s settings.

    Raises:
        SystemExit: (status 2) the settings differ or the file has no single run.
    """
    earlier = json.loads(path.read_text())
    differ = [f for f in SINGLE_FIELDS if earlier["config"].get(f) != getattr(cfg, f)]
    if differ or "single" not in earlier.get("runs", {}):
        print(f"{path}:1: cannot reuse its single run (differs in {differ})", file=sys.stderr)
        raise SystemExit(2)
    run = earlier["runs"]["single"]
    run["reused_from"] = str(path)
    return run


def rejudge(path: Path, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Summarize an earlier JSON's runs again (the measurements kept, every figure recomputed)."""
    earlier = json.loads(path.read_text())
    config = earlier["config"]
    if args.target_rule is not None:  # given on the command line
        config["target_rule"] = args.target_rule
    cfg = BenchConfig(**{k: v for k, v in config.items() if k in asdict(BenchConfig())})
    runs = earlier["runs"]
    if args.target is None and not best_single_run(runs, cfg.target_rule):
        parser.error(f"{path}: no single run to take the target from; give --target")
    extra = {"total_wall_s": earlier.get("total_wall_s"), "rejudged_from": str(path)}
    return judge_and_write(runs, cfg, args, extra)


def judge_and_write(runs: dict, cfg: BenchConfig, args: argparse.Namespace, extra: dict) -> int:
    """Summarize ``runs`` (target: ``--target``, else 1% above the best single run's final or
    lowest loss), add the checks, write the PNG and JSON, print the JSON when ``--json``."""
    base = best_single_run(runs, cfg.target_rule)
    target = (
        args.target
        if args.target is not None
        else target_of(runs[base]["history"], cfg.target_rule)
    )
    summary = summarize(runs, cfg, target) | extra
    if "sync" in runs and "ma" in runs:
        summary["checks"] = checks_of(runs, cfg)
    plot(summary, Path(args.out))
    Path(args.json_out).write_text(json.dumps(summary, indent=1))
    if args.json:
        print(json.dumps(summary, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print JSON when ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the JSON summary")
    parser.add_argument(
        "--out", default=None, help="PNG (default: docs/img/convergence.png; --rejudge: beside it)"
    )
    parser.add_argument(
        "--json-out",
        default=None,
        help="JSON (default: docs/img/convergence.json; --rejudge: the file judged again)",
    )
    parser.add_argument("--runs", default="single,sync,ma,ma_bmuf,single_sgd")
    parser.add_argument(
        "--target",
        type=float,
        default=None,
        help="target val loss (default: 1%% above the single run's final or lowest loss)",
    )
    parser.add_argument(
        "--rejudge",
        default=None,
        help="train nothing: judge the runs of this earlier JSON again with this code (its "
        "config, with --target-rule and --target if given) and write --json-out / --out",
    )
    parser.add_argument(
        "--reuse-single",
        default=None,
        help="take the single run from this earlier JSON (same settings) instead of training it",
    )
    for field_name, default in asdict(BenchConfig()).items():
        flag = f"--{field_name.replace('_', '-')}"
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif field_name == "target_rule":  # None when not given: --rejudge keeps the JSON's rule
            parser.add_argument(flag, choices=TARGET_RULES, default=None)
        else:
            parser.add_argument(flag, type=type(default), default=default)
    args = parser.parse_args(argv)
    given = {k: getattr(args, k) for k in asdict(BenchConfig())}
    cfg = BenchConfig(**{k: v for k, v in given.items() if v is not None})
    if args.rejudge:
        earlier = Path(args.rejudge)
        args.json_out = args.json_out or str(earlier)
        args.out = args.out or str(earlier.with_suffix(".png"))
        return rejudge(earlier, args, parser)
    args.out = args.out or str(ROOT / "docs" / "img" / "convergence.png")
    args.json_out = args.json_out or str(ROOT / "docs" / "img" / "convergence.json")
    # Checked before any training, not after it.
    names = args.runs.split(",")
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        parser.error(f"--runs: unknown run(s) {', '.join(unknown)}; known: {', '.join(RUNS)}")
    if args.target is None and not any(r in names for r in SINGLE_RUNS):
        parser.error("--runs without a single run needs --target")
    reused = reuse_single(Path(args.reuse_single), cfg) if args.reuse_single else None

    from pluto.strategy import configure_logical_cpus

    configure_logical_cpus(cfg.replicas)  # before TensorFlow initializes
    data = load_examples(cfg)

    runs: dict = {}
    start = time.perf_counter()
    for name in names:
        runs[name] = reused if name == "single" and reused else run_one(name, cfg, data)
        print(
            f"{name}: final {runs[name]['final_val_loss']:.4f} in {runs[name]['wall_s']:.0f}s",
            file=sys.stderr,
        )
    return judge_and_write(runs, cfg, args, {"total_wall_s": time.perf_counter() - start})


if __name__ == "__main__":
    raise SystemExit(main())
