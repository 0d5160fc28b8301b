"""Validation of requests: every problem becomes a ``BadRequest`` naming the field."""

from __future__ import annotations

from dataclasses import dataclass

from alime.config import ServeConfig
from alime.kb.formats import NestingError, load_json, surrogate_problem

MAX_SESSION_ID_CHARS = 128
CHAT_KEYS = ("query", "session_id", "context")


class BadRequest(ValueError):
    """A client error: HTTP status and a message naming the problem."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_json_body(data: bytes, max_depth: int) -> object:
    """The request body as JSON, refused when it cannot be handled safely.

    Refused: not JSON (or not UTF-8/16/32), nesting deeper than ``max_depth`` containers (the
    parser would otherwise recurse until RecursionError), and any string or field name with a
    lone surrogate (``"\\ud800"`` parses, but no UTF-8 writer, SQLite included, can store it).

    Raises:
        BadRequest: 400, naming the problem and, for a string, its field and position.
    """
    try:
        body = load_json(data, max_depth)
    except NestingError as exc:
        raise BadRequest(f"request body is {exc}") from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        raise BadRequest("request body must be valid JSON (UTF-8)") from None
    problem = unstorable_text(body)
    if problem:
        raise BadRequest(problem)
    return body


def unstorable_text(value: object) -> str | None:
    """The first string (or field name) of a parsed JSON value that has a lone surrogate.

    Returns:
        ``"field 'pairs[2].question' contains a lone surrogate U+D800 at character 4"``, or None.
    """
    stack: list[tuple[object, str]] = [(value, "")]
    while stack:  # iterative, in document order; depth is already bounded by the parser check
        item, path = stack.pop()
        if isinstance(item, str):
            problem = surrogate_problem(item)
            if problem:
                return f"field '{path}' {problem}" if path else f"request body {problem}"
        elif isinstance(item, dict):
            for key in item:
                problem = surrogate_problem(key)
                if problem:
                    where = f" in '{path}'" if path else ""
                    return f"a field name{where} {problem}"
            children = reversed(item.items())
            stack.extend((child, f"{path}.{key}" if path else key) for key, child in children)
        elif isinstance(item, list):
            stack.extend((item[i], f"{path}[{i}]") for i in reversed(range(len(item))))
    return None


@dataclass(frozen=True)
class ChatRequest:
    query: str
    session_id: str | None
    context: tuple[str, ...] | None


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

    session_id = body.get("session_id")
    if session_id is not None:
        if not isinstance(session_id, str) or not session_id:
            raise BadRequest("field 'session_id' must be a non-empty string")
        if len(session_id) > MAX_SESSION_ID_CHARS:
            raise BadRequest(f"field 'session_id' is longer than {MAX_SESSION_ID_CHARS} characters")

    context = body.get("context")
    if context is not None:
        if not isinstance(context, list) or not all(isinstance(t, str) for t in context):
            raise BadRequest("field 'context' must be a list of strings")
        if len(context) > limits.max_context_turns:
            raise BadRequest(f"field 'context' has more than {limits.max_context_turns} turns")
        if any(len(t) > limits.max_query_chars for t in context):
            raise BadRequest(
                f"a 'context' turn is longer than {limits.max_query_chars} characters", 413
            )
        context = tuple(context)
    return ChatRequest(query.strip(), session_id, context)
