"""``alime evaluate natural``: parse flags, run :mod:`alime.evaluation.natural`.

Wired in by ``alime.commands.evaluate`` through :func:`register_natural`.
"""

from __future__ import annotations

import argparse
import json

from alime.commands.common import CLIError, config_of
from alime.commands.common import positive_int as _positive_int
from alime.evaluation.natural import Baseline


def register_natural(evaluate_subparsers) -> argparse.ArgumentParser:
    """Add ``natural`` to the ``alime evaluate`` subparsers object."""
    p = evaluate_subparsers.add_parser(
        "natural",
        help="acceptable answers to shopper-style queries (in-KB and out-of-KB)",
        description="Ask the bot every query of a natural-query set (data/eval/natural) and "
        "judge each reply against its intent: an acceptable KB answer for in-KB "
        "intents, the expected outcome (handoff, fallback, chitchat, no_faq) for "
        "out-of-KB ones. With --sweep, choose T and G on the split instead.",
    )
    p.add_argument("--data", required=True, help="folder with intents.json, tune.jsonl, test.jsonl")
    p.add_argument(
        "--split",
        choices=["tune", "test", "all"],
        help="default: tune with --sweep or --fit-routing, else test",
    )
    p.add_argument(
        "--url",
        help="judge a running server (http://host:port) instead of an "
        "in-process bot built from the configuration",
    )
    p.add_argument(
        "--baseline",
        choices=[b.value for b in Baseline],
        help="judge a model-free reference bot instead: always the fallback with a "
        "hand-off, or always the BM25 top-1 KB answer",
    )
    p.add_argument(
        "--sweep",
        action="store_true",
        help="sweep the answer threshold T and the generation threshold G (in-process "
        "bot only) and pick the pair with the best mean of the two rates",
    )
    p.add_argument(
        "--fit-routing",
        action="store_true",
        help="fit the routing score on the tune split's candidates (feature set by "
        "cross-validation, T on the split); with --write-model, store it in "
        "MODEL_DIR/routing.json",
    )
    p.add_argument(
        "--folds",
        type=_positive_int,
        default=5,
        help="with --fit-routing: cross-validation folds over the tune queries",
    )
    p.add_argument(
        "--grid-points",
        type=_positive_int,
        default=25,
        help="at most this many values of T and of G (quantiles of observed scores)",
    )
    p.add_argument(
        "--wrong-answer-cost",
        type=float,
        default=None,
        help="with --sweep: what a wrong FAQ answer costs beside a hand-off (score = "
        "mean of the two acceptable rates - COST x share answered wrongly; "
        "default 1.0)",
    )
    p.add_argument(
        "--write-model",
        metavar="MODEL_DIR",
        help="with --sweep: store the chosen T (routing.json when the model routes, "
        "else thresholds.json) and G (thresholds.json) in MODEL_DIR; with "
        "--fit-routing: store the fitted routing score and its T",
    )
    p.add_argument("--out", help="folder for report.json and report.md")
    p.add_argument("--json", action="store_true", help="print the JSON report (default: Markdown)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_evaluate_natural)
    return p


def cmd_evaluate_natural(args) -> int:
    from alime.evaluation.natural import (
        baseline_asker,
        http_asker,
        load_natural,
        natural_markdown,
        run_natural,
        run_sweep,
    )

    if args.write_model and not (args.sweep or args.fit_routing):
        raise CLIError("--write-model needs --sweep or --fit-routing")
    if args.fit_routing and (args.sweep or args.url or args.baseline):
        raise CLIError("--fit-routing runs alone, in process (then --sweep to choose T and G)")
    args.split = args.split or ("tune" if args.sweep or args.fit_routing else "test")
    if args.fit_routing and args.split != "tune":
        raise CLIError("--fit-routing fits on the tune split only; the test split is for reporting")
    if args.sweep and (args.url or args.baseline):
        raise CLIError(
            "--sweep replays the engine's decision in process; it cannot use --url or --baseline"
        )
    if args.url and args.baseline:
        raise CLIError("--url and --baseline exclude each other")
    load_natural(args.data)  # bad data fails before any model is loaded
    if args.fit_routing:
        from alime.evaluation.natural_routing import run_natural_routing

        report = run_natural_routing(
            args.data, config_of(args), args.write_model, args.folds, progress=not args.no_progress
        )
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    if args.sweep:
        from alime.evaluation.natural import WRONG_ANSWER_COST

        cost = WRONG_ANSWER_COST if args.wrong_answer_cost is None else args.wrong_answer_cost
        if not 0.0 <= cost <= 10.0:
            raise CLIError("--wrong-answer-cost must be from 0 to 10")
        report = run_sweep(
            args.data,
            args.split,
            config_of(args),
            args.write_model,
            args.out,
            progress=not args.no_progress,
            points=args.grid_points,
            wrong_cost=cost,
        )
    elif args.baseline:
        ask, close = baseline_asker(args.baseline, config_of(args))
        try:
            report = run_natural(
                args.data, args.split, ask, None, args.out, progress=not args.no_progress
            )
        finally:
            close()
        report["bot"] = f"baseline {args.baseline}"
    else:
        ask = http_asker(args.url) if args.url else None
        report = run_natural(
            args.data,
            args.split,
            ask,
            None if args.url else config_of(args),
            args.out,
            progress=not args.no_progress,
        )
    print(
        json.dumps(report, ensure_ascii=False, indent=2) if args.json else natural_markdown(report)
    )
    return 0
