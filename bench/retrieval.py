"""BM25 retrieval at scale: alime's BM25Index beside rank-bm25, on synthetic KBs.

Usage::

    .venv/bin/python bench/retrieval.py --json            # 100K and 1M QA pairs
    .venv/bin/python bench/retrieval.py --sizes 20000 --queries 200

Data. The real questions of ``data/kb/ecommerce_qa.tsv`` (the bundled copy of the corpus's question_answer.txt) (word-segmented
customer-service chat) are tokenized once with ``TextPipeline.index_terms``. With a fixed seed,
each synthetic KB question starts from one real question's terms, appends contiguous fragments
(2-4 terms) of other real questions until it has 5-10 terms, then replaces each term with
probability 0.1 by a term drawn from the real questions' term frequencies. Queries are 1,000 real
questions perturbed at the text level (drop one word, swap two neighbours, insert a corpus word,
each with probability 0.3) and turned into terms with ``TextPipeline.query_terms`` (stop words
removed, synonyms added); both engines get exactly the same term lists. KB ids are a shuffled
permutation, so the tie rule (equal scores: ascending id) is exercised.

Measurements, per size:
* alime, in a fresh subprocess (so rank-bm25's memory cannot pollute its peak RSS): index build
  time, bytes on disk after ``save``, single-threaded queries/s (median of 3 passes over all
  queries, top 10) by wall clock and by the thread's CPU time (the machine is shared, so wall
  clock includes time other processes held the core), latency percentiles, and peak RSS of the
  whole child (tokenizer, synthetic corpus, build and queries).
* rank-bm25 (``BM25Okapi.get_scores`` + the same ranking rule) in this process, on the first
  ``min(queries, 100M / size)`` queries because it is slow: build time and queries/s.
* ``top10_identical``: share of those queries whose top-10 id lists are identical.

All BLAS/OpenMP pools are limited to one thread before numpy is imported.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alime.config import AppConfig  # noqa: E402
from alime.retrieval.bm25 import BM25Index  # noqa: E402
from alime.text import TextPipeline  # noqa: E402

QA_FILE = Path(__file__).resolve().parent.parent / "data" / "kb" / "ecommerce_qa.tsv"
SEED = 20261127
TOP = 10
RANK_BM25_BUDGET = 100_000_000  # docs x queries rank-bm25 is given per size (it is slow)


# --------------------------------------------------------------------------- data


def real_questions() -> list[str]:
    """The question column of the E-commerce QA file."""
    lines = QA_FILE.read_text(encoding="utf-8").splitlines()
    return [line.split("\t", 1)[0] for line in lines if line.strip()]


def synthesize_kb(terms: list[list[str]], size: int, seed: int) -> list[list[str]]:
    """``size`` questions of 5-10 terms recombined and perturbed from real term lists."""
    rng = random.Random(seed)
    sources = [t for t in terms if t]
    pool = [w for t in sources for w in t]  # sampling from it follows term frequency
    kb = []
    for _ in tqdm(range(size), desc=f"synthesize {size}", file=sys.stderr, mininterval=2):
        want = rng.randint(5, 10)
        doc = list(rng.choice(sources))
        while len(doc) < want:
            other = rng.choice(sources)
            start = rng.randrange(len(other))
            doc.extend(other[start : start + rng.randint(2, 4)])
        kb.append([rng.choice(pool) if rng.random() < 0.1 else w for w in doc[:want]])
    return kb


def synthesize_queries(
    questions: list[str], pipeline: TextPipeline, n: int, seed: int
) -> list[list[str]]:
    """``n`` perturbed real questions, as query terms (never empty)."""
    rng = random.Random(seed + 1)
    words = [w for q in questions for w in q.split()]
    queries: list[list[str]] = []
    while len(queries) < n:
        tokens = rng.choice(questions).split()
        if len(tokens) > 1 and rng.random() < 0.3:
            del tokens[rng.randrange(len(tokens))]
        if len(tokens) > 1 and rng.random() < 0.3:
            i = rng.randrange(len(tokens) - 1)
            tokens[i], tokens[i + 1] = tokens[i + 1], tokens[i]
        if rng.random() < 0.3:
            tokens.insert(rng.randrange(len(tokens) + 1), rng.choice(words))
        terms = pipeline.query_terms(" ".join(tokens))
        if terms:
            queries.append(terms)
    return queries


def workload(size: int, n_queries: int) -> tuple[list[list[str]], list[int], list[list[str]]]:
    """(KB term lists, KB ids, query term lists): deterministic for a size."""
    pipeline = TextPipeline(AppConfig().text)
    questions = real_questions()
    terms = [pipeline.index_terms(q) for q in questions]
    kb = synthesize_kb(terms, size, SEED + size)
    ids = (np.random.default_rng(SEED).permutation(size) + 1).tolist()
    return kb, ids, synthesize_queries(questions, pipeline, n_queries, SEED)


# --------------------------------------------------------------------------- alime (child)


def run_alime(size: int, n_queries: int, rank_queries: int) -> dict:
    """Build, save and query alime's index; runs in its own process."""
    kb, ids, queries = workload(size, n_queries)
    start = time.perf_counter()
    index = BM25Index.build(kb, ids, AppConfig().retrieval.bm25)
    build_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        index.save(tmp)
        save_s = time.perf_counter() - start
        index_bytes = sum(p.stat().st_size for p in Path(tmp).iterdir())
        start = time.perf_counter()
        loaded = BM25Index.load(tmp, mmap=True)
        load_s = time.perf_counter() - start
        start = time.perf_counter()
        loaded.search(queries[0], TOP)  # compiles (or loads from numba's cache) the kernel
        first_search_s = time.perf_counter() - start
        top_loaded = [[h.id for h in loaded.search(q, TOP)] for q in queries[:rank_queries]]
        del loaded
    passes, cpu_passes, latencies = [], [], []
    for p in range(3):
        lat = np.empty(len(queries))
        cpu_start = time.thread_time()
        for i, q in enumerate(tqdm(queries, desc=f"alime {size} pass {p + 1}", file=sys.stderr,
                                   mininterval=2)):
            t0 = time.perf_counter()
            index.search(q, TOP)
            lat[i] = time.perf_counter() - t0
        cpu_passes.append(len(queries) / (time.thread_time() - cpu_start))
        passes.append(len(queries) / lat.sum())
        latencies.append(lat)
    lat = np.median(np.stack(latencies), axis=0)
    top = [[h.id for h in index.search(q, TOP)] for q in queries[:rank_queries]]
    postings = [int(sum(index.snapshot.df[index.snapshot.main.vocab[t]] for t in q
                        if t in index.snapshot.main.vocab)) for q in queries]
    return {
        "alime_qps": statistics.median(passes),
        "alime_qps_passes": passes,
        "alime_qps_cpu": statistics.median(cpu_passes),
        "alime_p50_ms": float(np.percentile(lat, 50) * 1e3),
        "alime_p99_ms": float(np.percentile(lat, 99) * 1e3),
        "build_s": build_s,
        "save_s": save_s,
        "load_mmap_s": load_s,
        "first_search_s": first_search_s,
        "index_bytes": index_bytes,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "vocabulary": len(index.snapshot.main.vocab),
        "postings": int(len(index.snapshot.main.postings_doc)),
        "mean_query_terms": float(np.mean([len(q) for q in queries])),
        "mean_postings_per_query": float(np.mean(postings)),
        "loaded_top10_same": top_loaded == top,
        "_top": top,
    }


