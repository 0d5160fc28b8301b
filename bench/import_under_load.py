"""Chat latency before and during a bulk ``alime kb import`` into the live server's KB (issue 12.4).

Usage::

    .venv/bin/python bench/import_under_load.py --json
    .venv/bin/python bench/import_under_load.py --rows 50000 --clients 8 --seconds 20 --json
    .venv/bin/python bench/import_under_load.py --checkout /path/to/other/checkout --json

What it does, in one run:

1. starts ``alime serve`` (gunicorn, the default ServeConfig: 2 workers x 4 threads, the bundled
   int8 model, hybrid BM25 + dense retrieval, the bundled curated KB) on a free loopback port
   with a fresh ``$ALIME_HOME``;
2. ``before``: ``--clients`` closed-loop clients ask real bundled questions for ``--seconds``;
3. ``during``: the same load while ``alime kb import`` adds ``--rows`` new pairs (one
   transaction) to the server's KB from another process, until the server has caught up (a
   question of the import is retrieved by ``/api/chat``), at least ``--seconds``;
4. reports p50/p99/max latency, requests/s and errors of both phases, their p99 ratio (target
   <= 2), the import's own wall time, the time until the new pairs were searchable, the 1-minute
   load average at the end of each phase, and the CPU seconds used by the server processes and
   by the import in each phase.

OpenBLAS is limited to one thread before numpy is imported, as ``alime`` does.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from http_load import QUERIES_FILE, chat_once, load_queries  # noqa: E402

# In the LAST imported question: found once the whole import is indexed.
MARKER = "批量导入探针"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_cpu_seconds(pgid: int) -> float:
    """utime + stime of every live process in process group ``pgid`` (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state ppid pgrp ...
            total += int(fields[11]) + int(fields[12])
    return total / tick


def write_rows(path: Path, n: int) -> None:
    """``n`` distinct pairs built from the bundled questions (numbered, so none repeats)."""
    lines = [line.split("\t") for line in QUERIES_FILE.read_text(encoding="utf-8").splitlines()]
    with path.open("w", encoding="utf-8") as out:
        for i in range(n - 1):
            q, a = lines[i % len(lines)][:2]
            out.write(f"{q} 批次 {i}\t{a}\n")
        out.write(f"{MARKER} 最后 一 条\t探针 答案\n")


class Load:
    """Closed-loop chat clients running until :meth:`stop`."""

    def __init__(self, url: str, clients: int, queries: list[str]) -> None:
        self.port = int(url.rsplit(":", 1)[1])
        self.latencies: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(queries, i), daemon=True)
            for i in range(clients)
        ]

    def _client(self, queries: list[str], seed: int) -> None:
        rng = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        while not self._stop.is_set():
            body = json.dumps({"query": rng.choice(queries), "session_id": f"bench-{seed}"})
            ok, elapsed, conn = chat_once(conn, body)
            if ok:
                self.latencies.append(elapsed)
            else:
                self.errors += 1
        conn.close()

    def start(self) -> Load:
        self.started = time.perf_counter()
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> dict:
        self._stop.set()
        for t in self._threads:
            t.join()
        wall = time.perf_counter() - self.started
        ms = np.array(self.latencies) * 1000.0
        pct = (lambda q: round(float(np.percentile(ms, q)), 1)) if len(ms) else (lambda q: None)
        return {
            "seconds": round(wall, 1),
            "requests": len(ms),
            "rps": round(len(ms) / wall, 1),
            "p50_ms": pct(50),
            "p99_ms": pct(99),
            "max_ms": pct(100),
            "errors": self.errors,
        }


def wait_ready(url: str, server: subprocess.Popen, workers: int, timeout: float) -> None:
    """Until every worker answers /readyz with 200 (each builds its bot after it starts, and
    answers 503 until then)."""
    deadline = time.time() + timeout
    pids: set = set()
    conn_port = int(url.rsplit(":", 1)[1])
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"alime serve exited with status {server.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", conn_port, timeout=5)
            conn.request("GET", "/readyz")
            res = conn.getresponse()
            body = res.read()
            conn.close()
            if res.status == 200:
                pids.add(json.loads(body).get("worker_pid", "?"))
                if len(pids) >= workers or "?" in pids:
                    return
        except (OSError, http.client.HTTPException, ValueError):
            pass
        time.sleep(0.5)
    raise RuntimeError("alime serve did not become ready in time")


