"""``alime evaluate routing``: parse flags, run :func:`alime.evaluation.routing.run_routing`.

Wired in by ``alime.commands.evaluate`` through :func:`register_routing`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

from alime.commands.common import config_of
from alime.config import BUNDLED_DATA


def register_routing(evaluate_subparsers) -> argparse.ArgumentParser:
    """Add ``routing`` to the ``alime evaluate`` subparsers object."""
    from alime.evaluation.routing import RoutingSettings

    d = RoutingSettings()
    p = evaluate_subparsers.add_parser(
        "routing",
        help="in-KB queries answered from the KB vs out-of-KB routed to generation",
        description="Hold out a seeded share of the KB, ask noisy rewrites of kept and held-out "
        "questions plus chit-chat questions, and report per decision score how often "
        "in-KB queries are answered (rightly) from the KB and out-of-KB ones are not. "
        "T is chosen on a tune half, figures are on the test half.",
    )
    p.add_argument(
        "--kb",
        default=str(BUNDLED_DATA / "kb" / "ecommerce_qa.tsv"),
        help="question<TAB>answer file (default: the bundled e-commerce KB)",
    )
    p.add_argument("--model", help="model directory (default: the configured/bundled one)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--held-out-share", type=float, default=d.held_out_share)
    p.add_argument("--in-kb", type=int, default=d.n_in_kb, help="in-KB queries")
    p.add_argument("--held-out", type=int, default=d.n_held_out, help="held-out-pair queries")
    p.add_argument("--chitchat", type=int, default=d.n_chitchat, help="chit-chat queries")
    p.add_argument("--out", help="folder for report.json, report.md, routing.png")
    p.add_argument(
        "--write-model",
        action="store_true",
        help="store the fitted routing score and its T in MODEL/routing.json",
    )
    p.add_argument("--json", action="store_true", help="print the JSON report (default: Markdown)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_evaluate_routing)
    return p


def cmd_evaluate_routing(args) -> int:
    from alime.evaluation.routing import RoutingSettings, routing_markdown, run_routing

    config = config_of(args)  # the global --config (alime --config FILE evaluate ...)
    model = args.model or config.resolved_paths()[2]
    if model is None:
        raise SystemExit("alime evaluate routing: no model directory (pass --model)")
    if min(args.in_kb, args.held_out, args.chitchat) < 1 or not 0 < args.held_out_share < 1:
        raise SystemExit(
            "alime evaluate routing: query counts must be positive and --held-out-share in (0, 1)"
        )
    settings = replace(
        RoutingSettings(),
        seed=args.seed,
        held_out_share=args.held_out_share,
        n_in_kb=args.in_kb,
        n_held_out=args.held_out,
        n_chitchat=args.chitchat,
    )
    report = run_routing(
        model, args.kb, config, settings, args.out, args.write_model, progress=not args.no_progress
    )
    print(
        json.dumps(report, ensure_ascii=False, indent=2) if args.json else routing_markdown(report)
    )
    return 0
