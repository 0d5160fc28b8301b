"""Serving benchmark: fp32 beside int8 in one run, then the chat endpoint under load.

Usage::

    .venv/bin/python bench/serving.py --json
    .venv/bin/python bench/serving.py --fp32 data/model --int8 data/model-int8 \
        --seconds 20
    git worktree add /tmp/base 64ea9b8
    .venv/bin/python bench/serving.py --http-only --baseline-checkout /tmp/base --seconds 10

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
  1, 8 and 32 closed-loop clients (one thread, raw keep-alive sockets, prebuilt requests):
  ``http.{N}.rps``, ``p50_ms``, ``p99_ms``, ``errors``, ``cpu_ms_per_request`` (the server's CPU
  time, master and workers, per answered request), ``client_cpu_ms_per_request`` (the load
  generator's own, on the same cores) and ``loadavg`` (after the run). ``--rounds R`` repeats
  the client counts, alternating which server goes first; figures are then medians.
* ``ready_s``: seconds from the port accepting connections to every worker ready, the KB seeded
  and both indexes built beforehand (``alime search --mode hybrid``); ``start_to_ready_s``: from
  starting the process (the master's own preparation included); ``rss_mb_per_worker``: the
  largest worker's resident set after the load; ``loadavg``: the 1/5/15-minute load averages
  before and after the load.
* ``--baseline-checkout DIR``: the same for another checkout's ``alime serve`` (its own int8
  model directory, which carries its decision; same venv, same client), both servers up at
  once and each client count run against one then the other:
  ``baseline.{http,ready_s,rss_mb_per_worker,commit}`` and ``rps_ratio.{N}``.
  ``sources``: how each server answers the first 100 load queries (replies by source), since
  two versions may route the same queries differently (64ea9b8 seeds the 5,000 raw pairs the
  queries come from, today's bundled KB is the curated 895 entries); ``--kb FILE`` serves the
  same TSV KB on both (``kb``).
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
    return {
        "p50": round(float(np.percentile(ms, 50)), 2),
        "p99": round(float(np.percentile(ms, 99)), 2),
    }


def _rerank_inputs(n: int, k: int, seed: int = 3) -> list[tuple[str, list[str]]]:
    rows = [line.split("\t") for line in KB_FILE.read_text(encoding="utf-8").splitlines()]
    rows = [r for r in rows if len(r) >= 2]
    rng = random.Random(seed)
    return [
        (rng.choice(rows)[0].replace(" ", ""), [rng.choice(rows)[1] for _ in range(k)])
        for _ in range(n)
    ]


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
    for _name, m in models.items():  # trace / warm up
        m.inference.answer_log_probs(*encoded[0])
    for _ in range(repeats):
        for src, targets in encoded:
            out = {}
            for name, m in models.items():
                started = time.perf_counter()
                out[name] = m.inference.answer_log_probs(src, targets)
                rerank[name].append((time.perf_counter() - started) * 1000)
            worst = max(
                worst,
                max(
                    float(np.max(np.abs(a - b)))
                    for a, b in zip(out["fp32"], out["int8"], strict=True)
                ),
            )
    # The served decoding ([engine]: beam 5, max 30 tokens, min length, MMI anti-LM), and plain
    # beam search for comparison with earlier runs.
    config = AppConfig()
    generators = {name: make_generator(m, config, pipeline) for name, m in models.items()}
    plain = {
        name: BeamGenerator(m, pipeline, beam_size=5, max_len=30) for name, m in models.items()
    }
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
            float(np.median(rerank["fp32"]) / np.median(rerank["int8"])), 2
        ),
        "generate_ms": {n: _percentiles(v) for n, v in generate.items()},
        "generate_plain_beam_ms": {n: _percentiles(v) for n, v in generate_plain.items()},
        "generate_speedup_p50": round(
            float(np.median(generate["fp32"]) / np.median(generate["int8"])), 2
        ),
        "agreement": {"max_abs_log_prob_diff": round(worst, 4)},
        "calls": {"rerank": len(rerank["fp32"]), "generate": len(generate["fp32"])},
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _children(pid: int) -> list[int]:
    """The direct child processes of ``pid`` (gunicorn's workers of the master ``pid``)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return sorted(out)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


class Server:
    """``alime serve`` of one checkout (this one or ``--baseline-checkout``) on a free loopback
    port with its own fresh $ALIME_HOME, the int8 model and the default ServeConfig (or the
    overrides), timed from listening to ready.

    Args:
        name: a label for the results.
        checkout: the source tree to run (``PYTHONPATH`` and working directory).
        model_dir: the int8 model directory.
        home: the state directory (the index is built there by ``prebuild``).
        serve_overrides: ``[serve]`` settings (workers, threads) instead of the defaults.
    """

    def __init__(
        self,
        name: str,
        checkout: Path,
        model_dir: Path,
        home: Path,
        serve_overrides: dict[str, int] | None = None,
        port: int | None = None,
        kb_tsv: Path | None = None,
    ) -> None:
        self.name = name
        self.checkout = checkout.resolve()
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.workers = (serve_overrides or {}).get("workers", ServeConfig().workers)
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = home / "bench.toml"
        serve = "".join(f"{k} = {v}\n" for k, v in (serve_overrides or {}).items())
        kb = f'kb = "{home.resolve() / "kb.sqlite"}"\n' if kb_tsv else ""
        self.kb_tsv = kb_tsv
        self.config.write_text(
            f'[paths]\nmodel = "{model_dir.resolve()}"\n{kb}\n[serve]\n'
            f"port = {self.port}\n" + serve,
            encoding="utf-8",
        )
        self.env = {**os.environ, "ALIME_HOME": str(home), "PYTHONPATH": str(self.checkout)}
        self.proc: subprocess.Popen | None = None
        self.log_path = home / "serve.log"
        self.ready_rule = ""

    def _alime(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "alime", "--config", str(self.config), *args]

    def commit(self) -> str:
        return subprocess.run(
            ["git", "-C", str(self.checkout), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
        ).stdout.strip()

    def prebuild(self) -> None:
        """Seed the KB (the checkout's bundled one, or ``kb_tsv`` imported) and build both
        indexes (BM25 and dense), so start-up only loads them."""
        if self.kb_tsv is not None:
            subprocess.run(
                self._alime("kb", "import", "--format", "tsv", str(self.kb_tsv.resolve())),
                cwd=self.checkout,
                env=self.env,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        subprocess.run(
            self._alime("search", "--mode", "hybrid", "您好"),
            cwd=self.checkout,
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _listening(self) -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def _ready_pids(self, pids: set[int]) -> bool:
        """One /readyz; True once every worker has answered it (or, for a server whose /readyz
        does not name its worker, once each worker has logged 'bot ready': such a worker only
        serves after building its bot)."""
        try:
            with urllib.request.urlopen(self.url + "/readyz", timeout=5) as res:
                body = json.loads(res.read())
        except OSError:  # 503 "starting" (HTTPError), or not yet accepting
            return False
        if "worker_pid" in body:
            self.ready_rule = "every worker answered /readyz (worker_pid)"
            pids.add(body["worker_pid"])
            return len(pids) >= self.workers
        self.ready_rule = "/readyz answered and every worker logged 'bot ready'"
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return text.count("bot ready") >= self.workers

    def start(self, timeout: float = 240.0) -> tuple[float, float]:
        """Start the server; returns seconds from listening to every worker ready, and from
        starting the process to every worker ready."""
        started = time.perf_counter()
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self._alime("serve"),
            cwd=self.checkout,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + timeout
        listening_at = None
        pids: set[int] = set()
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name}: alime serve exited with status "
                    f"{self.proc.returncode}; see {self.log_path}"
                )
            if listening_at is None:
                if self._listening():
                    listening_at = time.perf_counter()
                else:
                    time.sleep(0.02)
                continue
            if self._ready_pids(pids):
                now = time.perf_counter()
                return round(now - listening_at, 2), round(now - started, 2)
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: alime serve did not become ready in time")

    def cpu_s(self) -> float:
        """CPU seconds used so far by the server (master and workers)."""
        return sum(_cpu_s(pid) for pid in [self.proc.pid, *_children(self.proc.pid)])

    def load(self, clients: int, seconds: float, queries: list[str]) -> dict:
        """``run_load`` plus ``cpu_ms_per_request``: the server's CPU time per answered request,
        which machine load inflates far less than wall-clock rates."""
        before = self.cpu_s()
        result = run_load(self.url, clients, seconds, queries)
        used = self.cpu_s() - before
        result["cpu_ms_per_request"] = (
            round(used * 1000 / result["requests"], 2) if result["requests"] else None
        )
        return result

    def sources(self, queries: list[str]) -> dict[str, int]:
        """How the server answers ``queries`` (one request each, no session): replies by
        ``source`` (retrieval, generation, chitchat, fallback); workloads differ by this."""
        counts: dict[str, int] = {}
        for q in queries:
            req = urllib.request.Request(
                self.url + "/api/chat",
                json.dumps({"query": q}).encode(),
                {"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=30) as res:
                source = json.loads(res.read())["source"]
            counts[source] = counts.get(source, 0) + 1
        return dict(sorted(counts.items()))

    def rss_mb_per_worker(self) -> float:
        """The largest resident set of the workers (MB)."""
        return round(max(_rss_mb(pid) for pid in _children(self.proc.pid)), 1)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def bench_http(
    int8_dir: Path,
    seconds: float,
    clients: tuple[int, ...],
    serve_overrides: dict[str, int] | None = None,
    baseline_checkout: Path | None = None,
    port: int | None = None,
    kb_tsv: Path | None = None,
    rounds: int = 1,
) -> dict:
    """Start ``alime serve`` on the int8 model (and, side by side, the one of
    ``baseline_checkout``) and load each with every client count.

    Both servers are started (index built beforehand, then timed from listening to ready) and
    kept up; each client count then loads one server and then the other, so machine noise hits
    both alike, ``rounds`` times, the first server alternating (with several rounds each
    figure is the median of the runs, the runs themselves under ``http.{N}.runs``, and
    ``rps_ratio_runs`` gives each back-to-back pair's ratio). Worker RSS is read after the load.

    Returns:
        ``{"http": {N: load result}, "rss_mb_per_worker", "ready_s", "ready_rule", "commit",
        "loadavg"}`` for this checkout, plus ``"baseline"`` (the same keys) and
        ``"rps_ratio"`` ({N: this rps / baseline rps}) with a baseline.
    """
    with tempfile.TemporaryDirectory() as tmp:
        servers = {
            "current": Server(
                "current", ROOT, int8_dir, Path(tmp, "current"), serve_overrides, port, kb_tsv
            )
        }
        if baseline_checkout is not None:
            # The baseline serves its own checkout's int8 model directory: a model directory
            # carries the decision (routing.json), and an older checkout cannot read a newer
            # one's routing features (it exits at start-up).
            servers["baseline"] = Server(
                "baseline",
                baseline_checkout,
                baseline_checkout / "data" / "model-int8",
                Path(tmp, "baseline"),
                serve_overrides,
                port + 1 if port else None,
                kb_tsv,
            )
        results: dict[str, dict] = {}
        try:
            for name, server in servers.items():
                server.prebuild()
                results[name] = {"commit": server.commit(), "http": {}}
                ready_s, start_s = server.start()
                results[name].update(ready_s=ready_s, start_to_ready_s=start_s)
                results[name]["ready_rule"] = server.ready_rule
            queries = load_queries()
            for server in servers.values():
                run_load(server.url, 2, min(5.0, seconds), queries)  # warm every worker thread
            load_before = _loadavg()
            runs: dict[str, dict[str, list[dict]]] = {name: {} for name in servers}
            order = list(servers.items())
            for r in range(rounds):
                # Alternate which server goes first (ABBA...): a drift in the machine's load
                # between the two back-to-back runs then favours neither.
                for n in clients:
                    for name, server in order if r % 2 == 0 else order[::-1]:
                        result = server.load(n, seconds, queries)
                        result["loadavg"] = _loadavg()
                        runs[name].setdefault(str(n), []).append(result)
            for name in servers:
                for n, rs in runs[name].items():
                    results[name]["http"][n] = _median_run(rs) if rounds > 1 else rs[0]
            for name, server in servers.items():
                results[name]["rss_mb_per_worker"] = server.rss_mb_per_worker()
                results[name]["sources"] = server.sources(queries[:100])
            load_after = _loadavg()
        finally:
            for server in servers.values():
                server.stop()
    out = results["current"]
    out["loadavg"] = {"before": load_before, "after": load_after}
    out["kb"] = str(kb_tsv) if kb_tsv else "each checkout's bundled KB"
    out["rounds"] = rounds
    if "baseline" in results:
        base = results["baseline"]
        out["baseline"] = {**base, "checkout": str(baseline_checkout)}
        out["rps_ratio"] = {
            n: round(out["http"][n]["rps"] / base["http"][n]["rps"], 2)
            for n in out["http"]
            if base["http"][n]["rps"]
        }
        # Each round's two runs were back to back: their ratio is the pair's, load and all.
        out["rps_ratio_runs"] = {
            n: [
                round(a["rps"] / b["rps"], 2)
                for a, b in zip(runs["current"][n], runs["baseline"][n], strict=True)
                if b["rps"]
            ]
            for n in out["http"]
        }
    return out


def _median_run(rs: list[dict]) -> dict:
    """One client count's runs as one result: the median of each figure (errors and requests
    summed), and every run under ``runs``."""
    out: dict = {"clients": rs[0]["clients"]}
    for key in ("rps", "p50_ms", "p99_ms", "cpu_ms_per_request", "client_cpu_ms_per_request"):
        values = [r[key] for r in rs if r.get(key) is not None]
        out[key] = round(float(np.median(values)), 3) if values else None
    out["requests"] = sum(r["requests"] for r in rs)
    out["errors"] = sum(r["errors"] for r in rs)
    out["runs"] = rs
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp32", type=Path, default=ROOT / "data" / "model")
    parser.add_argument("--int8", type=Path, default=ROOT / "data" / "model-int8")
    parser.add_argument("--queries", type=int, default=40, help="rerank inputs (10 answers each)")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the rerank inputs")
    parser.add_argument("--seconds", type=float, default=20.0, help="HTTP load per client count")
    parser.add_argument("--clients", default="1,8,32", help="client counts, comma-separated")
    parser.add_argument("--no-http", action="store_true", help="skip the endpoint load test")
    parser.add_argument("--http-only", action="store_true", help="only the endpoint load test")
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: ServeConfig's)")
    parser.add_argument("--threads", type=int, help="threads per worker (default: ServeConfig's)")
    parser.add_argument(
        "--baseline-checkout",
        type=Path,
        help="another checkout (e.g. `git worktree add /tmp/base 64ea9b8`) served "
        "side by side with this one (each with its own int8 model directory), same load",
    )
    parser.add_argument(
        "--kb", type=Path, help="a TSV KB served by both servers (default: each one's bundled KB)"
    )
    parser.add_argument(
        "--port",
        type=int,
        help="this checkout's server port, the baseline's the next (default: free)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="passes over the client counts, alternating which server goes first; "
        "figures are the medians (default 1)",
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    args = parser.parse_args()
    if args.baseline_checkout and not (args.baseline_checkout / "alime" / "__main__.py").is_file():
        parser.error(f"--baseline-checkout {args.baseline_checkout}: not an alime checkout")
    try:
        clients = tuple(int(c) for c in args.clients.split(","))
    except ValueError:
        parser.error(f"--clients {args.clients!r}: expected comma-separated integers")
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: expected a positive integer")

    overrides = {k: v for k, v in (("workers", args.workers), ("threads", args.threads)) if v}
    http = (
        ()
        if args.no_http
        else (
            args.int8,
            args.seconds,
            clients,
            overrides,
            args.baseline_checkout,
            args.port,
            args.kb,
            args.rounds,
        )
    )
    if args.http_only:
        print(json.dumps(bench_http(*http), indent=2))
        return
    result = bench_models(args.fp32, args.int8, args.queries, args.repeats)
    fp32_bytes = (args.fp32 / "model.weights.h5").stat().st_size
    int8_bytes = _dir_bytes(args.int8 / "int8")
    result["size_bytes"] = {"fp32": fp32_bytes, "int8": int8_bytes}
    result["size_ratio"] = round(fp32_bytes / int8_bytes, 2)
    result["dir_bytes"] = {"fp32": _dir_bytes(args.fp32), "int8": _dir_bytes(args.int8)}
    if http:
        result.update(bench_http(*http))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key}: {json.dumps(value)}")


if __name__ == "__main__":
    main()
