"""BM25 retrieval at scale: alime's BM25Index beside bm25s, tantivy and rank-bm25, same terms.

Usage::

    .venv/bin/python bench/retrieval.py --json                      # synthetic, 100K and 1M
    .venv/bin/python bench/retrieval.py --workload corpus --json    # dialogue turns, 100K and 1M
    .venv/bin/python bench/retrieval.py --sizes 20000 --queries 200

Peers need the ``bench`` extra (``pip install -e .[bench]``: bm25s and tantivy); a peer that is
not installed is reported as missing.

Workloads (both deterministic for a size):

* ``synthetic``: the real questions of ``data/kb/ecommerce_qa.tsv`` (word-segmented
  customer-service chat) are tokenized once with ``TextPipeline.index_terms``. Each synthetic KB
  question starts from one real question's terms, appends contiguous fragments (2-4 terms) of
  other real questions until it has 5-10 terms, then replaces each term with probability 0.1 by a
  term drawn from the real questions' term frequencies. Its vocabulary is the ~3,000 words of
  5,000 questions, so at 1M every term is common.
* ``corpus``: every turn of every line of the dialogue corpus ``data/ecommerce/dev.txt`` (64,820
  turns, 24,599 distinct, ~9,700 words, 1-100+ terms) is a document, in file order, through
  ``index_terms``. Scaled to ``size`` by the recipe: document ``i`` is turn ``i mod T``; every copy
  after the first (``i >= T``) replaces each term, with probability 0.05, by a variant
  ``term~v`` (``v`` uniform in 0..63), so the vocabulary grows with size as a real KB's does
  (product codes, names, numbers) while keeping the corpus's Zipf head: 84,034 terms at 1M.

Queries: 1,000 real questions (synthetic) or turns (corpus) perturbed at the text level (drop one
word, swap two neighbours, insert a corpus word, each with probability 0.3), through
``TextPipeline.query_terms`` (stop words removed, synonyms added); every engine gets exactly the
same term lists. KB ids are a shuffled permutation, so the tie rule (equal scores: ascending id)
is exercised.

Measurements, per size, in fresh subprocesses (one core: BLAS/OpenMP/numba/rayon pools are
limited to one thread; CPU time is the whole process's):

* alime alone: index build time, bytes on disk after ``save``, load, latency percentiles and
  peak RSS; its queries/s over 3 passes are kept as ``alime_qps_alone``/``alime_qps_cpu_alone``.
* Side by side, in one process: alime, ``peers.bm25s`` (numba backend, ``method="robertson"``,
  float32 scores precomputed per posting; ``qps``/``qps_cpu`` for the whole query list in one
  ``retrieve`` call, its fastest mode, and ``*_one_at_a_time`` for one call per query) and
  ``peers.tantivy`` (one ``BooleanQuery`` of ``Should`` term clauses per query over a
  single-segment index, whitespace tokenizer; ``searcher.search`` timed, doc addresses mapped to
  KB ids afterwards) each run the whole query list once per round, in turn, for 5 rounds;
  ``alime_qps``/``alime_qps_cpu`` and the peers' figures are medians over the rounds. Interleaving
  makes the ratio robust to the load drifting on a shared machine.
* rank-bm25 (``BM25Okapi.get_scores`` + the same ranking rule) in this process, on the first
  ``min(queries, 100M / size)`` queries because it is slow. It is the reference:
  ``top10_identical`` is the share of those queries whose alime top-10 id list is identical;
  ``top10_agreement`` (alime and each peer) is the tie-aware share: a returned document counts
  when its exact rank-bm25 score reaches the reference's 10th best.
* ``load_average_during`` (1-minute load average before and after each child) and
  ``load_average_1min`` record how shared the machine was.

``alime_vs_best_peer_cpu`` divides alime's CPU-time q/s by the best peer's in the same run, in
that peer's fastest mode (``best_peer``, ``best_peer_mode``: ``qps_cpu`` or
``qps_cpu_one_at_a_time``).
"""

from __future__ import annotations

import os

for _var in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "RAYON_NUM_THREADS",
):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import importlib.util  # noqa: E402
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
DIALOGUE_FILE = Path(os.environ.get("ALIME_BENCH_DIALOGUES", "/work/shared/data/ecommerce/dev.txt"))
WORKLOADS = ("synthetic", "corpus")
VARIANT_P = 0.05  # corpus workload: share of terms of a copied turn replaced by a rare variant
VARIANTS = 64
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


