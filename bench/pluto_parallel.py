"""Pluto's other half: late-multiply, hybrid parallelism, XLA, recomputation, binarized GRUs.

Byte counts and projections are for the AliMe-sized seq2seq (vocabulary 30K, embedding 512,
hidden 1,024, built with ``alime.seq2seq``) on 4 cards under the cost model of ``docs/pluto.md``
(8.3 ms compute per step, PCIe 3.0 x16 at 12 GB/s, ring collectives, no overlap). Gradient
differences, XLA step times and peak memory are measured on this machine with a small model on
logical CPU devices; the binarized model's selection figures use the bundled ``data/model``.

Usage::

    python bench/pluto_parallel.py --json                      # the summary JSON on stdout
    python bench/pluto_parallel.py --json --details docs/img/pluto_parallel.json
    python bench/pluto_parallel.py --json --select-groups 50 --repeats 5   # quicker
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout: import this tree's packages
    sys.path.insert(0, str(ROOT))

STEP_MS = 8.3  # docs/pluto.md: AliMe-sized step on one card
PCIE3_BYTES_PER_S = 12e9


@dataclass(frozen=True)
class BenchConfig:
    """Sizes and run settings (saved in the details file)."""

    replicas: int = 4
    vocab: int = 30000
    emb: int = 512
    hidden: int = 1024
    attention: int = 128
    batch: int = 64  # per replica, as in the cost model
    src_len: int = 10  # AliMe bucket (10, 15)
    tgt_len: int = 15
    memory_cap_gb: float = 12.0  # a K40/M40-era card
    profile_repeats: int = 3
    small_vocab: int = 2000
    small_emb: int = 64
    small_hidden: int = 128
    small_batch: int = 16
    repeats: int = 10
    long_src: int = 45  # the longest AliMe bucket, for recomputation
    long_tgt: int = 60
    select_groups: int = 500  # the whole file
    select_data: str = "data/eval/valid_ctxneg.txt"
    generate_dialogues: int = 100  # the first label-1 dialogues of select_data (0: skip)
    model_dir: str = "data/model"
    seed: int = 0


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def alime_model(cfg: BenchConfig, vocab: int, emb: int, hidden: int, attention: int):
    """An ``alime.seq2seq`` model (variables built) without dropout."""
    from alime.seq2seq.config import Seq2SeqConfig
    from alime.seq2seq.model import build_model

    shape = Seq2SeqConfig(
        vocab_size=vocab, embed_dim=emb, hidden_dim=hidden, attention_dim=attention, dropout=0.0
    )
    return build_model(shape)


def dense_rows(cfg: BenchConfig) -> dict[str, int]:
    """Rows ``M`` each Dense layer of the seq2seq sees per replica and step."""
    b, s, t = cfg.batch, cfg.src_len, cfg.tgt_len
    return {
        "bridge": b,
        "key_proj": b * s,
        "query_proj": b * t,
        "score_proj": b * t * s,
        "combine": b * t,
        "output_proj": b * t,
    }


def late_multiply_section(cfg: BenchConfig, model, rows: dict[str, int]) -> tuple[dict, dict]:
    """Bytes per replica and step at AliMe size, plain vs late where cheaper."""
    from pluto.comm import payload_bytes, ring_allreduce_bytes
    from pluto.late_multiply import DenseShape, plan, totals

    dense = {
        "bridge": model.bridge,
        "key_proj": model.attention.key_proj,
        "query_proj": model.attention.query_proj,
        "score_proj": model.attention.score_proj,
        "combine": model.combine,
        "output_proj": model.output_proj,
    }
    shapes = [
        DenseShape(name, layer.kernel.shape[0], layer.kernel.shape[1], rows[name])
        for name, layer in dense.items()
    ]
    costs = plan(shapes, cfg.replicas)
    kernels = {id(layer.kernel) for layer in dense.values()}
    # Everything that is not a Dense kernel (embedding, GRUs, biases) is all-reduced either way.
    rest = payload_bytes([v for v in model.trainable_variables if id(v) not in kernels])
    rest_bytes = ring_allreduce_bytes(rest, cfg.replicas)
    plain, chosen = totals(costs)
    by_bucket = {}
    from alime.seq2seq.config import ALIME_BUCKETS

    for src, tgt in ALIME_BUCKETS:
        bucket_cfg = BenchConfig(**{**asdict(cfg), "src_len": src, "tgt_len": tgt})
        r = dense_rows(bucket_cfg)
        c = plan([DenseShape(s.name, s.n_in, s.n_out, r[s.name]) for s in shapes], cfg.replicas)
        p, ch = totals(c)
        by_bucket[f"{src},{tgt}"] = {
            "bytes_plain": int(rest_bytes + p),
            "bytes_late": int(rest_bytes + ch),
            "late_layers": [x.name for x in c if x.late],
        }
    section = {
        "bytes_plain": int(rest_bytes + plain),
        "bytes_late": int(rest_bytes + chosen),
        "layers": [
            {
                "name": c.name,
                "n_in": c.n_in,
                "n_out": c.n_out,
                "rows": c.rows,
                "bytes_plain": int(c.bytes_plain),
                "bytes_late": int(c.bytes_late),
                "late": c.late,
            }
            for c in costs
        ],
    }
    return section, {"by_bucket": by_bucket, "other_gradients_bytes": int(rest_bytes)}


def late_multiply_measured(cfg: BenchConfig, strategy) -> float:
    """Largest |plain - late| gradient difference of a small seq2seq head on the devices."""
    import keras
    import tensorflow as tf

    from pluto.late_multiply import LateMultiplyDense, gradients_both_ways

    rng = np.random.default_rng(cfg.seed)
    n = cfg.replicas * cfg.small_batch
    ids = rng.integers(4, cfg.small_vocab, size=(n, cfg.tgt_len)).astype("int32")
    labels = rng.integers(4, cfg.small_vocab, size=(n, cfg.tgt_len)).astype("int32")
    with strategy.scope():
        keras.utils.set_random_seed(cfg.seed)
        inputs = keras.Input((cfg.tgt_len,), dtype="int32")
        x = keras.layers.Embedding(cfg.small_vocab, cfg.small_emb)(inputs)
        x = keras.layers.GRU(cfg.small_hidden, return_sequences=True)(x)
        x = LateMultiplyDense(cfg.small_hidden, activation="tanh", name="combine")(x)
        logits = LateMultiplyDense(cfg.small_vocab, name="output_proj")(x)
        model = keras.Model(inputs, logits)

    def loss_fn(t, p):
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(t, p))

    plain, late = gradients_both_ways(strategy, model, loss_fn, ids, labels)
    return max(
        float(np.abs(a - b).max())
        for rep_p, rep_l in zip(plain, late, strict=True)
        for a, b in zip(rep_p, rep_l, strict=True)
    )


def hybrid_measured(cfg: BenchConfig) -> float:
    """Largest gradient difference, hybrid step vs one device, small seq2seq-like model."""
    import keras
    import tensorflow as tf

    from pluto.hybrid import ShardedEmbedding, ShardedSoftmax, hybrid_loss

    devices = [d.name for d in tf.config.list_logical_devices("CPU")[: cfg.replicas]]
    rng = np.random.default_rng(cfg.seed + 1)
    n, t = cfg.replicas * cfg.small_batch, cfg.tgt_len
    ids = rng.integers(4, cfg.small_vocab, size=(n, t)).astype("int32")
    labels = rng.integers(4, cfg.small_vocab, size=(n, t)).astype("int32")
    weights = (ids > 0).astype("float32")
    keras.utils.set_random_seed(cfg.seed)
    gru = keras.Sequential(
        [
            keras.Input((t, cfg.small_emb)),
            keras.layers.GRU(cfg.small_hidden, return_sequences=True),
        ]
    )
    table = rng.normal(scale=0.1, size=(cfg.small_vocab, cfg.small_emb)).astype("float32")
    embedding = ShardedEmbedding(table, devices)
    kernel = rng.normal(scale=0.05, size=(cfg.small_hidden, cfg.small_vocab)).astype("float32")
    bias = np.zeros(cfg.small_vocab, "float32")
    head = ShardedSoftmax(kernel, bias, devices)

    def body(x):
        return tf.reshape(gru(embedding.lookup(x)), [-1, cfg.small_hidden])

    m = cfg.small_batch
    slices = [
        (ids[r * m : (r + 1) * m], labels[r * m : (r + 1) * m].reshape(-1), weights[r * m :][:m])
        for r in range(cfg.replicas)
    ]
    slices = [(a, b, c.reshape(-1)) for a, b, c in slices]
    variables = gru.trainable_variables
    with tf.GradientTape() as tape:
        loss = hybrid_loss(body, head, slices, devices)
    grads = tape.gradient(loss, variables + embedding.tables + head.kernels)
    full, full_table = tf.Variable(kernel), tf.Variable(table)
    with tf.GradientTape() as tape:
        rows = tf.reshape(gru(tf.gather(full_table, ids)), [-1, cfg.small_hidden])
        logits = rows @ full + bias
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels.reshape(-1), logits)
        ref_loss = tf.reduce_sum(ce * weights.reshape(-1)) / tf.reduce_sum(weights)
    ref = tape.gradient(ref_loss, [*variables, full_table, full])
    k, n = len(variables), len(devices)

    def dense(g):
        return tf.convert_to_tensor(g).numpy()

    got = [dense(g) for g in grads[:k]]
    got.append(np.concatenate([dense(g) for g in grads[k : k + n]], axis=0))
    got.append(np.concatenate([dense(g) for g in grads[k + n :]], axis=1))
    want = [dense(g) for g in ref]
    return max(float(np.abs(a - b).max()) for a, b in zip(got, want, strict=True))


def profile_alime(cfg: BenchConfig, model) -> list:
    """Pre-run: each layer of the AliMe-sized model at the per-replica batch."""
    import tensorflow as tf

    from pluto.hybrid import profile_layer

    rng = np.random.default_rng(cfg.seed)
    b, s, t = cfg.batch, cfg.src_len, cfg.tgt_len
    src = tf.constant(rng.integers(4, cfg.vocab, size=(b, s)), tf.int32)
    tgt = tf.constant(rng.integers(4, cfg.vocab, size=(b, t)), tf.int32)
    emb_src, emb_tgt = model.embedding(src), model.embedding(tgt)
    values, last = model.encoder_rnn(emb_src)
    state = model.bridge(last)
    states, _ = model.decoder_rnn(emb_tgt, initial_state=state)
    keys = model.attention.keys(values)
    mask = tf.ones((b, s), tf.bool)
    context = model.attention(states, keys, values, mask)
    joined = tf.concat([states, context], -1)
    hidden = model.combine(joined)
    flat = tf.reshape(hidden, [-1, cfg.hidden])
    r = cfg.profile_repeats
    both_ids = tf.concat([src, tgt], 1)
    return [
        profile_layer(
            "embedding", model.embedding, [both_ids], model.embedding.weights, "lookup", r
        ),
        profile_layer("encoder", model.encoder_rnn, [emb_src], model.encoder_rnn.weights, None, r),
        profile_layer("bridge", model.bridge, [last], model.bridge.weights, None, r),
        profile_layer(
            "decoder",
            lambda x, h: model.decoder_rnn(x, initial_state=h),
            [emb_tgt, state],
            model.decoder_rnn.weights,
            None,
            r,
        ),
        profile_layer(
            "attention",
            lambda q, k, v: model.attention(q, k, v, mask),
            [states, keys, values],
            model.attention.weights,
            None,
            r,
        ),
        profile_layer("combine", model.combine, [joined], model.combine.weights, None, r),
        profile_layer(
            "output_proj", model.output_proj, [flat], model.output_proj.weights, "projection", r
        ),
    ]


def hybrid_section(cfg: BenchConfig, model) -> tuple[dict, dict]:
    """Per-step bytes of sync vs hybrid at AliMe size, the projection and the placement."""
    from pluto.comm import payload_bytes
    from pluto.hybrid import Mode, greedy_placement, step_bytes

    profiles = profile_alime(cfg, model)
    placement = greedy_placement(profiles, cfg.replicas, cfg.memory_cap_gb * 1e9)
    # Both splits the placement can choose are implemented and tested equal to one device:
    # pluto.hybrid.ShardedEmbedding (lookup) and ShardedSoftmax (projection with its loss).
    layers = {"embedding": model.embedding, "output_proj": model.output_proj}
    split = [a for a in placement.assignments if a.mode is Mode.MODEL]
    sharded = [v for a in split for v in layers[a.layer].trainable_variables]
    counted = step_bytes(
        payload_bytes(model.trainable_variables),
        payload_bytes(sharded),
        sum(a.bytes_mp for a in split),
        cfg.replicas,
    )

    def step_s(nbytes: float) -> float:
        return STEP_MS / 1000.0 + nbytes / PCIE3_BYTES_PER_S

    section = {
        "bytes_per_step_sync": int(counted.sync),
        "bytes_per_step_hybrid": int(counted.hybrid),
        "projected_speedup_pcie3": step_s(counted.sync) / step_s(counted.hybrid),
        "placement": [a.to_dict() for a in placement.assignments],
    }
    details = {
        "profiles": [p.to_dict() for p in profiles],
        "model_parallel_layers": [a.layer for a in placement.assignments if a.mode is Mode.MODEL],
        "memory_per_device": placement.memory,
        "memory_cap": placement.memory_cap,
        "exchange_bytes": counted.exchange,
        "parameters": sum(int(np.prod(v.shape)) for v in model.trainable_variables),
        "step_s_pcie3": {"sync": step_s(counted.sync), "hybrid": step_s(counted.hybrid)},
    }
    return section, details


def _small_batch(cfg: BenchConfig, src_len: int, tgt_len: int, batch: int):
    import tensorflow as tf

    rng = np.random.default_rng(cfg.seed)

    def ids(length):
        return tf.constant(rng.integers(4, cfg.small_vocab, size=(batch, length)), tf.int32)

    return ids(src_len), ids(tgt_len), ids(tgt_len)


def xla_section(cfg: BenchConfig) -> tuple[dict, dict]:
    """Train step and inference (rerank scoring) step, plain graph vs XLA, one device."""
    import tensorflow as tf

    from alime.seq2seq.model import target_log_probs
    from pluto.compilation import compare

    model = alime_model(cfg, cfg.small_vocab, cfg.small_emb, cfg.small_hidden, 64)
    variables = model.trainable_variables
    src, tin, tout = _small_batch(cfg, cfg.src_len, cfg.tgt_len, cfg.small_batch)

    initial = [v.numpy() for v in variables]

    def train_step(src, tin, tout):
        with tf.GradientTape() as tape:
            logits = model((src, tin), training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(tout, logits))
        grads = tape.gradient(loss, variables)
        for var, grad in zip(variables, grads, strict=True):
            var.assign_sub(1e-4 * tf.convert_to_tensor(grad))
        return loss, grads

    def restore() -> None:  # both versions' first (checked) step starts from the same weights
        for var, value in zip(variables, initial, strict=True):
            var.assign(value)

    def infer_step(src, tin, tout):
        return target_log_probs(model((src, tin)), tout)

    args = (src, tin, tout)
    train = compare(train_step, args, cfg.repeats, reset=restore)
    infer = compare(infer_step, args, cfg.repeats)
    section = {"train_step_ms": {"plain": train.plain.wall_ms, "xla": train.xla.wall_ms}}
    return section, {"train_step": train.to_dict(), "inference_step": infer.to_dict()}


def recompute_section(cfg: BenchConfig) -> tuple[dict, dict]:
    """Peak bytes of one train step at the longest bucket, plain vs checkpointed blocks."""
    import tensorflow as tf

    from alime.seq2seq.model import EncoderOutput
    from pluto.recompute import checkpoint, peak_bytes

    model = alime_model(cfg, cfg.small_vocab, cfg.small_emb, cfg.small_hidden, 64)
    variables = model.trainable_variables
    args = _small_batch(cfg, cfg.long_src, cfg.long_tgt, cfg.small_batch * 2)

    def make(recompute: bool):
        wrap = checkpoint if recompute else (lambda fn: fn)

        @tf.function
        def step(src, tin, tout):
            mask = tf.not_equal(src, 0)

            # Closures keep the integer ids out of the checkpointed blocks' arguments.
            def encoder(emb):
                values, last = model.encoder_rnn(emb, mask=mask)
                return values, model.attention.keys(values), model.bridge(last)

            def decoder(emb, values, keys, state):
                states, _ = model.decoder_rnn(emb, initial_state=state)
                enc = EncoderOutput(values, keys, mask, state)
                context = model.attention(states, enc.keys, enc.values, enc.mask)
                return model.combine(tf.concat([states, context], -1))

            with tf.GradientTape() as tape:
                values, keys, state = wrap(encoder)(model.embedding(src))
                hidden = wrap(decoder)(model.embedding(tin), values, keys, state)
                logits = model.output_proj(hidden)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(tout, logits))
            return loss, tape.gradient(loss, variables)

        return step

    peaks, grads = {}, {}
    for name, flag in (("plain", False), ("recompute", True)):
        step = make(flag)
        grads[name] = step(*args)[1]  # trace and warm up; the weights do not change
        peaks[name] = min(peak_bytes(step, args) for _ in range(3))
    plain, rec = grads["plain"], grads["recompute"]
    diff = max(
        float(np.abs(tf.convert_to_tensor(a).numpy() - tf.convert_to_tensor(b).numpy()).max())
        for a, b in zip(plain, rec, strict=True)
    )
    details = {
        "bucket": [cfg.long_src, cfg.long_tgt],
        "batch": cfg.small_batch * 2,
        "max_abs_grad_diff": diff,
        "measure": "tf.config.experimental.get_memory_info('CPU:0') peak minus current, "
        "min of 3 calls",
    }
    return {"peak_bytes": {"plain": int(peaks["plain"]), "recompute": int(peaks["recompute"])}}, (
        details
    )


def binarized_section(cfg: BenchConfig) -> tuple[dict, dict]:
    """Size ratio of the binarized GRUs and R10@1 before and after, bundled model."""
    from alime.config import AppConfig
    from alime.evaluation import generation, scorers, selection
    from alime.evaluation.corpus import read_groups, read_true_rows
    from alime.evaluation.runner import engine_scorer, load_model, stacking_dir_of
    from alime.text import TextPipeline
    from pluto.binarize import assign_binarized, size_ratio

    model_dir = ROOT / cfg.model_dir
    groups = read_groups(ROOT / cfg.select_data, limit=cfg.select_groups)
    pipeline = TextPipeline(AppConfig().text)
    stages = load_model(model_dir, pipeline)
    # The engine's own rerank score for this model directory (rerank.json), as evaluate select
    # computes it.
    name, pmi_weight = engine_scorer(model_dir)
    weight = 0.5 if pmi_weight is None else pmi_weight
    responses = [r for g in groups for r in g.responses]

    def r10_at_1() -> tuple[float, list[float]]:
        env = scorers.ScorerEnv(
            responses,
            pipeline.index_terms,
            pipeline.tokenize,
            stages.log_probs,
            weight,
            stacking_dir=stacking_dir_of(model_dir),
        )
        scored = selection.score_groups(groups, {name.value: env.get(name)}, progress=False)
        report = selection.selection_report(scored, [name.value])["scorers"][name.value]
        return report["r10@1"], [x for g in scored for x in g.scores[name.value]]

    dialogues = read_true_rows(ROOT / cfg.select_data)[: cfg.generate_dialogues]

    def generated() -> dict | None:
        # The engine's beam search with the default decoding settings, BLEU-4 and distinct-n.
        if not dialogues:
            return None
        samples = generation.generate_replies(dialogues, stages.generator, progress=False)
        report = generation.generation_report(samples, pipeline.tokenize)
        return {"dialogues": report["dialogues"], "bleu4": report["bleu4"], **report["generated"]}

    fp32, fp32_scores = r10_at_1()
    fp32_generation = generated()
    keras_model = stages.log_probs.model.model
    cells = [keras_model.encoder_rnn.cell, keras_model.decoder_rnn.cell]
    matrices = [v for cell in cells for v in (cell.kernel, cell.recurrent_kernel)]
    originals = assign_binarized(matrices)
    binary, binary_scores = r10_at_1()
    binary_generation = generated()
    ratio = size_ratio(originals)
    all_fp32 = sum(int(np.prod(v.shape)) * 4 for v in keras_model.trainable_variables)
    gru_fp32 = sum(o.size * 4 for o in originals)
    section = {"size_ratio": ratio, "r10@1": {"fp32": fp32, "binary": binary}}
    details = {
        "scorer": name.value,
        "groups": len(groups),
        "binarized": "encoder and decoder GRU kernels and recurrent kernels (biases fp32)",
        "gru_fp32_bytes": gru_fp32,
        "gru_binary_bytes": int(gru_fp32 / ratio),
        "model_fp32_bytes": all_fp32,
        "model_size_ratio": all_fp32 / (all_fp32 - gru_fp32 + gru_fp32 / ratio),
        "speed_proxy": "GRU weight bytes read per decoder step fall by size_ratio; "
        "no bit-packed kernel was timed",
        "fine_tuned": False,
        "generation": {"fp32": fp32_generation, "binary": binary_generation},
        "max_abs_score_change": float(np.max(np.abs(np.subtract(fp32_scores, binary_scores)))),
    }
    return section, details


def main(argv: list[str] | None = None) -> int:
    """Run every section; print the summary JSON with ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the summary JSON")
    parser.add_argument("--details", default=None, help="also write every measurement here")
    for field_name, default in asdict(BenchConfig()).items():
        parser.add_argument(
            f"--{field_name.replace('_', '-')}", type=type(default), default=default
        )
    args = parser.parse_args(argv)
    cfg = BenchConfig(**{k: getattr(args, k) for k in asdict(BenchConfig())})

    from pluto.strategy import StrategyConfig, make_strategy

    strategy = make_strategy(StrategyConfig(devices=cfg.replicas, use_gpus=False))
    start = time.perf_counter()
    details: dict = {"config": asdict(cfg)}

    big = alime_model(cfg, cfg.vocab, cfg.emb, cfg.hidden, cfg.attention)
    late, details["late_multiply"] = late_multiply_section(cfg, big, dense_rows(cfg))
    late["max_abs_grad_diff"] = late_multiply_measured(cfg, strategy)
    _log(f"late-multiply done ({time.perf_counter() - start:.0f}s)")
    hybrid, details["hybrid"] = hybrid_section(cfg, big)
    hybrid["max_abs_grad_diff"] = hybrid_measured(cfg)
    del big
    _log(f"hybrid done ({time.perf_counter() - start:.0f}s)")
    xla, details["xla"] = xla_section(cfg)
    _log(f"xla done ({time.perf_counter() - start:.0f}s)")
    recompute, details["recompute"] = recompute_section(cfg)
    _log(f"recompute done ({time.perf_counter() - start:.0f}s)")
    binarized, details["binarized"] = binarized_section(cfg)
    _log(f"binarized done ({time.perf_counter() - start:.0f}s)")

    summary = {
        "late_multiply": {
            "bytes_plain": late["bytes_plain"],
            "bytes_late": late["bytes_late"],
            "max_abs_grad_diff": late["max_abs_grad_diff"],
            "layers": late["layers"],
        },
        "hybrid": {
            "bytes_per_step_sync": hybrid["bytes_per_step_sync"],
            "bytes_per_step_hybrid": hybrid["bytes_per_step_hybrid"],
            "max_abs_grad_diff": hybrid["max_abs_grad_diff"],
            "projected_speedup_pcie3": hybrid["projected_speedup_pcie3"],
            "placement": hybrid["placement"],
        },
        "xla": xla,
        "recompute": recompute,
        "binarized": binarized,
    }
    details["wall_s"] = time.perf_counter() - start
    details["summary"] = summary
    if args.details:
        Path(args.details).write_text(json.dumps(details, indent=1))
    if args.json:
        print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
