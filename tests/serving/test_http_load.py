"""``bench/http_load.py``'s load generator against a real HTTP server (the standard library's,
on loopback): every answered request is counted once, non-200 answers are errors, a server that
closes its connections is followed, and each client keeps its own session."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.http_load import _parse_head, build_requests, run_load


class _Chat(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless the handler says close
    close_every = 0  # answer every Nth request with "Connection: close" (0: never)
    seen: list[dict] = []
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 - the http.server hook name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.lock:
            self.seen.append(body)
            count = len(self.seen)
        status = 500 if body["query"] == "boom" else 200
        out = json.dumps({"answer": "好的", "n": count}, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        if self.close_every and count % self.close_every == 0:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args) -> None:  # quiet
        pass


@pytest.fixture
def server():
    def start(close_every: int = 0):
        handler = type("Handler", (_Chat,), {"close_every": close_every, "seen": []})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        started.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}", handler

    started: list[ThreadingHTTPServer] = []
    yield start
    for httpd in started:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("close_every", [0, 3])
def test_every_answer_is_counted_once_and_errors_apart(server, close_every):
    url, handler = server(close_every)
    result = run_load(url, clients=3, seconds=1.0, queries=["发货", "退货", "boom"])
    failed = sum(1 for b in handler.seen if b["query"] == "boom")
    # Each client finishes its request in flight when time is up: the server saw exactly the
    # requests the generator counted, none twice, none lost (connection closes included).
    assert result["requests"] + result["errors"] == len(handler.seen)
    assert result["errors"] == failed > 0
    assert result["requests"] == len(handler.seen) - failed > 0
    assert {b["session_id"] for b in handler.seen} == {"bench-0", "bench-1", "bench-2"}
    assert result["p50_ms"] <= result["p99_ms"]
    assert result["client_cpu_ms_per_request"] > 0


def test_requests_are_prebuilt_http_with_exact_lengths():
    (raw,) = build_requests("127.0.0.1", 8000, ["你们发什么快递？"], "s1")
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"POST /api/chat HTTP/1.1\r\n")
    assert f"Content-Length: {len(body)}".encode() in head
    assert json.loads(body) == {"query": "你们发什么快递？", "session_id": "s1"}


def test_response_heads_are_parsed_only_when_complete():
    whole = b"HTTP/1.1 503 UNAVAILABLE\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody"
    assert _parse_head(bytearray(whole[:20])) is None
    assert _parse_head(bytearray(whole)) == (503, len(whole), True)
    with pytest.raises(ValueError, match="Content-Length"):
        _parse_head(bytearray(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))