def dialogue_turns() -> list[str]:
    """Every turn of every line of the dialogue corpus, in file order (duplicates kept)."""
    lines = DIALOGUE_FILE.read_text(encoding="utf-8").splitlines()
    return [t for line in lines for t in line.split("\t")[1:] if t.strip()]


def scale_corpus(terms: list[list[str]], size: int, seed: int) -> list[list[str]]:
    """Document ``i`` is turn ``i mod T``; later copies swap terms for rare variants."""
    rng = random.Random(seed)
    sources = [t for t in terms if t]
    kb = []
    for i in tqdm(range(size), desc=f"scale corpus {size}", file=sys.stderr, mininterval=2):
        doc = sources[i % len(sources)]
        if i >= len(sources):
            doc = [f"{w}~{rng.randrange(VARIANTS)}" if rng.random() < VARIANT_P else w for w in doc]
        kb.append(doc)
    return kb


def workload(
    size: int, n_queries: int, kind: str = "synthetic"
) -> tuple[list[list[str]], list[int], list[list[str]]]:
    """(KB term lists, KB ids, query term lists): deterministic for a size and workload."""
    pipeline = TextPipeline(AppConfig().text)
    texts = real_questions() if kind == "synthetic" else dialogue_turns()
    terms = [pipeline.index_terms(q) for q in texts]
    if kind == "synthetic":
        kb = synthesize_kb(terms, size, SEED + size)
    else:
        kb = scale_corpus(terms, size, SEED + size)
    ids = (np.random.default_rng(SEED).permutation(size) + 1).tolist()
    return kb, ids, synthesize_queries(texts, pipeline, n_queries, SEED)


# --------------------------------------------------------------------------- alime (child)


def run_alime(size: int, n_queries: int, rank_queries: int, kind: str) -> dict:
    """Build, save and query alime's index; runs in its own process."""
    kb, ids, queries = workload(size, n_queries, kind)
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
        cpu_start = time.process_time()
        for i, q in enumerate(
            tqdm(queries, desc=f"alime {size} pass {p + 1}", file=sys.stderr, mininterval=2)
        ):
            t0 = time.perf_counter()
            index.search(q, TOP)
            lat[i] = time.perf_counter() - t0
        cpu_passes.append(len(queries) / (time.process_time() - cpu_start))
        passes.append(len(queries) / lat.sum())
        latencies.append(lat)
    lat = np.median(np.stack(latencies), axis=0)
    top = [[h.id for h in index.search(q, TOP)] for q in queries[:rank_queries]]
    postings = [
        int(
            sum(
                index.snapshot.df[index.snapshot.main.vocab[t]]
                for t in q
                if t in index.snapshot.main.vocab
            )
        )
        for q in queries
    ]
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


def setup_bm25s(kb: list[list[str]], ids: list[int], queries: list[list[str]]) -> dict:
    """Index ``kb`` with bm25s (numba backend); timed runners and a top-10 function."""
    import bm25s

    config = AppConfig().retrieval.bm25
    vocab: dict[str, int] = {}
    corpus = [[vocab.setdefault(t, len(vocab)) for t in doc] for doc in kb]
    start = time.perf_counter()
    model = bm25s.BM25(k1=config.k1, b=config.b, method="robertson", backend="numba")
    model.index((corpus, vocab), show_progress=False)
    build_s = time.perf_counter() - start
    del corpus
    # Terms the corpus lacks add nothing to any engine's scores; bm25s wants known ids only.
    qids = [[vocab[t] for t in q if t in vocab] for q in queries]
    asked = [q for q in qids if q]

    def one(q: list[int]) -> list[int]:
        if not q:
            return []
        docs, scores = model.retrieve([q], k=TOP, n_threads=1, show_progress=False)
        return [ids[d] for d, s in zip(docs[0], scores[0], strict=True) if s > 0]

    model.retrieve(asked[:2], k=TOP, n_threads=1, show_progress=False)  # compiles the kernels
    return {
        "info": {
            "version": bm25s.__version__,
            "build_s": build_s,
            "mode": "numba backend, method=robertson, all queries in one retrieve call",
        },
        "runs": {
            "qps": (
                lambda: model.retrieve(asked, k=TOP, n_threads=1, show_progress=False),
                len(asked),
            ),
            "qps_one_at_a_time": (lambda: [one(q) for q in qids], len(qids)),
        },
        "top": lambda n: [one(q) for q in qids[:n]],
    }


