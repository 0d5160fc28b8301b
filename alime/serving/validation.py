"""Validation of chat requests: every problem becomes a ``BadRequest`` naming the field."""

from __future__ import annotations

from dataclasses import dataclass

from alime.config import ServeConfig

MAX_SESSION_ID_CHARS = 128
CHAT_KEYS = ("query", "session_id", "context")


class BadRequest(ValueError):
    """A client error: HTTP status and a message naming the problem."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ChatRequest:
    query: str
    session_id: str | None
    context: tuple[str, ...] | None


def _unicode(value: str, field: str) -> None:
    # JSON's \ud800 escapes can carry lone surrogates, which no UTF-8 store (SQLite, Redis) takes.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"field '{field}' is not valid Unicode text (lone surrogate)") from None


def parse_chat(body: object, limits: ServeConfig) -> ChatRequest:
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    unknown = sorted(set(body) - set(CHAT_KEYS))
    if unknown:
        raise BadRequest(f"unknown field(s) {unknown}; allowed: {list(CHAT_KEYS)}")
    query = body.get("query")
    if "query" not in body:
        raise BadRequest("field 'query' is required")
    if not isinstance(query, str):
        raise BadRequest("field 'query' must be a string")
    if not query.strip():
        raise BadRequest("field 'query' must not be empty")
    if len(query) > limits.max_query_chars:
        raise BadRequest(f"field 'query' is longer than {limits.max_query_chars} characters", 413)
    _unicode(query, "query")

    session_id = body.get("session_id")
    if session_id is not None:
        if not isinstance(session_id, str) or not session_id:
            raise BadRequest("field 'session_id' must be a non-empty string")
        if len(session_id) > MAX_SESSION_ID_CHARS:
            raise BadRequest(f"field 'session_id' is longer than {MAX_SESSION_ID_CHARS} characters")
        _unicode(session_id, "session_id")

    context = body.get("context")
    if context is not None:
        if not isinstance(context, list) or not all(isinstance(t, str) for t in context):
            raise BadRequest("field 'context' must be a list of strings")
        if len(context) > limits.max_context_turns:
            raise BadRequest(f"field 'context' has more than {limits.max_context_turns} turns")
        if any(len(t) > limits.max_query_chars for t in context):
            raise BadRequest(f"a 'context' turn is longer than {limits.max_query_chars} characters", 413)
        for turn in context:
            _unicode(turn, "context")
        context = tuple(context)
    return ChatRequest(query.strip(), session_id, context)