def chat(url: str, query: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=120)
    conn.request(
        "POST", "/api/chat", json.dumps({"query": query}), {"Content-Type": "application/json"}
    )
    res = conn.getresponse()
    body = json.loads(res.read())
    conn.close()
    if res.status != 200:
        raise RuntimeError(f"/api/chat answered {res.status}: {body}")
    return body


def searchable(url: str) -> bool:
    """True once /api/chat retrieves the import's last question (on the worker that answers)."""
    return any(
        MARKER in c["question"].replace(" ", "")
        for c in chat(url, MARKER + "最后一条").get("candidates", [])
    )


def run(args: argparse.Namespace, work: Path) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    home = work / "home"
    config = work / "alime.toml"
    config.write_text("")
    code = Path(args.checkout).resolve()
    env = {
        **os.environ,
        "ALIME_HOME": str(home),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": str(code) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    cli = [sys.executable, "-m", "alime", "--config", str(config)]
    log = (work / "server.log").open("w")
    server = subprocess.Popen(
        [*cli, "serve", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        wait_ready(url, server, workers=2, timeout=600)
        rows = work / "import.tsv"
        write_rows(rows, args.rows)
        queries = load_queries()
        for q in queries[:20]:  # warm both workers
            chat(url, q)

        cpu0, load0 = group_cpu_seconds(server.pid), os.getloadavg()[0]
        before = Load(url, args.clients, queries).start()
        time.sleep(args.seconds)
        before = before.stop()
        cpu1 = group_cpu_seconds(server.pid)
        before.update(
            server_cpu_s=round(cpu1 - cpu0, 1),
            load_avg_1m=round(os.getloadavg()[0], 2),
            load_avg_1m_at_start=round(load0, 2),
        )

        during = Load(url, args.clients, queries).start()
        started = time.perf_counter()
        importer = subprocess.Popen(
            [*cli, "kb", "import", str(rows), "--format", "tsv"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        import_s = found_s = None
        while True:
            if import_s is None and importer.poll() is not None:
                import_s = time.perf_counter() - started
                if importer.returncode != 0:
                    raise RuntimeError("alime kb import failed: " + importer.stderr.read())
            if found_s is None and searchable(url):
                found_s = time.perf_counter() - started
            elapsed = time.perf_counter() - started
            if found_s is not None and import_s is not None and elapsed >= args.seconds:
                break
            if elapsed > args.max_seconds:
                break
            time.sleep(1.0)
        during = during.stop()
        cpu2 = group_cpu_seconds(server.pid)
        import_cpu = _children_cpu()
        during.update(server_cpu_s=round(cpu2 - cpu1, 1), load_avg_1m=round(os.getloadavg()[0], 2))
        ratio = (
            round(during["p99_ms"] / before["p99_ms"], 2)
            if during["p99_ms"] and before["p99_ms"]
            else None
        )
        return {
            "checkout": str(code),
            "commit": _commit(code),
            "rows": args.rows,
            "clients": args.clients,
            "before": before,
            "during": during,
            "p99_ratio": ratio,
            "target_p99_ratio": 2.0,
            "import_wall_s": None if import_s is None else round(import_s, 1),
            "import_cpu_s": round(import_cpu, 1),
            "searchable_after_s": None if found_s is None else round(found_s, 1),
            "server_config": "alime serve defaults: 2 gunicorn workers x 4 threads, int8 model, "
            "hybrid retrieval, the bundled curated KB",
            "cpus": os.cpu_count(),
        }
    finally:
        try:
            os.killpg(server.pid, 15)
        except ProcessLookupError:
            pass
        server.wait(timeout=60)
        log.close()


def _commit(checkout: Path) -> str | None:
    proc = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return proc.stdout.strip() or None


def _children_cpu() -> float:
    """CPU seconds of this script's reaped children (the import; the server is still running)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="pairs imported (default 200K)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0, help="minimum phase length")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=1800.0,
        help="give up waiting for the import to become searchable after this",
    )
    parser.add_argument(
        "--checkout",
        default=str(ROOT),
        help="run the server and the import from this alime checkout (default: "
        "this one), e.g. an older commit for a side-by-side comparison",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="alime-import-bench-") as tmp:
        result = run(args, Path(tmp))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