def setup_tantivy(kb: list[list[str]], ids: list[int], queries: list[list[str]]) -> dict:
    """Index ``kb`` with tantivy (whitespace tokenizer, one segment); runners and top-10."""
    import importlib.metadata

    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_text_field("body", stored=False, tokenizer_name="whitespace", index_option="freq")
    builder.add_integer_field("pos", stored=True, indexed=False)
    schema = builder.build()
    index = tantivy.Index(schema)
    start = time.perf_counter()
    writer = index.writer(heap_size=1_000_000_000, num_threads=1)
    for pos, doc in enumerate(kb):
        writer.add_document(tantivy.Document(body=" ".join(doc), pos=pos))
    writer.commit()
    writer.wait_merging_threads()
    index.reload()
    build_s = time.perf_counter() - start
    searcher = index.searcher()
    term_query = tantivy.Query.term_query
    should = tantivy.Occur.Should
    built = [
        tantivy.Query.boolean_query([(should, term_query(schema, "body", t)) for t in q])
        for q in queries
    ]
    searcher.search(built[0], TOP)

    def top(n: int) -> list[list[int]]:
        out = []
        for q in built[:n]:
            hits = searcher.search(q, TOP).hits
            out.append([ids[searcher.doc(addr)["pos"][0]] for score, addr in hits if score > 0])
        return out

    return {
        "info": {
            "version": importlib.metadata.version("tantivy"),
            "build_s": build_s,
            "segments": searcher.num_segments,
            "mode": "BooleanQuery of Should TermQuery clauses, one segment, searcher.search timed",
        },
        "runs": {"qps": (lambda: [searcher.search(q, TOP) for q in built], len(built))},
        "top": top,
    }


PEERS = {"bm25s": setup_bm25s, "tantivy": setup_tantivy}
ROUNDS = 5


def run_side_by_side(size: int, n_queries: int, rank_queries: int, kind: str) -> dict:
    """alime and every installed peer in one process, timed in interleaved rounds.

    Each round runs every engine's full query list once, in turn, so drifts in the machine's load
    hit all engines alike; figures are medians over ``ROUNDS`` rounds. Runs in its own process.
    """
    kb, ids, queries = workload(size, n_queries, kind)
    index = BM25Index.build(kb, ids, AppConfig().retrieval.bm25)
    index.search(queries[0], TOP)
    engines = {
        "alime": {"runs": {"qps": (lambda: [index.search(q, TOP) for q in queries], len(queries))}}
    }
    for name, setup in PEERS.items():
        if importlib.util.find_spec(name) is not None:
            engines[name] = setup(kb, ids, queries)
    del kb
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in tqdm(range(ROUNDS), desc=f"side by side {size}", file=sys.stderr):
        for name, engine in engines.items():
            for mode, (run_all, n) in engine["runs"].items():
                start, cpu_start = time.perf_counter(), time.process_time()
                run_all()
                samples.setdefault((name, mode), []).append(
                    (n / (time.perf_counter() - start), n / (time.process_time() - cpu_start))
                )
    out: dict = {"rounds": ROUNDS, "peers": {}}
    for (name, mode), values in samples.items():
        wall = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        if name == "alime":
            out["alime_qps"], out["alime_qps_cpu"] = wall, cpu
            continue
        peer = out["peers"].setdefault(name, dict(engines[name]["info"]))
        suffix = mode[len("qps") :]
        peer["qps" + suffix], peer["qps_cpu" + suffix] = wall, cpu
    for name in out["peers"]:
        out["peers"][name]["_top"] = engines[name]["top"](rank_queries)
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


ENGINES = {"alime": run_alime, "side_by_side": run_side_by_side}


