"""KB administration over HTTP, behind a bearer token.

The endpoints are off (403) when no token is configured, and answer 401 to a missing or wrong
token (compared in constant time). Each change is one SQLite transaction; the search index is
synced before the response, so the next chat request sees it.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, current_app, jsonify, request

from alime.kb.formats import Format, FormatError, parse_content
from alime.kb.store import NotFound
from alime.serving.validation import BadRequest, parse_json_body

admin = Blueprint("alime_admin", __name__, url_prefix="/api/kb")

MAX_LIST = 500
MAX_TAGS = 20
MAX_ID = 2**63 - 1  # SQLite's INTEGER PRIMARY KEY is a signed 64-bit integer
MAX_PHRASINGS = 100
_FIELDS = ("question", "answer", "tags", "phrasings")


def _state():
    return current_app.extensions["alime"]


@admin.before_request
def _authenticate() -> None:
    request.max_content_length = _state().config.serve.max_import_bytes
    token = _state().admin_token
    if not token:
        raise BadRequest(
            "the admin API is disabled: set ALIME_ADMIN_TOKEN (or serve.admin_token)", 403
        )
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        raise BadRequest("missing or invalid bearer token", 401)


def _body() -> dict:
    body = parse_json_body(request.get_data(), _state().config.serve.max_json_depth)
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def _text(body: dict, key: str, required: bool) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise BadRequest(f"field '{key}' is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"field '{key}' must be a non-empty string")
    limit = _state().config.kb.max_field_chars
    if len(value) > limit:
        raise BadRequest(f"field '{key}' is longer than {limit} characters", 413)
    return value.strip()


def _tags(body: dict) -> tuple[str, ...] | None:
    tags = body.get("tags")
    if tags is None:
        return None
    if (
        not isinstance(tags, list)
        or not all(isinstance(t, str) for t in tags)
        or len(tags) > MAX_TAGS
    ):
        raise BadRequest(f"field 'tags' must be a list of at most {MAX_TAGS} strings")
    return tuple(tags)


def _phrasings(body: dict) -> tuple[str, ...] | None:
    phrasings = body.get("phrasings")
    if phrasings is None:
        return None
    if (
        not isinstance(phrasings, list)
        or len(phrasings) > MAX_PHRASINGS
        or not all(isinstance(p, str) and p.strip() for p in phrasings)
    ):
        raise BadRequest(
            f"field 'phrasings' must be a list of at most {MAX_PHRASINGS} non-empty strings"
        )
    limit = _state().config.kb.max_field_chars
    if any(len(p) > limit for p in phrasings):
        raise BadRequest(f"a phrasing is longer than {limit} characters", 413)
    return tuple(p.strip() for p in phrasings)


def _check_keys(body: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise BadRequest(f"unknown field(s) {unknown}; allowed: {list(allowed)}")


def _pair_json(pair) -> dict:
    return {
        "id": pair.id,
        "question": pair.question,
        "phrasings": list(pair.phrasings),
        "answer": pair.answer,
        "tags": list(pair.tags),
        "created_at": pair.created_at,
        "updated_at": pair.updated_at,
    }


def _qa_id(raw: str) -> int:
    """The id of a URL, checked before it reaches SQLite (which overflows beyond int64)."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or not 1 <= int(raw) <= MAX_ID:
        shown = raw if len(raw) <= 40 else raw[:40] + "..."
        raise BadRequest(f"id must be an integer from 1 to {MAX_ID}, got {shown!r}")
    return int(raw)


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter '{name}' must be an integer") from None
    if not low <= value <= high:
        raise BadRequest(f"query parameter '{name}' must be between {low} and {high}")
    return value


@admin.get("")
def list_pairs():
    bot = _state().bot
    offset = _int_arg("offset", 0, 0, 10**12)
    limit = _int_arg("limit", 50, 1, MAX_LIST)
    return jsonify(
        {
            "total": bot.kb.count(),
            "offset": offset,
            "pairs": [_pair_json(p) for p in bot.kb.list(offset, limit)],
        }
    )


@admin.get("/<raw_id>")
def get_pair(raw_id: str):
    qa_id = _qa_id(raw_id)
    try:
        return jsonify(_pair_json(_state().bot.kb.get(qa_id)))
    except NotFound:
        raise BadRequest(f"no QA pair with id {qa_id}", 404) from None


