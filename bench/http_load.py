"""Closed-loop HTTP load against a running `alime serve`: N clients, each sending its next
request as soon as the previous answer arrives (keep-alive connections, loopback only).

Used by bench/serving.py; run alone as
``python bench/http_load.py --url http://127.0.0.1:8000 --clients 8 --seconds 20``.

The generator shares the machine's cores with the server it loads, so its own CPU per request
counts against every server it measures. It is therefore one thread and one event loop
(``selectors`` over raw non-blocking sockets) with every request's bytes built before the clock
starts: per response it only finds the end of the headers, reads ``Content-Length`` and the
status code. ``client_cpu_ms_per_request`` reports what that costs (this process's CPU time
during the run per answered request): about 0.07-0.13 ms on this machine, where the earlier
generator (a thread and an ``http.client`` connection per client) took 0.35-0.40 ms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import selectors
import socket
import time
from dataclasses import dataclass, field
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
    use next: a fresh one to the same server after a connection error). For scripts that send
    a few requests; the load loop below does not use it."""
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


def build_requests(host: str, port: int, queries: list[str], session: str) -> list[bytes]:
    """Every chat request one client can send, as the bytes on the wire (HTTP/1.1 keep-alive)."""
    out = []
    for q in queries:
        body = json.dumps({"query": q, "session_id": session}, ensure_ascii=False).encode()
        head = (
            f"POST /api/chat HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode("ascii")
        out.append(head + body)
    return out


@dataclass
class _Client:
    """One closed-loop client: a connection, its prebuilt requests, the response being read."""

    requests: list[bytes]
    rng: random.Random
    sock: socket.socket | None = None
    buf: bytearray = field(default_factory=bytearray)
    sent_at: float = 0.0
    need: int = -1  # bytes of the whole response once its headers are read; -1 before
    close: bool = False  # the server said "Connection: close": reconnect before the next one


def _parse_head(buf: bytearray) -> tuple[int, int, bool] | None:
    """(status, total response bytes, connection closing?) once the headers are in ``buf``;
    None before.

    Raises:
        ValueError: A response without Content-Length (alime always sends one).
    """
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).lower()
    status = int(head[9:12])
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        raise ValueError("response without Content-Length")
    stop = head.find(b"\r\n", at + 2)
    length = int(head[at + 17 : stop if stop >= 0 else len(head)])
    return status, end + 4 + length, b"\r\nconnection: close" in head


def run_load(url: str, clients: int, seconds: float, queries: list[str]) -> dict:
    """Requests/s, p50/p99 latency (ms), error count and the generator's own CPU per request
    for ``clients`` concurrent closed-loop clients, each with its own session."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    sel = selectors.DefaultSelector()
    latencies: list[float] = []
    errors = 0

    def connect(c: _Client) -> None:
        sock = socket.create_connection((host, port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        c.sock = sock
        sel.register(sock, selectors.EVENT_READ, c)

    def send_next(c: _Client) -> None:
        c.buf.clear()
        c.need = -1
        c.sent_at = time.perf_counter()
        data = c.requests[c.rng.randrange(len(c.requests))]
        try:
            sent = c.sock.send(data)
        except OSError:
            sent = -1
        if sent != len(data):  # a small request into an empty send buffer: all or a failure
            fail(c)

    def fail(c: _Client) -> None:
        nonlocal errors, active
        errors += 1
        sel.unregister(c.sock)
        c.sock.close()
        if time.perf_counter() < stop_at:
            try:
                connect(c)
            except OSError:
                active -= 1  # the server is gone: this client stops
                return
            send_next(c)
        else:
            active -= 1

    all_clients = [
        _Client(build_requests(host, port, queries, f"bench-{i}"), random.Random(i))
        for i in range(clients)
    ]
    for c in all_clients:
        connect(c)
    cpu_started = time.process_time()
    started = time.perf_counter()
    stop_at = started + seconds
    active = len(all_clients)
    for c in all_clients:
        send_next(c)
    while active:
        for key, _ in sel.select(timeout=1.0):
            c = key.data
            try:
                chunk = c.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                fail(c)
                continue
            c.buf += chunk
            if c.need < 0:
                try:
                    head = _parse_head(c.buf)
                except ValueError:
                    fail(c)
                    continue
                if head is None:
                    continue
                status, c.need, c.close = head
            else:
                status = int(c.buf[9:12])
            if len(c.buf) < c.need:
                continue
            now = time.perf_counter()
            if status == 200:
                latencies.append(now - c.sent_at)
            else:
                errors += 1
            if now < stop_at:
                if c.close:  # not an error: this server closes after each response
                    sel.unregister(c.sock)
                    c.sock.close()
                    connect(c)
                send_next(c)
            else:
                sel.unregister(c.sock)
                c.sock.close()
                active -= 1
        if time.perf_counter() > stop_at + 30:  # a server that stopped answering
            break
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    for c in all_clients:
        if c.sock is not None and c.sock.fileno() >= 0:
            c.sock.close()
    sel.close()
    ms = np.array(latencies) * 1000.0
    return {
        "clients": clients,
        "requests": len(latencies),
        "rps": round(len(latencies) / wall, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else None,
        "errors": errors,
        "client_cpu_ms_per_request": round(cpu * 1000 / len(latencies), 3) if latencies else None,
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
