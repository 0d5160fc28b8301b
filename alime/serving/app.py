"""The Flask app factory: ``create_app(config=None, bot=None)``.

The bot is built once, when the app is created (in each server worker, after any fork), never per
request. Per-app state lives in ``app.extensions['alime']``.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from alime.bot import Bot, build_bot
from alime.config import AppConfig
from alime.serving.admin import admin
from alime.serving.metrics import ChatMetrics
from alime.serving.sessions import SessionStore
from alime.serving.validation import BadRequest, parse_chat, parse_json_body

log = logging.getLogger("alime.requests")

api = Blueprint("alime", __name__)


@dataclass
class AppState:
    bot: Bot
    sessions: SessionStore
    config: AppConfig
    metrics: ChatMetrics
    admin_token: str | None


def create_app(config: AppConfig | None = None, bot: Bot | None = None) -> Flask:
    config = config or (bot.config if bot else AppConfig())
    bot = bot or build_bot(config)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.serve.max_body_bytes
    app.json.ensure_ascii = False  # Chinese stays readable in responses
    app.extensions["alime"] = AppState(
        bot=bot,
        sessions=SessionStore(
            capacity=config.serve.session_capacity,
            ttl_s=config.serve.session_ttl_s,
            max_turns=config.serve.max_context_turns,
        ),
        config=config,
        metrics=ChatMetrics(kb_size=lambda: len(bot.searcher)),
        admin_token=admin_token(config),
    )
    app.register_blueprint(api)
    app.register_blueprint(admin)
    app.before_request(_start_request)
    app.after_request(_finish_request)
    _register_errors(app)
    return app


def state() -> AppState:
    return current_app.extensions["alime"]


def admin_token(config: AppConfig) -> str | None:
    """The admin bearer token: the environment wins over the config; None disables admin."""
    return os.environ.get("ALIME_ADMIN_TOKEN") or config.serve.admin_token or None


def _start_request() -> None:
    g.request_id = _safe_request_id(request.headers.get("X-Request-Id")) or uuid.uuid4().hex[:16]
    g.started = time.perf_counter()


def _safe_request_id(value: str | None) -> str | None:
    if value and len(value) <= 64 and value.replace("-", "").replace("_", "").isalnum():
        return value
    return None


def _finish_request(response: Response) -> Response:
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    endpoint = request.endpoint or "unknown"
    metrics = state().metrics
    status = str(response.status_code)
    metrics.requests.inc(endpoint, status)
    metrics.latency.observe(elapsed, endpoint)
    if response.status_code >= 400:
        metrics.errors.inc(endpoint, status)
    response.headers["X-Request-Id"] = g.get("request_id", "")
    log.info(json.dumps({
        "request_id": g.get("request_id"), "method": request.method, "path": request.path,
        "status": response.status_code, "ms": round(elapsed * 1000, 2),
        "source": g.get("reply_source"),
    }, ensure_ascii=False))
    return response


@api.get("/")
def page():
    page_html = Path(current_app.static_folder, "index.html").read_text(encoding="utf-8")
    return Response(page_html, mimetype="text/html")


@api.post("/api/chat")
def chat():
    st = state()
    body = parse_json_body(request.get_data(), st.config.serve.max_json_depth)
    req = parse_chat(body, st.config.serve)
    if req.context is not None:
        context = list(req.context)
    elif req.session_id is not None:
        context = st.sessions.turns(req.session_id)
    else:
        context = []
    reply = st.bot.engine.reply(
        req.query, context[-st.config.engine.context_turns :], budget_s=st.config.serve.request_timeout_s
    )
    if req.session_id is not None:
        st.sessions.append(req.session_id, req.query, reply.answer)
    st.metrics.replies.inc(reply.source.value)
    for stage, ms in reply.timings_ms.items():
        if stage != "total":
            st.metrics.stage.observe(ms / 1000.0, stage)
    g.reply_source = reply.source.value
    body = reply.to_json()
    body["request_id"] = g.request_id
    return jsonify(body)


@api.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@api.get("/readyz")
def readyz():
    bot = state().bot
    return jsonify(
        {
            "status": "ready",
            "kb_pairs": len(bot.searcher),
            "model": str(bot.model_dir) if bot.model_dir else None,
            "threshold": bot.engine.thresholds.answer,
        }
    )


@api.get("/metrics")
def metrics():
    return Response(state().metrics.render(), mimetype="text/plain; version=0.0.4")


def _register_errors(app: Flask) -> None:
    @app.errorhandler(BadRequest)
    def _bad_request(exc: BadRequest):
        return jsonify({"error": str(exc), "request_id": g.get("request_id")}), exc.status

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        message = exc.description
        if exc.code == 413:
            message = f"request body is larger than {request.max_content_length} bytes"
        return jsonify({"error": message, "request_id": g.get("request_id")}), exc.code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        logging.getLogger("alime.serving").exception("unhandled error (request %s)", g.get("request_id"))
        return jsonify({"error": "internal error", "request_id": g.get("request_id")}), 500
