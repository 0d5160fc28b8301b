"""The int8 routes compared before choosing one (docs/serving.md), on one model, side by side.

Usage::

    .venv/bin/python bench/quant_options.py --json

Each route scores the same 20 real KB questions x 10 real KB answers (``answer_log_probs``: one
encoder pass, all candidates in one batch); calls are interleaved route by route, 3 passes, and
the report gives the median ms per call and the largest |log-prob difference| from the fp32
TensorFlow graph (a route that returns wrong numbers fast is caught here, not timed blindly).

Routes:
* ``tf_fp32``: the TensorFlow graph (``InferenceModel``), the reference.
* ``keras_int8``: Keras 3 ``model.quantize("int8")`` (Dense and Embedding only; GRUs stay fp32)
  behind the same traced graph.
* ``numpy_fp32_head``: the int8 directory's numpy forward pass with a float vocabulary projection
  (int8 weights dequantized once at load).
* ``numpy_ort_int8_head``: the same with the ONNX Runtime int8 projection (the chosen route).
* ``tf_int8_matmul_ms``/``tf_fp32_matmul_ms``: TensorFlow's int8 x int8 -> int32 BatchMatMulV3
  beside its fp32 matmul for the projection's shape [150, 256] x [256, vocab].
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from serving import _rerank_inputs  # noqa: E402


def _keras_int8(fp32_dir: Path):
    from alime.seq2seq.model import InferenceModel
    from alime.seq2seq.model_dir import load_model_dir

    loaded = load_model_dir(fp32_dir)
    loaded.model.quantize("int8")
    return InferenceModel(loaded.model)


def _matmul_ms(vocab: int) -> dict[str, float]:
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a = tf.constant(rng.integers(-127, 128, (150, 256)), tf.int8)
    b = tf.constant(rng.integers(-127, 128, (256, vocab)), tf.int8)
    af, bf = tf.cast(a, tf.float32), tf.cast(b, tf.float32)
    runs = {
        "tf_int8_matmul_ms": lambda: tf.raw_ops.BatchMatMulV3(x=a, y=b, Tout=tf.int32),
        "tf_fp32_matmul_ms": lambda: tf.matmul(af, bf),
    }
    out = {}
    for name, fn in runs.items():
        fn()
        ts = []
        for _ in range(20):
            started = time.perf_counter()
            fn().numpy()
            ts.append((time.perf_counter() - started) * 1000)
        out[name] = round(float(np.median(ts)), 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp32", type=Path, default=ROOT / "data" / "model")
    parser.add_argument("--int8", type=Path, default=ROOT / "data" / "model-int8")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from alime.config import AppConfig
    from alime.rerank.scorers import MeanProbScorer
    from alime.seq2seq.model_dir import load_model_dir
    from alime.text import TextPipeline

    fp32 = load_model_dir(args.fp32)
    routes = {
        "tf_fp32": fp32.inference,
        "keras_int8": _keras_int8(args.fp32),
        "numpy_fp32_head": load_model_dir(args.int8, int8_backend="numpy").inference,
    }
    try:
        routes["numpy_ort_int8_head"] = load_model_dir(
            args.int8, int8_backend="onnxruntime"
        ).inference
    except ImportError:
        pass
    scorer = MeanProbScorer(fp32, TextPipeline(AppConfig().text))
    inputs = [(scorer._source(q, []), scorer._targets(a)) for q, a in _rerank_inputs(20, 10)]
    times: dict[str, list[float]] = {n: [] for n in routes}
    diffs: dict[str, float] = {n: 0.0 for n in routes}
    for route in routes.values():
        route.answer_log_probs(*inputs[0])
    for _ in range(3):
        for src, tgt in inputs:
            ref = None
            for name, route in routes.items():
                started = time.perf_counter()
                out = route.answer_log_probs(src, tgt)
                times[name].append((time.perf_counter() - started) * 1000)
                ref = out if ref is None else ref
                diffs[name] = max(
                    diffs[name],
                    max(float(np.abs(a - b).max()) for a, b in zip(ref, out, strict=True)),
                )
    result = {
        name: {
            "rerank_ms_p50": round(float(np.median(t)), 2),
            "max_abs_log_prob_diff": round(diffs[name], 4),
        }
        for name, t in times.items()
    }
    result.update(_matmul_ms(fp32.config.vocab_size))
    print(json.dumps(result, indent=2) if args.json else result)


if __name__ == "__main__":
    main()
