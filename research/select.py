"""``python -m research.select``: R10@1/2/5 and MRR of the research scorers (the
``anti_bm25`` probe, the matcher's ``match`` and ``match_pmi``), beside any of the product's
evaluation scorers (``--scorers``), on an E-commerce-format validation file.

It is ``alime evaluate select`` with ``research.scorers.probes`` added; that command keeps the
scorers that compute or tune the engine's own scores.
"""

from __future__ import annotations

import argparse
import json

from alime.config import load_config
from alime.evaluation.reports import selection_markdown
from alime.evaluation.runner import SelectOptions, run_select
from alime.evaluation.scorers import ScorerName
from research.cli import positive_int, run_main
from research.scorers import matcher_dir_of, probes


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``python -m research.select``."""
    p = argparse.ArgumentParser(
        prog="python -m research.select", description=__doc__.split("\n")[0]
    )
    p.add_argument("--config", help="TOML configuration file (text settings, default model)")
    p.add_argument("--data", required=True, help="E-commerce-format groups of 10 lines")
    p.add_argument(
        "--model", help="model directory (default: the bundled model, if any; 'none': no model)"
    )
    p.add_argument(
        "--probes",
        help="comma-separated research scorers (default: all available: anti_bm25, and match, "
        "match_pmi with a matcher)",
    )
    p.add_argument(
        "--scorers",
        help=f"product scorers to report beside them, from {[n.value for n in ScorerName]}",
    )
    p.add_argument(
        "--matcher",
        help="matcher directory for 'match' (default: MODEL/matcher, else the bundled "
        "research/data/matcher)",
    )
    p.add_argument(
        "--match-pmi-weight", type=float, default=1.0, help="w of match_pmi (match + w * pmi)"
    )
    p.add_argument("--pmi-weight", type=float, default=0.5, help="lambda of the pmi scorer")
    p.add_argument("--limit", type=positive_int, help="first N groups")
    p.add_argument(
        "--query-turns", type=positive_int, default=3, help="last turns in the BM25 query"
    )
    p.add_argument("--json", action="store_true", help="print the JSON report (default: a table)")
    p.add_argument("--out", help="folder for report.json and report.md")
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args: argparse.Namespace) -> int:
    """Score the file; print the report. Returns the exit status."""
    config = load_config(args.config)
    model = None if args.model == "none" else args.model or config.resolved_paths()[2]
    table = probes(matcher_dir_of(model, args.matcher), args.match_pmi_weight)
    if args.probes:
        wanted = [p.strip() for p in args.probes.split(",") if p.strip()]
        unknown = [w for w in wanted if w not in table]
        if unknown:
            raise ValueError(
                f"unknown or unavailable probe(s) {unknown}; available: {sorted(table)} "
                "(match and match_pmi need a matcher: --matcher DIR)"
            )
        table = {w: table[w] for w in wanted}
    if model is None and any(e.needs_model for e in table.values()):
        raise ValueError("match_pmi needs a model: give --model DIR")
    opts = SelectOptions(args.scorers, args.limit, args.pmi_weight, args.query_turns)
    report = run_select(
        args.data, model, opts, config, out_dir=args.out, progress=not args.no_progress, extra=table
    )
    print(json.dumps(report) if args.json else selection_markdown({**report, "data": args.data}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m research.select``; returns the exit status."""
    return run_main(build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
