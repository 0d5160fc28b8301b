"""The ``alime`` command line: parse flags, build objects, dispatch. No logic lives here."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys

# The int8 model's numpy forward pass multiplies small matrices, where OpenBLAS's thread pool
# costs more than it saves and fights TensorFlow's and the server's threads for the 2 cores.
# Set before anything imports numpy; an explicit setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from alime import __version__
from alime.commands import evaluate, quantize, train, tune
from alime.commands.common import CLIError, config_of
from alime.commands.common import positive_int as _positive_int
from alime.kb.formats import Format
from alime.kb.store import NotFound
from alime.retrieval.fusion import RetrievalMode

# Subcommands defined in their own modules: each has ``register(subparsers)``. Listed, not
# discovered: they import alime.commands.common, never this module, so there is no cycle.
_SUBCOMMANDS = (train, tune, evaluate, quantize)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG
        if args.verbose
        else logging.INFO
        if args.command == "serve"
        else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except NotFound as exc:
        print(f"alime: error: no QA pair with id {exc.args[0]}", file=sys.stderr)
        return 2
    except (CLIError, ValueError, FileNotFoundError, PermissionError) as exc:
        print(f"alime: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``alime kb stats | head``): stop quietly, as Unix tools do.
        _silence_stdout()
        return 141  # 128 + SIGPIPE: what a shell reports for a tool the broken pipe stopped


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so the interpreter's last flush of what could not be
    written does not raise (and print) a second BrokenPipeError at exit."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a test harness: nothing to do
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alime", description="Hybrid customer-service chatbot engine"
    )
    parser.add_argument("--version", action="version", version=f"alime {__version__}")
    parser.add_argument("--config", help="TOML configuration file (see docs/configuration.md)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    _add_kb(sub)

    p = sub.add_parser("index", help="build or refresh the BM25 index of the KB")
    p.add_argument("--rebuild", action="store_true", help="index everything from scratch")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="search the KB (BM25, dense or hybrid)")
    p.add_argument("query")
    p.add_argument("--k", type=_positive_int, default=10)
    p.add_argument(
        "--mode",
        default="bm25",
        choices=[m.value for m in RetrievalMode],
        help="bm25 (default, no model needed), dense or hybrid (retrieval.fusion)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("serve", help="serve the chat API and page on gunicorn")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=_positive_int)
    p.add_argument("--threads", type=_positive_int)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("chat", help="chat with the bot in the terminal")
    p.add_argument("--show-candidates", action="store_true")
    p.set_defaults(func=cmd_chat)

    for module in _SUBCOMMANDS:
        module.register(sub)
    return parser


# -- kb ---------------------------------------------------------------------------------------
def _add_kb(sub) -> None:
    kb = sub.add_parser("kb", help="manage the knowledge base").add_subparsers(
        dest="kb_command", metavar="ACTION"
    )

    p = kb.add_parser("import", help="import QA pairs from a file (one transaction)")
    p.add_argument("file")
    p.add_argument("--format", required=True, choices=[f.value for f in Format])
    p.add_argument("--skip-bad", action="store_true", help="skip bad rows; count and list them")
    p.set_defaults(func=cmd_kb_import)

    p = kb.add_parser("export", help="export QA pairs")
    p.add_argument("--format", default="tsv", choices=["tsv", "jsonl"])
    p.add_argument("--out", help="file to write (default: standard output)")
    p.add_argument(
        "--raw-cells",
        action="store_true",
        help="TSV: keep cells starting with = + - @ as they are (default: prefix a ')",
    )
    p.set_defaults(func=cmd_kb_export)

    p = kb.add_parser("add", help="add one QA pair")
    p.add_argument("--question", required=True)
    p.add_argument("--answer", required=True)
    p.add_argument("--tag", action="append", default=[], dest="tags")
    p.add_argument(
        "--phrasing",
        action="append",
        default=[],
        dest="phrasings",
        help="another way to ask the question (repeatable)",
    )
    p.set_defaults(func=cmd_kb_add)

    p = kb.add_parser("edit", help="edit a QA pair")
    p.add_argument("id", type=_qa_id)
    p.add_argument("--question")
    p.add_argument("--answer")
    p.add_argument(
        "--phrasing",
        action="append",
        dest="phrasings",
        help="replaces the phrasings (repeatable); --phrasing '' clears them",
    )
    p.add_argument(
        "--tag",
        action="append",
        dest="tags",
        help="replaces the tags (repeatable); --tag '' clears them (a reviewer drops 'unreviewed')",
    )
    p.set_defaults(func=cmd_kb_edit)

    p = kb.add_parser("delete", help="delete a QA pair")
    p.add_argument("id", type=_qa_id)
    p.set_defaults(func=cmd_kb_delete)

    p = kb.add_parser("list", help="list QA pairs")
    p.add_argument("--offset", type=_bounded_int(0, _MAX_ID), default=0)
    p.add_argument("--limit", type=_bounded_int(1, 10_000), default=20)
    p.set_defaults(func=cmd_kb_list)

    p = kb.add_parser(
        "curate", help="turn a raw QA corpus into curated KB entries (JSONL); does not touch the KB"
    )
    p.add_argument("file")
    p.add_argument("--format", required=True, choices=[f.value for f in Format])
    p.add_argument("--out", required=True, help="curated entries (JSONL, for kb import)")
    p.add_argument("--chitchat-out", help="greetings and thanks with a generic answer (JSONL)")
    p.add_argument("--report", help="folder for curate_report.json and curate_report.md")
    p.add_argument(
        "--tag",
        action="append",
        default=[],
        dest="tags",
        help="tag every curated entry (repeatable)",
    )
    p.add_argument(
        "--max-question-chars",
        type=_positive_int,
        help="longer questions (characters, particles removed) are narrative turns (default 15)",
    )
    p.add_argument(
        "--no-near-duplicates", action="store_true", help="group only questions with equal keys"
    )
    p.add_argument(
        "--keep-bare-yes-no",
        action="store_true",
        help="keep bare yes/no answers (是的, 有的哦) to yes/no questions; dropped by default",
    )
    p.add_argument(
        "--reviewed",
        metavar="FILE",
        help="a reviewed FAQ (JSONL: question, phrasings, answer, tags): written first "
        "as it is; corpus groups asking its questions are merged in",
    )
    p.set_defaults(func=cmd_kb_curate)

    p = kb.add_parser("stats", help="KB statistics (JSON)")
    p.set_defaults(func=cmd_kb_stats)


_MAX_ID = 2**63 - 1  # SQLite integers are signed 64-bit; a larger one overflows in the driver


def _bounded_int(low: int, high: int):
    """An argparse type: an integer from ``low`` to ``high`` (else argparse exits with 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {text}")
        return value

    return parse


_qa_id = _bounded_int(1, _MAX_ID)


def _checked_text(option: str, value: str | None, max_chars: int) -> None:
    """Refuse text the KB cannot store: argv bytes that are not UTF-8 arrive as lone surrogates."""
    if value is None:
        return
    from alime.kb.formats import surrogate_problem

    problem = surrogate_problem(value)
    if problem:
        raise CLIError(f"{option} is not valid UTF-8 text: it {problem}")
    if len(value) > max_chars:
        raise CLIError(f"{option} is longer than {max_chars} characters (kb.max_field_chars)")


def _kb(args):
    from alime.bot import open_kb

    return open_kb(config_of(args))


def _refresh_index(args) -> None:
    """Bring the saved index up to date with the KB (incremental)."""
    from alime.bot import open_searcher

    searcher = open_searcher(config_of(args))
    if searcher.sync():
        searcher.save()


def cmd_kb_import(args) -> int:
    from alime.kb.formats import read_rows

    result = read_rows(args.file, args.format, skip_bad=args.skip_bad, limits=config_of(args).kb)
    kb = _kb(args)
    added = kb.add_many(r.to_kb_row() for r in result.rows)
    _refresh_index(args)
    print(json.dumps({"imported": len(added), "skipped": len(result.skipped), "total": kb.count()}))
    for err in result.skipped[:_SHOW_SKIPPED]:
        print(f"skipped {err}", file=sys.stderr)
    if len(result.skipped) > _SHOW_SKIPPED:
        print(f"skipped {len(result.skipped) - _SHOW_SKIPPED} more bad line(s)", file=sys.stderr)
    return 0


_SHOW_SKIPPED = 20


def cmd_kb_export(args) -> int:
    from alime.kb.formats import write_pairs

    kb = _kb(args)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            n = write_pairs(kb.iter_pairs(), f, args.format, raw_cells=args.raw_cells)
        print(f"exported {n} QA pairs to {args.out}", file=sys.stderr)
    else:
        write_pairs(kb.iter_pairs(), sys.stdout, args.format, raw_cells=args.raw_cells)
    return 0


def _print_pair(pair) -> None:
    print(
        json.dumps(
            {
                "id": pair.id,
                "question": pair.question,
                "phrasings": list(pair.phrasings),
                "answer": pair.answer,
                "tags": list(pair.tags),
            },
            ensure_ascii=False,
        )
    )


def cmd_kb_add(args) -> int:
    max_chars = config_of(args).kb.max_field_chars
    for option, value in (("--question", args.question), ("--answer", args.answer)):
        _checked_text(option, value, max_chars)
    for option, values in (("--tag", args.tags), ("--phrasing", args.phrasings or ())):
        for value in values:
            _checked_text(option, value, max_chars)
    pair = _kb(args).add(args.question, args.answer, args.tags, args.phrasings)
    _refresh_index(args)
    _print_pair(pair)
    return 0


def cmd_kb_edit(args) -> int:
    if all(v is None for v in (args.question, args.answer, args.phrasings, args.tags)):
        raise CLIError("give --question, --answer, --phrasing and/or --tag")
    max_chars = config_of(args).kb.max_field_chars
    for option, value in (("--question", args.question), ("--answer", args.answer)):
        _checked_text(option, value, max_chars)
    for option, values in (("--phrasing", args.phrasings or ()), ("--tag", args.tags or ())):
        for value in values:
            _checked_text(option, value, max_chars)
    phrasings = None if args.phrasings is None else [p for p in args.phrasings if p]
    tags = None if args.tags is None else [t for t in args.tags if t]
    pair = _kb(args).edit(
        args.id, question=args.question, answer=args.answer, phrasings=phrasings, tags=tags
    )
    _refresh_index(args)
    _print_pair(pair)
    return 0


def cmd_kb_delete(args) -> int:
    _kb(args).delete(args.id)
    _refresh_index(args)
    print(json.dumps({"deleted": args.id}))
    return 0


def cmd_kb_list(args) -> int:
    for pair in _kb(args).list(args.offset, args.limit):
        _print_pair(pair)
    return 0


def cmd_kb_curate(args) -> int:
    from alime.kb.curate import CurateOptions, curate_file

    limit = (
        {} if args.max_question_chars is None else {"max_question_chars": args.max_question_chars}
    )
    options = CurateOptions(
        near_duplicates=not args.no_near_duplicates,
        tags=tuple(args.tags),
        keep_bare_yes_no=args.keep_bare_yes_no,
        **limit,
    )
    result = curate_file(
        args.file,
        args.format,
        args.out,
        args.chitchat_out,
        args.report,
        options,
        reviewed=args.reviewed,
    )
    print(json.dumps(result.counts(), ensure_ascii=False))
    return 0


def cmd_kb_stats(args) -> int:
    print(json.dumps(_kb(args).stats(), ensure_ascii=False, indent=2))
    return 0


# -- index / search ---------------------------------------------------------------------------
def cmd_index(args) -> int:
    from alime.bot import open_searcher

    searcher = open_searcher(config_of(args))
    if args.rebuild:
        searcher.rebuild()
    else:
        searcher.sync()
        searcher.save()
    print(
        json.dumps(
            {
                "indexed": len(searcher),
                "kb_revision": searcher.revision,
                "index": str(searcher.index_dir),
            }
        )
    )
    return 0


def cmd_search(args) -> int:
    from alime.bot import open_searcher

    config = config_of(args)
    searcher = open_searcher(config)
    terms = searcher.analyze(args.query)
    if args.mode == "bm25":
        hits = searcher.search_terms(terms, args.k)
    else:
        hits = _search_mode(config, searcher, args.mode, args.query, args.k)
    pairs = searcher.kb.get_many([h.id for h in hits])
    results = [
        {
            "id": h.id,
            "question": pairs[h.id].question,
            "answer": pairs[h.id].answer,
            "score": h.score,
        }
        for h in hits
        if h.id in pairs
    ]
    if args.json:
        print(
            json.dumps(
                {"mode": args.mode, "query_tokens": terms, "results": results}, ensure_ascii=False
            )
        )
    else:
        print("query tokens:", " ".join(terms))
        for rank, r in enumerate(results, 1):
            print(f"{rank:2d}. [{r['score']:.3f}] #{r['id']} {r['question']}  ->  {r['answer']}")
    return 0


def _search_mode(config, searcher, mode: str, query: str, k: int):
    """Dense or hybrid hits through the engine's own retriever builder."""
    from alime.retrieval.modes import build_retriever

    model_dir = config.resolved_paths()[2]
    if model_dir is None:
        raise SystemExit(f"alime search --mode {mode}: needs a model (paths.model)")
    config = dataclasses.replace(config, retrieval=dataclasses.replace(config.retrieval, mode=mode))
    return build_retriever(config, searcher.kb, searcher, model_dir).search(query, k)


# -- serve / chat -----------------------------------------------------------------------------
def cmd_serve(args) -> int:
    from alime.serving.server import serve

    config = config_of(args)
    overrides = {
        k: getattr(args, k) for k in ("host", "port", "workers", "threads") if getattr(args, k)
    }
    config = dataclasses.replace(config, serve=dataclasses.replace(config.serve, **overrides))
    serve(config)
    return 0


def _why(reply) -> str:
    """The reply's source and rule, and what the rule compared or matched."""
    parts = [reply.source.value, f"rule {reply.rule.value}"]
    if reply.threshold is not None:
        score = "n/a" if reply.score is None else f"{reply.score:.3f}"
        parts += [f"score {score}", f"threshold {reply.threshold:.3f}"]
    if reply.evidence:
        parts.append(f"matched {reply.evidence}")
    if reply.handoff:
        parts.append("hand-off")
    return ", ".join(parts)


def cmd_chat(args) -> int:
    from alime.bot import build_bot
    from alime.retrieval.modes import score_label

    bot = build_bot(config_of(args))
    label = score_label(bot.engine.retriever)  # bm25, dense or fused: what retrieval_score is
    turns: list[str] = []
    print("alime chat — type a question, an empty line or Ctrl-D to quit.")
    while True:
        try:
            query = input("you> ").strip()
        except EOFError:
            print()
            return 0
        if not query:
            return 0
        context = turns[-bot.config.engine.context_turns :]
        reply = bot.engine.reply(query, context)
        print(f"bot> {reply.answer}")
        print(f"     [{_why(reply)}]")
        if args.show_candidates:
            for c in reply.candidates:
                rr = "" if c.rerank_score is None else f" rerank {c.rerank_score:.3f}"
                print(
                    f"       #{c.id} {label} {c.retrieval_score:.3f}{rr}: {c.question} -> "
                    f"{c.answer}"
                )
        turns += [query, reply.answer]


if __name__ == "__main__":
    raise SystemExit(main())
