"""Take the docs' screenshot of the chat page: start `alime serve` (bundled default) on a free
loopback port with a temporary ALIME_HOME, hold a short Chinese conversation in headless
Chromium, and save ``docs/img/chat.png``.

    .venv/bin/python scripts/screenshot.py [--out docs/img/chat.png]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ["你好", "亲 啥时候发货啊", "这个包邮不", "收到不喜欢能退吗", "我要投诉"]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, seconds: float = 180, workers: int = 2) -> None:
    """Until every worker has answered /readyz (each builds its bot in the background, 503
    until then)."""
    deadline = time.time() + seconds
    pids = set()
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as res:
                pids.add(json.loads(res.read())["worker_pid"])
                if len(pids) >= workers:
                    return
        except OSError:  # refused, or 503 "starting" (HTTPError)
            time.sleep(0.5)
    raise SystemExit("server did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(ROOT / "docs" / "img" / "chat.png"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    home = tempfile.mkdtemp(prefix="alime-shot-")
    port = free_port()
    env = {**os.environ, "ALIME_HOME": home, "TF_CPP_MIN_LOG_LEVEL": "3"}
    server = subprocess.Popen(
        [sys.executable, "-m", "alime", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=shutil.which("chromium"), headless=True, args=CHROMIUM_ARGS
            )
            page = browser.new_page(viewport={"width": 1100, "height": 1500}, locale="zh-CN")
            page.goto(url + "/")
            page.check("#show-candidates")
            for i, question in enumerate(QUESTIONS):
                page.fill("#query", question)
                page.click("#send")
                page.wait_for_function(
                    "n => document.querySelectorAll('.msg.bot').length > n", arg=i, timeout=60_000
                )
            page.evaluate(
                "document.querySelectorAll('table.cands').forEach(t => "
                "t.querySelectorAll('tr').forEach((r, j) => { if (j > 3) r.remove(); }))"
            )
            page.screenshot(path=args.out, full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