def in_subprocess(engine: str, size: int, n_queries: int, rank_queries: int, kind: str) -> dict:
    """Run one child (``alime`` alone, or ``side_by_side``) in a fresh interpreter; its JSON."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            str(size),
            "--engine",
            engine,
            "--workload",
            kind,
            "--queries",
            str(n_queries),
            "--rank-queries",
            str(rank_queries),
            "--child-out",
            out.name,
        ]
        load_before = os.getloadavg()[0]
        subprocess.run(cmd, check=True)
        row = json.loads(Path(out.name).read_text())
        row["load_average_during"] = [load_before, os.getloadavg()[0]]
        return row


# --------------------------------------------------------------------------- rank-bm25


def run_rank_bm25(
    size: int, n_queries: int, rank_queries: int, kind: str, engine_tops: dict[str, list]
) -> tuple[dict, list[list[int]], dict[str, float]]:
    """rank-bm25 on the same workload: build time, queries/s, top-10 ids per query, and the
    tie-aware top-10 agreement of each engine's lists in ``engine_tops``."""
    from rank_bm25 import BM25Okapi

    kb, ids, queries = workload(size, n_queries, kind)
    config = AppConfig().retrieval.bm25
    start = time.perf_counter()
    ref = BM25Okapi(kb, k1=config.k1, b=config.b, epsilon=config.epsilon)
    build_s = time.perf_counter() - start
    del kb
    id_arr = np.asarray(ids, dtype=np.int64)
    position = np.empty(size + 1, dtype=np.int64)
    position[id_arr] = np.arange(size)
    tops, elapsed, cpu = [], 0.0, 0.0
    agree: dict[str, list[float]] = {name: [] for name in engine_tops}
    for i, q in enumerate(tqdm(queries[:rank_queries], desc=f"rank-bm25 {size}", file=sys.stderr)):
        start, cpu_start = time.perf_counter(), time.process_time()
        scores = ref.get_scores(q)
        elapsed += time.perf_counter() - start
        cpu += time.process_time() - cpu_start
        tops.append(reference_top(scores, id_arr))
        for name, engine_top in engine_tops.items():
            agree[name].append(tie_aware_agreement(engine_top[i], tops[-1], scores, position))
    return (
        {
            "rank_bm25_qps": rank_queries / elapsed if rank_queries else None,
            "rank_bm25_qps_cpu": rank_queries / cpu if rank_queries else None,
            "rank_bm25_queries": rank_queries,
            "rank_bm25_build_s": build_s,
        },
        tops,
        {name: float(np.mean(a)) if a else None for name, a in agree.items()},
    )


def reference_top(scores: np.ndarray, ids: np.ndarray) -> list[int]:
    """Top-10 ids by the index's rule: positive scores only, ties by ascending id."""
    pos = np.flatnonzero(scores > 0)
    order = np.lexsort((ids[pos], -scores[pos]))[:TOP]
    return ids[pos[order]].tolist()


def tie_aware_agreement(
    got: list[int], reference: list[int], scores: np.ndarray, position: np.ndarray
) -> float:
    """Share of the reference's top-10 slots filled by documents whose exact score reaches the
    reference's 10th (so a different choice among documents tied at the cut still counts)."""
    if not reference:
        return 1.0 if not got else 0.0
    cut = scores[position[reference[-1]]]
    good = sum(1 for doc in got[:TOP] if scores[position[doc]] >= cut)
    return good / len(reference)


# --------------------------------------------------------------------------- report