@admin.post("")
def add_pair():
    body = _body()
    _check_keys(body, _FIELDS)
    bot = _state().bot
    pair = bot.kb.add(
        _text(body, "question", True),
        _text(body, "answer", True),
        _tags(body) or (),
        _phrasings(body) or (),
    )
    bot.searcher.sync()
    return jsonify(_pair_json(pair)), 201


@admin.route("/<raw_id>", methods=["PUT", "PATCH"])
def edit_pair(raw_id: str):
    qa_id = _qa_id(raw_id)
    body = _body()
    _check_keys(body, _FIELDS)
    question, answer, tags = (
        _text(body, "question", False),
        _text(body, "answer", False),
        _tags(body),
    )
    phrasings = _phrasings(body)
    if question is None and answer is None and tags is None and phrasings is None:
        raise BadRequest(f"give at least one of {', '.join(repr(f) for f in _FIELDS)}")
    bot = _state().bot
    try:
        pair = bot.kb.edit(qa_id, question=question, answer=answer, tags=tags, phrasings=phrasings)
    except NotFound:
        raise BadRequest(f"no QA pair with id {qa_id}", 404) from None
    bot.searcher.sync()
    return jsonify(_pair_json(pair))


@admin.delete("/<raw_id>")
def delete_pair(raw_id: str):
    qa_id = _qa_id(raw_id)
    bot = _state().bot
    try:
        bot.kb.delete(qa_id)
    except NotFound:
        raise BadRequest(f"no QA pair with id {qa_id}", 404) from None
    bot.searcher.sync()
    return jsonify({"deleted": qa_id})


@admin.post("/import")
def bulk_import():
    """Bulk import in one transaction.

    Body: ``{"pairs": [{"question", "answer", "tags"?, "phrasings"?}...]}`` or
    ``{"format", "content"}``.
    """
    body = _body()
    _check_keys(body, ("pairs", "format", "content", "skip_bad"))
    skip_bad = body.get("skip_bad", False)
    if not isinstance(skip_bad, bool):
        raise BadRequest("field 'skip_bad' must be true or false")
    if "pairs" in body:
        rows, skipped = _rows_from_pairs(body["pairs"], skip_bad)
    else:
        rows, skipped = _rows_from_content(body, skip_bad)
    bot = _state().bot
    added = bot.kb.add_many(rows)
    bot.searcher.sync()
    return jsonify(
        {
            "imported": len(added),
            "skipped": skipped,
            "total": bot.kb.count(),
            "first_id": added[0].id if added else None,
        }
    ), 201


def _rows_from_pairs(pairs: object, skip_bad: bool) -> tuple[list, list]:
    if not isinstance(pairs, list) or not pairs:
        raise BadRequest("field 'pairs' must be a non-empty list")
    rows, skipped = [], []
    for i, item in enumerate(pairs):
        try:
            if not isinstance(item, dict):
                raise BadRequest("must be an object")
            _check_keys(item, _FIELDS)
            rows.append(
                (
                    _text(item, "question", True),
                    _text(item, "answer", True),
                    _tags(item) or (),
                    _phrasings(item) or (),
                )
            )
        except BadRequest as exc:
            if not skip_bad:
                raise BadRequest(f"pairs[{i}]: {exc}", exc.status) from None
            skipped.append(f"pairs[{i}]: {exc}")
    return rows, skipped


def _rows_from_content(body: dict, skip_bad: bool) -> tuple[list, list]:
    fmt, content = body.get("format"), body.get("content")
    if not isinstance(content, str) or not isinstance(fmt, str):
        raise BadRequest("give 'pairs', or 'format' and 'content' (strings)")
    try:
        parsed_format = Format.parse(fmt)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    # Parsed in memory: no temporary file to leave behind when the content is refused.
    try:
        result = parse_content(content, parsed_format, skip_bad=skip_bad, limits=_state().config.kb)
    except FormatError as exc:
        raise BadRequest(f"line {exc.line}: {exc.message}") from None
    return [r.to_kb_row() for r in result.rows], [
        f"line {e.line}: {e.message}" for e in result.skipped
    ]