def alime_in_subprocess(size: int, n_queries: int, rank_queries: int) -> dict:
    """Run :func:`run_alime` in a fresh interpreter and read its JSON."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, __file__, "--child", str(size), "--queries", str(n_queries),
               "--rank-queries", str(rank_queries), "--child-out", out.name]
        subprocess.run(cmd, check=True)
        return json.loads(Path(out.name).read_text())


# --------------------------------------------------------------------------- rank-bm25


def run_rank_bm25(size: int, n_queries: int, rank_queries: int) -> tuple[dict, list[list[int]]]:
    """rank-bm25 on the same workload: build time, queries/s, top-10 ids per query."""
    from rank_bm25 import BM25Okapi

    kb, ids, queries = workload(size, n_queries)
    config = AppConfig().retrieval.bm25
    start = time.perf_counter()
    ref = BM25Okapi(kb, k1=config.k1, b=config.b, epsilon=config.epsilon)
    build_s = time.perf_counter() - start
    del kb
    id_arr = np.asarray(ids, dtype=np.int64)
    tops, elapsed, cpu = [], 0.0, 0.0
    for q in tqdm(queries[:rank_queries], desc=f"rank-bm25 {size}", file=sys.stderr):
        start, cpu_start = time.perf_counter(), time.thread_time()
        scores = ref.get_scores(q)
        elapsed += time.perf_counter() - start
        cpu += time.thread_time() - cpu_start
        tops.append(reference_top(scores, id_arr))
    return {
        "rank_bm25_qps": rank_queries / elapsed if rank_queries else None,
        "rank_bm25_qps_cpu": rank_queries / cpu if rank_queries else None,
        "rank_bm25_queries": rank_queries,
        "rank_bm25_build_s": build_s,
    }, tops


def reference_top(scores: np.ndarray, ids: np.ndarray) -> list[int]:
    """Top-10 ids by the index's rule: positive scores only, ties by ascending id."""
    pos = np.flatnonzero(scores > 0)
    order = np.lexsort((ids[pos], -scores[pos]))[:TOP]
    return ids[pos[order]].tolist()