def measure(size: int, n_queries: int, kind: str = "synthetic") -> dict:
    """Every engine on one size, side by side."""
    rank_queries = min(n_queries, RANK_BM25_BUDGET // size)
    alime = in_subprocess("alime", size, n_queries, rank_queries, kind)
    side = in_subprocess("side_by_side", size, n_queries, rank_queries, kind)
    peers = side["peers"]
    for name in PEERS:
        if name not in peers:
            peers[name] = {"missing": f"{name} is not installed (pip install -e .[bench])"}
    # The isolated child's passes stay under *_alone; the same-run figures are the comparison.
    alime["alime_qps_alone"] = alime.pop("alime_qps")
    alime["alime_qps_cpu_alone"] = alime.pop("alime_qps_cpu")
    alime["alime_qps"], alime["alime_qps_cpu"] = side["alime_qps"], side["alime_qps_cpu"]
    alime["side_by_side_rounds"] = side["rounds"]
    alime["side_by_side_peak_rss_bytes"] = side["peak_rss_bytes"]
    alime["side_by_side_load_average_during"] = side["load_average_during"]
    engine_tops = {"alime": alime.pop("_top")}
    engine_tops.update({name: row.pop("_top") for name, row in peers.items() if "_top" in row})
    ref, ref_top, agreement = run_rank_bm25(size, n_queries, rank_queries, kind, engine_tops)
    same = [a == r for a, r in zip(engine_tops["alime"], ref_top, strict=True)]
    row = {**alime, **ref, "queries": n_queries}
    row["top10_identical"] = sum(same) / len(same) if same else None
    row["top10_agreement"] = agreement["alime"]
    for name, peer in peers.items():
        if name in agreement:
            peer["top10_agreement"] = agreement[name]
    row["peers"] = peers
    row["speedup"] = row["alime_qps"] / row["rank_bm25_qps"] if row["rank_bm25_qps"] else None
    row["speedup_cpu"] = (
        row["alime_qps_cpu"] / row["rank_bm25_qps_cpu"] if row["rank_bm25_qps_cpu"] else None
    )
    # The best peer in its best mode (bm25s batched or one query at a time, whichever was faster).
    best = max(
        (
            (value, name, key)
            for name, p in peers.items()
            for key, value in p.items()
            if key.startswith("qps_cpu")
        ),
        default=None,
    )
    row["best_peer"] = best[1] if best else None
    row["best_peer_mode"] = best[2] if best else None
    row["alime_vs_best_peer_cpu"] = row["alime_qps_cpu"] / best[0] if best else None
    row["load_average_1min"] = os.getloadavg()[0]  # the machine is shared: context for the numbers
    return row


def table(result: dict) -> str:
    """Human-readable side-by-side table."""
    cols = [
        ("alime q/s", "alime_qps", "{:.0f}"),
        ("alime q/s (CPU time)", "alime_qps_cpu", "{:.0f}"),
        ("bm25s q/s (CPU)", "peers.bm25s.qps_cpu", "{:.0f}"),
        ("tantivy q/s (CPU)", "peers.tantivy.qps_cpu", "{:.0f}"),
        ("vs best peer (CPU)", "alime_vs_best_peer_cpu", "{:.2f}x"),
        ("agreement alime/bm25s/tantivy", "agreement", "{}"),
        ("rank-bm25 q/s", "rank_bm25_qps", "{:.2f}"),
        ("speed-up", "speedup", "{:.0f}x"),
        ("rank-bm25 q/s (CPU time)", "rank_bm25_qps_cpu", "{:.2f}"),
        ("top10 same", "top10_identical", "{:.3f}"),
        ("p50 ms", "alime_p50_ms", "{:.2f}"),
        ("p99 ms", "alime_p99_ms", "{:.2f}"),
        ("build s", "build_s", "{:.1f}"),
        ("rank-bm25 build s", "rank_bm25_build_s", "{:.1f}"),
        ("index MB", "index_bytes", "{:.1f}"),
        ("peak RSS MB", "peak_rss_bytes", "{:.0f}"),
    ]
    lines = [
        "| KB size | " + " | ".join(c for c, _, _ in cols) + " |",
        "| --- |" + " --- |" * len(cols),
    ]
    for size, row in result["sizes"].items():
        cells = []
        for _, key, fmt in cols:
            value = row
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if key == "agreement":
                peers = row["peers"]
                value = "/".join(
                    "n/a" if a is None else f"{a:.3f}"
                    for a in (
                        row.get("top10_agreement"),
                        *(peers.get(p, {}).get("top10_agreement") for p in ("bm25s", "tantivy")),
                    )
                )
            if key.endswith("bytes") and value is not None:
                value /= 1e6
            cells.append("n/a" if value is None else fmt.format(value))
        lines.append(f"| {int(size):,} | " + " | ".join(cells) + " |")
    notes = [
        f"rank-bm25 ran {row['rank_bm25_queries']} of {row['queries']} queries at {size}"
        for size, row in result["sizes"].items()
    ]
    notes.append(f"workload: {result['workload']}")
    return "\n".join(lines + [""] + notes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated KB sizes")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument(
        "--workload",
        choices=WORKLOADS,
        default="synthetic",
        help="synthetic QA pairs (3K-word vocabulary) or dialogue-corpus turns",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    parser.add_argument("--engine", choices=list(ENGINES), default="alime", help=argparse.SUPPRESS)
    parser.add_argument("--rank-queries", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        row = ENGINES[args.engine](args.child, args.queries, args.rank_queries, args.workload)
        Path(args.child_out).write_text(json.dumps(row))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    result = {
        "workload": args.workload,
        "sizes": {str(s): measure(s, args.queries, args.workload) for s in sizes},
    }
    print(json.dumps(result, indent=2) if args.json else table(result))


if __name__ == "__main__":
    main()
