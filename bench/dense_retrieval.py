"""Dense and hybrid retrieval at scale: 100,000 and 1,000,000 synthetic questions.

Synthetic questions are built from the bundled KB questions with a fixed seed (a span of one
question spliced into another, then one noisy rewrite), embedded with the project's encoder and
indexed three ways: exact (flat), IVF and HNSW. Queries are noisy rewrites of bundled questions.

Reported per size and index: build time, index bytes and process RSS growth, single-query p50
latency and queries/s (one thread issuing queries, as a request does), recall@10 of the approximate
index against exact search on the same query vectors; and for the hybrid retriever (BM25 + dense,
the engine's fusion) p50 and queries/s.

    python bench/dense_retrieval.py --json --nprobe 64 128 256 --hnsw-max 0   # ~12 min, 2 cores
    python bench/dense_retrieval.py --sizes 100000 --json                      # + HNSW, ~4 min
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alime.config import AppConfig, DenseConfig  # noqa: E402
from alime.evaluation.noisy_queries import (  # noqa: E402
    build_noisy_queries,
    read_variants,
)
from alime.evaluation.retrieval import DEFAULT_VARIANTS  # noqa: E402
from alime.kb.formats import read_rows  # noqa: E402
from alime.retrieval.bm25 import BM25Index  # noqa: E402
from alime.retrieval.dense import DenseIndex, IndexKind  # noqa: E402
from alime.retrieval.fusion import FusionSettings, HybridSearcher  # noqa: E402
from alime.text import TextPipeline, is_punctuation  # noqa: E402

SEED = 7


def rss_bytes() -> int:
    """Resident set size of this process (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def synthesize(base: list[list[str]], n: int, seed: int) -> list[list[str]]:
    """``n`` token lists, each a span of one bundled question followed by a span of another
    (each span at least half its question), with one word dropped from every other result.

    Drawing every index up front keeps 1M questions to seconds; mixing two questions keeps the
    synthetic KB from being mostly near-copies of the 5,000 originals.
    """
    rng = np.random.default_rng(seed)
    lens = np.array([len(b) for b in base])
    a, b = rng.integers(len(base), size=n), rng.integers(len(base), size=n)

    def spans(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        size = np.ceil(lens[q] * rng.uniform(0.5, 1.0, n)).astype(int)
        start = (rng.random(n) * (lens[q] - size + 1)).astype(int)
        return start, start + size

    (a0, a1), (b0, b1) = spans(a), spans(b)
    drop = np.where(rng.random(n) < 0.5, rng.random(n), -1.0)
    out = []
    for i in range(n):
        tokens = base[a[i]][a0[i] : a1[i]] + base[b[i]][b0[i] : b1[i]]
        if drop[i] >= 0 and len(tokens) > 3:
            del tokens[int(drop[i] * len(tokens))]
        out.append(tokens)
    return out


def timed_queries(search, queries, k=10) -> dict:
    """p50/p95 latency (ms) and sequential queries/s of ``search(q, k)``."""
    for q in queries[:20]:  # warm-up: caches, lazy tracing, thread start
        search(q, k)
    lat = []
    for q in queries:
        t = time.perf_counter()
        search(q, k)
        lat.append((time.perf_counter() - t) * 1e3)
    lat.sort()
    return {
        "p50_ms": round(statistics.median(lat), 3),
        "p95_ms": round(lat[int(0.95 * (len(lat) - 1))], 3),
        "qps": round(1e3 / statistics.fmean(lat), 1),
    }


def overlap_at_10(approx: list, exact: list) -> float:
    """Share of the exact top-10 ids the approximate top-10 found."""
    return float(
        np.mean(
            [
                len({h.id for h in a} & {h.id for h in e}) / max(len(e), 1)
                for a, e in zip(approx, exact, strict=True)
            ]
        )
    )


def tie_aware_at_10(approx: list, exact: list, eps: float = 1e-5) -> float:
    """Share of approximate hits scoring at least the exact 10th score: a hit tied with the
    exact 10th (synthetic near-duplicates tie often) is as good as the one exact search kept."""
    return float(
        np.mean(
            [
                sum(h.score >= e[-1].score - eps for h in a) / max(len(e), 1)
                for a, e in zip(approx, exact, strict=True)
            ]
        )
    )


def bench_size(n, base, variants, embedder, pipeline, queries, args) -> dict:
    stop = pipeline._stopwords  # the bench indexes pre-segmented tokens, as the KB file is
    print(f"[{n}] synthesizing", file=sys.stderr, flush=True)
    t = time.perf_counter()
    docs = synthesize(base, n, SEED + n)
    ids = np.arange(1, n + 1, dtype=np.int64)
    synth_s = time.perf_counter() - t
    t = time.perf_counter()
    vocab, maxlen = embedder.warm_up().vocab, embedder.warm_up().config.max_source_len
    vectors = embedder.embed_ids([vocab.encode(d)[-maxlen:] for d in docs])
    embed_s = time.perf_counter() - t
    print(f"[{n}] embedded in {embed_s:.1f}s", file=sys.stderr, flush=True)
    t = time.perf_counter()
    bm25 = BM25Index.build(
        [[w for w in d if not is_punctuation(w) and w not in stop] for d in docs], ids
    )
    bm25_s = time.perf_counter() - t
    del docs
    qvec = embedder.embed(queries)
    result = {
        "n": n,
        "dim": int(vectors.shape[1]),
        "synthesize_s": round(synth_s, 1),
        "embed_s": round(embed_s, 1),
        "bm25_build_s": round(bm25_s, 1),
        "indexes": {},
    }

    def bm25_search(query: str, k: int):
        return bm25.search(pipeline.query_terms(query), k)

    result["bm25"] = timed_queries(bm25_search, queries)
    result["load_avg_1min"] = [round(os.getloadavg()[0], 2)]  # the machine is shared: context
    exact_hits = None
    for name, config, sweep in index_plan(n, args):
        if name == "hnsw" and n > args.hnsw_max:
            continue
        print(f"[{n}] building {name}", file=sys.stderr, flush=True)
        rss0 = rss_bytes()
        t = time.perf_counter()
        index = DenseIndex.build(vectors, ids, embedder.identity, config)
        build_s = time.perf_counter() - t
        import faiss

        entry = {
            "build_s": round(build_s, 1),
            "rss_growth_mb": round((rss_bytes() - rss0) / 2**20),
            "index_mb": round(len(faiss.serialize_index(index.snapshot.main)) / 2**20),
            "settings": [],
        }
        for knob, value in sweep:
            cfg = replace(config, **{knob: value}) if knob else config
            index = DenseIndex(replace_snapshot_config(index, cfg), embedder.identity)
            batch = index.search_many(qvec, 10)
            if name == "flat":
                exact_hits = batch
            row = {
                knob or "exact": value if knob else True,
                "recall@10_vs_exact": round(overlap_at_10(batch, exact_hits), 4),
                "recall@10_vs_exact_tie_aware": round(tie_aware_at_10(batch, exact_hits), 4),
            }
            row["dense_search_only"] = timed_queries(
                lambda q, k, _i=index: _i.search(q, k), list(qvec)
            )
            dense = _DenseRetriever(index, embedder)
            row["dense"] = timed_queries(dense.search, queries)
            hybrid = HybridSearcher(
                _BM25Retriever(bm25_search),
                dense,
                FusionSettings(mode=args.fusion, dense_weight=args.dense_weight, depth=args.depth),
            )
            row["hybrid"] = timed_queries(hybrid.search, queries)
            entry["settings"].append(row)
            print(f"[{n}] {name} {row}", file=sys.stderr, flush=True)
        result["indexes"][name] = entry
        result["load_avg_1min"].append(round(os.getloadavg()[0], 2))
        del index
    return result


def index_plan(n: int, args):
    """(name, config, [(search knob, value), ...]) for each index kind measured."""
    ivf = DenseConfig(kind=IndexKind.IVF.value)
    hnsw = DenseConfig(
        kind=IndexKind.HNSW.value, hnsw_m=args.hnsw_m, ef_construction=args.ef_construction
    )
    return [
        ("flat", DenseConfig(kind=IndexKind.FLAT.value), [(None, None)]),
        ("ivf", ivf, [("ivf_nprobe", p) for p in args.nprobe]),
        ("hnsw", hnsw, [("ef_search", e) for e in args.ef_search]),
    ]


def replace_snapshot_config(index: DenseIndex, config: DenseConfig):
    """The index's snapshot with other search-time settings (structure unchanged)."""
    from alime.retrieval.dense import make_snapshot

    s = index.snapshot
    return make_snapshot(config, s.kind, s.main, s.main_ids, center=s.center)


class _BM25Retriever:
    def __init__(self, fn) -> None:
        self.search = fn


class _DenseRetriever:
    def __init__(self, index: DenseIndex, embedder) -> None:
        self.index, self.embedder = index, embedder

    def search(self, query: str, k: int):
        return self.index.search(self.embedder.embed([query])[0], k)


def main(argv: list[str] | None = None) -> int:
    from alime.retrieval.embeddings import Seq2SeqEmbedder

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--model", default=str(ROOT / "data" / "model"))
    p.add_argument("--kb", default=str(ROOT / "data" / "kb" / "ecommerce_qa.tsv"))
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32, 64])
    p.add_argument("--ef-search", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--ef-construction", type=int, default=64)
    p.add_argument(
        "--hnsw-max",
        type=int,
        default=100_000,
        help="skip HNSW above this size (its build is the slow part)",
    )
    p.add_argument("--fusion", default="weighted")
    p.add_argument("--dense-weight", type=float, default=0.6)
    p.add_argument("--depth", type=int, default=50)
    p.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    args = p.parse_args(argv)

    pipeline = TextPipeline(AppConfig().text)
    base = [pipeline.tokenize(r.question) for r in read_rows(args.kb, "tsv").rows]
    base = [b for b in base if b]
    variants = read_variants(*DEFAULT_VARIANTS)
    embedder = Seq2SeqEmbedder(args.model, pipeline.tokenize)
    embedder.warm_up()
    pairs = list(enumerate(base, start=1))
    queries = [q.query for q in build_noisy_queries(pairs, variants, args.queries, SEED)]
    report = {
        "machine": {"cpus": os.cpu_count(), "omp_threads": os.environ.get("OMP_NUM_THREADS")},
        "model": {"identity": embedder.identity, "pooling": embedder.pooling.value},
        "fusion": {"mode": args.fusion, "dense_weight": args.dense_weight, "depth": args.depth},
        "queries": len(queries),
        "sizes": [],
    }
    started = time.perf_counter()
    for n in args.sizes:
        report["sizes"].append(bench_size(n, base, variants, embedder, pipeline, queries, args))
    report["total_s"] = round(time.perf_counter() - started, 1)
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text if args.json else text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
