"""``alime serve``: the app on gunicorn (a production WSGI server).

The KB is seeded and the index built in the master process, before any fork, so workers only
load them; the master also preloads what workers can inherit (``alime.bot.preload``: jieba's
dictionary, the BM25 kernels, modules). Each worker builds its bot after the fork (faiss, ONNX
Runtime, and TensorFlow for an fp32 model only), in a background thread, so ``/healthz`` answers
at once and ``/readyz`` says 503 "starting" until then.

Everything this server writes at run time lives in ``<state dir>/run/``, named by port, so two
servers on one machine (two clones, or one project on two ports) never share a file: the gunicorn
control socket, the Prometheus multiprocess folder (emptied at start) and the ready markers.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

from alime.config import AppConfig
from alime.serving.metrics import MULTIPROC_ENV

log = logging.getLogger(__name__)

# A Unix socket path must fit in sockaddr_un.sun_path (108 bytes on Linux, with its NUL).
_MAX_SOCKET_PATH = 100


def prepare(config: AppConfig) -> int:
    """Seed the KB and build/refresh the index once; returns the number of QA pairs."""
    from alime.bot import open_searcher

    searcher = open_searcher(config)
    searcher.sync()
    searcher.save()
    return len(searcher)


class RunFiles:
    """The run-time files of the server on one port, under ``<state dir>/run/``.

    Args:
        state_dir: The project's state directory.
        port: The server's port (servers of one project on two ports keep apart).
    """

    def __init__(self, state_dir: Path, port: int) -> None:
        self.folder = state_dir / "run"
        self.metrics = self.folder / f"metrics-{port}"
        self.ready = self.folder / f"ready-{port}"  # one file per worker whose bot is built
        self.announced = self.folder / f"announced-{port}"
        self.control_socket = self.folder / f"gunicorn-{port}.ctl"

    def reset(self) -> None:
        """Start clean: the last run's metrics (counts of dead processes) and markers go."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for folder in (self.metrics, self.ready):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
        self.announced.unlink(missing_ok=True)

    def control_socket_usable(self) -> bool:
        return len(os.fsencode(self.control_socket.resolve())) <= _MAX_SOCKET_PATH

    def worker_ready(self, workers: int) -> bool:
        """Record this worker as ready; True for exactly one caller, once ``workers`` are ready
        (creating the announced marker is atomic), so the URL is printed once, when any
        connection the server accepts is answered by a ready worker."""
        (self.ready / str(os.getpid())).touch()
        if sum(1 for _ in self.ready.iterdir()) < workers:
            return False
        try:
            fd = os.open(self.announced, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        os.close(fd)
        return True


def public_url(config: AppConfig) -> str:
    host = config.serve.host
    host = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::", "") else host
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.serve.port}/"


def check_sessions(config: AppConfig) -> None:
    """Open the session store once before any worker starts, so a bad ``[serve] sessions`` value
    or an unreachable Redis stops ``alime serve`` with one clear message (ValueError: the CLI
    prints it and exits 2) instead of failing in every worker."""
    from alime.serving.sessions import SessionsUnavailable, open_sessions

    store = open_sessions(config.serve, config.state_dir())
    try:
        store.turns("alime-startup-check")
    except SessionsUnavailable as exc:
        raise ValueError(f"{exc} (check [serve] redis_url or ALIME_REDIS_URL)") from None
    finally:
        store.close()


def check_port_free(host: str, port: int) -> None:
    """ValueError when something listens on host:port already. Checked before the run files are
    reset: a second ``alime serve`` on a busy port must not empty the first one's metrics."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def serve(config: AppConfig) -> None:
    """Run gunicorn until it is stopped (SIGINT/SIGTERM)."""
    check_port_free(config.serve.host, config.serve.port)
    check_sessions(config)
    run = RunFiles(config.state_dir(), config.serve.port)
    run.reset()
    # Before anything imports prometheus_client: it picks its multiprocess value class at import,
    # and the workers inherit the variable through the fork.
    os.environ[MULTIPROC_ENV] = str(run.metrics)

    from gunicorn.app.base import BaseApplication

    from alime.serving.metrics import mark_worker_dead

    pairs = prepare(config)
    from alime.bot import preload

    preload(config)  # what every worker would load again, loaded once before the fork
    url = public_url(config)

    def ready() -> None:
        # Called by each worker once its bot is built: the last of the first set announces it.
        if run.worker_ready(config.serve.workers):
            print(f"alime: ready — open {url}", flush=True)

    def failed(exc: BaseException) -> None:
        # Exit status 4 is gunicorn's "App failed to load": the master stops the whole server,
        # as it did when the bot was built before the worker started serving.
        sys.stderr.flush()
        os._exit(4)

    class _Server(BaseApplication):
        def load_config(self) -> None:
            s = config.serve
            self.cfg.set("bind", f"{s.host}:{s.port}")
            self.cfg.set("workers", s.workers)
            self.cfg.set("threads", s.threads)
            self.cfg.set("worker_class", "gthread")
            # A listening socket per worker (SO_REUSEPORT): the kernel spreads new connections
            # over the workers. With one shared socket the first worker to wake could accept a
            # whole burst, and a kept-alive connection stays with its worker: 8 load clients
            # landed 8 / 0 in some runs, halving the requests per second (issue 18).
            self.cfg.set("reuse_port", s.reuse_port)
            self.cfg.set("timeout", max(30, int(s.request_timeout_s * 3)))
            self.cfg.set("preload_app", False)  # build the bot (and TensorFlow) in each worker
            self.cfg.set("accesslog", None)  # alime logs each request itself, as JSON with an id
            self.cfg.set("limit_request_line", 8190)
            # gunicorn's default control socket is one path per user ($XDG_RUNTIME_DIR or
            # ~/.gunicorn): a second server on the machine would take it over.
            if run.control_socket_usable():
                self.cfg.set("control_socket", str(run.control_socket.resolve()))
            else:
                log.warning("state directory path too long for a Unix socket: control socket off")
                self.cfg.set("control_socket_disable", True)
            self.cfg.set("child_exit", lambda _arbiter, worker: mark_worker_dead(worker.pid))

        def load(self):
            from alime.serving.app import create_app

            return create_app(config, background=True, on_ready=ready, on_failure=failed)

    # No URL yet: it is printed by the first worker that can answer (above).
    print(
        f"alime: starting with {pairs} QA pairs (state: {config.state_dir()}); loading the bot…",
        flush=True,
    )
    _Server().run()