# --------------------------------------------------------------------------- report


def measure(size: int, n_queries: int) -> dict:
    """Both engines on one size, side by side."""
    rank_queries = min(n_queries, RANK_BM25_BUDGET // size)
    alime = alime_in_subprocess(size, n_queries, rank_queries)
    ref, ref_top = run_rank_bm25(size, n_queries, rank_queries)
    same = [a == r for a, r in zip(alime.pop("_top"), ref_top, strict=True)]
    row = {**alime, **ref, "queries": n_queries}
    row["top10_identical"] = sum(same) / len(same) if same else None
    row["speedup"] = row["alime_qps"] / row["rank_bm25_qps"] if row["rank_bm25_qps"] else None
    row["speedup_cpu"] = (row["alime_qps_cpu"] / row["rank_bm25_qps_cpu"]
                          if row["rank_bm25_qps_cpu"] else None)
    row["load_average_1min"] = os.getloadavg()[0]  # the machine is shared: context for the numbers
    return row


def table(result: dict) -> str:
    """Human-readable side-by-side table."""
    cols = [("alime q/s", "alime_qps", "{:.0f}"), ("rank-bm25 q/s", "rank_bm25_qps", "{:.2f}"),
            ("speed-up", "speedup", "{:.0f}x"), ("alime q/s (CPU time)", "alime_qps_cpu", "{:.0f}"),
            ("rank-bm25 q/s (CPU time)", "rank_bm25_qps_cpu", "{:.2f}"),
            ("top10 same", "top10_identical", "{:.3f}"),
            ("p50 ms", "alime_p50_ms", "{:.2f}"), ("p99 ms", "alime_p99_ms", "{:.2f}"),
            ("build s", "build_s", "{:.1f}"), ("rank-bm25 build s", "rank_bm25_build_s", "{:.1f}"),
            ("index MB", "index_bytes", "{:.1f}"), ("peak RSS MB", "peak_rss_bytes", "{:.0f}")]
    lines = ["| KB size | " + " | ".join(c for c, _, _ in cols) + " |",
             "| --- |" + " --- |" * len(cols)]
    for size, row in result["sizes"].items():
        cells = []
        for _, key, fmt in cols:
            value = row.get(key)
            if key.endswith("bytes") and value is not None:
                value /= 1e6
            cells.append("n/a" if value is None else fmt.format(value))
        lines.append(f"| {int(size):,} | " + " | ".join(cells) + " |")
    notes = [f"rank-bm25 ran {row['rank_bm25_queries']} of {row['queries']} queries at {size}"
             for size, row in result["sizes"].items()]
    return "\n".join(lines + [""] + notes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated KB sizes")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    parser.add_argument("--rank-queries", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        row = run_alime(args.child, args.queries, args.rank_queries)
        Path(args.child_out).write_text(json.dumps(row))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    result = {"sizes": {str(s): measure(s, args.queries) for s in sizes}}
    print(json.dumps(result, indent=2) if args.json else table(result))


if __name__ == "__main__":
    main()
