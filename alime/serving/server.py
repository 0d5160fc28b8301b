"""``alime serve``: the app on gunicorn (a production WSGI server).

The KB is seeded and the index built in the master process, before any fork, so workers only
load them; TensorFlow is imported by each worker when it builds its bot (after the fork).
"""

from __future__ import annotations

import logging

from alime.config import AppConfig

log = logging.getLogger(__name__)


def prepare(config: AppConfig) -> int:
    """Seed the KB and build/refresh the index once; returns the number of QA pairs."""
    from alime.bot import open_searcher

    searcher = open_searcher(config)
    searcher.sync()
    searcher.save()
    return len(searcher)


def serve(config: AppConfig) -> None:
    from gunicorn.app.base import BaseApplication

    pairs = prepare(config)

    class _Server(BaseApplication):
        def load_config(self) -> None:
            s = config.serve
            self.cfg.set("bind", f"{s.host}:{s.port}")
            self.cfg.set("workers", s.workers)
            self.cfg.set("threads", s.threads)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("timeout", max(30, int(s.request_timeout_s * 3)))
            self.cfg.set("preload_app", False)  # build the bot (and TensorFlow) in each worker
            self.cfg.set("accesslog", None)  # alime logs each request itself, as JSON with an id
            self.cfg.set("limit_request_line", 8190)

        def load(self):
            from alime.serving.app import create_app

            return create_app(config)

    host = "localhost" if config.serve.host in ("127.0.0.1", "0.0.0.0") else config.serve.host
    print(f"alime: serving {pairs} QA pairs — open http://{host}:{config.serve.port}/", flush=True)
    _Server().run()
