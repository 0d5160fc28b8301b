"""Closed-loop HTTP load against a running `alime serve`: N clients, each sending its next
request as soon as the previous answer arrives (keep-alive connections, loopback only).

Used by bench/serving.py; run alone as
``python bench/http_load.py --url http://127.0.0.1:8000 --clients 8 --seconds 20``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

QUERIES_FILE = Path(__file__).resolve().parent.parent / "data" / "kb" / "ecommerce_qa.tsv"


def load_queries(n: int = 500, seed: int = 7) -> list[str]:
    """Real customer questions from the bundled KB, spaces removed (as a customer types them)."""
    lines = QUERIES_FILE.read_text(encoding="utf-8").splitlines()
    rng = random.Random(seed)
    picked = rng.sample(lines, min(n, len(lines)))
    return [line.split("\t")[0].replace(" ", "") for line in picked]


def chat_once(
    conn: http.client.HTTPConnection, body: str
) -> tuple[bool, float, http.client.HTTPConnection]:
    """POST one chat body on a kept-alive connection: (HTTP 200?, seconds, the connection to
    use next: a fresh one to the same server after a connection error)."""
    started = time.perf_counter()
    try:
        conn.request("POST", "/api/chat", body, {"Content-Type": "application/json"})
        res = conn.getresponse()
        res.read()
        ok = res.status == 200
    except (OSError, http.client.HTTPException):
        ok = False
        conn.close()
        conn = http.client.HTTPConnection(conn.host, conn.port, timeout=conn.timeout)
    return ok, time.perf_counter() - started, conn


def _client(
    url: str, queries: list[str], stop_at: float, out: list, errors: list, seed: int
) -> None:
    parsed = urlparse(url)
    rng = random.Random(seed)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    session = f"bench-{seed}"
    while time.perf_counter() < stop_at:
        body = json.dumps({"query": rng.choice(queries), "session_id": session})
        ok, elapsed, conn = chat_once(conn, body)
        (out if ok else errors).append(elapsed)
    conn.close()


def run_load(url: str, clients: int, seconds: float, queries: list[str]) -> dict:
    """Requests/s, p50/p99 latency (ms) and error count for ``clients`` concurrent clients."""
    latencies: list[float] = []
    errors: list[float] = []
    stop_at = time.perf_counter() + seconds
    threads = [
        threading.Thread(target=_client, args=(url, queries, stop_at, latencies, errors, i))
        for i in range(clients)
    ]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000.0
    return {
        "clients": clients,
        "requests": len(latencies),
        "rps": round(len(latencies) / wall, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else None,
        "errors": len(errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    print(json.dumps(run_load(args.url, args.clients, args.seconds, load_queries())))


if __name__ == "__main__":
    main()
