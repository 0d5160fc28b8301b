"""The Flask app factory: ``create_app(config=None, bot=None)``.

The bot is built once, when the app is created (in each server worker, after any fork), never per
request. Per-app state lives in ``app.extensions['alime']``.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass

from flask import Blueprint, Flask, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from alime.bot import Bot, build_bot
from alime.config import AppConfig
from alime.serving.sessions import SessionStore
from alime.serving.validation import BadRequest, parse_chat

log = logging.getLogger("alime.serving")

api = Blueprint("alime", __name__)


@dataclass
class AppState:
    bot: Bot
    sessions: SessionStore
    config: AppConfig


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
    )
    app.register_blueprint(api)
    _register_errors(app)
    return app


def state() -> AppState:
    return current_app.extensions["alime"]


def admin_token(config: AppConfig) -> str | None:
    """The admin bearer token: the environment wins over the config; None disables admin."""
    return os.environ.get("ALIME_ADMIN_TOKEN") or config.serve.admin_token or None


@api.before_request
def _start_request() -> None:
    g.request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex[:16]


@api.after_request
def _finish_request(response):
    response.headers["X-Request-Id"] = g.get("request_id", "")
    return response


@api.post("/api/chat")
def chat():
    st = state()
    body = request.get_json(silent=True, force=True)
    if body is None:
        raise BadRequest("request body must be valid JSON (UTF-8)")
    req = parse_chat(body, st.config.serve)
    if req.context is not None:
        context = list(req.context)
    elif req.session_id is not None:
        context = st.sessions.turns(req.session_id)
    else:
        context = []
    reply = st.bot.engine.reply(req.query, context[-st.config.engine.context_turns :])
    if req.session_id is not None:
        st.sessions.append(req.session_id, req.query, reply.answer)
    return jsonify(reply.to_json())


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


def _register_errors(app: Flask) -> None:
    @app.errorhandler(BadRequest)
    def _bad_request(exc: BadRequest):
        return jsonify({"error": str(exc)}), exc.status

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        messages = {413: f"request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes"}
        return jsonify({"error": messages.get(exc.code, exc.description)}), exc.code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error (request %s)", g.get("request_id"))
        return jsonify({"error": "internal error", "request_id": g.get("request_id")}), 500
