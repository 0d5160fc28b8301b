"""Serving benchmark: fp32 beside int8 in one run, then the chat endpoint under load.

Usage::

    .venv/bin/python bench/serving.py --json
    .venv/bin/python bench/serving.py --fp32 data/model --int8 data/model-int8 \
        --seconds 20

Measurements:
* ``rerank_ms``: ``answer_log_probs`` for one real KB question and 10 real KB answers (one encoder
  pass, all candidates in one batch), fp32 (the TensorFlow graph) and int8 calls interleaved on
  the same inputs, so machine noise hits both alike; p50/p99 over all calls.
* ``generate_ms``: the served decoding (``make_generator`` with ``[engine]``'s settings: beam 5,
  max 30 tokens, min length, MMI anti-LM, re-scoring included), same interleaving;
  ``generate_plain_beam_ms``: plain beam search (beam 5, max 30), as measured before the anti-LM.
* ``size_bytes``: the weight files each directory loads (fp32: ``model.weights.h5``; int8: the
  ``int8/*.npy`` tensors); ``dir_bytes``: every file of each directory.
* ``http``: ``alime serve`` (gunicorn, the default ServeConfig, the int8 model) started by this
  script on a free loopback port with a fresh $ALIME_HOME, loaded by ``bench/http_load.py`` with
  1, 8 and 32 closed-loop clients.
* ``agreement``: max |log-prob difference| int8 vs fp32 over the rerank inputs.

OpenBLAS is limited to one thread before numpy is imported, as ``alime`` does.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from http_load import load_queries, run_load  # noqa: E402

from alime.config import ServeConfig  # noqa: E402

KB_FILE = ROOT / "data" / "kb" / "ecommerce_qa.tsv"


def _dir_bytes(path: Path, pattern: str = "*") -> int:
    return sum(f.stat().st_size for f in path.rglob(pattern) if f.is_file())


def _percentiles(ms: list[float]) -> dict[str, float]:
    return {"p50": round(float(np.percentile(ms, 50)), 2),
            "p99": round(float(np.percentile(ms, 99)), 2)}


def _rerank_inputs(n: int, k: int, seed: int = 3) -> list[tuple[str, list[str]]]:
    rows = [line.split("\t") for line in KB_FILE.read_text(encoding="utf-8").splitlines()]
    rows = [r for r in rows if len(r) >= 2]
    rng = random.Random(seed)
    return [(rng.choice(rows)[0].replace(" ", ""), [rng.choice(rows)[1] for _ in range(k)])
            for _ in range(n)]


def bench_models(fp32_dir: Path, int8_dir: Path, queries: int, repeats: int) -> dict:
    """Rerank and generation latency, fp32 and int8 interleaved."""
    from alime.config import AppConfig
    from alime.rerank.loading import make_generator
    from alime.rerank.scorers import MeanProbScorer
    from alime.seq2seq.generator import BeamGenerator
    from alime.seq2seq.model_dir import load_model_dir
    from alime.text import TextPipeline

    pipeline = TextPipeline(AppConfig().text)
    models = {"fp32": load_model_dir(fp32_dir), "int8": load_model_dir(int8_dir)}
    scorers = {name: MeanProbScorer(m, pipeline) for name, m in models.items()}
    inputs = _rerank_inputs(queries, 10)
    # Token ids once, so the timings cover the model only.
    s = scorers["fp32"]
    encoded = [(s._source(q, []), s._targets(answers)) for q, answers in inputs]
    rerank: dict[str, list[float]] = {"fp32": [], "int8": []}
    worst = 0.0
    for name, m in models.items():  # trace / warm up
        m.inference.answer_log_probs(*encoded[0])
    for _ in range(repeats):
        for src, targets in encoded:
            out = {}
            for name, m in models.items():
                started = time.perf_counter()
                out[name] = m.inference.answer_log_probs(src, targets)
                rerank[name].append((time.perf_counter() - started) * 1000)
            worst = max(worst, max(float(np.max(np.abs(a - b)))
                                   for a, b in zip(out["fp32"], out["int8"], strict=True)))
    # The served decoding ([engine]: beam 5, max 30 tokens, min length, MMI anti-LM), and plain
    # beam search for comparison with earlier runs.
    config = AppConfig()
    generators = {name: make_generator(m, config, pipeline) for name, m in models.items()}
    plain = {name: BeamGenerator(m, pipeline, beam_size=5, max_len=30)
             for name, m in models.items()}
    generate: dict[str, list[float]] = {"fp32": [], "int8": []}
    generate_plain: dict[str, list[float]] = {"fp32": [], "int8": []}
    for gens, times in ((generators, generate), (plain, generate_plain)):
        for g in gens.values():
            g.generate(inputs[0][0], [])
        for q, _ in inputs[: max(1, queries // 2)]:
            for name, g in gens.items():
                started = time.perf_counter()
                g.generate(q, [])
                times[name].append((time.perf_counter() - started) * 1000)
    return {
        "rerank_ms": {n: _percentiles(v) for n, v in rerank.items()},
        "rerank_speedup_p50": round(
            float(np.median(rerank["fp32"]) / np.median(rerank["int8"])), 2),
        "generate_ms": {n: _percentiles(v) for n, v in generate.items()},
        "generate_plain_beam_ms": {n: _percentiles(v) for n, v in generate_plain.items()},
        "generate_speedup_p50": round(
            float(np.median(generate["fp32"]) / np.median(generate["int8"])), 2),
        "agreement": {"max_abs_log_prob_diff": round(worst, 4)},
        "calls": {"rerank": len(rerank["fp32"]), "generate": len(generate["fp32"])},
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, workers: int, timeout: float = 180.0) -> None:
    """Until every worker has answered /readyz (each builds its bot in the background, 503 until then)."""
    deadline = time.time() + timeout
    pids = set()
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"alime serve exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=5) as res:
                pids.add(json.loads(res.read())["worker_pid"])
                if len(pids) >= workers:
                    return
        except OSError:  # refused, or 503 "starting" (HTTPError)
            time.sleep(0.5)
    raise RuntimeError("alime serve did not become ready in time")


def bench_http(int8_dir: Path, seconds: float, clients: tuple[int, ...],
               serve_overrides: dict[str, int] | None = None) -> dict:
    """Start ``alime serve`` on the int8 model and load it with each client count.

    Args:
        serve_overrides: ``[serve]`` settings (workers, threads) instead of the defaults.
    """
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as home:
        config = Path(home, "bench.toml")
        serve = "".join(f"{k} = {v}\n" for k, v in (serve_overrides or {}).items())
        config.write_text(f'[paths]\nmodel = "{int8_dir.resolve()}"\n\n[serve]\nport = {port}\n'
                          + serve, encoding="utf-8")
        env = {**os.environ, "ALIME_HOME": home, "PYTHONPATH": str(ROOT)}
        log = open(Path(home, "serve.log"), "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen([sys.executable, "-m", "alime", "--config", str(config), "serve"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_ready(url, proc, (serve_overrides or {}).get("workers", ServeConfig().workers))
            queries = load_queries()
            run_load(url, 2, min(5.0, seconds), queries)  # warm every worker thread
            return {str(n): run_load(url, n, seconds, queries) for n in clients}
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp32", type=Path, default=ROOT / "data" / "model")
    parser.add_argument("--int8", type=Path, default=ROOT / "data" / "model-int8")
    parser.add_argument("--queries", type=int, default=40, help="rerank inputs (10 answers each)")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the rerank inputs")
    parser.add_argument("--seconds", type=float, default=20.0, help="HTTP load per client count")
    parser.add_argument("--no-http", action="store_true", help="skip the endpoint load test")
    parser.add_argument("--http-only", action="store_true", help="only the endpoint load test")
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: ServeConfig's)")
    parser.add_argument("--threads", type=int, help="threads per worker (default: ServeConfig's)")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    args = parser.parse_args()

    overrides = {k: v for k, v in (("workers", args.workers), ("threads", args.threads)) if v}
    if args.http_only:
        print(json.dumps(bench_http(args.int8, args.seconds, (1, 8, 32), overrides), indent=2))
        return
    result = bench_models(args.fp32, args.int8, args.queries, args.repeats)
    fp32_bytes = (args.fp32 / "model.weights.h5").stat().st_size
    int8_bytes = _dir_bytes(args.int8 / "int8")
    result["size_bytes"] = {"fp32": fp32_bytes, "int8": int8_bytes}
    result["size_ratio"] = round(fp32_bytes / int8_bytes, 2)
    result["dir_bytes"] = {"fp32": _dir_bytes(args.fp32), "int8": _dir_bytes(args.int8)}
    if not args.no_http:
        result["http"] = bench_http(args.int8, args.seconds, (1, 8, 32), overrides)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key}: {json.dumps(value)}")


if __name__ == "__main__":
    main()
